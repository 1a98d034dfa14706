//! `tessel tune <workload>`: the main job — search for a fast schedule and record every
//! measurement.
//!
//! Progress (round, trials, best GFLOP/s, ETA) is drawn on stderr; the final table goes to
//! stdout, and with `--json` one JSON object is the last stdout line. Records are appended
//! to `--records FILE` (default `<workload>.tessel.jsonl` in the current folder); when the
//! file exists the search resumes from it: its states are never measured again and train
//! the cost model from the start.

use super::search_options::{file_name, progress_bar, SearchOptions};
use crate::error::DriverError;
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tessel_measure::RecordWriter;
use tessel_search::confirm::{confirm_leaders, Confirmation};
use tessel_search::harness::{resume_records, HarnessMeasurer};
use tessel_search::job::TuneJob;

/// Arguments of `tessel tune`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A registry name (`gmm-3`) or an `OP:key=value,...` spec.
    pub spec: String,
    /// Measurement trials.
    #[arg(long, default_value_t = 1000, value_parser = super::numbers::positive, allow_negative_numbers = true)]
    pub trials: usize,
    /// Stop after this many seconds of search.
    #[arg(long, allow_negative_numbers = true)]
    pub time_budget: Option<f64>,
    /// Stop after this many trials without improvement.
    #[arg(long, value_parser = super::numbers::positive, allow_negative_numbers = true)]
    pub early_stopping: Option<usize>,
    /// Records file (default `<workload>.tessel.jsonl` here); an existing one resumes.
    #[arg(long)]
    pub records: Option<PathBuf>,
    /// Batch size: overrides the workload's batch key.
    #[arg(long)]
    pub batch: Option<i64>,
    /// Policies, seed, threads, sizes, isolation.
    #[command(flatten)]
    pub search: SearchOptions,
    /// Also print one machine-readable JSON object as the last line.
    #[arg(long)]
    pub json: bool,
}

