//! Helpers shared by the search tests: the fake model and problem pieces of
//! `tessel_search::testing`, and tuning sessions of small matmuls.
#![allow(dead_code, unused_imports)] // each test binary uses its own subset

use tessel_search::evolution::EvolutionParams;
pub use tessel_search::testing::{job, problem_parts, FakeScorer};
use tessel_search::tuner::*;

/// A session tuning `spec` with an unbounded trial budget (the scheduler decides), and the
/// workload's FLOPs.
pub fn session(spec: &str, seed: u64, scorer: &mut dyn Scorer) -> (TuneSession, u64) {
    let (dag, sketches, hw) = problem_parts(spec);
    let params = TuneParams {
        trials: usize::MAX,
        evolution: EvolutionParams {
            population: 32,
            ..EvolutionParams::default()
        },
        seed,
        ..TuneParams::default()
    };
    let flop = dag.flop_count();
    let s = Tuner::new(dag, sketches, hw).params(params).start(scorer);
    (s, flop)
}
