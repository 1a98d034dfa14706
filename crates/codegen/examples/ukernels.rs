//! Times every micro-kernel shape of one ISA's family on one core: GFLOP/s of repeated
//! calls with `a`, `b` and `c` in L1/L2, `b` packed (`b_ks = NR`) and `a` rows 256 floats
//! apart, as in an NHWC conv. The figures back the per-shape kernel forms chosen in
//! `ukernel::lookup`; for AVX-512 every form of each shape is timed (`--forms`). Then a few
//! strips (tiles taller than a register tile, one call per block, as code generation emits
//! them) of ResNet-50's widths.
//!
//! ```text
//! cargo run --release -p tessel-codegen --example ukernels [-- K [avx2|avx512 [--forms]]]
//! ```

use std::time::Instant;
use tessel_codegen::ukernel;
use tessel_ir::target::Isa;
use tessel_ir::tensorize;

fn main() {
    let k: i64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    let isa = match std::env::args().nth(2).as_deref() {
        Some("avx512") => Isa::Avx512,
        _ => Isa::Avx2,
    };
    let forms = std::env::args().any(|a| a == "--forms");
    if !ukernel::available(isa) {
        println!("this CPU cannot run the {isa} micro-kernels");
        return;
    }
    let a_rs = 256i64;
    println!("{isa}, k = {k}, one core, best of 5");
    for &nr in tensorize::kernel_nr(isa) {
        for mr in 1..=tensorize::max_mr(isa) {
            if forms && isa == Isa::Avx512 {
                let mut line = format!("{mr}x{nr:<3}");
                for (name, kernel) in ukernel::avx512_forms(mr, nr) {
                    let rate = time_tile(&[(mr, kernel)], nr, k, a_rs);
                    line += &format!(" {name} {rate:6.1}");
                }
                if line.len() > 6 {
                    println!("{line} GFLOP/s");
                }
            } else if let Some(kernel) = ukernel::micro_kernel(isa, mr, nr) {
                let rate = time_tile(&[(mr, kernel)], nr, k, a_rs);
                println!("{mr}x{nr:<3} {rate:6.1} GFLOP/s");
            }
        }
    }
    println!("elementwise (depthwise 3x3, 64 channels): three calls | one folded call");
    let ew_tiles: &[(i64, i64)] = match isa {
        Isa::Avx512 => &[(2, 32), (4, 32), (7, 32), (14, 32), (14, 16), (6, 64)],
        _ => &[(2, 32), (4, 16), (6, 16), (3, 24), (8, 8)],
    };
    for &(mr, nr) in ew_tiles {
        for _ in 0..3 {
            if let (Some(three), Some(one)) = (
                time_depthwise(isa, mr, nr, 64, false),
                time_depthwise(isa, mr, nr, 64, true),
            ) {
                println!("{mr}x{nr:<3} {three:6.1} | {one:6.1} GFLOP/s");
            }
        }
    }
    println!("strips:");
    for (mr, nr) in [
        (7, 16),
        (14, 16),
        (28, 16),
        (56, 16),
        (14, 32),
        (56, 32),
        (56, 8),
    ] {
        if let Some(blocks) = ukernel::strip_kernels(isa, ukernel::KernelKind::Broadcast, mr, nr) {
            let rows: Vec<i64> = blocks.iter().map(|b| b.0).collect();
            let blocks: Vec<(i64, ukernel::MicroKernelFn)> = blocks
                .into_iter()
                .filter_map(|(rows, f)| match f {
                    ukernel::KernelFn::Broadcast(f) => Some((rows, f)),
                    ukernel::KernelFn::Elementwise(_) => None,
                })
                .collect();
            let rate = time_tile(&blocks, nr, k, a_rs);
            println!("{mr}x{nr:<3} {rate:6.1} GFLOP/s  blocks {rows:?}");
        }
    }
}

/// GFLOP/s of the elementwise `mr`×`nr` kernel over a 3×3 window of a depthwise
/// convolution with `c` channels (`a` rows `c` apart, the window's rows `row` apart), as one
/// call per window row (`k2 = 1`, three calls) or one call folding the rows in (`k2 = 3`);
/// best of 5 timings of about 1 GFLOP each.
fn time_depthwise(isa: Isa, mr: i64, nr: i64, c: i64, folded: bool) -> Option<f64> {
    let ukernel::KernelFn::Elementwise(kernel) =
        ukernel::kernel(isa, ukernel::KernelKind::Elementwise, mr, nr)?
    else {
        return None;
    };
    let row = (mr + 2) * c;
    let a = vec![1.0f32; (3 * row) as usize];
    let b = vec![0.5f32; (9 * c) as usize];
    let mut out = vec![0.0f32; (mr * c) as usize];
    let flop_per_window = 2.0 * (mr * nr * 9) as f64;
    let windows = (1e9 / flop_per_window).max(1.0) as usize;
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        for _ in 0..windows {
            // SAFETY: `a` holds 3 rows of `mr + 2` pixels of `c` channels, `b` 3×3×`c`
            // and `out` `mr`×`c`; with `nr` ≤ `c` every access is in bounds.
            unsafe {
                if folded {
                    kernel(
                        3,
                        row,
                        3 * c,
                        3,
                        a.as_ptr(),
                        c,
                        c,
                        b.as_ptr(),
                        c,
                        out.as_mut_ptr(),
                        c,
                    );
                } else {
                    for q in 0..3 {
                        kernel(
                            1,
                            0,
                            0,
                            3,
                            a.as_ptr().add((q * row) as usize),
                            c,
                            c,
                            b.as_ptr().add((q * 3 * c) as usize),
                            c,
                            out.as_mut_ptr(),
                            c,
                        );
                    }
                }
            }
        }
        best = best.min(start.elapsed().as_secs_f64());
    }
    Some(flop_per_window * windows as f64 / best / 1e9)
}

/// GFLOP/s of an `nr`-column tile computed block by block (`(rows, kernel)`, top to
/// bottom) over `k` steps, best of 5 timings of about 2 GFLOP each.
fn time_tile(blocks: &[(i64, ukernel::MicroKernelFn)], nr: i64, k: i64, a_rs: i64) -> f64 {
    let mr: i64 = blocks.iter().map(|b| b.0).sum();
    let a = vec![1.0f32; (a_rs * mr + k) as usize];
    let b = vec![0.5f32; (k * nr) as usize];
    let mut c = vec![0.0f32; (mr * nr) as usize];
    let flop_per_call = 2.0 * (mr * nr * k) as f64;
    let calls = (2e9 / flop_per_call).max(1.0) as usize;
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        for _ in 0..calls {
            let mut row = 0;
            for &(rows, kernel) in blocks {
                // SAFETY: `a` has `mr` rows of `a_rs` plus `k`, `b` is `k`x`nr` and `c`
                // `mr`x`nr`; block rows start at `row < mr`, so every access is in bounds.
                unsafe {
                    kernel(
                        k,
                        a.as_ptr().add((row * a_rs) as usize),
                        a_rs,
                        1,
                        b.as_ptr(),
                        nr,
                        c.as_mut_ptr().add((row * nr) as usize),
                        nr,
                    );
                }
                row += rows;
            }
        }
        best = best.min(start.elapsed().as_secs_f64());
    }
    flop_per_call * calls as f64 / best / 1e9
}
