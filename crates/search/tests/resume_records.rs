//! Resuming from a records file takes only the records measured under the search's own code
//! generation settings: a timing from another thread count, with micro-kernels off, or from
//! an older code generator (revision) would not hold for the programs this search compiles.

use std::path::PathBuf;
use std::sync::Arc;
use tessel_measure::records::Record;
use tessel_measure::{
    Candidate, MeasureOptions, MeasureResult, PhaseTimes, RecordKey, RecordWriter, Target, Timing,
};
use tessel_search::harness::resume_records;

fn temp_records(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tessel-resume-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("records.jsonl");
    let _ = std::fs::remove_file(&path);
    path
}

#[test]
fn resume_skips_records_of_other_codegen_settings_and_counts_them() {
    let spec = "gmm:b=1,n=8,m=8,k=8";
    let w = tessel_workloads::lookup(spec).expect("workload");
    let dag = Arc::new(w.dag.clone());
    let other = tessel_workloads::lookup("gmm:b=1,n=16,m=8,k=8").expect("workload");
    let ours = MeasureOptions::with_threads(1);
    let mut two_threads = ours.clone();
    two_threads.codegen.threads = 2;
    let mut plain = ours.clone();
    plain.codegen.isa = tessel_measure::options::Isa::Generic;
    let mut old_revision = ours.clone();
    old_revision.codegen.revision = 0;
    let mut shared_weights = ours.clone();
    shared_weights.timing.weights = tessel_measure::options::Residence::Shared;

    let target = Target::host();
    let timed = |ms: f64| MeasureResult {
        timing: Timing::from_costs(vec![ms * 1e-3], 1),
        error: None,
        phases: PhaseTimes::default(),
    };
    let record = |w: &tessel_workloads::Workload, options: &MeasureOptions, ms: f64| {
        let c = Candidate::new(w.spec(), Vec::new());
        Record::with_key(RecordKey::new(&c, options, &target), &c, &timed(ms))
    };
    let path = temp_records("codegen");
    let mut writer = RecordWriter::open(&path).expect("opens");
    writer
        .append(&[
            record(&w, &ours, 3.0),
            record(&w, &two_threads, 1.0),
            record(&w, &plain, 9.0),
            record(&w, &old_revision, 2.0),
            record(&other, &ours, 0.5),
            record(&w, &ours, 4.0),
            record(&w, &shared_weights, 6.0),
        ])
        .expect("writes");
    drop(writer);

    let log = resume_records(&path, &w, &dag, &ours).expect("reads");
    let times: Vec<Option<f64>> = log.states.iter().map(|s| s.1).collect();
    assert_eq!(times, vec![Some(3e-3), Some(4e-3)]);
    assert_eq!(log.other_codegen, 4);
    assert_eq!(log.bad_lines, 0);

    // The same file seen by a two-thread search resumes only the two-thread record.
    let log = resume_records(&path, &w, &dag, &two_threads).expect("reads");
    assert_eq!(log.states.len(), 1);
    assert_eq!(log.states[0].1, Some(1e-3));
    assert_eq!(log.other_codegen, 5);

    // A search whose weights are moved to the shared cache before every call resumes only
    // the record measured so: a warm reading would look faster than it can be.
    let log = resume_records(&path, &w, &dag, &shared_weights).expect("reads");
    let times: Vec<Option<f64>> = log.states.iter().map(|s| s.1).collect();
    assert_eq!(times, vec![Some(6e-3)]);

    // No file: nothing to resume, nothing skipped.
    let missing = path.with_file_name("missing.jsonl");
    let log = resume_records(&missing, &w, &dag, &ours).expect("no file is fine");
    assert!(log.states.is_empty() && log.other_codegen == 0);
}

#[test]
fn records_of_one_target_isa_never_resume_into_a_search_for_another() {
    use tessel_measure::options::Isa;
    let spec = "gmm:b=1,n=8,m=8,k=8";
    let w = tessel_workloads::lookup(spec).expect("workload");
    let dag = Arc::new(w.dag.clone());
    let with_isa = |isa: Isa| {
        let mut o = MeasureOptions::with_threads(1);
        o.codegen.isa = isa;
        o
    };
    let target = Target::host();
    let record = |options: &MeasureOptions, ms: f64| {
        let c = Candidate::new(w.spec(), Vec::new());
        let r = MeasureResult {
            timing: Timing::from_costs(vec![ms * 1e-3], 1),
            error: None,
            phases: PhaseTimes::default(),
        };
        Record::with_key(RecordKey::new(&c, options, &target), &c, &r)
    };
    let path = temp_records("isa");
    let mut writer = RecordWriter::open(&path).expect("opens");
    writer
        .append(&[
            record(&with_isa(Isa::Avx2), 2.0),
            record(&with_isa(Isa::Avx512), 1.0),
            record(&with_isa(Isa::Generic), 5.0),
        ])
        .expect("writes");
    drop(writer);
    // Records written before the ISA joined the key: `micro_kernels` on reads as avx2, off
    // as generic.
    let text = std::fs::read_to_string(&path).expect("reads");
    let old: String = text
        .lines()
        .filter(|l| !l.contains(r#""isa":"avx512""#))
        .map(|l| {
            format!(
                "{}\n",
                l.replace(r#""isa":"avx2""#, r#""micro_kernels":true"#)
                    .replace(r#""isa":"generic""#, r#""micro_kernels":false"#)
            )
        })
        .collect();
    assert_eq!(old.matches("micro_kernels").count(), 2, "{old}");
    std::fs::write(&path, text + &old).expect("writes");

    for (isa, want) in [
        (Isa::Avx2, vec![Some(2e-3), Some(2e-3)]),
        (Isa::Avx512, vec![Some(1e-3)]),
        (Isa::Generic, vec![Some(5e-3), Some(5e-3)]),
    ] {
        let log = resume_records(&path, &w, &dag, &with_isa(isa)).expect("reads");
        let times: Vec<Option<f64>> = log.states.iter().map(|s| s.1).collect();
        assert_eq!(times, want, "{isa}");
        assert_eq!(log.other_codegen, 5 - want.len(), "{isa}");
        assert_eq!(log.bad_lines, 0);
    }
}
