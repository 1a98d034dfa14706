//! Golden text: the printed state and loop nest of the example schedules in
//! `examples/schedules/` (gmm-3 and c2d-3 under multi-level tiling). Run with
//! `TESSEL_BLESS=1` to rewrite the expected files after an intended change.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use tessel_ir::lower::lower;
use tessel_ir::state::{State, Step};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Reads `examples/schedules/<name>.json`: its workload and step log.
fn example(name: &str) -> (String, Vec<Step>) {
    let path = root().join(format!("examples/schedules/{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: serde_json::Value = serde_json::from_str(&text).expect("example is JSON");
    let workload = v["workload"].as_str().expect("workload field").to_string();
    let steps: Vec<Step> = serde_json::from_value(v["steps"].clone()).expect("steps field");
    (workload, steps)
}

fn check_golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/{name}.txt"));
    tessel_ir::testing::check_golden(&path, actual);
}

fn golden_for(name: &str) {
    let (workload, steps) = example(name);
    let w = tessel_workloads::lookup(&workload).expect("example workload exists");
    let state = State::replay(Arc::new(w.dag), &steps).expect("example steps are legal");
    let nest = lower(&state).expect("example lowers");
    let text = format!(
        "# {workload}: state\n{state}\n# steps\n{}\n# loop nest\n{nest}",
        state.steps_text()
    );
    check_golden(name, &text);
}

#[test]
fn gmm_3_multi_level_tiling_prints_as_expected() {
    golden_for("gmm-3");
}

#[test]
fn c2d_3_multi_level_tiling_prints_as_expected() {
    golden_for("c2d-3");
}
