//! `tessel cost-model eval` end to end, on records measured here (small shapes).

use std::io::Write;
use std::process::Command;
use std::sync::Arc;
use tessel_measure::records::Record;
use tessel_measure::{Candidate, InProcessRunner, MeasureOptions, RecordWriter, Runner, Target};
use tessel_sketch::{generate_sketches, sample_population, HardwareParams};

fn tessel(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tessel"))
        .args(args)
        .output()
        .expect("tessel runs")
}

/// Writes `n` measured random schedules of each workload to `path`, then a corrupt line.
fn write_records(path: &std::path::Path, n: usize) {
    let mut options = MeasureOptions::with_threads(1);
    options.builder_threads = 1;
    options.timing.warmup = 0;
    options.timing.repeat = 3;
    options.timing.min_repeat_ms = 0.2;
    let mut runner = InProcessRunner::new(options.clone()).expect("runner");
    let hw = HardwareParams::with_cores(1);
    let mut writer = RecordWriter::open(path).expect("open");
    for spec in [
        "gmm:b=1,n=64,m=64,k=64",
        "c2d:n=1,h=8,w=8,ci=16,co=16,kernel=3,stride=1,pad=1",
    ] {
        let w = tessel_workloads::lookup(spec).expect("workload");
        let sketches = generate_sketches(&Arc::new(w.dag.clone()), &hw).expect("sketches");
        let mut rng = tessel_ir::rng::seeded(9);
        let states = sample_population(&sketches, n, &hw, &mut rng);
        let cands: Vec<Candidate> = states
            .iter()
            .map(|s| Candidate::from_state(&w, s))
            .collect();
        let results = runner.measure(&cands);
        writer
            .append(&Record::batch(&cands, &results, &options, &Target::host()))
            .expect("append");
    }
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("reopen");
    writeln!(f, "{{not a record").expect("write");
}

#[test]
fn eval_reports_accuracy_and_timing_for_both_splits() {
    let dir = std::env::temp_dir().join(format!("tessel-cm-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("records.jsonl");
    write_records(&path, 60);
    let model = dir.join("model.json");
    let out = tessel(&[
        "cost-model",
        "eval",
        "--records",
        path.to_str().expect("utf-8 path"),
        "--json",
        "--k",
        "5",
        "--save-model",
        model.to_str().expect("utf-8 path"),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("not JSON"));
    assert!(stdout.contains("pairwise"), "{stdout}");
    let v: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("output")).expect("last line is JSON");
    assert_eq!(v["records"], 120);
    assert_eq!(v["bad_lines"], 1);
    let reports = v["reports"].as_array().expect("reports");
    // 4 models × (1 candidate split + 2 workload folds).
    assert_eq!(reports.len(), 12, "{stdout}");
    for r in reports {
        assert!(r["train_seconds"].as_f64().is_some());
        assert!(r["rmse"].as_f64().is_some_and(|x| x.is_finite()));
        let acc = r["pairwise_accuracy"].as_f64().expect("pairwise accuracy");
        assert!((0.0..=1.0).contains(&acc));
    }
    assert!(reports
        .iter()
        .any(|r| r["split"] == "candidate" && r["model"] == "gbdt-packsum"));
    assert!(reports
        .iter()
        .any(|r| r["split"] == "candidate" && r["model"] == "gbdt-program-rank"));
    assert!(reports.iter().any(|r| r["split"]
        .as_str()
        .is_some_and(|s| s.starts_with("workload:"))));
    assert!(model.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn eval_rejects_bad_arguments_and_missing_files() {
    let out = tessel(&[
        "cost-model",
        "eval",
        "--records",
        "/nonexistent/records.jsonl",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/records.jsonl"));
    let out = tessel(&["cost-model", "eval", "--records", "x", "--model", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--model `nope`"));
}

#[test]
fn train_writes_a_model_that_tune_starts_from_and_refuses_for_another_target() {
    let dir = std::env::temp_dir().join(format!("tessel-cm-train-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let records = dir.join("records.jsonl");
    write_records(&records, 30);
    let model = dir.join("model.json");
    let path = |p: &std::path::Path| p.to_str().expect("utf-8 path").to_string();
    let out = tessel(&[
        "cost-model",
        "train",
        "--records",
        &path(&records),
        "--exclude",
        "c2d",
        "--out",
        &path(&model),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("on 30 programs of 1 workloads"),
        "the c2d records are held out: {stdout}"
    );

    // `eval --pretrained`: the saved model's rows, predicting with its own trees only. On
    // the gmm records it was trained on it ranks far better than chance.
    let eval = tessel(&[
        "cost-model",
        "eval",
        "--records",
        &path(&records),
        "--model",
        "random",
        "--pretrained",
        &path(&model),
        "--json",
    ]);
    let stdout = String::from_utf8_lossy(&eval.stdout);
    assert!(
        eval.status.success(),
        "{}",
        String::from_utf8_lossy(&eval.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("output")).expect("last line is JSON");
    let seen = v["reports"]
        .as_array()
        .expect("reports")
        .iter()
        .find(|r| r["model"] == "pretrained" && r["split"] == "workload:gmm:b=1,n=64,m=64,k=64")
        .unwrap_or_else(|| panic!("a pretrained row for the gmm fold: {stdout}"));
    let acc = seen["pairwise_accuracy"]
        .as_f64()
        .expect("pairwise accuracy");
    assert!(
        acc > 0.7,
        "pretrained on these gmm records, pairwise {acc}: {stdout}"
    );
    let missing = tessel(&[
        "cost-model",
        "eval",
        "--records",
        &path(&records),
        "--pretrained",
        "/nonexistent/model.json",
    ]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/model.json"));

    let tune = |extra: &[&str]| {
        let mut args = vec![
            "tune",
            "gmm:b=1,n=16,m=16,k=16",
            "--trials",
            "8",
            "--threads",
            "1",
            "--isolation",
            "none",
            "--final-confirm",
            "0",
            "--records",
        ];
        let r = path(&dir.join("tune.jsonl"));
        args.push(&r);
        args.extend_from_slice(extra);
        tessel(&args)
    };
    let m = path(&model);
    let started = tune(&["--pretrained", &m]);
    let stdout = String::from_utf8_lossy(&started.stdout);
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "cost model      gbdt, pre-trained on 30 programs ({m})"
        )),
        "{stdout}"
    );
    // The default is cold.
    let default = tune(&[]);
    assert!(String::from_utf8_lossy(&default.stdout)
        .contains("cost model      gbdt, cold (the default)"));
    let none = tune(&["--pretrained", "builtin", "--target", "generic"]);
    assert!(
        String::from_utf8_lossy(&none.stdout)
            .contains("cold (no built-in pre-trained model for generic)"),
        "{}",
        String::from_utf8_lossy(&none.stdout)
    );
    // A model of another target: the search starts cold and says why.
    let cold = tune(&["--pretrained", &m, "--target", "generic"]);
    let stdout = String::from_utf8_lossy(&cold.stdout);
    assert!(
        cold.status.success(),
        "{}",
        String::from_utf8_lossy(&cold.stderr)
    );
    assert!(
        stdout.contains("cost model      gbdt, cold (") && stdout.contains("target generic"),
        "{stdout}"
    );
    // A corrupt model file is an error.
    std::fs::write(&model, "{\"format\":").expect("write");
    let bad = tune(&["--pretrained", &m]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("is not a Tessel cost model"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
