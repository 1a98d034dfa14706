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
//! `--remeasure-rounds` interleaved batches (median of the rounds).
//!
//! Output in `--out`: `records/<workload>.<config>.s<seed>.jsonl` (rewritten each run; a
//! run's file holds what it measured itself, cache hits are in the file of the run that
//! measured them first), `records/<workload>.remeasure.jsonl`, `runs.json` (every
//! per-round trace), `summary.json`, `report.md`, and per workload `<workload>.time.svg` /
//! `<workload>.trials.svg` (best-so-far GFLOP/s, median over seeds, vs accounted time / vs
//! trials). The tables go to stdout; with `--json` the summary is the last stdout line.

use crate::commands::search_options::{file_name, make_runner, resolve_threads, Isolation};
use crate::error::DriverError;
use plotters::prelude::*;
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tessel_ir::workloads::{self, Workload};
use tessel_ir::State;
use tessel_measure::{MeasureOptions, Runner};
use tessel_search::cache::MeasureCache;
use tessel_search::evolution::EvolutionParams;
use tessel_search::experiment::{
    median_curve, run_traced, summarize, Config, Problem, RunTrace, WorkloadSummary,
};
use tessel_search::harness::HarnessMeasurer;
use tessel_search::model::ModelScorer;
use tessel_search::remeasure::remeasure;
use tessel_search::tuner::TuneParams;
use tessel_sketch::{generate_sketches, HardwareParams};

/// A run reaches the baseline's final best `b` when its best is at most `b · (1 + TOLERANCE)`.
const TOLERANCE: f64 = 0.01;

/// Arguments of `tessel experiment`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Workloads: registry names (`gmm-3`) or `OP:key=value,...` specs.
    #[arg(required = true)]
    pub specs: Vec<String>,
    /// Measurement trials per run.
    #[arg(long, default_value_t = 1000)]
    pub trials: usize,
    /// Seeds per configuration (seeds 0..K).
    #[arg(long, default_value_t = 5)]
    pub seeds: u64,
    /// Configurations, comma-separated: baseline, rl, ml, both (baseline always runs).
    #[arg(long, default_value = "baseline,rl,ml,both", value_delimiter = ',')]
    pub configs: Vec<String>,
    /// Threads the kernels run on (default: every core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Output folder.
    #[arg(long, default_value = "experiment")]
    pub out: PathBuf,
    /// Candidates measured per round.
    #[arg(long, default_value_t = 64)]
    pub measures_per_round: usize,
    /// Evolution population (Ansor: 2048; smaller only for quick checks).
    #[arg(long, default_value_t = 2048)]
    pub population: usize,
    /// Where candidates run.
    #[arg(long, value_enum, default_value_t = Isolation::Worker)]
    pub isolation: Isolation,
    /// Rounds of the final side-by-side re-measurement of every run's best (each round
    /// measures every program once, interleaved); 0 turns it off.
    #[arg(long, default_value_t = 10)]
    pub remeasure_rounds: usize,
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
                "unknown config `{name}` (known: baseline, rl, ml, both)"
            ))
        })?;
        if !wanted.contains(&c) {
            wanted.push(c);
        }
    }
    wanted.sort();
    Ok(wanted)
}

