//! Bulk runs: copy, fill and padding loops emitted as one call to a routine at the target's
//! vector width instead of Cranelift's 128-bit code.
//!
//! A *run* is an innermost loop `x` (serial, unrolled or vectorized), optionally with the
//! loop `o` right around it, whose body is one store of contiguous elements:
//!
//! ```text
//! for o in 0..E:               // optional; collapsed when both strides along it are n
//!   for x in 0..n:
//!     D[d0 + o*n + x] = v      // v: a constant, S[s0 + o*n + x], or select(cond, S[...], c)
//! ```
//!
//! `cond` must not depend on `x`; it may depend on `o` through a conjunction of `<` / `<=`
//! comparisons with coefficient ±1 in `o` (a padding stage's `1 <= h && h < H + 1`), so the
//! elements where it holds are one range `[lo·n, hi·n)`. The whole run is then one call of
//! `tessel_run_avx512` (or its AVX2 twin): fill `[0, lo·n)`, copy `[lo·n, hi·n)`, fill the
//! rest. A depthwise convolution's padding copy (`4 × 114 × 32` floats per block in dep-1's
//! best schedule) becomes four calls, and a tile's zero initialisation one.
//!
//! Runs are used only when the target has micro-kernels (so `--target generic` stays plain
//! Cranelift) and the run has at least [`MIN_RUN`] elements. The destination must provably
//! lie in its buffer (the range analysis, as for every access); the source range is checked
//! by the routine at run time, which fills instead of reading outside the source (only an
//! invalid program could ask for that; plain code would clamp the index instead).

use crate::analysis::Analysis;
use std::collections::{HashMap, HashSet};
use tessel_ir::affine::{Affine, Term};
use tessel_ir::expr::{BinOp, ScalarType};
use tessel_ir::interval::interval;
use tessel_ir::loop_nest::{BufferId, ExprId, LoopId, LoopKind, Node, Stmt, StmtId};
use tessel_ir::target::Isa;
use tessel_ir::LoopNest;

/// Fewest elements a run must have to become a call; shorter ones stay inline code, unless
/// the run is a zero fill fused into a micro-kernel call. On one Sapphire Rapids core a
/// call per 48-float row (a cache-write tile's write-back in gmm-3's best program) was
/// slower than Cranelift's inline `f32x4` copy (runs of 16 or more: gmm-3 1.02× the time).
pub const MIN_RUN: i64 = 256;

/// One run, keyed in [`Analysis::runs`] by the loop it replaces (`outer` when present).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RunPlan {
    /// The contiguous innermost loop.
    pub inner: LoopId,
    /// The loop around it, collapsed into the run.
    pub outer: Option<LoopId>,
    /// The stored buffer and index.
    pub dst: (BufferId, ExprId),
    /// The copied buffer and index, if any.
    pub src: Option<(BufferId, ExprId)>,
    /// The guard of the copy (`select(cond, src, fill)`).
    pub cond: Option<ExprId>,
    /// The value stored where nothing is copied.
    pub fill: f32,
}

/// Elements a run stores.
pub(crate) fn run_len(nest: &LoopNest, p: &RunPlan) -> i64 {
    nest.lp(p.inner).extent * p.outer.map_or(1, |o| nest.lp(o).extent)
}

/// The runs of `nest`, by the loop each replaces, of any length (the caller drops those
/// shorter than [`MIN_RUN`] that no kernel call absorbs).
pub(crate) fn find_runs(
    nest: &LoopNest,
    an: &Analysis,
    promoted: &HashSet<BufferId>,
) -> HashMap<LoopId, RunPlan> {
    let mut out = HashMap::new();
    visit(nest, an, promoted, &nest.body, &mut out);
    out
}

fn visit(
    nest: &LoopNest,
    an: &Analysis,
    promoted: &HashSet<BufferId>,
    body: &[StmtId],
    out: &mut HashMap<LoopId, RunPlan>,
) {
    for &s in body {
        match nest.stmt(s) {
            Stmt::For { lp, body, .. } => {
                if let Some(p) = outer_run(nest, an, promoted, *lp, body)
                    .or_else(|| inner_run(nest, an, promoted, *lp, body))
                {
                    out.insert(*lp, p);
                } else {
                    visit(nest, an, promoted, body, out);
                }
            }
            Stmt::If { body, .. } | Stmt::Alloc { body, .. } => {
                visit(nest, an, promoted, body, out)
            }
            Stmt::Store { .. } => {}
        }
    }
}

fn plain_loop(nest: &LoopNest, lp: LoopId) -> bool {
    matches!(
        nest.lp(lp).kind,
        LoopKind::Serial | LoopKind::Unrolled | LoopKind::Vectorized
    )
}

