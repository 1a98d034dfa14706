//! Times one schedule with fused write-backs on and off (`CompileOptions::fuse_epilogues`):
//! replays and lowers a step log (a JSON array of steps), compiles it twice for this CPU's
//! highest ISA level (or `--target`), checks both against the reference evaluator, and
//! times them in turns (A B A B ...: each turn a batch of calls of at least 20 ms),
//! printing the median time per call of each and their pairwise-median ratio, and the
//! fused write-backs.
//!
//! `cargo run --release -p tessel-codegen --example epilogue -- SPEC STEPS.json
//!  [--threads T] [--reps N] [--target avx512|avx2]`
//!
//! e.g. `SPEC` = `resnet50@1/c2d:n=1,h=56,w=56,ci=64,co=256,kernel=1,stride=1,pad=0+bias+add+relu`
//! with the best steps of that task from a records file.

use std::sync::Arc;
use std::time::{Duration, Instant};
use tessel_codegen::{compile, CompileOptions, Isa, Kernel};
use tessel_ir::{eval, lower::lower, testing, State, Step};

/// Time per call of `kernel` over one batch lasting at least 20 ms.
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
    let mut isa = CompileOptions::default().isa;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--threads" => threads = it.next().ok_or("--threads T")?.parse()?,
            "--reps" => reps = it.next().ok_or("--reps N")?.parse()?,
            "--target" => {
                isa = match it.next().map(String::as_str) {
                    Some("avx512") => Isa::Avx512,
                    Some("avx2") => Isa::Avx2,
                    _ => return Err("--target avx512|avx2".into()),
                }
            }
            p => pos.push(p.to_string()),
        }
    }
    let [spec, file] = &pos[..] else {
        return Err(
            "usage: epilogue SPEC STEPS.json [--threads T] [--reps N] [--target avx512|avx2]"
                .into(),
        );
    };
    if !tessel_codegen::ukernel::available(isa) {
        return Err(format!("this CPU cannot run {isa}").into());
    }
    let steps: Vec<Step> = serde_json::from_str(&std::fs::read_to_string(file)?)?;
    let w = tessel_workloads::lookup(spec)?;
    let dag = Arc::new(w.dag);
    let state = State::replay(dag.clone(), &steps)?;
    let nest = lower(&state)?;
    let inputs = eval::random_inputs(&dag, 1);
    let want = eval::evaluate(&dag, &inputs)?;
    let n_in = inputs.len();
    let mut kernels = Vec::new();
    for fuse_epilogues in [true, false] {
        let opts = CompileOptions {
            isa,
            fuse_epilogues,
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
        println!("fuse_epilogues={fuse_epilogues}: fused write-backs:");
        for f in kernel.fused_write_backs() {
            println!("  {f}");
        }
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
        "{} threads={threads} target={isa}: fused median {:.4} ms, loop median {:.4} ms, ratio fused/loop (pairwise median) {:.3}",
        w.name,
        med(&times[0]) * 1e3,
        med(&times[1]) * 1e3,
        med(&ratios)
    );
    Ok(())
}
