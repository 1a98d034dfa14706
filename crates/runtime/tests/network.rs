//! Whole networks built into modules and checked against the reference evaluator.
//!
//! Tolerance (one seeded input, seeded random weights): |got − want| ≤ 1e-4 + 1e-3·|want|
//! for tiny-cnn; the large networks use 1e-3 + 1e-2·|want| (their kernels sum in another
//! order than the reference, with FMA, over reductions of up to 4608 terms and 50+ layers).

use std::path::PathBuf;
use tessel_ir::target::{Isa, Target};
use tessel_ir::testing::check_close;
use tessel_measure::records::{Record, RecordKey, SCHEMA_VERSION};
use tessel_measure::{Candidate, MeasureOptions, PhaseTimes, Timing};
use tessel_runtime::{default_schedule, Module, ScheduleSource};
use tessel_workloads::networks::{self, Network, Weights};

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("tessel-runtime-{}-{name}", std::process::id()))
}

/// Builds `net` with `records`, runs it on one seeded input and compares with the
/// reference evaluator.
fn build_and_check(
    net: &Network,
    records: Option<&std::path::Path>,
    target: &Target,
    threads: usize,
    atol: f32,
    rtol: f32,
) -> Module {
    let weights = Weights::random(net, 11);
    let mut module = Module::build(net, &weights, records, target, threads).unwrap();
    let x = networks::random_inputs(net, 12);
    let refs: Vec<&[f32]> = x.iter().map(|v| v.as_slice()).collect();
    let got = module.run(&refs).unwrap();
    let want = networks::evaluate(net, &weights, &x).unwrap();
    check_close(&got, &want, atol, rtol).unwrap_or_else(|e| panic!("{}: {e}", net.name()));
    // A second run gives the same answer (the arena is reused, nothing stale leaks in).
    assert_eq!(module.run(&refs).unwrap(), got);
    module
}

/// One record per task of tiny-cnn, as `tessel tune-network` writes them, for a program
/// that is not the default one (the second-ranked default state, when there is one), with
/// a made-up time of `(k + 1)` µs for task `k`.
fn tiny_cnn_records(net: &Network, threads: usize, isa: Isa) -> Vec<Record> {
    let target = Target::with_isa(isa);
    let mut options = MeasureOptions::default();
    options.codegen.threads = threads;
    options.codegen.isa = isa;
    let host = tessel_measure::Target::host();
    networks::extract_tasks(net)
        .unwrap()
        .iter()
        .enumerate()
        .map(|(k, t)| {
            let dag = std::sync::Arc::new(t.dag.clone());
            let states = default_schedule(&dag, &target, threads);
            let state = &states[1.min(states.len() - 1)];
            let candidate = Candidate {
                workload: format!("{}@{}/{}", net.name(), net.batch(), t.name),
                steps: state.steps().to_vec(),
                sketch: state.sketch_id(),
                fault: None,
                lowered: None,
            };
            let key = RecordKey::new(&candidate, &options, &host);
            assert_eq!(key.workload_key, t.workload_key());
            let s = (k + 1) as f64 * 1e-6;
            Record {
                v: SCHEMA_VERSION,
                key,
                steps: candidate.steps.clone(),
                sketch: candidate.sketch,
                timing: Some(Timing {
                    costs: vec![s],
                    number: 1,
                    median: s,
                    min: s,
                    cv: 0.0,
                    contention: Vec::new(),
                    retaken: 0,
                }),
                error: None,
                phases: PhaseTimes::default(),
                timestamp: 0.0,
                confirmed: false,
            }
        })
        .collect()
}

fn write(path: &std::path::Path, records: &[Record], extra: &str) {
    let mut text: String = records.iter().map(|r| r.to_line() + "\n").collect();
    text.push_str(extra);
    std::fs::write(path, text).unwrap();
}

#[test]
fn tiny_cnn_without_records_runs_defaults_and_matches_the_reference() {
    let net = networks::tiny_cnn(1).unwrap();
    let target = Target::native();
    let module = build_and_check(&net, None, &target, 1, 1e-4, 1e-3);
    let report = module.report();
    assert_eq!(report.tasks.len(), 6);
    for t in &report.tasks {
        match &t.source {
            ScheduleSource::Default { why, .. } => assert_eq!(why, "no records file"),
            other => panic!("{}: {other:?}", t.name),
        }
    }
    // A task with a tensorized sketch runs micro-kernels when the target has them (the
    // 1×1 conv to 32 channels has one on every ISA with micro-kernels; the 8-channel 3×3
    // convs have none on AVX-512, whose kernels are 16 columns wide).
    if target.isa.has_micro_kernels() {
        let conv = report
            .tasks
            .iter()
            .find(|t| t.name.starts_with("c2d") && t.name.contains("co=32"))
            .unwrap();
        assert!(conv.micro_kernel_calls > 0, "{conv:?}");
        assert!(matches!(
            conv.source,
            ScheduleSource::Default {
                tensorized: true,
                ..
            }
        ));
    }
    module.memory_plan().check().unwrap();
    assert!(
        report.arena_bytes < report.intermediates_bytes,
        "{report:?}"
    );
}

