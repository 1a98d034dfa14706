//! Integer interval arithmetic over loop-nest expressions: the one implementation that the
//! simplifier's e-graph analysis ([`crate::simplify`]) and code generation (bounds checks,
//! packing ranges, guard refinement) share.
//!
//! An [`Interval`] is an inclusive range of `i64` values; booleans are `0`/`1`, and
//! `i64::MIN`/`i64::MAX` stand for "unbounded". Arithmetic is done on `i128` and an
//! overflowing bound gives the unbounded interval, so a constant expression that overflows is
//! never folded. Division and modulo follow the loop IR's floor semantics.
//!
//! [`interval`] computes the interval of an expression of a [`LoopNest`] from the ranges
//! `[0, extent - 1]` of its loop variables and, optionally, known facts about
//! sub-expressions; [`refine`] adds to those facts what a guard condition implies.
//!
//! ```
//! use std::collections::HashMap;
//! use tessel_ir::expr::BinOp;
//! use tessel_ir::interval::{interval, refine, Interval};
//! use tessel_ir::loop_nest::{Loop, LoopKind, LoopNest};
//! let mut nest = LoopNest::new("k");
//! let i = nest.add_loop(Loop { name: "i".into(), extent: 10, kind: LoopKind::Serial });
//! let (i, one, five) = (nest.var(i), nest.int(1), nest.int(5));
//! let e = nest.binary(BinOp::Sub, i, one);
//! assert_eq!(interval(&nest, e, &HashMap::new()), Interval { lo: -1, hi: 8 });
//! // Under the guard `i < 5`, `i - 1` lies in [-1, 3].
//! let mut known = HashMap::new();
//! let guard = nest.binary(BinOp::Lt, i, five);
//! refine(&nest, guard, &mut known);
//! assert_eq!(interval(&nest, e, &known), Interval { lo: -1, hi: 3 });
//! assert!(!interval(&nest, e, &known).within(4));
//! ```

use crate::expr::{BinOp, ScalarType, UnOp};
use crate::loop_nest::{ExprId, LoopId, LoopNest, Node};
use std::collections::HashMap;

/// An inclusive interval `lo..=hi` of `i64` values; booleans are `0`/`1`. `i64::MIN` and
/// `i64::MAX` stand for "unbounded".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    /// The smallest value.
    pub lo: i64,
    /// The largest value.
    pub hi: i64,
}

impl Interval {
    /// Every value (nothing known).
    pub const FULL: Interval = Interval {
        lo: i64::MIN,
        hi: i64::MAX,
    };

    /// A boolean that may be either.
    pub const BOOL: Interval = Interval { lo: 0, hi: 1 };

    /// The single value `v`.
    pub fn point(v: i64) -> Interval {
        Interval { lo: v, hi: v }
    }

    /// The boolean `b` as `0` or `1`.
    pub fn of_bool(b: bool) -> Interval {
        Interval::point(b as i64)
    }

    /// The hull of `i128` candidates; unbounded when one of them does not fit in `i64` (so
    /// an overflowing constant expression is never folded) or when there are none.
    pub fn hull(vals: &[i128]) -> Interval {
        let fits = |v: &i128| i64::try_from(*v).is_ok();
        match (vals.iter().min(), vals.iter().max()) {
            (Some(&lo), Some(&hi)) if vals.iter().all(fits) => Interval {
                lo: lo as i64,
                hi: hi as i64,
            },
            _ => Interval::FULL,
        }
    }

    /// The value, when the interval holds exactly one.
    pub fn konst(self) -> Option<i64> {
        (self.lo == self.hi).then_some(self.lo)
    }

    /// The smallest interval holding both (union hull).
    pub fn join(self, o: Interval) -> Interval {
        Interval {
            lo: self.lo.min(o.lo),
            hi: self.hi.max(o.hi),
        }
    }

    /// The values in both (intersection; empty when `lo > hi`).
    pub fn meet(self, o: Interval) -> Interval {
        Interval {
            lo: self.lo.max(o.lo),
            hi: self.hi.min(o.hi),
        }
    }

    /// True when every value lies in `0..len`.
    pub fn within(self, len: i64) -> bool {
        self.lo >= 0 && self.hi < len
    }

