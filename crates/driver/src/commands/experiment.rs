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
//! * **time to reach**: median over seeds of (wall time until the run's best is within 1%
//!   of the baseline's final best of the same seed ÷ the baseline's own wall time to get
//!   there); the same in trials; a seed that never gets there counts as infinite, so the
//!   median is "not reached" when half the seeds miss;
//! * the final-best ratio (GFLOP/s ÷ the baseline's, same seed, median; above 1 = faster);
//! * the policy overhead: share of the round time spent inside the sketch and mutation
//!   policies (timed exactly), next to the evolution share;
//! * the mutation validity rate (legal ÷ tried) and improvement rate (predicted better ÷
//!   tried).
//!
//! Output in `--out`: `records/<workload>.<config>.s<seed>.jsonl` (rewritten each run),
//! `runs.json` (every per-round trace), `summary.json`, `report.md`, and per workload
//! `<workload>.wall.svg` / `<workload>.trials.svg` (best-so-far GFLOP/s, median over seeds,
//! vs wall time / vs trials). The table goes to stdout; with `--json` the summary is the
//! last stdout line.

use crate::commands::search_options::{file_name, make_runner, resolve_threads, Isolation};
use crate::error::DriverError;
use plotters::prelude::*;
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tessel_ir::workloads::{self, Workload};
use tessel_measure::{MeasureOptions, Runner};
use tessel_search::evolution::EvolutionParams;
use tessel_search::experiment::{
    median_curve, run_traced, summarize, Config, RunTrace, WorkloadSummary,
};
use tessel_search::harness::HarnessMeasurer;
use tessel_search::model::ModelScorer;
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

/// Runs every config × seed on one workload.
fn run_workload(
    args: &Args,
    w: &Workload,
    configs: &[Config],
    threads: usize,
    done: &mut usize,
    total: usize,
) -> Result<Vec<RunTrace>, DriverError> {
    let dag = Arc::new(w.dag.clone());
    let hw = HardwareParams::with_cores(threads as i64);
    let sketches = generate_sketches(&dag, &hw).map_err(|e| DriverError::Failed(e.to_string()))?;
    let records = args.out.join("records");
    std::fs::create_dir_all(&records)?;
    let flop = w.flop() as f64;
    let mut traces = Vec::new();
    for seed in 0..args.seeds {
        for &config in configs {
            let path = records.join(format!(
                "{}.{}.s{seed}.jsonl",
                file_name(&w.name),
                config.name()
            ));
            if path.exists() {
                // A fresh run: old records of the same run would be mixed in otherwise.
                std::fs::remove_file(&path)?;
            }
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
                dag.clone(),
                sketches.clone(),
                hw.clone(),
                params,
                config,
                &mut measurer,
                &mut scorer,
            );
            *done += 1;
            eprintln!(
                "[{done}/{total}] {} {:<8} seed {seed}: {} in {:.1} s ({} trials)",
                w.name,
                config.name(),
                trace
                    .best_seconds
                    .map_or("no valid program".to_string(), |s| format!(
                        "{:.2} GFLOP/s",
                        flop / s / 1e9
                    )),
                trace.wall_seconds,
                trace.trials
            );
            if let Some(e) = &measurer.write_error {
                eprintln!("warning: records could not be written: {e}");
            }
            traces.push(trace);
        }
    }
    Ok(traces)
}

fn opt(x: Option<f64>, digits: usize) -> String {
    x.map_or("-".to_string(), |v| format!("{v:.digits$}"))
}

fn pct(x: Option<f64>) -> String {
    x.map_or("-".to_string(), |v| format!("{:.1}%", 100.0 * v))
}

