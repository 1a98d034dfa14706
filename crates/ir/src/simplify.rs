//! Simplification of index expressions with egg, using loop ranges as facts.
//!
//! Lowering a schedule with splits and fuses leaves index arithmetic such as
//! `(((f/8)/4)*4 + (f/8)%4)*8 + f%8` (which is just `f`) or `(i*4 + j)/4` with `j < 4`
//! (which is `i`). [`simplify`] rewrites one integer or boolean expression of a
//! [`LoopNest`] with a small, targeted rule set over an e-graph whose analysis carries, for
//! every e-class, an interval `[lo, hi]` of its possible values. Loop variables range over
//! `[0, extent - 1]`; an e-class whose interval is a single value becomes that constant
//! (this folds constants with checked arithmetic, decides comparisons such as `x < c` when
//! `max(x) < c`, and turns `x / c` into `0` when `0 <= x < c`). Div/mod rules are exact for
//! floor division and guarded by constant, positivity and interval conditions.
//! Commutativity and associativity are left out (CODEGEN.md measured them 10–30× slower);
//! instead, constants are moved to the right of `+` and `*` by a directed rule.
//!
//! [`simplify_nest`] simplifies every store index, load index and `If` condition of a nest
//! in place (memoized by [`ExprId`]), and [`int_bounds`] computes the interval of an integer
//! expression without egg. The interval arithmetic itself lives in [`crate::interval`].
//!
//! ```
//! use tessel_ir::expr::BinOp;
//! use tessel_ir::loop_nest::{Loop, LoopKind, LoopNest};
//! use tessel_ir::simplify::{int_bounds, simplify};
//! let mut nest = LoopNest::new("k");
//! let io = nest.add_loop(Loop { name: "io".into(), extent: 8, kind: LoopKind::Serial });
//! let ii = nest.add_loop(Loop { name: "ii".into(), extent: 4, kind: LoopKind::Serial });
//! let (io, ii, four) = (nest.var(io), nest.var(ii), nest.int(4));
//! let f = nest.binary(BinOp::Mul, io, four);
//! let f = nest.binary(BinOp::Add, f, ii);
//! let e = nest.binary(BinOp::Div, f, four);
//! assert_eq!(nest.expr_text(e), "(((io * 4) + ii) / 4)");
//! let s = simplify(&mut nest, e);
//! assert_eq!(nest.expr_text(s), "io");
//! assert_eq!(int_bounds(&nest, f), Some((0, 31)));
//! ```

use crate::expr::{BinOp, ScalarType, UnOp};
use crate::interval::{interval, loop_range, Interval};
use crate::loop_nest::{ExprId, LoopId, LoopNest, Node, Stmt, StmtId};
use egg::{
    define_language, rewrite, Analysis, AstSize, DidMerge, Id, Language, RecExpr, Rewrite, Subst,
};
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

/// E-graph iterations per expression.
const ITER_LIMIT: usize = 12;
/// E-graph node limit per expression.
const NODE_LIMIT: usize = 4_000;

/// The interval of an integer expression of `nest`, from the ranges `[0, extent - 1]` of its
/// loop variables, without egg. `None` when `e` is not an integer expression; a bound that
/// cannot be established is `i64::MIN` or `i64::MAX`.
pub fn int_bounds(nest: &LoopNest, e: ExprId) -> Option<(i64, i64)> {
    if e.index() >= nest.nodes().len() || nest.ty(e) != ScalarType::Int {
        return None;
    }
    let r = interval(nest, e, &HashMap::new());
    Some((r.lo, r.hi))
}

// ---------------------------------------------------------------------------------------
// The e-graph language and its interval analysis
// ---------------------------------------------------------------------------------------

/// A leaf that is not a constant: a loop variable, or a sub-expression the simplifier does
/// not look into (it keeps its [`ExprId`]), typed integer or boolean.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Leaf {
    Var(u32),
    OpaqueInt(u32),
    OpaqueBool(u32),
}

impl fmt::Display for Leaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Leaf::Var(n) => write!(f, "v{n}"),
            Leaf::OpaqueInt(n) => write!(f, "oi{n}"),
            Leaf::OpaqueBool(n) => write!(f, "ob{n}"),
        }
    }
}

