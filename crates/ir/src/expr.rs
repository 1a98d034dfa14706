//! Tensor expressions: the scalar language in which compute ops are written.
//!
//! An [`Expr`] is a small tree over the axes of the enclosing compute op ([`Expr::Axis`]),
//! reads of other tensors ([`Expr::Read`]), integer and float constants, arithmetic,
//! comparisons, [`Expr::Select`] (used for padding) and math functions. Integers are index
//! arithmetic (`i64`, floor division and modulo, as TVM's `floordiv`/`floormod`); floats are
//! `f32` tensor values; comparisons yield booleans. The type of every node follows from its
//! children (see [`Expr::ty`]).
//!
//! Operators are overloaded so that op definitions read like the maths:
//!
//! ```
//! use tessel_ir::expr::Expr;
//! let i = Expr::axis(0);
//! let e = (i.clone() * 2 + 1).lt(Expr::int(10));
//! assert_eq!(e.to_string(), "(((ax0 * 2) + 1) < 10)");
//! ```

use serde::{Deserialize, Serialize};
use std::fmt;

/// Index of a tensor (an op) inside a [`crate::ComputeDag`], in topological order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OpId(pub u32);

impl OpId {
    /// The index as `usize`.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// The scalar type of an expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ScalarType {
    /// Index arithmetic, `i64`.
    Int,
    /// Tensor values, `f32`.
    Float,
    /// Results of comparisons and logic.
    Bool,
}

/// Binary operators. On integers `Div`/`Mod` are floor division and floor modulo (TVM's
/// `floordiv`/`floormod`); on floats `Div` is true division and `Mod` is not allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BinOp {
    /// `a + b`
    Add,
    /// `a - b`
    Sub,
    /// `a * b`
    Mul,
    /// `a / b` (floor division on integers)
    Div,
    /// `a % b` (floor modulo, integers only)
    Mod,
    /// `min(a, b)`
    Min,
    /// `max(a, b)`
    Max,
    /// `a < b`
    Lt,
    /// `a <= b`
    Le,
    /// `a == b`
    Eq,
    /// `a != b`
    Ne,
    /// `a && b` (booleans)
    And,
    /// `a || b` (booleans)
    Or,
}

impl BinOp {
    /// True for comparisons (`<`, `<=`, `==`, `!=`), whose result is a boolean.
    pub fn is_comparison(self) -> bool {
        matches!(self, BinOp::Lt | BinOp::Le | BinOp::Eq | BinOp::Ne)
    }

    /// The operator's symbol as printed (`min`/`max` print as calls).
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
            BinOp::Min => "min",
            BinOp::Max => "max",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::And => "&&",
            BinOp::Or => "||",
        }
    }
}

/// Unary operators and math functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UnOp {
    /// `-a`
    Neg,
    /// `!a` (booleans)
    Not,
    /// `sqrt(a)` (floats)
    Sqrt,
    /// `exp(a)` (floats)
    Exp,
    /// Integer to float conversion.
    ToFloat,
}

impl UnOp {
    /// The operator's name as printed.
    pub fn name(self) -> &'static str {
        match self {
            UnOp::Neg => "-",
            UnOp::Not => "!",
            UnOp::Sqrt => "sqrt",
            UnOp::Exp => "exp",
            UnOp::ToFloat => "float",
        }
    }

    /// True for the "expensive" math functions (Ansor does not inline ops that use them).
    pub fn is_math_call(self) -> bool {
        matches!(self, UnOp::Sqrt | UnOp::Exp)
    }
}

/// A scalar tensor expression.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Expr {
    /// An integer constant.
    Int(i64),
    /// A float constant.
    Float(f32),
    /// The `n`-th axis of the enclosing compute op: its spatial axes first, then its
    /// reduction axes.
    Axis(u32),
    /// An element of another tensor.
    Read {
        /// The tensor read.
        tensor: OpId,
        /// One integer index per dimension of the tensor.
        indices: Vec<Expr>,
    },
    /// A unary operator or math function.
    Unary(UnOp, Box<Expr>),
    /// A binary operator.
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// `cond ? then : otherwise`; only the chosen branch is evaluated (padding relies on it).
    Select(Box<Expr>, Box<Expr>, Box<Expr>),
}

impl Expr {
    /// An integer constant.
    pub fn int(v: i64) -> Expr {
        Expr::Int(v)
    }

    /// A float constant.
    pub fn float(v: f32) -> Expr {
        Expr::Float(v)
    }

    /// The `n`-th axis of the enclosing compute op.
    pub fn axis(n: u32) -> Expr {
        Expr::Axis(n)
    }

    /// `cond ? then : otherwise`.
    pub fn select(cond: Expr, then: Expr, otherwise: Expr) -> Expr {
        Expr::Select(Box::new(cond), Box::new(then), Box::new(otherwise))
    }

    /// A binary node.
    pub fn binary(op: BinOp, a: Expr, b: Expr) -> Expr {
        Expr::Binary(op, Box::new(a), Box::new(b))
    }

