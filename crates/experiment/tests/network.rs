//! The network experiment end to end on tiny-cnn (issue #30): two configs × two seeds tune
//! the network with the task scheduler on a deterministic fake runner, every run's network
//! is built with the runtime from its own records and timed for real, the summary holds
//! every figure the report shows, and the same seeds give the same trials again.

use std::path::Path;
use std::sync::Arc;
use tessel_experiment::network::{run, NetworkOptions, NetworkSummary};
use tessel_experiment::runs::Config;
use tessel_ir::dag::fnv1a;
use tessel_measure::{Candidate, MeasureOptions, MeasureResult, PhaseTimes, Runner, Timing};
use tessel_search::evolution::EvolutionParams;
use tessel_search::job::{TuneJob, TuneOptions};
use tessel_search::tuner::TuneParams;
use tessel_sketch::Target;
use tessel_workloads::networks::{self, Weights};

/// Each program takes a fixed time from its step log (10–20 µs).
struct HashRunner {
    options: MeasureOptions,
}

impl Runner for HashRunner {
    fn measure(&mut self, batch: &[Candidate]) -> Vec<MeasureResult> {
        batch
            .iter()
            .map(|c| {
                let key = serde_json::to_string(&c.steps).expect("steps serialize");
                let h = fnv1a(format!("{}|{key}", c.workload).as_bytes());
                MeasureResult {
                    timing: Timing::from_costs(vec![1e-5 * (1.0 + (h % 100) as f64 / 100.0); 3], 1),
                    error: None,
                    phases: PhaseTimes::default(),
                }
            })
            .collect()
    }
    fn options(&self) -> &MeasureOptions {
        &self.options
    }
    fn name(&self) -> &'static str {
        "hash"
    }
}

fn job() -> TuneJob {
    let mut options = TuneOptions::new(Target::native().with_cores(1));
    options.params = TuneParams {
        measures_per_round: 4,
        evolution: EvolutionParams {
            population: 16,
            ..EvolutionParams::default()
        },
        ..TuneParams::default()
    };
    options.runner = Arc::new(|options| Ok(Box::new(HashRunner { options }) as Box<dyn Runner>));
    TuneJob::new(options)
}

fn experiment(out: &Path) -> NetworkSummary {
    let net = networks::tiny_cnn(1).expect("tiny-cnn");
    let weights = Weights::random(&net, 1);
    let workloads: Vec<_> = networks::extract_tasks(&net)
        .expect("tasks")
        .iter()
        .map(|t| tessel_workloads::lookup(&format!("tiny-cnn@1/{}", t.name)).expect("task"))
        .collect();
    let mut options = NetworkOptions::new(
        "tiny-cnn",
        8,
        2,
        vec![Config::Baseline, Config::Both],
        out.to_path_buf(),
    );
    options.scheduler.measures_per_round = 4;
    options.timing_rounds = 3;
    options.timing_repeats = 2;
    options.checkpoints = 2;
    let mut text = Vec::new();
    let summary = run(&job(), &net, &weights, &workloads, &options, &mut text).expect("runs");
    let text = String::from_utf8(text).expect("utf-8");
    assert!(
        text.contains("time-to-reach") && text.contains("gain ms"),
        "{text}"
    );
    summary
}