#[test]
fn tiny_cnn_with_records_runs_them_and_refuses_other_targets_and_threads() {
    let net = networks::tiny_cnn(1).unwrap();
    let isa = Target::native().isa;
    let path = temp_path("tiny.jsonl");
    let records = tiny_cnn_records(&net, 1, isa);
    write(&path, &records, "{\"v\":1,\"key\": this line is corrupt\n");

    // Same target and threads: every task runs its record.
    let module = build_and_check(&net, Some(&path), &Target::with_isa(isa), 1, 1e-4, 1e-3);
    let report = module.report();
    assert_eq!(report.fallbacks().count(), 0, "{report:#?}");
    for (k, t) in report.tasks.iter().enumerate() {
        assert_eq!(
            t.record_seconds(),
            Some((k + 1) as f64 * 1e-6),
            "{}",
            t.name
        );
    }
    let (estimate, n) = report.estimate();
    assert_eq!(n, 6);
    let want: f64 = report
        .tasks
        .iter()
        .enumerate()
        .map(|(k, t)| t.weight as f64 * (k + 1) as f64 * 1e-6)
        .sum();
    assert!((estimate - want).abs() < 1e-12);
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert!(
        report.warnings[0].contains("line 7 skipped"),
        "{:?}",
        report.warnings
    );

    // Two threads: the records (measured with one) are refused, defaults run instead.
    let module = build_and_check(&net, Some(&path), &Target::with_isa(isa), 2, 1e-4, 1e-3);
    for t in &module.report().tasks {
        let ScheduleSource::Default { why, .. } = &t.source else {
            panic!("{}: {:?}", t.name, t.source)
        };
        assert_eq!(
            why,
            "no usable record (1 measured with 1 threads, the module runs 2)"
        );
    }

    // Another target (generic code): refused with the ISA named.
    let module = build_and_check(
        &net,
        Some(&path),
        &Target::with_isa(Isa::Generic),
        1,
        1e-4,
        1e-3,
    );
    let t = &module.report().tasks[0];
    assert!(t.fell_back());
    assert_eq!(
        t.refused,
        vec![(
            format!("measured for target {isa}, the module is built for generic"),
            1
        )]
    );

    // Another codegen revision: refused.
    let mut old = records.clone();
    for r in &mut old {
        r.key.codegen.revision = tessel_codegen::REVISION - 1;
    }
    write(&path, &old, "");
    let weights = Weights::random(&net, 1);
    let module = Module::build(&net, &weights, Some(&path), &Target::with_isa(isa), 1).unwrap();
    let t = &module.report().tasks[0];
    assert!(t.fell_back());
    assert!(
        t.refused[0].0.contains("codegen revision"),
        "{:?}",
        t.refused
    );
    std::fs::remove_file(&path).ok();

    // A missing records file is an error that names it.
    let err = Module::build(&net, &weights, Some(&path), &Target::with_isa(isa), 1)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot read records file") && err.contains("tiny.jsonl"),
        "{err}"
    );
}

#[test]
fn records_measured_as_a_network_places_operands_win_over_warm_ones() {
    let net = networks::tiny_cnn(1).unwrap();
    let isa = Target::native().isa;
    let path = temp_path("mixed.jsonl");
    // Every task twice: a warm reading of (k + 1) µs and a placed one ten times slower, as a
    // file holds them after a `tune` and a `tune-network` of the same network.
    let warm = tiny_cnn_records(&net, 1, isa);
    let mut placed = warm.clone();
    for r in &mut placed {
        r.key.timing.weights = tessel_measure::options::Residence::Shared;
        r.key.timing.activations = tessel_measure::options::Residence::Memory;
        let t = r.timing.as_mut().unwrap();
        t.median *= 10.0;
        t.min *= 10.0;
        t.costs.iter_mut().for_each(|c| *c *= 10.0);
    }
    write(&path, &[warm.clone(), placed].concat(), "");
    let module = build_and_check(&net, Some(&path), &Target::with_isa(isa), 1, 1e-4, 1e-3);
    for (k, t) in module.report().tasks.iter().enumerate() {
        let seconds = t.record_seconds().expect("a record");
        assert!(
            (seconds - (k + 1) as f64 * 1e-5).abs() < 1e-12,
            "{}: {seconds}",
            t.name
        );
        assert_eq!(
            t.refused,
            vec![(tessel_runtime::WARM_SET_ASIDE.to_string(), 1)],
            "{}",
            t.name
        );
    }
    // Warm records alone are used as before.
    write(&path, &warm, "");
    let module = build_and_check(&net, Some(&path), &Target::with_isa(isa), 1, 1e-4, 1e-3);
    let t = &module.report().tasks[0];
    assert_eq!((t.record_seconds(), t.refused.len()), (Some(1e-6), 0));
    std::fs::remove_file(&path).ok();
}

