//! The tuner's [`Measurer`] over the measurement harness: candidates go to a
//! [`tessel_measure::Runner`] (in-process or an isolated worker), every measured batch is
//! appended to a records file, and earlier records of the workload resume a search.

use crate::tuner::{Measurement, Measurer};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use tessel_ir::workloads::Workload;
use tessel_ir::{ComputeDag, State};
use tessel_measure::records::read_records;
use tessel_measure::{
    Candidate, HarnessError, MeasureResult, Record, RecordWriter, Runner, Target,
};

/// Measures with a harness runner and records every result.
pub struct HarnessMeasurer {
    workload: Workload,
    runner: Box<dyn Runner>,
    writer: Option<RecordWriter>,
    target: Target,
    /// Failed candidates by error class, over the whole run.
    pub errors: BTreeMap<String, usize>,
    /// The first problem writing records, if any (measuring goes on; results are not lost
    /// from the search, only from the file).
    pub write_error: Option<String>,
    /// Median compile and harness-overhead time per candidate (milliseconds), last batch.
    pub last_phases: Vec<MeasureResult>,
}

impl HarnessMeasurer {
    /// Measures `workload` with `runner`, appending records to `records` if given.
    pub fn new(
        workload: Workload,
        runner: Box<dyn Runner>,
        records: Option<&Path>,
    ) -> Result<HarnessMeasurer, HarnessError> {
        let writer = records.map(RecordWriter::open).transpose()?;
        Ok(HarnessMeasurer {
            workload,
            runner,
            writer,
            target: Target::host(),
            errors: BTreeMap::new(),
            write_error: None,
            last_phases: Vec::new(),
        })
    }
}

impl Measurer for HarnessMeasurer {
    fn measure(&mut self, states: &[State]) -> Vec<Measurement> {
        let candidates: Vec<Candidate> = states
            .iter()
            .map(|s| Candidate::from_state(&self.workload, s))
            .collect();
        let results = self.runner.measure(&candidates);
        if let Some(w) = self.writer.as_mut() {
            let records = Record::batch(&candidates, &results, self.runner.options(), &self.target);
            if let Err(e) = w.append(&records) {
                self.write_error.get_or_insert(e.to_string());
            }
        }
        let out = results
            .iter()
            .map(|r| {
                if let Some(c) = r.error_class() {
                    *self.errors.entry(c.name().to_string()).or_default() += 1;
                }
                Measurement {
                    seconds: r.median(),
                    error: r.error.as_ref().map(|e| e.to_string()),
                    compile_seconds: r.phases.compile_ms / 1e3,
                }
            })
            .collect();
        self.last_phases = results;
        out
    }
}

/// Earlier measurements of `workload` in a records file, to resume from: each record whose
/// workload key matches, replayed to its state, with its median time (or `None` if it
/// failed). Records that do not replay are skipped. Also returns the number of bad lines.
pub fn resume_records(
    path: &Path,
    workload: &Workload,
    dag: &Arc<ComputeDag>,
) -> Result<(Vec<(State, Option<f64>)>, usize), HarnessError> {
    if !path.exists() {
        return Ok((Vec::new(), 0));
    }
    let log = read_records(path)?;
    let key = dag.workload_key();
    let spec = workload.spec();
    let mut out = Vec::new();
    for r in &log.records {
        if r.key.workload_key != key && r.key.workload != spec {
            continue;
        }
        if let Ok(mut s) = State::replay(dag.clone(), &r.steps) {
            s.set_sketch_id(r.sketch);
            out.push((s, r.cost()));
        }
    }
    Ok((out, log.problems.len()))
}