impl FromStr for Leaf {
    type Err = ();
    fn from_str(s: &str) -> Result<Leaf, ()> {
        let num = |t: &str| t.parse::<u32>().map_err(|_| ());
        if let Some(t) = s.strip_prefix("oi") {
            Ok(Leaf::OpaqueInt(num(t)?))
        } else if let Some(t) = s.strip_prefix("ob") {
            Ok(Leaf::OpaqueBool(num(t)?))
        } else if let Some(t) = s.strip_prefix('v') {
            Ok(Leaf::Var(num(t)?))
        } else {
            Err(())
        }
    }
}

define_language! {
    /// Integer and boolean index expressions.
    enum Idx {
        Num(i64),
        Bool(bool),
        Leaf(Leaf),
        "+" = Add([Id; 2]),
        "-" = Sub([Id; 2]),
        "*" = Mul([Id; 2]),
        "/" = Div([Id; 2]),
        "%" = Mod([Id; 2]),
        "min" = Min([Id; 2]),
        "max" = Max([Id; 2]),
        "<" = Lt([Id; 2]),
        "<=" = Le([Id; 2]),
        "==" = Eq([Id; 2]),
        "!=" = Ne([Id; 2]),
        "&&" = And([Id; 2]),
        "||" = Or([Id; 2]),
        "neg" = Neg(Id),
        "!" = Not(Id),
        "select" = Select([Id; 3]),
    }
}

impl Idx {
    /// The binary operator of a binary node.
    fn bin_op(&self) -> Option<(BinOp, [Id; 2])> {
        Some(match self {
            Idx::Add(c) => (BinOp::Add, *c),
            Idx::Sub(c) => (BinOp::Sub, *c),
            Idx::Mul(c) => (BinOp::Mul, *c),
            Idx::Div(c) => (BinOp::Div, *c),
            Idx::Mod(c) => (BinOp::Mod, *c),
            Idx::Min(c) => (BinOp::Min, *c),
            Idx::Max(c) => (BinOp::Max, *c),
            Idx::Lt(c) => (BinOp::Lt, *c),
            Idx::Le(c) => (BinOp::Le, *c),
            Idx::Eq(c) => (BinOp::Eq, *c),
            Idx::Ne(c) => (BinOp::Ne, *c),
            Idx::And(c) => (BinOp::And, *c),
            Idx::Or(c) => (BinOp::Or, *c),
            _ => return None,
        })
    }

    fn from_bin(op: BinOp, c: [Id; 2]) -> Idx {
        match op {
            BinOp::Add => Idx::Add(c),
            BinOp::Sub => Idx::Sub(c),
            BinOp::Mul => Idx::Mul(c),
            BinOp::Div => Idx::Div(c),
            BinOp::Mod => Idx::Mod(c),
            BinOp::Min => Idx::Min(c),
            BinOp::Max => Idx::Max(c),
            BinOp::Lt => Idx::Lt(c),
            BinOp::Le => Idx::Le(c),
            BinOp::Eq => Idx::Eq(c),
            BinOp::Ne => Idx::Ne(c),
            BinOp::And => Idx::And(c),
            BinOp::Or => Idx::Or(c),
        }
    }
}

/// What the analysis knows about an e-class.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Facts {
    range: Interval,
    is_bool: bool,
}

/// The interval analysis: loop variable `n` ranges over `var_ranges[n]`.
#[derive(Default)]
struct Intervals {
    var_ranges: Vec<Interval>,
}

type EGraph = egg::EGraph<Idx, Intervals>;

impl Analysis<Idx> for Intervals {
    type Data = Facts;

    fn make(egraph: &mut EGraph, enode: &Idx, _id: Id) -> Facts {
        let d = |i: &Id| egraph[*i].data;
        match enode {
            Idx::Num(v) => Facts {
                range: Interval::point(*v),
                is_bool: false,
            },
            Idx::Bool(b) => Facts {
                range: Interval::of_bool(*b),
                is_bool: true,
            },
            Idx::Leaf(Leaf::Var(n)) => Facts {
                range: egraph
                    .analysis
                    .var_ranges
                    .get(*n as usize)
                    .copied()
                    .unwrap_or(Interval::FULL),
                is_bool: false,
            },
            Idx::Leaf(Leaf::OpaqueInt(_)) => Facts {
                range: Interval::FULL,
                is_bool: false,
            },
            Idx::Leaf(Leaf::OpaqueBool(_)) => Facts {
                range: Interval::BOOL,
                is_bool: true,
            },
            Idx::Neg(a) => {
                let a = d(a).range;
                Facts {
                    range: -a,
                    is_bool: false,
                }
            }
            Idx::Not(a) => Facts {
                range: !d(a).range,
                is_bool: true,
            },
            Idx::Select([c, a, b]) => {
                let (c, a, b) = (d(c), d(a), d(b));
                let range = match c.range.konst() {
                    Some(1) => a.range,
                    Some(0) => b.range,
                    _ => a.range.join(b.range),
                };
                Facts {
                    range,
                    is_bool: a.is_bool,
                }
            }
            other => match other.bin_op() {
                Some((op, [a, b])) => Facts {
                    range: d(&a).range.binary(op, d(&b).range),
                    is_bool: op.is_comparison() || matches!(op, BinOp::And | BinOp::Or),
                },
                None => Facts {
                    range: Interval::FULL,
                    is_bool: false,
                },
            },
        }
    }

