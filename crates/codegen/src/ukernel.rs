//! Micro-kernels: the `tensorize` intrinsics JIT code calls, one family per ISA level of
//! the [`Isa`] a program is compiled for (AVX2 + FMA, AVX-512F).
//!
//! One kernel updates an `MR`×`NR` register tile of `C` over `k` steps:
//!
//! ```text
//! for p in 0..k, i in 0..MR, j in 0..NR:
//!     c[i*c_rs + j] += a[i*a_rs + p*a_ks] * b[p*b_ks + j]
//! ```
//!
//! with strides in elements (unit stride along `j` for `b` and `c`). Row-major `B` has
//! `b_ks = N`; a packed panel (`[K][NR]`, what the layout rewrite makes) has `b_ks = NR`.
//! The tile lives in `MR·NR/8` ymm accumulators; each step loads `NR/8` vectors of `b` and
//! broadcasts one element of `a` per row. Kernels are compiled ahead of time by rustc with
//! `#[target_feature(enable = "avx2,fma")]` and const generics (CODEGEN.md measured 82
//! GFLOP/s/core for this shape of code, against Cranelift's 31), one per shape that
//! [`tessel_ir::tensorize::register_tile_fits`] accepts, and run only when the CPU has both
//! features ([`available`]). Taller tiles (strips) run as one call per register tile
//! ([`strip_kernels`]).
//!
//! The AVX-512 family ([`Isa::Avx512`]) has the same contract with 16-lane zmm vectors:
//! `NR` any multiple of 8 up to 64, up to 14 rows and 28 accumulators in the 32 zmm
//! registers ([`tessel_ir::tensorize::register_tile_fits`]), compiled ahead of time with
//! `#[target_feature(enable = "avx512f")]` and run only when the CPU has AVX-512F. A width
//! that is an odd multiple of 8 (8, 24, 40, 56) ends in a half vector read with
//! `_mm512_maskz_loadu_ps` and written with `_mm512_mask_storeu_ps` under a mask fixed by
//! `NR` (a const generic), so nothing outside the tile is touched and an output of 24
//! channels gets a kernel instead of plain code. Only multiples of 8 have masked tiles:
//! each extra tail width is another full set of monomorphizations (the four masked widths
//! took the crate's release build from 32 s to 52 s of CPU time), and any width 1..=64
//! would be eight times that.
//! Kernels of different ISAs are different symbols (`symbol`), so a 4×16 AVX2 kernel
//! and a 4×16 AVX-512 one never mix. On one Sapphire Rapids core (AVX-512 FMA peak 240
//! GFLOP/s, AVX2 130, by `fma_peak.c`) the best AVX-512 tiles run at 197–233 GFLOP/s
//! (9×48, 10×32, k = 256, `examples/ukernels.rs`), the best AVX2 ones at 124–127 (4×24,
//! 6×16).
//!
//! The elementwise family ([`KernelKind::Elementwise`], depthwise convolutions) has the
//! same tiles but reads `a` per column, `a[i*a_rs + p*a_ks + j]`, as a vector operand of
//! each FMA instead of a broadcast, and folds in an outer reduction loop `q` (a depthwise
//! window's rows around its columns; see [`ElementwiseKernelFn`]), so one call covers the
//! whole window and the tile stays in registers across it. A 3-tap window whose tile rows
//! are one or two taps apart (a stride-1 or stride-2 depthwise convolution: `k = 3`,
//! `a_rs = a_ks` or `2·a_ks`) runs in a *sliding* form: each input vector of a window row
//! is loaded once and multiplied into every accumulator that reads it, with the three
//! weight vectors in registers (one Sapphire Rapids core, 3×3 window, 64 channels:
//! 14×32 52 → 111–116 GFLOP/s, 7×32 72 → 99–107, `examples/ukernels.rs`).

use tessel_ir::target::CpuFeatures;
pub use tessel_ir::target::Isa;
pub use tessel_ir::tensorize::KernelKind;

/// A register-tile kernel: its family and tile `(kind, mr, nr)`.
pub type KernelShape = (KernelKind, i64, i64);

/// The C signature of every micro-kernel (`k, a, a_rs, a_ks, b, b_ks, c, c_rs`).
pub type MicroKernelFn =
    unsafe extern "C" fn(i64, *const f32, i64, i64, *const f32, i64, *mut f32, i64);

/// The C signature of the elementwise micro-kernels (`k2, a_k2s, b_k2s, k, a, a_rs, a_ks,
/// b, b_ks, c, c_rs`):
///
/// ```text
/// for q in 0..k2, p in 0..k, i in 0..MR, j in 0..NR:
///     c[i*c_rs + j] += a[q*a_k2s + i*a_rs + p*a_ks + j] * b[q*b_k2s + p*b_ks + j]
/// ```
///
/// (`k2 = 1` when there is no outer loop to fold in).
pub type ElementwiseKernelFn =
    unsafe extern "C" fn(i64, i64, i64, i64, *const f32, i64, i64, *const f32, i64, *mut f32, i64);

/// The C signature of the *guarded* elementwise kernels: [`ElementwiseKernelFn`]'s
/// arguments, then two masks, `rows` and `cols` (`u64`). The sum runs only over the window
/// rows `q` whose bit is set in `rows` and the input positions `i·s + p` (`s = a_rs /
/// a_ks`) whose bit is set in `cols`; the other elements of `a` count as zeros and are
/// never read, so `a` may be the image itself at its edges (its address and strides formed
/// for the padded window, the padding's elements masked off) instead of a padded copy. A
/// 3-tap window whose rows step 1 or 2 taps (`k = 3`, `s` = 1 or 2) runs in the sliding
/// form; any other call as plain loops.
///
/// ```text
/// for q in 0..k2 if rows[q], p in 0..k, i in 0..MR if cols[i*s + p], j in 0..NR:
///     c[i*c_rs + j] += a[q*a_k2s + i*a_rs + p*a_ks + j] * b[q*b_k2s + p*b_ks + j]
/// ```
pub type GuardedKernelFn = unsafe extern "C" fn(
    i64,
    i64,
    i64,
    i64,
    *const f32,
    i64,
    i64,
    *const f32,
    i64,
    *mut f32,
    i64,
    u64,
    u64,
);

/// The guarded `mr`×`nr` elementwise kernel of `isa` ([`GuardedKernelFn`]; from zero when
/// `zero`, as [`elementwise_zero_kernel`]), when the family has the tile and this CPU can
/// run it.
pub fn guarded_kernel(isa: Isa, mr: i64, nr: i64, zero: bool) -> Option<GuardedKernelFn> {
    if !available(isa) || !tessel_ir::tensorize::register_tile_fits(isa, mr, nr) {
        return None;
    }
    match isa {
        Isa::Generic => None,
        Isa::Avx2 => imp::lookup_guarded(mr, nr, zero),
        Isa::Avx512 => imp512::lookup_guarded(mr, nr, zero),
    }
}

/// A micro-kernel of either family.
#[derive(Clone, Copy, Debug)]
pub enum KernelFn {
    /// A broadcast kernel ([`MicroKernelFn`]).
    Broadcast(MicroKernelFn),
    /// An elementwise kernel ([`ElementwiseKernelFn`]).
    Elementwise(ElementwiseKernelFn),
}

impl KernelFn {
    /// The kernel's address, for the JIT's symbol table.
    pub fn addr(self) -> *const u8 {
        match self {
            KernelFn::Broadcast(f) => f as *const u8,
            KernelFn::Elementwise(f) => f as *const u8,
        }
    }
}

/// True when this CPU can run `isa`'s micro-kernels (x86-64 with AVX2 and FMA; for
/// AVX-512 also AVX-512F). Always false for [`Isa::Generic`], which has none.
pub fn available(isa: Isa) -> bool {
    isa.has_micro_kernels() && CpuFeatures::host().supports(isa)
}

/// The symbol name JIT code imports the `mr`×`nr` kernel of `isa`'s family `kind` under.
pub(crate) fn symbol(isa: Isa, kind: KernelKind, mr: i64, nr: i64) -> String {
    match kind {
        KernelKind::Broadcast => format!("tessel_ukernel_{isa}_{mr}x{nr}"),
        KernelKind::Elementwise => format!("tessel_ukernel_{isa}_ew_{mr}x{nr}"),
    }
}

