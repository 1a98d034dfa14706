//! Criterion benches of the code generator on the example schedules of
//! `examples/schedules/`, through the real pipeline (replay the step log, lower, compile):
//!
//! * compile time of the register-tiled gmm-3 schedule (`gmm-3.json`: a 4×8 accumulator
//!   tile of f32x4 values, k innermost and not unrolled, inside one parallel tile loop);
//! * run time of gmm-3 (512³) on one and two threads, plain Cranelift code (`gmm-3.json`)
//!   and with the AVX2 micro-kernel (`gmm-3-tensorized.json`, packed weights), and of c2d-3.
//!
//! `cargo bench --bench codegen`; throughput is reported in FLOP/s ("elem/s").

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use tessel_codegen::{compile, CompileOptions, LayoutRewrite};
use tessel_ir::{eval, lower::lower, LoopNest, State, Step};

/// The lowered loop nest and FLOPs of `examples/schedules/<name>.json`, and random inputs.
fn example(name: &str) -> (LoopNest, u64, Vec<Vec<f32>>) {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("examples/schedules/{name}.json"));
    let text = std::fs::read_to_string(&path).expect("example schedule");
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let steps: Vec<Step> = serde_json::from_value(v["steps"].clone()).expect("steps");
    let w = tessel_workloads::lookup(v["workload"].as_str().expect("workload")).expect("workload");
    let dag = Arc::new(w.dag.clone());
    let state = State::replay(dag.clone(), &steps).expect("legal schedule");
    (
        lower(&state).expect("lowers"),
        w.flop(),
        eval::random_inputs(&dag, 1),
    )
}

fn bench_compile(c: &mut Criterion) {
    let (nest, _, _) = example("gmm-3");
    let mut g = c.benchmark_group("compile");
    g.bench_function("gmm-3", |b| {
        b.iter(|| compile(black_box(&nest), &CompileOptions::with_threads(2)).expect("compile"))
    });
    g.finish();
}

fn bench_run(c: &mut Criterion) {
    for name in ["gmm-3", "gmm-3-tensorized", "c2d-3", "c2d-3-tensorized"] {
        let (nest, flop, inputs) = example(name);
        let mut outputs: Vec<Vec<f32>> = nest.params[inputs.len()..]
            .iter()
            .map(|&p| vec![0.0; nest.buffer(p).len() as usize])
            .collect();
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Elements(flop));
        g.sample_size(30);
        for threads in [1usize, 2] {
            let opts = CompileOptions {
                layout_rewrite: LayoutRewrite::All,
                ..CompileOptions::with_threads(threads)
            };
            let kernel = compile(&nest, &opts).expect("compile");
            let ins: Vec<&[f32]> = inputs.iter().map(|v| v.as_slice()).collect();
            g.bench_function(format!("threads={threads}"), |b| {
                b.iter(|| {
                    let mut outs: Vec<&mut [f32]> =
                        outputs.iter_mut().map(|v| v.as_mut_slice()).collect();
                    kernel.run(&ins, &mut outs).expect("run")
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench_compile, bench_run);
criterion_main!(benches);
