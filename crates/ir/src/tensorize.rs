//! Tensorize legality: which loop nests under a [`LoopKind::Tensorized`] loop match a
//! micro-kernel, with which strides.
//!
//! The micro-kernel family is a register tile of `C` updated over a reduction loop:
//!
//! ```text
//! for k in 0..K:                       // the tensorized loop
//!   for i in 0..MR:                    // optional (MR = 1 when absent)
//!     for j in 0..NR:
//!       C[c0 + i*ldc + j] = C[c0 + i*ldc + j] + A[a0 + i*sa + k*ska] * B[b0 + k*skb + j]
//! ```
//!
//! A tile with more rows than fit in registers (up to [`MAX_STRIP_MR`]) is a *strip*: code
//! generation calls one register-tile kernel per block of [`strip_blocks`], each over the
//! whole reduction. So tile rows need not divide into register tiles (W = 56 takes a 56-row
//! strip of 6- and 5-row blocks instead of 4-row tiles).
//!
//! A second family, *elementwise*, reads `A` per column too (unit stride along `j`), as a
//! depthwise convolution does (input times per-channel weight, summed over the kernel
//! window):
//!
//! ```text
//!       C[c0 + i*ldc + j] = C[c0 + i*ldc + j] + A[a0 + i*sa + k*ska + j] * B[b0 + k*skb + j]
//! ```
//!
//! [`TensorizeMatch::kind`] tells which ([`KernelKind`]); both families have the same tiles.
//!
//! Each ISA level of a [`Target`](crate::target::Target) has its own tiles: AVX2's are 8
//! lanes per vector, up to 12 accumulators in 16 ymm registers; AVX-512's 16 lanes, up to
//! 28 accumulators in 32 zmm registers, in widths of 8 columns (a width that is an odd
//! multiple of 8 ends in a masked half vector) ([`kernel_nr`], [`register_tile_fits`]). [`check`]
//! accepts a tile of any ISA's family; code generation then calls it only when the target
//! it compiles for has that tile.
//!
//! `i` and `j` may come in either order and be serial, unrolled or vectorized loops; the
//! product may be written either way round and the accumulator on either side of `+`.
//! Indices must be affine in `i`, `j` and `k` (anything else in them, such as outer loop
//! variables divided or taken modulo, is a base offset): unit stride in `j` for `B` and `C`,
//! any stride in `i` and `k`, and `C` must not depend on `k`, `A` not on `j` (broadcast) or
//! with unit stride (elementwise), `B` not on `i`.
//! `C` must be a different buffer from `A` and `B`. Matmul, dense, batch matmul and NHWC
//! convolutions (A = input rows at a stride, B = weights) all take this form; for an NHWC
//! convolution `k` may also be the fused loop `rw@rc` (its `f / C`, `f % C` indices fold to
//! `f` when the loop nest is built, so the kernel reduces over `kernel_w * C` steps).
//!
//! [`check`] answers for one loop and [`find`] for every tensorized loop of a nest, so that
//! code generation and the search ask the same question. Code generation additionally needs
//! the target's family to have the tile, the CPU to run it, and the accesses to be provably in bounds;
//! when anything fails it emits the ordinary loops, so a `Tensorize` annotation is always
//! safe.
//!
//! [`LoopKind::Tensorized`]: crate::loop_nest::LoopKind::Tensorized

use crate::affine::Affine;
use crate::expr::BinOp;
use crate::loop_nest::{BufferId, ExprId, LoopId, LoopKind, LoopNest, Node, Stmt, StmtId};
pub use crate::target::Isa;

/// Column counts of `isa`'s register tiles, narrowest first: one to four vectors per row
/// (8, 16, 24, 32 columns for AVX2); for AVX-512 every multiple of 8 up to 64, the odd
/// multiples (8, 24, 40, 56) with their last vector half full and read and written under an
/// AVX-512 mask, so that an output of 24 or 40 columns needs no plain-code fallback. None
/// for generic code.
pub fn kernel_nr(isa: Isa) -> &'static [i64] {
    match isa {
        Isa::Generic => &[],
        Isa::Avx2 => &[8, 16, 24, 32],
        Isa::Avx512 => &[8, 16, 24, 32, 40, 48, 56, 64],
    }
}