    /// The interval of `op(a, b)` for `a` in `self` and `b` in `o` (comparisons and logic on
    /// booleans as 0/1; division and modulo by a range holding zero are unbounded).
    pub fn binary(self, op: BinOp, o: Interval) -> Interval {
        let (a, b) = (self, o);
        let (al, ah, bl, bh) = (a.lo as i128, a.hi as i128, b.lo as i128, b.hi as i128);
        match op {
            BinOp::Add => Interval::hull(&[al + bl, ah + bh]),
            BinOp::Sub => Interval::hull(&[al - bh, ah - bl]),
            BinOp::Mul => Interval::hull(&[al * bl, al * bh, ah * bl, ah * bh]),
            BinOp::Div => {
                if bl > 0 || bh < 0 {
                    Interval::hull(&[
                        floor_div(al, bl),
                        floor_div(al, bh),
                        floor_div(ah, bl),
                        floor_div(ah, bh),
                    ])
                } else {
                    Interval::FULL
                }
            }
            BinOp::Mod => {
                if bl > 0 && bl == bh {
                    let c = bl;
                    if al >= 0 && ah < c {
                        a
                    } else if floor_div(al, c) == floor_div(ah, c) {
                        Interval::hull(&[floor_mod(al, c), floor_mod(ah, c)])
                    } else {
                        Interval::hull(&[0, c - 1])
                    }
                } else if bl > 0 {
                    let hi = if al >= 0 { ah.min(bh - 1) } else { bh - 1 };
                    Interval::hull(&[0, hi])
                } else if bh < 0 {
                    Interval::hull(&[bl + 1, 0])
                } else {
                    Interval::FULL
                }
            }
            BinOp::Min => Interval {
                lo: a.lo.min(b.lo),
                hi: a.hi.min(b.hi),
            },
            BinOp::Max => Interval {
                lo: a.lo.max(b.lo),
                hi: a.hi.max(b.hi),
            },
            BinOp::Lt => decide(a.hi < b.lo, a.lo >= b.hi),
            BinOp::Le => decide(a.hi <= b.lo, a.lo > b.hi),
            BinOp::Eq => decide(
                a.konst().is_some() && a.konst() == b.konst(),
                a.hi < b.lo || b.hi < a.lo,
            ),
            BinOp::Ne => decide(
                a.hi < b.lo || b.hi < a.lo,
                a.konst().is_some() && a.konst() == b.konst(),
            ),
            BinOp::And => Interval {
                lo: a.lo.min(b.lo),
                hi: a.hi.min(b.hi),
            },
            BinOp::Or => Interval {
                lo: a.lo.max(b.lo),
                hi: a.hi.max(b.hi),
            },
        }
    }
}

impl std::ops::Neg for Interval {
    type Output = Interval;

    /// The interval of `-x` for `x` in `self`.
    fn neg(self) -> Interval {
        Interval::hull(&[-(self.hi as i128), -(self.lo as i128)])
    }
}

impl std::ops::Not for Interval {
    type Output = Interval;

    /// The interval of `!x` for a boolean `x` in `self`.
    fn not(self) -> Interval {
        Interval {
            lo: 1 - self.hi.clamp(0, 1),
            hi: 1 - self.lo.clamp(0, 1),
        }
    }
}

/// Floor division on `i128` (`b != 0`).
fn floor_div(a: i128, b: i128) -> i128 {
    let q = a / b;
    if (a % b != 0) && ((a < 0) != (b < 0)) {
        q - 1
    } else {
        q
    }
}

/// Floor modulo on `i128` (`b != 0`).
fn floor_mod(a: i128, b: i128) -> i128 {
    a - b * floor_div(a, b)
}

/// `[1, 1]` when surely true, `[0, 0]` when surely false, else `[0, 1]`.
fn decide(surely_true: bool, surely_false: bool) -> Interval {
    match (surely_true, surely_false) {
        (true, _) => Interval::of_bool(true),
        (false, true) => Interval::of_bool(false),
        _ => Interval::BOOL,
    }
}

/// The range `[0, extent - 1]` of loop `l`'s variable (unbounded for an unknown loop).
pub fn loop_range(nest: &LoopNest, l: LoopId) -> Interval {
    match nest.loops.get(l.index()) {
        Some(lp) => Interval {
            lo: 0,
            hi: (lp.extent - 1).max(0),
        },
        None => Interval::FULL,
    }
}

/// The interval of integer or boolean expression `e` of `nest` (booleans as 0/1; floats and
/// loads unbounded), from the loop ranges and the `known` intervals of some sub-expressions
/// (facts that hold where `e` is evaluated, such as those [`refine`] derives from guards):
/// each sub-expression's computed interval is intersected with its known one.
pub fn interval(nest: &LoopNest, e: ExprId, known: &HashMap<ExprId, Interval>) -> Interval {
    interval_memo(nest, e, known, &mut HashMap::new())
}

