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
    Candidate, CodegenSettings, HarnessError, MeasureResult, Record, RecordWriter, Runner, Target,
};

/// Measures with a harness runner and records every result. It holds one workload, or the
/// tasks of a network (then it measures for the task scheduler, task by task).
pub struct HarnessMeasurer {
    workloads: Vec<Workload>,
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
        HarnessMeasurer::for_tasks(vec![workload], runner, records)
    }

    /// Measures the tasks `workloads` (task `i` is `workloads[i]`) with one runner, appending
    /// to one records file.
    pub fn for_tasks(
        workloads: Vec<Workload>,
        runner: Box<dyn Runner>,
        records: Option<&Path>,
    ) -> Result<HarnessMeasurer, HarnessError> {
        let writer = records.map(RecordWriter::open).transpose()?;
        Ok(HarnessMeasurer {
            workloads,
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
        self.measure_task(0, states)
    }
}

impl crate::scheduler::TaskMeasurer for HarnessMeasurer {
    fn measure(&mut self, task: usize, states: &[State]) -> Vec<Measurement> {
        self.measure_task(task, states)
    }
}

impl HarnessMeasurer {
    /// Measures `states` of task `task` (0 for a single workload).
    pub fn measure_task(&mut self, task: usize, states: &[State]) -> Vec<Measurement> {
        let Some(workload) = self.workloads.get(task) else {
            return states
                .iter()
                .map(|_| Measurement {
                    seconds: None,
                    error: Some(format!("no task {task}")),
                    compile_seconds: 0.0,
                })
                .collect();
        };
        let candidates: Vec<Candidate> = states
            .iter()
            .map(|s| Candidate::from_state(workload, s))
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

/// A state measured earlier, with its median time (`None` if it failed).
pub type Resumed = (State, Option<f64>);

/// Earlier measurements of a workload in a records file, to resume from.
#[derive(Debug, Default)]
pub struct ResumeLog {
    /// The workload's records measured under the same code generation settings, replayed to
    /// their states, with their median times (`None` for the failed ones), in file order.
    pub states: Vec<Resumed>,
    /// The workload's records skipped because another code generator or other settings
    /// (threads, micro-kernels, layout rewrite, `tessel_codegen::REVISION`) measured
    /// them: their times would not hold for this search.
    pub other_codegen: usize,
    /// Lines of the file that could not be read.
    pub bad_lines: usize,
}

/// Earlier measurements of `workload` in a records file, to resume from: each record whose
/// workload key matches and that was measured with `codegen`, replayed to its state, with
/// its median time (or `None` if it failed). Records that do not replay are skipped.
pub fn resume_records(
    path: &Path,
    workload: &Workload,
    dag: &Arc<ComputeDag>,
    codegen: &CodegenSettings,
) -> Result<ResumeLog, HarnessError> {
    let mut out = ResumeLog::default();
    if !path.exists() {
        return Ok(out);
    }
    let log = read_records(path)?;
    out.bad_lines = log.problems.len();
    let key = dag.workload_key();
    let spec = workload.spec();
    for r in &log.records {
        if r.key.workload_key != key && r.key.workload != spec {
            continue;
        }
        if r.key.codegen != *codegen {
            out.other_codegen += 1;
            continue;
        }
        if let Ok(mut s) = State::replay(dag.clone(), &r.steps) {
            s.set_sketch_id(r.sketch);
            out.states.push((s, r.cost()));
        }
    }
    Ok(out)
}
