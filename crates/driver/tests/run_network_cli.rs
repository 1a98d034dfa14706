//! `tessel run-network` end to end on the tiny built-in CNN.

mod common;

#[test]
fn tiny_cnn_builds_verifies_and_times_on_default_schedules() {
    let (v, text) = common::tessel_json(&[
        "run-network",
        "tiny-cnn",
        "--threads",
        "1",
        "--repeat",
        "3",
        "--json",
    ]);
    assert!(
        text.contains("fallbacks: 6 of 6 tasks run a default schedule"),
        "{text}"
    );
    assert!(
        text.contains("verify: matches the reference evaluator"),
        "{text}"
    );
    assert_eq!(v["fallbacks"].as_array().map(|a| a.len()), Some(6), "{v}");
    assert_eq!(v["launches"], 6);
    let err = v["max_abs_error"].as_f64().expect("verified");
    assert!(err < 1e-4, "{err}");
    let (arena, all) = (
        v["arena_bytes"].as_u64().expect("arena"),
        v["intermediates_bytes"].as_u64().expect("intermediates"),
    );
    assert!(arena > 0 && arena < all, "{arena} vs {all}");
    let tasks = v["tasks"].as_array().expect("tasks");
    assert_eq!(tasks.len(), 6);
    assert!(tasks
        .iter()
        .all(|t| t["source"] == "default" && t["estimate_ms"].is_null()));
    assert!(v["median_ms"].as_f64().expect("median") > 0.0);
    assert!(v["estimate_ms"].is_null());
}

#[test]
fn a_bad_target_or_records_file_is_a_clear_error() {
    let exe = env!("CARGO_BIN_EXE_tessel");
    let out = std::process::Command::new(exe)
        .args(["run-network", "tiny-cnn", "--target", "avx9"])
        .output()
        .expect("tessel runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("avx9"), "{err}");
    let out = std::process::Command::new(exe)
        .args([
            "run-network",
            "tiny-cnn",
            "--records",
            "/nonexistent/r.jsonl",
        ])
        .output()
        .expect("tessel runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot read records file /nonexistent/r.jsonl"),
        "{err}"
    );
}
