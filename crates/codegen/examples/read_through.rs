//! Times one schedule with read-through padding on and off (`CompileOptions::read_through`):
//! replays and lowers a step log (a JSON array of steps), compiles it twice for this CPU's
//! highest ISA level, checks both against the reference evaluator, and times them in turns
//! (A B A B ...: each turn a batch of calls of at least 20 ms), printing the median time per
//! call of each and their ratio, and the micro-kernel calls.
//!
//! `cargo run --release -p tessel-codegen --example read_through -- SPEC STEPS.json
//!  [--threads T] [--reps N]`
//!
//! e.g. `SPEC` = `dep:n=1,h=112,w=112,c=32,kernel=3,stride=1,pad=1` (dep-1) with a
//! schedule whose padding is computed per block of output rows and columns.

use std::sync::Arc;
use std::time::{Duration, Instant};
use tessel_codegen::{compile, CompileOptions, Kernel};
use tessel_ir::{eval, lower::lower, testing, State, Step};

/// Median time per call of `kernel` over one batch lasting at least 20 ms.
fn batch(
    kernel: &Kernel,
    inputs: &[Vec<f32>],
    outs: &mut [Vec<f32>],
) -> Result<f64, Box<dyn std::error::Error>> {
    let ins: Vec<&[f32]> = inputs.iter().map(|x| x.as_slice()).collect();
    let start = Instant::now();
    let mut calls = 0u32;
    while start.elapsed() < Duration::from_millis(20) {
        let mut o: Vec<&mut [f32]> = outs.iter_mut().map(|x| x.as_mut_slice()).collect();
        kernel.run(&ins, &mut o)?;
        calls += 1;
    }
    Ok(start.elapsed().as_secs_f64() / f64::from(calls))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut pos = Vec::new();
    let mut threads = 2usize;
    let mut reps = 9usize;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--threads" => threads = it.next().ok_or("--threads T")?.parse()?,
            "--reps" => reps = it.next().ok_or("--reps N")?.parse()?,
            p => pos.push(p.to_string()),
        }
    }
    let [spec, file] = &pos[..] else {
        return Err("usage: read_through SPEC STEPS.json [--threads T] [--reps N]".into());
    };
    let steps: Vec<Step> = serde_json::from_str(&std::fs::read_to_string(file)?)?;
    let w = tessel_workloads::lookup(spec)?;
    let dag = Arc::new(w.dag);
    let state = State::replay(dag.clone(), &steps)?;
    let nest = lower(&state)?;
    let inputs = eval::random_inputs(&dag, 1);
    let want = eval::evaluate(&dag, &inputs)?;
    let n_in = inputs.len();
    let mut kernels = Vec::new();
    for read_through in [true, false] {
        let opts = CompileOptions {
            read_through,
            ..CompileOptions::with_threads(threads)
        };
        let kernel = compile(&nest, &opts)?;
        let ins: Vec<&[f32]> = inputs.iter().map(|x| x.as_slice()).collect();
        kernel.pack_weights(&ins)?;
        let mut outs: Vec<Vec<f32>> = nest.params[n_in..]
            .iter()
            .map(|&p| vec![0.0; nest.buffer(p).len() as usize])
            .collect();
        batch(&kernel, &inputs, &mut outs)?;
        testing::check_close(&outs, &want, 1e-3, 1e-3)?;
        println!(
            "read_through={read_through}: calls {:?}",
            kernel.micro_kernel_calls()
        );
        kernels.push((kernel, outs));
    }
    let mut times = [Vec::new(), Vec::new()];
    for _ in 0..reps {
        for (k, (kernel, outs)) in kernels.iter_mut().enumerate() {
            times[k].push(batch(kernel, &inputs, outs)?);
        }
    }
    let ratios: Vec<f64> = times[0].iter().zip(&times[1]).map(|(a, b)| a / b).collect();
    let med = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "{} threads={threads} target={}: read-through median {:.4} ms, copy median {:.4} ms, ratio (pairwise median) {:.3}",
        w.name,
        CompileOptions::default().isa,
        med(&times[0]) * 1e3,
        med(&times[1]) * 1e3,
        med(&ratios)
    );
    Ok(())
}
