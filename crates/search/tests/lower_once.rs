//! A candidate is lowered once on its way through the search process (issue #27): the cost
//! model's scorer lowers a state the first time it is predicted, in whatever round, and keeps
//! its features for every later prediction and for its training sample; the measurer sends
//! the same loop nest with the candidate, so the builder compiles it without lowering again.
//! A state measured before any prediction saw it (the first round's heuristic schedule) is
//! lowered by the tuner's check that it lowers, into the same memo, and both its
//! measurement and its training sample reuse that nest.
//!
//! The counts come from `tessel_ir::lower::lowerings`, a process-wide counter: this file
//! holds one test so that no other test lowers at the same time.

use std::collections::HashSet;
use std::sync::Arc;
use tessel_ir::lower::lowerings;
use tessel_ir::State;
use tessel_measure::{InProcessRunner, MeasureOptions};
use tessel_search::evolution::state_key;
use tessel_search::harness::HarnessMeasurer;
use tessel_search::testing::pinned_job;
use tessel_search::tuner::{Measurement, Measurer, Scorer};

/// Distinct step logs seen so far by the scorer or the measurer, in either's calls.
#[derive(Default)]
struct Seen {
    states: HashSet<String>,
}

/// Wraps the job's scorer: counts the lowerings inside its calls, the distinct states it
/// was given, and the lowerings the scorer before the change did (every state predicted in
/// a round not seen earlier in that round, and every new sample not predicted in its round).
struct CountingScorer<'a, S: Scorer> {
    inner: S,
    seen: &'a std::cell::RefCell<Seen>,
    predict_lowered: u64,
    update_lowered: u64,
    samples: HashSet<String>,
    this_round: HashSet<String>,
    before: u64,
}

impl<S: Scorer> Scorer for CountingScorer<'_, S> {
    fn predict(&mut self, states: &[State]) -> Vec<f32> {
        let start = lowerings();
        let out = self.inner.predict(states);
        self.predict_lowered += lowerings() - start;
        let mut seen = self.seen.borrow_mut();
        for s in states {
            let key = state_key(s);
            if !self.samples.contains(&key) && self.this_round.insert(key.clone()) {
                self.before += 1;
            }
            seen.states.insert(key);
        }
        out
    }

    fn update(&mut self, states: &[State], throughputs: &[f32]) {
        let start = lowerings();
        self.inner.update(states, throughputs);
        self.update_lowered += lowerings() - start;
        let mut seen = self.seen.borrow_mut();
        for s in states {
            let key = state_key(s);
            if self.samples.insert(key.clone()) && !self.this_round.contains(&key) {
                self.before += 1;
            }
            seen.states.insert(key);
        }
        self.this_round.clear();
    }
}

/// Wraps the measurer: counts the lowerings inside its calls and the states it measured
/// that no call before had seen.
struct CountingMeasurer<'a> {
    inner: HarnessMeasurer,
    seen: &'a std::cell::RefCell<Seen>,
    lowered: u64,
    measured: usize,
    unseen: u64,
    valid: usize,
}

impl Measurer for CountingMeasurer<'_> {
    fn measure(&mut self, states: &[State]) -> Vec<Measurement> {
        {
            let mut seen = self.seen.borrow_mut();
            for s in states {
                if seen.states.insert(state_key(s)) {
                    self.unseen += 1;
                }
            }
        }
        let start = lowerings();
        let out = self.inner.measure(states);
        self.lowered += lowerings() - start;
        self.measured += states.len();
        self.valid += out.iter().filter(|m| m.seconds.is_some()).count();
        out
    }
}

#[test]
fn a_pinned_tune_in_process_lowers_each_distinct_state_once() {
    let job = pinned_job("baseline", 64, 3);
    let spec = "gmm:b=1,n=32,m=32,k=64";
    let workload = tessel_workloads::lookup(spec).expect("spec");
    let dag = Arc::new(workload.dag.clone());
    let problem = job.problem(dag).expect("sketches");
    // Real kernels, built, verified and timed once each in this process.
    let mut options = MeasureOptions::with_threads(1);
    options.timing.repeat = 1;
    options.timing.number = 1;
    options.timing.warmup = 0;
    options.timing.min_repeat_ms = 0.0;
    let runner = InProcessRunner::new(options).expect("runner");
    let seen = std::cell::RefCell::new(Seen::default());
    let mut measurer = CountingMeasurer {
        inner: HarnessMeasurer::new(workload.clone(), Box::new(runner), None)
            .expect("measurer")
            .lowerings(job.lowerings().clone()),
        seen: &seen,
        lowered: 0,
        measured: 0,
        unseen: 0,
        valid: 0,
    };
    let mut scorer = CountingScorer {
        inner: job.scorer(job.seed()),
        seen: &seen,
        predict_lowered: 0,
        update_lowered: 0,
        samples: HashSet::new(),
        this_round: HashSet::new(),
        before: 0,
    };
    let start = lowerings();
    let result = job
        .tuner(&problem, job.seed())
        .run(&mut measurer, &mut scorer);
    let total = lowerings() - start;
    let distinct = seen.borrow().states.len() as u64;
    let (m, s) = (&measurer, &scorer);
    eprintln!(
        "64 trials of gmm in process: {} distinct states, {} lowerings in the whole search \
         process ({} in predictions, {} in training, {} in measurement); the scorer alone \
         lowered {} per round before; {} of {} measured valid; memo {:?}",
        distinct,
        total,
        s.predict_lowered,
        s.update_lowered,
        m.lowered,
        s.before,
        m.valid,
        m.measured,
        job.lowerings().stats()
    );
    assert_eq!(result.trials, 64);
    assert_eq!(m.measured, 64);
    assert!(m.valid >= 32, "{} of 64 valid", m.valid);
    // Every distinct state is lowered once in all: scorer, training and builder together.
    assert_eq!(total, distinct);
    // Neither the measurer (builder included) nor the training lowered anything: the
    // one state measured before any prediction saw it, the heuristic schedule, was lowered
    // by the tuner's check that it lowers, into the shared memo.
    assert_eq!(m.lowered, 0);
    assert!(m.unseen <= 1, "{}", m.unseen);
    assert_eq!(s.update_lowered, 0);
    assert_eq!(total, s.predict_lowered + m.unseen);
    // States returning in later rounds: fewer lowerings than once per round.
    assert!(
        s.predict_lowered + m.lowered < s.before,
        "fewer than before"
    );
}
