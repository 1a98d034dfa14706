//! The final confirmation (`tessel_search::confirm`): a search's fastest programs measured
//! again with a fresh runner decide the best the search reports, a program that fails its
//! confirmation loses its place, and the confirmed records are what `records best` and a
//! resumed search trust.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use tessel_ir::State;
use tessel_measure::records::{best_per_workload, read_records};
use tessel_measure::{
    Candidate, ErrorClass, MeasureOptions, MeasureResult, PhaseTimes, RecordWriter, Runner, Timing,
};
use tessel_search::confirm::{confirm_leaders, FinalConfirm};
use tessel_search::evolution::state_key;
use tessel_search::harness::resume_records;
use tessel_workloads::Workload;

const SPEC: &str = "gmm:b=1,n=16,m=16,k=16";

/// A deterministic runner: each program takes the time the table gives its step log (ms,
/// times `scale`), or fails with a wrong answer when it is marked `None`; it remembers the
/// order of each batch.
struct TableRunner {
    options: MeasureOptions,
    table: HashMap<String, Option<f64>>,
    /// Every time read × this (a worker that reads slower or faster than another).
    scale: f64,
    batches: Vec<Vec<String>>,
}

impl Runner for TableRunner {
    fn measure(&mut self, batch: &[Candidate]) -> Vec<MeasureResult> {
        self.batches
            .push(batch.iter().map(|c| steps_key(&c.steps)).collect());
        batch
            .iter()
            .map(
                |c| match self.table.get(&steps_key(&c.steps)).copied().flatten() {
                    Some(ms) => MeasureResult {
                        timing: Timing::from_costs(vec![ms * self.scale * 1e-3; 3], 1),
                        error: None,
                        phases: PhaseTimes::default(),
                    },
                    None => MeasureResult::error(ErrorClass::WrongAnswer, "differs at [3]"),
                },
            )
            .collect()
    }
    fn options(&self) -> &MeasureOptions {
        &self.options
    }
    fn name(&self) -> &'static str {
        "table"
    }
}

/// Which runner measured each batch, and the batch's programs (step logs), in order.
type BatchLog = Arc<std::sync::Mutex<Vec<(usize, Vec<String>)>>>;

/// A runner that logs which runner measured each batch, and the batch's programs.
struct Logged {
    inner: TableRunner,
    id: usize,
    log: BatchLog,
}

impl Runner for Logged {
    fn measure(&mut self, batch: &[Candidate]) -> Vec<MeasureResult> {
        let keys = batch.iter().map(|c| steps_key(&c.steps)).collect();
        self.log.lock().expect("log").push((self.id, keys));
        self.inner.measure(batch)
    }
    fn options(&self) -> &MeasureOptions {
        self.inner.options()
    }
    fn name(&self) -> &'static str {
        "logged"
    }
}

fn steps_key(steps: &[tessel_ir::Step]) -> String {
    serde_json::to_string(steps).expect("steps serialize")
}

/// Four distinct programs of the workload (random sketch samples).
fn programs(w: &Workload) -> Vec<State> {
    let (_, sketches, hw) = common::problem_parts(&w.spec());
    let mut rng = tessel_ir::rng::seeded(7);
    let mut out: Vec<State> = Vec::new();
    for k in 0..200 {
        if let Some(s) = tessel_sketch::sample_initial(&sketches[k % sketches.len()], &hw, &mut rng)
        {
            if out.iter().all(|o| state_key(o) != state_key(&s)) {
                out.push(s);
            }
        }
        if out.len() == 4 {
            break;
        }
    }
    assert_eq!(out.len(), 4, "four distinct programs");
    out
}