fn interval_memo(
    nest: &LoopNest,
    e: ExprId,
    known: &HashMap<ExprId, Interval>,
    memo: &mut HashMap<ExprId, Interval>,
) -> Interval {
    if let Some(&r) = memo.get(&e) {
        return r;
    }
    let mut go = |x: ExprId| interval_memo(nest, x, known, memo);
    let r = match nest.get(e) {
        Node::Int(v) => Interval::point(v),
        Node::Var(l) => loop_range(nest, l),
        Node::Float(_) | Node::Load(..) => Interval::FULL,
        Node::Unary(UnOp::Neg, a) if nest.ty(a) == ScalarType::Int => -go(a),
        Node::Unary(UnOp::Not, a) => !go(a),
        Node::Unary(..) => Interval::FULL,
        Node::Binary(op, a, b) => {
            if nest.ty(a) == ScalarType::Float {
                if op.is_comparison() {
                    Interval::BOOL
                } else {
                    Interval::FULL
                }
            } else {
                let ra = go(a);
                ra.binary(op, go(b))
            }
        }
        Node::Select(c, a, b) => match go(c).konst() {
            Some(1) => go(a),
            Some(0) => go(b),
            _ => {
                let ra = go(a);
                ra.join(go(b))
            }
        },
    };
    let r = match known.get(&e) {
        Some(k) => r.meet(*k),
        None => r,
    };
    memo.insert(e, r);
    r
}

/// Adds to `known` what holds when boolean `cond` is true: for conjunctions of `<`, `<=` and
/// `==` between integers, the bounds each side puts on the other.
pub fn refine(nest: &LoopNest, cond: ExprId, known: &mut HashMap<ExprId, Interval>) {
    match nest.get(cond) {
        Node::Binary(BinOp::And, a, b) => {
            refine(nest, a, known);
            refine(nest, b, known);
        }
        Node::Binary(op @ (BinOp::Lt | BinOp::Le | BinOp::Eq), a, b)
            if nest.ty(a) == ScalarType::Int =>
        {
            let x = interval(nest, a, known);
            let y = interval(nest, b, known);
            let strict = i64::from(op == BinOp::Lt);
            let xa = Interval {
                lo: if op == BinOp::Eq { y.lo } else { i64::MIN },
                hi: y.hi.saturating_sub(strict),
            };
            let yb = Interval {
                lo: x.lo.saturating_add(strict),
                hi: if op == BinOp::Eq { x.hi } else { i64::MAX },
            };
            for (e, r) in [(a, xa), (b, yb)] {
                let cur = known.get(&e).copied().unwrap_or(Interval::FULL);
                known.insert(e, cur.meet(r));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loop_nest::{Loop, LoopKind};

    fn nest_with(extent: i64) -> (LoopNest, ExprId) {
        let mut nest = LoopNest::new("t");
        let l = nest.add_loop(Loop {
            name: "i".into(),
            extent,
            kind: LoopKind::Serial,
        });
        let v = nest.var(l);
        (nest, v)
    }

    #[test]
    fn floor_division_and_modulo_follow_the_sign_of_the_divisor() {
        let a = Interval { lo: -7, hi: 5 };
        assert_eq!(
            a.binary(BinOp::Div, Interval::point(2)),
            Interval { lo: -4, hi: 2 }
        );
        assert_eq!(
            a.binary(BinOp::Div, Interval::point(-2)),
            Interval { lo: -3, hi: 3 }
        );
        assert_eq!(
            a.binary(BinOp::Mod, Interval::point(4)),
            Interval { lo: 0, hi: 3 }
        );
        assert_eq!(
            Interval { lo: 5, hi: 6 }.binary(BinOp::Mod, Interval::point(4)),
            Interval { lo: 1, hi: 2 }
        );
        assert_eq!(
            a.binary(BinOp::Div, Interval { lo: -1, hi: 1 }),
            Interval::FULL
        );
    }

    #[test]
    fn overflow_is_unbounded_and_comparisons_are_decided_by_bounds() {
        let big = Interval::point(i64::MAX);
        assert_eq!(big.binary(BinOp::Add, Interval::point(1)), Interval::FULL);
        let small = Interval { lo: 0, hi: 3 };
        assert_eq!(
            small.binary(BinOp::Lt, Interval::point(4)),
            Interval::point(1)
        );
        assert_eq!(
            small.binary(BinOp::Lt, Interval::point(0)),
            Interval::point(0)
        );
        assert_eq!(small.binary(BinOp::Lt, Interval::point(2)), Interval::BOOL);
    }

    #[test]
    fn a_select_with_a_decided_condition_takes_one_side() {
        let (mut nest, i) = nest_with(4);
        let (four, hundred) = (nest.int(4), nest.int(100));
        let cond = nest.binary(BinOp::Lt, i, four);
        let sel = nest.node(Node::Select(cond, i, hundred));
        assert_eq!(
            interval(&nest, sel, &HashMap::new()),
            Interval { lo: 0, hi: 3 }
        );
    }

    #[test]
    fn guards_refine_both_sides_of_a_comparison() {
        let (mut nest, i) = nest_with(100);
        let (lo, hi) = (nest.int(10), nest.int(20));
        let ge = nest.binary(BinOp::Le, lo, i);
        let lt = nest.binary(BinOp::Lt, i, hi);
        let both = nest.binary(BinOp::And, ge, lt);
        let mut known = HashMap::new();
        refine(&nest, both, &mut known);
        assert_eq!(interval(&nest, i, &known), Interval { lo: 10, hi: 19 });
    }
}
