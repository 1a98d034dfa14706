//! How often a search lowers its candidates (issue #27), and what keeping loop nests costs:
//! tunes each workload for `--trials` (default 192: three rounds) with the default search
//! parameters on the pinned target, measuring in process (one timed call per candidate),
//! and counts the lowerings of the whole process, of the scorer and of the measurer, the
//! distinct states, and what the scorer did before the change (each state once per round
//! it was predicted in). `BUDGET=<bytes>` sets the memo's budget (default
//! `tessel_search::lowering::DEFAULT_BUDGET_BYTES`); run it under `/usr/bin/time -v` for
//! the peak memory.
//!
//! ```text
//! BUDGET=16777216 /usr/bin/time -v cargo run --release -p tessel-search --example lower_count -- gmm-3
//! ```

use std::collections::HashSet;
use std::sync::Arc;
use tessel_ir::lower::lowerings;
use tessel_ir::State;
use tessel_measure::{InProcessRunner, MeasureOptions};
use tessel_search::evolution::state_key;
use tessel_search::harness::HarnessMeasurer;
use tessel_search::job::{TuneJob, TuneOptions};
use tessel_search::lowering::Lowerings;
use tessel_search::testing::pinned_target;
use tessel_search::tuner::{Measurement, Measurer, Scorer, TuneParams};

/// Counts the scorer's lowerings and what it lowered before the change.
struct CountingScorer<S: Scorer> {
    inner: S,
    lowered: u64,
    seen: HashSet<String>,
    round: HashSet<String>,
    samples: HashSet<String>,
    before: u64,
}

impl<S: Scorer> Scorer for CountingScorer<S> {
    fn predict(&mut self, states: &[State]) -> Vec<f32> {
        let t = lowerings();
        let out = self.inner.predict(states);
        self.lowered += lowerings() - t;
        for s in states {
            let k = state_key(s);
            if !self.samples.contains(&k) && self.round.insert(k.clone()) {
                self.before += 1;
            }
            self.seen.insert(k);
        }
        out
    }

    fn update(&mut self, states: &[State], y: &[f32]) {
        let t = lowerings();
        self.inner.update(states, y);
        self.lowered += lowerings() - t;
        for s in states {
            let k = state_key(s);
            if self.samples.insert(k.clone()) && !self.round.contains(&k) {
                self.before += 1;
            }
            self.seen.insert(k);
        }
        self.round.clear();
    }
}

/// Counts the measurer's lowerings.
struct CountingMeasurer {
    inner: HarnessMeasurer,
    lowered: u64,
}

impl Measurer for CountingMeasurer {
    fn measure(&mut self, states: &[State]) -> Vec<Measurement> {
        let t = lowerings();
        let out = self.inner.measure(states);
        self.lowered += lowerings() - t;
        out
    }
}

fn main() {
    let mut trials = 192;
    let mut specs = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--trials" {
            trials = args
                .next()
                .and_then(|t| t.parse().ok())
                .expect("--trials N");
        } else {
            specs.push(a);
        }
    }
    for spec in specs {
        let mut options = TuneOptions::new(pinned_target());
        options.params = TuneParams {
            trials,
            seed: 1,
            ..TuneParams::default()
        };
        let job = TuneJob::new(options);
        let memo = match std::env::var("BUDGET") {
            Ok(b) => Lowerings::with_budget(b.parse().expect("BUDGET in bytes")),
            Err(_) => job.lowerings().clone(),
        };
        let w = tessel_workloads::lookup(&spec).expect("workload");
        let problem = job.problem(Arc::new(w.dag.clone())).expect("sketches");
        let mut o = MeasureOptions::with_threads(2);
        o.timing.repeat = 1;
        o.timing.number = 1;
        o.timing.warmup = 0;
        o.timing.min_repeat_ms = 0.0;
        let runner = InProcessRunner::new(o).expect("runner");
        let mut measurer = CountingMeasurer {
            inner: HarnessMeasurer::new(w.clone(), Box::new(runner), None)
                .expect("measurer")
                .lowerings(memo.clone()),
            lowered: 0,
        };
        let mut scorer = CountingScorer {
            inner: job.scorer(1).with_lowerings(memo.clone()),
            lowered: 0,
            seen: HashSet::new(),
            round: HashSet::new(),
            samples: HashSet::new(),
            before: 0,
        };
        let start = lowerings();
        let t = std::time::Instant::now();
        let result = job
            .tuner(&problem, 1)
            .lowerings(memo.clone())
            .run(&mut measurer, &mut scorer);
        println!(
            "{spec}: {} trials in {:.1} s; {} lowerings in all ({} by the scorer, {} by the \
             measurer), {} distinct states; the scorer lowered {} before the change; memo {:?}",
            result.trials,
            t.elapsed().as_secs_f64(),
            lowerings() - start,
            scorer.lowered,
            measurer.lowered,
            scorer.seen.len(),
            scorer.before,
            memo.stats()
        );
    }
}
