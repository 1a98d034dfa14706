//! Records that survive faults and cannot lie: a line is validated field by field on read,
//! a failed append leaves no partial line, a replaced file is never left half written, and
//! one writer at a time holds a file.

use serde_json::{json, Value};
use std::path::PathBuf;
use tessel_measure::records::{parse_records, write_records};
use tessel_measure::{
    Candidate, HarnessError, MeasureOptions, MeasureResult, PhaseTimes, Record, RecordWriter,
    Target, Timing,
};

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tessel-records-hard-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let p = dir.join(name);
    let _ = std::fs::remove_file(&p);
    p
}

/// A well-formed successful record (no measurement needed).
fn record(median: f64) -> Record {
    let c = Candidate::new("gmm:b=1,n=8,m=8,k=8", vec![]);
    let result = MeasureResult {
        timing: Timing::from_costs(vec![median, median * 1.01, median * 0.99], 10),
        error: None,
        phases: PhaseTimes::default(),
    };
    Record::new(
        &c,
        &result,
        &MeasureOptions::with_threads(1),
        &Target::host(),
    )
}

/// The record's line with `edit` applied to its JSON.
fn edited(edit: impl FnOnce(&mut Value)) -> String {
    let mut v: Value = serde_json::from_str(&record(1e-3).to_line()).expect("json");
    edit(&mut v);
    v.to_string()
}

/// Parses one line; returns the problem's reason (panics if the line is accepted).
fn rejected(line: &str) -> String {
    let log = parse_records(format!("{line}\n").as_bytes());
    assert!(log.records.is_empty(), "accepted: {line}");
    assert_eq!(log.problems.len(), 1);
    assert_eq!(log.problems[0].line, 1);
    log.problems[0].reason.clone()
}

#[test]
fn a_good_record_is_accepted() {
    let log = parse_records(format!("{}\n", record(2e-3).to_line()).as_bytes());
    assert_eq!(log.records.len(), 1, "{:?}", log.problems);
}

#[test]
fn negative_zero_and_huge_costs_are_rejected_naming_the_field() {
    for (field, bad) in [
        ("median", json!(-1.0)),
        ("median", json!(0.0)),
        ("min", json!(-5e-3)),
        ("median", json!(1e300)),
    ] {
        let line = edited(|v| v["timing"][field] = bad.clone());
        let why = rejected(&line);
        assert!(
            why.contains(&format!("timing.{field}")),
            "{field}={bad}: {why}"
        );
    }
    let line = edited(|v| v["timing"]["costs"][1] = json!(-2.0));
    assert!(rejected(&line).contains("timing.costs[1]"));
    let line = edited(|v| v["timing"]["costs"] = json!([]));
    assert!(rejected(&line).contains("timing.costs"));
    // A non-finite cost is written as null by serde_json: not a record.
    let line = edited(|v| v["timing"]["median"] = Value::Null);
    assert!(rejected(&line).contains("not a record"));
    // The min above the median is a lie too.
    let line = edited(|v| v["timing"]["min"] = json!(5e-3));
    assert!(rejected(&line).contains("timing.min"));
}

#[test]
fn repeat_number_and_threads_out_of_bounds_are_rejected() {
    for (path, bad, field) in [
        (("key", "timing", "repeat"), json!(0), "key.timing.repeat"),
        (
            ("key", "timing", "repeat"),
            json!(u32::MAX),
            "key.timing.repeat",
        ),
        (("key", "timing", "number"), json!(0), "key.timing.number"),
        (
            ("key", "codegen", "threads"),
            json!(0),
            "key.codegen.threads",
        ),
        (
            ("key", "timing", "min_repeat_ms"),
            json!(-1.0),
            "key.timing.min_repeat_ms",
        ),
    ] {
        let line = edited(|v| v[path.0][path.1][path.2] = bad.clone());
        let why = rejected(&line);
        assert!(why.contains(field), "{field}={bad}: {why}");
    }
    let line = edited(|v| v["timing"]["number"] = json!(0));
    assert!(rejected(&line).contains("timing.number"));
    let line = edited(|v| v["timestamp"] = json!(-3.0));
    assert!(rejected(&line).contains("timestamp"));
    let line = edited(|v| v["phases"]["compile_ms"] = json!(-3.0));
    assert!(rejected(&line).contains("phases.compile_ms"));
    let line = edited(|v| v["key"]["timing"]["repeat"] = json!("5"));
    assert!(rejected(&line).contains("not a record"));
}

#[test]
fn a_record_with_neither_costs_nor_error_is_rejected() {
    let line = edited(|v| v["timing"] = Value::Null);
    assert!(rejected(&line).contains("neither"));
}

#[test]
fn a_bad_schema_version_message_says_what_it_found() {
    for (bad, shown) in [
        (json!(-1), "-1"),
        (json!("1"), "\"1\""),
        (json!(1e300), "1e+300"),
        (json!(2), "2"),
        (json!(null), "null"),
    ] {
        let line = edited(|v| v["v"] = bad.clone());
        let why = rejected(&line);
        assert!(
            why.contains(&format!("schema version {shown} is not supported")),
            "{bad}: {why}"
        );
        assert!(!why.contains("no schema version"), "{why}");
    }
    let line = edited(|v| {
        if let Some(m) = v.as_object_mut() {
            m.remove("v");
        }
    });
    assert!(rejected(&line).contains("no schema version `v`"));
}

#[test]
fn a_failed_append_reports_the_error_and_leaves_no_partial_line() {
    // /dev/full: every write fails with "no space left on device".
    let mut w = RecordWriter::open("/dev/full").expect("open /dev/full");
    let err = w
        .append(&[record(1e-3)])
        .expect_err("a full disk is an error");
    assert!(err.to_string().contains("cannot append 1 record"), "{err}");
}

#[test]
fn a_second_writer_on_the_same_file_is_refused_until_the_first_closes() {
    let path = temp("locked.jsonl");
    let first = RecordWriter::open(&path).expect("first writer");
    match RecordWriter::open(&path) {
        Err(HarnessError::Locked(p)) => assert!(p.contains("locked.jsonl")),
        other => panic!("second writer: {other:?}"),
    }
    let msg = HarnessError::Locked(path.display().to_string()).to_string();
    assert!(msg.contains("in use by another process"), "{msg}");
    drop(first);
    RecordWriter::open(&path).expect("free again after the first closed");
}

#[test]
fn write_records_replaces_atomically_and_keeps_the_old_file_on_failure() {
    let path = temp("distilled.jsonl");
    let r = record(1e-3);
    write_records(&path, &[&r]).expect("write");
    let first = std::fs::read_to_string(&path).expect("read");
    assert_eq!(parse_records(first.as_bytes()).records.len(), 1);
    // A target whose folder does not exist: the temporary file cannot be made, nothing
    // is written, and the error names the file.
    let bad = temp("no-such-dir").join("x.jsonl");
    let err = write_records(&bad, &[&r]).expect_err("no folder");
    assert!(err.to_string().contains("x.jsonl"), "{err}");
    // Replacing leaves no temporary file behind.
    write_records(&path, &[&r, &r]).expect("replace");
    let dir = path.parent().expect("dir");
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .expect("list")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let text = std::fs::read_to_string(&path).expect("read");
    assert_eq!(parse_records(text.as_bytes()).records.len(), 2);
}
