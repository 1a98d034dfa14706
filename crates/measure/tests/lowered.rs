//! Candidates that carry their loop nest (issue #27): the builder compiles the nest without
//! replaying and lowering the steps, in process and in a worker process (the nest crosses the
//! pipe in protocol version 2), and the kernel computes what the one built from the steps
//! does; a nest that does not fit the workload is refused with a clear error, and a worker of
//! the old protocol is refused at its hello.

use std::sync::Arc;
use tessel_ir::loop_nest::LoopNest;
use tessel_ir::{rng, testing, State};
use tessel_measure::builder::{build_nest, build_one};
use tessel_measure::{
    Candidate, CodegenSettings, ErrorClass, InProcessRunner, LocalWorkerRunner, MeasureOptions,
    Record, RecordKey, Runner, Target, WorkerCommand,
};

const SPEC: &str = "gmm:b=1,n=48,m=40,k=56";

fn options() -> MeasureOptions {
    let mut o = MeasureOptions::with_threads(1);
    o.timing.repeat = 1;
    o.timing.min_repeat_ms = 0.0;
    o.run_timeout_ms = 5000;
    o
}

/// Random legal schedules of the workload and their lowerings.
fn programs(spec: &str, n: u64) -> Vec<(State, Arc<LoopNest>)> {
    let dag = Arc::new(tessel_workloads::lookup(spec).expect("spec").dag);
    (0..n)
        .map(|seed| {
            let s =
                testing::random_state(&dag, &mut rng::seeded(seed), &testing::Limits::default());
            let nest = tessel_ir::lower::lower(&s).expect("lowers");
            (s, Arc::new(nest))
        })
        .collect()
}

fn with_and_without(spec: &str, n: u64) -> Vec<Candidate> {
    let mut batch = Vec::new();
    for (s, nest) in programs(spec, n) {
        let plain = Candidate::new(spec, s.steps().to_vec());
        batch.push(plain.clone().with_lowered(Some(nest)));
        batch.push(plain);
    }
    batch
}

#[test]
fn a_nest_builds_the_kernel_the_steps_build() {
    let w = tessel_workloads::lookup(SPEC).expect("spec");
    let dag = Arc::new(w.dag.clone());
    let codegen = CodegenSettings::default();
    let inputs: Vec<Vec<f32>> = dag
        .inputs()
        .iter()
        .enumerate()
        .map(|(k, &i)| {
            (0..dag.op(i).num_elements())
                .map(|j| ((j * 7 + k as i64 * 3) % 11) as f32 / 11.0 - 0.5)
                .collect()
        })
        .collect();
    let input_refs: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
    let run = |kernel: &tessel_codegen::Kernel| -> Vec<Vec<f32>> {
        let mut outs: Vec<Vec<f32>> = dag
            .outputs()
            .iter()
            .map(|&o| vec![f32::NAN; dag.op(o).num_elements() as usize])
            .collect();
        let mut refs: Vec<&mut [f32]> = outs.iter_mut().map(Vec::as_mut_slice).collect();
        kernel.run(&input_refs, &mut refs).expect("runs");
        outs
    };
    for (s, nest) in programs(SPEC, 4) {
        let from_steps = build_one(&codegen, &dag, s.steps());
        let from_nest = build_nest(&codegen, &dag, s.steps(), &nest);
        assert!(from_steps.lower_ms > 0.0);
        assert_eq!(from_nest.lower_ms, 0.0, "no lowering");
        let a = run(&from_steps.kernel.expect("builds"));
        let b = run(&from_nest.kernel.expect("builds"));
        let bits =
            |v: &[Vec<f32>]| -> Vec<u32> { v.iter().flatten().map(|x| x.to_bits()).collect() };
        assert_eq!(bits(&a), bits(&b), "the same kernel");
    }
}

