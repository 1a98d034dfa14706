//! `tessel experiment` end to end: a tiny matmul under two configs and two seeds writes
//! the report, the plots, the traces and a summary whose numbers are sane, including the
//! shared measurement cache's counts and the side-by-side re-measurement.

use std::process::Command;

#[test]
fn experiment_writes_report_plots_and_a_sane_summary() {
    let dir = std::env::temp_dir().join(format!("tessel-experiment-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out_dir = dir.to_str().expect("utf-8 path");
    let out = Command::new(env!("CARGO_BIN_EXE_tessel"))
        .args([
            "experiment",
            "gmm:b=1,n=32,m=32,k=32",
            "--trials",
            "32",
            "--seeds",
            "2",
            "--configs",
            "both", // baseline is added: it sets the targets
            "--threads",
            "1",
            "--population",
            "128",
            "--measures-per-round",
            "16",
            "--isolation",
            "none",
            "--remeasure-rounds",
            "3",
            "--trail-rounds",
            "2",
            "--out",
            out_dir,
            "--json",
        ])
        .output()
        .expect("tessel runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("time-to-reach (accounted)"), "{stdout}");
    assert!(stdout.contains("final ×base (re-measured)"), "{stdout}");
    assert!(
        stdout.contains("Robustness: the configs of a seed tuned in lockstep")
            && stdout.contains("one measurement cache shared"),
        "{stdout}"
    );
    let last = stdout.lines().last().expect("output");
    let summary: serde_json::Value = serde_json::from_str(last).expect("last line is JSON");
    assert_eq!(summary["configs"], serde_json::json!(["baseline", "both"]));
    let robust = &summary["robustness"];
    assert_eq!(robust["shared_cache"], true, "{robust}");
    assert_eq!(robust["remeasure_rounds"], 3, "{robust}");
    assert_eq!(
        robust["final_ratio_to_trust"], "final_ratio_remeasured",
        "{robust}"
    );
    let w = &summary["workloads"][0];
    let wr = &w["robustness"];
    assert_eq!(wr["trials"], 4 * 32, "{wr}");
    let hits = wr["cache_hits"].as_u64().expect("hits");
    let distinct = wr["distinct_programs"].as_u64().expect("distinct");
    assert_eq!(
        hits + distinct,
        4 * 32,
        "every trial is a hit or a new program: {wr}"
    );
    let programs = wr["remeasured_programs"].as_u64().expect("programs");
    assert!((1..=4).contains(&programs), "{wr}");
    // The trails end with the final bests, so they hold at least those programs.
    let trail = wr["trail_programs"].as_u64().expect("trail programs");
    assert!(trail >= programs, "{wr}");
    assert_eq!(wr["trail_rounds"], 2, "{wr}");
    assert_eq!(w["spec"], "gmm:b=1,n=32,m=32,k=32");
    let configs = w["configs"].as_array().expect("configs");
    assert_eq!(configs.len(), 2, "{w}");
    for (c, name) in configs.iter().zip(["baseline", "both"]) {
        assert_eq!(c["config"], name);
        assert_eq!(c["runs"], 2);
        assert_eq!(c["compared"], 2);
        let gflops = c["best_gflops_median"].as_f64().expect("a best");
        assert!(gflops > 0.0 && gflops < 1e4, "{c}");
        assert!(c["final_ratio"].as_f64().expect("ratio") > 0.0, "{c}");
        let trusted = robust["final_ratio_to_trust"]
            .as_str()
            .expect("a field name");
        assert!(c[trusted].as_f64().expect("the trusted ratio") > 0.0, "{c}");
        let validity = c["mutation_validity"].as_f64().expect("validity");
        assert!(validity > 0.0 && validity <= 1.0, "{c}");
        let again = c["remeasured_gflops_median"]
            .as_f64()
            .expect("a re-measured best");
        assert!(again > 0.0 && again < 1e4, "{c}");
        assert!(
            c["final_ratio_remeasured"].as_f64().expect("ratio") > 0.0,
            "{c}"
        );
        assert!(
            c["time_to_reach_ratio_wall"].is_null()
                || c["time_to_reach_ratio_wall"]
                    .as_f64()
                    .is_some_and(|x| x > 0.0),
            "{c}"
        );
        let accounted = c["accounted_seconds_median"].as_f64().expect("accounted");
        assert!(accounted > 0.0, "{c}");
        assert!(
            c["policy_share_accounted"].as_f64().expect("share") > 0.0,
            "{c}"
        );
        let policy = c["policy_share"].as_f64().expect("policy share");
        let evolution = c["evolution_share"].as_f64().expect("evolution share");
        assert!(
            policy > 0.0 && policy < 1.0 && evolution > 0.0 && evolution < 1.0,
            "{c}"
        );
        // A time-to-reach ratio is either "not reached" (null) or positive.
        for key in ["time_to_reach_ratio", "trials_to_reach_ratio"] {
            assert!(
                c[key].is_null() || c[key].as_f64().is_some_and(|x| x > 0.0),
                "{c}"
            );
        }
    }
    // The baseline reaches its own final best, by definition at ratio 1.
    assert_eq!(configs[0]["final_ratio"], 1.0);
    assert_eq!(configs[0]["time_to_reach_ratio"], 1.0);
    assert_eq!(configs[0]["trials_to_reach_ratio"], 1.0);
    assert_eq!(configs[0]["reached"], 2);
    assert_eq!(configs[0]["time_to_reach_ratio_remeasured"], 1.0);
    assert_eq!(configs[0]["reached_remeasured"], 2);
    assert_eq!(configs[1]["compared_remeasured"], 2);
    assert_eq!(configs[0]["final_ratio_remeasured"], 1.0);
    assert!(
        configs[0]["signed_rank"].is_null(),
        "the baseline ties itself"
    );
    // Files: summary, traces, report, both plots, one records file per run.
    let file: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("summary.json")).expect("summary.json"),
    )
    .expect("summary.json parses");
    assert_eq!(&file, &summary);
    let report = std::fs::read_to_string(dir.join("report.md")).expect("report.md");
    assert!(
        report.contains("| baseline |") && report.contains("| both |"),
        "{report}"
    );
    for part in [
        "### Robustness",
        "3 interleaved rounds",
        "trials answered from the cache",
        "time-to-reach (accounted)",
        "time-to-reach (re-measured)",
        "re-measured the same way in 2 rounds",
        "policy % wall",
    ] {
        assert!(report.contains(part), "{part}: {report}");
    }
    let plots: Vec<&str> = w["plots"]
        .as_array()
        .expect("plots")
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    assert!(plots.iter().any(|p| p.ends_with(".time.svg")), "{plots:?}");
    for plot in w["plots"].as_array().expect("plots") {
        let svg = std::fs::read_to_string(dir.join(plot.as_str().expect("name"))).expect("plot");
        assert!(
            svg.starts_with("<svg") && svg.contains("polyline"),
            "{plot}"
        );
    }
    let runs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("runs.json")).expect("runs"))
            .expect("runs.json parses");
    let traces = runs[0]["runs"].as_array().expect("traces");
    assert_eq!(traces.len(), 4);
    assert_eq!(traces[0]["cache_hits"], 0, "the first run cannot hit");
    for t in traces {
        assert_eq!(t["trials"], 32);
        let again = &t["remeasured"];
        assert_eq!(again["rounds"].as_array().map(Vec::len), Some(3), "{again}");
        assert!(
            again["seconds"].as_f64().is_some_and(|s| s > 0.0),
            "{again}"
        );
        assert!(t["best_steps"].is_array(), "{t}");
        let rounds = t["rounds"].as_array().expect("rounds");
        assert!(!rounds.is_empty());
        let secs: Vec<f64> = rounds
            .iter()
            .filter_map(|r| r["seconds"].as_f64())
            .collect();
        assert!(secs.windows(2).all(|p| p[0] <= p[1]), "{secs:?}");
        let accounted: Vec<f64> = rounds
            .iter()
            .filter_map(|r| r["accounted_seconds"].as_f64())
            .collect();
        assert_eq!(accounted.len(), rounds.len());
        assert!(accounted.windows(2).all(|p| p[0] <= p[1]), "{accounted:?}");
        // The trail ends with the final best, and every point was re-measured.
        let trail = t["trail"].as_array().expect("trail");
        assert_eq!(
            trail.last().map(|p| &p["steps"]),
            Some(&t["best_steps"]),
            "{t}"
        );
        assert!(
            trail
                .iter()
                .all(|p| p["remeasured_seconds"].as_f64().is_some_and(|s| s > 0.0)),
            "{t}"
        );
    }
    let records = std::fs::read_dir(dir.join("records"))
        .expect("records")
        .count();
    assert_eq!(
        records, 6,
        "one file per run, one of the re-measurement, one of the trails"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn experiment_on_a_network_builds_and_times_every_run() {
    let dir = std::env::temp_dir().join(format!("tessel-net-exp-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out_dir = dir.to_str().expect("utf-8 path");
    let out = Command::new(env!("CARGO_BIN_EXE_tessel"))
        .args([
            "experiment",
            "--network",
            "tiny-cnn",
            "--trials-per-task",
            "4",
            "--seeds",
            "2",
            "--configs",
            "both",
            "--threads",
            "1",
            "--population",
            "16",
            "--measures-per-round",
            "4",
            "--isolation",
            "none",
            "--timing-rounds",
            "2",
            "--timing-repeats",
            "1",
            "--out",
            out_dir,
            "--json",
        ])
        .output()
        .expect("tessel runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("time-to-reach") && stdout.contains("measured ms"),
        "{stdout}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("output")).expect("last line is JSON");
    assert_eq!(summary["network"], "tiny-cnn");
    let configs: Vec<&str> = summary["configs"]
        .as_array()
        .expect("configs")
        .iter()
        .filter_map(|c| c["config"].as_str())
        .collect();
    assert_eq!(configs, ["baseline", "both"]);
    let runs = summary["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 4);
    let tasks = summary["tasks"].as_u64().expect("tasks");
    for r in runs {
        assert_eq!(r["trials"].as_u64(), Some(4 * tasks), "{r}");
        assert!(
            r["measured_seconds"].as_f64().is_some_and(|s| s > 0.0),
            "{r}"
        );
        // Each run's records build the network with `tessel run-network --records`.
        let records = dir.join(r["records"].as_str().expect("records"));
        assert!(records.exists(), "{}", records.display());
    }
    let first = dir.join(runs[0]["records"].as_str().expect("records"));
    // Candidates are measured as tune-network measures them: tiny-cnn's few weights and its
    // activations in the shared cache (warm where the CPU cannot demote cache lines).
    let shared = tessel_measure::options::Residence::Shared
        .supported()
        .is_ok();
    let placed = if shared { "shared" } else { "warm" };
    let isolation = summary["isolation"].as_str().expect("isolation");
    assert!(
        isolation.ends_with(&format!("weights {placed}, activations {placed}")),
        "{isolation}"
    );
    let text = std::fs::read_to_string(&first).expect("records");
    let record: serde_json::Value =
        serde_json::from_str(text.lines().next().expect("a record")).expect("JSON record");
    let timing = record.to_string();
    assert_eq!(
        timing.contains("\"activations\":\"shared\""),
        shared,
        "{timing}"
    );
    let run = Command::new(env!("CARGO_BIN_EXE_tessel"))
        .args([
            "run-network",
            "tiny-cnn",
            "--threads",
            "1",
            "--repeat",
            "2",
            "--records",
        ])
        .arg(&first)
        .output()
        .expect("tessel runs");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(dir.join("report.md").exists() && dir.join("summary.json").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn experiment_needs_workloads_or_a_network() {
    let out = Command::new(env!("CARGO_BIN_EXE_tessel"))
        .args(["experiment", "--seeds", "1"])
        .output()
        .expect("tessel runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--network") || err.contains("<SPECS>"),
        "{err}"
    );
}
