//! `tessel tune <workload>`: the main job — search for a fast schedule and record every
//! measurement.
//!
//! Progress (round, trials, best GFLOP/s, ETA) is drawn on stderr; the final table goes to
//! stdout, and with `--json` one JSON object is the last stdout line. Records are appended
//! to `--records FILE` (default `<workload>.tessel.jsonl` in the current folder); when the
//! file exists the search resumes from it: its states are never measured again and train
//! the cost model from the start.

use crate::error::DriverError;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tessel_ir::workloads;
use tessel_measure::{InProcessRunner, LocalWorkerRunner, MeasureOptions, Runner, WorkerCommand};
use tessel_search::harness::{resume_records, HarnessMeasurer};
use tessel_search::model::ModelScorer;
use tessel_search::tuner::{TuneParams, Tuner};
use tessel_sketch::{generate_sketches, HardwareParams};

/// Where candidates run.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// In a persistent worker process: a crash or hang costs one candidate.
    Worker,
    /// In this process (faster start, no protection).
    None,
}

/// Arguments of `tessel tune`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A registry name (`gmm-3`) or an `OP:key=value,...` spec.
    pub spec: String,
    /// Measurement trials.
    #[arg(long, default_value_t = 1000)]
    pub trials: usize,
    /// Stop after this many seconds of search.
    #[arg(long)]
    pub time_budget: Option<f64>,
    /// Stop after this many trials without improvement.
    #[arg(long)]
    pub early_stopping: Option<usize>,
    /// Seed of every random decision.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Threads the kernels run on (default: every core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Records file (default `<workload>.tessel.jsonl` here); an existing one resumes.
    #[arg(long)]
    pub records: Option<PathBuf>,
    /// Candidates measured per round.
    #[arg(long, default_value_t = 64)]
    pub measures_per_round: usize,
    /// Evolution population.
    #[arg(long, default_value_t = 2048)]
    pub population: usize,
    /// Where candidates run.
    #[arg(long, value_enum, default_value_t = Isolation::Worker)]
    pub isolation: Isolation,
    /// Search policies: `baseline` (Ansor: uniform sketch choice, fixed mutation weights),
    /// `rl` (discounted-UCB sketch selection), `ml` (learned mutation-rule predictor) or
    /// `both`.
    #[arg(long, default_value = "baseline")]
    pub policy: String,
    /// Overrides the sketch policy: uniform, ducb, thompson or egreedy.
    #[arg(long)]
    pub sketch_policy: Option<String>,
    /// Overrides the mutation policy: fixed or classifier.
    #[arg(long)]
    pub mutation_policy: Option<String>,
    /// Batch size: overrides the workload's batch key.
    #[arg(long)]
    pub batch: Option<i64>,
    /// Also print one machine-readable JSON object as the last line.
    #[arg(long)]
    pub json: bool,
}

fn file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The sketch and mutation policy names of a `--policy` preset.
pub fn policy_preset(name: &str) -> Option<(&'static str, &'static str)> {
    Some(match name {
        "baseline" => ("uniform", "fixed"),
        "rl" => ("ducb", "fixed"),
        "ml" => ("uniform", "classifier"),
        "both" => ("ducb", "classifier"),
        _ => return None,
    })
}

