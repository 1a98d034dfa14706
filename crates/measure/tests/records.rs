//! Records: written, read back and replayed identically; corrupt and truncated lines are
//! reported and skipped; stats, best-of and distill.

use std::path::PathBuf;
use std::sync::Arc;
use tessel_ir::{lower, rng, testing, State};
use tessel_measure::records::{self, parse_records, read_records, SCHEMA_VERSION};
use tessel_measure::{
    Candidate, ErrorClass, Fault, InProcessRunner, MeasureOptions, Record, RecordWriter, Runner,
    Target,
};

const SPEC: &str = "gmm:b=1,n=32,m=32,k=32";

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tessel-records-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    let _ = std::fs::remove_file(&p);
    p
}

fn options() -> MeasureOptions {
    let mut o = MeasureOptions::with_threads(1);
    o.timing.repeat = 3;
    o.timing.min_repeat_ms = 0.2;
    o
}

/// Measures random schedules of SPEC (plus a wrong answer) in-process and makes records.
fn measured(seeds: std::ops::Range<u64>) -> (Vec<Candidate>, Vec<Record>) {
    let w = tessel_workloads::lookup(SPEC).unwrap();
    let dag = Arc::new(w.dag.clone());
    let mut batch: Vec<Candidate> = seeds
        .map(|s| {
            let mut st =
                testing::random_state(&dag, &mut rng::seeded(s), &testing::Limits::default());
            st.set_sketch_id(Some(s as u32 % 3));
            Candidate::from_state(&w, &st)
        })
        .collect();
    batch.push(Candidate::new(SPEC, vec![]).with_fault(Fault::WrongAnswer));
    let opts = options();
    let results = InProcessRunner::new(opts.clone()).unwrap().measure(&batch);
    let recs = Record::batch(&batch, &results, &opts, &Target::host());
    (batch, recs)
}

fn nest_text(spec: &str, steps: &[tessel_ir::Step]) -> String {
    let w = tessel_workloads::lookup(spec).unwrap();
    let state = State::replay(Arc::new(w.dag), steps).unwrap();
    lower::lower(&state).unwrap().to_string()
}

#[test]
fn records_round_trip_and_replay_to_the_same_loop_nest() {
    let (batch, recs) = measured(0..6);
    let path = temp("round-trip.jsonl");
    let mut writer = RecordWriter::open(&path).unwrap();
    writer.append(&recs[..3]).unwrap();
    writer.append(&recs[3..]).unwrap();
    let log = read_records(&path).unwrap();
    assert!(log.problems.is_empty(), "{:?}", log.problems);
    assert_eq!(log.records, recs);
    assert_eq!(log.lines, (1..=recs.len()).collect::<Vec<_>>());
    let w = tessel_workloads::lookup(SPEC).unwrap();
    for (r, c) in log.records.iter().zip(&batch) {
        assert_eq!(r.v, SCHEMA_VERSION);
        assert_eq!(r.key.workload, w.spec());
        assert_eq!(r.key.workload_key, w.dag.workload_key());
        assert_eq!(r.key.tessel, env!("CARGO_PKG_VERSION"));
        assert_eq!(r.key.target, Target::host());
        assert_eq!(r.key.codegen.threads, 1);
        assert_eq!(r.sketch, c.sketch);
        assert!(r.timestamp > 1.6e9);
        // Same step log → the same loop nest text, character for character.
        assert_eq!(
            nest_text(&r.key.workload, &r.steps),
            nest_text(SPEC, &c.steps)
        );
        assert_eq!(r.candidate().steps, c.steps);
    }
    let wrong = log.records.last().unwrap();
    assert_eq!(wrong.error_class(), Some(ErrorClass::WrongAnswer));
    assert!(wrong.timing.is_none() && wrong.cost().is_none());
    // The best record re-measures fine from what was read back.
    let best = records::best_per_workload(&log.records);
    assert_eq!(best.len(), 1);
    let again = InProcessRunner::new(options())
        .unwrap()
        .measure(&[best[0].candidate()]);
    assert!(again[0].is_ok(), "{:?}", again[0].error);
}

