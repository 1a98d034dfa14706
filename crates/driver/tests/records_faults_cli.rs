//! The records survive every fault, end to end: an unwritable records file or a full disk
//! stops `tune` with exit code 3 and a message on stderr (and says so in `--json`); a
//! SIGTERM stops it after writing every measured candidate; a second `tune` on the same
//! file is refused; `records distill -o` on a full disk leaves the old output intact;
//! invalid lines are skipped with a warning naming the line and the field; a replay that
//! times nothing is not "ok".

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use tessel_measure::records::{parse_records, read_records};
use tessel_measure::{
    Candidate, MeasureOptions, MeasureResult, PhaseTimes, Record, RecordWriter, Target, Timing,
};

const SPEC: &str = "gmm:b=1,n=16,m=16,k=16";
const BIN: &str = env!("CARGO_BIN_EXE_tessel");

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tessel-faults-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let p = dir.join(name);
    let _ = std::fs::remove_file(&p);
    p
}

/// `tessel tune SPEC` with small sizes, in process, one thread, and `extra` arguments.
fn tune_args<'a>(trials: &'a str, records: &'a str) -> Vec<&'a str> {
    vec![
        "tune",
        SPEC,
        "--trials",
        trials,
        "--threads",
        "1",
        "--population",
        "64",
        "--isolation",
        "none",
        "--records",
        records,
        "--json",
    ]
}

/// Runs `tessel args` under `sh` with a file size limit of `blocks` (SIGXFSZ ignored, so a
/// write past the limit fails with EFBIG as on a full disk).
fn with_file_limit(blocks: u32, args: &[&str]) -> Output {
    let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
    let script = format!(
        "trap '' XFSZ; ulimit -f {blocks}; exec '{BIN}' {}",
        quoted.join(" ")
    );
    Command::new("sh")
        .args(["-c", &script])
        .output()
        .expect("sh runs")
}

fn last_json(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("last line not JSON ({e}):\n{stdout}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_string()
}

/// A successful record of SPEC's default schedule with median `median` (seconds).
fn record(median: f64) -> Record {
    let c = Candidate::new(SPEC, vec![]);
    let result = MeasureResult {
        timing: Timing::from_costs(vec![median; 3], 10),
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

fn count_lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

#[test]
fn an_unwritable_records_file_stops_tune_with_an_error_on_stderr() {
    let out = Command::new(BIN)
        .args(tune_args("64", "/proc/version"))
        .output()
        .expect("tessel runs");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "stderr: {stderr}");
    assert!(
        stderr.contains("records could not be written to /proc/version"),
        "{stderr}"
    );
    let summary = last_json(&out);
    assert!(summary["stopped"]["records_error"].is_string(), "{summary}");
    assert_eq!(summary["stop_reason"], "halted");
    let trials = summary["trials"].as_u64().expect("trials");
    assert!(trials < 64, "it went on measuring: {summary}");
    assert_eq!(summary["stopped"]["unsaved"].as_u64(), Some(trials));
}

#[test]
fn a_full_disk_stops_tune_and_every_written_line_is_whole() {
    let path = temp("full.jsonl");
    let rec = path.to_str().expect("utf-8");
    let out = with_file_limit(16, &tune_args("128", rec));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "stderr: {stderr}");
    assert!(stderr.contains("records could not be written"), "{stderr}");
    let summary = last_json(&out);
    let log = read_records(&path).expect("read");
    assert!(log.problems.is_empty(), "a cut line: {:?}", log.problems);
    assert!(!log.records.is_empty());
    let trials = summary["trials"].as_u64().expect("trials") as usize;
    let unsaved = summary["stopped"]["unsaved"].as_u64().expect("unsaved") as usize;
    assert!(trials < 128, "{summary}");
    assert_eq!(log.records.len() + unsaved, trials, "{summary}");
    assert!(unsaved <= 4, "more than one chunk unsaved: {summary}");
}

#[test]
fn sigterm_stops_tune_after_writing_every_measured_candidate() {
    let path = temp("term.jsonl");
    let rec = path.to_str().expect("utf-8");
    let child = Command::new(BIN)
        .args(tune_args("100000", rec))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tessel starts");
    let deadline = Instant::now() + Duration::from_secs(120);
    while count_lines(&path) < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let out = child.wait_with_output().expect("tessel exits");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "stderr: {stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let summary = last_json(&out);
    assert_eq!(summary["stop_reason"], "halted");
    assert_eq!(summary["stopped"]["interrupted"], true);
    let log = read_records(&path).expect("read");
    assert!(log.problems.is_empty(), "{:?}", log.problems);
    assert_eq!(
        log.records.len() as u64,
        summary["trials"].as_u64().expect("trials"),
        "every measured candidate is in the file"
    );
}

#[test]
fn a_second_tune_on_a_locked_records_file_is_refused() {
    let path = temp("locked.jsonl");
    let holder = RecordWriter::open(&path).expect("first writer");
    let out = Command::new(BIN)
        .args(tune_args("8", path.to_str().expect("utf-8")))
        .output()
        .expect("tessel runs");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("in use by another process"), "{stderr}");
    assert_eq!(count_lines(&path), 0, "nothing was measured into it");
    drop(holder);
}