#[test]
fn launches_timed_alone_leave_the_inference_right() {
    // Two threads: the kernels share the pool, and shared kernels (one per task when it
    // packs no weights) run several launches.
    let net = networks::tiny_cnn(1).unwrap();
    let weights = Weights::random(&net, 5);
    let mut module = Module::build(&net, &weights, None, &Target::native(), 2).unwrap();
    let x = networks::random_inputs(&net, 6);
    let refs: Vec<&[f32]> = x.iter().map(|v| v.as_slice()).collect();
    let want = networks::evaluate(&net, &weights, &x).unwrap();
    let mut outs: Vec<Vec<f32>> = module.outputs().iter().map(|o| vec![0.0; o.len]).collect();
    let mut o: Vec<&mut [f32]> = outs.iter_mut().map(|v| v.as_mut_slice()).collect();
    let alone = module.profile_alone_timings(&refs, &mut o, 3).unwrap();
    assert_eq!(alone.len(), module.report().launches);
    for t in &alone {
        assert!(t.median > std::time::Duration::ZERO, "{t:?}");
        // Three uncontended calls, or the retakes ran out (then every call was contended).
        assert!(
            t.timed == 3 || t.contended > tessel_runtime::ALONE_RETAKES * 3,
            "{t:?}"
        );
    }
    let err = module
        .profile_alone(&[], &mut o, 3)
        .unwrap_err()
        .to_string();
    assert_eq!(err, "the network has 1 inputs, got 0");
    // Every launch ran in order, several times each: the outputs are the inference's.
    check_close(&outs, &want, 1e-4, 1e-3).unwrap();
}

#[test]
fn run_checks_its_inputs_and_missing_weights_are_named() {
    let net = networks::tiny_cnn(1).unwrap();
    let weights = Weights::random(&net, 1);
    let mut module = Module::build(&net, &weights, None, &Target::native(), 1).unwrap();
    let err = module.run(&[]).unwrap_err().to_string();
    assert_eq!(err, "the network has 1 inputs, got 0");
    let err = module.run(&[&[1.0, 2.0]]).unwrap_err().to_string();
    assert!(
        err.contains("input `input`") && err.contains("got 2"),
        "{err}"
    );
    let err = Module::build(&net, &Weights::new(), None, &Target::native(), 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("has no weight"), "{err}");
}

#[test]
fn resnet50_builds_with_defaults_plans_memory_and_matches_the_reference() {
    let net = networks::resnet50(1).unwrap();
    let module = build_and_check(&net, None, &Target::native(), 2, 1e-3, 1e-2);
    let report = module.report();
    assert_eq!(report.tasks.len(), 27);
    assert_eq!(report.launches, networks::partition(&net).len());
    module.memory_plan().check().unwrap();
    assert!(
        report.arena_bytes < report.intermediates_bytes,
        "arena {} B, intermediates {} B",
        report.arena_bytes,
        report.intermediates_bytes
    );
}

#[test]
fn mobilenet_v2_builds_with_defaults_and_matches_the_reference() {
    let net = networks::mobilenet_v2(1).unwrap();
    let module = build_and_check(&net, None, &Target::native(), 2, 1e-3, 1e-2);
    module.memory_plan().check().unwrap();
}

#[test]
fn bert_base_builds_with_defaults_and_matches_the_reference() {
    let net = networks::lookup("bert-base", 1).unwrap();
    let module = build_and_check(&net, None, &Target::native(), 2, 1e-3, 1e-2);
    let report = module.report();
    // 12 encoder layers of 11 subgraphs each, 9 distinct tasks.
    assert_eq!((report.tasks.len(), report.launches), (9, 132));
    assert!(report.arena_bytes < report.intermediates_bytes);
}
