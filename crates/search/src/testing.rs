//! Helpers for tests of searches, their policies and their users (this crate's tests, the
//! experiment's, a user's own): a deterministic fake cost model, a deterministic fake
//! measurement that logs what it measured, and the pieces of a small tuning problem.
//!
//! ```
//! use tessel_search::testing::{problem_parts, FakeScorer};
//! use tessel_search::tuner::Scorer;
//! let (dag, sketches, _hw) = problem_parts("gmm:b=1,n=16,m=16,k=16");
//! let state = tessel_ir::State::new(dag);
//! let mut scorer = FakeScorer::default();
//! let score = scorer.predict(&[state.clone()])[0];
//! assert_eq!(score, scorer.predict(&[state])[0]); // a function of the step log
//! assert!(!sketches.is_empty());
//! ```

use crate::evolution::{state_key, EvolutionParams};
use crate::job::{TuneJob, TuneOptions};
use crate::tuner::{ErrorClass, MeasureError, Measurement, Measurer, Scorer, TuneParams};
use std::sync::Arc;
use tessel_ir::dag::fnv1a;
use tessel_ir::{ComputeDag, State};
use tessel_sketch::{generate_sketches, HardwareParams, Isa, Sketch, Target};

/// A cost model whose scores are a fixed function of the step log (in `[0, 1)`); it records
/// the size of every retraining and checks the labels it is given.
#[derive(Debug, Default)]
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

/// The DAG of the workload `spec` (a registry name or an `OP:key=value,...` spec), its
/// sketches for 2 cores, and those hardware parameters. Panics on an unknown spec: it is
/// for tests.
pub fn problem_parts(spec: &str) -> (Arc<ComputeDag>, Vec<Sketch>, HardwareParams) {
    let dag = Arc::new(
        tessel_workloads::lookup(spec)
            .expect("a known workload")
            .dag,
    );
    let hw = HardwareParams::with_cores(2);
    let sketches = generate_sketches(&dag, &hw).expect("sketches");
    (dag, sketches, hw)
}

/// A tuning job on the native target with `params` (the tests' problems carry their own
/// hardware).
pub fn job(params: TuneParams) -> TuneJob {
    let mut options = TuneOptions::new(Target::native());
    options.params = params;
    TuneJob::new(options)
}

/// The fake measurement of a step log `key`: seconds a fixed function of it (1–11 ms);
/// every 7th log (by hash) "fails" with a runtime crash.
pub fn fake_measurement(key: &str) -> Measurement {
    let h = fnv1a(key.as_bytes());
    let fails = h.is_multiple_of(7);
    Measurement {
        seconds: (!fails).then(|| 1e-3 * (1.0 + (h % 1000) as f64 / 100.0)),
        error: fails.then(|| MeasureError::new(ErrorClass::RuntimeCrash, "fake")),
        compile_seconds: 0.0,
    }
}

/// A deterministic [`Measurer`] ([`fake_measurement`]) that logs every measured step log in
/// order, so that a test can pin what a search measured by one digest.
#[derive(Debug, Default)]
pub struct LoggingMeasurer {
    /// The measured step logs, each prefixed by the tag it was measured under.
    pub order: Vec<String>,
}

impl LoggingMeasurer {
    /// Measures `states`, logging each step log prefixed by `tag` (e.g. a task's index).
    pub fn run(&mut self, tag: &str, states: &[State]) -> Vec<Measurement> {
        states
            .iter()
            .map(|s| {
                let key = state_key(s);
                self.order.push(format!("{tag}{key}"));
                fake_measurement(&key)
            })
            .collect()
    }

    /// How many were measured, and FNV-1a of their step logs joined in order.
    pub fn digest(&self) -> (usize, u64) {
        (self.order.len(), fnv1a(self.order.join("\n").as_bytes()))
    }
}

impl Measurer for LoggingMeasurer {
    fn measure(&mut self, states: &[State]) -> Vec<Measurement> {
        self.run("", states)
    }
}

/// Trials of a pinned-behaviour run: past the cost model's warm-up (100 samples), so the
/// trained GBDT ranks the later rounds' candidates.
pub const PINNED_TRIALS: usize = 144;

/// The machine-independent target of pinned-behaviour tests (the digests of the search's
/// and the experiment's behaviour tests were taken with it): two cores, AVX2 micro-kernels
/// (tensorized sketches on).
pub fn pinned_target() -> Target {
    Target::with_isa(Isa::Avx2).with_cores(2)
}

/// The job of `tessel tune --policy PRESET` on [`pinned_target`] with the pinned sizes
/// (16 measures per round, population 48) and a budget of `trials`.
pub fn pinned_job(policy: &str, trials: usize, seed: u64) -> TuneJob {
    let mut options = TuneOptions::new(pinned_target())
        .with_preset(crate::registry::preset(policy).expect("a registered preset"))
        .expect("registered policies");
    options.params = TuneParams {
        trials,
        measures_per_round: 16,
        evolution: EvolutionParams {
            population: 48,
            ..EvolutionParams::default()
        },
        seed,
        ..TuneParams::default()
    };
    TuneJob::new(options)
}
