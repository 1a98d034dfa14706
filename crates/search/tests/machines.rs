//! Records carry the machine that measured each result: a runner that measures elsewhere
//! (a farm's workers) says so through `Runner::machines`, and the harness keys each record
//! by that machine, not by the tuner's.

use std::sync::Arc;
use tessel_ir::{State, Step};
use tessel_measure::records::read_records;
use tessel_measure::{
    Candidate, MeasureOptions, MeasureResult, PhaseTimes, Runner, Target, Timing,
};
use tessel_search::harness::HarnessMeasurer;
use tessel_search::tuner::Measurer;
use tessel_workloads as workloads;

/// Measures every candidate at 1 ms and says the odd ones ran on another machine.
struct HalfRemote {
    options: MeasureOptions,
    machines: Vec<Option<Target>>,
}

fn remote() -> Target {
    Target {
        cpu: "Remote Test CPU 9000".to_string(),
        ..Target::host()
    }
}

impl Runner for HalfRemote {
    fn measure(&mut self, batch: &[Candidate]) -> Vec<MeasureResult> {
        self.machines = (0..batch.len())
            .map(|i| (i % 2 == 1).then(remote))
            .collect();
        batch
            .iter()
            .map(|_| MeasureResult {
                timing: Timing::from_costs(vec![1e-3; 3], 1),
                error: None,
                phases: PhaseTimes::default(),
            })
            .collect()
    }

    fn options(&self) -> &MeasureOptions {
        &self.options
    }

    fn name(&self) -> &'static str {
        "half-remote"
    }

    fn machines(&self) -> &[Option<Target>] {
        &self.machines
    }
}

#[test]
fn each_record_is_keyed_by_the_machine_that_measured_it() {
    let w = workloads::lookup("gmm:b=1,n=16,m=16,k=16").expect("workload");
    let dag = Arc::new(w.dag.clone());
    let states: Vec<State> = [2, 4, 8, 16]
        .into_iter()
        .map(|factor| {
            let mut s = State::new(dag.clone());
            s.apply(Step::Split {
                stage: s.stages().len() - 1,
                iter: 0,
                extent: None,
                lengths: vec![Some(factor)],
            })
            .expect("split");
            s
        })
        .collect();
    let dir = std::env::temp_dir().join(format!("tessel-machines-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("records.jsonl");
    let _ = std::fs::remove_file(&path);
    let runner = HalfRemote {
        options: MeasureOptions::with_threads(1),
        machines: Vec::new(),
    };
    let mut m = HarnessMeasurer::new(w, Box::new(runner), Some(&path)).expect("measurer");
    let measured = m.measure(&states);
    assert!(measured.iter().all(|r| r.seconds.is_some()));

    let log = read_records(&path).expect("records");
    assert_eq!(log.records.len(), states.len());
    let cpus: Vec<&str> = log
        .records
        .iter()
        .map(|r| r.key.target.cpu.as_str())
        .collect();
    let host = Target::host().cpu;
    assert_eq!(
        cpus,
        [
            host.as_str(),
            "Remote Test CPU 9000",
            host.as_str(),
            "Remote Test CPU 9000"
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
