//! Runs a schedule file (default `examples/schedules/gmm-3-tensorized.json`): replays and
//! lowers it, compiles it with and without micro-kernels, checks the result against the
//! reference evaluator, and prints the median time and GFLOP/s on 1 and 2 threads.
//!
//! `cargo run --release -p tessel-codegen --example tensorized [-- FILE] [--reps N]
//!  [--flops F] [--threads T] [--as-weights] [--print]`
//!
//! `--print` prints the schedule state and the lowered loop nest first.
//!
//! Each thread count runs four builds: micro-kernels under each layout rewrite mode (`all`:
//! constant weights packed once by `Kernel::pack_weights`, not timed, other `B` operands
//! packed inside every timed run; `weights`: constant weights only; `off`: row-major `B`),
//! and the pure Cranelift fallback. `--as-weights` marks every input a constant weight, so
//! that `weights` packs a matmul's `B` once, untimed (what `layout_rewrite: true` did before
//! the modes existed): the difference with `all` is the cost of packing per call.

use std::sync::Arc;
use std::time::Instant;
use tessel_codegen::{compile, CompileOptions, LayoutRewrite};
use tessel_ir::{eval, lower::lower, testing, State, Step};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut file = format!(
        "{}/../../examples/schedules/gmm-3-tensorized.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut reps = 15usize;
    let mut flops: Option<f64> = None;
    let mut threads = vec![1usize, 2];
    let mut as_weights = false;
    let mut print_nest = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--reps" => reps = it.next().ok_or("--reps N")?.parse()?,
            "--flops" => flops = Some(it.next().ok_or("--flops F")?.parse()?),
            "--threads" => threads = vec![it.next().ok_or("--threads T")?.parse()?],
            "--as-weights" => as_weights = true,
            "--print" => print_nest = true,
            f => file = f.to_string(),
        }
    }
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file)?)?;
    let steps: Vec<Step> = serde_json::from_value(v["steps"].clone())?;
    let w = tessel_workloads::lookup(v["workload"].as_str().ok_or("workload")?)?;
    let dag = Arc::new(w.dag);
    let state = State::replay(dag.clone(), &steps)?;
    let mut nest = lower(&state)?;
    if print_nest {
        println!("{state}\n{nest}");
    }
    if as_weights {
        for &p in &nest.params[..dag.inputs().len()] {
            nest.buffers[p.index()].constant = true;
        }
    }
    let flops = flops.unwrap_or_else(|| dag.flop_count() as f64);
    let inputs = eval::random_inputs(&dag, 1);
    let want = eval::evaluate(&dag, &inputs)?;
    let n_in = inputs.len();
    for t in threads {
        let native = CompileOptions::default().isa;
        let builds = [
            (native, LayoutRewrite::All),
            (native, LayoutRewrite::Weights),
            (native, LayoutRewrite::Off),
            (tessel_codegen::Isa::Generic, LayoutRewrite::Off),
        ];
        for (uk, lr) in builds {
            let opts = CompileOptions {
                isa: uk,
                layout_rewrite: lr,
                ..CompileOptions::with_threads(t)
            };
            let kernel = compile(&nest, &opts)?;
            let ins: Vec<&[f32]> = inputs.iter().map(|x| x.as_slice()).collect();
            // Layout rewrite: pack the constant weights once, outside the timed runs.
            kernel.pack_weights(&ins)?;
            let mut outs: Vec<Vec<f32>> = nest.params[n_in..]
                .iter()
                .map(|&p| vec![0.0; nest.buffer(p).len() as usize])
                .collect();
            let mut times = Vec::new();
            for _ in 0..reps + 2 {
                let mut o: Vec<&mut [f32]> = outs.iter_mut().map(|x| x.as_mut_slice()).collect();
                let s = Instant::now();
                kernel.run(&ins, &mut o)?;
                times.push(s.elapsed().as_secs_f64());
            }
            testing::check_close(&outs, &want, 1e-3, 1e-3)?;
            let mut times = times[2..].to_vec();
            times.sort_by(f64::total_cmp);
            let med = tessel_ir::stats::median(&times).unwrap_or(f64::NAN);
            println!(
                "{} threads={t} target={uk} layout_rewrite={lr}: median {:.3} ms ({:.1} GFLOP/s), best {:.3} ms, compile {:.2} ms",
                w.name,
                med * 1e3,
                flops / med * 1e-9,
                times[0] * 1e3,
                kernel.compile_time().as_secs_f64() * 1e3
            );
        }
    }
    Ok(())
}