/// The rows of one workload's table: a header and one row per config.
fn table_rows(s: &WorkloadSummary) -> Vec<Vec<String>> {
    let mut rows = vec![[
        "config",
        "policies",
        "GFLOP/s med [q1,q3]",
        "final ×base",
        "time-to-reach",
        "trials-to-reach",
        "reached",
        "policy %",
        "evol %",
        "mut valid",
        "mut improved",
        "wall s (med)",
    ]
    .map(String::from)
    .to_vec()];
    for c in &s.configs {
        let reach = |x: Option<f64>| x.map_or("not reached".to_string(), |v| format!("{v:.2}"));
        rows.push(vec![
            c.config.name().to_string(),
            format!("{}+{}", c.sketch_policy, c.mutation_policy),
            format!(
                "{} [{},{}]",
                opt(c.best_gflops_median, 2),
                opt(c.best_gflops_q1, 2),
                opt(c.best_gflops_q3, 2)
            ),
            opt(c.final_ratio, 3),
            reach(c.time_to_reach_ratio),
            reach(c.trials_to_reach_ratio),
            format!("{}/{}", c.reached, c.compared),
            format!("{:.2}%", 100.0 * c.policy_share),
            format!("{:.1}%", 100.0 * c.evolution_share),
            pct(c.mutation_validity),
            pct(c.mutation_improved),
            opt(c.wall_seconds_median, 1),
        ]);
    }
    rows
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
    let t_max = runs.iter().map(|r| r.wall_seconds).fold(0.0, f64::max);
    let wall: Vec<(Config, Vec<(f64, f64)>)> = configs
        .iter()
        .map(|&c| (c, median_curve(&by_config(c), s.flop, t_max, 200)))
        .collect();
    let trials: Vec<(Config, Vec<(f64, f64)>)> = configs
        .iter()
        .map(|&c| (c, trials_curve(&by_config(c), s.flop)))
        .collect();
    let stem = file_name(&s.workload);
    let names = vec![format!("{stem}.wall.svg"), format!("{stem}.trials.svg")];
    plot(
        &out.join(&names[0]),
        &format!("{}: best so far vs wall time", s.workload),
        "wall time (s)",
        &wall,
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
above 1 = faster.
* **time-to-reach**: median over seeds of (wall time until the run's best is within 1% of the \
baseline's final best of the same seed ÷ the baseline's own time to get there); below 1 = \
faster. A seed that never gets there counts as infinite (\"not reached\" when the median \
does). **trials-to-reach**: the same in trials. **reached**: seeds that got there / seeds \
compared.
* **policy %**: share of the round time spent inside the sketch and mutation policies \
(timed exactly); **evol %**: share spent in evolution (cost-model prediction included).
* **mut valid / improved**: legal mutations ÷ tried, and mutations predicted better than \
their parent ÷ tried, pooled over seeds.
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
    let mut report = format!(
        "# Learned-policies experiment\n\n{} trials per run, {} seeds, {} kernel threads, \
         population {}, {} measured per round, isolation {:?}.\n\n{METRICS}\n",
        args.trials, args.seeds, threads, args.population, args.measures_per_round, args.isolation
    );
    let stdout = std::io::stdout();
    for w in &workloads {
        let runs = run_workload(args, w, &configs, threads, &mut done, total)?;
        let s = summarize(&w.name, &w.spec(), w.flop() as f64, &runs, TOLERANCE);
        let plot_files = plots(&args.out, &s, &runs, &configs)?;
        let rows = table_rows(&s);
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
            write!(out, "{}", text_table(&rows))?;
        }
        report.push_str(&format!(
            "## {} (`{}`)\n\n{}\n",
            w.name,
            w.spec(),
            markdown_table(&rows)
        ));
        for f in &plot_files {
            report.push_str(&format!("![{f}]({f})\n"));
        }
        report.push('\n');
        summaries.push(json!({"summary": s, "plots": plot_files}));
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
        "workloads": summaries.iter().map(|s| {
            let mut v = s["summary"].clone();
            v["plots"] = s["plots"].clone();
            v
        }).collect::<Vec<_>>(),
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
