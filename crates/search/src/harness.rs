//! The tuner's [`Measurer`] over the measurement harness: candidates go to a
//! [`tessel_measure::Runner`] (in-process or an isolated worker), every measured batch is
//! appended to a records file, and earlier records of the workload resume a search.
//!
//! A search keeps the fastest reading it has seen, and one reading of a program carries a
//! noise of a per cent or two on a shared machine: the best of hundreds of near-equal
//! programs is then as much the luckiest reading as the fastest program. With
//! [`HarnessMeasurer::confirming`], a candidate whose first reading comes within a margin of
//! the task's best (or beats it) is measured again, later in the same batch, and gets the
//! median of all its repeats ([`Confirm`]); the record holds every repeat's cost.
//!
//! With [`HarnessMeasurer::lowerings`] (shared with the scorer), each candidate carries the
//! loop nest the scorer lowered, and the builder compiles it without lowering again; a state
//! the scorer has not lowered, or whose nest the memo has dropped (see
//! [`crate::lowering`]), is lowered here, into the same memo.

use crate::lowering::Lowerings;
use crate::run_limit::RunLimit;
use crate::tuner::{Measurement, Measurer};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tessel_ir::{ComputeDag, State};
use tessel_measure::records::read_records;
use tessel_measure::{
    Candidate, ErrorClass, HarnessError, MeasureError, MeasureOptions, MeasureResult, Record,
    RecordWriter, Runner, Target,
};
use tessel_workloads::Workload;

/// Candidates measured (and their records appended and flushed) together: a kill loses at
/// most this many measurements, and an interrupt waits for at most this many. Four keeps
/// the builder's parallel compilation busy on a few cores.
pub const RECORD_CHUNK: usize = 4;

/// How readings near the best are confirmed (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Confirm {
    /// Further measurements of a candidate near the best; 0 turns confirmation off.
    pub extra: usize,
    /// A first reading below `best × (1 + margin)` is confirmed, `best` being the task's
    /// confirmed best so far (in its first batch, the batch's best first reading).
    pub margin: f64,
}

impl Confirm {
    /// No confirmation: every candidate is measured once.
    pub const OFF: Confirm = Confirm {
        extra: 0,
        margin: 0.0,
    };

    /// `extra` further measurements of readings within the default margin (0: off).
    pub fn with_extra(extra: usize) -> Confirm {
        Confirm {
            extra,
            ..Confirm::default()
        }
    }
}

impl Default for Confirm {
    /// Two more measurements of every reading within 1 % of the best.
    fn default() -> Confirm {
        Confirm {
            extra: 2,
            margin: 0.01,
        }
    }
}

