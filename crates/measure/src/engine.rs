//! The measuring side: [`Engine`] builds a batch (in parallel), then verifies and times each
//! kernel in turn. The worker process and the in-process runner are both thin shells around
//! it.

use crate::builder::{guarded, ms, BuildJob, Builder};
use crate::candidate::{Candidate, Fault};
use crate::error::{ErrorClass, HarnessError, MeasureError};
use crate::options::MeasureOptions;
use crate::result::{MeasureResult, PhaseTimes};
use crate::timing::{time_calls, CacheFlusher};
use crate::verify::{check_outputs, Reference, ReferenceCache};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tessel_codegen::Kernel;
use tessel_ir::ComputeDag;
use tessel_workloads::Workload;

/// A workload looked up once: its DAG (shared) and key.
#[derive(Debug)]
pub struct ResolvedWorkload {
    /// The workload.
    pub workload: Workload,
    /// Its DAG, shared with the states replayed on it.
    pub dag: Arc<ComputeDag>,
    /// Its workload key.
    pub key: String,
}

/// What the engine reports while it measures a batch. The worker turns these into protocol
/// messages, which is how the parent knows which candidate was in flight when a worker died.
pub trait Events: Sync {
    /// Candidate `index` is built (successfully or not). Called from builder threads.
    fn built(&self, index: usize) {
        let _ = index;
    }
    /// Candidate `index` is built and its workload's reference output is being computed
    /// (only when it is not cached yet).
    fn preparing(&self, index: usize) {
        let _ = index;
    }
    /// Candidate `index` is about to run (verify and time).
    fn running(&self, index: usize) {
        let _ = index;
    }
    /// Candidate `index` is finished.
    fn done(&self, index: usize, result: &MeasureResult) {
        let _ = (index, result);
    }
}

/// [`Events`] that ignores everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoEvents;

impl Events for NoEvents {}

/// How [`Fault::Abort`] and [`Fault::Hang`] are honoured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultMode {
    /// Really abort or hang (in a worker process, whose parent copes).
    Real,
    /// Report the error the parent would record instead (in-process).
    Simulated,
}

/// Builds, verifies and times candidates, keeping workloads and reference outputs cached
/// between batches.
#[derive(Debug)]
pub struct Engine {
    options: MeasureOptions,
    builder: Builder,
    workloads: HashMap<String, Result<Arc<ResolvedWorkload>, MeasureError>>,
    references: ReferenceCache,
    flusher: CacheFlusher,
    /// Output buffers of the last workload run (its key, the buffers).
    outputs: Option<(String, Vec<Vec<f32>>)>,
    faults: FaultMode,
}

impl Engine {
    /// An engine measuring with `options`; `faults` says how test-only faults are honoured.
    pub fn new(options: MeasureOptions, faults: FaultMode) -> Result<Engine, HarnessError> {
        crate::limits::check_options(&options).map_err(HarnessError::Format)?;
        let builder = Builder::new(options.codegen.clone(), options.builder_threads())?;
        Ok(Engine {
            options,
            builder,
            workloads: HashMap::new(),
            references: ReferenceCache::default(),
            flusher: CacheFlusher::new(),
            outputs: None,
            faults,
        })
    }

    /// The options in force.
    pub fn options(&self) -> &MeasureOptions {
        &self.options
    }

    /// Switches to other options (rebuilding the builder only if its settings changed).
    pub fn set_options(&mut self, options: MeasureOptions) -> Result<(), HarnessError> {
        crate::limits::check_options(&options).map_err(HarnessError::Format)?;
        if options.codegen != self.options.codegen
            || options.builder_threads() != self.options.builder_threads()
        {
            self.builder = Builder::new(options.codegen.clone(), options.builder_threads())?;
        }
        self.options = options;
        Ok(())
    }

    /// Looks up a workload spec (cached).
    pub fn resolve(&mut self, spec: &str) -> Result<Arc<ResolvedWorkload>, MeasureError> {
        if let Some(r) = self.workloads.get(spec) {
            return r.clone();
        }
        if self.workloads.len() >= 256 {
            self.workloads.clear();
        }
        let r = tessel_workloads::lookup(spec)
            .map(|w| {
                let dag = Arc::new(w.dag.clone());
                let key = dag.workload_key();
                Arc::new(ResolvedWorkload {
                    workload: w,
                    dag,
                    key,
                })
            })
            .map_err(|e| MeasureError::new(ErrorClass::InvalidSchedule, e.to_string()));
        self.workloads.insert(spec.to_string(), r.clone());
        r
    }

