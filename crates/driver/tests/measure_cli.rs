//! Runs the measurement commands of the `tessel` binary: `run` (through a worker and
//! in-process), `records stats|best|distill`, `replay` and `worker`.

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn tessel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tessel"))
        .args(args)
        .output()
        .expect("cannot run the tessel binary")
}

fn last_json(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().expect("no output");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("last line is not JSON ({e}): {last}"))
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tessel-measure-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    let _ = std::fs::remove_file(&p);
    p
}

const SMALL: &str = "gmm:b=1,n=64,m=64,k=64";

/// j split by 8 and vectorized inside k; rows in parallel.
const SMALL_STEPS: &str = r#"{"workload": "gmm:b=1,n=64,m=64,k=64", "steps": [
  {"step":"split","stage":2,"iter":2,"extent":null,"lengths":[8]},
  {"step":"reorder","stage":2,"order":[0,1,2,4,3]},
  {"step":"annotate","stage":2,"iter":4,"annotation":"vectorize"},
  {"step":"annotate","stage":2,"iter":1,"annotation":"parallel"}]}"#;

fn small_steps() -> PathBuf {
    let p = temp("gmm64.json");
    std::fs::write(&p, SMALL_STEPS).unwrap();
    p
}

#[test]
fn run_small_gmm_then_records_stats_best_distill_and_replay() {
    let steps = small_steps();
    let steps = steps.to_str().unwrap();
    let recs = temp("runs.jsonl");
    let recs_s = recs.to_str().unwrap();
    let out = tessel(&["run", SMALL, "--steps", steps, "--records", recs_s]);
    ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    for want in ["latency:", "GFLOP/s:", "compile:", "correct:   yes"] {
        assert!(text.contains(want), "{want} missing: {text}");
    }
    let out = tessel(&[
        "run",
        SMALL,
        "--steps",
        steps,
        "--isolation",
        "none",
        "--threads",
        "1",
        "--records",
        recs_s,
        "--json",
    ]);
    ok(&out);
    let run = &last_json(&out)["run"];
    assert_eq!(run["ok"], true);
    assert_eq!(run["verified"], true);
    assert_eq!(run["threads"], 1);
    assert_eq!(run["isolation"], "none");
    assert_eq!(run["steps"], 4);
    assert!(run["latency_ms"]["median"].as_f64().unwrap() > 0.0);
    assert!(run["gflops"].as_f64().unwrap() > 0.0);
    assert!(run["compile_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(run["costs_s"].as_array().unwrap().len(), 5);

    // A torn last line: reported, not fatal.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&recs)
        .unwrap();
    f.write_all(b"{\"v\":1,\"key\":{\"work").unwrap();
    drop(f);
    let out = tessel(&["records", "stats", recs_s, "--json"]);
    ok(&out);
    let stats = &last_json(&out)["stats"];
    assert_eq!(stats["records"], 2);
    assert_eq!(stats["ok"], 2);
    assert_eq!(stats["workloads"], 1);
    assert_eq!(stats["errors"]["wrong_answer"], 0);
    assert_eq!(stats["bad_lines"][0]["line"], 3);
    assert!(String::from_utf8_lossy(&out.stderr).contains(":3: skipped: truncated"));

    let out = tessel(&["records", "best", recs_s, "--json"]);
    ok(&out);
    let best = last_json(&out)["best"].as_array().unwrap().clone();
    assert_eq!(best.len(), 1);
    assert_eq!(best[0]["workload"], SMALL);

    let distilled = temp("distilled.jsonl");
    let out = tessel(&[
        "records",
        "distill",
        recs_s,
        "--top",
        "1",
        "-o",
        distilled.to_str().unwrap(),
        "--json",
    ]);
    ok(&out);
    assert_eq!(last_json(&out)["distill"]["kept"], 1);
    assert_eq!(
        std::fs::read_to_string(&distilled).unwrap().lines().count(),
        1
    );

    // `run` appended after the torn line: the new record is on its own line.
    let out = tessel(&[
        "run",
        SMALL,
        "--steps",
        steps,
        "--threads",
        "1",
        "--records",
        recs_s,
    ]);
    ok(&out);
    let out = tessel(&["records", "stats", recs_s, "--json"]);
    assert_eq!(last_json(&out)["stats"]["records"], 3);

    let out = tessel(&[
        "replay",
        distilled.to_str().unwrap(),
        "--workload",
        SMALL,
        "--json",
    ]);
    ok(&out);
    let rows = last_json(&out)["replay"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["ok"], true, "{rows:?}");
    assert!(rows[0]["measured_ms"].as_f64().unwrap() > 0.0);
    let out = tessel(&["replay", distilled.to_str().unwrap(), "--workload", "gmm-1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no successful record of gmm-1"));
}

#[test]
fn run_gmm3_example_schedule_json() {
    let steps =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/schedules/gmm-3.json");
    let out = tessel(&["run", "gmm-3", "--steps", steps.to_str().unwrap(), "--json"]);
    ok(&out);
    let run = &last_json(&out)["run"];
    assert_eq!(run["workload"], "gmm-3");
    assert_eq!(run["spec"], "gmm:b=1,n=512,m=512,k=512");
    assert_eq!(run["ok"], true, "{run}");
    assert_eq!(run["verified"], true);
    assert_eq!(run["isolation"], "worker");
    assert_eq!(run["steps"], 17);
    let median = run["latency_ms"]["median"].as_f64().unwrap();
    let gflops = run["gflops"].as_f64().unwrap();
    assert!(median > 0.0 && gflops > 0.0);
    assert!((gflops - 2.0 * 512f64.powi(3) / (median / 1e3) / 1e9).abs() < 1e-6 * gflops);
}

#[test]
fn failures_exit_2_and_still_report() {
    let steps = small_steps();
    // A schedule of another workload.
    let out = tessel(&["run", "gmm-1", "--steps", steps.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is a schedule of"));
    // An illegal step: reported as data (JSON last line), then exit 2.
    let bad = temp("bad.json");
    std::fs::write(
        &bad,
        r#"[{"step":"annotate","stage":2,"iter":0,"annotation":"vectorize"}]"#,
    )
    .unwrap();
    let out = tessel(&["run", SMALL, "--steps", bad.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let run = &last_json(&out)["run"];
    assert_eq!(run["ok"], false);
    assert_eq!(run["error"]["class"], "invalid_schedule");
    assert!(String::from_utf8_lossy(&out.stderr).contains("the schedule failed: invalid schedule"));
    // Missing files.
    let out = tessel(&["run", SMALL, "--steps", "/nonexistent.json"]);
    assert_eq!(out.status.code(), Some(2));
    let out = tessel(&["records", "stats", "/nonexistent.jsonl"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read records file"));
}

#[test]
fn worker_speaks_the_protocol() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tessel"))
        .arg("worker")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let hello: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(hello["v"], 2);
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["protocol"], 2);
    writeln!(stdin, "{{\"v\":2,\"type\":\"ping\",\"id\":5}}").unwrap();
    writeln!(stdin, "{{\"v\":7,\"type\":\"ping\",\"id\":6}}").unwrap();
    let pong: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(pong, serde_json::json!({"v": 2, "type": "pong", "id": 5}));
    let refused: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(refused["type"], "error");
    assert!(refused["message"].as_str().unwrap().contains("version 7"));
    writeln!(stdin, "{{\"v\":2,\"type\":\"shutdown\"}}").unwrap();
    assert!(child.wait().unwrap().success());
}