/// Measures with a harness runner and records every result. It holds one workload, or the
/// tasks of a network (then it measures for the task scheduler, task by task).
pub struct HarnessMeasurer {
    workloads: Vec<Workload>,
    runner: Box<dyn Runner>,
    writer: Option<RecordWriter>,
    target: Target,
    /// Failed candidates by error class, over the whole run.
    pub errors: BTreeMap<ErrorClass, usize>,
    /// The first problem writing records, if any: the measurer then halts
    /// ([`Measurer::halted`]) so that nothing more is measured that could not be saved.
    pub write_error: Option<String>,
    /// Set (by a signal handler) to stop after the chunk in flight; see
    /// [`HarnessMeasurer::interruptible`].
    interrupt: Option<Arc<AtomicBool>>,
    /// Measurements that could not be written to the records file.
    pub unsaved: usize,
    /// How the run-time limit adapts to each task (`None`: the runner's fixed timeout).
    run_limit: Option<RunLimit>,
    /// The runner's own run timeout: the adaptive limit's ceiling.
    ceiling_ms: u64,
    /// The fastest time measured per task (for the run-time limit).
    task_fastest: Vec<Option<f64>>,
    /// Candidates killed by an adaptive limit below the ceiling.
    pub cut_short: usize,
    /// Median compile and harness-overhead time per candidate (milliseconds), last batch.
    pub last_phases: Vec<MeasureResult>,
    /// Candidates measured again because their first reading was near the best.
    pub confirmed: usize,
    confirm: Confirm,
    /// The fastest (confirmed) time per task so far; kept only while confirming.
    task_best: Vec<Option<f64>>,
    /// Where candidates' loop nests come from (`None`: the builder lowers each).
    lowerings: Option<Lowerings>,
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
        let ceiling_ms = runner.options().run_timeout_ms;
        let task_fastest = vec![None; workloads.len()];
        Ok(HarnessMeasurer {
            task_best: vec![None; workloads.len()],
            workloads,
            runner,
            writer,
            target: Target::host(),
            errors: BTreeMap::new(),
            write_error: None,
            interrupt: None,
            unsaved: 0,
            run_limit: Some(RunLimit::default()),
            ceiling_ms,
            task_fastest,
            cut_short: 0,
            last_phases: Vec::new(),
            confirmed: 0,
            confirm: Confirm::OFF,
            lowerings: None,
        })
    }

    /// Sends each candidate with its loop nest from `lowerings` (the scorer's, see
    /// [`crate::model::ModelScorer::with_lowerings`]), lowering there the states it does not
    /// hold: the builder then compiles the nest instead of lowering the steps again.
    pub fn lowerings(mut self, lowerings: Lowerings) -> HarnessMeasurer {
        self.lowerings = Some(lowerings);
        self
    }

    /// The records writer, to append to the same file (a final confirmation does).
    pub fn writer_mut(&mut self) -> Option<&mut RecordWriter> {
        self.writer.as_mut()
    }

    /// Stops measuring, after the chunk of [`RECORD_CHUNK`] candidates in flight is measured
    /// and written, once `flag` is set (by a SIGINT/SIGTERM handler).
    pub fn interruptible(mut self, flag: Arc<AtomicBool>) -> HarnessMeasurer {
        self.interrupt = Some(flag);
        self
    }

    /// Sets how the run-time limit adapts to each task (`None`: always the runner's fixed
    /// timeout). On by default ([`RunLimit::default`]).
    pub fn run_limit(mut self, limit: Option<RunLimit>) -> HarnessMeasurer {
        self.run_limit = limit;
        self
    }

    /// True once records could not be written or the interrupt flag is set.
    pub fn is_halted(&self) -> bool {
        self.write_error.is_some()
            || self
                .interrupt
                .as_ref()
                .is_some_and(|f| f.load(Ordering::SeqCst))
    }

    /// True when the interrupt flag is set.
    pub fn interrupted(&self) -> bool {
        self.interrupt
            .as_ref()
            .is_some_and(|f| f.load(Ordering::SeqCst))
    }

    /// Confirms readings near the best as `confirm` says (off by default).
    pub fn confirming(mut self, confirm: Confirm) -> HarnessMeasurer {
        self.confirm = confirm;
        self
    }
}

impl Measurer for HarnessMeasurer {
    fn measure(&mut self, states: &[State]) -> Vec<Measurement> {
        self.measure_task(0, states)
    }

    fn halted(&self) -> bool {
        self.is_halted()
    }
}

impl crate::scheduler::TaskMeasurer for HarnessMeasurer {
    fn measure(&mut self, task: usize, states: &[State]) -> Vec<Measurement> {
        self.measure_task(task, states)
    }

    fn halted(&self) -> bool {
        self.is_halted()
    }
}

impl HarnessMeasurer {
    /// Measures `states` of task `task` (0 for a single workload).
    pub fn measure_task(&mut self, task: usize, states: &[State]) -> Vec<Measurement> {
        let Some(workload) = self.workloads.get(task) else {
            return states
                .iter()
                .map(|_| {
                    Measurement::failed(MeasureError::new(
                        ErrorClass::WorkerLost,
                        format!("no task {task}"),
                    ))
                })
                .collect();
        };
        let candidates: Vec<Candidate> = states
            .iter()
            .map(|s| {
                let c = Candidate::from_state(workload, s);
                match &self.lowerings {
                    Some(l) => c.with_lowered(l.get_or_lower(s)),
                    None => c,
                }
            })
            .collect();
        // Chunk by chunk, each chunk's records appended and flushed before the next is
        // measured: a kill loses at most one chunk, an interrupt or a failed write stops
        // after the chunk in flight (the rest of the batch is left unmeasured).
        let mut results = Vec::with_capacity(candidates.len());
        for chunk in candidates.chunks(RECORD_CHUNK) {
            if self.is_halted() {
                break;
            }
            let limit = self.apply_run_limit(task);
            let mut part = self.runner.measure(chunk);
            let machines = self.runner.machines().to_vec();
            self.note_cut_short(limit, &mut part);
            self.confirm_near_best(task, chunk, &mut part);
            self.note_fastest(task, &part);
            if let Some(w) = self.writer.as_mut() {
                let options = self.runner.options();
                let records = records_of(chunk, &part, options, &self.target, &machines);
                if let Err(e) = w.append(&records) {
                    self.write_error.get_or_insert(e.to_string());
                    self.unsaved += records.len();
                }
            }
            results.extend(part);
        }
        let out = results
            .iter()
            .map(|r| {
                if let Some(c) = r.error_class() {
                    *self.errors.entry(c).or_default() += 1;
                }
                Measurement {
                    seconds: r.median(),
                    error: r.error.clone(),
                    compile_seconds: r.phases.compile_ms / 1e3,
                }
            })
            .collect();
        self.last_phases = results;
        out
    }