#[test]
fn tiny_cnn_runs_end_to_end_and_repeats_its_trials() {
    let dir = std::env::temp_dir().join(format!("tessel-net-experiment-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let s = experiment(&dir.join("a"));
    let tasks = s.tasks;
    assert!(tasks >= 2, "tiny-cnn has several tasks");
    assert_eq!(s.runs.len(), 4);
    for r in &s.runs {
        // The budget is spent (8 per task), the estimate is Σ weight × best of the tasks.
        assert_eq!(r.trials, 8 * tasks, "{r:?}");
        let est: f64 = r
            .tasks
            .iter()
            .map(|t| t.weight * t.best_seconds.expect("a best"))
            .sum();
        assert!((r.estimated_seconds.expect("estimate") - est).abs() < 1e-12);
        let last = r.rounds.last().expect("rounds");
        assert_eq!(last.trials, r.trials);
        assert!(r.rounds.windows(2).all(|w| w[0].seconds <= w[1].seconds));
        // Built from its own records and timed for real: every task from a record.
        assert!(dir.join("a").join(&r.records).exists(), "{}", r.records);
        assert_eq!(r.fallbacks, 0, "every task has a record");
        assert!(r.measured_seconds.is_some_and(|m| m > 0.0), "{r:?}");
        // One measured checkpoint at half the budget: the network built from the records as
        // they stood then, and timed.
        let [cp] = r.checkpoints.as_slice() else {
            panic!("one checkpoint: {:?}", r.checkpoints)
        };
        assert!(2 * cp.trials >= r.trials && cp.trials < r.trials, "{cp:?}");
        assert_eq!(cp.trials, r.rounds[cp.round].trials);
        assert!(cp.measured_seconds.is_some_and(|m| m > 0.0), "{cp:?}");
    }
    // Every figure of the report is in the summary.
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("a/summary.json")).expect("summary.json"),
    )
    .expect("json");
    for c in json["configs"].as_array().expect("configs") {
        for field in [
            "estimated_ms_median",
            "measured_ms_median",
            "measured_ms_q1",
            "measured_ms_q3",
            "measured_over_estimate_median",
            "checkpoints_ms",
            "final_ratio",
            "signed_rank",
            "time_to_reach_ratio",
            "trials_to_reach_ratio",
            "reached",
            "compared",
            "policy_share",
            "search_seconds_median",
            "fallbacks",
        ] {
            assert!(c.get(field).is_some(), "{field} missing in {c}");
        }
        assert_eq!(c["compared"], 2);
    }
    assert_eq!(
        json["configs"][0]["final_ratio"], 1.0,
        "the baseline ÷ itself"
    );
    assert_eq!(
        json["configs"][0]["reached"], 2,
        "the baseline reaches its own final"
    );
    assert_eq!(json["checkpoint_fractions"], serde_json::json!([0.5, 1.0]));
    assert_eq!(
        json["configs"][1]["checkpoints_ms"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    let breakdown = json["task_breakdown"].as_array().expect("breakdown");
    assert_eq!(breakdown.len(), tasks);
    assert_eq!(
        breakdown[0]["weighted_ms"].as_array().map(Vec::len),
        Some(2)
    );
    assert!(json["reach_definition"]
        .as_str()
        .is_some_and(|d| d.contains("scaled")));
    for p in json["plots"].as_array().expect("plots") {
        let f = p.as_str().expect("name");
        assert!(std::fs::read_to_string(dir.join("a").join(f)).is_ok_and(|t| t.contains("<svg")));
    }
    let report = std::fs::read_to_string(dir.join("a/report.md")).expect("report");
    assert!(
        report.contains("Per-task breakdown")
            && report.contains("Measured at checkpoints")
            && report.contains("records/tiny-cnn.both.s1.jsonl")
    );

    // The same seeds again: the same trials and the same search results.
    let again = experiment(&dir.join("b"));
    for (a, b) in s.runs.iter().zip(&again.runs) {
        let trials = |r: &tessel_experiment::network::NetworkRun| {
            r.rounds
                .iter()
                .map(|p| (p.trials, p.estimated_seconds))
                .collect::<Vec<_>>()
        };
        assert_eq!(trials(a), trials(b), "{} seed {}", a.config.name(), a.seed);
        assert_eq!(a.tasks, b.tasks);
        let records = |d: &str, r: &tessel_experiment::network::NetworkRun| {
            std::fs::read_to_string(dir.join(d).join(&r.records))
                .expect("records")
                .lines()
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).expect("record");
                    v["steps"].to_string()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            records("a", a),
            records("b", b),
            "the same programs, in order"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