    fn merge(&mut self, a: &mut Facts, b: Facts) -> DidMerge {
        let both = a.range.meet(b.range);
        let changed_a = both != a.range;
        let changed_b = both != b.range;
        a.range = both;
        DidMerge(changed_a, changed_b)
    }

    fn modify(egraph: &mut EGraph, id: Id) {
        let facts = egraph[id].data;
        if let Some(v) = facts.range.konst() {
            let leaf = if facts.is_bool {
                Idx::Bool(v != 0)
            } else {
                Idx::Num(v)
            };
            let c = egraph.add(leaf);
            egraph.union(id, c);
            // Only the constant matters now.
            egraph[id].nodes.retain(|n| n.is_leaf());
        }
    }
}

// ---------------------------------------------------------------------------------------
// Rules
// ---------------------------------------------------------------------------------------

fn var(name: &str) -> egg::Var {
    // Only called with the literal names below, which always parse.
    name.parse()
        .unwrap_or_else(|_| unreachable!("bad pattern variable {name}"))
}

fn range(eg: &EGraph, s: &Subst, v: egg::Var) -> Interval {
    eg[s[v]].data.range
}

fn konst(eg: &EGraph, s: &Subst, v: egg::Var) -> Option<i64> {
    range(eg, s, v).konst()
}

type Cond = Box<dyn Fn(&mut EGraph, Id, &Subst) -> bool + Send + Sync>;

/// `?c` cannot be zero.
fn nonzero(c: &str) -> Cond {
    let c = var(c);
    Box::new(move |eg, _, s| {
        let r = range(eg, s, c);
        r.lo > 0 || r.hi < 0
    })
}

/// `?c1` and `?c2` are constants with `f(c1, c2)`.
fn consts2(c1: &str, c2: &str, f: fn(i64, i64) -> bool) -> Cond {
    let (c1, c2) = (var(c1), var(c2));
    Box::new(move |eg, _, s| match (konst(eg, s, c1), konst(eg, s, c2)) {
        (Some(a), Some(b)) => f(a, b),
        _ => false,
    })
}

/// `?c` is a constant and `?x` is not.
fn const_and_var(c: &str, x: &str) -> Cond {
    let (c, x) = (var(c), var(x));
    Box::new(move |eg, _, s| konst(eg, s, c).is_some() && konst(eg, s, x).is_none())
}

/// `?c1 > 0`, `?c2 % ?c1 == 0`, `?c2 > 0` and `0 <= ?b < ?c1` (splitting a product by a
/// multiple of its factor).
fn split_multiple() -> Cond {
    let (c1, c2, b) = (var("?c1"), var("?c2"), var("?b"));
    Box::new(move |eg, _, s| match (konst(eg, s, c1), konst(eg, s, c2)) {
        (Some(c1), Some(c2)) if c1 > 0 && c2 > 0 && c2 % c1 == 0 => {
            let r = range(eg, s, b);
            r.lo >= 0 && r.hi < c1
        }
        _ => false,
    })
}

/// `0 <= ?x < ?c` with a constant `?c`.
fn within(x: &str, c: &str) -> Cond {
    let (x, c) = (var(x), var(c));
    Box::new(move |eg, _, s| match konst(eg, s, c) {
        Some(c) => {
            let r = range(eg, s, x);
            r.lo >= 0 && r.hi < c
        }
        None => false,
    })
}

/// `?x <= ?y` for every value.
fn le(x: &str, y: &str) -> Cond {
    let (x, y) = (var(x), var(y));
    Box::new(move |eg, _, s| range(eg, s, x).hi <= range(eg, s, y).lo)
}

/// `?c`, `?c2` and `?s` are constants with `?c != 0` and `?c2 == ?c * ?s`.
fn scaled_pair() -> Cond {
    let (c, c2, sc) = (var("?c"), var("?c2"), var("?s"));
    Box::new(
        move |eg, _, s| match (konst(eg, s, c), konst(eg, s, c2), konst(eg, s, sc)) {
            (Some(c), Some(c2), Some(k)) => c != 0 && c.checked_mul(k) == Some(c2),
            _ => false,
        },
    )
}

