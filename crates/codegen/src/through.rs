//! Read-through padding: a local copy of a tensor that only micro-kernel calls read (a
//! padding stage computed inside a tile, a cache-read copy) is skipped for the tiles whose
//! whole block lies inside the source: those calls read the source in place.
//!
//! A padding stage attached to a depthwise convolution's tile copies a block of the input
//! (with its halo) on every tile; on dep-1 that copy took more time than the kernel (perf:
//! the copy routine 44 %, the elementwise kernel 35 %). Only tiles at the image border read
//! padding zeros; for every other tile the copy equals the input, so the kernel can read the
//! input itself with the input's strides.
//!
//! The plan ([`find`]) is made when, inside `alloc P { fill; rest }`:
//! - `fill` is a perfect loop nest storing `P[i] = guard ? X[src] : 0` (or `X[src]`) densely
//!   (row-major over its loops), with `src` affine in the fill loops and `guard` a
//!   conjunction of affine comparisons of them (a convex set: it holds on the whole block
//!   when it holds at its corners);
//! - `rest` reads `P` only as the `A` operand of micro-kernel calls, whose `A` index maps
//!   coordinate by coordinate onto the fill's (every loop steps one coordinate of `P`, every
//!   coordinate stays inside its extent), and runs no outlined parallel loop.
//!
//! At run time the guard is evaluated at the block's corners and the source index at its
//! extreme corners; when the guard holds everywhere and the source range is inside `X`, the
//! fill is skipped and the calls get `X`'s address and strides.

use crate::analysis::Analysis;
use std::collections::HashMap;
use tessel_ir::affine::{Affine, Term};
use tessel_ir::expr::BinOp;
use tessel_ir::loop_nest::{BufferId, BufferScope, ExprId, LoopId, LoopKind, Node, Stmt, StmtId};
use tessel_ir::LoopNest;

/// Most fill loops of extent above one (the guard is evaluated at `2^n` corners).
const MAX_FILL_DIMS: usize = 4;

/// The read-through plan of one `Alloc`.
#[derive(Clone, Debug)]
pub(crate) struct ThroughPlan {
    /// The local copy.
    pub buf: BufferId,
    /// The fill statement (first of the `Alloc`'s body).
    pub fill: StmtId,
    /// The fill's loops: `(loop, extent, coefficient in the source index)`.
    pub loops: Vec<(LoopId, i64, i64)>,
    /// The source buffer.
    pub src: BufferId,
    /// The source index (affine in the fill loops).
    pub src_index: ExprId,
    /// The guard, when the fill is a padding.
    pub guard: Option<ExprId>,
    /// Per micro-kernel call (its tensorized loop) reading the copy as `A`: its `A` index in
    /// the source, relative to the source index at the fill's origin.
    pub calls: HashMap<LoopId, SourceIndex>,
}

/// An `A` operand's index in the source: `konst + Σ coef·loop` elements from the source
/// element the copy's first element comes from.
#[derive(Clone, Debug, Default)]
pub(crate) struct SourceIndex {
    /// Loop coefficients (source strides).
    pub terms: Vec<(LoopId, i64)>,
    /// Constant offset.
    pub konst: i64,
}

impl SourceIndex {
    /// The coefficient of loop `l` (0 when the index does not use it).
    pub fn coef(&self, l: LoopId) -> i64 {
        self.terms.iter().find(|t| t.0 == l).map_or(0, |t| t.1)
    }
}

/// The read-through plans of `nest`, by `Alloc` statement. `an` must have its tensorized
/// calls, folded loops and outlined loops; promoted buffers are left alone.
pub(crate) fn find(
    nest: &LoopNest,
    an: &Analysis,
    promoted: &std::collections::HashSet<BufferId>,
) -> HashMap<StmtId, ThroughPlan> {
    let mut out = HashMap::new();
    for k in 0..nest.stmts.len() as u32 {
        let s = StmtId(k);
        let Stmt::Alloc { buf, body } = nest.stmt(s) else {
            continue;
        };
        if promoted.contains(buf) || nest.buffer(*buf).scope != BufferScope::Local {
            continue;
        }
        if let Some(p) = plan(nest, an, *buf, body) {
            out.insert(s, p);
        }
    }
    out
}

