//! `tessel tune` end to end: a small matmul tunes, the best kernel is correct and no slower
//! than the heuristic schedule, its records replay, and a second run resumes without
//! measuring anything again.

use std::collections::HashSet;
use std::process::Command;
use std::sync::Arc;
use tessel_ir::{eval, lower::lower, testing, State};

const SPEC: &str = "gmm:b=1,n=64,m=64,k=64";

mod common;

use common::tessel_json as tessel;

#[test]
fn tune_finds_a_correct_kernel_no_slower_than_the_heuristic_and_resumes() {
    let dir = std::env::temp_dir().join(format!("tessel-tune-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let records = dir.join("gmm64.jsonl");
    let rec = records.to_str().expect("utf-8 path");
    let (summary, text) = tessel(&[
        "tune",
        SPEC,
        "--trials",
        "96",
        "--threads",
        "1",
        "--population",
        "256",
        "--seed",
        "3",
        "--records",
        rec,
        "--json",
    ]);
    assert!(text.contains("GFLOP/s"), "{text}");
    assert_eq!(summary["trials"], 96);
    assert_eq!(summary["stop_reason"], "trial_budget");
    assert!(summary["valid"].as_u64().expect("valid") > 48, "{summary}");
    for key in [
        "workload",
        "best_latency_ms",
        "best_gflops",
        "search_seconds",
        "time_split",
        "records",
    ] {
        assert!(!summary[key].is_null(), "summary has {key}: {summary}");
    }

    let log = tessel_measure::records::read_records(&records).expect("records readable");
    assert!(log.problems.is_empty());
    // 96 search records, then the final confirmation's: the 5 fastest distinct programs
    // ranked in fresh workers, the winner measured again, and that one record written.
    let (confirmed, searched): (Vec<_>, Vec<_>) = log.records.iter().partition(|r| r.confirmed);
    assert_eq!(searched.len(), 96);
    assert_eq!(confirmed.len(), 1);
    let searched_steps: HashSet<String> = searched
        .iter()
        .map(|r| serde_json::to_string(&r.steps).expect("steps"))
        .collect();
    assert!(confirmed
        .iter()
        .all(|r| searched_steps.contains(&serde_json::to_string(&r.steps).expect("steps"))));
    let confirmed_best = confirmed
        .iter()
        .filter_map(|r| r.cost())
        .fold(f64::INFINITY, f64::min);
    let reported = summary["best_latency_ms"].as_f64().expect("ms") / 1e3;
    assert!(
        (reported - confirmed_best).abs() <= 1e-12,
        "the reported best is the confirmed one: {reported} vs {confirmed_best}"
    );
    let programs = summary["confirmation"]["programs"]
        .as_array()
        .expect("confirmation in the summary");
    assert_eq!(programs.len(), 5);
    let reported = summary["confirmation"]["reported"]["confirmed_ms"]
        .as_f64()
        .expect("the reported program");
    assert!((reported / 1e3 - confirmed_best).abs() <= 1e-12);
    // The heuristic schedule is measured in the first round; the best is no slower.
    let w = tessel_workloads::lookup(SPEC).expect("spec");
    let dag = Arc::new(w.dag.clone());
    let hw = tessel_sketch::HardwareParams::with_cores(1);
    let heuristic = tessel_search::heuristic::heuristic_state(&dag, &hw).expect("heuristic");
    let first_round = &log.records[..64];
    let at = first_round
        .iter()
        .position(|r| r.steps == heuristic.steps())
        .expect("the heuristic schedule is measured in the first round");
    let heuristic_cost = log.records[at].cost().expect("the heuristic runs");
    let best = searched
        .iter()
        .filter(|r| r.cost().is_some())
        .min_by(|a, b| a.cost().partial_cmp(&b.cost()).expect("finite"))
        .expect("a best record");
    let best_cost = best.cost().expect("cost");
    assert!(
        best_cost <= heuristic_cost,
        "best {best_cost} vs heuristic {heuristic_cost}"
    );
    let search_best = summary["search_best_latency_ms"].as_f64().expect("ms") / 1e3;
    assert!(
        (search_best - best_cost).abs() <= 1e-12 * best_cost.max(1.0),
        "{search_best} vs {best_cost}"
    );

    // The best record replays to a state whose lowered program computes the reference.
    let state = State::replay(dag.clone(), &best.steps).expect("record replays");
    let again = State::replay(dag.clone(), &best.steps).expect("record replays");
    let nest = lower(&state).expect("lowers");
    assert_eq!(nest.to_string(), lower(&again).expect("lowers").to_string());
    let inputs = eval::random_inputs(&dag, 5);
    let want = eval::evaluate(&dag, &inputs).expect("evaluates");
    let got = testing::run_interp(&nest, &inputs).expect("runs");
    testing::check_close(&got, &want, 1e-4, 1e-4).expect("the best kernel is correct");
    let (replayed, _) = tessel(&["replay", rec, "--json"]);
    assert!(!replayed.is_null());

    // A second run resumes: nothing measured again, the best is kept or improved.
    let (second, _) = tessel(&[
        "tune",
        SPEC,
        "--trials",
        "32",
        "--threads",
        "1",
        "--population",
        "256",
        "--seed",
        "4",
        "--records",
        rec,
        "--json",
    ]);
    // The confirmed records are not states of their own: they give their programs' times.
    assert_eq!(second["resumed"], 96);
    assert_eq!(second["trials"], 32);
    assert!(second["best_latency_ms"].as_f64().is_some());
    let log = tessel_measure::records::read_records(&records).expect("records readable");
    let distinct: HashSet<String> = log
        .records
        .iter()
        .filter(|r| !r.confirmed)
        .map(|r| serde_json::to_string(&r.steps).expect("steps"))
        .collect();
    assert_eq!(distinct.len(), 128, "no state was measured twice");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tune_rejects_a_bad_spec_with_the_reason() {
    let out = Command::new(env!("CARGO_BIN_EXE_tessel"))
        .args(["tune", "gmm:b=1,n=0,m=8,k=8"])
        .output()
        .expect("tessel runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("n=0"));
}

#[test]
fn tune_with_both_learned_policies_runs_and_names_them() {
    let dir = std::env::temp_dir().join(format!("tessel-tune-both-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let records = dir.join("both.jsonl");
    let (summary, _) = tessel(&[
        "tune",
        "gmm:b=1,n=32,m=32,k=32",
        "--trials",
        "48",
        "--threads",
        "1",
        "--population",
        "128",
        "--measures-per-round",
        "16",
        "--policy",
        "both",
        "--records",
        records.to_str().expect("utf-8"),
        "--json",
    ]);
    assert_eq!(summary["policies"]["sketch"], "ducb");
    assert_eq!(summary["policies"]["mutation"], "classifier");
    assert_eq!(summary["trials"], 48);
    let out = Command::new(env!("CARGO_BIN_EXE_tessel"))
        .args(["tune", "gmm-3", "--policy", "greedy"])
        .output()
        .expect("tessel runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown --policy `greedy`"));
    let _ = std::fs::remove_dir_all(&dir);
}
