//! Helpers shared by the CLI tests.

use std::process::Command;

/// Runs `tessel args`, asserts it succeeded, and returns its stdout.
#[allow(dead_code)] // not every test file uses every helper
pub fn tessel_stdout(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tessel"))
        .args(args)
        .output()
        .expect("tessel runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "tessel {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs `tessel args`, asserts it succeeded, and returns the JSON object of its last stdout
/// line together with the whole stdout.
#[allow(dead_code)] // not every test file uses every helper
pub fn tessel_json(args: &[&str]) -> (serde_json::Value, String) {
    let stdout = tessel_stdout(args);
    let last = stdout.lines().last().expect("some output").to_string();
    (
        serde_json::from_str(&last).expect("last line is JSON"),
        stdout,
    )
}