/// Vector registers one row of an `nr`-column tile of `isa` takes: `nr / lanes` rounded
/// up (a masked last vector is a whole register). 0 for generic code, which has no tiles.
pub fn row_vectors(isa: Isa, nr: i64) -> i64 {
    let lanes = isa.lanes();
    if !isa.has_micro_kernels() || lanes <= 0 || nr <= 0 {
        return 0;
    }
    (nr + lanes - 1) / lanes
}

/// Most rows of one of `isa`'s register tiles (8 for AVX2, 14 for AVX-512).
pub fn max_mr(isa: Isa) -> i64 {
    match isa {
        Isa::Generic => 0,
        Isa::Avx2 => 8,
        Isa::Avx512 => 14,
    }
}

/// Most vector accumulators of one of `isa`'s register tiles: 12 of the 16 ymm registers,
/// 28 of the 32 zmm registers (the rest hold a row of `b` and the broadcast of `a`).
fn max_accumulators(isa: Isa) -> i64 {
    match isa {
        Isa::Generic => 0,
        Isa::Avx2 => 12,
        Isa::Avx512 => 28,
    }
}

/// Most rows of a tensorized tile. Tiles taller than a register tile holds are *strips*:
/// code generation cuts them into register tiles ([`strip_blocks`]) and calls one kernel
/// per block, so a row count such as 56 or 14 (ResNet-50's widths) needs no edge tile.
pub const MAX_STRIP_MR: i64 = 64;

/// True when `isa`'s micro-kernel family has an `mr`×`nr` *register* tile: `nr` is one of
/// [`kernel_nr`], `mr` ≤ [`max_mr`], and the accumulators ([`row_vectors`] per row, a
/// masked vector counting whole) (at most 12 for AVX2, 28 for
/// AVX-512) plus one row of `b` plus the broadcast fit the vector registers (16 ymm, 32
/// zmm). So AVX2's 3×32, which would spill and measured 46 GFLOP/s/core against 104 for
/// 2×32, is left out, as is AVX-512's 7×64.
pub fn register_tile_fits(isa: Isa, mr: i64, nr: i64) -> bool {
    if !kernel_nr(isa).contains(&nr) {
        return false;
    }
    let vectors = row_vectors(isa, nr);
    // Accumulators, one row of `b`, and the broadcast of `a`.
    let registers = mr * vectors + vectors + 1;
    (1..=max_mr(isa)).contains(&mr)
        && mr * vectors <= max_accumulators(isa)
        && registers <= isa.vector_registers()
}

/// True when an `mr`×`nr` tile can be tensorized for `isa`: `nr` is one of [`kernel_nr`]
/// and `1 ≤ mr ≤` [`MAX_STRIP_MR`]. Tiles that [`register_tile_fits`] are one kernel call;
/// taller ones are strips of register tiles ([`strip_blocks`]).
pub fn kernel_supported(isa: Isa, mr: i64, nr: i64) -> bool {
    kernel_nr(isa).contains(&nr) && (1..=MAX_STRIP_MR).contains(&mr)
}

/// Most rows of one of `isa`'s register tiles `nr` columns wide (AVX2: 6 for 16 columns, 2
/// for 32); 1 when the family has no tile that wide (callers check [`kernel_supported`]
/// first).
fn max_register_rows(isa: Isa, nr: i64) -> i64 {
    (1..=max_mr(isa))
        .rev()
        .find(|&mr| register_tile_fits(isa, mr, nr))
        .unwrap_or(1)
}

/// The row counts of `isa`'s register tiles an `mr`×`nr` tile is cut into, top to bottom:
/// the tile itself when it fits in registers, otherwise the fewest register tiles that
/// cover it, as even as possible (AVX2, 56 rows of 16 columns: 6, 6, 6, 6, 6, 6, 5, 5, 5,
/// 5). Even blocks keep every call near the peak rate instead of leaving one thin,
/// latency-bound tail (a 2×16 AVX2 tile runs at half the rate of a 6×16 one). Empty when
/// the tile is not [`kernel_supported`].
pub fn strip_blocks(isa: Isa, mr: i64, nr: i64) -> Vec<i64> {
    if !kernel_supported(isa, mr, nr) {
        return Vec::new();
    }
    if register_tile_fits(isa, mr, nr) {
        return vec![mr];
    }
    let tallest = max_register_rows(isa, nr);
    let blocks = (mr + tallest - 1) / tallest;
    let (short, extra) = (mr / blocks, mr % blocks);
    (0..blocks).map(|b| short + i64::from(b < extra)).collect()
}

