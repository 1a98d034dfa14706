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
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().expect("output");
    let v: serde_json::Value = serde_json::from_str(last).expect("last line is JSON");
    let sketches = v["sketches"].as_array().expect("sketches");
    assert_eq!(sketches.len(), 3);
    // The cache-write sketches (level 1 and 2 fusion) have a Z.local stage.
    let with_cache = sketches
        .iter()
        .filter(|s| s["text"].as_str().is_some_and(|t| t.contains("Z.local")))
        .count();
    assert_eq!(with_cache, 2, "{stdout}");
}

#[test]
fn sketches_of_a_bad_spec_fail_with_the_reason() {
    let out = tessel(&["sketches", "gmm:b=1,n=8,m=8"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing key `k`"));
}