fn divides(a: i64, b: i64) -> bool {
    a != 0 && b % a == 0
}

/// The targeted rule set (built once). Every rule is exact for floor division and modulo
/// under its guard; constants appearing on right-hand sides (`(/ ?c1 ?c2)`, `(* ?a ?b)`) are
/// folded by the analysis.
fn rules() -> &'static [Rewrite<Idx, Intervals>] {
    static RULES: OnceLock<Vec<Rewrite<Idx, Intervals>>> = OnceLock::new();
    RULES.get_or_init(|| {
        vec![
            // Identities.
            rewrite!("add-0"; "(+ ?x 0)" => "?x"),
            rewrite!("sub-0"; "(- ?x 0)" => "?x"),
            rewrite!("mul-1"; "(* ?x 1)" => "?x"),
            rewrite!("div-1"; "(/ ?x 1)" => "?x"),
            rewrite!("sub-self"; "(- ?x ?x)" => "0"),
            // Constants to the right (directed, instead of commutativity).
            rewrite!("add-const-right"; "(+ ?c ?x)" => "(+ ?x ?c)" if const_and_var("?c", "?x")),
            rewrite!("mul-const-right"; "(* ?c ?x)" => "(* ?x ?c)" if const_and_var("?c", "?x")),
            rewrite!("add-consts"; "(+ (+ ?x ?c1) ?c2)" => "(+ ?x (+ ?c1 ?c2))"
                if consts2("?c1", "?c2", |_, _| true)),
            rewrite!("mul-consts"; "(* (* ?x ?c1) ?c2)" => "(* ?x (* ?c1 ?c2))"
                if consts2("?c1", "?c2", |a, b| a.checked_mul(b).is_some())),
            // Split then fuse: (x/c)*c + x%c = x.
            rewrite!("div-mod-fuse"; "(+ (* (/ ?x ?c) ?c) (% ?x ?c))" => "?x" if nonzero("?c")),
            rewrite!("mod-div-fuse"; "(+ (% ?x ?c) (* (/ ?x ?c) ?c))" => "?x" if nonzero("?c")),
            // Scaled: (x/c)*(c*s) + (x%c)*s = x*s (a fused loop over parents that are
            // contiguous in a buffer with stride s), and with an offset on the outer parent,
            // ((x/c) + w)*c + x%c = x + w*c, as lowering flattens indices.
            rewrite!("div-mod-fuse-scaled"; "(+ (* (/ ?x ?c) ?c2) (* (% ?x ?c) ?s))" => "(* ?x ?s)"
                if scaled_pair()),
            rewrite!("mod-div-fuse-scaled"; "(+ (* (% ?x ?c) ?s) (* (/ ?x ?c) ?c2))" => "(* ?x ?s)"
                if scaled_pair()),
            rewrite!("div-off-mod-fuse"; "(+ (* (+ (/ ?x ?c) ?w) ?c) (% ?x ?c))" => "(+ ?x (* ?w ?c))"
                if nonzero("?c")),
            rewrite!("off-div-mod-fuse"; "(+ (* (+ ?w (/ ?x ?c)) ?c) (% ?x ?c))" => "(+ (* ?w ?c) ?x)"
                if nonzero("?c")),
            // (a*c1 + b) / c2 = a*(c1/c2) + b/c2 when c2 | c1 (exact for floor division).
            rewrite!("div-mul-add"; "(/ (+ (* ?a ?c1) ?b) ?c2)" => "(+ (* ?a (/ ?c1 ?c2)) (/ ?b ?c2))"
                if consts2("?c2", "?c1", divides)),
            rewrite!("div-add-mul"; "(/ (+ ?b (* ?a ?c1)) ?c2)" => "(+ (* ?a (/ ?c1 ?c2)) (/ ?b ?c2))"
                if consts2("?c2", "?c1", divides)),
            rewrite!("div-mul"; "(/ (* ?a ?c1) ?c2)" => "(* ?a (/ ?c1 ?c2))"
                if consts2("?c2", "?c1", divides)),
            // (a*c1 + b) % c2 = b % c2 when c2 | c1.
            rewrite!("mod-mul-add"; "(% (+ (* ?a ?c1) ?b) ?c2)" => "(% ?b ?c2)"
                if consts2("?c2", "?c1", divides)),
            rewrite!("mod-add-mul"; "(% (+ ?b (* ?a ?c1)) ?c2)" => "(% ?b ?c2)"
                if consts2("?c2", "?c1", divides)),
            rewrite!("mod-mul"; "(% (* ?a ?c1) ?c2)" => "0" if consts2("?c2", "?c1", divides)),
            // (a*c1 + b) / c2 = a / (c2/c1) and (a*c1 + b) % c2 = (a % (c2/c1))*c1 + b when
            // c1 | c2 and 0 <= b < c1 (an inner split of a fused index).
            rewrite!("div-split-multiple"; "(/ (+ (* ?a ?c1) ?b) ?c2)" => "(/ ?a (/ ?c2 ?c1))"
                if split_multiple()),
            rewrite!("mod-split-multiple"; "(% (+ (* ?a ?c1) ?b) ?c2)"
                => "(+ (* (% ?a (/ ?c2 ?c1)) ?c1) ?b)" if split_multiple()),
            // x % c = x when 0 <= x < c (x / c = 0 follows from the intervals).
            rewrite!("mod-within"; "(% ?x ?c)" => "?x" if within("?x", "?c")),
            // (x/a)/b = x/(a*b) for a, b > 0.
            rewrite!("div-div"; "(/ (/ ?x ?a) ?b)" => "(/ ?x (* ?a ?b))"
                if consts2("?a", "?b", |a, b| a > 0 && b > 0 && a.checked_mul(b).is_some())),
            // (x % m) / b = (x / b) % (m / b) and (x % m) % b = x % b when b | m, b, m > 0.
            rewrite!("mod-then-div"; "(/ (% ?x ?m) ?b)" => "(% (/ ?x ?b) (/ ?m ?b))"
                if consts2("?b", "?m", |b, m| b > 0 && m > 0 && m % b == 0)),
            rewrite!("mod-mod"; "(% (% ?x ?m) ?b)" => "(% ?x ?b)"
                if consts2("?b", "?m", |b, m| b > 0 && m > 0 && m % b == 0)),
            // min/max decided by intervals.
            rewrite!("min-left"; "(min ?x ?y)" => "?x" if le("?x", "?y")),
            rewrite!("min-right"; "(min ?x ?y)" => "?y" if le("?y", "?x")),
            rewrite!("max-left"; "(max ?x ?y)" => "?x" if le("?y", "?x")),
            rewrite!("max-right"; "(max ?x ?y)" => "?y" if le("?x", "?y")),
            // Logic with decided operands (false && x, true || x fold by intervals).
            rewrite!("and-true-l"; "(&& true ?x)" => "?x"),
            rewrite!("and-true-r"; "(&& ?x true)" => "?x"),
            rewrite!("or-false-l"; "(|| false ?x)" => "?x"),
            rewrite!("or-false-r"; "(|| ?x false)" => "?x"),
            rewrite!("select-true"; "(select true ?a ?b)" => "?a"),
            rewrite!("select-false"; "(select false ?a ?b)" => "?b"),
            rewrite!("not-not"; "(! (! ?x))" => "?x"),
            rewrite!("neg-neg"; "(neg (neg ?x))" => "?x"),
        ]
    })
}