    /// A unary node.
    pub fn unary(op: UnOp, a: Expr) -> Expr {
        Expr::Unary(op, Box::new(a))
    }

    /// `min(self, other)`
    pub fn min(self, other: impl Into<Expr>) -> Expr {
        Expr::binary(BinOp::Min, self, other.into())
    }
    /// `max(self, other)`
    pub fn max(self, other: impl Into<Expr>) -> Expr {
        Expr::binary(BinOp::Max, self, other.into())
    }
    /// `self < other`
    pub fn lt(self, other: impl Into<Expr>) -> Expr {
        Expr::binary(BinOp::Lt, self, other.into())
    }
    /// `self <= other`
    pub fn le(self, other: impl Into<Expr>) -> Expr {
        Expr::binary(BinOp::Le, self, other.into())
    }
    /// `self >= other` (written as `other <= self`)
    pub fn ge(self, other: impl Into<Expr>) -> Expr {
        Expr::binary(BinOp::Le, other.into(), self)
    }
    /// `self > other` (written as `other < self`)
    pub fn gt(self, other: impl Into<Expr>) -> Expr {
        Expr::binary(BinOp::Lt, other.into(), self)
    }
    /// `self == other`
    pub fn eq(self, other: impl Into<Expr>) -> Expr {
        Expr::binary(BinOp::Eq, self, other.into())
    }
    /// `self != other`
    pub fn ne(self, other: impl Into<Expr>) -> Expr {
        Expr::binary(BinOp::Ne, self, other.into())
    }
    /// `self && other`
    pub fn and(self, other: Expr) -> Expr {
        Expr::binary(BinOp::And, self, other)
    }
    /// `self || other`
    pub fn or(self, other: Expr) -> Expr {
        Expr::binary(BinOp::Or, self, other)
    }
    /// Floor division of integers.
    pub fn floor_div(self, other: impl Into<Expr>) -> Expr {
        Expr::binary(BinOp::Div, self, other.into())
    }
    /// Floor modulo of integers.
    pub fn floor_mod(self, other: impl Into<Expr>) -> Expr {
        Expr::binary(BinOp::Mod, self, other.into())
    }
    /// `sqrt(self)`
    pub fn sqrt(self) -> Expr {
        Expr::unary(UnOp::Sqrt, self)
    }
    /// `exp(self)`
    pub fn exp(self) -> Expr {
        Expr::unary(UnOp::Exp, self)
    }
    /// Converts an integer expression to float.
    pub fn to_float(self) -> Expr {
        Expr::unary(UnOp::ToFloat, self)
    }

    /// The scalar type of this expression. `Axis` is `Int`; reads are `Float` (all tensors
    /// hold `f32`).
    pub fn ty(&self) -> ScalarType {
        match self {
            Expr::Int(_) | Expr::Axis(_) => ScalarType::Int,
            Expr::Float(_) | Expr::Read { .. } => ScalarType::Float,
            Expr::Unary(op, a) => match op {
                UnOp::Not => ScalarType::Bool,
                UnOp::Sqrt | UnOp::Exp | UnOp::ToFloat => ScalarType::Float,
                UnOp::Neg => a.ty(),
            },
            Expr::Binary(op, a, _) => {
                if op.is_comparison() || matches!(op, BinOp::And | BinOp::Or) {
                    ScalarType::Bool
                } else {
                    a.ty()
                }
            }
            Expr::Select(_, a, _) => a.ty(),
        }
    }

    /// Calls `f` on this node and every node below it, parents before children.
    pub fn visit(&self, f: &mut impl FnMut(&Expr)) {
        f(self);
        match self {
            Expr::Int(_) | Expr::Float(_) | Expr::Axis(_) => {}
            Expr::Read { indices, .. } => indices.iter().for_each(|e| e.visit(f)),
            Expr::Unary(_, a) => a.visit(f),
            Expr::Binary(_, a, b) => {
                a.visit(f);
                b.visit(f);
            }
            Expr::Select(c, a, b) => {
                c.visit(f);
                a.visit(f);
                b.visit(f);
            }
        }
    }

    /// Rebuilds the tree bottom-up: `f` sees each node after its children were rebuilt and
    /// returns its replacement (or `None` to keep it).
    pub fn rewrite(&self, f: &mut impl FnMut(&Expr) -> Option<Expr>) -> Expr {
        let rebuilt = match self {
            Expr::Int(_) | Expr::Float(_) | Expr::Axis(_) => self.clone(),
            Expr::Read { tensor, indices } => Expr::Read {
                tensor: *tensor,
                indices: indices.iter().map(|e| e.rewrite(f)).collect(),
            },
            Expr::Unary(op, a) => Expr::unary(*op, a.rewrite(f)),
            Expr::Binary(op, a, b) => Expr::binary(*op, a.rewrite(f), b.rewrite(f)),
            Expr::Select(c, a, b) => Expr::select(c.rewrite(f), a.rewrite(f), b.rewrite(f)),
        };
        f(&rebuilt).unwrap_or(rebuilt)
    }

