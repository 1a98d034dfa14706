//! `tessel experiment <workload>...`: the learned-policies experiment (PAPER.md §5).
//!
//! Every workload is tuned under each configuration and each seed (seed `s` is the same
//! for every configuration), with a fresh cost model and fresh policies per run:
//!
//! * `baseline` = `uniform` sketches + `fixed` mutation weights (Ansor),
//! * `rl` = `ducb` sketch selection + `fixed`,
//! * `ml` = `uniform` + the `classifier` mutation-rule predictor,
//! * `both` = `ducb` + `classifier`.
//!
//! The baseline always runs (it sets the targets). The report, per workload and
//! configuration, over seeds:
//!
//! * the median (and quartiles) of the final best GFLOP/s;
//! * **time to reach**: median over seeds of (accounted time until the run's best is
//!   within 1% of the baseline's final best of the same seed ÷ the baseline's own accounted
//!   time to get there), and the same by the wall clock and in trials; a seed that never
//!   gets there counts as infinite, so the median is "not reached" when half the seeds miss;
//! * the final-best ratio (GFLOP/s ÷ the baseline's, same seed, median; above 1 = faster),
//!   from the search and from the side-by-side re-measurement, with a paired signed-rank
//!   test of the latter;
//! * the policy overhead: share of the round time (wall and accounted) spent inside the
//!   sketch and mutation policies (timed exactly), next to the evolution share;
//! * the mutation validity rate (legal ÷ tried) and improvement rate (predicted better ÷
//!   tried).
//!
//! Robustness to measurement noise (issue #8, see `tessel_search::experiment`): the runs
//! of a workload share one measurement cache keyed by step log (`--no-cache` turns it
//! off), a hit is charged the time its first measurement cost so "accounted time" stays
//! fair, and after the runs every run's final best is re-measured in
//! `--remeasure-rounds` interleaved batches (median of the rounds). Every run's *trail*
//! (each program it held as its best after some round) is then re-measured the same way in
//! `--trail-rounds` batches, and time-to-reach is decided a second time on those times
//! ("re-measured"), so that a lucky reading in one search neither sets a target nor
//! reaches one.
//!
//! Output in `--out`: `records/<workload>.<config>.s<seed>.jsonl` (rewritten each run; a
//! run's file holds what it measured itself, cache hits are in the file of the run that
//! measured them first), `records/<workload>.remeasure.jsonl`,
//! `records/<workload>.trail.jsonl`, `runs.json` (every per-round trace and trail), `summary.json`, `report.md`, and per workload `<workload>.time.svg` /
//! `<workload>.trials.svg` (best-so-far GFLOP/s, median over seeds, vs accounted time / vs
//! trials). The tables go to stdout; with `--json` the summary is the last stdout line.

use crate::commands::search_options::{
    file_name, job_options, resolve_threads, Isolation, TargetArgs,
};
use crate::error::DriverError;
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tessel_ir::State;
use tessel_measure::Runner;
use tessel_search::cache::MeasureCache;
use tessel_search::evolution::EvolutionParams;
use tessel_search::experiment::{run_lockstep, summarize, Config, Problem, RunParts, RunTrace};
use tessel_search::harness::{Confirm, HarnessMeasurer};
use tessel_search::job::TuneJob;
use tessel_search::remeasure::{remeasure, Remeasurement};
use tessel_search::tuner::TuneParams;
use tessel_workloads::Workload;

mod plots;
mod tables;

use plots::plots;
use tables::{markdown_table, robustness_rows, robustness_text, search_rows, text_table};

/// A run reaches the baseline's final best `b` when its best is at most `b · (1 + TOLERANCE)`.
const TOLERANCE: f64 = 0.01;