// ---------------------------------------------------------------------------------------
// Conversion between the loop nest and egg
// ---------------------------------------------------------------------------------------

/// Translates `e` into `rec`, returning its id there.
fn to_rec(
    nest: &LoopNest,
    e: ExprId,
    rec: &mut RecExpr<Idx>,
    memo: &mut HashMap<ExprId, Id>,
) -> Id {
    if let Some(&id) = memo.get(&e) {
        return id;
    }
    let opaque = |nest: &LoopNest| {
        if nest.ty(e) == ScalarType::Bool {
            Idx::Leaf(Leaf::OpaqueBool(e.0))
        } else {
            Idx::Leaf(Leaf::OpaqueInt(e.0))
        }
    };
    let node = match nest.get(e) {
        Node::Int(v) => Idx::Num(v),
        Node::Var(l) => Idx::Leaf(Leaf::Var(l.0)),
        Node::Unary(UnOp::Neg, a) if nest.ty(a) == ScalarType::Int => {
            Idx::Neg(to_rec(nest, a, rec, memo))
        }
        Node::Unary(UnOp::Not, a) => Idx::Not(to_rec(nest, a, rec, memo)),
        Node::Binary(op, a, b) if nest.ty(a) != ScalarType::Float => {
            let a = to_rec(nest, a, rec, memo);
            let b = to_rec(nest, b, rec, memo);
            Idx::from_bin(op, [a, b])
        }
        Node::Select(c, a, b) if nest.ty(a) != ScalarType::Float => {
            let c = to_rec(nest, c, rec, memo);
            let a = to_rec(nest, a, rec, memo);
            let b = to_rec(nest, b, rec, memo);
            Idx::Select([c, a, b])
        }
        _ => opaque(nest),
    };
    let id = rec.add(node);
    memo.insert(e, id);
    id
}

