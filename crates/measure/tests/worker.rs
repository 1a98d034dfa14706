//! Runners against real worker processes (`tessel-measure-worker`): crashes, hangs, wrong
//! answers and bad schedules are recorded as errors and the batch goes on.

use std::sync::Arc;
use std::time::Duration;
use tessel_ir::{rng, testing, State, Step};
use tessel_measure::{
    Candidate, ErrorClass, Fault, InProcessRunner, LocalWorkerRunner, MeasureOptions,
    MeasureResult, Runner, WorkerCommand,
};

const SPEC: &str = "gmm:b=1,n=64,m=64,k=64";

/// One kernel thread: tests run concurrently on a small machine, where a parallel loop nested
/// in a serial one waits for descheduled pool threads and gets very slow.
fn options() -> MeasureOptions {
    let mut o = MeasureOptions::with_threads(1);
    o.timing.repeat = 3;
    o.timing.min_repeat_ms = 0.5;
    o.run_timeout_ms = 1500;
    o
}

fn worker(options: MeasureOptions) -> LocalWorkerRunner {
    LocalWorkerRunner::new(
        WorkerCommand::new(env!("CARGO_BIN_EXE_tessel-measure-worker"), &[]),
        options,
    )
}

/// A random legal schedule of the small matmul.
fn schedule(seed: u64) -> Vec<Step> {
    let w = tessel_workloads::lookup(SPEC).unwrap();
    let dag = Arc::new(w.dag);
    testing::random_state(&dag, &mut rng::seeded(seed), &testing::Limits::default())
        .steps()
        .to_vec()
}

fn good(seed: u64) -> Candidate {
    Candidate::new(SPEC, schedule(seed))
}

fn assert_ok(r: &MeasureResult, what: &str) {
    assert!(r.is_ok(), "{what}: {:?}", r.error);
    let t = r.timing.as_ref().expect("timed");
    assert_eq!(t.costs.len(), 3, "{what}");
    assert!(
        t.median > 0.0 && t.min <= t.median && t.cv >= 0.0,
        "{what}: {t:?}"
    );
}

fn class(r: &MeasureResult) -> Option<ErrorClass> {
    r.error_class()
}

#[test]
fn crash_and_hang_cost_one_candidate_each_and_the_batch_goes_on() {
    let mut runner = worker(options());
    let batch = vec![
        good(1),
        good(2).with_fault(Fault::Abort),
        good(3),
        good(4).with_fault(Fault::Hang),
        good(5),
    ];
    let results = runner.measure(&batch);
    assert_eq!(results.len(), 5);
    assert_ok(&results[0], "first");
    assert_eq!(
        class(&results[1]),
        Some(ErrorClass::RuntimeCrash),
        "{:?}",
        results[1]
    );
    let crash = &results[1].error.as_ref().unwrap().message;
    assert!(
        crash.contains("signal 6") && crash.contains("test fault"),
        "{crash}"
    );
    assert_ok(&results[2], "after the crash");
    assert_eq!(
        class(&results[3]),
        Some(ErrorClass::Timeout),
        "{:?}",
        results[3]
    );
    assert_ok(&results[4], "after the hang");
    let stats = runner.stats();
    assert_eq!((stats.started, stats.lost), (3, 2), "{stats:?}");
    // The restarted worker keeps serving.
    let again = runner.measure(&[good(6)]);
    assert_ok(&again[0], "next batch");
    assert_eq!(runner.stats().started, 3);
}

#[test]
fn a_crash_while_building_is_found_by_retrying_one_by_one() {
    let mut runner = worker(options());
    let batch = vec![good(7), good(8).with_fault(Fault::AbortBuild), good(9)];
    let results = runner.measure(&batch);
    assert_ok(&results[0], "before");
    assert_eq!(
        class(&results[1]),
        Some(ErrorClass::Compile),
        "{:?}",
        results[1]
    );
    assert!(results[1]
        .error
        .as_ref()
        .unwrap()
        .message
        .contains("building"));
    assert_ok(&results[2], "after");
}