/// How a micro-kernel reads its row operand `A`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KernelKind {
    /// One element of `A` per row and reduction step, broadcast across the columns (an outer
    /// product: matmul, dense, convolutions over input channels).
    Broadcast,
    /// A row of `A` per row and reduction step, multiplied column by column with `B` (an
    /// elementwise product: depthwise convolutions).
    Elementwise,
}

/// A reduction loop right around a tensorized loop, with nothing else in its body, that a
/// kernel can fold into the same call (`for q in 0..extent` around the `k` loop): the
/// accumulator does not depend on it, the operands do with constant strides. A depthwise
/// convolution's `rh` around a tensorized `rw` is one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OuterReduction {
    /// The enclosing loop.
    pub lp: LoopId,
    /// Its extent.
    pub extent: i64,
    /// Stride of `A` along it.
    pub a_stride: i64,
    /// Stride of `B` along it.
    pub b_stride: i64,
}

/// A matched register tile: everything a micro-kernel call needs, as strides in elements.
/// Base indices are the index expressions of the accesses; evaluate them with the `i`, `j`
/// and `k` variables set to 0 to get the base offsets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorizeMatch {
    /// Whether `A` is broadcast or read per column.
    pub kind: KernelKind,
    /// The tensorized reduction loop.
    pub k_loop: LoopId,
    /// The row loop of the tile (`None` when the tile has one row).
    pub i_loop: Option<LoopId>,
    /// The column loop of the tile.
    pub j_loop: LoopId,
    /// Rows of the tile.
    pub mr: i64,
    /// Columns of the tile.
    pub nr: i64,
    /// Extent of the reduction loop.
    pub k: i64,
    /// The accumulator buffer and its index expression.
    pub c: (BufferId, ExprId),
    /// Stride of `C` between rows.
    pub c_row_stride: i64,
    /// The row operand and its index expression.
    pub a: (BufferId, ExprId),
    /// Stride of `A` between rows.
    pub a_row_stride: i64,
    /// Stride of `A` along `k`.
    pub a_k_stride: i64,
    /// The column operand and its index expression.
    pub b: (BufferId, ExprId),
    /// Stride of `B` along `k`.
    pub b_k_stride: i64,
    /// The reduction loop around `k` that a call may fold in ([`find`] fills it; `None`
    /// from [`check`], which sees only the tensorized loop).
    pub outer: Option<OuterReduction>,
}

impl TensorizeMatch {
    /// The outer reduction a kernel call folds in: the elementwise kernels take it as their
    /// `k2` loop; the broadcast kernels have no such argument, so theirs stays a loop.
    pub fn folded(&self) -> Option<&OuterReduction> {
        self.outer
            .as_ref()
            .filter(|_| self.kind == KernelKind::Elementwise)
    }
}