/// The nest's spelling of a boolean constant: `(0 == 0)` or `(0 != 0)` (the loop IR has no
/// boolean literal).
pub fn bool_const(nest: &mut LoopNest, b: bool) -> ExprId {
    let zero = nest.int(0);
    let op = if b { BinOp::Eq } else { BinOp::Ne };
    nest.node(Node::Binary(op, zero, zero))
}

/// The value of `e` when it compares two integer constants (as [`bool_const`] makes).
pub fn as_bool_const(nest: &LoopNest, e: ExprId) -> Option<bool> {
    match nest.get(e) {
        Node::Binary(op, a, b) if op.is_comparison() => match (nest.get(a), nest.get(b)) {
            (Node::Int(x), Node::Int(y)) => Some(match op {
                BinOp::Lt => x < y,
                BinOp::Le => x <= y,
                BinOp::Eq => x == y,
                _ => x != y,
            }),
            _ => None,
        },
        _ => None,
    }
}

/// Builds `rec` back into `nest`.
fn from_rec(nest: &mut LoopNest, rec: &RecExpr<Idx>) -> Option<ExprId> {
    let mut ids: Vec<ExprId> = Vec::with_capacity(rec.len());
    for node in rec.iter() {
        let get = |i: &Id| ids[usize::from(*i)];
        let id = match node {
            Idx::Num(v) => nest.int(*v),
            Idx::Bool(b) => bool_const(nest, *b),
            Idx::Leaf(Leaf::Var(n)) => nest.var(LoopId(*n)),
            Idx::Leaf(Leaf::OpaqueInt(n) | Leaf::OpaqueBool(n)) => ExprId(*n),
            Idx::Neg(a) => {
                let a = get(a);
                nest.node(Node::Unary(UnOp::Neg, a))
            }
            Idx::Not(a) => {
                let a = get(a);
                nest.node(Node::Unary(UnOp::Not, a))
            }
            Idx::Select([c, a, b]) => {
                let (c, a, b) = (get(c), get(a), get(b));
                nest.node(Node::Select(c, a, b))
            }
            other => {
                let (op, [a, b]) = other.bin_op()?;
                let (a, b) = (get(&a), get(&b));
                nest.binary(op, a, b)
            }
        };
        ids.push(id);
    }
    ids.last().copied()
}

// ---------------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------------

/// Simplifies the integer or boolean expression `e` of `nest`, using the ranges
/// `[0, extent - 1]` of the loop variables, and returns the simplified expression (new
/// nodes are added to `nest`). Returns `e` itself when nothing smaller was found, and for
/// float expressions (see [`simplify_nest`] for those).
///
/// A boolean that becomes constant is spelled as [`bool_const`] makes it.
pub fn simplify(nest: &mut LoopNest, e: ExprId) -> ExprId {
    if e.index() >= nest.nodes().len() || nest.ty(e) == ScalarType::Float {
        return e;
    }
    // Fast path: without division or modulo an index is an affine sum that node
    // construction has already folded, and a condition over such sums is decided (or not)
    // by interval bounds alone; the e-graph is needed only for div/mod.
    if !has_div_mod(nest, e) {
        return decide_by_bounds(nest, e);
    }
    let mut rec = RecExpr::default();
    let mut memo = HashMap::new();
    let root = to_rec(nest, e, &mut rec, &mut memo);
    let analysis = Intervals {
        var_ranges: (0..nest.loops.len())
            .map(|l| loop_range(nest, LoopId(l as u32)))
            .collect(),
    };
    let input_size = tree_size(&rec, root);
    let (egraph, class) = saturate(analysis, &rec);
    let extractor = egg::Extractor::new(&egraph, AstSize);
    let (cost, best) = extractor.find_best(class);
    if cost >= input_size {
        return e;
    }
    from_rec(nest, &best).unwrap_or(e)
}

