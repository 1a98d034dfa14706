//! The operator experiment (`tessel experiment <workload>...`, PAPER.md §5).
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
//! Robustness to measurement noise (issue #8, see [`crate::runs`]): the runs
//! of a workload share one measurement cache keyed by step log ([`OperatorOptions::no_cache`] turns it
//! off), a hit is charged the time its first measurement cost so "accounted time" stays
//! fair, and after the runs every run's final best is re-measured in
//! [`OperatorOptions::remeasure_rounds`] interleaved batches (median of the rounds). Every run's *trail*
//! (each program it held as its best after some round) is then re-measured the same way in
//! [`OperatorOptions::trail_rounds`] batches, and time-to-reach is decided a second time on those times
//! ("re-measured"), so that a lucky reading in one search neither sets a target nor
//! reaches one.
//!
//! Output in [`OperatorOptions::out`]: `records/<workload>.<config>.s<seed>.jsonl`
//! (rewritten each run; a run's file holds what it measured itself, cache hits are in the
//! file of the run that measured them first), `records/<workload>.remeasure.jsonl`,
//! `records/<workload>.trail.jsonl`, `runs.json` (every per-round trace and trail),
//! `summary.json`, `report.md`, and per workload `<workload>.time.svg` /
//! `<workload>.trials.svg` (best-so-far GFLOP/s, median over seeds, vs accounted time / vs
//! trials). [`run`] prints the tables to the writer it is given and returns the summary.

use crate::cache::MeasureCache;
use crate::plots::plots;
use crate::remeasure::{remeasure, Remeasurement};
use crate::runs::{run_lockstep, summarize, Config, Problem, RunParts, RunTrace};
use crate::tables::{markdown_table, robustness_rows, robustness_text, search_rows, text_table};
use crate::{file_name, ExperimentError};
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tessel_ir::State;
use tessel_measure::Runner;
use tessel_search::harness::{Confirm, HarnessMeasurer};
use tessel_search::job::TuneJob;
use tessel_workloads::Workload;

/// A run reaches the baseline's final best `b` when its best is at most `b · (1 + TOLERANCE)`.
pub const TOLERANCE: f64 = 0.01;

/// How the operator experiment runs (the tuning job gives the target, the runner, the trial
/// budget and the sizes of every run).
#[derive(Clone, Debug)]
pub struct OperatorOptions {
    /// Seeds per configuration (seeds 0..K).
    pub seeds: u64,
    /// The configurations, baseline first ([`crate::parse_configs`]).
    pub configs: Vec<Config>,
    /// Output folder.
    pub out: PathBuf,
    /// Rounds of the final side-by-side re-measurement of every run's best; 0 turns it off.
    pub remeasure_rounds: usize,
    /// Rounds of the trail re-measurement; 0 turns it off.
    pub trail_rounds: usize,
    /// Further measurements of a candidate whose first reading is within 1 % of its run's
    /// best; 0 measures every candidate once.
    pub confirm: usize,
    /// Do not share measurements between the runs of a workload.
    pub no_cache: bool,
    /// How candidates are measured, in words for the report (`worker`, `none`, a farm).
    pub isolation: String,
}

fn runner(job: &TuneJob) -> Result<Box<dyn Runner>, ExperimentError> {
    Ok(job.runner()?)
}

/// How the runs of one workload were made robust to noise (reported per workload).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub(crate) struct Robustness {
    /// Whether the runs shared a measurement cache.
    pub(crate) cache: bool,
    /// Trials answered by the cache, over all runs.
    pub(crate) cache_hits: usize,
    /// Trials over all runs.
    pub(crate) trials: usize,
    /// Distinct programs measured.
    pub(crate) distinct_programs: usize,
    /// Re-measurement rounds.
    pub(crate) remeasure_rounds: usize,
    /// Distinct final bests re-measured.
    pub(crate) remeasured_programs: usize,
    /// Wall seconds of the re-measurement.
    pub(crate) remeasure_seconds: f64,
    /// Trail re-measurement rounds.
    pub(crate) trail_rounds: usize,
    /// Distinct trail programs re-measured.
    pub(crate) trail_programs: usize,
    /// Wall seconds of the trail re-measurement.
    pub(crate) trail_seconds: f64,
    /// Further measurements of each reading near its run's best (`--confirm`).
    pub(crate) confirm_extra: usize,
    /// Candidates so confirmed, over all runs.
    pub(crate) confirmed: usize,
}

