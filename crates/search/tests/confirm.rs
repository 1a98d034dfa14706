//! Confirming readings near the best: a candidate whose first reading is within the margin
//! of the task's best (or beats it) is measured again and gets the median of all its
//! repeats, so one lucky reading does not become the search's best; the others are measured
//! once; a candidate that fails on a confirming measurement is failed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use tessel_ir::{State, Step};
use tessel_measure::records::read_records;
use tessel_measure::{
    Candidate, ErrorClass, MeasureError, MeasureOptions, MeasureResult, PhaseTimes, Runner, Timing,
};
use tessel_search::harness::{Confirm, HarnessMeasurer};
use tessel_search::tuner::Measurer;

/// Answers the `k`-th measurement of a candidate with its `k`-th scripted reading (five
/// equal costs, in milliseconds; a negative reading is a runtime crash) and counts calls.
struct Scripted {
    options: MeasureOptions,
    readings: HashMap<String, Vec<f64>>,
    calls: HashMap<String, usize>,
}

impl Runner for Scripted {
    fn measure(&mut self, batch: &[Candidate]) -> Vec<MeasureResult> {
        batch
            .iter()
            .map(|c| {
                let key = serde_json::to_string(&c.steps).expect("steps serialize");
                let k = self.calls.entry(key.clone()).or_default();
                let ms = self.readings.get(&key).and_then(|r| r.get(*k)).copied();
                *k += 1;
                match ms {
                    Some(ms) if ms >= 0.0 => MeasureResult {
                        timing: Timing::from_costs(vec![ms * 1e-3; 5], 1),
                        error: None,
                        phases: PhaseTimes::default(),
                    },
                    _ => MeasureResult::failed(
                        MeasureError::new(ErrorClass::RuntimeCrash, "scripted crash"),
                        PhaseTimes::default(),
                    ),
                }
            })
            .collect()
    }

    fn options(&self) -> &MeasureOptions {
        &self.options
    }

    fn name(&self) -> &'static str {
        "scripted"
    }
}

/// Five distinct states of a small matmul (the initial state and splits of its loops).
fn states() -> (tessel_workloads::Workload, Vec<State>) {
    let w = tessel_workloads::lookup("gmm:b=1,n=16,m=16,k=16").expect("workload");
    let dag = Arc::new(w.dag.clone());
    let mut out = vec![State::new(dag.clone())];
    for factor in [2, 4, 8, 16] {
        let mut s = State::new(dag.clone());
        s.apply(Step::Split {
            stage: s.stages().len() - 1,
            iter: 0,
            extent: None,
            lengths: vec![Some(factor)],
        })
        .expect("split");
        out.push(s);
    }
    (w, out)
}

fn temp_records(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tessel-confirm-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("records.jsonl");
    let _ = std::fs::remove_file(&path);
    path
}

fn ms(m: &tessel_search::tuner::Measurement) -> Option<f64> {
    m.seconds.map(|s| (s * 1e6).round() / 1e3)
}

#[test]
fn readings_near_the_best_get_the_median_of_their_confirmations() {
    let (w, s) = states();
    let script = [
        vec![1.0, 1.0, 1.0],     // s0: the first best, confirmed as it is
        vec![2.0],               // s1: far behind, measured once
        vec![0.95, 1.10, 1.08],  // s2: a lucky first reading, confirmed at 1.08
        vec![1.005, 1.02, 0.99], // s3: within 1 % of the best, median 1.005
        vec![0.9, -1.0, 0.9],    // s4: crashes on its first confirmation
    ];
    let readings: HashMap<String, Vec<f64>> = s
        .iter()
        .map(State::steps_json)
        .zip(script.iter().cloned())
        .collect();
    let runner = Scripted {
        options: MeasureOptions::with_threads(1),
        readings,
        calls: HashMap::new(),
    };
    let path = temp_records("near");
    let mut m = HarnessMeasurer::new(w, Box::new(runner), Some(&path))
        .expect("measurer")
        .confirming(Confirm::default());

    let first = m.measure(&[s[0].clone(), s[1].clone()]);
    assert_eq!(
        first.iter().map(ms).collect::<Vec<_>>(),
        [Some(1.0), Some(2.0)]
    );
    let second = m.measure(&[s[2].clone(), s[3].clone(), s[4].clone()]);
    assert_eq!(ms(&second[0]), Some(1.08), "the lucky reading is outvoted");
    assert_eq!(ms(&second[1]), Some(1.005));
    assert_eq!(second[2].seconds, None, "a crash on confirmation fails it");
    let error = second[2]
        .error
        .as_ref()
        .map_or(String::new(), |e| e.to_string());
    assert!(error.contains("on a confirming measurement"), "{error}");
    assert_eq!(
        m.confirmed, 4,
        "s0, s2, s3 and s4 were near the best; s1 was not"
    );
    assert_eq!(
        m.errors.get(&ErrorClass::RuntimeCrash),
        Some(&1),
        "{:?}",
        m.errors
    );

    // One record per candidate, holding the costs of every reading it had.
    let log = read_records(&path).expect("records");
    assert!(log.problems.is_empty(), "{:?}", log.problems);
    let costs: Vec<usize> = log
        .records
        .iter()
        .map(|r| r.timing.as_ref().map_or(0, |t| t.costs.len()))
        .collect();
    assert_eq!(costs, [15, 5, 15, 15, 0]);
    assert_eq!(
        log.records[2].cost().map(|c| (c * 1e6).round()),
        Some(1080.0)
    );
}

#[test]
fn without_confirmation_every_candidate_is_measured_once() {
    let (w, s) = states();
    let readings: HashMap<String, Vec<f64>> = s
        .iter()
        .map(State::steps_json)
        .zip([vec![1.0, 9.0], vec![0.95, 9.0]])
        .collect();
    let runner = Scripted {
        options: MeasureOptions::with_threads(1),
        readings,
        calls: HashMap::new(),
    };
    let mut m = HarnessMeasurer::new(w, Box::new(runner), None)
        .expect("measurer")
        .confirming(Confirm::OFF);
    let got = m.measure(&[s[0].clone(), s[1].clone()]);
    assert_eq!(
        got.iter().map(ms).collect::<Vec<_>>(),
        [Some(1.0), Some(0.95)]
    );
    assert_eq!(m.confirmed, 0);
}