/// Runs the rules on `rec` until nothing changes, the root class holds a leaf (nothing can
/// be smaller), or a limit is hit. A plain loop instead of `egg::Runner`: on these tiny
/// e-graphs the runner's per-iteration bookkeeping costs more than the search itself.
fn saturate(analysis: Intervals, rec: &RecExpr<Idx>) -> (EGraph, Id) {
    let mut egraph = EGraph::new(analysis);
    let root = egraph.add_expr(rec);
    egraph.rebuild();
    let rules = rules();
    let mut matches = Vec::with_capacity(rules.len());
    for _ in 0..ITER_LIMIT {
        if egraph[egraph.find(root)].nodes.iter().any(|n| n.is_leaf()) {
            break;
        }
        matches.clear();
        matches.extend(rules.iter().map(|r| r.search(&egraph)));
        let mut changed = false;
        for (rule, m) in rules.iter().zip(&matches) {
            if !m.is_empty() {
                changed |= !rule.apply(&mut egraph, m).is_empty();
            }
        }
        egraph.rebuild();
        if !changed || egraph.total_number_of_nodes() > NODE_LIMIT {
            break;
        }
    }
    let root = egraph.find(root);
    (egraph, root)
}

/// AST size of the tree rooted at `root` (shared sub-expressions counted each time).
fn tree_size(rec: &RecExpr<Idx>, root: Id) -> usize {
    let mut sizes: Vec<usize> = Vec::with_capacity(rec.len());
    for node in rec.iter() {
        let s = 1 + node
            .children()
            .iter()
            .map(|c| sizes[usize::from(*c)])
            .sum::<usize>();
        sizes.push(s);
    }
    sizes[usize::from(root)]
}

/// Simplifies, in place, every store index, every load index (inside stored values and
/// conditions) and every `If` condition of `nest`. Results are memoized by [`ExprId`]. The
/// structure of float values is kept; only loads are rebuilt with their simplified index.
/// An `If` whose condition becomes true is replaced by its body, and one whose condition
/// becomes false is removed.
pub fn simplify_nest(nest: &mut LoopNest) {
    let mut s = NestSimplifier {
        index_memo: HashMap::new(),
        value_memo: HashMap::new(),
        light: false,
    };
    let body = std::mem::take(&mut nest.body);
    nest.body = s.block(nest, body);
}

/// Like [`simplify_nest`] but without the e-graph: constants are folded, and conditions
/// decided by interval bounds (guards that always hold are unwrapped, those that never hold
/// removed). Lowering uses it after simplifying the few expressions where splits and fuses
/// meet (each stage's axis values) with the e-graph, which is much cheaper than running the
/// e-graph on every index.
pub fn simplify_nest_light(nest: &mut LoopNest) {
    let mut s = NestSimplifier {
        index_memo: HashMap::new(),
        value_memo: HashMap::new(),
        light: true,
    };
    let body = std::mem::take(&mut nest.body);
    nest.body = s.block(nest, body);
}

struct NestSimplifier {
    index_memo: HashMap<ExprId, ExprId>,
    value_memo: HashMap<ExprId, ExprId>,
    light: bool,
}

impl NestSimplifier {
    fn index(&mut self, nest: &mut LoopNest, e: ExprId) -> ExprId {
        if let Some(&r) = self.index_memo.get(&e) {
            return r;
        }
        let r = if self.light {
            decide_by_bounds(nest, e)
        } else {
            simplify(nest, e)
        };
        self.index_memo.insert(e, r);
        r
    }

    /// Rebuilds `e` with every load index simplified, keeping all other structure.
    fn value(&mut self, nest: &mut LoopNest, e: ExprId) -> ExprId {
        if let Some(&r) = self.value_memo.get(&e) {
            return r;
        }
        let node = nest.get(e);
        let rebuilt = match node {
            Node::Int(_) | Node::Float(_) | Node::Var(_) => node,
            Node::Load(b, i) => Node::Load(b, self.index(nest, i)),
            Node::Unary(op, a) => Node::Unary(op, self.value(nest, a)),
            Node::Binary(op, a, b) => Node::Binary(op, self.value(nest, a), self.value(nest, b)),
            Node::Select(c, a, b) => Node::Select(
                self.value(nest, c),
                self.value(nest, a),
                self.value(nest, b),
            ),
        };
        let r = if rebuilt == node {
            e
        } else {
            nest.node(rebuilt)
        };
        self.value_memo.insert(e, r);
        r
    }

