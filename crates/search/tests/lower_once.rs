//! A candidate is lowered once on its way through the search process (issue #27): the cost
//! model's scorer lowers a state the first time it is predicted in a round and reuses those
//! features for the rest of the round's predictions and for its training sample.
//!
//! The counts come from `tessel_ir::lower::lowerings`, a process-wide counter: this file
//! holds one test so that no other test lowers at the same time.

use std::collections::HashSet;
use std::sync::Arc;
use tessel_ir::lower::lowerings;
use tessel_ir::State;
use tessel_search::evolution::state_key;
use tessel_search::testing::{pinned_job, LoggingMeasurer};
use tessel_search::tuner::Scorer;

/// Wraps the job's scorer, counting the lowerings done inside its calls and, independently,
/// how many a scorer that lowers each state once per round (between two updates) would do,
/// and how many the scorer before the change did (every state of every prediction, and
/// every new training sample).
struct Counting<S: Scorer> {
    inner: S,
    /// Lowerings inside `predict` and `update` calls.
    predict_lowered: u64,
    update_lowered: u64,
    /// Step logs of the training samples so far.
    samples: HashSet<String>,
    /// Step logs predicted since the last update.
    this_round: HashSet<String>,
    /// Lowerings expected of the scorer that lowers each candidate once.
    predict_expected: u64,
    update_expected: u64,
    /// Lowerings the scorer did before (one per predicted state, one per new sample).
    before: u64,
    /// Distinct states the search measured.
    measured: usize,
}

impl<S: Scorer> Scorer for Counting<S> {
    fn predict(&mut self, states: &[State]) -> Vec<f32> {
        let start = lowerings();
        let out = self.inner.predict(states);
        self.predict_lowered += lowerings() - start;
        self.before += states.len() as u64;
        for s in states {
            let key = state_key(s);
            if !self.samples.contains(&key) && self.this_round.insert(key) {
                self.predict_expected += 1;
            }
        }
        out
    }

    fn update(&mut self, states: &[State], throughputs: &[f32]) {
        let start = lowerings();
        self.inner.update(states, throughputs);
        self.update_lowered += lowerings() - start;
        for s in states {
            let key = state_key(s);
            if !self.samples.contains(&key) {
                self.before += 1;
                if !self.this_round.contains(&key) {
                    self.update_expected += 1;
                }
                self.samples.insert(key);
            }
        }
        self.measured = self.samples.len();
        self.this_round.clear();
    }
}

#[test]
fn each_candidate_is_lowered_once_per_round_and_its_sample_reuses_it() {
    let job = pinned_job("baseline", 64, 3);
    let dag = Arc::new(
        tessel_workloads::lookup("gmm:b=1,n=32,m=32,k=64")
            .expect("spec")
            .dag,
    );
    let problem = job.problem(dag).expect("sketches");
    let mut scorer = Counting {
        inner: job.scorer(job.seed()),
        predict_lowered: 0,
        update_lowered: 0,
        samples: HashSet::new(),
        this_round: HashSet::new(),
        predict_expected: 0,
        update_expected: 0,
        before: 0,
        measured: 0,
    };
    let mut runner = LoggingMeasurer::default();
    let start = lowerings();
    job.tuner(&problem, job.seed())
        .run(&mut runner, &mut scorer);
    let total = lowerings() - start;
    let c = &scorer;
    eprintln!(
        "64 trials of gmm: {} measured; scorer lowered {} states ({} in predictions, {} in \
         training) where it lowered {} before; {} lowerings in the whole search process",
        c.measured,
        c.predict_lowered + c.update_lowered,
        c.predict_lowered,
        c.update_lowered,
        c.before,
        total
    );
    assert_eq!(c.measured, 64);
    assert_eq!(
        c.predict_lowered, c.predict_expected,
        "once per state and round"
    );
    // Only a measured state that no prediction of its round saw (the heuristic schedule of
    // the first round) is lowered for its training sample.
    assert_eq!(c.update_lowered, c.update_expected);
    assert!(c.update_expected <= 1, "{}", c.update_expected);
    assert!(
        c.predict_lowered + c.update_lowered < c.before,
        "fewer than before"
    );
}
