//! Records: one JSON object per line per measured candidate, appended batch by batch.
//!
//! A record holds a schema version `v`, a complete [`RecordKey`] (workload key and canonical
//! spec, target CPU and features, Tessel version, codegen options, timing and verification
//! settings), the step log, the sketch id, the costs or the error, where the time went, and
//! a Unix timestamp:
//!
//! ```text
//! {"v":1,"key":{"workload":"gmm:b=1,n=64,m=64,k=64","workload_key":"5c0ffee...","target":{"arch":"x86_64",
//!  "cpu":"AMD EPYC","features":["avx","avx2","fma",...],"cores":2},"tessel":"0.1.0","codegen":{"threads":2,
//!  "fma":true},"timing":{"warmup":1,"number":1,"repeat":5,"min_repeat_ms":5.0,"flush_cache":false},
//!  "verify":{"enabled":true,"seed":8279521,"atol":0.001,"rtol":0.001}},"steps":[{"step":"split",...}],
//!  "sketch":null,"timing":{"costs":[2.1e-5,...],"number":240,"median":2.1e-5,"min":2.0e-5,"cv":0.01},
//!  "error":null,"phases":{...},"timestamp":1767225600.25}
//! ```
//!
//! A [`RecordWriter`] holds an advisory lock on its file (one writer per file).
//! [`RecordWriter::append`] writes a whole batch with one `write` and flushes it, so a
//! `kill -9` loses at most the batch in flight (and a partly written last line, which the
//! reader tolerates and the next writer terminates). [`read_records`] never fails on a bad
//! line: it returns the good records and a list of [`LineProblem`]s.

use crate::candidate::Candidate;
use crate::error::{ErrorClass, HarnessError, MeasureError};
use crate::options::{CodegenSettings, MeasureOptions, TimingSettings, VerifySettings};
use crate::result::{MeasureResult, PhaseTimes, Timing};
use crate::target::Target;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};
use tessel_ir::Step;

/// The schema version of records this crate writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// Everything a cost depends on besides the schedule: two records are comparable when their
/// keys are equal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordKey {
    /// The workload's canonical spec (`gmm:b=1,n=512,m=512,k=512`), or the spec as given when
    /// it could not be looked up.
    pub workload: String,
    /// The DAG's workload key (16 hex digits; empty when the spec could not be looked up).
    pub workload_key: String,
    /// The machine.
    pub target: Target,
    /// The Tessel version that measured.
    pub tessel: String,
    /// Code generation options.
    pub codegen: CodegenSettings,
    /// Timing settings.
    pub timing: TimingSettings,
    /// Verification settings.
    pub verify: VerifySettings,
}

impl RecordKey {
    /// The key of a candidate measured with `options` on `target`.
    pub fn new(candidate: &Candidate, options: &MeasureOptions, target: &Target) -> RecordKey {
        let (workload, workload_key) = match tessel_workloads::lookup(&candidate.workload) {
            Ok(w) => (w.spec(), w.dag.workload_key()),
            Err(_) => (candidate.workload.clone(), String::new()),
        };
        RecordKey {
            workload,
            workload_key,
            target: target.clone(),
            tessel: env!("CARGO_PKG_VERSION").to_string(),
            codegen: options.codegen.clone(),
            timing: options.timing.clone(),
            verify: options.verify.clone(),
        }
    }
}

/// One measured candidate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Schema version ([`SCHEMA_VERSION`]).
    pub v: u32,
    /// What the cost depends on besides the schedule.
    pub key: RecordKey,
    /// The step log.
    pub steps: Vec<Step>,
    /// The sketch the state came from, if any.
    pub sketch: Option<u32>,
    /// The costs, if it ran.
    pub timing: Option<Timing>,
    /// The error, if it failed.
    pub error: Option<MeasureError>,
    /// Where the time went (ms).
    pub phases: PhaseTimes,
    /// When it was measured (seconds since the Unix epoch).
    pub timestamp: f64,
    /// True for a search's final confirmation: the program measured again in a fresh worker
    /// process after the search, its costs pooled over every round
    /// (`tessel_search::confirm`). Such a record is the figure to trust for its program:
    /// [`best_n`] prefers them, and a resumed search takes its time for the program.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub confirmed: bool,
}

impl Record {
    /// The record of `candidate` measured with `options` on `target`, stamped now.
    pub fn new(
        candidate: &Candidate,
        result: &MeasureResult,
        options: &MeasureOptions,
        target: &Target,
    ) -> Record {
        Record::with_key(
            RecordKey::new(candidate, options, target),
            candidate,
            result,
        )
    }

    /// The record of `candidate` under a key already made, stamped now.
    pub fn with_key(key: RecordKey, candidate: &Candidate, result: &MeasureResult) -> Record {
        Record {
            v: SCHEMA_VERSION,
            key,
            steps: candidate.steps.clone(),
            sketch: candidate.sketch,
            timing: result.timing.clone(),
            error: result.error.clone(),
            phases: result.phases.clone(),
            timestamp: now(),
            confirmed: false,
        }
    }

