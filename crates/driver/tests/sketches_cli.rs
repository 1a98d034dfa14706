//! `tessel sketches` end to end.

use std::process::Command;

fn tessel(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tessel"))
        .args(args)
        .output()
        .expect("tessel runs")
}

#[test]
fn sketches_of_gmm_3_are_ansors_three() {
    let out = tessel(&["sketches", "gmm-3", "--cores", "2", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().expect("output");
    let v: serde_json::Value = serde_json::from_str(last).expect("last line is JSON");
    let sketches = v["sketches"].as_array().expect("sketches");
    // Ansor's three plain sketches; on a CPU with AVX2+FMA also two tensorized variants of
    // the cache-write ones.
    let plain: Vec<&serde_json::Value> = sketches
        .iter()
        .filter(|s| s["text"].as_str().is_some_and(|t| !t.contains("tensorize")))
        .collect();
    assert_eq!(plain.len(), 3, "{stdout}");
    assert!(sketches.len() == 3 || sketches.len() == 5, "{stdout}");
    // The cache-write sketches (level 1 and 2 fusion) have a Z.local stage.
    let with_cache = plain
        .iter()
        .filter(|s| s["text"].as_str().is_some_and(|t| t.contains("Z.local")))
        .count();
    assert_eq!(with_cache, 2, "{stdout}");
}

#[test]
fn sketches_follow_the_target() {
    let count = |target: &str| -> Option<(usize, usize, String)> {
        let out = tessel(&[
            "sketches", "gmm-3", "--cores", "2", "--target", target, "--json",
        ]);
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr).to_string();
            assert!(err.contains("needs the CPU feature"), "{target}: {err}");
            eprintln!("skipping --target {target}: {err}");
            return None;
        }
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let v: serde_json::Value =
            serde_json::from_str(stdout.lines().last().expect("output")).expect("JSON");
        assert_eq!(v["target"], target, "{stdout}");
        let sketches = v["sketches"].as_array().expect("sketches");
        let tensorized = sketches
            .iter()
            .filter(|s| s["text"].as_str().is_some_and(|t| t.contains("tensorize")))
            .count();
        Some((sketches.len(), tensorized, stdout))
    };
    let (n, t, out) = count("generic").expect("generic always runs");
    assert_eq!((n, t), (3, 0), "{out}");
    for isa in ["avx2", "avx512"] {
        if let Some((n, t, out)) = count(isa) {
            assert_eq!((n, t), (5, 2), "{isa}: {out}");
            assert!(out.contains(&format!("target {isa}")), "{out}");
        }
    }
    let out = tessel(&["sketches", "gmm-3", "--target", "avx9"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown target"));
}

#[test]
fn sketches_of_a_bad_spec_fail_with_the_reason() {
    let out = tessel(&["sketches", "gmm:b=1,n=8,m=8"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing key `k`"));
}

#[test]
fn sample_measures_random_schedules_and_reports_them() {
    let out = tessel(&[
        "sample",
        "gmm:b=1,n=32,m=32,k=32",
        "--count",
        "16",
        "--threads",
        "1",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("output")).expect("JSON");
    assert_eq!(v["sampled"], 16);
    assert_eq!(v["ok"], 16, "random legal schedules all run correctly: {v}");
    let best = v["best_gflops"].as_f64().expect("best");
    let median = v["median_gflops"].as_f64().expect("median");
    assert!(best >= median && median > 0.0, "{v}");
    assert!(v["compile_ms_median"].as_f64().expect("compile") > 0.0);
}