    fn block(&mut self, nest: &mut LoopNest, body: Vec<StmtId>) -> Vec<StmtId> {
        let mut out = Vec::with_capacity(body.len());
        for id in body {
            let Some(stmt) = nest.stmts.get(id.index()).cloned() else {
                out.push(id);
                continue;
            };
            let new = match stmt {
                Stmt::For {
                    lp,
                    body,
                    auto_unroll_max_step,
                } => Stmt::For {
                    lp,
                    body: self.block(nest, body),
                    auto_unroll_max_step,
                },
                Stmt::If { cond, body } => {
                    let cond = self.index(nest, cond);
                    let body = self.block(nest, body);
                    match as_bool_const(nest, cond) {
                        Some(true) => {
                            out.extend(body);
                            continue;
                        }
                        Some(false) => continue,
                        None => Stmt::If { cond, body },
                    }
                }
                Stmt::Alloc { buf, body } => Stmt::Alloc {
                    buf,
                    body: self.block(nest, body),
                },
                Stmt::Store { buf, index, value } => Stmt::Store {
                    buf,
                    index: self.index(nest, index),
                    value: self.value(nest, value),
                },
            };
            nest.stmts[id.index()] = new;
            out.push(id);
        }
        out
    }
}

/// True when `e` contains an integer division, modulo, min or max (what needs the e-graph).
fn has_div_mod(nest: &LoopNest, e: ExprId) -> bool {
    match nest.get(e) {
        Node::Binary(BinOp::Div | BinOp::Mod | BinOp::Min | BinOp::Max, a, _)
            if nest.ty(a) == ScalarType::Int =>
        {
            true
        }
        Node::Binary(_, a, b) => has_div_mod(nest, a) || has_div_mod(nest, b),
        Node::Unary(_, a) => has_div_mod(nest, a),
        Node::Select(c, a, b) => {
            has_div_mod(nest, c) || has_div_mod(nest, a) || has_div_mod(nest, b)
        }
        Node::Load(_, i) => has_div_mod(nest, i),
        Node::Int(_) | Node::Float(_) | Node::Var(_) => false,
    }
}

/// Decides comparisons of integers by their interval bounds and folds `&&`, `||` and `!`
/// of decided conditions; anything else is returned unchanged.
fn decide_by_bounds(nest: &mut LoopNest, e: ExprId) -> ExprId {
    if nest.ty(e) == ScalarType::Int {
        // A constant in disguise (e.g. nodes built without folding).
        return match int_bounds(nest, e) {
            Some((lo, hi)) if lo == hi && lo != i64::MIN && lo != i64::MAX => nest.int(lo),
            _ => e,
        };
    }
    match nest.get(e) {
        Node::Binary(op, a, b) if op.is_comparison() && nest.ty(a) == ScalarType::Int => {
            let (Some((alo, ahi)), Some((blo, bhi))) = (int_bounds(nest, a), int_bounds(nest, b))
            else {
                return e;
            };
            let decided = match op {
                BinOp::Lt if ahi < blo => Some(true),
                BinOp::Lt if alo >= bhi => Some(false),
                BinOp::Le if ahi <= blo => Some(true),
                BinOp::Le if alo > bhi => Some(false),
                BinOp::Eq if alo == ahi && blo == bhi => Some(alo == blo),
                BinOp::Eq | BinOp::Ne if ahi < blo || bhi < alo => Some(op == BinOp::Ne),
                BinOp::Ne if alo == ahi && blo == bhi => Some(alo != blo),
                _ => None,
            };
            decided.map_or(e, |v| bool_const(nest, v))
        }
        Node::Binary(op @ (BinOp::And | BinOp::Or), a, b) => {
            let (a, b) = (decide_by_bounds(nest, a), decide_by_bounds(nest, b));
            match (op, as_bool_const(nest, a), as_bool_const(nest, b)) {
                (BinOp::And, Some(false), _) | (BinOp::And, _, Some(false)) => {
                    bool_const(nest, false)
                }
                (BinOp::Or, Some(true), _) | (BinOp::Or, _, Some(true)) => bool_const(nest, true),
                (BinOp::And, Some(true), _) | (BinOp::Or, Some(false), _) => b,
                (BinOp::And, _, Some(true)) | (BinOp::Or, _, Some(false)) => a,
                _ => nest.binary(op, a, b),
            }
        }
        Node::Unary(crate::expr::UnOp::Not, a) => {
            let a = decide_by_bounds(nest, a);
            match as_bool_const(nest, a) {
                Some(v) => bool_const(nest, !v),
                None => nest.node(Node::Unary(crate::expr::UnOp::Not, a)),
            }
        }
        _ => e,
    }
}
