//! Affine forms of loop-nest index expressions: the one decomposition of an integer
//! expression into `konst + Σ coef·term` that tensorization ([`crate::tensorize`]), code
//! generation (strides, address arithmetic, vectorization, packing) and the cost model's
//! access analysis share.
//!
//! A term is a loop variable ([`Term::Var`]) or an *atom* ([`Term::Atom`]): a sub-expression
//! that is not affine (a division, a modulo, a product of two variables, a load, ...), taken
//! as an opaque integer. `+`, `-`, negation and products with a constant are looked through;
//! equal terms are merged and zero coefficients dropped. [`Affine::of`] fails only on `i64`
//! overflow of a coefficient or the constant; [`Affine::of_or_atom`] then takes the whole
//! expression as one atom.
//!
//! ```
//! use tessel_ir::affine::{Affine, Term};
//! use tessel_ir::expr::BinOp;
//! use tessel_ir::loop_nest::{Loop, LoopKind, LoopNest};
//! let mut nest = LoopNest::new("k");
//! let i = nest.add_loop(Loop { name: "i".into(), extent: 8, kind: LoopKind::Serial });
//! let j = nest.add_loop(Loop { name: "j".into(), extent: 8, kind: LoopKind::Serial });
//! let (vi, vj, four, three) = (nest.var(i), nest.var(j), nest.int(4), nest.int(3));
//! let row = nest.binary(BinOp::Mul, vi, four);
//! let q = nest.binary(BinOp::Div, vj, four);
//! let e = nest.binary(BinOp::Add, row, q);
//! let e = nest.binary(BinOp::Sub, e, three);
//! let f = Affine::of(&nest, e).unwrap();
//! assert_eq!(f.konst, -3);
//! assert_eq!(f.coef(i), 4);
//! assert_eq!(f.terms, vec![(Term::Var(i), 4), (Term::Atom(q), 1)]);
//! // `j` appears only inside the atom `j / 4`: no constant stride.
//! assert_eq!(f.stride(&nest, i), Some(4));
//! assert_eq!(f.stride(&nest, j), None);
//! ```

use crate::expr::{BinOp, UnOp};
use crate::loop_nest::{ExprId, LoopId, LoopNest, Node};

/// A term of an affine form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Term {
    /// A loop variable.
    Var(LoopId),
    /// A non-affine sub-expression, taken as an opaque integer.
    Atom(ExprId),
}

/// `konst + Σ coef·term`, with distinct terms and non-zero coefficients (in the order the
/// terms first appear, left to right).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Affine {
    /// The terms and their coefficients.
    pub terms: Vec<(Term, i64)>,
    /// The constant part.
    pub konst: i64,
}

impl Affine {
    /// The affine form of integer expression `e`; `None` when a coefficient or the constant
    /// overflows `i64`.
    pub fn of(nest: &LoopNest, e: ExprId) -> Option<Affine> {
        let mut f = Affine::default();
        f.add(nest, e, 1)?;
        f.terms.retain(|&(_, c)| c != 0);
        Some(f)
    }

    /// [`Affine::of`], or the whole of `e` as one atom when that overflows.
    pub fn of_or_atom(nest: &LoopNest, e: ExprId) -> Affine {
        Affine::of(nest, e).unwrap_or_else(|| Affine {
            terms: vec![(Term::Atom(e), 1)],
            konst: 0,
        })
    }

    /// Adds `scale · e` to `self`.
    fn add(&mut self, nest: &LoopNest, e: ExprId, scale: i64) -> Option<()> {
        match nest.get(e) {
            Node::Int(c) => self.konst = self.konst.checked_add(c.checked_mul(scale)?)?,
            Node::Var(l) => self.add_term(Term::Var(l), scale)?,
            Node::Binary(BinOp::Add, a, b) => {
                self.add(nest, a, scale)?;
                self.add(nest, b, scale)?;
            }
            Node::Binary(BinOp::Sub, a, b) => {
                self.add(nest, a, scale)?;
                self.add(nest, b, scale.checked_neg()?)?;
            }
            Node::Unary(UnOp::Neg, a) => self.add(nest, a, scale.checked_neg()?)?,
            Node::Binary(BinOp::Mul, a, b) => match (nest.get(a), nest.get(b)) {
                (_, Node::Int(c)) => self.add(nest, a, scale.checked_mul(c)?)?,
                (Node::Int(c), _) => self.add(nest, b, scale.checked_mul(c)?)?,
                _ => self.add_term(Term::Atom(e), scale)?,
            },
            _ => self.add_term(Term::Atom(e), scale)?,
        }
        Some(())
    }

