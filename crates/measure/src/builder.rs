//! The builder: replays, lowers and compiles a batch of step logs in parallel on a thread
//! pool ([`Builder`]). A candidate that comes with its loop nest (lowered by the caller) is
//! compiled directly ([`build_nest`]): no replay, no second lowering.
//!
//! Threads, for now: a single candidate (or a 1-thread builder) is built on the calling
//! thread; a batch goes to a rayon pool inside the one worker. The crate's `overhead` example
//! compares 1 worker × 2 threads with 2 worker processes × 1 thread on 32 gmm-3 compiles; on
//! the shared 2-core machine, loaded by other builds while it was measured, the medians were
//! equal (~33 ms: no free second core) but the best rounds favoured processes (16.7 ms vs
//! 28.9 ms), possibly because JIT memory mapping contends on one address space. To be
//! re-measured on a quiet machine before a worker-per-core builder is added. A crash while
//! compiling costs the batch in flight, which the local worker runner then retries one
//! candidate at a time to find the culprit.

use crate::error::{ErrorClass, HarnessError, MeasureError};
use crate::options::CodegenSettings;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;
use tessel_codegen::Kernel;
use tessel_ir::loop_nest::LoopNest;
use tessel_ir::{lower, ComputeDag, State, Step};

/// One job of the builder: a step log on a DAG, and its lowering when the caller has it.
#[derive(Clone, Debug)]
pub struct BuildJob<'a> {
    /// The workload's DAG.
    pub dag: Arc<ComputeDag>,
    /// The step log.
    pub steps: &'a [Step],
    /// The lowering of `steps`, if the caller already has it: compiled directly.
    pub lowered: Option<&'a LoopNest>,
    /// **Test only**: abort the process (`true`) before compiling.
    pub abort: bool,
}

/// What building one candidate gave.
#[derive(Debug)]
pub struct Built {
    /// The kernel, or why there is none (invalid schedule, lowering or compile error).
    pub kernel: Result<Kernel, MeasureError>,
    /// Replaying the steps (ms; when the loop nest was given, only the limit checks).
    pub replay_ms: f64,
    /// Lowering (ms; 0 when the loop nest was given).
    pub lower_ms: f64,
    /// Compiling (ms).
    pub compile_ms: f64,
}

/// Compiles candidates in parallel.
#[derive(Debug)]
pub struct Builder {
    codegen: CodegenSettings,
    pool: rayon::ThreadPool,
}

impl Builder {
    /// A builder making kernels with `codegen` settings on `threads` threads.
    pub fn new(codegen: CodegenSettings, threads: usize) -> Result<Builder, HarnessError> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|k| format!("tessel-builder-{k}"))
            .stack_size(crate::limits::BUILDER_STACK_BYTES)
            .build()
            .map_err(|e| HarnessError::Worker(format!("cannot start the builder threads: {e}")))?;
        Ok(Builder { codegen, pool })
    }

    /// The code generator's settings.
    pub fn codegen(&self) -> &CodegenSettings {
        &self.codegen
    }

    /// Builds every job, in parallel; `on_built(k)` is called (from a builder thread) as soon
    /// as job `k` is done. Results are in job order.
    pub fn build(&self, jobs: &[BuildJob<'_>], on_built: &(dyn Fn(usize) + Sync)) -> Vec<Built> {
        use rayon::prelude::*;
        if jobs.len() <= 1 || self.pool.current_num_threads() <= 1 {
            // Nothing to overlap: build on the calling thread and spare the hand-off to a
            // pool thread (which costs milliseconds on a loaded machine).
            return jobs
                .iter()
                .enumerate()
                .map(|(k, job)| {
                    if job.abort {
                        eprintln!("tessel worker: test fault: aborting while building");
                        std::process::abort();
                    }
                    let b = build_job(&self.codegen, job);
                    on_built(k);
                    b
                })
                .collect();
        }
        self.pool.install(|| {
            jobs.par_iter()
                .enumerate()
                .map(|(k, job)| {
                    if job.abort {
                        eprintln!("tessel worker: test fault: aborting while building");
                        std::process::abort();
                    }
                    let b = build_job(&self.codegen, job);
                    on_built(k);
                    b
                })
                .collect()
        })
    }
}

