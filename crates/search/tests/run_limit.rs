//! The run-time limit adapts to the task: the first chunk of a task runs under the
//! runner's fixed timeout, later chunks under a multiple of the best time measured so far
//! (floor and ceiling kept); a candidate killed by the adaptive limit is recorded as a
//! timeout that names it, and reaches the search as a failure.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tessel_ir::{rng, testing, State};
use tessel_measure::{
    Candidate, ErrorClass, MeasureOptions, MeasureResult, PhaseTimes, Runner, Timing,
};
use tessel_search::harness::HarnessMeasurer;
use tessel_search::run_limit::RunLimit;
use tessel_search::tuner::Measurer;

const SPEC: &str = "gmm:b=1,n=16,m=16,k=16";

/// A runner that times every candidate at 1 ms, or, while `slow` is set, "runs" each for
/// 1 s per call (7 s in all) and times out when the timeout is below that. It logs the
/// timeouts it was given, one per `measure` call.
struct FakeRunner {
    options: MeasureOptions,
    timeouts: Arc<Mutex<Vec<u64>>>,
    slow: Arc<AtomicBool>,
}

impl Runner for FakeRunner {
    fn measure(&mut self, batch: &[Candidate]) -> Vec<MeasureResult> {
        let limit = self.options.run_timeout_ms;
        if let Ok(mut t) = self.timeouts.lock() {
            t.push(limit);
        }
        batch
            .iter()
            .map(|_| {
                let seconds = if self.slow.load(Ordering::SeqCst) {
                    1.0
                } else {
                    1e-3
                };
                if seconds * 7e3 > limit as f64 {
                    MeasureResult::error(
                        ErrorClass::Timeout,
                        format!("verifying and timing took more than {} s", limit / 1000),
                    )
                } else {
                    MeasureResult {
                        timing: Timing::from_costs(vec![seconds; 5], 1),
                        error: None,
                        phases: PhaseTimes::default(),
                    }
                }
            })
            .collect()
    }
    fn options(&self) -> &MeasureOptions {
        &self.options
    }
    fn name(&self) -> &'static str {
        "fake"
    }
    fn set_run_timeout_ms(&mut self, ms: u64) {
        self.options.run_timeout_ms = ms;
    }
}

fn states(n: usize) -> Vec<State> {
    let w = tessel_workloads::lookup(SPEC).expect("spec");
    let dag = Arc::new(w.dag);
    (0..n as u64)
        .map(|s| testing::random_state(&dag, &mut rng::seeded(s), &testing::Limits::default()))
        .collect()
}

type Log = Arc<Mutex<Vec<u64>>>;

fn measurer(limit: Option<RunLimit>) -> (HarnessMeasurer, Log, Arc<AtomicBool>) {
    let timeouts = Arc::new(Mutex::new(Vec::new()));
    let slow = Arc::new(AtomicBool::new(false));
    let runner = FakeRunner {
        options: MeasureOptions::with_threads(1),
        timeouts: timeouts.clone(),
        slow: slow.clone(),
    };
    let w = tessel_workloads::lookup(SPEC).expect("spec");
    let m = HarnessMeasurer::new(w, Box::new(runner), None)
        .expect("measurer")
        .run_limit(limit);
    (m, timeouts, slow)
}

#[test]
fn the_limit_drops_to_a_multiple_of_the_best_after_the_first_chunk() {
    let (mut m, timeouts, slow) = measurer(Some(RunLimit::default()));
    let all = states(5);
    let first = m.measure(&all[..4]);
    assert!(first.iter().all(|r| r.seconds.is_some()));
    slow.store(true, Ordering::SeqCst);
    let later = m.measure(&all[4..]);
    let t = timeouts.lock().expect("lock").clone();
    // The fixed 10 s first, then 50 × (2 × 1 ms + (5 repeats + 10 retakes) × 5 ms) = 3.85 s.
    assert_eq!(t, vec![10_000, 3_850]);
    assert_eq!(later[0].seconds, None, "the hopeless candidate failed");
    let message = later[0]
        .error
        .as_ref()
        .map_or(String::new(), |e| e.to_string());
    assert_eq!(
        later[0].error.as_ref().map(|e| e.class),
        Some(ErrorClass::Timeout)
    );
    assert!(
        message.contains("adaptive run-time limit: 3.85 s"),
        "{message}"
    );
    assert_eq!(m.cut_short, 1);
}

#[test]
fn without_the_adaptive_limit_the_fixed_timeout_stays() {
    let (mut m, timeouts, slow) = measurer(None);
    let all = states(5);
    m.measure(&all[..4]);
    slow.store(true, Ordering::SeqCst);
    let r = m.measure(&all[4..]);
    assert!(r[0].seconds.is_some(), "a 7 s run fits the fixed 10 s");
    assert!(timeouts.lock().expect("lock").iter().all(|&t| t == 10_000));
    assert_eq!(m.cut_short, 0);
}
