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
//!
//! Guarded edges ([`EdgeGuard`], `CompileOptions::guarded_edges`): when every call reading
//! the copy is an elementwise one over a 3-tap window at stride 1 or 2 and the guard splits
//! into conditions on the window rows' coordinate and on the input positions' coordinate,
//! the edge tiles read `X` too, through [`crate::ukernel::GuardedKernelFn`] with the masks
//! of the rows and positions where the guard holds, and the fill is never run.

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
    /// How the calls read the source on the other tiles too (the guarded kernels), when
    /// they can ([`edges`]).
    pub edges: Option<EdgeGuard>,
}

/// Edge tiles without the copy: every call is elementwise, and the guard splits into
/// conditions on the copy coordinate its window rows (the folded loop) step and conditions
/// on the one its row and tap loops step (row `i`, tap `p` at input position `i·s + p`).
/// The calls then read the source everywhere, through [`crate::ukernel::GuardedKernelFn`]
/// with masks of the rows and positions where the guard holds.
#[derive(Clone, Debug)]
pub(crate) struct EdgeGuard {
    /// The guard's conjuncts on the window rows' coordinate or on no fill loop.
    pub row_conds: Vec<ExprId>,
    /// The guard's conjuncts on the positions' coordinate.
    pub col_conds: Vec<ExprId>,
}

/// An `A` operand's index in the source: `konst + Σ coef·loop` elements from the source
/// element the copy's first element comes from.
#[derive(Clone, Debug, Default)]
pub(crate) struct SourceIndex {
    /// Loop coefficients (source strides).
    pub terms: Vec<(LoopId, i64)>,
    /// Constant offset.
    pub konst: i64,
    /// The copy coordinates the index reads, per fill loop (the plan's `loops`, in order):
    /// the lowest, and the loops that step it with their steps.
    pub coords: Vec<(i64, Vec<(LoopId, i64)>)>,
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
    let edges = guard.and_then(|g| edge_guard(nest, an, g, &dims, &calls));
    Some(ThroughPlan {
        buf,
        fill,
        loops: dims.iter().map(|&(l, e, _)| (l, e, src_coef(l))).collect(),
        src,
        src_index,
        guard,
        calls,
        edges,
    })
}

/// The edge plan of the calls `calls` of a copy with fill `dims` and guard `g`, when every
/// call is an elementwise one whose window rows step one copy coordinate (or are one row)
/// and whose rows and taps step another, taps by 1 and rows by 1 or 2 taps over a 3-tap
/// window (the sliding form), at most 64 window rows, and every conjunct of `g` is on one
/// of those two coordinates (the same for all calls) or on none.
fn edge_guard(
    nest: &LoopNest,
    an: &Analysis,
    g: ExprId,
    dims: &[(LoopId, i64, i64)],
    calls: &HashMap<LoopId, SourceIndex>,
) -> Option<EdgeGuard> {
    // The coordinate (fill dimension) a call loop steps, with its step.
    let stepped = |si: &SourceIndex, l: LoopId| -> Option<(usize, i64)> {
        let mut hit = None;
        for (d, (_, steps)) in si.coords.iter().enumerate() {
            for &(x, c) in steps {
                if x == l {
                    if hit.is_some() {
                        return None;
                    }
                    hit = Some((d, c));
                }
            }
        }
        hit
    };
    let mut axes: Option<(Option<usize>, usize)> = None;
    for (&k, si) in calls {
        let m = &an.tensorized[&k];
        if m.kind != tessel_ir::tensorize::KernelKind::Elementwise
            || an.kernel_epilogues.contains_key(&k)
        {
            return None;
        }
        let (dw, sk) = stepped(si, m.k_loop)?;
        if sk != 1 {
            return None;
        }
        let s = match m.i_loop {
            Some(i) => {
                let (d, si_step) = stepped(si, i)?;
                if d != dw || si_step < 1 {
                    return None;
                }
                si_step
            }
            None => 0,
        };
        // The guarded kernels slide 3-tap windows whose rows step 1 or 2 taps; any other
        // window keeps the copy on its edge tiles (their plain loops are slower than it).
        if m.k != 3 || !(s == 1 || s == 2) {
            return None;
        }
        let dh = match m.folded() {
            Some(o) => {
                let (d, _) = stepped(si, o.lp)?;
                if d == dw || o.extent > 64 {
                    return None;
                }
                Some(d)
            }
            None => None,
        };
        let (dj, _) = stepped(si, m.j_loop)?;
        if dj == dw || Some(dj) == dh {
            return None;
        }
        match axes {
            None => axes = Some((dh, dw)),
            Some(a) if a == (dh, dw) => {}
            Some(_) => return None,
        }
    }
    let (dh, dw) = axes?;
    let mut conj = Vec::new();
    conjuncts(nest, g, &mut conj);
    let (mut row_conds, mut col_conds) = (Vec::new(), Vec::new());
    for c in conj {
        let on: Vec<usize> = (0..dims.len())
            .filter(|&d| an.depends(c, dims[d].0))
            .collect();
        match on.as_slice() {
            [] => row_conds.push(c),
            [d] if Some(*d) == dh => row_conds.push(c),
            [d] if *d == dw => col_conds.push(c),
            _ => return None,
        }
    }
    Some(EdgeGuard {
        row_conds,
        col_conds,
    })
}

/// The conjuncts of `g` (`a && b` split, anything else whole).
fn conjuncts(nest: &LoopNest, g: ExprId, out: &mut Vec<ExprId>) {
    match nest.get(g) {
        Node::Binary(BinOp::And, a, b) => {
            conjuncts(nest, a, out);
            conjuncts(nest, b, out);
        }
        _ => out.push(g),
    }
}

/// Drops the edge plans of `an`'s read-through copies when `on` is false, or when a call
/// reading the copy lacks a guarded kernel ([`crate::ukernel::guarded_kernel`]) for a
/// register tile of its strip: those copies are filled on edge tiles.
pub(crate) fn keep_guardable_edges(an: &mut Analysis, on: bool) {
    let keep: Vec<bool> = an
        .through
        .values()
        .map(|p| {
            on && p.edges.is_some()
                && p.calls.keys().all(|k| {
                    let m = &an.tensorized[k];
                    let zero = an.zero_init.contains_key(k);
                    tessel_ir::tensorize::strip_blocks(an.isa, m.mr, m.nr)
                        .into_iter()
                        .all(|rows| {
                            crate::ukernel::guarded_kernel(an.isa, rows, m.nr, zero).is_some()
                        })
                })
        })
        .collect();
    for (p, keep) in an.through.values_mut().zip(keep) {
        if !keep {
            p.edges = None;
        }
    }
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
    let mut coord_steps: Vec<Vec<(LoopId, i64)>> = vec![Vec::new(); dims.len()];
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
        coord_steps[d].push((l, c / radix));
        out.terms
            .push((l, (c / radix).checked_mul(src_coef(dims[d].0))?));
    }
    for (d, &(l, extent, _)) in dims.iter().enumerate() {
        if hi[d] >= extent {
            return None;
        }
        out.konst = out.konst.checked_add(lo[d].checked_mul(src_coef(l))?)?;
    }
    out.coords = lo.into_iter().zip(coord_steps).collect();
    Some(out)
}
