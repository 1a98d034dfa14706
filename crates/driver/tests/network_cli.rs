//! `tessel tasks` and `tessel tune-network` end to end on the tiny built-in CNN.

mod common;

fn tessel(args: &[&str]) -> serde_json::Value {
    common::tessel_json(args).0
}

#[test]
fn resnet50_task_list_has_the_table_convolutions() {
    let v = tessel(&["tasks", "resnet50", "--json"]);
    let tasks = v["tasks"].as_array().expect("tasks");
    assert_eq!(tasks.len(), 27);
    let convs: u64 = tasks
        .iter()
        .filter(|t| t["name"].as_str().is_some_and(|n| n.starts_with("c2d:")))
        .map(|t| t["weight"].as_u64().expect("weight"))
        .sum();
    assert_eq!(convs, 53, "53 convolutions in ResNet-50");
}

#[test]
fn a_tiny_network_tunes_end_to_end_and_resumes() {
    let dir = std::env::temp_dir().join(format!("tessel-net-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let records = dir.join("tiny.jsonl");
    let rec = records.to_str().expect("utf-8");
    let args = [
        "tune-network",
        "tiny-cnn",
        "--trials",
        "60",
        "--measures-per-round",
        "6",
        "--population",
        "128",
        "--threads",
        "1",
        "--records",
        rec,
        "--json",
    ];
    let v = tessel(&args);
    let tasks = v["tasks"].as_array().expect("tasks");
    assert_eq!(tasks.len(), 6);
    assert_eq!(v["trials"], 60);
    let mut sum = 0.0;
    for t in tasks {
        let ms = t["best_latency_ms"]
            .as_f64()
            .expect("every task has a program");
        sum += t["weight"].as_f64().expect("weight") * ms;
        assert!(
            t["trials"].as_u64().expect("trials") >= 6,
            "warm-up gives every task a round"
        );
    }
    let est = v["estimated_latency_ms"].as_f64().expect("estimate");
    assert!(
        (est - sum).abs() <= 1e-9 * sum.max(1.0),
        "estimate {est} = Σ weight × best {sum}"
    );
    // The tuned network was built from the records and run: every task found its record.
    let m = &v["measured"];
    let median = m["median_ms"].as_f64().expect("measured median");
    assert!(
        median > 0.0 && m["min_ms"].as_f64().expect("min") <= median,
        "{m}"
    );
    assert_eq!(m["repeat"], 20);
    assert_eq!(
        m["fallbacks"].as_array().expect("fallbacks").len(),
        0,
        "{m}"
    );
    let ratio = m["over_estimate"].as_f64().expect("ratio");
    assert!((ratio - median / est).abs() <= 1e-9 * ratio, "{m}");
    let log = tessel_measure::records::read_records(&records).expect("records");
    let searched = log.records.iter().filter(|r| !r.confirmed).count();
    assert_eq!(searched, 60);
    assert!(log
        .records
        .iter()
        .all(|r| r.key.workload.starts_with("tiny-cnn@1/")));
    // The final confirmation: one confirmed record per task (its reported program), and
    // each task's reported best is that record.
    let confirmed: Vec<_> = log.records.iter().filter(|r| r.confirmed).collect();
    assert_eq!(confirmed.len(), tasks.len());
    for t in tasks {
        let name = t["name"].as_str().expect("name");
        let ours: Vec<f64> = confirmed
            .iter()
            .filter(|r| r.key.workload.ends_with(&format!("/{name}")))
            .filter_map(|r| r.cost())
            .collect();
        let fastest = ours.iter().copied().fold(f64::INFINITY, f64::min);
        let reported = t["best_latency_ms"].as_f64().expect("ms") / 1e3;
        assert!(
            (reported - fastest).abs() <= 1e-12,
            "{name}: {reported} vs {fastest}"
        );
        assert!(t["search_best_latency_ms"].as_f64().is_some());
    }
    // Resume: the earlier records are loaded and nothing is measured twice; --no-run
    // builds nothing at the end.
    let mut no_run = args.to_vec();
    no_run.push("--no-run");
    let again = tessel(&no_run);
    assert_eq!(again["resumed"], 60);
    assert!(again.get("measured").is_none(), "{again}");
    let log = tessel_measure::records::read_records(&records).expect("records");
    let searched: Vec<_> = log.records.iter().filter(|r| !r.confirmed).collect();
    let distinct: std::collections::HashSet<String> = searched
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r.key.workload,
                serde_json::to_string(&r.steps).expect("steps")
            )
        })
        .collect();
    assert_eq!(distinct.len(), searched.len());
    // Both estimates are fresh-worker confirmations: each is Σ weight × confirmed best.
    assert!(again["estimated_latency_ms"].as_f64().expect("estimate") > 0.0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_time_budget_stops_the_network_search_and_a_bad_one_is_refused() {
    let dir = std::env::temp_dir().join(format!("tessel-net-budget-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let records = dir.join("tiny.jsonl");
    let v = tessel(&[
        "tune-network",
        "tiny-cnn",
        "--trials",
        "100000",
        "--time-budget",
        "0.001",
        "--measures-per-round",
        "2",
        "--population",
        "64",
        "--threads",
        "1",
        "--records",
        records.to_str().expect("utf-8"),
        "--json",
    ]);
    assert_eq!(v["stop_reason"], "TimeBudget");
    assert!(v["trials"].as_u64().expect("trials") < 100000);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tessel"))
        .args(["tune-network", "tiny-cnn", "--time-budget=-3"])
        .output()
        .expect("tessel runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--time-budget must be a positive number of seconds"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_round_floor_is_refused() {
    for bad in ["1.5", "-0.1", "NaN"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tessel"))
            .args(["tune-network", "tiny-cnn", &format!("--round-floor={bad}")])
            .output()
            .expect("tessel runs");
        assert!(!out.status.success(), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--round-floor must be a number from 0 to 1"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn a_model_with_tasks_no_builtin_network_has_tunes_and_runs_from_its_records() {
    // se_block.onnx: its sigmoid and hard-sigmoid gates and the broadcast multiply are tasks
    // of no built-in network; they reach the measurement worker as subgraph specs.
    let model =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/onnx/se_block.onnx");
    let dir = std::env::temp_dir().join(format!("tessel-onnx-tune-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let records = dir.join("se.jsonl");
    let (summary, _) = common::tessel_json(&[
        "tune-network",
        model.to_str().expect("utf-8"),
        "--trials",
        "21",
        "--threads",
        "1",
        "--records",
        records.to_str().expect("utf-8"),
        "--json",
    ]);
    let tasks = summary["tasks"].as_array().expect("tasks");
    assert_eq!(tasks.len(), 7, "{summary}");
    for t in tasks {
        assert!(
            t["best_latency_ms"].as_f64().is_some(),
            "every task has a best: {t}"
        );
    }
    assert!(tasks.iter().any(|t| t["name"]
        .as_str()
        .is_some_and(|n| n.starts_with("broadcast_mul"))));
    // The module is built from those records: no task falls back to a default schedule.
    assert_eq!(
        summary["measured"]["fallbacks"],
        serde_json::json!([]),
        "{summary}"
    );
    let text = std::fs::read_to_string(&records).expect("records");
    assert!(
        text.contains(r#""workload":"subgraph:"#),
        "subgraph specs in the records"
    );
    std::fs::remove_dir_all(&dir).ok();
}
