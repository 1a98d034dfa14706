//! Measures the register-tiled 512×512×512 gmm: compile time, GFLOP/s on 1 and 2 threads.
//!
//! `cargo run --release -p tessel-codegen --example gmm [-- --disasm] [--order ij|ji] [--reps N]`

use std::time::Instant;
use tessel_codegen::builder::NestBuilder;
use tessel_codegen::{compile, CompileOptions};
use tessel_ir::expr::BinOp;
use tessel_ir::loop_nest::LoopKind::*;
use tessel_ir::LoopNest;

/// Z = X·Y, 512³, parallel fused tile loop, 4×8 local tile, k innermost.
fn gmm(n: i64, j_outer: bool) -> LoopNest {
    let (m, k) = (n, n);
    let mut b = NestBuilder::new("gmm");
    let a = b.input("X", &[m, k]);
    let bb = b.input("Y", &[k, n]);
    let c = b.output("Z", &[m, n]);
    let tile = b.local("Z.local", &[4, 8]);
    let (mt, nt) = (m / 4, n / 8);
    b.for_("i.0@j.0", mt * nt, Parallel, |b, f| {
        let (four, eight) = (b.int(4), b.int(8));
        let (i0, j0) = if j_outer {
            let d = b.int(mt);
            (b.bin(BinOp::Mod, f, d), b.bin(BinOp::Div, f, d))
        } else {
            let d = b.int(nt);
            (b.bin(BinOp::Div, f, d), b.bin(BinOp::Mod, f, d))
        };
        let ibase = b.mul(i0, four);
        let jbase = b.mul(j0, eight);
        b.alloc(tile, |b| {
            b.for_("i.3", 4, Unrolled, |b, i3| {
                b.for_("j.3", 8, Vectorized, |b, j3| {
                    let ti = b.idx(i3, 8, j3);
                    let z = b.float(0.0);
                    b.store(tile, ti, z);
                });
            });
            b.for_("k", k, Serial, |b, kk| {
                b.for_("i.3", 4, Unrolled, |b, i3| {
                    b.for_("j.3", 8, Vectorized, |b, j3| {
                        let ti = b.idx(i3, 8, j3);
                        let row = b.add(ibase, i3);
                        let ai = b.idx(row, k, kk);
                        let col = b.add(jbase, j3);
                        let bi = b.idx(kk, n, col);
                        let (acc, x, y) = (b.load(tile, ti), b.load(a, ai), b.load(bb, bi));
                        let p = b.mul(x, y);
                        let s = b.add(acc, p);
                        b.store(tile, ti, s);
                    });
                });
            });
            b.for_("i.3", 4, Unrolled, |b, i3| {
                b.for_("j.3", 8, Vectorized, |b, j3| {
                    let ti = b.idx(i3, 8, j3);
                    let row = b.add(ibase, i3);
                    let col = b.add(jbase, j3);
                    let ci = b.idx(row, n, col);
                    let v = b.load(tile, ti);
                    b.store(c, ci, v);
                });
            });
        });
    });
    b.finish()
}

/// A tiny parallel kernel (2 × 8 elements) to measure per-call overhead.
fn tiny() -> LoopNest {
    let mut b = NestBuilder::new("tiny");
    let x = b.input("x", &[2, 8]);
    let y = b.output("y", &[2, 8]);
    b.for_("i", 2, Parallel, |b, i| {
        b.for_("j", 8, Vectorized, |b, j| {
            let k = b.idx(i, 8, j);
            let v = b.load(x, k);
            let v = b.add(v, v);
            b.store(y, k, v);
        });
    });
    b.finish()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |f: &str| args.iter().position(|a| a == f);
    let j_outer = flag("--order").is_some_and(|p| args.get(p + 1).is_some_and(|o| o == "ji"));
    let reps: usize = flag("--reps")
        .and_then(|p| args.get(p + 1)?.parse().ok())
        .unwrap_or(15);
    if flag("--overhead").is_some() {
        let nest = tiny();
        let x = vec![1.0f32; 16];
        let mut y = vec![0.0f32; 16];
        for threads in [1, 2] {
            let k = compile(&nest, &CompileOptions::with_threads(threads)).expect("compile");
            let calls = 200_000;
            let meds: Vec<f64> = (0..5)
                .map(|_| {
                    let t = Instant::now();
                    for _ in 0..calls {
                        k.run(&[&x], &mut [&mut y]).expect("run");
                    }
                    t.elapsed().as_secs_f64() / calls as f64 * 1e9
                })
                .collect();
            println!(
                "tiny parallel kernel, threads={threads}: median {:.0} ns/call",
                median(meds)
            );
        }
        return;
    }
    let n = 512i64;
    let nest = gmm(n, j_outer);
    let compile_ms = median(
        (0..51)
            .map(|_| {
                let t = Instant::now();
                let k = compile(&nest, &CompileOptions::with_threads(2)).expect("compile");
                drop(k);
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect(),
    );
    println!("compile: median {compile_ms:.3} ms (threads=2 kernel, 51 runs)");
    if flag("--disasm").is_some() {
        let opts = CompileOptions {
            disasm: true,
            keep_ir: true,
            ..CompileOptions::with_threads(1)
        };
        let k = compile(&nest, &opts).expect("compile");
        println!(
            "{}\n{}",
            k.ir_text().unwrap_or(""),
            k.disasm().unwrap_or("")
        );
    }
    let x: Vec<f32> = (0..n * n).map(|v| ((v * 7) % 13) as f32 * 0.1).collect();
    let y: Vec<f32> = (0..n * n).map(|v| ((v * 5) % 11) as f32 * 0.1).collect();
    let flop = 2.0 * (n * n * n) as f64;
    for threads in [1, 2] {
        let opts = CompileOptions {
            fma: flag("--nofma").is_none(),
            ..CompileOptions::with_threads(threads)
        };
        let k = compile(&nest, &opts).expect("compile");
        let mut z = vec![0.0f32; (n * n) as usize];
        k.run(&[&x, &y], &mut [&mut z]).expect("run");
        let times: Vec<f64> = (0..reps)
            .map(|_| {
                let t = Instant::now();
                k.run(&[&x, &y], &mut [&mut z]).expect("run");
                t.elapsed().as_secs_f64()
            })
            .collect();
        let best = times.iter().copied().fold(f64::MAX, f64::min);
        let med = median(times);
        println!(
            "threads={threads}: median {:.1} GFLOP/s ({:.2} ms), best {:.1} GFLOP/s",
            flop / med / 1e9,
            med * 1e3,
            flop / best / 1e9
        );
        // Spot check.
        let (i, j) = (37usize, 301usize);
        let want: f32 = (0..n as usize)
            .map(|kk| x[i * 512 + kk] * y[kk * 512 + j])
            .sum();
        assert!((z[i * 512 + j] - want).abs() < 1e-2 * want.abs().max(1.0));
    }
}