    /// Measures the candidates of `results` whose reading is near the task's best
    /// `confirm.extra` more times (all in one batch, each candidate's readings spread over
    /// it), pools every repeat's cost into its result and updates the task's best. A
    /// candidate that fails on a later reading is failed: a kernel that crashes or hangs
    /// once is not a result to keep.
    fn confirm_near_best(
        &mut self,
        task: usize,
        candidates: &[Candidate],
        results: &mut [MeasureResult],
    ) {
        if self.confirm.extra == 0 {
            return;
        }
        // The task's confirmed best; in its first batch, the batch's best first reading.
        let Some(best) = self
            .task_best
            .get(task)
            .copied()
            .flatten()
            .or_else(|| fastest(results))
        else {
            return;
        };
        let threshold = best * (1.0 + self.confirm.margin.max(0.0));
        let near: Vec<usize> = (0..results.len())
            .filter(|&i| results[i].median().is_some_and(|m| m < threshold))
            .collect();
        if !near.is_empty() {
            let again: Vec<Candidate> = (0..self.confirm.extra)
                .flat_map(|_| near.iter().map(|&i| candidates[i].clone()))
                .collect();
            let readings = self.runner.measure(&again);
            for (k, reading) in readings.into_iter().enumerate() {
                pool_reading(&mut results[near[k % near.len()]], reading);
            }
            self.confirmed += near.len();
        }
        if let (Some(slot), Some(b)) = (self.task_best.get_mut(task), fastest(results)) {
            *slot = Some(slot.map_or(b, |old: f64| old.min(b)));
        }
    }
}

impl HarnessMeasurer {
    /// Sets the runner's run timeout for task `task`'s next candidates; returns it when it
    /// is below the ceiling (an adaptive limit in force).
    fn apply_run_limit(&mut self, task: usize) -> Option<u64> {
        let limit = self.run_limit?;
        let best = self.task_fastest.get(task).copied().flatten();
        let ms = limit.timeout_ms(best, &self.runner.options().timing, self.ceiling_ms);
        self.runner.set_run_timeout_ms(ms);
        (ms < self.ceiling_ms).then_some(ms)
    }

    /// Marks the timeouts of `results` that an adaptive limit of `limit` ms caused.
    fn note_cut_short(&mut self, limit: Option<u64>, results: &mut [MeasureResult]) {
        let Some(ms) = limit else {
            return;
        };
        for r in results.iter_mut() {
            if let Some(e) = r.error.as_mut().filter(|e| e.class == ErrorClass::Timeout) {
                e.message = format!(
                    "{} (the task's adaptive run-time limit: {:.2} s, {}x the best program's \
                     run; the fixed limit is {:.0} s)",
                    e.message,
                    ms as f64 / 1e3,
                    self.run_limit.map_or(0.0, |l| l.factor),
                    self.ceiling_ms as f64 / 1e3
                );
                self.cut_short += 1;
            }
        }
    }

    /// Lowers task `task`'s fastest time to the best of `results`.
    fn note_fastest(&mut self, task: usize, results: &[MeasureResult]) {
        if let (Some(slot), Some(b)) = (self.task_fastest.get_mut(task), fastest(results)) {
            *slot = Some(slot.map_or(b, |old: f64| old.min(b)));
        }
    }
}

/// The least median time of `results`, if any was timed.
fn fastest(results: &[MeasureResult]) -> Option<f64> {
    results
        .iter()
        .filter_map(MeasureResult::median)
        .min_by(f64::total_cmp)
}

