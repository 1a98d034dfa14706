//! Measures a gmm-3 schedule (512×512×512): compile time, GFLOP/s on 1 and 2 threads.
//!
//! `cargo run --release -p tessel-codegen --example gmm [-- --disasm] [--schedule FILE] [--reps N]`
//! (default schedule: `examples/schedules/gmm-3.json`).

use std::time::Instant;
use tessel_codegen::builder::NestBuilder;
use tessel_codegen::{compile, CompileOptions};
use tessel_ir::loop_nest::LoopKind::*;
use tessel_ir::LoopNest;

/// The lowered loop nest of a gmm-3 schedule file (`examples/schedules/gmm-3.json`: Z = X·Y,
/// 512³, a parallel fused tile loop, a 4×8 local tile, k innermost), through the real pipeline.
fn gmm(schedule: &str) -> LoopNest {
    let text = std::fs::read_to_string(schedule).expect("schedule file");
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let steps: Vec<tessel_ir::Step> = serde_json::from_value(v["steps"].clone()).expect("steps");
    let w = tessel_workloads::lookup(v["workload"].as_str().expect("workload")).expect("workload");
    assert_eq!(w.spec(), "gmm:b=1,n=512,m=512,k=512", "a gmm-3 schedule");
    let state = tessel_ir::State::replay(std::sync::Arc::new(w.dag), &steps).expect("legal");
    tessel_ir::lower::lower(&state).expect("lowers")
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

fn median(v: Vec<f64>) -> f64 {
    tessel_ir::stats::median(&v).unwrap_or(f64::NAN)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |f: &str| args.iter().position(|a| a == f);
    let default = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/schedules/gmm-3.json"
    );
    let schedule = flag("--schedule")
        .and_then(|p| args.get(p + 1).cloned())
        .unwrap_or_else(|| default.to_string());
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
    let nest = gmm(&schedule);
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
