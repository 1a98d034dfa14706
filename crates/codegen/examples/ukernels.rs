//! Times every micro-kernel shape on one core: GFLOP/s of repeated calls with `a`, `b` and
//! `c` in L1/L2, `b` packed (`b_ks = NR`) and `a` rows 256 floats apart, as in an NHWC conv.
//! The figures back the per-shape kernel forms chosen in `ukernel::lookup`.
//!
//! ```text
//! cargo run --release -p tessel-codegen --example ukernels [-- K]
//! ```

use std::time::Instant;
use tessel_codegen::ukernel;
use tessel_ir::tensorize;

fn main() {
    let k: i64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    if !ukernel::available() {
        println!("this CPU has no AVX2+FMA: no micro-kernels");
        return;
    }
    let a_rs = 256i64;
    println!("k = {k}, one core, best of 5");
    for nr in tensorize::KERNEL_NR {
        for mr in 1..=tensorize::MAX_MR {
            let Some(kernel) = ukernel::micro_kernel(mr, nr) else {
                continue;
            };
            let a = vec![1.0f32; (a_rs * mr + k) as usize];
            let b = vec![0.5f32; (k * nr) as usize];
            let mut c = vec![0.0f32; (mr * nr) as usize];
            let flop_per_call = 2.0 * (mr * nr * k) as f64;
            let calls = (2e9 / flop_per_call) as usize;
            let mut best = f64::MAX;
            for _ in 0..5 {
                let start = Instant::now();
                for _ in 0..calls {
                    // SAFETY: `a` has `mr` rows of `a_rs` plus `k`, `b` is `k`×`nr` and `c`
                    // `mr`×`nr`, so every access of the kernel is in bounds.
                    unsafe {
                        kernel(k, a.as_ptr(), a_rs, 1, b.as_ptr(), nr, c.as_mut_ptr(), nr);
                    }
                }
                best = best.min(start.elapsed().as_secs_f64());
            }
            println!(
                "{mr}x{nr:<3} {:6.1} GFLOP/s",
                flop_per_call * calls as f64 / best / 1e9
            );
        }
    }
}