    fn add_term(&mut self, t: Term, c: i64) -> Option<()> {
        match self.terms.iter_mut().find(|(x, _)| *x == t) {
            Some(slot) => slot.1 = slot.1.checked_add(c)?,
            None => self.terms.push((t, c)),
        }
        Some(())
    }

    /// The coefficient of loop variable `l` as a term (0 when it is not one); see
    /// [`Affine::stride`] for whether `l` also hides in an atom.
    pub fn coef(&self, l: LoopId) -> i64 {
        self.terms
            .iter()
            .find(|(t, _)| *t == Term::Var(l))
            .map_or(0, |&(_, c)| c)
    }

    /// The stride of the expression in loop variable `l`: its coefficient (0 when the
    /// expression does not depend on `l`), or `None` when an atom uses `l` (the expression
    /// is not affine in it).
    pub fn stride(&self, nest: &LoopNest, l: LoopId) -> Option<i64> {
        self.stride_with(l, |a| uses_var(nest, a, l))
    }

    /// [`Affine::stride`] with the caller's test of whether an atom uses `l` (code generation
    /// answers it from a precomputed table).
    pub fn stride_with(&self, l: LoopId, atom_uses: impl Fn(ExprId) -> bool) -> Option<i64> {
        let mut coef = 0;
        for &(t, c) in &self.terms {
            match t {
                Term::Var(v) if v == l => coef = c,
                Term::Atom(a) if atom_uses(a) => return None,
                _ => {}
            }
        }
        Some(coef)
    }
}

/// True when expression `e` uses loop variable `l` (through any node, loads included).
pub fn uses_var(nest: &LoopNest, e: ExprId, l: LoopId) -> bool {
    match nest.get(e) {
        Node::Var(v) => v == l,
        Node::Int(_) | Node::Float(_) => false,
        Node::Load(_, a) | Node::Unary(_, a) => uses_var(nest, a, l),
        Node::Binary(_, a, b) => uses_var(nest, a, l) || uses_var(nest, b, l),
        Node::Select(c, a, b) => {
            uses_var(nest, c, l) || uses_var(nest, a, l) || uses_var(nest, b, l)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loop_nest::{Loop, LoopKind};

    fn nest2() -> (LoopNest, LoopId, LoopId) {
        let mut nest = LoopNest::new("t");
        let mut add = |name: &str| {
            nest.add_loop(Loop {
                name: name.into(),
                extent: 16,
                kind: LoopKind::Serial,
            })
        };
        let (i, j) = (add("i"), add("j"));
        (nest, i, j)
    }

    #[test]
    fn sums_differences_negations_and_constant_products_are_looked_through() {
        let (mut nest, i, j) = nest2();
        let (vi, vj, two, five) = (nest.var(i), nest.var(j), nest.int(2), nest.int(5));
        // 5 - ((i + j) * 2 - i) = 5 - i - 2j
        let s = nest.binary(BinOp::Add, vi, vj);
        let s = nest.binary(BinOp::Mul, s, two);
        let s = nest.binary(BinOp::Sub, s, vi);
        let e = nest.binary(BinOp::Sub, five, s);
        let f = Affine::of(&nest, e).unwrap();
        assert_eq!(f.konst, 5);
        assert_eq!((f.coef(i), f.coef(j)), (-1, -2));
        let n = nest.node(Node::Unary(UnOp::Neg, vj));
        assert_eq!(Affine::of(&nest, n).unwrap().coef(j), -1);
    }

    #[test]
    fn cancelled_terms_are_dropped_and_atoms_block_strides() {
        let (mut nest, i, j) = nest2();
        let (vi, vj) = (nest.var(i), nest.var(j));
        // Built without the folding of `LoopNest::binary`, which would cancel `i` itself.
        let e = nest.node(Node::Binary(BinOp::Add, vi, vj));
        let e = nest.node(Node::Binary(BinOp::Sub, e, vi));
        assert_eq!(Affine::of(&nest, e).unwrap().terms, vec![(Term::Var(j), 1)]);
        let p = nest.binary(BinOp::Mul, vi, vj);
        let f = Affine::of(&nest, p).unwrap();
        assert_eq!(f.terms, vec![(Term::Atom(p), 1)]);
        assert_eq!(f.stride(&nest, i), None);
        assert_eq!(f.stride(&nest, LoopId(7)), Some(0));
    }

    #[test]
    fn overflow_fails_or_becomes_one_atom() {
        let (mut nest, i, _) = nest2();
        let (vi, big) = (nest.var(i), nest.int(i64::MAX / 2));
        let e = nest.binary(BinOp::Mul, vi, big);
        let three = nest.int(3);
        let e = nest.binary(BinOp::Mul, e, three);
        assert_eq!(Affine::of(&nest, e), None);
        assert_eq!(Affine::of_or_atom(&nest, e).terms, vec![(Term::Atom(e), 1)]);
    }
}