fn plan(nest: &LoopNest, an: &Analysis, buf: BufferId, body: &[StmtId]) -> Option<ThroughPlan> {
    let (&fill, rest) = body.split_first()?;
    // The fill: a perfect nest of plain loops around one store.
    let mut loops: Vec<LoopId> = Vec::new();
    let mut s = fill;
    let (index, value) = loop {
        match nest.stmt(s) {
            Stmt::For { lp, body, .. } if body.len() == 1 => {
                if matches!(nest.lp(*lp).kind, LoopKind::Parallel | LoopKind::Tensorized) {
                    return None;
                }
                loops.push(*lp);
                s = body[0];
            }
            Stmt::Store {
                buf: b,
                index,
                value,
            } if *b == buf => break (*index, *value),
            _ => return None,
        }
    };
    let (guard, load) = match nest.get(value) {
        Node::Select(c, a, z) if nest.get(z) == Node::Float(0.0f32.to_bits()) => (Some(c), a),
        _ => (None, value),
    };
    let Node::Load(src, src_index) = nest.get(load) else {
        return None;
    };
    if src == buf || nest.buffer(src).scope == BufferScope::Local {
        return None;
    }
    let is_fill = |l: LoopId| loops.contains(&l);
    // Dense row-major store: coefficients form a mixed radix over the loop extents.
    let dst = Affine::of_or_atom(nest, index);
    if dst.konst != 0 || dst.terms.len() != loops.len() {
        return None;
    }
    let mut dims: Vec<(LoopId, i64, i64)> = Vec::new(); // (loop, extent, P coefficient)
    for &(t, c) in &dst.terms {
        let Term::Var(l) = t else { return None };
        if !is_fill(l) {
            return None;
        }
        dims.push((l, nest.lp(l).extent, c));
    }
    dims.sort_by_key(|d| std::cmp::Reverse(d.2));
    let mut radix = 1i64;
    for &(_, e, c) in dims.iter().rev() {
        if c != radix || e <= 0 {
            return None;
        }
        radix = radix.checked_mul(e)?;
    }
    if radix != nest.buffer(buf).len() {
        return None;
    }
    if dims.iter().filter(|d| d.1 > 1).count() > MAX_FILL_DIMS {
        return None;
    }
    // The source index: affine in the fill loops, anything else independent of them.
    let depends_on_fill = |e: ExprId| loops.iter().any(|&l| an.depends(e, l));
    let src_lin = Affine::of_or_atom(nest, src_index);
    for &(t, _) in &src_lin.terms {
        if let Term::Atom(e) = t {
            if depends_on_fill(e) {
                return None;
            }
        }
    }
    if let Some(g) = guard {
        if !convex(nest, g, &depends_on_fill) {
            return None;
        }
    }
    let src_coef = |l: LoopId| {
        src_lin
            .terms
            .iter()
            .find(|t| t.0 == Term::Var(l))
            .map_or(0, |t| t.1)
    };
    // The rest reads P only as micro-kernel `A` operands.
    let mut calls = HashMap::new();
    let mut stack: Vec<StmtId> = rest.to_vec();
    while let Some(s) = stack.pop() {
        match nest.stmt(s) {
            Stmt::For { lp, body, .. } => {
                let call = an
                    .folded
                    .get(lp)
                    .copied()
                    .or_else(|| an.tensorized.contains_key(lp).then_some(*lp));
                if let Some(k) = call {
                    let m = &an.tensorized[&k];
                    if m.b.0 == buf || m.c.0 == buf {
                        return None;
                    }
                    if m.a.0 == buf {
                        let x = map_index(nest, m.a.1, &dims, &src_coef)?;
                        // The call's strides are the index's coefficients.
                        let lin = Affine::of_or_atom(nest, m.a.1);
                        let pc = |l: LoopId| {
                            lin.terms
                                .iter()
                                .find(|t| t.0 == Term::Var(l))
                                .map_or(0, |t| t.1)
                        };
                        if m.i_loop.is_some_and(|l| pc(l) != m.a_row_stride)
                            || pc(m.k_loop) != m.a_k_stride
                            || an.folded_outer(k).is_some_and(|o| pc(o.lp) != o.a_stride)
                        {
                            return None;
                        }
                        calls.insert(k, x);
                    }
                    continue;
                }
                if an.outlined.contains(lp) {
                    return None;
                }
                stack.extend(body.iter().copied());
            }
            Stmt::If { cond, body } => {
                if reads(nest, *cond, buf) {
                    return None;
                }
                stack.extend(body.iter().copied());
            }
            Stmt::Alloc { body, .. } => stack.extend(body.iter().copied()),
            Stmt::Store {
                buf: b,
                index,
                value,
            } => {
                if *b == buf || reads(nest, *index, buf) || reads(nest, *value, buf) {
                    return None;
                }
            }
        }
    }
    if calls.is_empty() {
        return None;
    }
    Some(ThroughPlan {
        buf,
        fill,
        loops: dims.iter().map(|&(l, e, _)| (l, e, src_coef(l))).collect(),
        src,
        src_index,
        guard,
        calls,
    })
}

