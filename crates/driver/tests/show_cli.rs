//! `tessel show`: the best program of a records file as text.

mod common;

use std::sync::Arc;
use tessel_measure::records::{Record, RecordKey, SCHEMA_VERSION};
use tessel_measure::{Candidate, MeasureOptions, PhaseTimes, Timing};

fn record(workload: &str, state: &tessel_ir::State, seconds: f64) -> Record {
    let candidate = Candidate {
        workload: workload.to_string(),
        steps: state.steps().to_vec(),
        sketch: state.sketch_id(),
        fault: None,
        lowered: None,
    };
    let key = RecordKey::new(
        &candidate,
        &MeasureOptions::default(),
        &tessel_measure::Target::host(),
    );
    Record {
        v: SCHEMA_VERSION,
        key,
        steps: candidate.steps,
        sketch: candidate.sketch,
        timing: Some(Timing {
            costs: vec![seconds],
            number: 1,
            median: seconds,
            min: seconds,
            cv: 0.0,
            contention: Vec::new(),
            retaken: 0,
        }),
        error: None,
        phases: PhaseTimes::default(),
        timestamp: 0.0,
        confirmed: false,
    }
}

#[test]
fn show_prints_the_best_programs_loop_nest_and_lists_every_task() {
    let spec = "gmm:b=1,n=64,m=64,k=64";
    let w = tessel_workloads::lookup(spec).expect("workload");
    let dag = Arc::new(w.dag.clone());
    let hw = tessel_sketch::HardwareParams::with_cores(2);
    let sketches = tessel_sketch::generate_sketches(&dag, &hw).expect("sketches");
    let mut rng = tessel_ir::rng::seeded(3);
    let states = tessel_sketch::sample_population(&sketches, 2, &hw, &mut rng);
    assert_eq!(states.len(), 2);
    // The second state is the faster record: it is the one shown.
    let lines: String = [
        record(spec, &states[0], 2e-3),
        record(spec, &states[1], 1e-3),
    ]
    .iter()
    .map(|r| r.to_line() + "\n")
    .collect();
    let path = std::env::temp_dir().join(format!("tessel-show-{}.jsonl", std::process::id()));
    std::fs::write(&path, lines + "not json\n").expect("write");
    let p = path.to_str().expect("utf-8");

    let text = common::tessel_stdout(&["show", p, "--workload", spec]);
    let nest = tessel_ir::lower::lower(&states[1])
        .expect("lowers")
        .to_string();
    let section = text
        .split("-- loop nest\n")
        .nth(1)
        .and_then(|s| s.split("-- micro-kernel calls").next())
        .expect("a loop nest section");
    assert_eq!(section.trim_end(), nest.trim_end());
    assert!(text.contains(states[1].steps_text().trim_end()), "{text}");
    assert!(
        text.contains("best of 2 records: median 1.0000 ms"),
        "{text}"
    );
    assert!(text.contains("warning: line 3 skipped"), "{text}");

    // The network form lists every task, with or without a record.
    let text = common::tessel_stdout(&["show", p, "--network", "tiny-cnn"]);
    for k in 0..6 {
        assert!(text.contains(&format!("== task {k}: ")), "{text}");
    }
    assert_eq!(
        text.matches("no successful record (0 records of it)")
            .count(),
        6
    );
    std::fs::remove_file(&path).ok();
}

#[test]
fn show_prints_the_masked_avx512_kernel_call_of_a_24_channel_convolution() {
    if !tessel_codegen::ukernel::available(tessel_ir::target::Isa::Avx512) {
        eprintln!("SKIPPED: this CPU has no AVX-512F, so no AVX-512 kernel call to show");
        return;
    }
    let spec = "c2d:n=1,h=4,w=14,ci=16,co=24,kernel=1,stride=1,pad=0";
    let w = tessel_workloads::lookup(spec).expect("workload");
    let dag = Arc::new(w.dag.clone());
    let hw = tessel_sketch::HardwareParams {
        isa: tessel_ir::target::Isa::Avx512,
        ..tessel_sketch::HardwareParams::with_cores(2)
    };
    let sketches = tessel_sketch::generate_sketches(&dag, &hw).expect("sketches");
    let mut rng = tessel_ir::rng::seeded(24);
    // A tensorized state: 24 columns have no 16-lane tile, so its tile is 8 or 24 wide.
    let state = sketches
        .iter()
        .filter(|s| tessel_sketch::rules::is_tensorized(&s.state))
        .find_map(|s| tessel_sketch::sample_initial(s, &hw, &mut rng))
        .expect("a tensorized sample");
    let mut r = record(spec, &state, 1e-3);
    r.key.codegen.isa = tessel_ir::target::Isa::Avx512;
    let path =
        std::env::temp_dir().join(format!("tessel-show-masked-{}.jsonl", std::process::id()));
    std::fs::write(&path, r.to_line() + "\n").expect("write");
    let text = common::tessel_stdout(&["show", path.to_str().expect("utf-8"), "--workload", spec]);
    std::fs::remove_file(&path).ok();
    assert!(text.contains("target avx512"), "{text}");
    let calls = text
        .split("-- micro-kernel calls\n")
        .nth(1)
        .expect("a micro-kernel section");
    let first = calls.lines().next().unwrap_or_default();
    assert!(
        first.contains(": Broadcast ")
            && (first.contains("x24 (blocks") || first.contains("x8 (blocks")),
        "{text}"
    );
}