/// The `mr`×`nr` broadcast micro-kernel of `isa`, when the family has it and this CPU can
/// run it.
///
/// Calling the returned function is `unsafe`: every element it reads or writes
/// (`a[i*a_rs + p*a_ks]`, `b[p*b_ks + j]`, `c[i*c_rs + j]` for `i < mr`, `j < nr`, `p < k`)
/// must be valid, and `c`'s elements must not overlap `a`'s or `b`'s.
pub fn micro_kernel(isa: Isa, mr: i64, nr: i64) -> Option<MicroKernelFn> {
    match kernel(isa, KernelKind::Broadcast, mr, nr)? {
        KernelFn::Broadcast(f) => Some(f),
        KernelFn::Elementwise(_) => None,
    }
}

/// The `mr`×`nr` micro-kernel of `isa`'s family `kind`, when the family has it and this CPU
/// can run it (an elementwise kernel has the same requirements as [`micro_kernel`] for the
/// elements of [`ElementwiseKernelFn`]'s loops).
pub fn kernel(isa: Isa, kind: KernelKind, mr: i64, nr: i64) -> Option<KernelFn> {
    if !available(isa) || !tessel_ir::tensorize::register_tile_fits(isa, mr, nr) {
        return None;
    }
    match (isa, kind) {
        (Isa::Generic, _) => None,
        (Isa::Avx2, KernelKind::Broadcast) => imp::lookup(mr, nr).map(KernelFn::Broadcast),
        (Isa::Avx2, KernelKind::Elementwise) => {
            imp::lookup_elementwise(mr, nr, false).map(KernelFn::Elementwise)
        }
        (Isa::Avx512, KernelKind::Broadcast) => imp512::lookup(mr, nr).map(KernelFn::Broadcast),
        (Isa::Avx512, KernelKind::Elementwise) => {
            imp512::lookup_elementwise(mr, nr, false).map(KernelFn::Elementwise)
        }
    }
}

/// The `mr`×`nr` elementwise kernel of `isa` that starts its tile from zero instead of
/// loading `c` (the tile's initialisation fused into the call: `c` is only written), when
/// the family has it and this CPU can run it. Its contract is [`kernel`]'s, but `c`'s
/// elements need not be initialised.
pub fn elementwise_zero_kernel(isa: Isa, mr: i64, nr: i64) -> Option<ElementwiseKernelFn> {
    if !available(isa) || !tessel_ir::tensorize::register_tile_fits(isa, mr, nr) {
        return None;
    }
    match isa {
        Isa::Generic => None,
        Isa::Avx2 => imp::lookup_elementwise(mr, nr, true),
        Isa::Avx512 => imp512::lookup_elementwise(mr, nr, true),
    }
}

/// The symbol JIT code imports [`elementwise_zero_kernel`]`(isa, mr, nr)` under.
pub(crate) fn zero_symbol(isa: Isa, mr: i64, nr: i64) -> String {
    format!("tessel_ukernel_{isa}_ewz_{mr}x{nr}")
}

/// [`strip_kernels`] for the zero-start elementwise kernels.
pub fn strip_zero_kernels(isa: Isa, mr: i64, nr: i64) -> Option<Vec<(i64, ElementwiseKernelFn)>> {
    let blocks = tessel_ir::tensorize::strip_blocks(isa, mr, nr);
    if blocks.is_empty() {
        return None;
    }
    blocks
        .into_iter()
        .map(|rows| elementwise_zero_kernel(isa, rows, nr).map(|f| (rows, f)))
        .collect()
}

/// Every form of the AVX-512 `mr`×`nr` broadcast kernel, by name (`tile`, `rows`,
/// `rows_u2`), for the benchmark that chose [`micro_kernel`]'s form per shape
/// (`examples/ukernels.rs`); empty when this CPU lacks AVX-512F or the family lacks the
/// tile. The calling contract is [`micro_kernel`]'s.
pub fn avx512_forms(mr: i64, nr: i64) -> Vec<(&'static str, MicroKernelFn)> {
    if !available(Isa::Avx512) || !tessel_ir::tensorize::register_tile_fits(Isa::Avx512, mr, nr) {
        return Vec::new();
    }
    imp512::forms(mr, nr)
}

/// The kernels a tensorized `mr`×`nr` tile of family `kind` runs as under `isa`: one
/// `(rows, kernel)` per block of [`tessel_ir::tensorize::strip_blocks`], top to bottom (a
/// single block for a register tile). `None` when the tile is not supported or this CPU
/// cannot run the kernels.
pub fn strip_kernels(isa: Isa, kind: KernelKind, mr: i64, nr: i64) -> Option<Vec<(i64, KernelFn)>> {
    let blocks = tessel_ir::tensorize::strip_blocks(isa, mr, nr);
    if blocks.is_empty() {
        return None;
    }
    blocks
        .into_iter()
        .map(|rows| kernel(isa, kind, rows, nr).map(|f| (rows, f)))
        .collect()
}

/// The body of `slide` for each input position `$t`: load the `G` vectors at position
/// `$t` and multiply them into the accumulators of the rows whose taps read it.
#[cfg(target_arch = "x86_64")]
macro_rules! slide_positions {
    ([$vec:ty, $fma:ident, $acc:ident, $w:ident, $aq:ident, $a_ks:ident, $g:ident, $cols:ident], $($t:literal)*) => {$(
        if $t < S * (MR - 1) + K && (!M || ($cols >> $t) & 1 == 1) {
            let x: [$vec; G] = std::array::from_fn(|u| {
                ld::<NV, T>($aq.wrapping_offset($t * $a_ks).wrapping_add(L * u), $g + u)
            });
            for (p, wp) in $w.iter().enumerate() {
                if $t >= p && ($t - p) % S == 0 && ($t - p) / S < MR {
                    let row = &mut $acc[($t - p) / S];
                    for u in 0..G {
                        row[u] = $fma(x[u], wp[u], row[u]);
                    }
                }
            }
        }
    )*};
}

