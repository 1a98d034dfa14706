//! A/B of auto-vectorization ([`CompileOptions::auto_vectorize`]) on one schedule, in one
//! process: compiles the schedule with it off and on (micro-kernels on, layout rewrite `all`,
//! constant weights packed once, untimed), checks both against the reference evaluator, then
//! times them interleaved (one run of each per round, order alternating) and prints the
//! median of each, the ratio, and the share of rounds the second build won.
//!
//! `cargo run --release -p tessel-codegen --example auto_vector -- WORKLOAD STEPS.json
//!  [--threads T] [--rounds N] [--no-micro-kernels]`
//!
//! `--no-micro-kernels` times the pure Cranelift code of the same schedule.
//!
//! `WORKLOAD` is a registry name or spec (`gmm-3`, `c2d:n=1,h=14,...`); `STEPS.json` is a
//! step log (a JSON array of steps, as `tessel run --steps` takes).

use std::sync::Arc;
use std::time::Instant;
use tessel_codegen::{compile, CompileOptions, Kernel, LayoutRewrite};
use tessel_ir::{eval, lower::lower, testing, State, Step};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut threads = 1usize;
    let mut rounds = 200usize;
    let mut isa = CompileOptions::default().isa;
    let mut pos = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--threads" => threads = it.next().ok_or("--threads T")?.parse()?,
            "--rounds" => rounds = it.next().ok_or("--rounds N")?.parse()?,
            "--no-micro-kernels" => isa = tessel_codegen::Isa::Generic,
            p => pos.push(p.to_string()),
        }
    }
    let [workload, steps] = pos.as_slice() else {
        return Err(
            "usage: auto_vector WORKLOAD STEPS.json [--threads T] [--rounds N] [--no-micro-kernels]"
                .into(),
        );
    };
    let w = tessel_workloads::lookup(workload)?;
    let steps: Vec<Step> = serde_json::from_str(&std::fs::read_to_string(steps)?)?;
    let dag = Arc::new(w.dag);
    let nest = lower(&State::replay(dag.clone(), &steps)?)?;
    let inputs = eval::random_inputs(&dag, 1);
    let want = eval::evaluate(&dag, &inputs)?;
    let ins: Vec<&[f32]> = inputs.iter().map(|x| x.as_slice()).collect();
    let build = |auto_vectorize: bool| -> Result<Kernel, Box<dyn std::error::Error>> {
        let opts = CompileOptions {
            layout_rewrite: LayoutRewrite::All,
            isa,
            auto_vectorize,
            ..CompileOptions::with_threads(threads)
        };
        let k = compile(&nest, &opts)?;
        k.pack_weights(&ins)?;
        Ok(k)
    };
    let kernels = [build(false)?, build(true)?];
    let mut outs: Vec<Vec<Vec<f32>>> = kernels
        .iter()
        .map(|k| k.outputs().iter().map(|(_, n)| vec![0.0; *n]).collect())
        .collect();
    let mut times = [Vec::new(), Vec::new()];
    for round in 0..rounds + 4 {
        for j in 0..2 {
            let which = if round % 2 == 0 { j } else { 1 - j };
            let mut o: Vec<&mut [f32]> = outs[which].iter_mut().map(|x| x.as_mut_slice()).collect();
            let s = Instant::now();
            kernels[which].run(&ins, &mut o)?;
            if round >= 4 {
                times[which].push(s.elapsed().as_secs_f64());
            }
        }
    }
    for o in &outs {
        testing::check_close(o, &want, 1e-3, 1e-3)?;
    }
    let wins = times[0]
        .iter()
        .zip(&times[1])
        .filter(|(a, b)| b < a)
        .count();
    let flops = dag.flop_count() as f64;
    let med = |t: &mut Vec<f64>| tessel_ir::stats::median(t).unwrap_or(f64::NAN);
    let (m0, m1) = (med(&mut times[0]), med(&mut times[1]));
    println!(
        "{workload} threads={threads} target={isa} rounds={rounds}: auto_vectorize off {:.3} ms ({:.1} GFLOP/s), on {:.3} ms ({:.1} GFLOP/s), on/off speed {:.3}, on faster in {:.0} % of rounds",
        m0 * 1e3,
        flops / m0 * 1e-9,
        m1 * 1e3,
        flops / m1 * 1e-9,
        m0 / m1,
        100.0 * wins as f64 / rounds as f64
    );
    Ok(())
}