/// Builds one job on the calling thread: its loop nest if it has one ([`build_nest`]), else
/// its step log ([`build_one`]).
pub fn build_job(codegen: &CodegenSettings, job: &BuildJob<'_>) -> Built {
    match job.lowered {
        Some(nest) => build_nest(codegen, &job.dag, job.steps, nest),
        None => build_one(codegen, &job.dag, job.steps),
    }
}

/// What nothing was built yet.
fn unbuilt() -> Built {
    Built {
        kernel: Err(MeasureError::new(ErrorClass::Compile, "not built")),
        replay_ms: 0.0,
        lower_ms: 0.0,
        compile_ms: 0.0,
    }
}

/// Compiles `nest`, the given lowering of `steps` on `dag` (on the calling thread), without
/// replaying or lowering: the limits that apply without a replay are checked first (the
/// workload's size, the step log's, and the nest's own: [`crate::limits::check_nest`]), a
/// failed check being an invalid schedule. A panic while compiling is caught and classified
/// as a compile error.
pub fn build_nest(
    codegen: &CodegenSettings,
    dag: &Arc<ComputeDag>,
    steps: &[Step],
    nest: &LoopNest,
) -> Built {
    let mut built = unbuilt();
    let t = Instant::now();
    let checked = crate::limits::check_workload(dag)
        .and_then(|()| crate::limits::check_steps(steps))
        .and_then(|()| crate::limits::check_nest(nest, dag))
        .map_err(|e| MeasureError::new(ErrorClass::InvalidSchedule, e));
    built.replay_ms = ms(t);
    if let Err(e) = checked {
        built.kernel = Err(e);
        return built;
    }
    compile_into(codegen, nest, &mut built);
    built
}

/// Compiles `nest` into `built` (kernel and compile time), catching a panic.
fn compile_into(codegen: &CodegenSettings, nest: &LoopNest, built: &mut Built) {
    let t = Instant::now();
    let opts = codegen.compile_options();
    built.kernel = guarded(ErrorClass::Compile, || {
        tessel_codegen::compile(nest, &opts)
            .map_err(|e| MeasureError::new(ErrorClass::Compile, e.to_string()))
    });
    built.compile_ms = ms(t);
}

/// Replays, lowers and compiles one step log (on the calling thread). Panics in any phase are
/// caught and classified with that phase.
pub fn build_one(codegen: &CodegenSettings, dag: &Arc<ComputeDag>, steps: &[Step]) -> Built {
    let mut built = unbuilt();
    // Limits first: a huge workload, a 100,000-part split or a deep loop nest is an error,
    // not an allocation failure or a stack overflow (crate::limits).
    let t = Instant::now();
    let state = crate::limits::check_workload(dag)
        .and_then(|()| crate::limits::check_steps(steps))
        .map_err(|e| MeasureError::new(ErrorClass::InvalidSchedule, e))
        .and_then(|()| {
            guarded(ErrorClass::InvalidSchedule, || {
                State::replay(dag.clone(), steps)
                    .map_err(|e| MeasureError::new(ErrorClass::InvalidSchedule, e.to_string()))
            })
        })
        .and_then(|s| {
            crate::limits::check_state(&s)
                .map(|()| s)
                .map_err(|e| MeasureError::new(ErrorClass::InvalidSchedule, e))
        });
    built.replay_ms = ms(t);
    let state = match state {
        Ok(s) => s,
        Err(e) => {
            built.kernel = Err(e);
            return built;
        }
    };
    let t = Instant::now();
    let nest = guarded(ErrorClass::Lowering, || {
        lower::lower(&state).map_err(|e| MeasureError::new(ErrorClass::Lowering, e.to_string()))
    });
    built.lower_ms = ms(t);
    let nest = match nest {
        Ok(n) => n,
        Err(e) => {
            built.kernel = Err(e);
            return built;
        }
    };
    compile_into(codegen, &nest, &mut built);
    built
}

/// Runs `f`, turning a panic into an error of class `class`.
pub(crate) fn guarded<T>(
    class: ErrorClass,
    f: impl FnOnce() -> Result<T, MeasureError>,
) -> Result<T, MeasureError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => Err(MeasureError::new(
            class,
            format!("panicked: {}", panic_message(payload.as_ref())),
        )),
    }
}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}

/// Milliseconds since `t`.
pub(crate) fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}