/// Checks the `For` statement `s`: `Ok` with the match when its body is a micro-kernel tile
/// that the kernel family has, `Err` with the reason otherwise.
pub fn check(nest: &LoopNest, s: StmtId) -> Result<TensorizeMatch, String> {
    let Stmt::For {
        lp: k_loop, body, ..
    } = nest.stmt(s)
    else {
        return Err("not a loop".into());
    };
    let k_loop = *k_loop;
    // The perfectly nested chain of loops under k, down to one store.
    let mut chain = Vec::new();
    let mut body = body.as_slice();
    let (store_buf, store_index, value) = loop {
        let [only] = body else {
            return Err(format!(
                "{} statements where one loop or store is expected",
                body.len()
            ));
        };
        match nest.stmt(*only) {
            Stmt::For {
                lp, body: inner, ..
            } => {
                let kind = nest.lp(*lp).kind;
                if matches!(kind, LoopKind::Parallel | LoopKind::Tensorized) {
                    return Err(format!("inner loop {} is {:?}", nest.lp(*lp).name, kind));
                }
                chain.push(*lp);
                body = inner;
            }
            Stmt::Store { buf, index, value } => break (*buf, *index, *value),
            _ => return Err("the tile is not a perfect loop nest (guard or allocation)".into()),
        }
    };
    // value = C[idx] + x*y, either way round.
    let Node::Binary(BinOp::Add, l, r) = nest.get(value) else {
        return Err("the stored value is not an accumulation `C + A*B`".into());
    };
    let is_acc = |e: ExprId| nest.get(e) == Node::Load(store_buf, store_index);
    let prod = if is_acc(l) {
        r
    } else if is_acc(r) {
        l
    } else {
        return Err("the stored value does not read the accumulator at the stored index".into());
    };
    let Node::Binary(BinOp::Mul, x, y) = nest.get(prod) else {
        return Err("the accumulated value is not a product".into());
    };
    let (Node::Load(xb, xi), Node::Load(yb, yi)) = (nest.get(x), nest.get(y)) else {
        return Err("the product's factors are not plain loads".into());
    };
    if xb == store_buf || yb == store_buf {
        return Err("the accumulator is also a factor".into());
    }
    // Roles: j is the loop with unit stride in C; i the other one.
    let c_aff = affine(nest, store_index).ok_or("the accumulator index is not affine")?;
    let (mut i_loop, mut j_loop) = (None, None);
    for &l in &chain {
        if c_aff.coef(l) == 1 && j_loop.is_none() {
            j_loop = Some(l);
        } else if i_loop.is_none() {
            i_loop = Some(l);
        } else {
            return Err("more than two loops in the tile".into());
        }
    }
    let j_loop = j_loop.ok_or("no tile loop has unit stride in the accumulator")?;
    // B is the factor that depends on j; when both do (elementwise), B is the one that
    // does not depend on i.
    let (xa, ya) = (
        affine(nest, xi).ok_or("a factor's index is not affine")?,
        affine(nest, yi).ok_or("a factor's index is not affine")?,
    );
    let coef_i = |f: &Strides| i_loop.map_or(0, |i| f.coef(i));
    let kind = if xa.coef(j_loop) != 0 && ya.coef(j_loop) != 0 {
        KernelKind::Elementwise
    } else {
        KernelKind::Broadcast
    };
    let y_is_b = match kind {
        KernelKind::Broadcast => ya.coef(j_loop) != 0,
        KernelKind::Elementwise => coef_i(&ya) == 0,
    };
    let ((a, a_aff), (b, b_aff)) = if y_is_b {
        (((xb, xi), xa), ((yb, yi), ya))
    } else {
        (((yb, yi), ya), ((xb, xi), xa))
    };
    if b_aff.coef(j_loop) != 1 {
        return Err("B does not have unit stride along the tile columns".into());
    }
    if kind == KernelKind::Elementwise && a_aff.coef(j_loop) != 1 {
        return Err("A depends on the tile columns without unit stride".into());
    }
    if coef_i(&b_aff) != 0 {
        return Err("B depends on the tile rows".into());
    }
    if c_aff.coef(k_loop) != 0 {
        return Err("the accumulator depends on the reduction loop".into());
    }
    let mr = i_loop.map_or(1, |i| nest.lp(i).extent);
    let nr = nest.lp(j_loop).extent;
    let strides = [
        coef_i(&c_aff),
        coef_i(&a_aff),
        a_aff.coef(k_loop),
        b_aff.coef(k_loop),
    ];
    if strides.contains(&i64::MIN) {
        return Err("an index is not affine in the tile or reduction loops".into());
    }
    if mr > 1 && coef_i(&c_aff).unsigned_abs() < nr as u64 {
        return Err("the accumulator's tile rows overlap".into());
    }
    if !Isa::ALL.iter().any(|&isa| kernel_supported(isa, mr, nr)) {
        return Err(format!("no micro-kernel family has a {mr}x{nr} tile"));
    }
    Ok(TensorizeMatch {
        kind,
        k_loop,
        i_loop,
        j_loop,
        mr,
        nr,
        k: nest.lp(k_loop).extent,
        c: (store_buf, store_index),
        c_row_stride: coef_i(&c_aff),
        a,
        a_row_stride: coef_i(&a_aff),
        a_k_stride: a_aff.coef(k_loop),
        b,
        b_k_stride: b_aff.coef(k_loop),
        outer: None,
    })
}

