//! The lowering oracle: for every operator kind, random legal schedules (non-dividing
//! splits, fuse, reorder, compute_at/inline/root, cache_write/read, rfactor, annotations)
//! lower to loop nests that compute exactly what the reference evaluator computes.

use proptest::prelude::*;
use std::sync::Arc;
use tessel_ir::{eval, lower::lower, rng, testing};

fn check_spec(spec: &str, seed: u64) -> Result<(), String> {
    let w = tessel_workloads::lookup(spec).map_err(|e| e.to_string())?;
    let dag = Arc::new(w.dag);
    let inputs = eval::random_inputs(&dag, seed);
    let want = eval::evaluate(&dag, &inputs).map_err(|e| e.to_string())?;
    let state = testing::random_state(&dag, &mut rng::seeded(seed), &testing::Limits::default());
    let nest =
        lower(&state).map_err(|e| format!("{spec} seed {seed}: {e}\n{}", state.steps_text()))?;
    let got = testing::run_interp(&nest, &inputs)
        .map_err(|e| format!("{spec} seed {seed}: {e}\n{}\n{nest}", state.steps_text()))?;
    testing::check_close(&got, &want, 1e-5, 1e-4)
        .map_err(|e| format!("{spec} seed {seed}: {e}\n{}\n{nest}", state.steps_text()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_schedules_of_every_operator_kind_match_the_evaluator(seed in any::<u64>()) {
        for spec in testing::SMALL_SPECS {
            if let Err(e) = check_spec(spec, seed) {
                prop_assert!(false, "{}", e);
            }
        }
    }
}

#[test]
fn the_unscheduled_program_of_every_kind_matches_the_evaluator() {
    for spec in testing::SMALL_SPECS {
        let w = tessel_workloads::lookup(spec).expect("spec");
        let dag = Arc::new(w.dag);
        let inputs = eval::random_inputs(&dag, 1);
        let want = eval::evaluate(&dag, &inputs).expect("evaluates");
        let nest = lower(&tessel_ir::State::new(dag)).expect("lowers");
        let got = testing::run_interp(&nest, &inputs).expect("runs");
        testing::check_close(&got, &want, 1e-5, 1e-4).unwrap_or_else(|e| panic!("{spec}: {e}"));
    }
}