    /// Records for a measured batch (keys are computed once per workload spec).
    pub fn batch(
        candidates: &[Candidate],
        results: &[MeasureResult],
        options: &MeasureOptions,
        target: &Target,
    ) -> Vec<Record> {
        let mut keys: BTreeMap<&str, RecordKey> = BTreeMap::new();
        candidates
            .iter()
            .zip(results)
            .map(|(c, r)| {
                let key = keys
                    .entry(c.workload.as_str())
                    .or_insert_with(|| RecordKey::new(c, options, target))
                    .clone();
                Record::with_key(key, c, r)
            })
            .collect()
    }

    /// The candidate to measure this record again (its workload spec, steps and sketch).
    pub fn candidate(&self) -> Candidate {
        Candidate {
            workload: self.key.workload.clone(),
            steps: self.steps.clone(),
            sketch: self.sketch,
            fault: None,
            lowered: None,
        }
    }

    /// The median cost (seconds) of a successful, timed record.
    pub fn cost(&self) -> Option<f64> {
        match (&self.error, &self.timing) {
            (None, Some(t)) if t.median.is_finite() => Some(t.median),
            _ => None,
        }
    }

    /// The error class, if it failed.
    pub fn error_class(&self) -> Option<ErrorClass> {
        self.error.as_ref().map(|e| e.class)
    }

    /// The record as one line of JSON (no newline).
    pub fn to_line(&self) -> String {
        // Records hold only string keys and finite numbers (non-finite ones become null).
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Seconds since the Unix epoch.
fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Appends records to a file, one batch per write.
#[derive(Debug)]
pub struct RecordWriter {
    file: File,
    path: PathBuf,
}

impl RecordWriter {
    /// Opens (creating) `path` for appending. If the file ends in a partial line (a writer
    /// was killed mid-write), a newline is added first so that the next record starts on its
    /// own line.
    pub fn open(path: impl AsRef<Path>) -> Result<RecordWriter, HarnessError> {
        let path = path.as_ref().to_path_buf();
        let ctx = |what: &str| format!("cannot {what} records file {}", path.display());
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| HarnessError::io(ctx("open"), e))?;
        lock_exclusive(&file, &path)?;
        let len = file
            .metadata()
            .map_err(|e| HarnessError::io(ctx("inspect"), e))?
            .len();
        if len > 0 {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::Start(len - 1))
                .and_then(|_| file.read_exact(&mut last))
                .map_err(|e| HarnessError::io(ctx("read"), e))?;
            if last[0] != b'\n' {
                file.write_all(b"\n")
                    .map_err(|e| HarnessError::io(ctx("write"), e))?;
            }
        }
        Ok(RecordWriter { file, path })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends a batch of records with one write, then flushes. If the write fails (a full
    /// disk, a file size limit), the file is cut back to its length before the batch, so
    /// that it never ends in a partial line; the error says the batch was not written.
    pub fn append(&mut self, records: &[Record]) -> Result<(), HarnessError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut text = String::new();
        for r in records {
            text.push_str(&r.to_line());
            text.push('\n');
        }
        let before = self.file.metadata().map(|m| m.len()).ok();
        let written = self
            .file
            .write_all(text.as_bytes())
            .and_then(|()| self.file.flush());
        written.map_err(|e| {
            if let Some(len) = before {
                // Best effort: a file that cannot be cut keeps a partial last line, which
                // the reader reports and the next writer terminates.
                let _ = self.file.set_len(len);
            }
            HarnessError::io(
                format!(
                    "cannot append {} record(s) to {}",
                    records.len(),
                    self.path.display()
                ),
                e,
            )
        })
    }
}

/// Takes the advisory exclusive lock (`flock`) of an open records file, held until the file
/// is closed: one writer per file. A lock held by another process is
/// [`HarnessError::Locked`]; a file system without locks (some network file systems) is
/// written unlocked.
fn lock_exclusive(file: &File, path: &Path) -> Result<(), HarnessError> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(HarnessError::Locked(path.display().to_string()))
        }
        Err(std::fs::TryLockError::Error(e)) if e.kind() == std::io::ErrorKind::Unsupported => {
            Ok(())
        }
        Err(std::fs::TryLockError::Error(e)) => Err(HarnessError::io(
            format!("cannot lock records file {}", path.display()),
            e,
        )),
    }
}

/// A line of a records file that is not a record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineProblem {
    /// 1-based line number.
    pub line: usize,
    /// Why it was skipped.
    pub reason: String,
}

/// What reading a records file gave: the good records and the skipped lines.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RecordLog {
    /// The records, in file order.
    pub records: Vec<Record>,
    /// 1-based line number of each record.
    pub lines: Vec<usize>,
    /// Lines that were skipped, and why.
    pub problems: Vec<LineProblem>,
}

/// Reads a records file. Fails only when the file cannot be read; bad lines are reported in
/// [`RecordLog::problems`].
pub fn read_records(path: impl AsRef<Path>) -> Result<RecordLog, HarnessError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path)
        .map_err(|e| HarnessError::io(format!("cannot read records file {}", path.display()), e))?;
    Ok(parse_records(&bytes))
}