/// The [`OuterReduction`] around matched loop `s` whose parent statement is `parent`, if
/// it qualifies: a serial or unrolled loop of extent > 1 whose body is `s` alone, that the
/// accumulator does not depend on and the operands do with constant strides.
fn outer_reduction(
    nest: &LoopNest,
    parent: StmtId,
    s: StmtId,
    m: &TensorizeMatch,
) -> Option<OuterReduction> {
    let Stmt::For { lp, body, .. } = nest.stmt(parent) else {
        return None;
    };
    let l = nest.lp(*lp);
    if body.as_slice() != [s]
        || !matches!(l.kind, LoopKind::Serial | LoopKind::Unrolled)
        || l.extent <= 1
    {
        return None;
    }
    let stride = |index: ExprId| affine(nest, index).map(|f| f.coef(*lp));
    let (a_stride, b_stride, c_stride) = (stride(m.a.1)?, stride(m.b.1)?, stride(m.c.1)?);
    if c_stride != 0 || a_stride == i64::MIN || b_stride == i64::MIN {
        return None;
    }
    Some(OuterReduction {
        lp: *lp,
        extent: l.extent,
        a_stride,
        b_stride,
    })
}

/// Every [`LoopKind::Tensorized`] loop of `nest` (by its `For` statement), in statement
/// order, with the result of [`check`] and the [`OuterReduction`] around it, if any.
pub fn find(nest: &LoopNest) -> Vec<(StmtId, Result<TensorizeMatch, String>)> {
    let mut out = Vec::new();
    // (statement, its parent statement)
    let mut stack: Vec<(StmtId, Option<StmtId>)> =
        nest.body.iter().rev().map(|&s| (s, None)).collect();
    while let Some((s, parent)) = stack.pop() {
        match nest.stmt(s) {
            Stmt::For { lp, body, .. } => {
                if nest.lp(*lp).kind == LoopKind::Tensorized {
                    let found = check(nest, s).map(|mut m| {
                        m.outer = parent.and_then(|p| outer_reduction(nest, p, s, &m));
                        m
                    });
                    out.push((s, found));
                }
                stack.extend(body.iter().rev().map(|&b| (b, Some(s))));
            }
            Stmt::If { body, .. } | Stmt::Alloc { body, .. } => {
                stack.extend(body.iter().rev().map(|&b| (b, Some(s))))
            }
            Stmt::Store { .. } => {}
        }
    }
    out
}

/// An index's affine form ([`crate::affine`]), read as strides in the tile's loops.
struct Strides<'a> {
    nest: &'a LoopNest,
    form: Affine,
}

impl Strides<'_> {
    /// The stride in `l`, or `i64::MIN` when an atom of the index uses `l` (never a valid
    /// stride, so every check against it fails).
    fn coef(&self, l: LoopId) -> i64 {
        self.form.stride(self.nest, l).unwrap_or(i64::MIN)
    }
}

