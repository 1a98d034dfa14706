//! Times the example tensorized schedules under each of the codegen's layout rewrite modes
//! (ignored; run with `--release -- --ignored --nocapture`). It helps decide the default of
//! `CodegenSettings::layout_rewrite` in `tessel-measure`.

use std::time::Instant;
use tessel_codegen::LayoutRewrite;
use tessel_ir::state::Step;
use tessel_ir::{eval, lower::lower, State};

fn time(name: &str, file: &str) {
    let path = if file.starts_with('/') {
        file.to_string()
    } else {
        format!(
            "{}/../../examples/schedules/{file}",
            env!("CARGO_MANIFEST_DIR")
        )
    };
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    let steps: Vec<Step> = serde_json::from_value(json["steps"].clone()).expect("steps");
    let w = tessel_workloads::lookup(name).expect("workload");
    let dag = std::sync::Arc::new(w.dag);
    let state = State::replay(dag.clone(), &steps).expect("replay");
    let nest = lower(&state).expect("lower");
    let inputs = eval::random_inputs(&dag, 1);
    let want = eval::evaluate(&dag, &inputs).expect("reference");
    for layout_rewrite in LayoutRewrite::MODES.into_iter().cycle().take(6) {
        let opts = tessel_codegen::CompileOptions {
            layout_rewrite,
            ..tessel_codegen::CompileOptions::with_threads(2)
        };
        let k = tessel_codegen::compile(&nest, &opts).expect("compile");
        let ins: Vec<&[f32]> = inputs.iter().map(|v| v.as_slice()).collect();
        let mut outs: Vec<Vec<f32>> = want.iter().map(|w| vec![0.0; w.len()]).collect();
        let mut best = f64::MAX;
        for _ in 0..30 {
            let mut refs: Vec<&mut [f32]> = outs.iter_mut().map(|v| v.as_mut_slice()).collect();
            let t = Instant::now();
            k.run(&ins, &mut refs).expect("run");
            best = best.min(t.elapsed().as_secs_f64());
        }
        let err = outs[0]
            .iter()
            .zip(&want[0])
            .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
            .fold(0f32, f32::max);
        println!(
            "{name} layout_rewrite={layout_rewrite}: best {:.3} ms, max rel err {err:e}",
            best * 1e3
        );
    }
}

#[test]
#[ignore]
fn layout_rewrite_timing() {
    time("gmm-3", "gmm-3-tensorized.json");
    time("c2d-3", "c2d-3-tensorized.json");
    // Any other schedule: TESSEL_SCHEDULE=<workload>:<absolute path of a JSON with "steps">.
    if let Ok(v) = std::env::var("TESSEL_SCHEDULE") {
        if let Some((name, path)) = v.split_once(':') {
            time(name, path);
        }
    }
}
