//! Times one schedule three ways: guarded edges (`CompileOptions::guarded_edges`: no copy
//! at all), read-through padding with the copy on edge tiles, and the copy on every tile
//! (`CompileOptions::read_through` off): replays and lowers a step log (a JSON array of
//! steps), compiles it three times for this CPU's highest ISA level, checks each against
//! the reference evaluator, and times them in turns (A B C A B C ...: each turn a batch of
//! calls of at least 20 ms), printing the median time per call of each, their ratios to
//! the first (pairwise medians), and the micro-kernel calls.
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
    let variants = [
        ("guarded edges", true, true),
        ("edge copies", true, false),
        ("copy always", false, false),
    ];
    for (name, read_through, guarded_edges) in variants {
        let opts = CompileOptions {
            read_through,
            guarded_edges,
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
        println!("{name}: calls {:?}", kernel.micro_kernel_calls());
        kernels.push((kernel, outs));
    }
    let mut times = vec![Vec::new(); variants.len()];
    for _ in 0..reps {
        for (k, (kernel, outs)) in kernels.iter_mut().enumerate() {
            times[k].push(batch(kernel, &inputs, outs)?);
        }
    }
    let med = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    print!(
        "{} threads={threads} target={}:",
        w.name,
        CompileOptions::default().isa
    );
    for (k, (name, ..)) in variants.iter().enumerate() {
        let ratios: Vec<f64> = times[k].iter().zip(&times[0]).map(|(a, b)| a / b).collect();
        print!(
            " {name} median {:.4} ms (x{:.3} of guarded);",
            med(&times[k]) * 1e3,
            med(&ratios)
        );
    }
    println!();
    Ok(())
}