/// Loop `x` as a run of its own (its store's condition, if any, independent of `x`).
fn inner_run(
    nest: &LoopNest,
    an: &Analysis,
    promoted: &HashSet<BufferId>,
    x: LoopId,
    body: &[StmtId],
) -> Option<RunPlan> {
    let p = store_pattern(nest, an, promoted, x, body)?;
    if p.cond.is_some_and(|c| an.depends(c, x)) {
        return None;
    }
    Some(p)
}

/// Loop `o` around a run loop `x`, collapsed with it.
fn outer_run(
    nest: &LoopNest,
    an: &Analysis,
    promoted: &HashSet<BufferId>,
    o: LoopId,
    body: &[StmtId],
) -> Option<RunPlan> {
    if !plain_loop(nest, o) {
        return None;
    }
    let [only] = body else { return None };
    let Stmt::For {
        lp: x, body: xb, ..
    } = nest.stmt(*only)
    else {
        return None;
    };
    let mut p = store_pattern(nest, an, promoted, *x, xb)?;
    let n = nest.lp(*x).extent;
    if an.stride(nest, p.dst.1, o) != Some(n)
        || p.src.is_some_and(|(_, i)| an.stride(nest, i, o) != Some(n))
    {
        return None;
    }
    if let Some(c) = p.cond {
        if !cond_ok(nest, an, c, o, *x) {
            return None;
        }
    }
    p.outer = Some(o);
    Some(p)
}

/// The store of run loop `x`'s body: contiguous along `x`, a constant or a (guarded) copy.
fn store_pattern(
    nest: &LoopNest,
    an: &Analysis,
    promoted: &HashSet<BufferId>,
    x: LoopId,
    body: &[StmtId],
) -> Option<RunPlan> {
    if !plain_loop(nest, x) {
        return None;
    }
    let [only] = body else { return None };
    let Stmt::Store { buf, index, value } = nest.stmt(*only) else {
        return None;
    };
    let len = nest.buffer(*buf).len();
    if promoted.contains(buf)
        || an.stride(nest, *index, x) != Some(1)
        || !interval(nest, *index, &HashMap::new()).within(len)
    {
        return None;
    }
    let load = |e: ExprId| -> Option<(BufferId, ExprId)> {
        let Node::Load(b, i) = nest.get(e) else {
            return None;
        };
        (b != *buf && !promoted.contains(&b) && an.stride(nest, i, x) == Some(1)).then_some((b, i))
    };
    let (src, cond, fill) = match nest.get(*value) {
        Node::Float(bits) => (None, None, f32::from_bits(bits)),
        Node::Load(..) => (Some(load(*value)?), None, 0.0),
        Node::Select(c, a, b) => {
            let Node::Float(bits) = nest.get(b) else {
                return None;
            };
            (Some(load(a)?), Some(c), f32::from_bits(bits))
        }
        _ => return None,
    };
    Some(RunPlan {
        inner: x,
        outer: None,
        dst: (*buf, *index),
        src,
        cond,
        fill,
    })
}

/// Zero fills fused into the elementwise micro-kernel call right after them: a run that
/// stores `0.0` into exactly the call's `C` tile (same buffer, same first element, `mr·nr`
/// contiguous elements), directly followed by the statement that is the call (the tensorized
/// loop, or the reduction loop folded into it), so nothing reads the tile in between and the
/// call covers the whole reduction. The call then starts its accumulators from zero
/// ([`crate::ukernel::elementwise_zero_kernel`]) and the fill is not emitted. By tensorized
/// loop, the run loop it replaces.
pub(crate) fn find_zero_inits(nest: &LoopNest, an: &Analysis, isa: Isa) -> HashMap<LoopId, LoopId> {
    let mut out = HashMap::new();
    let mut bodies: Vec<&[StmtId]> = vec![&nest.body];
    for s in &nest.stmts {
        match s {
            Stmt::For { body, .. } | Stmt::If { body, .. } | Stmt::Alloc { body, .. } => {
                bodies.push(body)
            }
            Stmt::Store { .. } => {}
        }
    }
    for body in bodies {
        for w in body.windows(2) {
            let (Stmt::For { lp: fill, .. }, Stmt::For { lp: next, .. }) =
                (nest.stmt(w[0]), nest.stmt(w[1]))
            else {
                continue;
            };
            let Some(run) = an.runs.get(fill) else {
                continue;
            };
            let k = match an.folded.get(next) {
                Some(&k) => k,
                None if an.tensorized.contains_key(next) => *next,
                None => continue,
            };
            let m = &an.tensorized[&k];
            let total = run_len(nest, run);
            let same_start = || {
                let run_loops = [Some(run.inner), run.outer];
                let tile_loops = [Some(m.j_loop), m.i_loop];
                let a = Affine::of_or_atom(nest, run.dst.1);
                let b = Affine::of_or_atom(nest, m.c.1);
                let keep = |lin: &Affine, skip: &[Option<LoopId>]| {
                    let mut v = Vec::new();
                    for &(t, c) in &lin.terms {
                        match t {
                            Term::Var(l) if skip.contains(&Some(l)) => {}
                            Term::Atom(e) if skip.iter().flatten().any(|&l| an.depends(e, l)) => {
                                return None
                            }
                            _ => v.push((t, c)),
                        }
                    }
                    Some(v)
                };
                match (keep(&a, &run_loops), keep(&b, &tile_loops)) {
                    (Some(x), Some(y)) => {
                        a.konst == b.konst && x.len() == y.len() && x.iter().all(|p| y.contains(p))
                    }
                    _ => false,
                }
            };
            if m.kind == tessel_ir::tensorize::KernelKind::Elementwise
                && run.src.is_none()
                && run.fill.to_bits() == 0
                && run.dst.0 == m.c.0
                && total == m.mr * m.nr
                && (m.mr == 1 || m.c_row_stride == m.nr)
                && crate::ukernel::strip_zero_kernels(isa, m.mr, m.nr).is_some()
                && same_start()
            {
                out.insert(k, *fill);
            }
        }
    }
    out
}