#[test]
fn corrupt_lines_are_reported_and_skipped() {
    let (_, recs) = measured(10..13);
    let good: Vec<String> = recs.iter().map(Record::to_line).collect();
    let mut bytes = Vec::new();
    bytes.extend_from_slice(format!("{}\n", good[0]).as_bytes()); // 1
    bytes.extend_from_slice(b"this is not json\n"); // 2
    bytes.extend_from_slice(b"\n"); // 3: blank, skipped silently
    bytes.extend_from_slice(format!("{}\n", good[1].replacen("\"v\":1", "\"v\":99", 1)).as_bytes()); // 4
    bytes.extend_from_slice(b"{\"v\":1,\"key\":{}}\n"); // 5
    bytes.extend_from_slice(b"\xff\xfe{}\n"); // 6
    bytes.extend_from_slice(format!("{}\n", good[1]).as_bytes()); // 7
    bytes.extend_from_slice(format!("{}\n", good[2]).as_bytes()); // 8
    let half = &good[3][..good[3].len() / 2];
    bytes.extend_from_slice(half.as_bytes()); // 9: truncated, no newline
    let log = parse_records(&bytes);
    assert_eq!(
        log.records,
        vec![recs[0].clone(), recs[1].clone(), recs[2].clone()]
    );
    assert_eq!(log.lines, vec![1, 7, 8]);
    let lines: Vec<usize> = log.problems.iter().map(|p| p.line).collect();
    assert_eq!(lines, vec![2, 4, 5, 6, 9], "{:?}", log.problems);
    assert!(log.problems[0].reason.contains("not JSON"));
    assert!(log.problems[1].reason.contains("schema version 99"));
    assert!(log.problems[2].reason.contains("not a record"));
    assert!(log.problems[3].reason.contains("UTF-8"));
    assert!(log.problems[4].reason.contains("truncated"));
    // Only a truncated last line: the rest is intact.
    let mut cut = format!("{}\n{}\n", good[0], good[1]).into_bytes();
    cut.extend_from_slice(&good[2].as_bytes()[..10]);
    let log = parse_records(&cut);
    assert_eq!(log.records.len(), 2);
    assert_eq!(log.problems.len(), 1);
    assert!(parse_records(b"").records.is_empty());
}

#[test]
fn appending_after_a_torn_write_starts_a_new_line() {
    let (_, recs) = measured(20..22);
    let path = temp("torn.jsonl");
    let line = recs[0].to_line();
    // A writer killed in the middle of a batch leaves a partial line.
    std::fs::write(&path, format!("{line}\n{}", &line[..40])).unwrap();
    let mut writer = RecordWriter::open(&path).unwrap();
    writer.append(&recs[1..]).unwrap();
    let log = read_records(&path).unwrap();
    assert_eq!(log.records.len(), recs.len());
    assert_eq!(log.problems.len(), 1);
    assert_eq!(log.problems[0].line, 2);
    assert!(read_records(temp("missing.jsonl")).is_err());
}

#[test]
fn stats_best_and_distill() {
    let (_, mut recs) = measured(30..36);
    // A second workload with one good record.
    let mut other = recs[0].clone();
    other.key.workload = "gmm:b=1,n=16,m=16,k=16".into();
    other.key.workload_key = "0123456789abcdef".into();
    recs.push(other);
    let s = records::stats(&recs);
    assert_eq!(s.records, 8);
    assert_eq!(s.workloads, 2);
    assert_eq!(s.errors["wrong_answer"], 1);
    assert_eq!(s.ok + s.errors.values().sum::<usize>(), 8);
    let best = records::best_per_workload(&recs);
    assert_eq!(best.len(), 2);
    let min = recs[..6]
        .iter()
        .filter_map(Record::cost)
        .fold(f64::INFINITY, f64::min);
    assert_eq!(best[0].cost(), Some(min));
    let top3 = records::best_n(&recs, 3);
    assert_eq!(top3.len(), 3.min(s.ok - 1) + 1);
    assert!(top3.windows(2).take(2).all(|w| w[0].cost() <= w[1].cost()));
    let path = temp("distilled.jsonl");
    records::write_records(&path, &top3).unwrap();
    let log = read_records(&path).unwrap();
    assert_eq!(log.records.len(), top3.len());
    assert!(log.records.iter().all(|r| r.error.is_none()));
}