#[test]
fn the_figure_reported_is_measured_after_the_choice_and_a_failed_program_loses_its_place() {
    let w = tessel_workloads::lookup(SPEC).expect("workload");
    let p = programs(&w);
    // The search read p0 fastest (a lucky reading), then p1, p2, p3. The ranking workers
    // read p0 at 3 ms, p1 fails (wrong answer), p2 2 ms, p3 2.5 ms. The reporting workers
    // read everything 10 % slower, and p2 fails there.
    let leaders = vec![
        (p[0].clone(), 1.0e-3),
        (p[1].clone(), 1.1e-3),
        (p[2].clone(), 1.2e-3),
        (p[3].clone(), 1.3e-3),
    ];
    let table = |times: [Option<f64>; 4]| -> HashMap<String, Option<f64>> {
        times
            .into_iter()
            .enumerate()
            .map(|(i, t)| (steps_key(p[i].steps()), t))
            .collect()
    };
    let ranking = table([Some(3.0), None, Some(2.0), Some(2.5)]);
    let reporting = table([Some(3.0), None, None, Some(2.5)]);
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let how = FinalConfirm {
        top: 4,
        rounds: 3,
        reporting: 3,
    };
    assert_eq!(how.runners(), 6);
    let mut runners: Vec<Box<dyn Runner>> = (0..how.runners())
        .map(|id| {
            let (table, scale) = if id < 3 {
                (ranking.clone(), 1.0)
            } else {
                (reporting.clone(), 1.1)
            };
            Box::new(Logged {
                inner: TableRunner {
                    options: MeasureOptions::with_threads(1),
                    table,
                    scale,
                    batches: Vec::new(),
                },
                id,
                log: log.clone(),
            }) as Box<dyn Runner>
        })
        .collect();
    let dir = std::env::temp_dir().join(format!("tessel-final-confirm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("records.jsonl");
    let _ = std::fs::remove_file(&path);
    let mut writer = RecordWriter::open(&path).expect("opens");
    let c = confirm_leaders(&w, &leaders, &mut runners, how, Some(&mut writer));
    drop(writer);

    // Three interleaved ranking rounds of all four, each starting one place later, each on
    // its own runner (a fresh worker each, in the driver); then the winner p2 alone on the
    // three reporting runners, where it fails; then p3 there.
    let batches = log.lock().expect("log").clone();
    assert_eq!(
        batches.iter().map(|b| b.0).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4, 5, 3, 4, 5]
    );
    assert!(batches[..3].iter().all(|b| b.1.len() == 4));
    assert_eq!(batches[1].1[0], batches[0].1[1]);
    assert_eq!(batches[2].1[0], batches[0].1[2]);
    assert!(batches[3..6]
        .iter()
        .all(|b| b.1 == vec![steps_key(p[2].steps())]));
    assert!(batches[6..]
        .iter()
        .all(|b| b.1 == vec![steps_key(p[3].steps())]));

    // The ranking: p2, p3, p0, then the failed p1.
    let order: Vec<String> = c.programs.iter().map(|x| state_key(&x.state)).collect();
    assert_eq!(
        order,
        vec![
            state_key(&p[2]),
            state_key(&p[3]),
            state_key(&p[0]),
            state_key(&p[1])
        ]
    );
    assert_eq!(c.programs[0].seconds, Some(2.0e-3));
    let failed = &c.programs[3];
    assert_eq!(failed.seconds, None);
    assert_eq!(
        failed.error.as_ref().map(|e| e.class),
        Some(ErrorClass::WrongAnswer),
        "{failed:?}"
    );
    assert_eq!(c.failed(), 1);

    // Reported: p3 with the reporting workers' figure, not its ranking figure.
    let best = c.best().expect("a best");
    assert_eq!(state_key(&best.state), state_key(&p[3]));
    let want = 2.5 * 1.1 * 1e-3;
    assert_eq!(best.seconds, Some(want));
    assert_eq!(best.search_seconds, 1.3e-3);
    assert_eq!(best.rounds, vec![Some(want); 3]);

    // Records: one confirmed record, the reported figure, which `records best` gives.
    let log = read_records(&path).expect("reads");
    assert_eq!(log.records.len(), 1);
    assert!(log.records[0].confirmed);
    let best = best_per_workload(&log.records);
    assert_eq!(best[0].cost(), Some(want));
    assert_eq!(steps_key(&best[0].steps), steps_key(p[3].steps()));
    assert_eq!(best[0].timing.as_ref().map(|t| t.costs.len()), Some(9));
}

#[test]
fn a_resumed_search_takes_the_confirmed_time_and_records_best_prefers_it() {
    let w = tessel_workloads::lookup(SPEC).expect("workload");
    let dag = Arc::new(w.dag.clone());
    let p = programs(&w);
    let options = MeasureOptions::with_threads(1);
    let dir = std::env::temp_dir().join(format!("tessel-final-resume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("records.jsonl");
    let _ = std::fs::remove_file(&path);
    // The search measured p0 at 1 ms and p1 at 1.5 ms ...
    let mut search = TableRunner {
        options: options.clone(),
        scale: 1.0,
        table: [(0usize, Some(1.0)), (1, Some(1.5))]
            .into_iter()
            .map(|(i, t)| (steps_key(p[i].steps()), t))
            .collect(),
        batches: Vec::new(),
    };
    let candidates: Vec<Candidate> = p[..2]
        .iter()
        .map(|s| Candidate::from_state(&w, s))
        .collect();
    let results = search.measure(&candidates);
    let mut writer = RecordWriter::open(&path).expect("opens");
    let target = tessel_measure::Target::host();
    writer
        .append(&tessel_measure::Record::batch(
            &candidates,
            &results,
            &options,
            &target,
        ))
        .expect("writes");
    // ... and its confirmation ranked p1 (1.6 ms) before p0 (1.8 ms) and reported p1.
    let fresh = TableRunner {
        options: options.clone(),
        scale: 1.0,
        table: [(0usize, Some(1.8)), (1, Some(1.6))]
            .into_iter()
            .map(|(i, t)| (steps_key(p[i].steps()), t))
            .collect(),
        batches: Vec::new(),
    };
    let leaders = vec![(p[0].clone(), 1.0e-3), (p[1].clone(), 1.5e-3)];
    let mut runners: Vec<Box<dyn Runner>> = vec![Box::new(fresh)];
    let c = confirm_leaders(
        &w,
        &leaders,
        &mut runners,
        FinalConfirm::default(),
        Some(&mut writer),
    );
    drop(writer);
    assert_eq!(c.best().and_then(|b| b.seconds), Some(1.6e-3));

    // Two search records and the reported program's confirmed one.
    let log = read_records(&path).expect("reads");
    assert_eq!(log.records.len(), 3);
    let best = best_per_workload(&log.records);
    assert_eq!(best[0].cost(), Some(1.6e-3));
    assert_eq!(steps_key(&best[0].steps), steps_key(p[1].steps()));

    // Resuming: each program once; p1 with its confirmed time, p0 (not reported) with the
    // search's.
    let resumed = resume_records(&path, &w, &dag, &options).expect("reads");
    let mut got: Vec<(String, Option<f64>)> = resumed
        .states
        .iter()
        .map(|(s, t)| (state_key(s), *t))
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    let mut want = vec![
        (state_key(&p[0]), Some(1.0e-3)),
        (state_key(&p[1]), Some(1.6 * 1e-3)),
    ];
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got, want);
}