/// Parses the bytes of a records file; never fails. Blank lines are skipped silently; a last
/// line without its newline that does not parse is reported as truncated.
pub fn parse_records(bytes: &[u8]) -> RecordLog {
    let mut log = RecordLog::default();
    let complete = bytes.last().is_none_or(|&b| b == b'\n');
    let mut parts: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    if complete {
        parts.pop();
    }
    let n = parts.len();
    for (k, raw) in parts.into_iter().enumerate() {
        let line = k + 1;
        let truncated = !complete && k + 1 == n;
        match parse_line(raw) {
            Ok(None) => {}
            Ok(Some(r)) => {
                log.records.push(r);
                log.lines.push(line);
            }
            Err(reason) => {
                let reason = if truncated {
                    format!("truncated last line (no newline): {reason}")
                } else {
                    reason
                };
                log.problems.push(LineProblem { line, reason });
            }
        }
    }
    log
}

/// One line: `Ok(None)` for a blank line.
fn parse_line(raw: &[u8]) -> Result<Option<Record>, String> {
    let text = std::str::from_utf8(raw).map_err(|e| format!("not UTF-8: {e}"))?;
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    match value.get("v") {
        Some(v) if v.as_u64() == Some(u64::from(SCHEMA_VERSION)) => {}
        Some(v) => {
            return Err(format!(
            "field `v`: schema version {} is not supported (this reader knows {SCHEMA_VERSION})",
            short_json(v)
        ))
        }
        None => return Err("no schema version `v`".to_string()),
    }
    let record: Record = serde_json::from_value(value).map_err(|e| format!("not a record: {e}"))?;
    crate::validate::validate_record(&record)?;
    Ok(Some(record))
}

/// A JSON value as text for a message, cut to 40 characters.
fn short_json(v: &serde_json::Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(40) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// Counts of a records file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RecordStats {
    /// Records.
    pub records: usize,
    /// Successful records.
    pub ok: usize,
    /// Failed records by error class (serialized class name → count), every class listed.
    pub errors: BTreeMap<String, usize>,
    /// Distinct workloads (by workload key, or spec when it has none).
    pub workloads: usize,
}

/// Counts records by outcome.
pub fn stats(records: &[Record]) -> RecordStats {
    let mut s = RecordStats {
        records: records.len(),
        ..RecordStats::default()
    };
    for c in ErrorClass::ALL {
        s.errors.insert(c.key().to_string(), 0);
    }
    for r in records {
        match r.error_class() {
            None => s.ok += 1,
            Some(c) => *s.errors.entry(c.key().to_string()).or_insert(0) += 1,
        }
    }
    s.workloads = group_by_workload(records).len();
    s
}

/// The group of a record: its workload key, or its spec when it has no key.
fn workload_of(r: &Record) -> &str {
    if r.key.workload_key.is_empty() {
        &r.key.workload
    } else {
        &r.key.workload_key
    }
}

/// Indices of records per workload, workloads in order of first appearance.
fn group_by_workload(records: &[Record]) -> Vec<Vec<usize>> {
    let mut order: Vec<&str> = Vec::new();
    let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
        let w = workload_of(r);
        groups
            .entry(w)
            .or_insert_with(|| {
                order.push(w);
                Vec::new()
            })
            .push(i);
    }
    order.into_iter().filter_map(|w| groups.remove(w)).collect()
}

/// The best `n` successful records of each workload (least median cost first), workloads in
/// order of first appearance. Ties keep file order. A workload with final-confirmation
/// records ([`Record::confirmed`]) is ranked by those alone: they are the fresh-process
/// figures, where the search's own readings include its luckiest.
pub fn best_n(records: &[Record], n: usize) -> Vec<&Record> {
    let mut out = Vec::new();
    for group in group_by_workload(records) {
        // A workload whose search ended with a confirmation is ranked by it alone.
        let confirmed = group.iter().any(|&i| records[i].confirmed);
        let mut ok: Vec<(f64, usize)> = group
            .into_iter()
            .filter(|&i| records[i].confirmed || !confirmed)
            .filter_map(|i| records[i].cost().map(|c| (c, i)))
            .collect();
        ok.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        out.extend(ok.into_iter().take(n).map(|(_, i)| &records[i]));
    }
    out
}

/// The best successful record of each workload.
pub fn best_per_workload(records: &[Record]) -> Vec<&Record> {
    best_n(records, 1)
}

/// Writes `records` as a fresh records file at `path`, replacing it atomically: the lines go
/// to a temporary file beside it, which is flushed to disk and then renamed over `path`. A
/// failure (a full disk, say) leaves `path` as it was and removes the temporary file.
pub fn write_records(path: impl AsRef<Path>, records: &[&Record]) -> Result<(), HarnessError> {
    let path = path.as_ref();
    let mut text = String::new();
    for r in records {
        text.push_str(&r.to_line());
        text.push('\n');
    }
    replace_file(path, text.as_bytes())
}

/// Replaces the file at `path` with `bytes` through a temporary file renamed into place.
pub fn replace_file(path: &Path, bytes: &[u8]) -> Result<(), HarnessError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "records".to_string());
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let written = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        HarnessError::io(format!("cannot write {}", path.display()), e)
    })
}