/// The strides of integer expression `e`; `None` on overflow.
fn affine(nest: &LoopNest, e: ExprId) -> Option<Strides<'_>> {
    Some(Strides {
        nest,
        form: Affine::of(nest, e)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_tiles_are_one_block() {
        assert_eq!(strip_blocks(Isa::Avx2, 6, 16), vec![6]);
        assert_eq!(strip_blocks(Isa::Avx2, 8, 8), vec![8]);
        assert_eq!(strip_blocks(Isa::Avx2, 2, 32), vec![2]);
        assert_eq!(strip_blocks(Isa::Avx512, 14, 32), vec![14]);
        assert_eq!(strip_blocks(Isa::Avx512, 6, 64), vec![6]);
        assert_eq!(strip_blocks(Isa::Avx512, 9, 48), vec![9]);
    }

    #[test]
    fn strips_are_cut_into_the_fewest_even_register_tiles() {
        assert_eq!(
            strip_blocks(Isa::Avx2, 56, 16),
            vec![6, 6, 6, 6, 6, 6, 5, 5, 5, 5]
        );
        assert_eq!(strip_blocks(Isa::Avx2, 14, 16), vec![5, 5, 4]);
        assert_eq!(strip_blocks(Isa::Avx2, 7, 16), vec![4, 3]);
        assert_eq!(strip_blocks(Isa::Avx2, 3, 32), vec![2, 1]);
        assert_eq!(strip_blocks(Isa::Avx2, 14, 8), vec![7, 7]);
        assert_eq!(strip_blocks(Isa::Avx2, 12, 24), vec![4, 4, 4]);
        assert_eq!(strip_blocks(Isa::Avx512, 56, 16), vec![14, 14, 14, 14]);
        assert_eq!(strip_blocks(Isa::Avx512, 7, 64), vec![4, 3]);
        assert_eq!(strip_blocks(Isa::Avx512, 64, 32), vec![13, 13, 13, 13, 12]);
    }

    #[test]
    fn the_families_differ_by_isa() {
        assert!(register_tile_fits(Isa::Avx2, 6, 16));
        assert!(!register_tile_fits(Isa::Avx2, 14, 16));
        assert!(register_tile_fits(Isa::Avx512, 14, 16));
        assert!(!register_tile_fits(Isa::Avx512, 6, 12));
        assert!(!register_tile_fits(Isa::Avx2, 6, 40));
        assert!(!register_tile_fits(Isa::Avx512, 7, 64));
        assert!(!register_tile_fits(Isa::Avx2, 1, 64));
        assert!(kernel_nr(Isa::Generic).is_empty());
        assert!(strip_blocks(Isa::Generic, 4, 16).is_empty());
    }

    #[test]
    fn masked_avx512_tiles_count_their_half_vector_as_a_whole_register() {
        assert_eq!(row_vectors(Isa::Avx512, 8), 1);
        assert_eq!(row_vectors(Isa::Avx512, 24), 2);
        assert_eq!(row_vectors(Isa::Avx512, 56), 4);
        assert_eq!(row_vectors(Isa::Avx2, 24), 3);
        assert_eq!(row_vectors(Isa::Generic, 24), 0);
        // 14 rows of one (masked) vector, 14 of two, 9 of three, 6 of four: as 16..64.
        for (nr, rows) in [(8, 14), (24, 14), (40, 9), (56, 6)] {
            assert!(register_tile_fits(Isa::Avx512, rows, nr), "{rows}x{nr}");
            assert!(
                !register_tile_fits(Isa::Avx512, rows + 1, nr),
                "{}x{nr}",
                rows + 1
            );
            assert_eq!(
                max_register_rows(Isa::Avx512, nr),
                max_register_rows(Isa::Avx512, nr + 8)
            );
        }
        assert_eq!(strip_blocks(Isa::Avx512, 56, 24), vec![14, 14, 14, 14]);
        assert_eq!(strip_blocks(Isa::Avx512, 14, 56), vec![5, 5, 4]);
        assert!(kernel_supported(Isa::Avx512, 3, 40));
        assert!(!kernel_supported(Isa::Avx2, 3, 40));
    }

    #[test]
    fn every_supported_tile_is_covered_by_register_tiles() {
        for isa in [Isa::Avx2, Isa::Avx512] {
            for &nr in kernel_nr(isa) {
                for mr in 1..=MAX_STRIP_MR {
                    let blocks = strip_blocks(isa, mr, nr);
                    assert_eq!(blocks.iter().sum::<i64>(), mr, "{isa} {mr}x{nr}");
                    assert!(
                        blocks.iter().all(|&b| register_tile_fits(isa, b, nr)),
                        "{isa} {mr}x{nr}"
                    );
                    let (lo, hi) = (blocks.iter().min(), blocks.iter().max());
                    assert!(
                        hi.zip(lo).is_some_and(|(h, l)| h - l <= 1),
                        "{isa} {mr}x{nr}"
                    );
                }
            }
            assert!(strip_blocks(isa, MAX_STRIP_MR + 1, 16).is_empty());
            assert!(strip_blocks(isa, 4, 12).is_empty());
            assert!(strip_blocks(isa, 0, 16).is_empty());
        }
    }
}