#[test]
fn wrong_answers_and_panics_are_caught_in_the_worker_and_in_process() {
    let batch = vec![
        good(10).with_fault(Fault::WrongAnswer),
        good(11).with_fault(Fault::Panic),
        good(12),
    ];
    let mut w = worker(options());
    let mut p = InProcessRunner::new(options()).unwrap();
    for (name, results) in [
        ("worker", w.measure(&batch)),
        ("in-process", p.measure(&batch)),
    ] {
        let wrong = &results[0];
        assert_eq!(
            class(wrong),
            Some(ErrorClass::WrongAnswer),
            "{name}: {wrong:?}"
        );
        assert!(wrong.timing.is_none(), "a wrong answer has no costs");
        assert!(
            wrong.error.as_ref().unwrap().message.contains("expected"),
            "{name}"
        );
        assert_eq!(class(&results[1]), Some(ErrorClass::RuntimeCrash), "{name}");
        assert!(results[1]
            .error
            .as_ref()
            .unwrap()
            .message
            .contains("panicked"));
        assert_ok(&results[2], name);
    }
    assert_eq!(w.stats().lost, 0, "a caught panic does not cost the worker");
}

#[test]
fn bad_workloads_steps_and_sketches_are_classified() {
    let w = tessel_workloads::lookup(SPEC).unwrap();
    let dag = Arc::new(w.dag.clone());
    // A sketch: a split whose lengths are still holes cannot be lowered.
    let mut sketch = State::new(dag.clone());
    sketch
        .apply(Step::Split {
            stage: 2,
            iter: 0,
            extent: None,
            lengths: vec![None],
        })
        .unwrap();
    let illegal: Vec<Step> = serde_json::from_str(
        r#"[{"step":"split","stage":9,"iter":0,"extent":null,"lengths":[4]}]"#,
    )
    .unwrap();
    let batch = vec![
        Candidate::new("gmm:b=1,n=64", vec![]),
        Candidate::new(SPEC, illegal),
        Candidate::new(SPEC, sketch.steps().to_vec()),
        Candidate::new("gmm-1", vec![]),
    ];
    let mut runner = worker(options());
    let results = runner.measure(&batch);
    assert_eq!(
        class(&results[0]),
        Some(ErrorClass::InvalidSchedule),
        "{:?}",
        results[0]
    );
    assert_eq!(
        class(&results[1]),
        Some(ErrorClass::InvalidSchedule),
        "{:?}",
        results[1]
    );
    assert_eq!(
        class(&results[2]),
        Some(ErrorClass::Lowering),
        "{:?}",
        results[2]
    );
    assert_ok(&results[3], "a registry name with no steps");
    assert_eq!(runner.stats().lost, 0);
}

#[test]
fn random_schedules_verify_on_two_threads_and_ping_is_fast() {
    let mut opts = options();
    opts.codegen.threads = 2;
    opts.run_timeout_ms = 20_000;
    let mut runner = worker(opts);
    let batch: Vec<Candidate> = (20..26).map(good).collect();
    for (k, r) in runner.measure(&batch).iter().enumerate() {
        assert_ok(r, &format!("schedule {k}"));
        assert!(r.phases.compile_ms > 0.0 && r.phases.total_ms >= r.phases.run_ms);
    }
    let rtt = (0..20).map(|_| runner.ping().unwrap()).min().unwrap();
    assert!(rtt < Duration::from_millis(50), "{rtt:?}");
    assert_eq!(runner.target().arch, std::env::consts::ARCH);
}

#[test]
fn a_worker_that_cannot_start_loses_every_candidate() {
    let mut runner = LocalWorkerRunner::new(
        WorkerCommand::new("/nonexistent/tessel-worker", &[]),
        options(),
    );
    let results = runner.measure(&[good(1), good(2)]);
    assert!(results
        .iter()
        .all(|r| class(r) == Some(ErrorClass::WorkerLost)));
    assert!(results[0]
        .error
        .as_ref()
        .unwrap()
        .message
        .contains("cannot start"));
}

/// The reference output is computed before a candidate counts as running (so that the run
/// timeout covers the kernel alone), announced once per workload and worker.
#[test]
fn the_reference_is_prepared_before_the_first_candidate_runs_and_only_once() {
    use tessel_measure::protocol::{decode, encode, Request, Response};
    let request = |id| Request::Measure {
        id,
        options: options(),
        candidates: vec![good(1), good(2)],
    };
    let input = format!("{}\n{}\n", encode(&request(1)), encode(&request(2)));
    let mut output = Vec::new();
    tessel_measure::worker::serve(input.as_bytes(), &mut output).unwrap();
    let events: Vec<(u64, &str, usize)> = String::from_utf8(output)
        .unwrap()
        .lines()
        .filter_map(|l| match decode::<Response>(l).unwrap() {
            Response::Preparing { id, index } => Some((id, "preparing", index)),
            Response::Running { id, index } => Some((id, "running", index)),
            _ => None,
        })
        .collect();
    assert_eq!(
        events,
        vec![
            (1, "preparing", 0),
            (1, "running", 0),
            (1, "running", 1),
            (2, "running", 0),
            (2, "running", 1),
        ]
    );
}