/// Adds a later reading of the same candidate to `result`: its costs join the earlier ones
/// (median, min and spread recomputed), its phase times add up; a failed reading fails the
/// result, saying it failed on confirmation.
fn pool_reading(result: &mut MeasureResult, mut reading: MeasureResult) {
    if let Some(e) = reading.error.as_mut() {
        e.message = format!("on a confirming measurement: {}", e.message);
    }
    result.pool(reading);
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
    /// (threads, micro-kernels, layout rewrite, `tessel_codegen::REVISION`) or other cache
    /// conditions (flush, weights placement) measured them: their times would not hold for
    /// this search.
    pub other_codegen: usize,
    /// Lines of the file that could not be read.
    pub bad_lines: usize,
}

/// Earlier measurements of `workload` in a records file, to resume from: each record whose
/// workload key matches and that was measured with `options`' code generation settings and
/// cache conditions (cache flush, where the operands were: [`TimingSettings::weights`] and
/// `activations`),
/// replayed to its state, with its median time (or `None` if it failed). Records that do not
/// replay are skipped.
///
/// [`TimingSettings::weights`]: tessel_measure::options::TimingSettings::weights
pub fn resume_records(
    path: &Path,
    workload: &Workload,
    dag: &Arc<ComputeDag>,
    options: &MeasureOptions,
) -> Result<ResumeLog, HarnessError> {
    let codegen = &options.codegen;
    let timing = &options.timing;
    let mut out = ResumeLog::default();
    if !path.exists() {
        return Ok(out);
    }
    let log = read_records(path)?;
    out.bad_lines = log.problems.len();
    let key = dag.workload_key();
    let spec = workload.spec();
    let ours: Vec<&Record> = log
        .records
        .iter()
        .filter(|r| r.key.workload_key == key || r.key.workload == spec)
        .filter(|r| {
            let same = r.key.codegen == *codegen
                && r.key.timing.weights == timing.weights
                && r.key.timing.activations == timing.activations
                && r.key.timing.flush_cache == timing.flush_cache;
            out.other_codegen += usize::from(!same);
            same
        })
        .collect();
    // A program's final confirmation is the time to trust for it (`crate::confirm`): it
    // replaces the search's readings of the same steps, and is not a state of its own.
    let mut confirmed: HashMap<String, Option<f64>> = ours
        .iter()
        .filter(|r| r.confirmed)
        .map(|r| (steps_key(&r.steps), r.cost()))
        .collect();
    let push = |out: &mut ResumeLog, r: &Record, cost: Option<f64>| {
        if let Ok(mut s) = State::replay(dag.clone(), &r.steps) {
            s.set_sketch_id(r.sketch);
            out.states.push((s, cost));
        }
    };
    for r in ours.iter().filter(|r| !r.confirmed) {
        let cost = match confirmed.get(&steps_key(&r.steps)) {
            Some(c) => *c,
            None => r.cost(),
        };
        push(&mut out, r, cost);
    }
    // Confirmations whose search records are gone (e.g. distilled away) stand on their own.
    let searched: HashSet<String> = ours
        .iter()
        .filter(|r| !r.confirmed)
        .map(|r| steps_key(&r.steps))
        .collect();
    for r in ours.iter().filter(|r| r.confirmed) {
        if !searched.contains(&steps_key(&r.steps))
            && confirmed.remove(&steps_key(&r.steps)).is_some()
        {
            push(&mut out, r, r.cost());
        }
    }
    Ok(out)
}

/// A step log as a key (its JSON).
fn steps_key(steps: &[tessel_ir::Step]) -> String {
    serde_json::to_string(steps).unwrap_or_default()
}

/// The records of a measured chunk, each keyed by the machine that measured it (`machines`,
/// from [`Runner::machines`]; `host` where it says nothing).
fn records_of(
    chunk: &[Candidate],
    part: &[MeasureResult],
    options: &MeasureOptions,
    host: &Target,
    machines: &[Option<Target>],
) -> Vec<Record> {
    if machines.iter().all(Option::is_none) {
        return Record::batch(chunk, part, options, host);
    }
    chunk
        .iter()
        .zip(part)
        .enumerate()
        .map(|(i, (c, r))| {
            let machine = machines.get(i).and_then(Option::as_ref);
            Record::new(c, r, options, machine.unwrap_or(host))
        })
        .collect()
}