    /// Replaces `Axis(n)` by `axes[n]`.
    pub fn substitute_axes(&self, axes: &[Expr]) -> Expr {
        self.rewrite(&mut |e| match e {
            Expr::Axis(n) => axes.get(*n as usize).cloned(),
            _ => None,
        })
    }

    /// Every tensor read in this expression, in evaluation order.
    pub fn reads(&self) -> Vec<(OpId, &[Expr])> {
        let mut out = Vec::new();
        fn go<'a>(e: &'a Expr, out: &mut Vec<(OpId, &'a [Expr])>) {
            match e {
                Expr::Int(_) | Expr::Float(_) | Expr::Axis(_) => {}
                Expr::Read { tensor, indices } => {
                    out.push((*tensor, indices.as_slice()));
                    indices.iter().for_each(|i| go(i, out));
                }
                Expr::Unary(_, a) => go(a, out),
                Expr::Binary(_, a, b) => {
                    go(a, out);
                    go(b, out);
                }
                Expr::Select(c, a, b) => {
                    go(c, out);
                    go(a, out);
                    go(b, out);
                }
            }
        }
        go(self, &mut out);
        out
    }

    /// Prints with a naming function for axes and tensors.
    pub fn display<'a>(
        &'a self,
        axis_name: &'a dyn Fn(u32) -> String,
        tensor_name: &'a dyn Fn(OpId) -> String,
    ) -> impl fmt::Display + 'a {
        ExprDisplay {
            expr: self,
            axis_name,
            tensor_name,
        }
    }
}

struct ExprDisplay<'a> {
    expr: &'a Expr,
    axis_name: &'a dyn Fn(u32) -> String,
    tensor_name: &'a dyn Fn(OpId) -> String,
}

impl ExprDisplay<'_> {
    fn sub<'b>(&'b self, e: &'b Expr) -> ExprDisplay<'b> {
        ExprDisplay {
            expr: e,
            axis_name: self.axis_name,
            tensor_name: self.tensor_name,
        }
    }
}

/// Prints a float so that it reads back to the same value and always shows it is a float.
pub fn format_float(v: f32) -> String {
    if v == f32::MIN {
        "-3.4028235e38".to_string()
    } else if v.is_finite() && v == v.trunc() && v.abs() < 1e9 {
        format!("{v:.1}")
    } else {
        format!("{v:?}")
    }
}

impl fmt::Display for ExprDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.expr {
            Expr::Int(v) => write!(f, "{v}"),
            Expr::Float(v) => write!(f, "{}", format_float(*v)),
            Expr::Axis(n) => write!(f, "{}", (self.axis_name)(*n)),
            Expr::Read { tensor, indices } => {
                write!(f, "{}[", (self.tensor_name)(*tensor))?;
                for (k, i) in indices.iter().enumerate() {
                    if k > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{}", self.sub(i))?;
                }
                write!(f, "]")
            }
            Expr::Unary(UnOp::Neg, a) => write!(f, "(-{})", self.sub(a)),
            Expr::Unary(UnOp::Not, a) => write!(f, "(!{})", self.sub(a)),
            Expr::Unary(op, a) => write!(f, "{}({})", op.name(), self.sub(a)),
            Expr::Binary(op @ (BinOp::Min | BinOp::Max), a, b) => {
                write!(f, "{}({}, {})", op.symbol(), self.sub(a), self.sub(b))
            }
            Expr::Binary(op, a, b) => {
                write!(f, "({} {} {})", self.sub(a), op.symbol(), self.sub(b))
            }
            Expr::Select(c, a, b) => write!(
                f,
                "select({}, {}, {})",
                self.sub(c),
                self.sub(a),
                self.sub(b)
            ),
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let axis = |n: u32| format!("ax{n}");
        let tensor = |t: OpId| format!("T{}", t.0);
        let text = self.display(&axis, &tensor).to_string();
        f.write_str(&text)
    }
}

impl From<i64> for Expr {
    fn from(v: i64) -> Expr {
        Expr::Int(v)
    }
}

impl From<f32> for Expr {
    fn from(v: f32) -> Expr {
        Expr::Float(v)
    }
}

macro_rules! impl_bin {
    ($trait:ident, $method:ident, $op:expr) => {
        impl<T: Into<Expr>> std::ops::$trait<T> for Expr {
            type Output = Expr;
            fn $method(self, rhs: T) -> Expr {
                Expr::binary($op, self, rhs.into())
            }
        }
    };
}
impl_bin!(Add, add, BinOp::Add);
impl_bin!(Sub, sub, BinOp::Sub);
impl_bin!(Mul, mul, BinOp::Mul);
impl_bin!(Div, div, BinOp::Div);
impl_bin!(Rem, rem, BinOp::Mod);

impl std::ops::Neg for Expr {
    type Output = Expr;
    fn neg(self) -> Expr {
        Expr::unary(UnOp::Neg, self)
    }
}
