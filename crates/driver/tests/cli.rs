//! Runs the `tessel` binary: `workloads` lists and shows workloads, and bad specs fail
//! with exit code 2 and a message on stderr.

use serde_json::Value;
use std::process::{Command, Output};

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

#[test]
fn workloads_json_lists_every_named_workload() {
    let out = tessel(&["workloads", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = last_json(&out);
    let list = v["workloads"].as_array().expect("a workloads array");
    let names: Vec<&str> = list.iter().filter_map(|w| w["name"].as_str()).collect();
    assert_eq!(names, tessel_workloads::registry_names());
    for w in list {
        let name = w["name"].as_str().unwrap_or("?");
        let flop = w["flop"].as_u64().unwrap_or(0);
        assert!(flop > 0, "{name} has no FLOPs");
        assert_eq!(
            flop,
            tessel_workloads::lookup(name).unwrap().flop(),
            "{name}"
        );
        assert!(
            w["spec"].as_str().is_some_and(|s| s.contains(':')),
            "{name}"
        );
        assert_eq!(w["key"].as_str().map(str::len), Some(16), "{name}");
        assert!(w["params"].is_object(), "{name}");
    }
    let gmm3 = list.iter().find(|w| w["name"] == "gmm-3").unwrap();
    assert_eq!(gmm3["flop"].as_u64(), Some(2 * 512 * 512 * 512));
    assert_eq!(gmm3["spec"], "gmm:b=1,n=512,m=512,k=512");
    // The table comes first, one row per workload.
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text
        .lines()
        .any(|l| l.starts_with("resnet50-conv-23 ") && l.trim_end().ends_with("0.231")));
}

#[test]
fn workloads_batch_scales_the_list() {
    let v = last_json(&tessel(&["workloads", "--batch", "16", "--json"]));
    let list = v["workloads"].as_array().unwrap();
    let c2d1 = list.iter().find(|w| w["name"] == "c2d-1").unwrap();
    assert_eq!(c2d1["params"]["n"], 16);
    assert_eq!(
        c2d1["flop"].as_u64(),
        Some(16 * 2 * 112 * 112 * 64 * 3 * 7 * 7)
    );
}

#[test]
fn workloads_shows_one_workload() {
    let out = tessel(&["workloads", "gmm:b=1,n=64,m=32,k=16", "--json"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("spec:  gmm:b=1,n=64,m=32,k=16"), "{text}");
    assert!(text.contains("Z[b, i, j] = sum("), "{text}");
    let v = last_json(&out);
    assert_eq!(v["workload"]["flop"].as_u64(), Some(2 * 64 * 32 * 16));
    assert!(v["workload"]["dag"]
        .as_str()
        .is_some_and(|d| d.contains("X = placeholder[1, 64, 16]")));
    let named = last_json(&tessel(&[
        "workloads",
        "convlayer-2",
        "--batch",
        "2",
        "--json",
    ]));
    assert_eq!(named["workload"]["name"], "convlayer-2");
    assert_eq!(named["workload"]["params"]["n"], 2);
}

#[test]
fn bad_spec_exits_2_with_the_message_on_stderr() {
    let out = tessel(&["workloads", "gmm:b=1,n=8,m=8,k=8,zz=1"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown key `zz`"), "{err}");
    assert!(out.stdout.is_empty());
    let out = tessel(&["workloads", "conv9d:n=1"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown op `conv9d`") && err.contains("c2d"),
        "{err}"
    );
    let out = tessel(&["workloads", "softmax:m=2,n=2", "--batch", "4"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_reader_that_stops_early_ends_the_command_quietly() {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::process::Stdio;
    // `tessel sketches resnet50-conv-3 | head -c 8`: ~18 KB of output into a 4 KiB pipe whose
    // reader stops after 8 bytes, so the command's later writes find the pipe broken.
    let (mut reader, writer) = std::io::pipe().expect("a pipe");
    // SAFETY: F_SETPIPE_SZ on a pipe descriptor we own; it only sets the pipe's capacity.
    let size = unsafe { libc::fcntl(reader.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
    assert!(size >= 4096, "cannot size the pipe");
    let child = Command::new(env!("CARGO_BIN_EXE_tessel"))
        .args(["sketches", "resnet50-conv-3"])
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run the tessel binary");
    let mut first = [0u8; 8];
    reader
        .read_exact(&mut first)
        .expect("the first bytes of the listing");
    drop(reader);
    let out = child.wait_with_output().expect("tessel ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}, stderr: {stderr}",
        out.status
    );
    assert!(stderr.is_empty(), "stderr: {stderr}");
}
