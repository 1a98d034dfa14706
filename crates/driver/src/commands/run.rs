//! `tessel run <workload> --steps FILE [--threads N] [--isolation worker|none] [--json]`:
//! lowers, compiles, verifies and times one schedule, and prints its latency, GFLOP/s,
//! compile time and whether its outputs match the reference evaluator's.
//!
//! The schedule file is `{"workload": ..., "description": ..., "steps": [...]}` (as in
//! `examples/schedules/`) or a bare array of steps. `--records FILE` appends the measurement
//! as a record. A schedule that fails (invalid, wrong answer, crash, ...) is reported, then
//! the command exits with code 2. This module also holds what the measurement commands share
//! (their error type, options and runner).

pub use super::search_options::{make_runner, Isolation};
use crate::error::DriverError;
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use tessel_ir::IrError;
use tessel_measure::{
    Candidate, HarnessError, MeasureError, MeasureOptions, MeasureResult, Record, RecordWriter,
    ScheduleFile, Target,
};
use tessel_workloads::Workload;

/// Measurement options shared by `run` and `replay`.
#[derive(clap::Args, Debug, Clone)]
pub struct MeasureArgs {
    /// Threads of the kernel (parallel loops); default: one per core (for `replay`: the
    /// record's).
    #[arg(long, value_parser = super::numbers::positive, allow_negative_numbers = true)]
    pub threads: Option<usize>,
    /// Where to measure.
    #[arg(long, value_enum, default_value = "worker")]
    pub isolation: Isolation,
    /// Timed repeats.
    #[arg(long)]
    pub repeat: Option<u32>,
    /// Least duration of a repeat (ms).
    #[arg(long)]
    pub min_repeat_ms: Option<f64>,
    /// Flush the CPU caches before every repeat.
    #[arg(long)]
    pub flush_cache: bool,
    /// Where the kernel's constant weights are when a timed call starts: `warm`, `shared`
    /// or `memory` (as `tessel tune --weights`; default: the measurement default, `warm`;
    /// for `replay`: the record's).
    #[arg(long, conflicts_with = "flush_cache")]
    pub weights: Option<tessel_measure::options::Residence>,
    /// Where the kernel's other inputs are when a timed call starts (as `tessel tune
    /// --activations`).
    #[arg(long, conflicts_with = "flush_cache")]
    pub activations: Option<tessel_measure::options::Residence>,
    /// Which micro-kernel `B` operands are packed: `off`, `weights` or `all` (default: the
    /// measurement default, `all`; for `replay`: the record's).
    #[arg(long, value_parser = super::search_options::parse_layout_rewrite)]
    pub layout_rewrite: Option<tessel_measure::options::LayoutRewrite>,
    /// The machine to compile for: `native`, `avx512`, `avx2` or `generic` (default: this
    /// CPU's highest ISA level; for `replay`: the record's). An ISA this CPU lacks is
    /// refused, naming the missing feature.
    #[arg(long, value_parser = super::search_options::parse_target)]
    pub target: Option<tessel_sketch::Target>,
    /// Same as `--target generic` (plain Cranelift code, no micro-kernels).
    #[arg(long, conflicts_with = "target")]
    pub no_micro_kernels: bool,
}

impl MeasureArgs {
    /// `base` with these arguments applied.
    pub fn apply(&self, mut base: MeasureOptions) -> MeasureOptions {
        if let Some(t) = self.threads {
            base.codegen.threads = t.max(1);
        }
        if let Some(t) = self.target {
            base.codegen.isa = t.isa;
        }
        if self.no_micro_kernels {
            base.codegen.isa = tessel_sketch::Isa::Generic;
        }
        if let Some(r) = self.repeat {
            base.timing.repeat = r;
        }
        if let Some(m) = self.min_repeat_ms {
            base.timing.min_repeat_ms = m;
        }
        if self.flush_cache {
            base.timing.flush_cache = true;
        }
        if let Some(w) = self.weights {
            base.timing.weights = w;
        }
        if let Some(a) = self.activations {
            base.timing.activations = a;
        }
        if let Some(m) = self.layout_rewrite {
            base.codegen.layout_rewrite = m;
        }
        base
    }
}

/// What a measurement command can fail with (besides the driver's own errors).
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// A bad workload spec.
    #[error(transparent)]
    Ir(#[from] IrError),
    /// Writing to stdout failed.
    #[error("cannot write output: {0}")]
    Io(#[from] std::io::Error),
    /// A file, the worker or the records went wrong.
    #[error(transparent)]
    Harness(#[from] HarnessError),
    /// The candidate failed (its error was reported on stdout too).
    #[error("the schedule failed: {0}")]
    Candidate(MeasureError),
    /// Anything else, said in words.
    #[error("{0}")]
    Other(String),
}

/// Hands a measurement command's outcome to `main`: the driver's errors as they are; the
/// others are printed on stderr as `error: ...` and exit with code 2, like every driver error.
pub fn finish(r: Result<(), CmdError>) -> Result<(), DriverError> {
    match r {
        Ok(()) => Ok(()),
        Err(CmdError::Ir(e)) => Err(DriverError::Ir(e)),
        Err(CmdError::Io(e)) => Err(DriverError::Io(e)),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2)
        }
    }
}