/// Arguments of `tessel experiment`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Workloads: registry names (`gmm-3`) or `OP:key=value,...` specs.
    #[arg(required = true)]
    pub specs: Vec<String>,
    /// Measurement trials per run.
    #[arg(long, default_value_t = 1000, value_parser = super::numbers::positive, allow_negative_numbers = true)]
    pub trials: usize,
    /// Seeds per configuration (seeds 0..K).
    #[arg(long, default_value_t = 5)]
    pub seeds: u64,
    /// Configurations, comma-separated: baseline, rl, ml, both (baseline always runs).
    #[arg(long, default_value = "baseline,rl,ml,both", value_delimiter = ',')]
    pub configs: Vec<String>,
    /// Threads the kernels run on (default: every core).
    #[arg(long, value_parser = super::numbers::positive, allow_negative_numbers = true)]
    pub threads: Option<usize>,
    /// Output folder.
    #[arg(long, default_value = "experiment")]
    pub out: PathBuf,
    /// Candidates measured per round.
    #[arg(long, default_value_t = 64, value_parser = super::numbers::positive, allow_negative_numbers = true)]
    pub measures_per_round: usize,
    /// Evolution population (Ansor: 2048; smaller only for quick checks).
    #[arg(long, default_value_t = 2048, value_parser = super::numbers::positive, allow_negative_numbers = true)]
    pub population: usize,
    /// Where candidates run.
    #[arg(long, value_enum, default_value_t = Isolation::Worker)]
    pub isolation: Isolation,
    /// Measure on the farm: `nats://HOST:PORT[?cpu=NAME&wait=SECONDS]` (docs/farm.md).
    #[arg(long)]
    pub measure: Option<String>,
    /// The target machine (`--target`, `--no-micro-kernels`).
    #[command(flatten)]
    pub target: TargetArgs,
    /// Rounds of the final side-by-side re-measurement of every run's best (each round
    /// measures every program once, interleaved); 0 turns it off.
    #[arg(long, default_value_t = 10)]
    pub remeasure_rounds: usize,
    /// Rounds of the trail re-measurement: every program a run held as its best after some
    /// round, from every run of the workload, timed again side by side (interleaved,
    /// median of the rounds) to decide time-to-reach without lucky readings; 0 turns it
    /// off.
    #[arg(long, default_value_t = 5)]
    pub trail_rounds: usize,
    /// Further measurements of a candidate whose first reading is within 1 % of its run's
    /// best (it gets the median of all its repeats); 0 (the default) measures every
    /// candidate once.
    #[arg(long, default_value_t = 0, value_parser = super::numbers::non_negative, allow_negative_numbers = true)]
    pub confirm: usize,
    /// Do not share measurements between the runs of a workload (every run measures
    /// everything itself, and accounted time equals wall time).
    #[arg(long)]
    pub no_cache: bool,
    /// Also print the summary as one JSON object on the last stdout line.
    #[arg(long)]
    pub json: bool,
}

/// The configurations asked for, baseline first and always present, without repeats.
fn parse_configs(names: &[String]) -> Result<Vec<Config>, DriverError> {
    let mut wanted = vec![Config::Baseline];
    for name in names.iter().filter(|n| !n.trim().is_empty()) {
        let c = Config::parse(name).ok_or_else(|| {
            DriverError::Usage(format!(
                "unknown config `{name}` (known: {})",
                Config::ALL.map(Config::name).join(", ")
            ))
        })?;
        if !wanted.contains(&c) {
            wanted.push(c);
        }
    }
    wanted.sort();
    Ok(wanted)
}

/// The experiment's tuning job: the target and runner of the flags, the sizes and budget of
/// every run (the seed and the policies are set per run).
fn job(args: &Args, threads: usize) -> TuneJob {
    let mut options = job_options(
        args.target.resolve(threads),
        args.isolation,
        args.measure.as_deref(),
    );
    options.params = TuneParams {
        trials: args.trials,
        measures_per_round: args.measures_per_round.max(1),
        evolution: EvolutionParams {
            population: args.population.max(1),
            ..EvolutionParams::default()
        },
        ..TuneParams::default()
    };
    TuneJob::new(options)
}

fn runner(job: &TuneJob) -> Result<Box<dyn Runner>, DriverError> {
    job.runner().map_err(DriverError::failed)
}