/// Defines, inside an ISA's kernel module (with its lane count `L` and its row-vector load
/// and store, `ld` and `st`, in scope), the sliding form of the elementwise kernel, `slide`,
/// and its column group, `group`, from the ISA's target feature, vector type, vector
/// register count and intrinsics.
#[cfg(target_arch = "x86_64")]
macro_rules! slide_kernels {
    ($feature:literal, $vec:ty, $registers:literal, $zero:ident, $fma:ident) => {
        /// The arguments `slide` takes from the elementwise kernel: `k2, a_k2s, b_k2s, a,
        /// a_ks, b, b_ks, c, c_rs` (`a_rs` is `S·a_ks` and `k` is `K`).
        type SlideArgs = (i64, i64, i64, *const f32, i64, *const f32, i64, *mut f32, i64);

        /// The elementwise kernel for a reduction of `K` taps `a_ks` apart whose rows are
        /// `S` taps apart (`a_rs = S·a_ks`, a stride-`S` depthwise window): row `i`, tap `p`
        /// reads input position `S·i + p`, so each of the `S·(MR-1) + K` positions of a
        /// window row is loaded once and multiplied into every accumulator that needs it,
        /// with the row's `K` weight vectors held in registers (the general form loads an
        /// input vector per FMA). Columns are independent, so the tile runs in groups of `G`
        /// vectors (`G` divides `NV`; `group` picks it so that accumulators, weights and one
        /// input fit the vector registers). The last of the `NV` vectors of a row has
        /// `T` columns (`ld`, `st`).
        ///
        /// `M` (the guarded form, `guarded_tile`): window row `q` is read only when bit `q`
        /// of `rows` is set and input position `t` only when bit `t` of `cols` is; the
        /// others count as zeros and are never read (a depthwise window at the image's
        /// edge reading the image itself instead of a padded copy).
        ///
        /// # Safety
        /// As `elementwise_tile` with `k = K`, `a_rs = S·a_ks` (with `M`, for the rows and
        /// positions the masks select).
        #[target_feature(enable = $feature)]
        #[inline]
        unsafe fn slide<
            const MR: usize,
            const NV: usize,
            const T: usize,
            const G: usize,
            const K: usize,
            const S: usize,
            const Z: bool,
            const M: bool,
        >(
            (k2, a_k2s, b_k2s, a, a_ks, b, b_ks, c, c_rs): SlideArgs,
            (rows, cols): (u64, u64),
        ) {
            const { assert!(S * (MR - 1) + K <= 29, "slide unrolls 29 input positions") };
            // SAFETY (whole body): row `i`, tap `p`, column `j` reads `a[q*a_k2s + (S*i +
            // p)*a_ks + j]` = `a[q*a_k2s + i*a_rs + p*a_ks + j]`, an element the caller
            // guarantees; `b` and `c` as in `elementwise_tile`.
            unsafe {
                let (a_ks, b_ks, c_rs) = (a_ks as isize, b_ks as isize, c_rs as isize);
                let mut g = 0;
                while g < NV {
                    let col = g * L;
                    let mut acc: [[$vec; G]; MR] = if Z {
                        [[$zero(); G]; MR]
                    } else {
                        std::array::from_fn(|i| {
                            std::array::from_fn(|u| {
                                ld::<NV, T>(c.offset(i as isize * c_rs).add(col + L * u), g + u)
                            })
                        })
                    };
                    for q in 0..k2 as isize {
                        if M && (q >= 64 || (rows >> q) & 1 == 0) {
                            continue;
                        }
                        let aq = a.wrapping_offset(q * a_k2s as isize).wrapping_add(col);
                        let bq = b.offset(q * b_k2s as isize).add(col);
                        let w: [[$vec; G]; K] = std::array::from_fn(|p| {
                            std::array::from_fn(|u| ld::<NV, T>(bq.offset(p as isize * b_ks).add(L * u), g + u))
                        });
                        // One block per input position `t`, unrolled by the macro (a loop
                        // over `t` was not always unrolled, which left the accumulators in
                        // memory: 14x32 ran at 52 GFLOP/s instead of 115), the blocks past
                        // the window compiled away.
                        slide_positions!(
                            [$vec, $fma, acc, w, aq, a_ks, g, cols],
                            0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28
                        );
                    }
                    for (i, row) in acc.iter().enumerate() {
                        for (u, r) in row.iter().enumerate() {
                            st::<NV, T>(c.offset(i as isize * c_rs).add(col + L * u), g + u, *r);
                        }
                    }
                    g += G;
                }
            }
        }

        /// The column group of `slide` for an `mr`×`nv`-vector tile: the most vectors,
        /// dividing `nv`, whose accumulators, three taps' weights and one input vector
        /// leave at least one vector register free.
        const fn group(mr: usize, nv: usize) -> usize {
            let mut g = nv;
            while g > 1 && (nv % g != 0 || g * (mr + 4) >= $registers) {
                g -= 1;
            }
            g
        }

        /// The guarded elementwise kernel ([`super::GuardedKernelFn`]): `slide` with masks
        /// for a 3-tap window whose rows step 1 or 2 taps, plain loops for anything else.
        /// The last of the `NV` vectors of a row has `T` columns.
        ///
        /// # Safety
        /// As [`super::GuardedKernelFn`].
        #[target_feature(enable = $feature)]
        #[allow(clippy::too_many_arguments)]
        unsafe extern "C" fn guarded_tile<
            const MR: usize,
            const NV: usize,
            const T: usize,
            const G: usize,
            const Z: bool,
        >(
            k2: i64,
            a_k2s: i64,
            b_k2s: i64,
            k: i64,
            a: *const f32,
            a_rs: i64,
            a_ks: i64,
            b: *const f32,
            b_ks: i64,
            c: *mut f32,
            c_rs: i64,
            rows: u64,
            cols: u64,
        ) {
            // SAFETY (whole body): every element read is one the masks select, which the
            // caller guarantees valid; `b` and `c` as in `elementwise_tile`.
            unsafe {
                let args = (k2, a_k2s, b_k2s, a, a_ks, b, b_ks, c, c_rs);
                if k == 3 && a_rs == a_ks {
                    return slide::<MR, NV, T, G, 3, 1, Z, true>(args, (rows, cols));
                }
                if k == 3 && a_rs == 2 * a_ks {
                    return slide::<MR, NV, T, G, 3, 2, Z, true>(args, (rows, cols));
                }
                super::guarded_scalar(
                    (MR, L * (NV - 1) + T, Z),
                    (k2, a_k2s, b_k2s, k, a, a_rs, a_ks, b, b_ks, c, c_rs),
                    (rows, cols),
                );
            }
        }
    };
}

/// The arguments of [`GuardedKernelFn`] before its masks.
type GuardedArgs = (
    i64,
    i64,
    i64,
    i64,
    *const f32,
    i64,
    i64,
    *const f32,
    i64,
    *mut f32,
    i64,
);

/// Whether bit `t` of `mask` is set (`false` past bit 63).
fn bit(mask: u64, t: i64) -> bool {
    (0..64).contains(&t) && (mask >> t) & 1 == 1
}