/// Runs the subcommand.
pub fn run(args: &Args) -> Result<(), DriverError> {
    let (sketch_name, mutation_name) = args.search.policy_names()?;
    let (job, model_start) = args.search.job_with_model_start(args.trials)?;
    let w = match args.batch {
        Some(b) => tessel_workloads::lookup_with_batch(&args.spec, b)?,
        None => tessel_workloads::lookup(&args.spec)?,
    };
    let problem = job
        .problem(Arc::new(w.dag.clone()))
        .map_err(DriverError::failed)?;
    let path = args
        .records
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.tessel.jsonl", file_name(&w.name))));
    let log = resume_records(&path, &w, &problem.dag, &job.measure_options())
        .map_err(DriverError::failed)?;
    let (previous, bad_lines, other_codegen) = (log.states, log.bad_lines, log.other_codegen);
    let resumed = previous.len();
    let mut measurer = HarnessMeasurer::new(
        w.clone(),
        job.runner().map_err(DriverError::failed)?,
        Some(&path),
    )
    .map_err(DriverError::failed)?
    .lowerings(job.lowerings().clone())
    .confirming(args.search.confirm())
    .interruptible(super::stopping::install_interrupt()?);
    let mut scorer = job.scorer(job.seed());
    let flop = w.flop() as f64;
    let bar = progress_bar(args.trials);
    let hook_bar = bar.clone();
    let time_budget = super::search_options::time_budget(args.time_budget)?;
    let start = Instant::now();
    let result = job
        .tuner(&problem, job.seed())
        .time_budget(time_budget)
        .early_stopping(args.early_stopping)
        .resume_from(previous)
        .on_round(move |r| {
            hook_bar.set_position(r.trials as u64);
            let best = r
                .best_seconds
                .map_or("-".to_string(), |s| format!("{:.1}", flop / s / 1e9));
            hook_bar.set_message(format!("round {}  best {best} GFLOP/s", r.round + 1));
        })
        .run(&mut measurer, &mut scorer);
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    let search_best = result.best.as_ref().map(|b| b.1);
    // No confirmation after an interrupt or a failed records write: the user asked to stop,
    // or what it measured could not be kept.
    let confirmation = if measurer.is_halted() {
        None
    } else {
        final_confirmation(args, &job, &w, &result.leaders, measurer.writer_mut())?
    };
    let confirm_seconds = start.elapsed().as_secs_f64() - seconds;
    // The figure to report: the confirmed one when the confirmation ran, else the search's.
    let best_seconds = match &confirmation {
        Some(c) => c.best().and_then(|p| p.seconds),
        None => search_best,
    };
    let best_ms = best_seconds.map(|s| s * 1e3);
    let best_gflops = best_seconds.map(|s| flop / s / 1e9);
    let t = &result.time;
    let pct = |x: f64| {
        if seconds > 0.0 {
            100.0 * x / seconds
        } else {
            0.0
        }
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "workload        {} ({})", w.name, w.spec())?;
    writeln!(
        out,
        "trials          {} ({} valid){}",
        result.trials,
        result.valid,
        if resumed > 0 {
            format!(", {resumed} resumed from the records")
        } else {
            String::new()
        }
    )?;
    match (best_ms, best_gflops) {
        (Some(ms), Some(g)) => writeln!(out, "best            {ms:.4} ms  {g:.2} GFLOP/s")?,
        _ => writeln!(out, "best            none (no candidate ran correctly)")?,
    }
    if let Some(c) = &confirmation {
        let read = c
            .best()
            .map(|p| p.search_seconds)
            .or(search_best)
            .map_or("-".to_string(), |s| format!("{:.4} ms", s * 1e3));
        writeln!(
            out,
            "confirmed       in fresh workers: {} programs x {} rounds side by side, then the fastest {} more times ({confirm_seconds:.1} s){}; the search read {read}",
            c.programs.len(),
            args.search.final_confirm().rounds,
            args.search.final_confirm().reporting,
            match c.failed() {
                0 => String::new(),
                n => format!(", {n} failed"),
            }
        )?;
        if let Some(e) = &c.write_error {
            writeln!(
                out,
                "warning         confirmation records could not be written: {e}"
            )?;
        }
    }
    if measurer.confirmed > 0 {
        writeln!(
            out,
            "confirmed       {} readings near the best, each measured {} more times",
            measurer.confirmed, args.search.confirm
        )?;
    }
    writeln!(out, "search time     {seconds:.1} s: sample {:.0}%, evolution {:.0}%, model training {:.0}%, measurement {:.0}%",
        pct(t.sample), pct(t.evolution), pct(t.train), pct(t.measure))?;
    writeln!(
        out,
        "policies        sketches: {sketch_name}, mutations: {mutation_name}"
    )?;
    writeln!(
        out,
        "cost model      {}, {model_start}",
        args.search.cost_model
    )?;
    writeln!(out, "stopped         {:?}", result.stop_reason)?;
    writeln!(
        out,
        "records         {}{}",
        path.display(),
        [
            (bad_lines, "unreadable lines"),
            (
                other_codegen,
                "records of other codegen settings or revisions"
            )
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!(" ({n} {what} skipped)"))
        .collect::<String>()
    )?;
    if !measurer.errors.is_empty() {
        let errs: Vec<String> = measurer
            .errors
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        writeln!(out, "errors          {}", errs.join(", "))?;
    }
    if args.json {
        let summary = json!({
            "workload": w.name,
            "spec": w.spec(),
            "trials": result.trials,
            "valid": result.valid,
            "confirmed": measurer.confirmed,
            "resumed": resumed,
            "cost_model_start": model_start.to_string(),
            "skipped_other_codegen": other_codegen,
            "best_latency_ms": best_ms,
            "best_gflops": best_gflops,
            "search_best_latency_ms": search_best.map(|s| s * 1e3),
            "confirmation": confirmation.as_ref().map(|c| json!({
                "rounds": args.search.final_confirm().rounds,
                "seconds": confirm_seconds,
                "reported": c.best().map(|p| json!({
                    "confirmed_ms": p.seconds.map(|s| s * 1e3),
                    "search_ms": p.search_seconds * 1e3,
                    "rounds_ms": p.rounds.iter().map(|r| r.map(|s| s * 1e3)).collect::<Vec<_>>(),
                })),
                "programs": c.programs.iter().map(|p| json!({
                    "confirmed_ms": p.seconds.map(|s| s * 1e3),
                    "search_ms": p.search_seconds * 1e3,
                    "rounds_ms": p.rounds.iter().map(|r| r.map(|s| s * 1e3)).collect::<Vec<_>>(),
                    "error": p.error.as_ref().map(|e| json!({"class": e.class.key(), "message": e.message})),
                })).collect::<Vec<_>>(),
            })),
            "search_seconds": seconds,
            "time_split": {"sample": t.sample, "evolution": t.evolution, "train": t.train, "measure": t.measure,
                           "other": (seconds - t.total()).max(0.0)},
            "records": path.display().to_string(),
            "stop_reason": result.stop_reason,
            "policies": {"sketch": sketch_name, "mutation": mutation_name},
            "errors": measurer.errors,
            "rounds": result.rounds.iter().scan(0.0, |elapsed, r| {
                *elapsed += r.time.total();
                Some(json!({"round": r.round, "trials": r.trials, "seconds": *elapsed,
                    "best_gflops": r.best_seconds.map(|s| flop / s / 1e9), "failed": r.failed}))
            }).collect::<Vec<_>>(),
        });
        let mut summary = summary;
        summary["stopped"] = super::stopping::json_fields(&measurer);
        writeln!(out, "{summary}")?;
    }
    super::stopping::outcome(&measurer, &path)
}

/// Confirms the search's fastest programs in a fresh worker (`--final-confirm`), appending
/// the confirmed records with `writer`; `None` when it is off or nothing ran correctly.
fn final_confirmation(
    args: &Args,
    job: &TuneJob,
    w: &tessel_workloads::Workload,
    leaders: &[(tessel_ir::State, f64)],
    writer: Option<&mut RecordWriter>,
) -> Result<Option<Confirmation>, DriverError> {
    let how = args.search.final_confirm();
    if !how.is_on() || leaders.is_empty() {
        return Ok(None);
    }
    // New runners, one per round: new worker processes, nothing carried over from the
    // search's, and each round's buffers on other pages.
    let mut runners = (0..how.runners())
        .map(|_| job.runner())
        .collect::<Result<Vec<_>, _>>()
        .map_err(DriverError::failed)?;
    Ok(Some(confirm_leaders(w, leaders, &mut runners, how, writer)))
}