/// Arguments of `tessel run`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The workload: a registry name (`gmm-3`) or a spec (`gmm:b=1,n=64,m=64,k=64`).
    pub workload: String,
    /// The schedule: a JSON file with the step log.
    #[arg(long)]
    pub steps: PathBuf,
    /// Measurement options.
    #[command(flatten)]
    pub measure: MeasureArgs,
    /// Do not check the outputs against the reference evaluator.
    #[arg(long)]
    pub no_verify: bool,
    /// Append the measurement to this records file.
    #[arg(long)]
    pub records: Option<PathBuf>,
    /// Also print one machine-readable JSON object as the last line.
    #[arg(long)]
    pub json: bool,
}

/// Runs the subcommand.
pub fn run(args: &Args) -> Result<(), DriverError> {
    finish(run_inner(args))
}

fn run_inner(args: &Args) -> Result<(), CmdError> {
    let w = tessel_workloads::lookup(&args.workload)?;
    let file = ScheduleFile::load(&args.steps)?;
    if let Some(named) = &file.workload {
        let theirs = tessel_workloads::lookup(named)?;
        if theirs.dag.workload_key() != w.dag.workload_key() {
            return Err(CmdError::Other(format!(
                "{} is a schedule of {named} ({}), not of {}",
                args.steps.display(),
                theirs.spec(),
                w.spec()
            )));
        }
    }
    let mut options = args.measure.apply(MeasureOptions::default());
    for placement in [options.timing.weights, options.timing.activations] {
        placement.supported().map_err(CmdError::Other)?;
    }
    options.verify.enabled = !args.no_verify;
    let candidate = Candidate::new(w.spec(), file.steps.clone());
    let mut runner = make_runner(args.measure.isolation, options.clone())?;
    let result = runner
        .measure(std::slice::from_ref(&candidate))
        .pop()
        .ok_or_else(|| CmdError::Other("the runner returned no result".into()))?;
    if let Some(path) = &args.records {
        let mut writer = RecordWriter::open(path)?;
        writer.append(&[Record::new(&candidate, &result, &options, &Target::host())])?;
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    report(&mut out, &w, args, file.steps.len(), &options, &result)?;
    match result.error {
        Some(e) => Err(CmdError::Candidate(e)),
        None => Ok(()),
    }
}

/// Milliseconds of seconds.
fn ms(s: f64) -> f64 {
    s * 1e3
}

fn report(
    out: &mut impl Write,
    w: &Workload,
    args: &Args,
    n_steps: usize,
    options: &MeasureOptions,
    r: &MeasureResult,
) -> Result<(), CmdError> {
    let p = &r.phases;
    let isolation = match args.measure.isolation {
        Isolation::Worker => "worker",
        Isolation::None => "none",
    };
    writeln!(out, "workload:  {} ({})", w.name, w.spec())?;
    writeln!(
        out,
        "schedule:  {} ({} steps)",
        args.steps.display(),
        n_steps
    )?;
    writeln!(
        out,
        "threads:   {} (isolation: {isolation}, target: {})",
        options.codegen.threads, options.codegen.isa
    )?;
    let gflops = r.median().map(|m| w.flop() as f64 / m / 1e9);
    match (&r.error, &r.timing) {
        (Some(e), _) => writeln!(out, "error:     {e}")?,
        (None, Some(t)) => {
            writeln!(
                out,
                "latency:   median {:.4} ms, min {:.4} ms, cv {:.2}% ({} repeats x {} calls)",
                ms(t.median),
                ms(t.min),
                100.0 * t.cv,
                t.costs.len(),
                t.number
            )?;
            writeln!(out, "GFLOP/s:   {:.2}", gflops.unwrap_or(0.0))?;
            if t.retaken > 0 {
                writeln!(
                    out,
                    "contended: {} repeats taken again (the kernel's threads waited for a CPU)",
                    t.retaken
                )?;
            }
        }
        (None, None) => writeln!(out, "latency:   not timed (repeat 0)")?,
    }
    writeln!(out, "compile:   {:.2} ms", p.compile_ms)?;
    let verdict = match (&r.error, options.verify.enabled) {
        (Some(e), _) if e.class == tessel_measure::ErrorClass::WrongAnswer => "NO (wrong answer)",
        (Some(_), _) => "unknown (did not run to the end)",
        (None, true) => "yes (matches the reference evaluator on seeded random inputs)",
        (None, false) => "not checked (--no-verify)",
    };
    writeln!(out, "correct:   {verdict}")?;
    writeln!(
        out,
        "overhead:  {:.2} ms outside the kernel (replay {:.2}, lower {:.2}, compile {:.2}, verify {:.2})",
        p.overhead_ms(),
        p.replay_ms,
        p.lower_ms,
        p.compile_ms,
        p.verify_ms
    )?;
    if args.json {
        let timing = r.timing.as_ref();
        let v = json!({ "run": {
            "workload": w.name,
            "spec": w.spec(),
            "key": w.dag.workload_key(),
            "steps": n_steps,
            "threads": options.codegen.threads,
            "target": options.codegen.isa.name(),
            "isolation": isolation,
            "ok": r.error.is_none(),
            "error": r.error.as_ref().map(|e| json!({"class": e.class.key(), "message": e.message})),
            "verified": r.error.is_none() && options.verify.enabled,
            "latency_ms": timing.map(|t| json!({"median": ms(t.median), "min": ms(t.min)})),
            "cv": timing.map(|t| t.cv),
            "costs_s": timing.map(|t| t.costs.clone()),
            "contention": timing.map(|t| t.contention.clone()),
            "retaken": timing.map(|t| t.retaken),
            "gflops": gflops,
            "compile_ms": p.compile_ms,
            "overhead_ms": p.overhead_ms(),
            "phases_ms": serde_json::to_value(p).unwrap_or(Value::Null),
        }});
        writeln!(out, "{v}")?;
    }
    Ok(())
}
