//! AVX2 + FMA micro-kernels: the `tensorize` intrinsics JIT code calls.
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
//! [`tessel_ir::tensorize::kernel_supported`] accepts, and run only when the CPU has both
//! features ([`available`]).

/// The C signature of every micro-kernel (`k, a, a_rs, a_ks, b, b_ks, c, c_rs`).
pub type MicroKernelFn =
    unsafe extern "C" fn(i64, *const f32, i64, i64, *const f32, i64, *mut f32, i64);

/// True when this CPU can run the micro-kernels (x86-64 with AVX2 and FMA).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The symbol name JIT code imports the `mr`×`nr` kernel under.
pub(crate) fn symbol(mr: i64, nr: i64) -> String {
    format!("tessel_ukernel_{mr}x{nr}")
}

/// The `mr`×`nr` micro-kernel, when the family has it and this CPU can run it.
///
/// Calling the returned function is `unsafe`: every element it reads or writes
/// (`a[i*a_rs + p*a_ks]`, `b[p*b_ks + j]`, `c[i*c_rs + j]` for `i < mr`, `j < nr`, `p < k`)
/// must be valid, and `c`'s elements must not overlap `a`'s or `b`'s.
pub fn micro_kernel(mr: i64, nr: i64) -> Option<MicroKernelFn> {
    if !available() || !tessel_ir::tensorize::kernel_supported(mr, nr) {
        return None;
    }
    imp::lookup(mr, nr)
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use super::MicroKernelFn;
    use std::arch::x86_64::*;

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
            let mut acc = [[_mm256_setzero_ps(); NV]; MR];
            for (i, row) in acc.iter_mut().enumerate() {
                let ci = c.offset(i as isize * c_rs as isize);
                for (v, r) in row.iter_mut().enumerate() {
                    *r = _mm256_loadu_ps(ci.add(8 * v));
                }
            }
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
            for (i, row) in acc.iter().enumerate() {
                let ci = c.offset(i as isize * c_rs as isize);
                for (v, r) in row.iter().enumerate() {
                    _mm256_storeu_ps(ci.add(8 * v), *r);
                }
            }
        }
    }

    macro_rules! table {
        ($mr:expr, $nr:expr; $(($m:literal, $v:literal)),* $(,)?) => {
            match ($mr, $nr / 8, $nr % 8) {
                $(($m, $v, 0) => Some(tile::<$m, $v> as MicroKernelFn),)*
                _ => None,
            }
        };
    }

    pub(super) fn lookup(mr: i64, nr: i64) -> Option<MicroKernelFn> {
        table!(mr, nr;
            (1, 1), (2, 1), (3, 1), (4, 1), (5, 1), (6, 1), (7, 1), (8, 1),
            (1, 2), (2, 2), (3, 2), (4, 2), (5, 2), (6, 2),
            (1, 3), (2, 3), (3, 3), (4, 3),
        )
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    use super::MicroKernelFn;

    pub(super) fn lookup(_mr: i64, _nr: i64) -> Option<MicroKernelFn> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_covers_exactly_the_family() {
        if !available() {
            return;
        }
        for mr in 0..=13 {
            for nr in 0..=32 {
                assert_eq!(
                    micro_kernel(mr, nr).is_some(),
                    tessel_ir::tensorize::kernel_supported(mr, nr),
                    "{mr}x{nr}"
                );
            }
        }
    }
}