#[test]
fn distill_on_a_full_disk_leaves_the_old_output_intact() {
    let input = temp("distill-in.jsonl");
    let lines: String = [record(2e-3), record(1e-3)]
        .iter()
        .map(|r| r.to_line() + "\n")
        .collect();
    std::fs::write(&input, lines).expect("write input");
    let output = temp("distill-out.jsonl");
    std::fs::write(&output, "old\n").expect("write old output");
    let out = with_file_limit(
        0,
        &[
            "records",
            "distill",
            input.to_str().expect("utf-8"),
            "-o",
            output.to_str().expect("utf-8"),
        ],
    );
    assert!(!out.status.success(), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("cannot write"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&output).expect("read"), "old\n");
    let dir = output.parent().expect("dir");
    let tmp = std::fs::read_dir(dir)
        .expect("list")
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().contains(".tmp-"));
    assert!(!tmp, "a temporary file was left behind");
}

#[test]
fn a_negative_median_is_skipped_with_a_warning_naming_line_and_field() {
    let path = temp("negative.jsonl");
    let good = record(2e-3).to_line();
    let bad = record(1e-3)
        .to_line()
        .replacen("\"median\":0.001", "\"median\":-1.0", 1);
    assert_ne!(bad, record(1e-3).to_line(), "the edit applied");
    std::fs::write(&path, format!("{good}\n{bad}\n")).expect("write");
    let out = Command::new(BIN)
        .args(["records", "best", path.to_str().expect("utf-8"), "--json"])
        .output()
        .expect("tessel runs");
    assert!(out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains(":2: skipped"), "{stderr}");
    assert!(stderr.contains("timing.median"), "{stderr}");
    let best = last_json(&out);
    let ms = best["best"][0]["median_ms"].as_f64().expect("median");
    assert!((ms - 2.0).abs() < 1e-9, "{best}");
    assert_eq!(
        parse_records(format!("{bad}\n").as_bytes()).records.len(),
        0
    );
}

#[test]
fn a_replay_that_times_nothing_is_not_ok() {
    let path = temp("replay.jsonl");
    std::fs::write(&path, record(1e-3).to_line() + "\n").expect("write");
    let out = Command::new(BIN)
        .args([
            "replay",
            path.to_str().expect("utf-8"),
            "--repeat",
            "0",
            "--isolation",
            "none",
            "--json",
        ])
        .output()
        .expect("tessel runs");
    assert!(!out.status.success(), "{}", text(&out.stdout));
    let summary = last_json(&out);
    assert_eq!(summary["replay"][0]["ok"], false, "{summary}");
    assert!(text(&out.stdout).contains("not timed"));
}
