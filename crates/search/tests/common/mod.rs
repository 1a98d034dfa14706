//! Helpers shared by the search tests: a fake model and tuning sessions of small matmuls.
#![allow(dead_code)] // each test binary uses its own subset

use std::sync::Arc;
use tessel_ir::dag::fnv1a;
use tessel_ir::State;
use tessel_search::evolution::{state_key, EvolutionParams};
use tessel_search::tuner::*;
use tessel_sketch::{generate_sketches, HardwareParams};

/// Scores are a fixed function of the step log; records the size of every retraining.
#[derive(Default)]
pub struct FakeScorer {
    /// The number of states of each `update` call.
    pub updates: Vec<usize>,
}

impl Scorer for FakeScorer {
    fn predict(&mut self, states: &[State]) -> Vec<f32> {
        states
            .iter()
            .map(|s| (fnv1a(state_key(s).as_bytes()) % 1000) as f32 / 1000.0)
            .collect()
    }
    fn update(&mut self, states: &[State], throughputs: &[f32]) {
        assert_eq!(states.len(), throughputs.len());
        assert!(throughputs.iter().all(|t| (0.0..=1.0).contains(t)));
        self.updates.push(states.len());
    }
}

/// The DAG of `spec`, its sketches for 2 cores, and those hardware parameters.
pub fn problem_parts(
    spec: &str,
) -> (
    Arc<tessel_ir::ComputeDag>,
    Vec<tessel_sketch::Sketch>,
    HardwareParams,
) {
    let dag = Arc::new(tessel_workloads::lookup(spec).expect("spec").dag);
    let hw = HardwareParams::with_cores(2);
    let sketches = generate_sketches(&dag, &hw).expect("sketches");
    (dag, sketches, hw)
}

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

/// A tuning job with `params` (its target's hardware is not used: the tests' problems carry
/// their own).
pub fn job(params: TuneParams) -> tessel_search::job::TuneJob {
    let mut options = tessel_search::job::TuneOptions::new(tessel_sketch::Target::native());
    options.params = params;
    tessel_search::job::TuneJob::new(options)
}