/// The file of a workload's records under `--out` (`<workload>.<tag>.jsonl`), removed if
/// it exists: a fresh run must not mix in old records.
fn fresh_records(o: &OperatorOptions, w: &Workload, tag: &str) -> Result<PathBuf, ExperimentError> {
    let dir = o.out.join("records");
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
    o: &OperatorOptions,
    w: &Workload,
    job: &TuneJob,
    programs: &[Option<State>],
    rounds: usize,
    tag: &str,
    what: &str,
) -> Result<SideBySide, ExperimentError> {
    let distinct: std::collections::HashSet<String> =
        programs.iter().flatten().map(State::steps_json).collect();
    let path = fresh_records(o, w, tag)?;
    let mut measurer = HarnessMeasurer::new(w.clone(), runner(job)?, Some(&path))?;
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
    o: &OperatorOptions,
    w: &Workload,
    problem: &Problem,
    job: &TuneJob,
    traces: &mut [RunTrace],
    robustness: &mut Robustness,
) -> Result<(), ExperimentError> {
    if o.remeasure_rounds == 0 {
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
        o,
        w,
        job,
        &programs,
        o.remeasure_rounds,
        "remeasure",
        "final bests",
    )?;
    robustness.remeasure_rounds = o.remeasure_rounds;
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
    o: &OperatorOptions,
    w: &Workload,
    problem: &Problem,
    job: &TuneJob,
    traces: &mut [RunTrace],
    robustness: &mut Robustness,
) -> Result<(), ExperimentError> {
    if o.trail_rounds == 0 {
        return Ok(());
    }
    let programs: Vec<Option<State>> = traces
        .iter()
        .flat_map(|t| &t.trail)
        .map(|p| State::replay(problem.dag.clone(), &p.steps).ok())
        .collect();
    let done = remeasure_side_by_side(
        o,
        w,
        job,
        &programs,
        o.trail_rounds,
        "trail",
        "trail programs",
    )?;
    robustness.trail_rounds = o.trail_rounds;
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
    o: &OperatorOptions,
    w: &Workload,
    configs: &[Config],
    job: &TuneJob,
    done: &mut usize,
    total: usize,
) -> Result<(Vec<RunTrace>, Robustness), ExperimentError> {
    let problem = job.problem(Arc::new(w.dag.clone()))?;
    let cache = (!o.no_cache).then(MeasureCache::shared);
    let flop = w.flop() as f64;
    let mut traces = Vec::new();
    let mut confirmed = 0;
    for seed in 0..o.seeds {
        let mut measurers = Vec::with_capacity(configs.len());
        for &config in configs {
            let path = fresh_records(o, w, &format!("{}.s{seed}", config.name()))?;
            measurers.push(
                HarnessMeasurer::new(w.clone(), runner(job)?, Some(&path))?
                    .lowerings(job.lowerings().clone())
                    .confirming(Confirm::with_extra(o.confirm)),
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
            return Err(ExperimentError::RecordsLost(format!(
                "records of {} could not be written: {e}; the experiment stopped ({unsaved} \
                 measurement(s) are not in the file)",
                w.name
            )));
        }
        confirmed += measurers.iter().map(|m| m.confirmed).sum::<usize>();
        traces.extend(seed_traces);
    }
    let mut robustness = Robustness {
        confirm_extra: o.confirm,
        confirmed,
        cache: cache.is_some(),
        cache_hits: traces.iter().map(|t| t.cache_hits).sum(),
        trials: traces.iter().map(|t| t.trials).sum(),
        distinct_programs: cache.as_ref().map_or(0, |c| c.borrow().len()),
        ..Robustness::default()
    };
    remeasure_bests(o, w, &problem, job, &mut traces, &mut robustness)?;
    remeasure_trails(o, w, &problem, job, &mut traces, &mut robustness)?;
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

/// Runs the experiment on `workloads` with `job` (its target, runner, trial budget and
/// sizes; the seed and the policies are set per run), writes `report.md`, `summary.json`,
/// `runs.json`, the plots and every run's records under [`OperatorOptions::out`], prints the
/// tables to `out`, and returns the summary.
pub fn run(
    job: &TuneJob,
    workloads: &[Workload],
    o: &OperatorOptions,
    out: &mut dyn Write,
) -> Result<serde_json::Value, ExperimentError> {
    let configs = &o.configs;
    if o.seeds == 0 {
        return Err(ExperimentError::Usage("--seeds must be at least 1".into()));
    }
    let params = &job.options().params;
    let (trials, population, per_round) = (
        params.trials,
        params.evolution.population,
        params.measures_per_round,
    );
    if trials == 0 {
        return Err(ExperimentError::Usage("--trials must be at least 1".into()));
    }
    let threads = job.options().space.target.cores.max(1);
    std::fs::create_dir_all(&o.out)?;
    let total = workloads.len() * configs.len() * o.seeds as usize;
    let mut done = 0;
    let mut all_runs = Vec::new();
    let mut summaries = Vec::new();
    let options = job.measure_options();
    let mut report = format!(
        "# Learned-policies experiment\n\n{} trials per run, {} seeds, {} kernel threads, \
         population {}, {} measured per round, isolation {}, shared measurement cache {}, \
         {} re-measurement rounds, {} trail re-measurement rounds.\n\n{METRICS}\n",
        trials,
        o.seeds,
        threads,
        population,
        per_round,
        o.isolation,
        if o.no_cache { "off" } else { "on" },
        o.remeasure_rounds,
        o.trail_rounds
    );
    for w in workloads {
        let (runs, robustness) = run_workload(o, w, configs, job, &mut done, total)?;
        let s = summarize(&w.name, &w.spec(), w.flop() as f64, &runs, TOLERANCE);
        let plot_files = plots(&o.out, &s, &runs, configs)?;
        let search = search_rows(&s);
        let robust = robustness_rows(&s);
        let robust_text = robustness_text(&robustness, &options);
        {
            writeln!(
                out,
                "\n{} ({}), {} trials × {} seeds",
                w.name,
                w.spec(),
                trials,
                o.seeds
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
        let mut v = serde_json::to_value(&s)?;
        v["plots"] = json!(plot_files);
        v["robustness"] = json!(robustness);
        summaries.push(v);
        all_runs.push(json!({"workload": w.name, "runs": runs}));
    }
    let summary = json!({
        "trials": trials,
        "seeds": o.seeds,
        "threads": threads,
        "population": population,
        "measures_per_round": per_round,
        "tolerance": TOLERANCE,
        "configs": configs.iter().map(|c| c.name()).collect::<Vec<_>>(),
        "robustness": {
            "shared_cache": !o.no_cache,
            "cache_key": "canonical step log (serde JSON of the steps)",
            "hit_charge": "the time the first measurement cost (its share of its batch)",
            "time_to_reach": "accounted time (round records; measurement as charged); \
                              wall-clock ratio reported next to it",
            "remeasure_rounds": o.remeasure_rounds,
            "remeasure_order": "every program once per round, order rotated each round",
            "repeats_per_measurement": options.timing.repeat,
            "min_repeat_ms": options.timing.min_repeat_ms,
            "confirm_extra_measurements": o.confirm,
            "confirm_margin": Confirm::with_extra(o.confirm).margin,
            "final_ratio_to_trust": if o.remeasure_rounds > 0 {
                "final_ratio_remeasured"
            } else {
                "final_ratio"
            },
            "trail_rounds": o.trail_rounds,
            "time_to_reach_remeasured": "every run's best-so-far programs re-measured side by \
                                         side; target = the baseline's final as re-measured",
        },
        "workloads": summaries,
    });
    let write = |name: &str, text: &str| std::fs::write(o.out.join(name), text);
    write("summary.json", &serde_json::to_string_pretty(&summary)?)?;
    write("runs.json", &serde_json::to_string(&all_runs)?)?;
    write("report.md", &report)?;
    Ok(summary)
}