/// [`GuardedKernelFn`]'s contract as plain loops (an `mr`×`nr` tile, from zero when `z`),
/// for the calls the sliding form does not cover.
///
/// # Safety
/// As [`GuardedKernelFn`].
#[cfg(target_arch = "x86_64")]
unsafe fn guarded_scalar(
    (mr, nr, z): (usize, usize, bool),
    (k2, a_k2s, b_k2s, k, a, a_rs, a_ks, b, b_ks, c, c_rs): GuardedArgs,
    (rows, cols): (u64, u64),
) {
    let s = if a_ks == 0 { 0 } else { a_rs / a_ks };
    for i in 0..mr as i64 {
        for j in 0..nr as i64 {
            let cij = c.wrapping_offset((i * c_rs + j) as isize);
            // SAFETY: `c`'s tile elements are valid (the caller's contract).
            let mut acc = if z { 0.0 } else { unsafe { *cij } };
            for q in (0..k2).filter(|&q| bit(rows, q)) {
                for p in (0..k).filter(|&p| bit(cols, i * s + p)) {
                    let ai = q * a_k2s + i * a_rs + p * a_ks + j;
                    let bi = q * b_k2s + p * b_ks + j;
                    // SAFETY: a selected element of `a` and an element of `b`, both valid.
                    let (x, w) = unsafe {
                        (
                            *a.wrapping_offset(ai as isize),
                            *b.wrapping_offset(bi as isize),
                        )
                    };
                    acc = x.mul_add(w, acc);
                }
            }
            // SAFETY: as above.
            unsafe { *cij = acc };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use super::{ElementwiseKernelFn, GuardedKernelFn, MicroKernelFn};
    use std::arch::x86_64::*;

    /// The `MR`×`NV`-vector tile of `c` (rows `c_rs` floats apart) into registers.
    ///
    /// # Safety
    /// As the kernels: AVX2, and the tile's elements valid.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn load_c<const MR: usize, const NV: usize>(
        c: *const f32,
        c_rs: i64,
    ) -> [[__m256; NV]; MR] {
        // SAFETY: the caller guarantees every element of the tile is in bounds.
        unsafe {
            std::array::from_fn(|i| {
                let ci = c.offset(i as isize * c_rs as isize);
                std::array::from_fn(|v| _mm256_loadu_ps(ci.add(8 * v)))
            })
        }
    }

    /// The first element of each of the `MR` rows of `a` (rows `a_rs` floats apart).
    ///
    /// # Safety
    /// Every row start must lie in (or one past) the same allocation as `a`.
    #[inline]
    unsafe fn row_starts<const MR: usize>(a: *const f32, a_rs: i64) -> [*const f32; MR] {
        // SAFETY: the caller guarantees the row starts are in bounds.
        unsafe { std::array::from_fn(|i| a.offset(i as isize * a_rs as isize)) }
    }

    /// Stores the register tile back to `c`.
    ///
    /// # Safety
    /// As [`load_c`].
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn store_c<const MR: usize, const NV: usize>(
        acc: &[[__m256; NV]; MR],
        c: *mut f32,
        c_rs: i64,
    ) {
        // SAFETY: as in `load_c`.
        unsafe {
            for (i, row) in acc.iter().enumerate() {
                let ci = c.offset(i as isize * c_rs as isize);
                for (v, r) in row.iter().enumerate() {
                    _mm256_storeu_ps(ci.add(8 * v), *r);
                }
            }
        }
    }

    /// The kernel for `MR` rows and `NV` vectors of 8 columns.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA, and the accesses described in
    /// [`super::micro_kernel`] must be valid.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe extern "C" fn tile<const MR: usize, const NV: usize>(
        k: i64,
        a: *const f32,
        a_rs: i64,
        a_ks: i64,
        b: *const f32,
        b_ks: i64,
        c: *mut f32,
        c_rs: i64,
    ) {
        // SAFETY (whole body): the caller guarantees every address formed below is in
        // bounds (see `micro_kernel`); unaligned loads and stores are used throughout.
        unsafe {
            let mut acc = load_c::<MR, NV>(c, c_rs);
            let mut ap = a;
            let mut bp = b;
            for _ in 0..k {
                let mut bv = [_mm256_setzero_ps(); NV];
                for (v, x) in bv.iter_mut().enumerate() {
                    *x = _mm256_loadu_ps(bp.add(8 * v));
                }
                for (i, row) in acc.iter_mut().enumerate() {
                    let ai = _mm256_broadcast_ss(&*ap.offset(i as isize * a_rs as isize));
                    for (r, &x) in row.iter_mut().zip(bv.iter()) {
                        *r = _mm256_fmadd_ps(ai, x, *r);
                    }
                }
                ap = ap.offset(a_ks as isize);
                bp = bp.offset(b_ks as isize);
            }
            store_c(&acc, c, c_rs);
        }
    }

    /// The same tile with one pointer per row of `a`, hoisted out of the `k` loop, and the `k`
    /// loop unrolled `U` times. For some shapes rustc allocates registers better for this
    /// form (no spills, no per-step row address arithmetic); see [`lookup`].
    ///
    /// # Safety
    /// As [`tile`].
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe extern "C" fn tile_rows<const MR: usize, const NV: usize, const U: usize>(
        k: i64,
        a: *const f32,
        a_rs: i64,
        a_ks: i64,
        b: *const f32,
        b_ks: i64,
        c: *mut f32,
        c_rs: i64,
    ) {
        // SAFETY (whole body): as in `tile`, every address formed is one the caller
        // guarantees in bounds.
        unsafe {
            let rows = row_starts::<MR>(a, a_rs);
            let mut acc = load_c::<MR, NV>(c, c_rs);
            let step = |acc: &mut [[__m256; NV]; MR], a_off: isize, bp: *const f32| {
                let mut bv = [_mm256_setzero_ps(); NV];
                for (v, x) in bv.iter_mut().enumerate() {
                    *x = _mm256_loadu_ps(bp.add(8 * v));
                }
                for (row, r) in acc.iter_mut().zip(rows.iter()) {
                    let ai = _mm256_broadcast_ss(&*r.offset(a_off));
                    for (x, &y) in row.iter_mut().zip(bv.iter()) {
                        *x = _mm256_fmadd_ps(ai, y, *x);
                    }
                }
            };
            let (a_ks, b_ks) = (a_ks as isize, b_ks as isize);
            let (mut a_off, mut bp, mut p) = (0isize, b, 0i64);
            while p + U as i64 <= k {
                for u in 0..U as isize {
                    step(&mut acc, a_off + u * a_ks, bp.offset(u * b_ks));
                }
                a_off += U as isize * a_ks;
                bp = bp.offset(U as isize * b_ks);
                p += U as i64;
            }
            while p < k {
                step(&mut acc, a_off, bp);
                a_off += a_ks;
                bp = bp.offset(b_ks);
                p += 1;
            }
            store_c(&acc, c, c_rs);
        }
    }

    /// The elementwise kernel for `MR` rows and `NV` vectors of 8 columns: each step loads
    /// `NV` vectors of `b` and multiplies them with a row of `a` per tile row (a vector
    /// memory operand of the FMA, no broadcast).
    ///
    /// A 3-tap reduction whose rows step 1 or 2 taps (`k = 3`, `a_rs = a_ks` or `2·a_ks`:
    /// a stride-1 or stride-2 depthwise window) runs as `slide` instead, which loads each
    /// input vector once for all the taps that read it.
    ///
    /// # Safety
    /// As [`tile`], with `a[i*a_rs + p*a_ks + j]` valid for every `j < 8·NV`.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe extern "C" fn elementwise_tile<
        const MR: usize,
        const NV: usize,
        const G: usize,
        const Z: bool,
    >(
        k2: i64,
        a_k2s: i64,
        b_k2s: i64,
        k: i64,
        a: *const f32,
        a_rs: i64,
        a_ks: i64,
        b: *const f32,
        b_ks: i64,
        c: *mut f32,
        c_rs: i64,
    ) {
        // SAFETY (whole body): every address formed is one the caller guarantees in
        // bounds; unaligned loads and stores throughout.
        unsafe {
            let args = (k2, a_k2s, b_k2s, a, a_ks, b, b_ks, c, c_rs);
            if k == 3 && a_rs == a_ks {
                return slide::<MR, NV, L, G, 3, 1, Z, false>(args, (0, 0));
            }
            if k == 3 && a_rs == 2 * a_ks {
                return slide::<MR, NV, L, G, 3, 2, Z, false>(args, (0, 0));
            }
            let rows = row_starts::<MR>(a, a_rs);
            // `Z`: the tile starts from zero (its initialisation fused into the call).
            let mut acc = if Z {
                [[_mm256_setzero_ps(); NV]; MR]
            } else {
                load_c::<MR, NV>(c, c_rs)
            };
            let (a_ks, b_ks) = (a_ks as isize, b_ks as isize);
            for q in 0..k2 as isize {
                let (mut a_off, mut bp) = (q * a_k2s as isize, b.offset(q * b_k2s as isize));
                for _ in 0..k {
                    let bv: [__m256; NV] = std::array::from_fn(|v| _mm256_loadu_ps(bp.add(8 * v)));
                    for (row, r) in acc.iter_mut().zip(rows.iter()) {
                        let ar = r.offset(a_off);
                        for (v, (x, &y)) in row.iter_mut().zip(bv.iter()).enumerate() {
                            *x = _mm256_fmadd_ps(_mm256_loadu_ps(ar.add(8 * v)), y, *x);
                        }
                    }
                    a_off += a_ks;
                    bp = bp.offset(b_ks);
                }
            }
            store_c(&acc, c, c_rs);
        }
    }

    /// `f32` lanes of a ymm register.
    const L: usize = 8;

    /// Vector `_v` of a row of `NV` at `p`: AVX2 rows are whole vectors (`T` = 8).
    ///
    /// # Safety
    /// AVX2, and the 8 elements at `p` valid.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn ld<const NV: usize, const T: usize>(p: *const f32, _v: usize) -> __m256 {
        const { assert!(T == L, "AVX2 tiles have no masked vector") };
        // SAFETY: forwarded from the caller.
        unsafe { _mm256_loadu_ps(p) }
    }

    /// Stores vector `_v` of a row of `NV` at `p` (whole vectors, as [`ld`]).
    ///
    /// # Safety
    /// As [`ld`].
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn st<const NV: usize, const T: usize>(p: *mut f32, _v: usize, x: __m256) {
        const { assert!(T == L, "AVX2 tiles have no masked vector") };
        // SAFETY: forwarded from the caller.
        unsafe { _mm256_storeu_ps(p, x) }
    }

    slide_kernels!("avx2,fma", __m256, 16, _mm256_setzero_ps, _mm256_fmadd_ps);

    /// The AVX2 elementwise tiles: `$f!(MR, NV)` for `mr`×`nr`, `None` for any other tile.
    macro_rules! elementwise_table {
        ($mr:expr, $nr:expr, $f:ident, $ty:ty) => {{
            let (mr, nr) = ($mr, $nr);
            let f: $ty = match (mr, nr / 8) {
                (1, 1) => $f!(1, 1),
                (2, 1) => $f!(2, 1),
                (3, 1) => $f!(3, 1),
                (4, 1) => $f!(4, 1),
                (5, 1) => $f!(5, 1),
                (6, 1) => $f!(6, 1),
                (7, 1) => $f!(7, 1),
                (8, 1) => $f!(8, 1),
                (1, 2) => $f!(1, 2),
                (2, 2) => $f!(2, 2),
                (3, 2) => $f!(3, 2),
                (4, 2) => $f!(4, 2),
                (5, 2) => $f!(5, 2),
                (6, 2) => $f!(6, 2),
                (1, 3) => $f!(1, 3),
                (2, 3) => $f!(2, 3),
                (3, 3) => $f!(3, 3),
                (4, 3) => $f!(4, 3),
                (1, 4) => $f!(1, 4),
                (2, 4) => $f!(2, 4),
                _ => return None,
            };
            (nr % 8 == 0).then_some(f)
        }};
    }

    /// The elementwise kernel of each shape (the same tiles as [`lookup`]'s).
    pub(super) fn lookup_elementwise(mr: i64, nr: i64, zero: bool) -> Option<ElementwiseKernelFn> {
        macro_rules! elementwise_tile {
            ($m:literal, $v:literal) => {
                if zero {
                    elementwise_tile::<$m, $v, { group($m, $v) }, true> as ElementwiseKernelFn
                } else {
                    elementwise_tile::<$m, $v, { group($m, $v) }, false> as ElementwiseKernelFn
                }
            };
        }
        elementwise_table!(mr, nr, elementwise_tile, ElementwiseKernelFn)
    }

    /// The guarded elementwise kernel of each shape (the same tiles as [`lookup`]'s).
    pub(super) fn lookup_guarded(mr: i64, nr: i64, zero: bool) -> Option<GuardedKernelFn> {
        macro_rules! guarded {
            ($m:literal, $v:literal) => {
                if zero {
                    guarded_tile::<$m, $v, L, { group($m, $v) }, true> as GuardedKernelFn
                } else {
                    guarded_tile::<$m, $v, L, { group($m, $v) }, false> as GuardedKernelFn
                }
            };
        }
        elementwise_table!(mr, nr, guarded, GuardedKernelFn)
    }

    /// The kernel of each shape, in the form that measured fastest for it: `tile` unless
    /// noted. GFLOP/s on one Zen4 core at k = 256 (`tile` → chosen form): 5×8 65 → 71,
    /// 6×8 70 → 87, 7×8 69 → 92 (`U = 2`), 8×8 67 → 92, 4×24 47 → 115 (`U = 2`); the
    /// rest are within noise of each other, e.g. 6×16 117, 4×16 108, 2×32 95–104.
    pub(super) fn lookup(mr: i64, nr: i64) -> Option<MicroKernelFn> {
        let f: MicroKernelFn = match (mr, nr / 8) {
            (1, 1) => tile::<1, 1>,
            (2, 1) => tile::<2, 1>,
            (3, 1) => tile::<3, 1>,
            (4, 1) => tile::<4, 1>,
            (5, 1) => tile_rows::<5, 1, 1>,
            (6, 1) => tile_rows::<6, 1, 1>,
            (7, 1) => tile_rows::<7, 1, 2>,
            (8, 1) => tile_rows::<8, 1, 1>,
            (1, 2) => tile::<1, 2>,
            (2, 2) => tile::<2, 2>,
            (3, 2) => tile::<3, 2>,
            (4, 2) => tile::<4, 2>,
            (5, 2) => tile::<5, 2>,
            (6, 2) => tile::<6, 2>,
            (1, 3) => tile::<1, 3>,
            (2, 3) => tile::<2, 3>,
            (3, 3) => tile::<3, 3>,
            (4, 3) => tile_rows::<4, 3, 2>,
            (1, 4) => tile::<1, 4>,
            (2, 4) => tile::<2, 4>,
            _ => return None,
        };
        (nr % 8 == 0).then_some(f)
    }
}

