//! Codegen against the foundation's oracle: random legal schedules of every operator kind
//! (the same generator the lowering tests use), lowered, compiled with Cranelift and run on
//! one and two threads, compute what the reference evaluator computes (and, without
//! auto-vectorization, bit-for-bit what they compute with it); and the hand-written example
//! schedules in `examples/schedules/` compile and are correct.

use proptest::prelude::*;
use std::path::Path;
use std::sync::Arc;
use tessel_codegen::{compile, CompileOptions};
use tessel_ir::{eval, lower::lower, rng, testing, LoopNest, State, Step};

fn run_compiled(
    nest: &LoopNest,
    inputs: &[Vec<f32>],
    threads: usize,
) -> Result<Vec<Vec<f32>>, String> {
    run_with(nest, inputs, &CompileOptions::with_threads(threads))
}

fn run_with(
    nest: &LoopNest,
    inputs: &[Vec<f32>],
    opts: &CompileOptions,
) -> Result<Vec<Vec<f32>>, String> {
    let kernel = compile(nest, opts).map_err(|e| e.to_string())?;
    let n_in = inputs.len();
    let mut outputs: Vec<Vec<f32>> = nest.params[n_in..]
        .iter()
        .map(|&p| vec![f32::NAN; nest.buffer(p).len() as usize])
        .collect();
    let ins: Vec<&[f32]> = inputs.iter().map(|v| v.as_slice()).collect();
    let mut outs: Vec<&mut [f32]> = outputs.iter_mut().map(|v| v.as_mut_slice()).collect();
    kernel.run(&ins, &mut outs).map_err(|e| e.to_string())?;
    Ok(outputs)
}

fn check(spec: &str, seed: u64) -> Result<(), String> {
    let w = tessel_workloads::lookup(spec).map_err(|e| e.to_string())?;
    let dag = Arc::new(w.dag);
    let inputs = eval::random_inputs(&dag, seed);
    let want = eval::evaluate(&dag, &inputs).map_err(|e| e.to_string())?;
    let state = testing::random_state(&dag, &mut rng::seeded(seed), &testing::Limits::default());
    let nest = lower(&state).map_err(|e| e.to_string())?;
    let mut one_thread = Vec::new();
    for threads in [1, 2] {
        let got = run_compiled(&nest, &inputs, threads)
            .map_err(|e| format!("{spec} seed {seed}: {e}\n{}\n{nest}", state.steps_text()))?;
        testing::check_close(&got, &want, 1e-4, 1e-4).map_err(|e| {
            format!(
                "{spec} seed {seed} threads {threads}: {e}\n{}\n{nest}",
                state.steps_text()
            )
        })?;
        if threads == 1 {
            one_thread = got;
        }
    }
    // Auto-vectorization only regroups independent iterations: the same bits either way.
    let scalar = CompileOptions {
        auto_vectorize: false,
        ..CompileOptions::with_threads(1)
    };
    let got = run_with(&nest, &inputs, &scalar)
        .map_err(|e| format!("{spec} seed {seed}: {e}\n{}\n{nest}", state.steps_text()))?;
    let bits = |o: &[Vec<f32>]| -> Vec<Vec<u32>> {
        o.iter()
            .map(|v| v.iter().map(|x| x.to_bits()).collect())
            .collect()
    };
    if bits(&got) != bits(&one_thread) {
        return Err(format!(
            "{spec} seed {seed}: outputs differ without auto-vectorization\n{}\n{nest}",
            state.steps_text()
        ));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_schedules_of_every_operator_kind_compile_to_correct_code(seed in any::<u64>()) {
        for spec in testing::SMALL_SPECS {
            if let Err(e) = check(spec, seed) {
                prop_assert!(false, "{}", e);
            }
        }
    }
}

fn example(name: &str) -> (String, Vec<Step>) {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("examples/schedules/{name}.json"));
    let text = std::fs::read_to_string(&path).expect("example file");
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let steps: Vec<Step> = serde_json::from_value(v["steps"].clone()).expect("steps");
    (v["workload"].as_str().expect("workload").to_string(), steps)
}

#[test]
fn example_schedules_compile_and_are_correct() {
    for name in ["gmm-3", "c2d-3"] {
        let (workload, steps) = example(name);
        let dag = Arc::new(tessel_workloads::lookup(&workload).expect("workload").dag);
        let state = State::replay(dag.clone(), &steps).expect("legal");
        let nest = lower(&state).expect("lowers");
        let inputs = eval::random_inputs(&dag, 42);
        let want = eval::evaluate(&dag, &inputs).expect("evaluates");
        let got = run_compiled(&nest, &inputs, 2).expect("compiles and runs");
        testing::check_close(&got, &want, 1e-3, 1e-3).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}