/// How the runs of one workload were made robust to noise (reported per workload).
#[derive(Clone, Debug, Default, serde::Serialize)]
struct Robustness {
    /// Whether the runs shared a measurement cache.
    cache: bool,
    /// Trials answered by the cache, over all runs.
    cache_hits: usize,
    /// Trials over all runs.
    trials: usize,
    /// Distinct programs measured.
    distinct_programs: usize,
    /// Re-measurement rounds.
    remeasure_rounds: usize,
    /// Distinct final bests re-measured.
    remeasured_programs: usize,
    /// Wall seconds of the re-measurement.
    remeasure_seconds: f64,
    /// Trail re-measurement rounds.
    trail_rounds: usize,
    /// Distinct trail programs re-measured.
    trail_programs: usize,
    /// Wall seconds of the trail re-measurement.
    trail_seconds: f64,
    /// Further measurements of each reading near its run's best (`--confirm`).
    confirm_extra: usize,
    /// Candidates so confirmed, over all runs.
    confirmed: usize,
}

/// The file of a workload's records under `--out` (`<workload>.<tag>.jsonl`), removed if
/// it exists: a fresh run must not mix in old records.
fn fresh_records(args: &Args, w: &Workload, tag: &str) -> Result<PathBuf, DriverError> {
    let dir = args.out.join("records");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{}.{tag}.jsonl", file_name(&w.name)));
    if path.exists() {
        std::fs::remove_file(&path)?;
    }
    Ok(path)
}

/// What one side-by-side re-measurement of a workload's programs measured.
struct SideBySide {
    /// One result per program, in order (`None` for a skipped or failed one).
    results: Vec<Option<Remeasurement>>,
    /// Distinct programs measured.
    distinct: usize,
    /// Wall seconds it took.
    seconds: f64,
}

/// Re-measures `programs` side by side in `rounds` interleaved rounds, recording to
/// `records/<workload>.<tag>.jsonl`; `what` names them in the progress line.
fn remeasure_side_by_side(
    args: &Args,
    w: &Workload,
    job: &TuneJob,
    programs: &[Option<State>],
    rounds: usize,
    tag: &str,
    what: &str,
) -> Result<SideBySide, DriverError> {
    let distinct: std::collections::HashSet<String> =
        programs.iter().flatten().map(State::steps_json).collect();
    let path = fresh_records(args, w, tag)?;
    let mut measurer =
        HarnessMeasurer::new(w.clone(), runner(job)?, Some(&path)).map_err(DriverError::failed)?;
    let start = Instant::now();
    let results = remeasure(programs, &mut measurer, rounds);
    let seconds = start.elapsed().as_secs_f64();
    eprintln!(
        "{}: re-measured {} distinct {what} × {rounds} rounds in {seconds:.1} s",
        w.name,
        distinct.len(),
    );
    Ok(SideBySide {
        results,
        distinct: distinct.len(),
        seconds,
    })
}

/// Re-measures the final best of every run side by side, filling `remeasured`.
fn remeasure_bests(
    args: &Args,
    w: &Workload,
    problem: &Problem,
    job: &TuneJob,
    traces: &mut [RunTrace],
    robustness: &mut Robustness,
) -> Result<(), DriverError> {
    if args.remeasure_rounds == 0 {
        return Ok(());
    }
    let programs: Vec<Option<State>> = traces
        .iter()
        .map(|t| {
            let steps = t.best_steps.as_ref()?;
            State::replay(problem.dag.clone(), steps).ok()
        })
        .collect();
    let done = remeasure_side_by_side(
        args,
        w,
        job,
        &programs,
        args.remeasure_rounds,
        "remeasure",
        "final bests",
    )?;
    robustness.remeasure_rounds = args.remeasure_rounds;
    robustness.remeasured_programs = done.distinct;
    robustness.remeasure_seconds = done.seconds;
    for (t, r) in traces.iter_mut().zip(done.results) {
        t.remeasured = r;
    }
    Ok(())
}