    /// Measures a batch: builds every candidate in parallel, then verifies and times them one
    /// after the other (never two kernels at once). Results are in batch order.
    pub fn measure(&mut self, batch: &[Candidate], events: &dyn Events) -> Vec<MeasureResult> {
        let start = Instant::now();
        let resolved: Vec<Result<Arc<ResolvedWorkload>, MeasureError>> =
            batch.iter().map(|c| self.resolve(&c.workload)).collect();
        let resolve_ms = ms(start) / batch.len().max(1) as f64;
        // Build every candidate whose workload exists.
        let jobs: Vec<(usize, BuildJob<'_>)> = resolved
            .iter()
            .zip(batch)
            .enumerate()
            .filter_map(|(i, (r, c))| {
                r.as_ref().ok().map(|w| {
                    (
                        i,
                        BuildJob {
                            dag: w.dag.clone(),
                            steps: &c.steps,
                            lowered: c.lowered.as_deref(),
                            abort: c.fault == Some(Fault::AbortBuild)
                                && self.faults == FaultMode::Real,
                        },
                    )
                })
            })
            .collect();
        let job_list: Vec<BuildJob<'_>> = jobs.iter().map(|(_, j)| j.clone()).collect();
        let build_start = Instant::now();
        let built = self.builder.build(&job_list, &|k| events.built(jobs[k].0));
        let build_wall = ms(build_start);
        let build_sum: f64 = built
            .iter()
            .map(|b| b.replay_ms + b.lower_ms + b.compile_ms)
            .sum();
        let mut built_of: Vec<Option<crate::builder::Built>> =
            (0..batch.len()).map(|_| None).collect();
        for ((i, _), b) in jobs.iter().zip(built) {
            built_of[*i] = Some(b);
        }
        let mut results = Vec::with_capacity(batch.len());
        for (i, cand) in batch.iter().enumerate() {
            let t = Instant::now();
            let mut phases = PhaseTimes {
                replay_ms: resolve_ms,
                ..PhaseTimes::default()
            };
            let result = match (&resolved[i], built_of[i].take()) {
                (Err(e), _) => MeasureResult::failed(e.clone(), phases.clone()),
                (Ok(_), Some(_)) if cand.fault == Some(Fault::AbortBuild) => MeasureResult::error(
                    ErrorClass::Compile,
                    "test fault `abort_build` (simulated in-process)",
                ),
                (Ok(w), Some(b)) => {
                    phases.replay_ms += b.replay_ms;
                    phases.lower_ms = b.lower_ms;
                    phases.compile_ms = b.compile_ms;
                    match b.kernel {
                        Err(e) => MeasureResult::failed(e, phases.clone()),
                        Ok(kernel) => match self.prepare_reference(w, i, events, &mut phases) {
                            Err(e) => MeasureResult::failed(e, phases.clone()),
                            Ok(()) => {
                                events.running(i);
                                self.run_one(w, cand, &kernel, &mut phases)
                            }
                        },
                    }
                }
                (Ok(_), None) => MeasureResult::error(ErrorClass::Compile, "not built"),
            };
            let mut result = result;
            // This candidate's share of the build wall time (parallel) replaces the sum of its
            // phases (which overlap other candidates'); then the run phase's own wall time.
            let share = if build_sum > 0.0 {
                build_wall * (phases.replay_ms - resolve_ms + phases.lower_ms + phases.compile_ms)
                    / build_sum
            } else {
                0.0
            };
            result.phases.total_ms = resolve_ms + share + ms(t);
            events.done(i, &result);
            results.push(result);
        }
        results
    }

    /// Computes (or finds cached) the reference output of `w` before candidate `index` counts
    /// as running, so that a worker's run timeout covers the kernel alone: a fresh worker
    /// evaluates a 1024³ matmul's reference for seconds.
    fn prepare_reference(
        &mut self,
        w: &ResolvedWorkload,
        index: usize,
        events: &dyn Events,
        phases: &mut PhaseTimes,
    ) -> Result<(), MeasureError> {
        let verify = &self.options.verify;
        if !verify.enabled || self.references.contains(&w.key, verify.seed) {
            return Ok(());
        }
        events.preparing(index);
        let t = Instant::now();
        self.references
            .get(&w.dag, &w.key, verify.seed, verify.enabled)?;
        phases.verify_ms += ms(t);
        Ok(())
    }

    /// Verifies and times one built kernel.
    fn run_one(
        &mut self,
        w: &ResolvedWorkload,
        cand: &Candidate,
        kernel: &Kernel,
        phases: &mut PhaseTimes,
    ) -> MeasureResult {
        match self.try_run_one(w, cand, kernel, phases) {
            Ok(timing) => MeasureResult {
                timing,
                error: None,
                phases: phases.clone(),
            },
            Err(e) => MeasureResult::failed(e, phases.clone()),
        }
    }

    fn try_run_one(
        &mut self,
        w: &ResolvedWorkload,
        cand: &Candidate,
        kernel: &Kernel,
        phases: &mut PhaseTimes,
    ) -> Result<Option<crate::result::Timing>, MeasureError> {
        let verify = self.options.verify.clone();
        if self.options.timing.repeat == 0 && !verify.enabled && cand.fault.is_none() {
            // Nothing to time or check: build only.
            return Ok(None);
        }
        let t = Instant::now();
        let reference = self
            .references
            .get(&w.dag, &w.key, verify.seed, verify.enabled)?;
        phases.verify_ms += ms(t);
        // Output buffers are reused between candidates of a workload (a fresh 1 MiB buffer
        // costs ~0.3 ms of page faults); NaN-filled so that an element the kernel does not
        // write fails verification.
        let mut outputs = match self.outputs.take() {
            Some((key, bufs)) if key == w.key => bufs,
            _ => w
                .dag
                .outputs()
                .iter()
                .map(|&o| vec![0.0; w.dag.op(o).num_elements().max(0) as usize])
                .collect(),
        };
        for o in &mut outputs {
            o.fill(f32::NAN);
        }
        let result = self.run_kernel(cand, kernel, phases, &reference, &mut outputs);
        self.outputs = Some((w.key.clone(), outputs));
        result
    }

    /// Calls, verifies and times a kernel on `reference`'s inputs, into `outputs`.
    fn run_kernel(
        &mut self,
        cand: &Candidate,
        kernel: &Kernel,
        phases: &mut PhaseTimes,
        reference: &Reference,
        outputs: &mut Vec<Vec<f32>>,
    ) -> Result<Option<crate::result::Timing>, MeasureError> {
        let verify = self.options.verify.clone();
        let inputs: Vec<&[f32]> = reference.inputs.iter().map(Vec::as_slice).collect();
        match (cand.fault, self.faults) {
            (Some(Fault::Abort), FaultMode::Real) => {
                eprintln!("tessel worker: test fault: aborting");
                std::process::abort();
            }
            (Some(Fault::Hang), FaultMode::Real) => {
                eprintln!("tessel worker: test fault: hanging");
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
            (Some(Fault::Abort), FaultMode::Simulated) => {
                return Err(MeasureError::new(
                    ErrorClass::RuntimeCrash,
                    "test fault `abort` (simulated in-process)",
                ))
            }
            (Some(Fault::Hang), FaultMode::Simulated) => {
                return Err(MeasureError::new(
                    ErrorClass::Timeout,
                    "test fault `hang` (simulated in-process)",
                ))
            }
            _ => {}
        }
        let panic_fault = cand.fault == Some(Fault::Panic);
        let call = |outs: &mut Vec<Vec<f32>>| -> Result<(), MeasureError> {
            guarded(ErrorClass::RuntimeCrash, || {
                if panic_fault {
                    panic!("test fault `panic`");
                }
                let mut out_refs: Vec<&mut [f32]> =
                    outs.iter_mut().map(Vec::as_mut_slice).collect();
                kernel
                    .run(&inputs, &mut out_refs)
                    .map_err(|e| MeasureError::new(ErrorClass::RuntimeCrash, e.to_string()))
            })
        };
        // The first call: untimed for the costs, checked against the reference.
        let t = Instant::now();
        call(outputs)?;
        let first = t.elapsed();
        phases.run_ms += first.as_secs_f64() * 1e3;
        if cand.fault == Some(Fault::WrongAnswer) {
            if let Some(o) = outputs.first_mut() {
                let mid = o.len() / 2;
                if let Some(x) = o.get_mut(mid) {
                    *x += 1.0;
                }
            }
        }
        if let Some(want) = &reference.outputs {
            let t = Instant::now();
            check_outputs(outputs, want, verify.atol, verify.rtol)?;
            phases.verify_ms += ms(t);
        }
        let settings = self.options.timing.clone();
        if settings.places_operands() {
            self.flusher.set_operands(
                kernel.weight_regions(&inputs),
                kernel.activation_regions(&inputs),
            );
        }
        let kernel_threads = self.options.codegen.threads;
        let timed = time_calls(
            &settings,
            kernel_threads,
            Some(first),
            &mut self.flusher,
            || call(outputs),
        );
        // The regions belong to this kernel and these inputs: never evict them later.
        self.flusher.set_operands(Vec::new(), Vec::new());
        let (timing, spent) = timed?;
        phases.run_ms += spent.run.as_secs_f64() * 1e3;
        phases.flush_ms += spent.flush.as_secs_f64() * 1e3;
        Ok(timing)
    }
}