/// True when `cond` holds on one range of `o`: a conjunction of parts that do not depend on
/// `o` or `x`, and integer `<` / `<=` comparisons with coefficient ±1 in `o` and none in `x`.
fn cond_ok(nest: &LoopNest, an: &Analysis, cond: ExprId, o: LoopId, x: LoopId) -> bool {
    if an.depends(cond, x) {
        return false;
    }
    if !an.depends(cond, o) {
        return true;
    }
    match nest.get(cond) {
        Node::Binary(BinOp::And, a, b) => cond_ok(nest, an, a, o, x) && cond_ok(nest, an, b, o, x),
        Node::Binary(BinOp::Lt | BinOp::Le, a, b) if nest.ty(a) == ScalarType::Int => {
            o_coef(nest, an, a, b, o).is_some_and(|k| k.abs() == 1)
        }
        _ => false,
    }
}

/// The coefficient of `o` in `a - b`, when both are affine in it.
pub(crate) fn o_coef(
    nest: &LoopNest,
    an: &Analysis,
    a: ExprId,
    b: ExprId,
    o: LoopId,
) -> Option<i64> {
    Some(an.stride(nest, a, o)? - an.stride(nest, b, o)?)
}

/// The routine symbol of `isa` (only ISAs with micro-kernels have one).
pub(crate) fn symbol(isa: Isa) -> String {
    format!("tessel_run_{isa}")
}

/// The routine of `isa`, when this CPU runs it.
pub(crate) fn routine(isa: Isa) -> Option<RunFn> {
    if !crate::ukernel::available(isa) {
        return None;
    }
    imp::routine(isa)
}

/// `(dst, total, src, s0, src_len, lo, hi, fill)`: see [`run_reference`].
pub type RunFn = unsafe extern "C" fn(*mut f32, i64, *const f32, i64, i64, i64, i64, f32);

/// The clamped copy range of a run: `lo` and `hi` clamped to `0 ≤ lo ≤ hi ≤ total`, and
/// empty when the source elements `s0 + lo .. s0 + hi` are not all in `0..src_len`.
pub(crate) fn copy_range(total: i64, s0: i64, src_len: i64, lo: i64, hi: i64) -> (usize, usize) {
    let lo = lo.clamp(0, total.max(0));
    let hi = hi.clamp(lo, total.max(0));
    if lo < hi
        && (s0.checked_add(lo).is_none_or(|v| v < 0)
            || s0.checked_add(hi).is_none_or(|v| v > src_len))
    {
        return (lo as usize, lo as usize);
    }
    (lo as usize, hi as usize)
}