/// Re-measures every run's trail (each best so far) side by side, filling
/// `TrailPoint::remeasured_seconds`.
fn remeasure_trails(
    args: &Args,
    w: &Workload,
    problem: &Problem,
    job: &TuneJob,
    traces: &mut [RunTrace],
    robustness: &mut Robustness,
) -> Result<(), DriverError> {
    if args.trail_rounds == 0 {
        return Ok(());
    }
    let programs: Vec<Option<State>> = traces
        .iter()
        .flat_map(|t| &t.trail)
        .map(|p| State::replay(problem.dag.clone(), &p.steps).ok())
        .collect();
    let done = remeasure_side_by_side(
        args,
        w,
        job,
        &programs,
        args.trail_rounds,
        "trail",
        "trail programs",
    )?;
    robustness.trail_rounds = args.trail_rounds;
    robustness.trail_programs = done.distinct;
    robustness.trail_seconds = done.seconds;
    let mut results = done.results.into_iter();
    for point in traces.iter_mut().flat_map(|t| t.trail.iter_mut()) {
        point.remeasured_seconds = results.next().flatten().and_then(|r| r.seconds);
    }
    Ok(())
}

/// Runs every config × seed on one workload, then re-measures the final bests and the
/// trails.
fn run_workload(
    args: &Args,
    w: &Workload,
    configs: &[Config],
    job: &TuneJob,
    done: &mut usize,
    total: usize,
) -> Result<(Vec<RunTrace>, Robustness), DriverError> {
    let problem = job
        .problem(Arc::new(w.dag.clone()))
        .map_err(DriverError::failed)?;
    let cache = (!args.no_cache).then(MeasureCache::shared);
    let flop = w.flop() as f64;
    let mut traces = Vec::new();
    let mut confirmed = 0;
    for seed in 0..args.seeds {
        let mut measurers = Vec::with_capacity(configs.len());
        for &config in configs {
            let path = fresh_records(args, w, &format!("{}.s{seed}", config.name()))?;
            measurers.push(
                HarnessMeasurer::new(w.clone(), runner(job)?, Some(&path))
                    .map_err(DriverError::failed)?
                    .confirming(Confirm::with_extra(args.confirm)),
            );
        }
        let mut scorers: Vec<_> = configs.iter().map(|_| job.scorer(seed)).collect();
        let mut parts: Vec<RunParts> = configs
            .iter()
            .zip(measurers.iter_mut())
            .zip(scorers.iter_mut())
            .map(|((&config, measurer), scorer)| RunParts {
                config,
                measurer,
                scorer,
            })
            .collect();
        // All configs of a seed advance in lockstep (one round each in turn), so that a
        // drift of the host's speed meets them at the same point of their searches.
        let seed_traces = run_lockstep(&job.with_seed(seed), &problem, &mut parts, cache.as_ref());
        for trace in &seed_traces {
            *done += 1;
            eprintln!(
                "[{done}/{total}] {} {:<8} seed {seed}: {} in {:.1} s wall, {:.1} s accounted \
                 ({} trials, {} cache hits)",
                w.name,
                trace.config.name(),
                trace
                    .best_seconds
                    .map_or("no valid program".to_string(), |s| format!(
                        "{:.2} GFLOP/s",
                        flop / s / 1e9
                    )),
                trace.wall_seconds,
                trace.accounted_seconds,
                trace.trials,
                trace.cache_hits
            );
        }
        // A records file that cannot be written stops the experiment, as it stops `tune`:
        // its runs could not be resumed or checked (exit code 3, the message on stderr).
        if let Some(e) = measurers.iter().find_map(|m| m.write_error.as_ref()) {
            let unsaved: usize = measurers.iter().map(|m| m.unsaved).sum();
            return Err(DriverError::RecordsLost(format!(
                "records of {} could not be written: {e}; the experiment stopped ({unsaved} \
                 measurement(s) are not in the file)",
                w.name
            )));
        }
        confirmed += measurers.iter().map(|m| m.confirmed).sum::<usize>();
        traces.extend(seed_traces);
    }
    let mut robustness = Robustness {
        confirm_extra: args.confirm,
        confirmed,
        cache: cache.is_some(),
        cache_hits: traces.iter().map(|t| t.cache_hits).sum(),
        trials: traces.iter().map(|t| t.trials).sum(),
        distinct_programs: cache.as_ref().map_or(0, |c| c.borrow().len()),
        ..Robustness::default()
    };
    remeasure_bests(args, w, &problem, job, &mut traces, &mut robustness)?;
    remeasure_trails(args, w, &problem, job, &mut traces, &mut robustness)?;
    Ok((traces, robustness))
}

