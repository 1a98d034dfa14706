//! Numeric options are checked with readable errors: zero where at least one is needed,
//! negative numbers (read as numbers, not as unknown flags), fractions and junk.

use std::process::Command;

/// Runs `tessel tune gmm-1 <args>` expecting a usage error; returns stderr.
fn refused(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tessel"))
        .args(["tune", "gmm:b=1,n=8,m=8,k=8", "--isolation", "none"])
        .args(args)
        .output()
        .expect("tessel runs");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{args:?} was accepted: {stderr}"
    );
    assert!(out.stdout.is_empty(), "{args:?} did work");
    stderr
}

#[test]
fn zero_where_one_is_needed_is_refused_naming_the_option() {
    for opt in [
        "--threads",
        "--trials",
        "--measures-per-round",
        "--population",
    ] {
        let err = refused(&[opt, "0"]);
        assert!(err.contains(opt), "{opt}: {err}");
        assert!(err.contains("must be at least 1"), "{opt}: {err}");
    }
}

#[test]
fn negative_numbers_are_read_as_numbers_and_refused_readably() {
    for opt in [
        "--threads",
        "--trials",
        "--population",
        "--confirm",
        "--seed",
    ] {
        let err = refused(&[opt, "-1"]);
        assert!(err.contains(opt), "{opt}: {err}");
        assert!(!err.contains("unexpected argument"), "{opt}: {err}");
        assert!(err.contains("-1"), "{opt}: {err}");
    }
    let err = refused(&["--time-budget", "-5"]);
    assert!(
        err.contains("--time-budget must be a positive number"),
        "{err}"
    );
}

#[test]
fn fractions_and_junk_are_not_whole_numbers() {
    for (opt, v) in [
        ("--trials", "1.5"),
        ("--threads", "two"),
        ("--population", ""),
    ] {
        let err = refused(&[opt, v]);
        assert!(err.contains("not a whole number"), "{opt} {v}: {err}");
    }
}