#[test]
fn a_worker_compiles_the_nest_it_is_sent_and_verifies_it_like_the_steps() {
    let batch = with_and_without(SPEC, 3);
    let mut worker = LocalWorkerRunner::new(
        WorkerCommand::new(env!("CARGO_BIN_EXE_tessel-measure-worker"), &[]),
        options(),
    );
    let mut in_process = InProcessRunner::new(options()).expect("runner");
    for (runner, name) in [
        (&mut worker as &mut dyn Runner, "worker"),
        (&mut in_process as &mut dyn Runner, "in process"),
    ] {
        let results = runner.measure(&batch);
        assert_eq!(results.len(), batch.len());
        for (c, r) in batch.iter().zip(&results) {
            // Verified against the reference evaluator (the default options verify).
            assert!(r.is_ok(), "{name}: {:?}", r.error);
            if c.lowered.is_some() {
                assert_eq!(r.phases.lower_ms, 0.0, "{name}: compiled without lowering");
            } else {
                assert!(r.phases.lower_ms > 0.0, "{name}: lowered");
            }
        }
    }
}

#[test]
fn a_nest_of_another_workload_is_refused_clearly() {
    let (s, _) = programs(SPEC, 1).remove(0);
    let (_, other) = programs("gmm:b=1,n=48,m=40,k=64", 1).remove(0);
    let bad = Candidate::new(SPEC, s.steps().to_vec()).with_lowered(Some(other));
    let mut worker = LocalWorkerRunner::new(
        WorkerCommand::new(env!("CARGO_BIN_EXE_tessel-measure-worker"), &[]),
        options(),
    );
    let r = worker.measure(std::slice::from_ref(&bad)).remove(0);
    let e = r.error.expect("refused");
    assert_eq!(e.class, ErrorClass::InvalidSchedule, "{e:?}");
    assert!(
        e.message.contains(
            "parameter 0 (X, Input, 3072 elements) does not fit the workload's tensor X \
             (2688 elements)"
        ),
        "{}",
        e.message
    );
}

#[test]
fn a_worker_of_the_old_protocol_is_refused_at_its_hello() {
    let hello = r#"{"v":1,"type":"hello","protocol":1,"tessel":"0.1.0","pid":1,"target":{}}"#;
    let script = format!("echo '{hello}'; exec sleep 30");
    let mut runner = LocalWorkerRunner::new(WorkerCommand::new("sh", &["-c", &script]), options());
    let start = std::time::Instant::now();
    let e = runner.start().expect_err("refused");
    assert_eq!(e.to_string(), "worker: the worker speaks protocol 1, not 2");
    assert!(
        start.elapsed().as_secs() < 5,
        "at once, not after the hello timeout"
    );
}

#[test]
fn records_keep_the_steps_and_not_the_nest() {
    let batch = with_and_without(SPEC, 1);
    let (with, without) = (&batch[0], &batch[1]);
    assert!(with.lowered.is_some() && without.lowered.is_none());
    let result = InProcessRunner::new(options())
        .expect("runner")
        .measure(std::slice::from_ref(with))
        .remove(0);
    let line = |c: &Candidate| {
        let key = RecordKey::new(c, &options(), &Target::host());
        let mut r = Record::with_key(key, c, &result);
        r.timestamp = 0.0;
        serde_json::to_string(&r).expect("encodes")
    };
    let text = line(with);
    assert!(
        !text.contains("lowered") && !text.contains("nodes"),
        "{text}"
    );
    assert_eq!(text, line(without));
    // A record's candidate is measured again from its steps.
    let back: Record = serde_json::from_str(&text).expect("decodes");
    assert_eq!(back.candidate(), *without);
}

#[test]
fn a_malformed_nest_is_an_error_not_a_crash() {
    use tessel_ir::expr::UnOp;
    use tessel_ir::loop_nest::Node;
    let dag = Arc::new(tessel_workloads::lookup(SPEC).expect("spec").dag);
    let codegen = CodegenSettings::default();
    let (s, nest) = programs(SPEC, 1).remove(0);
    let refused = |nest: &LoopNest| {
        let e = build_nest(&codegen, &dag, s.steps(), nest)
            .kernel
            .expect_err("refused");
        assert_eq!(e.class, ErrorClass::InvalidSchedule, "{e:?}");
        e.message
    };
    let mut twice = (*nest).clone();
    twice.body.push(twice.body[0]);
    let m = refused(&twice);
    assert!(m.contains("is reachable twice"), "{m}");
    let mut deep = (*nest).clone();
    let mut e = deep.float(0.5);
    for _ in 0..1_200 {
        e = deep.node(Node::Unary(UnOp::Neg, e));
    }
    let m = refused(&deep);
    assert!(m.contains("levels deep (at most 1000)"), "{m}");
}