fn runner(args: &Args, threads: usize) -> Result<Box<dyn Runner>, DriverError> {
    make_runner(args.isolation, MeasureOptions::with_threads(threads))
        .map_err(|e| DriverError::Failed(e.to_string()))
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

/// Re-measures the final best of every run side by side, filling `remeasured`.
fn remeasure_bests(
    args: &Args,
    w: &Workload,
    problem: &Problem,
    threads: usize,
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
    let distinct: std::collections::HashSet<String> =
        programs.iter().flatten().map(State::steps_json).collect();
    let path = fresh_records(args, w, "remeasure")?;
    let mut measurer = HarnessMeasurer::new(w.clone(), runner(args, threads)?, Some(&path))
        .map_err(|e| DriverError::Failed(e.to_string()))?;
    let start = Instant::now();
    let results = remeasure(&programs, &mut measurer, args.remeasure_rounds);
    robustness.remeasure_rounds = args.remeasure_rounds;
    robustness.remeasured_programs = distinct.len();
    robustness.remeasure_seconds = start.elapsed().as_secs_f64();
    eprintln!(
        "{}: re-measured {} distinct final bests × {} rounds in {:.1} s",
        w.name,
        distinct.len(),
        args.remeasure_rounds,
        robustness.remeasure_seconds
    );
    for (t, r) in traces.iter_mut().zip(results) {
        t.remeasured = r;
    }
    Ok(())
}

/// Runs every config × seed on one workload, then re-measures the final bests.
fn run_workload(
    args: &Args,
    w: &Workload,
    configs: &[Config],
    threads: usize,
    done: &mut usize,
    total: usize,
) -> Result<(Vec<RunTrace>, Robustness), DriverError> {
    let dag = Arc::new(w.dag.clone());
    let hw = HardwareParams::with_cores(threads as i64);
    let sketches = generate_sketches(&dag, &hw).map_err(|e| DriverError::Failed(e.to_string()))?;
    let problem = Problem { dag, sketches, hw };
    let cache = (!args.no_cache).then(MeasureCache::shared);
    let flop = w.flop() as f64;
    let mut traces = Vec::new();
    for seed in 0..args.seeds {
        for &config in configs {
            let path = fresh_records(args, w, &format!("{}.s{seed}", config.name()))?;
            let mut measurer = HarnessMeasurer::new(w.clone(), runner(args, threads)?, Some(&path))
                .map_err(|e| DriverError::Failed(e.to_string()))?;
            let mut scorer = ModelScorer::new(seed);
            let params = TuneParams {
                trials: args.trials,
                measures_per_round: args.measures_per_round.max(1),
                evolution: EvolutionParams {
                    population: args.population.max(1),
                    ..EvolutionParams::default()
                },
                seed,
                ..TuneParams::default()
            };
            let trace = run_traced(
                &problem,
                params,
                config,
                &mut measurer,
                &mut scorer,
                cache.as_ref(),
            );
            *done += 1;
            eprintln!(
                "[{done}/{total}] {} {:<8} seed {seed}: {} in {:.1} s wall, {:.1} s accounted \
                 ({} trials, {} cache hits)",
                w.name,
                config.name(),
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
            if let Some(e) = &measurer.write_error {
                eprintln!("warning: records could not be written: {e}");
            }
            traces.push(trace);
        }
    }
    let mut robustness = Robustness {
        cache: cache.is_some(),
        cache_hits: traces.iter().map(|t| t.cache_hits).sum(),
        trials: traces.iter().map(|t| t.trials).sum(),
        distinct_programs: cache.as_ref().map_or(0, |c| c.borrow().len()),
        ..Robustness::default()
    };
    remeasure_bests(args, w, &problem, threads, &mut traces, &mut robustness)?;
    Ok((traces, robustness))
}

fn opt(x: Option<f64>, digits: usize) -> String {
    x.map_or("-".to_string(), |v| format!("{v:.digits$}"))
}

fn pct(x: Option<f64>) -> String {
    x.map_or("-".to_string(), |v| format!("{:.1}%", 100.0 * v))
}

/// A header row.
fn header(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

fn reach(x: Option<f64>) -> String {
    x.map_or("not reached".to_string(), |v| format!("{v:.2}"))
}

fn quartiles(median: Option<f64>, q1: Option<f64>, q3: Option<f64>) -> String {
    format!("{} [{},{}]", opt(median, 2), opt(q1, 2), opt(q3, 2))
}

/// The search table of one workload: a header and one row per config.
fn search_rows(s: &WorkloadSummary) -> Vec<Vec<String>> {
    let mut rows = vec![header(&[
        "config",
        "policies",
        "GFLOP/s med [q1,q3]",
        "final ×base",
        "time-to-reach (accounted)",
        "time-to-reach (wall)",
        "trials-to-reach",
        "reached",
        "policy % wall",
        "evol % accounted",
        "mut valid",
        "mut improved",
    ])];
    for c in &s.configs {
        rows.push(vec![
            c.config.name().to_string(),
            format!("{}+{}", c.sketch_policy, c.mutation_policy),
            quartiles(c.best_gflops_median, c.best_gflops_q1, c.best_gflops_q3),
            opt(c.final_ratio, 3),
            reach(c.time_to_reach_ratio),
            reach(c.time_to_reach_ratio_wall),
            reach(c.trials_to_reach_ratio),
            format!("{}/{}", c.reached, c.compared),
            format!("{:.2}%", 100.0 * c.policy_share),
            format!("{:.1}%", 100.0 * c.evolution_share),
            pct(c.mutation_validity),
            pct(c.mutation_improved),
        ]);
    }
    rows
}

/// The robustness table of one workload: re-measured finals, cache hits, both clocks.
fn robustness_rows(s: &WorkloadSummary) -> Vec<Vec<String>> {
    let mut rows = vec![header(&[
        "config",
        "re-measured GFLOP/s med [q1,q3]",
        "final ×base (re-measured)",
        "final ×base (search)",
        "signed-rank p (n)",
        "re-measure spread",
        "cache hits",
        "accounted s (med)",
        "wall s (med)",
        "policy % accounted",
    ])];
    for c in &s.configs {
        rows.push(vec![
            c.config.name().to_string(),
            quartiles(
                c.remeasured_gflops_median,
                c.remeasured_gflops_q1,
                c.remeasured_gflops_q3,
            ),
            opt(c.final_ratio_remeasured, 3),
            opt(c.final_ratio, 3),
            c.signed_rank
                .as_ref()
                .map_or("-".to_string(), |t| format!("{:.3} ({})", t.p_value, t.n)),
            pct(c.remeasure_spread_median),
            format!(
                "{}/{} ({})",
                c.cache_hits,
                c.trials,
                pct((c.trials > 0).then(|| c.cache_hits as f64 / c.trials as f64))
            ),
            opt(c.accounted_seconds_median, 1),
            opt(c.wall_seconds_median, 1),
            format!("{:.2}%", 100.0 * c.policy_share_accounted),
        ]);
    }
    rows
}

/// One paragraph on how this workload's comparison was made robust.
fn robustness_text(r: &Robustness, options: &MeasureOptions) -> String {
    let cache = if r.cache {
        format!(
            "one measurement cache shared by all {} trials of the runs ({} distinct programs \
             measured, {} trials answered from the cache, each charged the time its first \
             measurement cost)",
            r.trials, r.distinct_programs, r.cache_hits
        )
    } else {
        "no shared cache (every run measured everything itself)".to_string()
    };
    let again = if r.remeasure_rounds > 0 {
        format!(
            "the {} distinct final bests re-measured side by side in {} interleaved rounds \
             (each round: every program once, order rotated; each measurement the median of \
             {} repeats of ≥ {} ms), final = median of the rounds ({:.1} s)",
            r.remeasured_programs,
            r.remeasure_rounds,
            options.timing.repeat,
            options.timing.min_repeat_ms,
            r.remeasure_seconds
        )
    } else {
        "no re-measurement (final ratios are the search's own)".to_string()
    };
    format!("Robustness: {cache}; {again}.\n")
}

fn text_table(rows: &[Vec<String>]) -> String {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|k| {
            rows.iter()
                .map(|r| r.get(k).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn markdown_table(rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    for (k, r) in rows.iter().enumerate() {
        out.push_str(&format!("| {} |\n", r.join(" | ")));
        if k == 0 {
            out.push_str(&format!("|{}\n", "---|".repeat(r.len())));
        }
    }
    out
}

/// Colour of a config in the plots.
fn colour(c: Config) -> RGBColor {
    match c {
        Config::Baseline => BLACK,
        Config::Rl => RGBColor(31, 119, 180),
        Config::Ml => RGBColor(44, 160, 44),
        Config::Both => RGBColor(214, 39, 40),
    }
}

/// Median best-so-far GFLOP/s over the seeds at each trial count of the rounds.
fn trials_curve(runs: &[&RunTrace], flop: f64) -> Vec<(f64, f64)> {
    let mut counts: Vec<usize> = runs
        .iter()
        .flat_map(|r| r.rounds.iter().map(|p| p.trials))
        .collect();
    counts.sort_unstable();
    counts.dedup();
    counts
        .into_iter()
        .map(|n| {
            let at: Vec<f64> = runs
                .iter()
                .map(|r| {
                    r.rounds
                        .iter()
                        .take_while(|p| p.trials <= n)
                        .last()
                        .and_then(|p| p.best_seconds)
                        .map_or(0.0, |s| flop / s / 1e9)
                })
                .collect();
            (
                n as f64,
                tessel_search::experiment::median(&at).unwrap_or(0.0),
            )
        })
        .collect()
}

/// Draws one curve per config into an SVG file.
fn plot(
    path: &Path,
    title: &str,
    x_desc: &str,
    curves: &[(Config, Vec<(f64, f64)>)],
) -> Result<(), DriverError> {
    let fail =
        |e: &dyn std::fmt::Display| DriverError::Failed(format!("plot {}: {e}", path.display()));
    let x_max = curves
        .iter()
        .flat_map(|(_, c)| c.iter().map(|p| p.0))
        .fold(0.0, f64::max)
        .max(1e-9);
    let y_max = curves
        .iter()
        .flat_map(|(_, c)| c.iter().map(|p| p.1))
        .fold(0.0, f64::max)
        .max(1e-9)
        * 1.05;
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc("best GFLOP/s so far (median over seeds)")
        .draw()
        .map_err(|e| fail(&e))?;
    for (config, curve) in curves {
        let col = colour(*config);
        chart
            .draw_series(LineSeries::new(curve.iter().copied(), col.stroke_width(2)))
            .map_err(|e| fail(&e))?
            .label(format!(
                "{} ({}+{})",
                config.name(),
                config.sketch_policy(),
                config.mutation_policy()
            ))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}

/// Writes both plots of a workload; returns their file names.
fn plots(
    out: &Path,
    s: &WorkloadSummary,
    runs: &[RunTrace],
    configs: &[Config],
) -> Result<Vec<String>, DriverError> {
    let by_config = |c: Config| runs.iter().filter(|r| r.config == c).collect::<Vec<_>>();
    let t_max = runs.iter().map(|r| r.accounted_seconds).fold(0.0, f64::max);
    let time: Vec<(Config, Vec<(f64, f64)>)> = configs
        .iter()
        .map(|&c| (c, median_curve(&by_config(c), s.flop, t_max, 200)))
        .collect();
    let trials: Vec<(Config, Vec<(f64, f64)>)> = configs
        .iter()
        .map(|&c| (c, trials_curve(&by_config(c), s.flop)))
        .collect();
    let stem = file_name(&s.workload);
    let names = vec![format!("{stem}.time.svg"), format!("{stem}.trials.svg")];
    plot(
        &out.join(&names[0]),
        &format!("{}: best so far vs accounted time", s.workload),
        "accounted time (s): measurement as charged, cache hits at their first cost",
        &time,
    )?;
    plot(
        &out.join(&names[1]),
        &format!("{}: best so far vs trials", s.workload),
        "trials",
        &trials,
    )?;
    Ok(names)
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
        .map(|s| workloads::lookup(s))
        .collect::<Result<_, _>>()?;
    let threads = resolve_threads(args.threads);
    std::fs::create_dir_all(&args.out)?;
    let total = workloads.len() * configs.len() * args.seeds as usize;
    let mut done = 0;
    let mut all_runs = Vec::new();
    let mut summaries = Vec::new();
    let options = MeasureOptions::with_threads(threads);
    let mut report = format!(
        "# Learned-policies experiment\n\n{} trials per run, {} seeds, {} kernel threads, \
         population {}, {} measured per round, isolation {:?}, shared measurement cache {}, \
         {} re-measurement rounds.\n\n{METRICS}\n",
        args.trials,
        args.seeds,
        threads,
        args.population,
        args.measures_per_round,
        args.isolation,
        if args.no_cache { "off" } else { "on" },
        args.remeasure_rounds
    );
    let stdout = std::io::stdout();
    for w in &workloads {
        let (runs, robustness) = run_workload(args, w, &configs, threads, &mut done, total)?;
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
        let mut v = serde_json::to_value(&s).map_err(|e| DriverError::Failed(e.to_string()))?;
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
            "final_ratio": if args.remeasure_rounds > 0 { "re-measured" } else { "search" },
        },
        "workloads": summaries,
    });
    let write = |name: &str, text: &str| std::fs::write(args.out.join(name), text);
    write(
        "summary.json",
        &serde_json::to_string_pretty(&summary).map_err(|e| DriverError::Failed(e.to_string()))?,
    )?;
    write(
        "runs.json",
        &serde_json::to_string(&all_runs).map_err(|e| DriverError::Failed(e.to_string()))?,
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