#[cfg(target_arch = "x86_64")]
mod imp512 {
    //! The AVX-512F family: the AVX2 kernels' loops over 16-lane zmm vectors. A row of a
    //! tile is `NV` vectors, the last of which has `T` columns (16, or 8 for the tiles
    //! whose width is an odd multiple of 8): that vector is loaded with
    //! `_mm512_maskz_loadu_ps` and stored with `_mm512_mask_storeu_ps` under the mask of
    //! its first `T` lanes, so no element past the tile is read or written (its masked-off
    //! lanes hold zeros and are never stored).
    use super::{ElementwiseKernelFn, GuardedKernelFn, MicroKernelFn};
    use std::arch::x86_64::*;

    /// `f32` lanes of a zmm register.
    const L: usize = 16;

    /// The mask of the first `t` lanes (every lane when `t` ≥ 16).
    const fn tail_mask(t: usize) -> __mmask16 {
        if t >= L {
            0xFFFF
        } else {
            (1u16 << t) - 1
        }
    }

    /// Vector `v` of a row of `NV` vectors, at `p`: 16 lanes, or the first `T` (the rest
    /// zero) when it is the last one and `T` < 16.
    ///
    /// # Safety
    /// AVX-512F, and the vector's (first `T`, for the last) elements valid.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn ld<const NV: usize, const T: usize>(p: *const f32, v: usize) -> __m512 {
        // SAFETY: forwarded from the caller; masked-off lanes are not accessed.
        unsafe {
            if T < L && v + 1 == NV {
                _mm512_maskz_loadu_ps(tail_mask(T), p)
            } else {
                _mm512_loadu_ps(p)
            }
        }
    }

    /// Stores vector `v` of a row of `NV` vectors at `p`, the last one's first `T` lanes
    /// only (as [`ld`]).
    ///
    /// # Safety
    /// As [`ld`].
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn st<const NV: usize, const T: usize>(p: *mut f32, v: usize, x: __m512) {
        // SAFETY: forwarded from the caller; masked-off lanes are not written.
        unsafe {
            if T < L && v + 1 == NV {
                _mm512_mask_storeu_ps(p, tail_mask(T), x)
            } else {
                _mm512_storeu_ps(p, x)
            }
        }
    }

    /// The `MR`×`NV`-vector tile of `c` (rows `c_rs` floats apart) into registers.
    ///
    /// # Safety
    /// AVX-512F, and the tile's elements valid.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn load_c<const MR: usize, const NV: usize, const T: usize>(
        c: *const f32,
        c_rs: i64,
    ) -> [[__m512; NV]; MR] {
        // SAFETY: the caller guarantees every element of the tile is in bounds.
        unsafe {
            std::array::from_fn(|i| {
                let ci = c.offset(i as isize * c_rs as isize);
                std::array::from_fn(|v| ld::<NV, T>(ci.add(L * v), v))
            })
        }
    }

    /// Stores the register tile back to `c`.
    ///
    /// # Safety
    /// As [`load_c`].
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn store_c<const MR: usize, const NV: usize, const T: usize>(
        acc: &[[__m512; NV]; MR],
        c: *mut f32,
        c_rs: i64,
    ) {
        // SAFETY: as in `load_c`.
        unsafe {
            for (i, row) in acc.iter().enumerate() {
                let ci = c.offset(i as isize * c_rs as isize);
                for (v, r) in row.iter().enumerate() {
                    st::<NV, T>(ci.add(L * v), v, *r);
                }
            }
        }
    }

    /// One reduction step: `NV` vectors of `b` at `bp`, one broadcast of `a` per row at
    /// `row(i)`.
    ///
    /// # Safety
    /// AVX-512F, and every address valid.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn step<const MR: usize, const NV: usize, const T: usize>(
        acc: &mut [[__m512; NV]; MR],
        bp: *const f32,
        row: impl Fn(usize) -> *const f32,
    ) {
        // SAFETY: forwarded from the caller.
        unsafe {
            let bv: [__m512; NV] = std::array::from_fn(|v| ld::<NV, T>(bp.add(L * v), v));
            for (i, r) in acc.iter_mut().enumerate() {
                let ai = _mm512_set1_ps(*row(i));
                for (x, &y) in r.iter_mut().zip(bv.iter()) {
                    *x = _mm512_fmadd_ps(ai, y, *x);
                }
            }
        }
    }

    /// The kernel for `MR` rows and `NV` vectors of 16 columns (the last of `T`), row
    /// addresses formed from `a_rs` at every step.
    ///
    /// # Safety
    /// The CPU must have AVX-512F, and the accesses described in
    /// [`super::micro_kernel`] must be valid.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe extern "C" fn tile<const MR: usize, const NV: usize, const T: usize>(
        k: i64,
        a: *const f32,
        a_rs: i64,
        a_ks: i64,
        b: *const f32,
        b_ks: i64,
        c: *mut f32,
        c_rs: i64,
    ) {
        // SAFETY (whole body): the caller guarantees every address formed below is in
        // bounds (see `micro_kernel`); unaligned loads and stores throughout.
        unsafe {
            let mut acc = load_c::<MR, NV, T>(c, c_rs);
            let (mut ap, mut bp) = (a, b);
            for _ in 0..k {
                step::<MR, NV, T>(&mut acc, bp, |i| ap.offset(i as isize * a_rs as isize));
                ap = ap.offset(a_ks as isize);
                bp = bp.offset(b_ks as isize);
            }
            store_c::<MR, NV, T>(&acc, c, c_rs);
        }
    }

    /// The same tile with one pointer per row of `a` hoisted out of the `k` loop and the
    /// `k` loop unrolled `U` times.
    ///
    /// # Safety
    /// As [`tile`].
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe extern "C" fn tile_rows<
        const MR: usize,
        const NV: usize,
        const T: usize,
        const U: usize,
    >(
        k: i64,
        a: *const f32,
        a_rs: i64,
        a_ks: i64,
        b: *const f32,
        b_ks: i64,
        c: *mut f32,
        c_rs: i64,
    ) {
        // SAFETY (whole body): as in `tile`.
        unsafe {
            let rows: [*const f32; MR] =
                std::array::from_fn(|i| a.offset(i as isize * a_rs as isize));
            let mut acc = load_c::<MR, NV, T>(c, c_rs);
            let (a_ks, b_ks) = (a_ks as isize, b_ks as isize);
            let (mut a_off, mut bp, mut p) = (0isize, b, 0i64);
            while p + U as i64 <= k {
                for u in 0..U as isize {
                    let off = a_off + u * a_ks;
                    step::<MR, NV, T>(&mut acc, bp.offset(u * b_ks), |i| rows[i].offset(off));
                }
                a_off += U as isize * a_ks;
                bp = bp.offset(U as isize * b_ks);
                p += U as i64;
            }
            while p < k {
                step::<MR, NV, T>(&mut acc, bp, |i| rows[i].offset(a_off));
                a_off += a_ks;
                bp = bp.offset(b_ks);
                p += 1;
            }
            store_c::<MR, NV, T>(&acc, c, c_rs);
        }
    }

    /// The elementwise kernel for `MR` rows and `NV` vectors of 16 columns, the last of
    /// `T` (see [`super::ElementwiseKernelFn`]).
    ///
    /// # Safety
    /// As [`tile`], with `a[q*a_k2s + i*a_rs + p*a_ks + j]` valid for every `j < 16·(NV-1) + T`.
    ///
    /// A 3-tap reduction whose rows step 1 or 2 taps (`k = 3`, `a_rs = a_ks` or `2·a_ks`:
    /// a stride-1 or stride-2 depthwise window) runs as [`slide`] instead, which loads each
    /// input vector once for all the taps that read it.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe extern "C" fn elementwise_tile<
        const MR: usize,
        const NV: usize,
        const T: usize,
        const G: usize,
        const Z: bool,
    >(
        k2: i64,
        a_k2s: i64,
        b_k2s: i64,
        k: i64,
        a: *const f32,
        a_rs: i64,
        a_ks: i64,
        b: *const f32,
        b_ks: i64,
        c: *mut f32,
        c_rs: i64,
    ) {
        // SAFETY (whole body): every address formed is one the caller guarantees in
        // bounds; unaligned loads and stores throughout.
        unsafe {
            let args = (k2, a_k2s, b_k2s, a, a_ks, b, b_ks, c, c_rs);
            if k == 3 && a_rs == a_ks {
                return slide::<MR, NV, T, G, 3, 1, Z, false>(args, (0, 0));
            }
            if k == 3 && a_rs == 2 * a_ks {
                return slide::<MR, NV, T, G, 3, 2, Z, false>(args, (0, 0));
            }
            let rows: [*const f32; MR] =
                std::array::from_fn(|i| a.offset(i as isize * a_rs as isize));
            // `Z`: the tile starts from zero (its initialisation fused into the call).
            let mut acc = if Z {
                [[_mm512_setzero_ps(); NV]; MR]
            } else {
                load_c::<MR, NV, T>(c, c_rs)
            };
            let (a_ks, b_ks) = (a_ks as isize, b_ks as isize);
            for q in 0..k2 as isize {
                let (mut a_off, mut bp) = (q * a_k2s as isize, b.offset(q * b_k2s as isize));
                for _ in 0..k {
                    let bv: [__m512; NV] = std::array::from_fn(|v| ld::<NV, T>(bp.add(L * v), v));
                    for (row, r) in acc.iter_mut().zip(rows.iter()) {
                        let ar = r.offset(a_off);
                        for (v, (x, &y)) in row.iter_mut().zip(bv.iter()).enumerate() {
                            *x = _mm512_fmadd_ps(ld::<NV, T>(ar.add(L * v), v), y, *x);
                        }
                    }
                    a_off += a_ks;
                    bp = bp.offset(b_ks);
                }
            }
            store_c::<MR, NV, T>(&acc, c, c_rs);
        }
    }

    slide_kernels!("avx512f", __m512, 32, _mm512_setzero_ps, _mm512_fmadd_ps);

    /// `nr` as `(NV, T)`: vectors per row and columns of the last one (16, or 8 for a width
    /// that is an odd multiple of 8); `None` for a width that is not a multiple of 8.
    fn row_shape(nr: i64) -> Option<(i64, i64)> {
        if nr <= 0 || nr % 8 != 0 {
            return None;
        }
        let nv = (nr + L as i64 - 1) / L as i64;
        Some((nv, nr - L as i64 * (nv - 1)))
    }

    /// Expands `$body!(MR, NV, T)` for every tile of the family (`register_tile_fits`):
    /// 14 rows of 1 and 2 vectors, 9 of 3, 6 of 4, each with a whole (`T` = 16) or a half
    /// (`T` = 8) last vector.
    macro_rules! for_each_tile {
        ($mr:expr, $nv:expr, $t:expr, $f:ident) => {
            for_each_tile!(@rows $mr, $nv, $t, $f, 1, [1 2 3 4 5 6 7 8 9 10 11 12 13 14]);
            for_each_tile!(@rows $mr, $nv, $t, $f, 2, [1 2 3 4 5 6 7 8 9 10 11 12 13 14]);
            for_each_tile!(@rows $mr, $nv, $t, $f, 3, [1 2 3 4 5 6 7 8 9]);
            for_each_tile!(@rows $mr, $nv, $t, $f, 4, [1 2 3 4 5 6]);
        };
        (@rows $mr:expr, $nv:expr, $t:expr, $f:ident, $v:literal, [$($m:literal)*]) => {
            $(
                if $mr == $m && $nv == $v {
                    return Some(if $t == 16 { $f!($m, $v, 16) } else { $f!($m, $v, 8) });
                }
            )*
        };
    }

    /// The broadcast kernel of each shape, in the form that measured fastest for it
    /// (`examples/ukernels.rs 256 avx512 --forms`, one Sapphire Rapids core, GFLOP/s as
    /// `tile` / `rows` / `rows_u2`): two vectors per row run best as `tile` (8×32 206 /
    /// 207 / 184, 10×32 213 / 207 / 196, 14×32 196 / 184 / 186), one, three or four
    /// vectors as `rows_u2` (14×16 129 / 169 / 172, 9×48 214 / 212 / 233, 6×64 181 / 196
    /// / 208). The masked tiles (widths 8, 24, 40, 56) take the form of the tile with
    /// as many vectors.
    pub(super) fn lookup(mr: i64, nr: i64) -> Option<MicroKernelFn> {
        let (nv, t) = row_shape(nr)?;
        macro_rules! chosen {
            ($m:literal, $v:literal, $t:literal) => {
                if $v == 2 {
                    tile::<$m, $v, $t> as MicroKernelFn
                } else {
                    tile_rows::<$m, $v, $t, 2> as MicroKernelFn
                }
            };
        }
        for_each_tile!(mr, nv, t, chosen);
        None
    }

    /// Every form of the `mr`×`nr` broadcast kernel, by name.
    pub(super) fn forms(mr: i64, nr: i64) -> Vec<(&'static str, MicroKernelFn)> {
        let find = || -> Option<[(&'static str, MicroKernelFn); 3]> {
            let (nv, t) = row_shape(nr)?;
            macro_rules! all {
                ($m:literal, $v:literal, $t:literal) => {
                    [
                        ("tile", tile::<$m, $v, $t> as MicroKernelFn),
                        ("rows", tile_rows::<$m, $v, $t, 1> as MicroKernelFn),
                        ("rows_u2", tile_rows::<$m, $v, $t, 2> as MicroKernelFn),
                    ]
                };
            }
            for_each_tile!(mr, nv, t, all);
            None
        };
        find().map(Vec::from).unwrap_or_default()
    }

    /// The elementwise kernel of each shape (the same tiles as [`lookup`]'s).
    pub(super) fn lookup_elementwise(mr: i64, nr: i64, zero: bool) -> Option<ElementwiseKernelFn> {
        let (nv, t) = row_shape(nr)?;
        macro_rules! ew {
            ($m:literal, $v:literal, $t:literal) => {
                if zero {
                    elementwise_tile::<$m, $v, $t, { group($m, $v) }, true> as ElementwiseKernelFn
                } else {
                    elementwise_tile::<$m, $v, $t, { group($m, $v) }, false> as ElementwiseKernelFn
                }
            };
        }
        for_each_tile!(mr, nv, t, ew);
        None
    }

    /// The guarded elementwise kernel of each shape (the same tiles as [`lookup`]'s).
    pub(super) fn lookup_guarded(mr: i64, nr: i64, zero: bool) -> Option<GuardedKernelFn> {
        let (nv, t) = row_shape(nr)?;
        macro_rules! guarded {
            ($m:literal, $v:literal, $t:literal) => {
                if zero {
                    guarded_tile::<$m, $v, $t, { group($m, $v) }, true> as GuardedKernelFn
                } else {
                    guarded_tile::<$m, $v, $t, { group($m, $v) }, false> as GuardedKernelFn
                }
            };
        }
        for_each_tile!(mr, nv, t, guarded);
        None
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod imp512 {
    use super::{ElementwiseKernelFn, GuardedKernelFn, MicroKernelFn};

    pub(super) fn lookup(_mr: i64, _nr: i64) -> Option<MicroKernelFn> {
        None
    }

    pub(super) fn forms(_mr: i64, _nr: i64) -> Vec<(&'static str, MicroKernelFn)> {
        Vec::new()
    }

    pub(super) fn lookup_elementwise(
        _mr: i64,
        _nr: i64,
        _zero: bool,
    ) -> Option<ElementwiseKernelFn> {
        None
    }

    pub(super) fn lookup_guarded(_mr: i64, _nr: i64, _zero: bool) -> Option<GuardedKernelFn> {
        None
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    use super::{ElementwiseKernelFn, GuardedKernelFn, MicroKernelFn};

    pub(super) fn lookup(_mr: i64, _nr: i64) -> Option<MicroKernelFn> {
        None
    }

    pub(super) fn lookup_elementwise(
        _mr: i64,
        _nr: i64,
        _zero: bool,
    ) -> Option<ElementwiseKernelFn> {
        None
    }

    pub(super) fn lookup_guarded(_mr: i64, _nr: i64, _zero: bool) -> Option<GuardedKernelFn> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_covers_exactly_the_family() {
        for isa in Isa::ALL {
            if !available(isa) {
                eprintln!("skipping {isa}: this CPU cannot run its kernels");
                assert!(kernel(isa, KernelKind::Broadcast, 4, 16).is_none());
                continue;
            }
            for mr in 0..=20 {
                for nr in 0..=80 {
                    for kind in [KernelKind::Broadcast, KernelKind::Elementwise] {
                        assert_eq!(
                            kernel(isa, kind, mr, nr).is_some(),
                            tessel_ir::tensorize::register_tile_fits(isa, mr, nr),
                            "{isa} {kind:?} {mr}x{nr}"
                        );
                    }
                }
            }
        }
    }

    /// Deterministic values in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut x = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Canary floats around a tile of `c` on either side (a masked last vector writes
    /// nothing past the tile: the canaries after it stay).
    const CANARY: usize = 19;

    /// Checks that `c` (a tile of `mr` rows of `c_rs` floats, `nr` of them the tile's,
    /// with [`CANARY`] floats before and after) is unchanged from `c0` outside the tile.
    fn check_canaries(c: &[f32], c0: &[f32], mr: i64, nr: i64, c_rs: i64, what: &str) {
        for (at, (x, y)) in c.iter().zip(c0).enumerate() {
            let rel = at as i64 - CANARY as i64;
            let inside = rel >= 0 && rel < mr * c_rs && rel % c_rs < nr;
            if !inside {
                assert_eq!(
                    x.to_bits(),
                    y.to_bits(),
                    "{what}: element {rel} outside the tile written"
                );
            }
        }
    }

    /// Runs the elementwise `mr`×`nr` kernel of `isa` (zero-start when `zero`) over `k2`
    /// window rows of `k` taps, rows `a_rs` apart and taps `a_ks` apart, and compares every
    /// element of `c` with an f64 reference, and the canaries around it and the padding
    /// between its rows, which must stay untouched.
    #[allow(clippy::too_many_arguments)]
    fn check_elementwise(
        isa: Isa,
        mr: i64,
        nr: i64,
        zero: bool,
        k2: i64,
        k: i64,
        a_rs: i64,
        a_ks: i64,
    ) {
        let f = if zero {
            elementwise_zero_kernel(isa, mr, nr).expect("zero kernel")
        } else {
            match kernel(isa, KernelKind::Elementwise, mr, nr) {
                Some(KernelFn::Elementwise(f)) => f,
                other => panic!("{isa} {mr}x{nr}: {other:?}"),
            }
        };
        let a_k2s = (mr - 1) * a_rs + (k - 1) * a_ks + nr + 3;
        let (b_ks, c_rs) = (nr + 1, nr + 5);
        let b_k2s = k * b_ks + 2;
        let a = values((k2 * a_k2s) as usize, 1);
        let b = values((k2 * b_k2s) as usize, 2);
        let c0 = values((mr * c_rs) as usize + 2 * CANARY, 3);
        let mut c = c0.clone();
        // SAFETY: `a` holds `k2` blocks of `a_k2s` ≥ the last row's last tap + `nr`
        // elements, `b` `k2` blocks of `k` rows of `b_ks` ≥ `nr`, `c` `mr` rows of `c_rs`
        // ≥ `nr` after `CANARY` floats; the buffers are distinct.
        unsafe {
            f(
                k2,
                a_k2s,
                b_k2s,
                k,
                a.as_ptr(),
                a_rs,
                a_ks,
                b.as_ptr(),
                b_ks,
                c.as_mut_ptr().add(CANARY),
                c_rs,
            )
        };
        let what = format!("{isa} ew {mr}x{nr} zero={zero} k2={k2} k={k} a_rs={a_rs} a_ks={a_ks}");
        let layout = ElementwiseLayout {
            mr,
            nr,
            k2,
            k,
            a: (a_k2s, a_rs, a_ks),
            b: (b_k2s, b_ks),
            c_rs,
        };
        check_elementwise_tile(&what, &layout, zero, (&a, &b), (&c, &c0), |_, _, _| true);
    }

    /// Where an elementwise call of the tests reads and writes: an `mr`×`nr` tile over
    /// `k2` window rows of `k` taps; `a`'s strides (window row, tile row, tap), `b`'s
    /// (window row, tap), `c`'s row stride.
    struct ElementwiseLayout {
        mr: i64,
        nr: i64,
        k2: i64,
        k: i64,
        a: (i64, i64, i64),
        b: (i64, i64),
        c_rs: i64,
    }

    /// Checks what an elementwise call left in `c` (`CANARY` floats in, `c0` before the
    /// call): the canaries untouched, and every element of the tile equal to an f64
    /// reference over the taps `selected(q, i, p)` admits, from zero when `zero`.
    fn check_elementwise_tile(
        what: &str,
        l: &ElementwiseLayout,
        zero: bool,
        (a, b): (&[f32], &[f32]),
        (c, c0): (&[f32], &[f32]),
        selected: impl Fn(i64, i64, i64) -> bool,
    ) {
        let ((a_k2s, a_rs, a_ks), (b_k2s, b_ks)) = (l.a, l.b);
        check_canaries(c, c0, l.mr, l.nr, l.c_rs, what);
        for i in 0..l.mr {
            for j in 0..l.nr {
                let at = CANARY + (i * l.c_rs + j) as usize;
                let mut want = if zero { 0.0 } else { c0[at] as f64 };
                for q in 0..l.k2 {
                    for p in (0..l.k).filter(|&p| selected(q, i, p)) {
                        let x = a[(q * a_k2s + i * a_rs + p * a_ks + j) as usize] as f64;
                        want += x * b[(q * b_k2s + p * b_ks + j) as usize] as f64;
                    }
                }
                let got = c[at] as f64;
                assert!(
                    (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                    "{what}: c[{i}][{j}] = {got}, want {want}"
                );
            }
        }
    }

    /// Runs the guarded `mr`×`nr` kernel of `isa` (zero-start when `zero`) as
    /// [`check_elementwise`] with the window-row mask `rows` and the position mask `cols`:
    /// every element of `a` no selected (row, position) reads is NaN, so reading one spoils
    /// the tile, and every element of `c` must match an f64 reference over the selected ones.
    #[allow(clippy::too_many_arguments)]
    fn check_guarded(
        isa: Isa,
        (mr, nr, zero): (i64, i64, bool),
        (k2, k, a_rs, a_ks): (i64, i64, i64, i64),
        (rows, cols): (u64, u64),
    ) {
        let f = guarded_kernel(isa, mr, nr, zero).expect("guarded kernel");
        let a_k2s = (mr - 1) * a_rs + (k - 1) * a_ks + nr + 3;
        let (b_ks, c_rs) = (nr + 1, nr + 5);
        let b_k2s = k * b_ks + 2;
        let s = a_rs / a_ks;
        let selected = |q: i64, i: i64, p: i64| bit(rows, q) && bit(cols, i * s + p);
        let mut a = values((k2 * a_k2s) as usize, 1);
        let mut used = vec![false; a.len()];
        for q in 0..k2 {
            for i in 0..mr {
                for p in (0..k).filter(|&p| selected(q, i, p)) {
                    for j in 0..nr {
                        used[(q * a_k2s + i * a_rs + p * a_ks + j) as usize] = true;
                    }
                }
            }
        }
        for (x, u) in a.iter_mut().zip(&used) {
            if !u {
                *x = f32::NAN;
            }
        }
        let b = values((k2 * b_k2s) as usize, 2);
        let c0 = values((mr * c_rs) as usize + 2 * CANARY, 3);
        let mut c = c0.clone();
        // SAFETY: as in `check_elementwise` (every element of `a` exists; the masks only
        // choose which are read).
        unsafe {
            f(
                k2,
                a_k2s,
                b_k2s,
                k,
                a.as_ptr(),
                a_rs,
                a_ks,
                b.as_ptr(),
                b_ks,
                c.as_mut_ptr().add(CANARY),
                c_rs,
                rows,
                cols,
            )
        };
        let what = format!(
            "{isa} guarded {mr}x{nr} zero={zero} k2={k2} k={k} a_rs={a_rs} a_ks={a_ks} \
             rows={rows:b} cols={cols:b}"
        );
        let layout = ElementwiseLayout {
            mr,
            nr,
            k2,
            k,
            a: (a_k2s, a_rs, a_ks),
            b: (b_k2s, b_ks),
            c_rs,
        };
        check_elementwise_tile(&what, &layout, zero, (&a, &b), (&c, &c0), selected);
    }

    /// Runs the broadcast `mr`×`nr` kernel of `isa` over `k` steps with the given strides
    /// (`c` rows `nr + c_pad` apart) and compares every element of the tile with an f64
    /// reference and every canary around and between its rows with its old value.
    #[allow(clippy::too_many_arguments)]
    fn check_broadcast(
        isa: Isa,
        mr: i64,
        nr: i64,
        k: i64,
        a_rs: i64,
        a_ks: i64,
        b_pad: i64,
        c_pad: i64,
    ) {
        let f = micro_kernel(isa, mr, nr).unwrap_or_else(|| panic!("{isa} {mr}x{nr}: no kernel"));
        let (b_ks, c_rs) = (nr + b_pad, nr + c_pad);
        let a = values(((mr - 1) * a_rs + (k - 1) * a_ks + 1) as usize, 11);
        let b = values(((k - 1) * b_ks + nr) as usize, 12);
        let c0 = values((mr * c_rs) as usize + 2 * CANARY, 13);
        let mut c = c0.clone();
        // SAFETY: `a` ends at the last row's last step, `b` at the last step's `nr`-th
        // column, `c` holds `mr` rows of `c_rs` ≥ `nr` after `CANARY` floats; the buffers
        // are distinct.
        unsafe {
            f(
                k,
                a.as_ptr(),
                a_rs,
                a_ks,
                b.as_ptr(),
                b_ks,
                c.as_mut_ptr().add(CANARY),
                c_rs,
            )
        };
        let what = format!("{isa} {mr}x{nr} k={k} a_rs={a_rs} a_ks={a_ks} b_ks={b_ks} c_rs={c_rs}");
        check_canaries(&c, &c0, mr, nr, c_rs, &what);
        for i in 0..mr {
            for j in 0..nr {
                let at = CANARY + (i * c_rs + j) as usize;
                let mut want = c0[at] as f64;
                for p in 0..k {
                    want += a[(i * a_rs + p * a_ks) as usize] as f64
                        * b[(p * b_ks + j) as usize] as f64;
                }
                let got = c[at] as f64;
                assert!(
                    (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                    "{what}: c[{i}][{j}] = {got}, want {want}"
                );
            }
        }
    }

    #[test]
    fn broadcast_kernels_match_the_reference_on_random_strides_and_touch_only_their_tile() {
        let mut seed = 0x5eed_u64;
        let mut draw = |n: i64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) % n as u64) as i64
        };
        for isa in Isa::ALL {
            if !available(isa) {
                eprintln!("skipping {isa}: this CPU cannot run its kernels");
                continue;
            }
            for &nr in tessel_ir::tensorize::kernel_nr(isa) {
                for mr in 1..=tessel_ir::tensorize::max_mr(isa) {
                    if !tessel_ir::tensorize::register_tile_fits(isa, mr, nr) {
                        continue;
                    }
                    // K = 1, a packed panel (`b_ks = nr`, rows of `c` back to back), and
                    // random strides and reductions.
                    check_broadcast(isa, mr, nr, 1, 1, 1, 0, 0);
                    check_broadcast(isa, mr, nr, 3, 3, 1, 0, 0);
                    for _ in 0..2 {
                        let k = 1 + draw(9);
                        let a_ks = 1 + draw(3);
                        let a_rs = k * a_ks + draw(5);
                        check_broadcast(isa, mr, nr, k, a_rs, a_ks, draw(20), draw(20));
                    }
                }
            }
        }
    }

    #[test]
    fn avx512_has_masked_tiles_for_every_multiple_of_8_columns() {
        if !available(Isa::Avx512) {
            eprintln!("SKIPPED: this CPU has no AVX-512F");
            return;
        }
        for nr in [8, 24, 40, 56] {
            assert!(micro_kernel(Isa::Avx512, 1, nr).is_some(), "{nr}");
            assert!(
                elementwise_zero_kernel(Isa::Avx512, 1, nr).is_some(),
                "{nr}"
            );
            assert!(micro_kernel(Isa::Avx2, 1, nr + 32).is_none(), "{nr}");
        }
        assert!(micro_kernel(Isa::Avx512, 1, 12).is_none());
        assert!(micro_kernel(Isa::Avx512, 7, 56).is_none());
        assert_eq!(
            strip_kernels(Isa::Avx512, KernelKind::Broadcast, 56, 24)
                .map(|b| b.iter().map(|x| x.0).collect::<Vec<_>>()),
            Some(vec![14, 14, 14, 14])
        );
    }

    #[test]
    fn elementwise_kernels_match_the_reference_for_every_tile_stride_and_window() {
        for isa in Isa::ALL {
            if !available(isa) {
                eprintln!("skipping {isa}: this CPU cannot run its kernels");
                continue;
            }
            for &nr in tessel_ir::tensorize::kernel_nr(isa) {
                for mr in 1..=tessel_ir::tensorize::max_mr(isa) {
                    if !tessel_ir::tensorize::register_tile_fits(isa, mr, nr) {
                        continue;
                    }
                    let a_ks = nr + 2 * mr;
                    // Rows one tap apart and two taps apart (the 3-tap sliding form), and
                    // rows at an unrelated stride (the general form); k = 1..4 and one or
                    // three folded window rows.
                    for a_rs in [a_ks, 2 * a_ks, a_ks + 7] {
                        for (k2, k) in [(1, 1), (3, 3), (1, 3), (2, 2), (3, 4)] {
                            for zero in [false, true] {
                                check_elementwise(isa, mr, nr, zero, k2, k, a_rs, a_ks);
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn guarded_kernels_read_only_the_selected_rows_and_positions_and_match_the_reference() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for isa in Isa::ALL {
            if !available(isa) {
                eprintln!("skipping {isa}: this CPU cannot run its kernels");
                continue;
            }
            for &nr in tessel_ir::tensorize::kernel_nr(isa) {
                for mr in 1..=tessel_ir::tensorize::max_mr(isa) {
                    if !tessel_ir::tensorize::register_tile_fits(isa, mr, nr) {
                        continue;
                    }
                    let a_ks = nr + 2 * mr;
                    // Stride-1 and stride-2 windows (the sliding form), an unrelated row
                    // stride and a 2-tap window (plain loops); all, no, the first, the
                    // last and random rows and positions (an image's edges).
                    for a_rs in [a_ks, 2 * a_ks, a_ks + 7] {
                        for (k2, k) in [(3, 3), (1, 3), (2, 2)] {
                            let n = (a_rs / a_ks) * (mr - 1) + k;
                            let all = (1u64 << n) - 1;
                            for (rows, cols) in [
                                (7, all),
                                (0, all),
                                (6, all & !1),
                                (3, all >> 1),
                                (next(), next()),
                            ] {
                                let zero = rows & 1 == 1;
                                check_guarded(
                                    isa,
                                    (mr, nr, zero),
                                    (k2, k, a_rs, a_ks),
                                    (rows, cols),
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn every_supported_tile_has_its_strip_of_kernels() {
        for isa in Isa::ALL {
            if !available(isa) {
                eprintln!("skipping {isa}: this CPU cannot run its kernels");
                assert!(strip_kernels(isa, KernelKind::Broadcast, 56, 16).is_none());
                continue;
            }
            for kind in [KernelKind::Broadcast, KernelKind::Elementwise] {
                for mr in 0..=70 {
                    for nr in 0..=80 {
                        let blocks: Option<Vec<i64>> = strip_kernels(isa, kind, mr, nr)
                            .map(|b| b.iter().map(|x| x.0).collect());
                        assert_eq!(
                            blocks.unwrap_or_default(),
                            tessel_ir::tensorize::strip_blocks(isa, mr, nr),
                            "{isa} {kind:?} {mr}x{nr}"
                        );
                    }
                }
            }
        }
    }
}