const METRICS: &str = "\
* **configs**: `baseline` = uniform sketches + fixed mutation weights (Ansor); `rl` = \
discounted-UCB sketch selection + fixed; `ml` = uniform + learned mutation-rule classifier; \
`both` = ducb + classifier. Seed *s* is the same for every config; every run has a fresh \
cost model and fresh policies.
* **GFLOP/s**: final best, median over seeds [quartiles].
* **final ×base**: median over seeds of final best GFLOP/s ÷ the baseline's (same seed); \
above 1 = faster. *(search)*: the times the searches measured; *(re-measured)*: the final \
bests of all runs of the workload re-measured side by side (see Robustness), the figure to \
trust. **signed-rank p (n)**: exact two-sided Wilcoxon signed-rank test of the re-measured \
log time ratios against the baseline, paired by seed (n non-tied pairs; with 5 seeds p is \
at least 0.0625). **re-measure spread**: median over runs of (IQR ÷ median) of the \
re-measurement rounds.
* **time-to-reach (accounted)**: median over seeds of (accounted time until the run's best \
is within 1% of the baseline's final best of the same seed ÷ the baseline's own accounted \
time to get there); below 1 = faster. Accounted time is summed from the round records: \
sampling, evolution (policies included) and training as measured, measurement as charged \
(a cache hit is charged what its first measurement cost, so no run profits from another \
run's measurements). This is the headline ratio. **(wall)**: the same by the wall clock, \
where cache hits are nearly free. A seed that never gets there counts as infinite (\"not \
reached\" when the median does). **trials-to-reach**: the same in trials. **reached**: seeds \
that got there / seeds compared.
* **time-to-reach (re-measured)**: the same ratio decided on *re-measured* programs. Every \
program a run held as its best after some round (its trail) is timed again, side by side \
with the trails of all runs of the workload (interleaved rounds, median); the target is the \
baseline's final best as timed there, and a run reaches it at the first round whose best \
re-measures within 1%. A lucky reading in a search then neither sets a target nor reaches \
one. **reached (re-measured)**: seeds that got there / seeds compared.
* **policy % wall / accounted**: share of the round wall (accounted) time spent inside the \
sketch and mutation policies (timed exactly); **evol % accounted**: share of the round \
accounted time spent in evolution (cost-model prediction included).
* **mut valid / improved**: legal mutations ÷ tried, and mutations predicted better than \
their parent ÷ tried, pooled over seeds.
* **cache hits**: trials answered by the workload's shared measurement cache / trials.
";

/// Runs the subcommand.
pub fn run(args: &Args) -> Result<(), DriverError> {
    let configs = parse_configs(&args.configs)?;
    if args.seeds == 0 {
        return Err(DriverError::Usage("--seeds must be at least 1".into()));
    }
    if args.trials == 0 {
        return Err(DriverError::Usage("--trials must be at least 1".into()));
    }
    let workloads: Vec<Workload> = args
        .specs
        .iter()
        .map(|s| tessel_workloads::lookup(s))
        .collect::<Result<_, _>>()?;
    let threads = resolve_threads(args.threads);
    let job = job(args, threads);
    std::fs::create_dir_all(&args.out)?;
    let total = workloads.len() * configs.len() * args.seeds as usize;
    let mut done = 0;
    let mut all_runs = Vec::new();
    let mut summaries = Vec::new();
    let options = job.measure_options();
    let mut report = format!(
        "# Learned-policies experiment\n\n{} trials per run, {} seeds, {} kernel threads, \
         population {}, {} measured per round, isolation {:?}, shared measurement cache {}, \
         {} re-measurement rounds, {} trail re-measurement rounds.\n\n{METRICS}\n",
        args.trials,
        args.seeds,
        threads,
        args.population,
        args.measures_per_round,
        args.isolation,
        if args.no_cache { "off" } else { "on" },
        args.remeasure_rounds,
        args.trail_rounds
    );
    let stdout = std::io::stdout();
    for w in &workloads {
        let (runs, robustness) = run_workload(args, w, &configs, &job, &mut done, total)?;
        let s = summarize(&w.name, &w.spec(), w.flop() as f64, &runs, TOLERANCE);
        let plot_files = plots(&args.out, &s, &runs, &configs)?;
        let search = search_rows(&s);
        let robust = robustness_rows(&s);
        let robust_text = robustness_text(&robustness, &options);
        {
            let mut out = stdout.lock();
            writeln!(
                out,
                "\n{} ({}), {} trials × {} seeds",
                w.name,
                w.spec(),
                args.trials,
                args.seeds
            )?;
            write!(out, "{}", text_table(&search))?;
            writeln!(out)?;
            write!(out, "{}", text_table(&robust))?;
            write!(out, "{robust_text}")?;
        }
        report.push_str(&format!(
            "## {} (`{}`)\n\n### Search\n\n{}\n### Robustness\n\n{}\n{}\n",
            w.name,
            w.spec(),
            markdown_table(&search),
            robust_text,
            markdown_table(&robust)
        ));
        for f in &plot_files {
            report.push_str(&format!("![{f}]({f})\n"));
        }
        report.push('\n');
        let mut v = serde_json::to_value(&s).map_err(DriverError::failed)?;
        v["plots"] = json!(plot_files);
        v["robustness"] = json!(robustness);
        summaries.push(v);
        all_runs.push(json!({"workload": w.name, "runs": runs}));
    }
    let summary = json!({
        "trials": args.trials,
        "seeds": args.seeds,
        "threads": threads,
        "population": args.population,
        "measures_per_round": args.measures_per_round,
        "tolerance": TOLERANCE,
        "configs": configs.iter().map(|c| c.name()).collect::<Vec<_>>(),
        "robustness": {
            "shared_cache": !args.no_cache,
            "cache_key": "canonical step log (serde JSON of the steps)",
            "hit_charge": "the time the first measurement cost (its share of its batch)",
            "time_to_reach": "accounted time (round records; measurement as charged); \
                              wall-clock ratio reported next to it",
            "remeasure_rounds": args.remeasure_rounds,
            "remeasure_order": "every program once per round, order rotated each round",
            "repeats_per_measurement": options.timing.repeat,
            "min_repeat_ms": options.timing.min_repeat_ms,
            "confirm_extra_measurements": args.confirm,
            "confirm_margin": Confirm::with_extra(args.confirm).margin,
            "final_ratio_to_trust": if args.remeasure_rounds > 0 {
                "final_ratio_remeasured"
            } else {
                "final_ratio"
            },
            "trail_rounds": args.trail_rounds,
            "time_to_reach_remeasured": "every run's best-so-far programs re-measured side by \
                                         side; target = the baseline's final as re-measured",
        },
        "workloads": summaries,
    });
    let write = |name: &str, text: &str| std::fs::write(args.out.join(name), text);
    write(
        "summary.json",
        &serde_json::to_string_pretty(&summary).map_err(DriverError::failed)?,
    )?;
    write(
        "runs.json",
        &serde_json::to_string(&all_runs).map_err(DriverError::failed)?,
    )?;
    write("report.md", &report)?;
    let mut out = stdout.lock();
    writeln!(
        out,
        "\nreport          {}",
        args.out.join("report.md").display()
    )?;
    if args.json {
        writeln!(out, "{summary}")?;
    }
    Ok(())
}