/// What every run routine computes, in plain Rust: `dst[t] = src[s0 + t]` for `t` in the
/// `copy_range`, `dst[t] = fill` for the other `t < total`.
///
/// # Safety
/// `dst[0..total]` must be valid for writes, `src[0..src_len]` for reads (when the copy
/// range is not empty), and they must not overlap.
pub unsafe extern "C" fn run_reference(
    dst: *mut f32,
    total: i64,
    src: *const f32,
    s0: i64,
    src_len: i64,
    lo: i64,
    hi: i64,
    fill: f32,
) {
    let (lo, hi) = copy_range(total, s0, src_len, lo, hi);
    // SAFETY: the caller guarantees both ranges; `copy_range` keeps the copy inside `src`.
    unsafe {
        for t in 0..total.max(0) as usize {
            *dst.add(t) = if (lo..hi).contains(&t) {
                *src.offset(s0 as isize + t as isize)
            } else {
                fill
            };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use super::{copy_range, RunFn};
    use std::arch::x86_64::*;
    use tessel_ir::target::Isa;

    pub(super) fn routine(isa: Isa) -> Option<RunFn> {
        match isa {
            Isa::Avx512 => Some(run512),
            Isa::Avx2 => Some(run256),
            Isa::Generic => None,
        }
    }

    /// `dst[0..n] = v`, 16 lanes at a time, the tail masked.
    #[target_feature(enable = "avx512f")]
    unsafe fn fill512(d: *mut f32, n: usize, v: f32) {
        // SAFETY: the caller guarantees `d[0..n]`.
        unsafe {
            let x = _mm512_set1_ps(v);
            let mut i = 0;
            while i + 64 <= n {
                _mm512_storeu_ps(d.add(i), x);
                _mm512_storeu_ps(d.add(i + 16), x);
                _mm512_storeu_ps(d.add(i + 32), x);
                _mm512_storeu_ps(d.add(i + 48), x);
                i += 64;
            }
            while i + 16 <= n {
                _mm512_storeu_ps(d.add(i), x);
                i += 16;
            }
            if i < n {
                _mm512_mask_storeu_ps(d.add(i), ((1u32 << (n - i)) - 1) as u16, x);
            }
        }
    }

    /// `dst[0..n] = src[0..n]`, 16 lanes at a time, the tail masked.
    #[target_feature(enable = "avx512f")]
    unsafe fn copy512(d: *mut f32, s: *const f32, n: usize) {
        // SAFETY: the caller guarantees both ranges.
        unsafe {
            let mut i = 0;
            while i + 64 <= n {
                let a = _mm512_loadu_ps(s.add(i));
                let b = _mm512_loadu_ps(s.add(i + 16));
                let c = _mm512_loadu_ps(s.add(i + 32));
                let e = _mm512_loadu_ps(s.add(i + 48));
                _mm512_storeu_ps(d.add(i), a);
                _mm512_storeu_ps(d.add(i + 16), b);
                _mm512_storeu_ps(d.add(i + 32), c);
                _mm512_storeu_ps(d.add(i + 48), e);
                i += 64;
            }
            while i + 16 <= n {
                _mm512_storeu_ps(d.add(i), _mm512_loadu_ps(s.add(i)));
                i += 16;
            }
            if i < n {
                let m = ((1u32 << (n - i)) - 1) as u16;
                _mm512_mask_storeu_ps(d.add(i), m, _mm512_maskz_loadu_ps(m, s.add(i)));
            }
        }
    }

    /// The AVX-512F run routine (see [`super::run_reference`]).
    ///
    /// # Safety
    /// As [`super::run_reference`], on a CPU with AVX-512F.
    #[allow(clippy::too_many_arguments)]
    unsafe extern "C" fn run512(
        dst: *mut f32,
        total: i64,
        src: *const f32,
        s0: i64,
        src_len: i64,
        lo: i64,
        hi: i64,
        fill: f32,
    ) {
        let (lo, hi) = copy_range(total, s0, src_len, lo, hi);
        let total = total.max(0) as usize;
        // SAFETY: as `run_reference`; the routine is handed out only when the CPU has
        // AVX-512F (`super::routine`).
        unsafe {
            fill512(dst, lo, fill);
            if lo < hi {
                copy512(dst.add(lo), src.offset(s0 as isize + lo as isize), hi - lo);
            }
            fill512(dst.add(hi), total - hi, fill);
        }
    }

    /// `dst[0..n] = v`, 8 lanes at a time, the tail scalar.
    #[target_feature(enable = "avx2")]
    unsafe fn fill256(d: *mut f32, n: usize, v: f32) {
        // SAFETY: the caller guarantees `d[0..n]`.
        unsafe {
            let x = _mm256_set1_ps(v);
            let mut i = 0;
            while i + 32 <= n {
                _mm256_storeu_ps(d.add(i), x);
                _mm256_storeu_ps(d.add(i + 8), x);
                _mm256_storeu_ps(d.add(i + 16), x);
                _mm256_storeu_ps(d.add(i + 24), x);
                i += 32;
            }
            while i + 8 <= n {
                _mm256_storeu_ps(d.add(i), x);
                i += 8;
            }
            while i < n {
                *d.add(i) = v;
                i += 1;
            }
        }
    }

    /// `dst[0..n] = src[0..n]`, 8 lanes at a time, the tail scalar.
    #[target_feature(enable = "avx2")]
    unsafe fn copy256(d: *mut f32, s: *const f32, n: usize) {
        // SAFETY: the caller guarantees both ranges.
        unsafe {
            let mut i = 0;
            while i + 32 <= n {
                let a = _mm256_loadu_ps(s.add(i));
                let b = _mm256_loadu_ps(s.add(i + 8));
                let c = _mm256_loadu_ps(s.add(i + 16));
                let e = _mm256_loadu_ps(s.add(i + 24));
                _mm256_storeu_ps(d.add(i), a);
                _mm256_storeu_ps(d.add(i + 8), b);
                _mm256_storeu_ps(d.add(i + 16), c);
                _mm256_storeu_ps(d.add(i + 24), e);
                i += 32;
            }
            while i + 8 <= n {
                _mm256_storeu_ps(d.add(i), _mm256_loadu_ps(s.add(i)));
                i += 8;
            }
            while i < n {
                *d.add(i) = *s.add(i);
                i += 1;
            }
        }
    }

    /// The AVX2 run routine (see [`super::run_reference`]).
    ///
    /// # Safety
    /// As [`super::run_reference`], on a CPU with AVX2.
    #[allow(clippy::too_many_arguments)]
    unsafe extern "C" fn run256(
        dst: *mut f32,
        total: i64,
        src: *const f32,
        s0: i64,
        src_len: i64,
        lo: i64,
        hi: i64,
        fill: f32,
    ) {
        let (lo, hi) = copy_range(total, s0, src_len, lo, hi);
        let total = total.max(0) as usize;
        // SAFETY: as `run_reference`; handed out only when the CPU has AVX2.
        unsafe {
            fill256(dst, lo, fill);
            if lo < hi {
                copy256(dst.add(lo), src.offset(s0 as isize + lo as isize), hi - lo);
            }
            fill256(dst.add(hi), total - hi, fill);
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    use super::RunFn;
    use tessel_ir::target::Isa;

    pub(super) fn routine(_isa: Isa) -> Option<RunFn> {
        None
    }
}

/// The routine of `isa` for tests and benchmarks (`None` when this CPU cannot run it).
pub fn run_routine(isa: Isa) -> Option<RunFn> {
    routine(isa)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_rng::Rng;

    #[test]
    fn every_routine_matches_the_reference_on_random_runs() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for isa in Isa::ALL {
            let Some(f) = routine(isa) else {
                eprintln!("skipping {isa}: no run routine on this CPU");
                continue;
            };
            for _ in 0..400 {
                let total = (rng.next_u64() % 140) as i64;
                let src_len = (rng.next_u64() % 160) as i64;
                let s0 = (rng.next_u64() % 40) as i64 - 20;
                let lo = (rng.next_u64() % 170) as i64 - 15;
                let hi = (rng.next_u64() % 170) as i64 - 15;
                let fill = (rng.next_u64() % 7) as f32 - 3.0;
                let src: Vec<f32> = (0..src_len).map(|i| i as f32 + 0.5).collect();
                let mut want = vec![f32::NAN; total as usize + 3];
                let mut got = want.clone();
                // SAFETY: both destinations hold `total` elements (plus a guard), the source
                // `src_len`.
                unsafe {
                    run_reference(
                        want.as_mut_ptr(),
                        total,
                        src.as_ptr(),
                        s0,
                        src_len,
                        lo,
                        hi,
                        fill,
                    );
                    f(
                        got.as_mut_ptr(),
                        total,
                        src.as_ptr(),
                        s0,
                        src_len,
                        lo,
                        hi,
                        fill,
                    );
                }
                let same = want
                    .iter()
                    .zip(&got)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(
                    same,
                    "{isa}: total {total} s0 {s0} len {src_len} lo {lo} hi {hi}"
                );
                // The guard past `total` is untouched.
                assert!(got[total as usize..].iter().all(|v| v.is_nan()));
            }
        }
    }

    #[test]
    fn copy_range_clamps_and_refuses_reads_outside_the_source() {
        assert_eq!(copy_range(10, 0, 10, -5, 20), (0, 10));
        assert_eq!(copy_range(10, 0, 10, 7, 3), (7, 7));
        assert_eq!(copy_range(10, -2, 10, 1, 5), (1, 1));
        assert_eq!(copy_range(10, 2, 10, 1, 9), (1, 1));
        assert_eq!(copy_range(10, 2, 10, 1, 8), (1, 8));
    }
}