/// Runs the subcommand.
pub fn run(args: &Args) -> Result<(), DriverError> {
    let (sketch_default, mutation_default) = policy_preset(&args.policy).ok_or_else(|| {
        DriverError::Usage(format!(
            "unknown --policy `{}` (use baseline, rl, ml or both)",
            args.policy
        ))
    })?;
    let sketch_name = args.sketch_policy.as_deref().unwrap_or(sketch_default);
    let mutation_name = args.mutation_policy.as_deref().unwrap_or(mutation_default);
    let sketch_policy = tessel_rl_policy::by_name(sketch_name).ok_or_else(|| {
        DriverError::Usage(format!(
            "unknown sketch policy `{sketch_name}` (known: {})",
            tessel_rl_policy::POLICY_NAMES.join(", ")
        ))
    })?;
    let mutation_policy = tessel_mutation_model::by_name(mutation_name).ok_or_else(|| {
        DriverError::Usage(format!(
            "unknown mutation policy `{mutation_name}` (known: {})",
            tessel_mutation_model::POLICY_NAMES.join(", ")
        ))
    })?;
    let w = match args.batch {
        Some(b) => workloads::lookup_with_batch(&args.spec, b)?,
        None => workloads::lookup(&args.spec)?,
    };
    let threads = args
        .threads
        .unwrap_or_else(tessel_measure::options::available_cores)
        .max(1);
    let dag = Arc::new(w.dag.clone());
    let hw = HardwareParams::with_cores(threads as i64);
    let sketches = generate_sketches(&dag, &hw).map_err(|e| DriverError::Failed(e.to_string()))?;
    let path = args
        .records
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.tessel.jsonl", file_name(&w.name))));
    let (previous, bad_lines) =
        resume_records(&path, &w, &dag).map_err(|e| DriverError::Failed(e.to_string()))?;
    let resumed = previous.len();
    let options = MeasureOptions::with_threads(threads);
    let runner: Box<dyn Runner> = match args.isolation {
        Isolation::Worker => {
            let cmd = WorkerCommand::current_exe(&["worker"])
                .map_err(|e| DriverError::Failed(e.to_string()))?;
            Box::new(LocalWorkerRunner::new(cmd, options))
        }
        Isolation::None => {
            Box::new(InProcessRunner::new(options).map_err(|e| DriverError::Failed(e.to_string()))?)
        }
    };
    let mut measurer = HarnessMeasurer::new(w.clone(), runner, Some(&path))
        .map_err(|e| DriverError::Failed(e.to_string()))?;
    let mut scorer = ModelScorer::new(args.seed);
    let flop = w.flop() as f64;
    let bar = ProgressBar::new(args.trials as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {bar:30} {pos}/{len} trials  {msg}  ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let hook_bar = bar.clone();
    let params = TuneParams {
        trials: args.trials,
        time_budget: args.time_budget.map(Duration::from_secs_f64),
        early_stopping: args.early_stopping,
        measures_per_round: args.measures_per_round.max(1),
        evolution: tessel_search::evolution::EvolutionParams {
            population: args.population.max(1),
            ..Default::default()
        },
        seed: args.seed,
        ..TuneParams::default()
    };
    let start = Instant::now();
    let result = Tuner::new(dag, sketches, hw)
        .params(params)
        .sketch_policy(sketch_policy)
        .mutation_policy(mutation_policy)
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
    let best_ms = result.best.as_ref().map(|b| b.1 * 1e3);
    let best_gflops = result.best.as_ref().map(|b| flop / b.1 / 1e9);
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
    writeln!(out, "search time     {seconds:.1} s: sample {:.0}%, evolution {:.0}%, model training {:.0}%, measurement {:.0}%",
        pct(t.sample), pct(t.evolution), pct(t.train), pct(t.measure))?;
    writeln!(
        out,
        "policies        sketches: {sketch_name}, mutations: {mutation_name}"
    )?;
    writeln!(out, "stopped         {:?}", result.stop_reason)?;
    writeln!(
        out,
        "records         {}{}",
        path.display(),
        if bad_lines > 0 {
            format!(" ({bad_lines} unreadable lines skipped)")
        } else {
            String::new()
        }
    )?;
    if !measurer.errors.is_empty() {
        let errs: Vec<String> = measurer
            .errors
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        writeln!(out, "errors          {}", errs.join(", "))?;
    }
    if let Some(e) = &measurer.write_error {
        writeln!(out, "warning         records could not be written: {e}")?;
    }
    if args.json {
        let summary = json!({
            "workload": w.name,
            "spec": w.spec(),
            "trials": result.trials,
            "valid": result.valid,
            "resumed": resumed,
            "best_latency_ms": best_ms,
            "best_gflops": best_gflops,
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
        writeln!(out, "{summary}")?;
    }
    Ok(())
}