/// Whether `e` loads from `buf`.
fn reads(nest: &LoopNest, e: ExprId, buf: BufferId) -> bool {
    let mut hit = false;
    crate::analysis::visit_loads(nest, &[e], |b, _| hit |= b == buf);
    hit
}

/// Whether `g` is a conjunction of comparisons (`<`, `<=`, `==`) of expressions affine in
/// the fill loops (their non-affine parts independent of them): a convex set of the loops.
fn convex(nest: &LoopNest, g: ExprId, depends_on_fill: &dyn Fn(ExprId) -> bool) -> bool {
    match nest.get(g) {
        Node::Binary(BinOp::And, a, b) => {
            convex(nest, a, depends_on_fill) && convex(nest, b, depends_on_fill)
        }
        Node::Binary(BinOp::Lt | BinOp::Le | BinOp::Eq, a, b) => [a, b].iter().all(|&x| {
            Affine::of_or_atom(nest, x)
                .terms
                .iter()
                .all(|&(t, _)| match t {
                    Term::Var(_) => true,
                    Term::Atom(e) => !depends_on_fill(e),
                })
        }),
        _ => !depends_on_fill(g),
    }
}

/// The `A` index `index` (into the copy) as an index into the source: every loop term
/// steps one coordinate of the copy (`coef = a·radix_d`, `a < extent_d`), the constant
/// splits into coordinates, and every coordinate stays in `0..extent_d` over the loops'
/// ranges; then `source = Σ coordinate_d · src_coef_d`.
fn map_index(
    nest: &LoopNest,
    index: ExprId,
    dims: &[(LoopId, i64, i64)],
    src_coef: &dyn Fn(LoopId) -> i64,
) -> Option<SourceIndex> {
    let lin = Affine::of_or_atom(nest, index);
    if lin.konst < 0 {
        return None;
    }
    // Coordinates, outermost first: (lo, hi) over the loops.
    let mut lo: Vec<i64> = Vec::with_capacity(dims.len());
    let mut rem = lin.konst;
    for &(_, _, radix) in dims {
        lo.push(rem / radix);
        rem %= radix;
    }
    let mut hi = lo.clone();
    let mut out = SourceIndex::default();
    for &(t, c) in &lin.terms {
        let Term::Var(l) = t else { return None };
        if c <= 0 {
            return None;
        }
        // The dimension whose radix `c` is a multiple of, below the next radix up.
        let d = dims.iter().position(|&(_, _, r)| c >= r)?;
        let (radix, extent) = (dims[d].2, dims[d].1);
        if c % radix != 0 || c / radix >= extent {
            return None;
        }
        let steps = nest.lp(l).extent.checked_sub(1)?;
        hi[d] = hi[d].checked_add((c / radix).checked_mul(steps)?)?;
        out.terms
            .push((l, (c / radix).checked_mul(src_coef(dims[d].0))?));
    }
    for (d, &(l, extent, _)) in dims.iter().enumerate() {
        if hi[d] >= extent {
            return None;
        }
        out.konst = out.konst.checked_add(lo[d].checked_mul(src_coef(l))?)?;
    }
    Some(out)
}
