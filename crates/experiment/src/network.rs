//! The network experiment (`tessel experiment --network <net>`, issue #30): the paper's
//! headline on whole models, measured end to end.
//!
//! Each configuration ([`Config`]) tunes the whole network with the task scheduler
//! ([`tessel_search::scheduler::TaskScheduler`], the same [`SchedulerParams`] for every
//! config: only the policies differ). The configs of one seed run **in lockstep**: one
//! scheduler round (one task's tuning round) of each run in turn, so a drift of the host's
//! speed meets every config at the same point of its search; a run's clock counts its own
//! rounds only. After every round a run records its trials, its search seconds, the
//! seconds spent inside its policies and the scheduler's **estimated network latency**
//! `Σ weight × best latency` ([`NetPoint`]).
//!
//! Each run measures everything itself (no measurement cache shared between runs) and
//! appends every result to its own records file, `records/<net>.<config>.s<seed>.jsonl`,
//! which `tessel run-network <net> --records FILE` builds as it stands.
//!
//! At the end every run's tuned network is built with the runtime
//! ([`tessel_runtime::Module::build`], each task from its fastest record) and the modules
//! are timed **side by side**: `timing_rounds` rounds, each running every module
//! `timing_repeats` times in turn (the order rotated each round), and a run's **measured
//! latency** is the median of all its inferences. Host drift hits all modules alike.
//!
//! **Measured checkpoints**: at every `1 / checkpoints` of the budget (once every run of the
//! seed has passed it) each run's network is built from its records as they stand and the
//! modules are timed side by side ([`MeasuredPoint`]); building and timing are not search
//! time. The last checkpoint is the final timing.
//!
//! **Time to reach** (the paper's 70–75 %): a run *reaches* the baseline's final measured
//! latency `b` (same seed) at the first round whose estimate, scaled by the `measured ÷
//! estimate` of the run's next measured checkpoint ([`NetworkRun::scale_at`]), is at most
//! `b · (1 + tolerance)`; the ratio is the run's search seconds to get there ÷ the baseline's
//! own (the baseline reaches `b` at the round of its last improvement, by construction). The
//! scaling turns the estimate curve into the measured scale between checkpoints; the gap
//! between estimate and measurement (launch overheads, layout changes, caches) is measured
//! at each checkpoint rather than assumed constant along a run. A seed that never gets there
//! counts as infinite (the median is "not reached" when half the seeds miss), as in the
//! operator experiment.
//!
//! ```no_run
//! use tessel_experiment::network::{run, NetworkOptions};
//! use tessel_experiment::runs::Config;
//! use tessel_workloads::networks::{self, Weights};
//! use tessel_search::job::{TuneJob, TuneOptions};
//! use tessel_sketch::Target;
//!
//! let net = networks::tiny_cnn(1).unwrap();
//! let weights = Weights::random(&net, 1);
//! let tasks = networks::extract_tasks(&net).unwrap();
//! let workloads: Vec<_> = tasks
//!     .iter()
//!     .map(|t| tessel_workloads::lookup(&format!("tiny-cnn@1/{}", t.name)).unwrap())
//!     .collect();
//! let job = TuneJob::new(TuneOptions::new(Target::native().with_cores(1)));
//! let options = NetworkOptions::new("tiny-cnn", 8, 2, vec![Config::Baseline, Config::Both], "out".into());
//! let summary = run(&job, &net, &weights, &workloads, &options, &mut std::io::stdout()).unwrap();
//! println!("{:?}", summary.configs[1].final_ratio);
//! ```

use crate::plots::plot;
use crate::runs::{timed, Config, PolicyClock};
use crate::signed_rank::{signed_rank, SignedRank};
use crate::tables::{header, markdown_table, opt, reach, text_table};
use crate::{file_name, ExperimentError};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tessel_ir::stats::{median, quantile};
use tessel_runtime::Module;
use tessel_search::harness::HarnessMeasurer;
use tessel_search::job::{Problem, TuneJob};
use tessel_search::model::ModelScorer;
use tessel_search::scheduler::{SchedulerParams, SchedulerStop, TaskScheduler, TaskSpec};
use tessel_workloads::networks::{self, Network, Weights};
use tessel_workloads::Workload;

/// How the network experiment runs (the tuning job gives the target, the runner and the
/// sizes of every task's search).
#[derive(Clone, Debug)]
pub struct NetworkOptions {
    /// The network's name (report, file names).
    pub network: String,
    /// Trials per task: a run's budget is this × the number of tasks.
    pub trials_per_task: usize,
    /// Seeds per configuration (seeds 0..K).
    pub seeds: u64,
    /// The configurations, baseline first ([`crate::parse_configs`]).
    pub configs: Vec<Config>,
    /// Output folder.
    pub out: PathBuf,
    /// The scheduler's settings, the same for every config (its `total_trials` and `seed`
    /// are set per run).
    pub scheduler: SchedulerParams,
    /// Rounds of the side-by-side timing of the tuned modules.
    pub timing_rounds: usize,
    /// Inferences of each module per timing round.
    pub timing_repeats: usize,
    /// Measured checkpoints per run, the final timing included: at every
    /// `1 / checkpoints` of the budget each run's network is built from its records as they
    /// stand and timed side by side with the other runs of its seed (1: the final timing
    /// only).
    pub checkpoints: usize,
    /// A run reaches a target latency `b` when its scaled estimate is at most
    /// `b · (1 + tolerance)`.
    pub tolerance: f64,
    /// How candidates are measured, in words for the report.
    pub isolation: String,
}

impl NetworkOptions {
    /// Defaults for the rest: the scheduler's default settings, 10 timing rounds of 5
    /// inferences, 4 measured checkpoints, a 1 % tolerance, isolation "worker".
    pub fn new(
        network: &str,
        trials_per_task: usize,
        seeds: u64,
        configs: Vec<Config>,
        out: PathBuf,
    ) -> NetworkOptions {
        NetworkOptions {
            network: network.to_string(),
            trials_per_task,
            seeds,
            configs,
            out,
            scheduler: SchedulerParams::default(),
            timing_rounds: 10,
            timing_repeats: 5,
            checkpoints: 4,
            tolerance: 0.01,
            isolation: "worker".to_string(),
        }
    }
}

/// One scheduler round of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NetPoint {
    /// Scheduler round, from 0 (warm-up rounds included).
    pub round: usize,
    /// Trials measured so far, over all tasks.
    pub trials: usize,
    /// Search seconds of this run so far (its own rounds only).
    pub seconds: f64,
    /// Seconds spent inside the run's policies so far.
    pub policy_seconds: f64,
    /// Estimated network latency `Σ weight × best latency` (seconds); `None` until every
    /// task has a valid program.
    pub estimated_seconds: Option<f64>,
}

/// A run's network built from its records as they stood part-way through its search, and
/// timed side by side with the other runs of its seed (a measured checkpoint).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MeasuredPoint {
    /// The scheduler round it follows (an index into [`NetworkRun::rounds`]).
    pub round: usize,
    /// Trials measured so far.
    pub trials: usize,
    /// Search seconds so far (building and timing the module are not counted).
    pub seconds: f64,
    /// The estimate at that round (seconds).
    pub estimated_seconds: Option<f64>,
    /// Median latency of the module (seconds).
    pub measured_seconds: Option<f64>,
    /// Tasks the module ran on a default schedule (no record yet).
    pub fallbacks: usize,
}

impl MeasuredPoint {
    /// `measured ÷ estimate` at this checkpoint.
    pub fn measured_over_estimate(&self) -> Option<f64> {
        measured_over_estimate(self.measured_seconds, self.estimated_seconds)
    }
}

/// One task of a run at its end.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskBest {
    /// Task name.
    pub name: String,
    /// How many times the network runs it.
    pub weight: f64,
    /// Trials it was given.
    pub trials: usize,
    /// Its best latency (seconds, as the search measured it).
    pub best_seconds: Option<f64>,
}

/// One run: a config tuning the whole network with one seed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkRun {
    /// Its configuration.
    pub config: Config,
    /// Its seed (the same for every configuration).
    pub seed: u64,
    /// After every scheduler round.
    pub rounds: Vec<NetPoint>,
    /// The measured checkpoints before the end ([`NetworkOptions::checkpoints`]).
    #[serde(default)]
    pub checkpoints: Vec<MeasuredPoint>,
    /// Trials measured.
    pub trials: usize,
    /// Search seconds (its own rounds).
    pub search_seconds: f64,
    /// Seconds inside the policies.
    pub policy_seconds: f64,
    /// Why the scheduler stopped.
    pub stop_reason: String,
    /// Final estimated latency (seconds).
    pub estimated_seconds: Option<f64>,
    /// Per task at the end.
    pub tasks: Vec<TaskBest>,
    /// Its records file (relative to the output folder).
    pub records: String,
    /// Median latency of the built module in the side-by-side timing (seconds).
    pub measured_seconds: Option<f64>,
    /// (IQR ÷ median) of the module's timed inferences.
    pub measured_spread: Option<f64>,
    /// Tasks the module ran on a default schedule (no usable record).
    pub fallbacks: usize,
    /// Seconds the module took to build.
    pub build_seconds: f64,
}

impl NetworkRun {
    /// `measured ÷ estimate` of the final module (the scale of the estimate curve).
    pub fn measured_over_estimate(&self) -> Option<f64> {
        measured_over_estimate(self.measured_seconds, self.estimated_seconds)
    }

    /// The scale from estimate to measurement at `round`: `measured ÷ estimate` of the first
    /// measured checkpoint at or after it, or of the final module after the last one.
    pub fn scale_at(&self, round: usize) -> Option<f64> {
        self.checkpoints
            .iter()
            .filter(|c| c.round >= round)
            .find_map(MeasuredPoint::measured_over_estimate)
            .or_else(|| self.measured_over_estimate())
    }

    /// The first round whose estimate, scaled by [`Self::scale_at`], is at most `target`
    /// seconds.
    pub fn reach(&self, target: f64) -> Option<&NetPoint> {
        self.rounds.iter().find(|p| {
            p.estimated_seconds
                .zip(self.scale_at(p.round))
                .is_some_and(|(e, scale)| e * scale <= target)
        })
    }
}

/// `measured ÷ estimate`, when both are known (and the estimate positive).
fn measured_over_estimate(measured: Option<f64>, estimated: Option<f64>) -> Option<f64> {
    match (measured, estimated) {
        (Some(m), Some(e)) if e > 0.0 => Some(m / e),
        _ => None,
    }
}

/// The statistics of one configuration over seeds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkConfigSummary {
    /// The configuration.
    pub config: Config,
    /// Its sketch policy.
    pub sketch_policy: String,
    /// Its mutation policy.
    pub mutation_policy: String,
    /// Runs (seeds).
    pub runs: usize,
    /// Median over seeds of the final estimated latency (ms).
    pub estimated_ms_median: Option<f64>,
    /// Median over seeds of the measured latency of the built module (ms).
    pub measured_ms_median: Option<f64>,
    /// Its first quartile.
    pub measured_ms_q1: Option<f64>,
    /// Its third quartile.
    pub measured_ms_q3: Option<f64>,
    /// Median over runs of measured ÷ estimated latency.
    pub measured_over_estimate_median: Option<f64>,
    /// Median over seeds of the measured latency (ms) at each measured checkpoint, the
    /// final module last ([`NetworkSummary::checkpoint_fractions`]).
    pub checkpoints_ms: Vec<Option<f64>>,
    /// Median over seeds of (the baseline's measured latency ÷ this config's, same seed):
    /// above 1 = faster than the baseline.
    pub final_ratio: Option<f64>,
    /// Wilcoxon signed-rank test of the measured log latency ratios against the baseline,
    /// paired by seed (`None` for the baseline, or when all pairs tie).
    pub signed_rank: Option<SignedRank>,
    /// Median over seeds of (search seconds to reach the baseline's final measured latency
    /// ÷ the baseline's own); below 1 = faster. `None` when the median seed did not reach it.
    pub time_to_reach_ratio: Option<f64>,
    /// The same in trials.
    pub trials_to_reach_ratio: Option<f64>,
    /// Seeds that reached it.
    pub reached: usize,
    /// Seeds compared (the baseline's module was measured).
    pub compared: usize,
    /// Share of the search seconds spent inside the policies (pooled over seeds).
    pub policy_share: f64,
    /// Median search seconds of a run.
    pub search_seconds_median: Option<f64>,
    /// Trials (over seeds).
    pub trials: usize,
    /// Tasks on a default schedule in the built modules (over seeds).
    pub fallbacks: usize,
}

/// One task's weighted latency per config (median over seeds), for the breakdown of where
/// the learned policies gained or lost.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskBreakdown {
    /// Task name.
    pub task: String,
    /// Its weight.
    pub weight: f64,
    /// Per config (in the order of [`NetworkSummary::configs`]): median over seeds of
    /// weight × best latency (ms).
    pub weighted_ms: Vec<Option<f64>>,
    /// Per config: median over seeds of (the baseline's weighted latency − this config's),
    /// ms; above 0 = this config gained on the task.
    pub gain_ms: Vec<Option<f64>>,
}

/// The comparison on one network.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkSummary {
    /// The network.
    pub network: String,
    /// Its tasks.
    pub tasks: usize,
    /// Trials per task (a run's budget ÷ tasks).
    pub trials_per_task: usize,
    /// Seeds.
    pub seeds: u64,
    /// Kernel threads (tuning and the built modules).
    pub threads: usize,
    /// How candidates were measured.
    pub isolation: String,
    /// The scheduler's strategy and settings (the same for every config).
    pub scheduler: String,
    /// Timing rounds of the built modules.
    pub timing_rounds: usize,
    /// Inferences of each module per timing round.
    pub timing_repeats: usize,
    /// The share of the budget at each measured checkpoint (the last is the end).
    pub checkpoint_fractions: Vec<f64>,
    /// The target's tolerance.
    pub tolerance: f64,
    /// How "reached" is decided (see the module docs).
    pub reach_definition: String,
    /// One entry per configuration, baseline first.
    pub configs: Vec<NetworkConfigSummary>,
    /// Per task.
    pub task_breakdown: Vec<TaskBreakdown>,
    /// The SVG plots (file names in the output folder).
    pub plots: Vec<String>,
    /// Every run.
    pub runs: Vec<NetworkRun>,
}

/// The definition of "reached" written into every summary.
pub const REACH_DEFINITION: &str = "estimate curve scaled by measured/estimate of the run's \
next measured checkpoint (its network built and timed at that point of the search; the final \
module after the last checkpoint): a run reaches the baseline's final measured latency b at \
the first round whose estimate x (measured/estimate) <= b x (1 + tolerance)";

/// A run in progress.
struct Active {
    config: Config,
    scheduler: TaskScheduler<'static>,
    measurer: HarnessMeasurer,
    scorer: ModelScorer,
    clock: PolicyClock,
    seconds: f64,
    points: Vec<NetPoint>,
    checkpoints: Vec<MeasuredPoint>,
    stop: Option<SchedulerStop>,
    records: String,
}

/// Runs the experiment on `net` (its tasks' workloads `task_workloads`, in the order of
/// [`networks::extract_tasks`], named so the job's runner can rebuild them), writes
/// `report.md`, `summary.json`, the plots and every run's records under
/// [`NetworkOptions::out`], prints the tables to `out` and returns the summary.
pub fn run(
    job: &TuneJob,
    net: &Network,
    weights: &Weights,
    task_workloads: &[Workload],
    o: &NetworkOptions,
    out: &mut dyn Write,
) -> Result<NetworkSummary, ExperimentError> {
    if o.seeds == 0 {
        return Err(ExperimentError::Usage("--seeds must be at least 1".into()));
    }
    if o.trials_per_task == 0 {
        return Err(ExperimentError::Usage(
            "--trials-per-task must be at least 1".into(),
        ));
    }
    // Every task's tuner has an unbounded budget: the scheduler decides.
    let mut options = job.options().clone();
    options.params.trials = usize::MAX;
    let job = &TuneJob::new(options);
    let tasks = networks::extract_tasks(net)?;
    if tasks.len() != task_workloads.len() {
        return Err(ExperimentError::Usage(format!(
            "{} has {} tasks but {} task workloads were given",
            o.network,
            tasks.len(),
            task_workloads.len()
        )));
    }
    if o.trials_per_task <= o.scheduler.measures_per_round {
        eprintln!(
            "note: {} trials per task ≤ {} measured per round: every task gets one round \
             (the warm-up) and the estimate exists only at the end, so time-to-reach says \
             little; use --measures-per-round below --trials-per-task for several rounds per task",
            o.trials_per_task, o.scheduler.measures_per_round
        );
    }
    let problems: Vec<Problem> = task_workloads
        .iter()
        .map(|w| job.problem(Arc::new(w.dag.clone())))
        .collect::<Result<_, _>>()?;
    let records_dir = o.out.join("records");
    std::fs::create_dir_all(&records_dir)?;
    let stem = file_name(&o.network);
    let mut runs: Vec<NetworkRun> = Vec::new();
    for seed in 0..o.seeds {
        let mut active = Vec::with_capacity(o.configs.len());
        for &config in &o.configs {
            let rel = format!("records/{stem}.{}.s{seed}.jsonl", config.name());
            let path = o.out.join(&rel);
            if path.exists() {
                std::fs::remove_file(&path)?;
            }
            let cjob = job
                .with_seed(seed)
                .with_preset(config.preset())
                .unwrap_or_else(|_| job.with_seed(seed));
            let mut scorer = cjob.scorer(seed);
            let clock = PolicyClock::default();
            let specs: Vec<TaskSpec> = tasks
                .iter()
                .zip(&problems)
                .enumerate()
                .map(|(i, (t, p))| {
                    let session = timed(cjob.tuner(p, seed.wrapping_add(i as u64)), &clock)
                        .start(&mut scorer);
                    TaskSpec::new(&t.name, t.weight as f64, t.flop(), session)
                        .with_tag(t.anchor_kind)
                })
                .collect();
            let params = SchedulerParams {
                total_trials: o.trials_per_task.saturating_mul(tasks.len()),
                seed,
                ..o.scheduler.clone()
            };
            let measurer =
                HarnessMeasurer::for_tasks(task_workloads.to_vec(), job.runner()?, Some(&path))?
                    .lowerings(cjob.lowerings().clone());
            active.push(Active {
                config,
                scheduler: TaskScheduler::new(specs, params)?,
                measurer,
                scorer,
                clock,
                seconds: 0.0,
                points: Vec::new(),
                checkpoints: Vec::new(),
                stop: None,
                records: rel,
            });
        }
        // Lockstep: one scheduler round of each run in turn.
        let budget = o.trials_per_task.saturating_mul(tasks.len()).max(1);
        let mut reported = 0;
        let mut next_checkpoint = 1;
        while active.iter().any(|a| a.stop.is_none()) {
            // A progress line at every tenth of the budget.
            let done = active
                .iter()
                .map(|a| a.scheduler.trials())
                .min()
                .unwrap_or(0);
            if 10 * done / budget > reported {
                reported = 10 * done / budget;
                let estimates: Vec<String> = active
                    .iter()
                    .map(|a| {
                        let est = a
                            .scheduler
                            .objective()
                            .map_or("-".to_string(), |s| format!("{:.3} ms", s * 1e3));
                        format!("{} {est}", a.config.name())
                    })
                    .collect();
                eprintln!(
                    "{} seed {seed}: {done}/{budget} trials per run; estimated {}",
                    o.network,
                    estimates.join(", ")
                );
            }
            for a in active.iter_mut().filter(|a| a.stop.is_none()) {
                let start = Instant::now();
                a.stop = a.scheduler.step(&mut a.measurer, &mut a.scorer);
                a.seconds += start.elapsed().as_secs_f64();
                if a.stop.is_none() {
                    a.points.push(NetPoint {
                        round: a.points.len(),
                        trials: a.scheduler.trials(),
                        seconds: a.seconds,
                        policy_seconds: a.clock.seconds(),
                        estimated_seconds: a.scheduler.objective(),
                    });
                }
            }
            // A measured checkpoint when every run of the seed has passed the next share of
            // the budget (the last share is the final timing).
            let passed = active
                .iter()
                .map(|a| a.scheduler.trials())
                .min()
                .unwrap_or(0);
            if next_checkpoint < o.checkpoints
                && passed * o.checkpoints >= next_checkpoint * budget
                && active.iter().any(|a| a.stop.is_none())
            {
                next_checkpoint += 1;
                checkpoint(job, net, weights, o, seed, &mut active)?;
            }
        }
        for a in active {
            if let Some(e) = &a.measurer.write_error {
                return Err(ExperimentError::RecordsLost(format!(
                    "records of {} ({} seed {seed}) could not be written: {e}; the experiment \
                     stopped ({} measurement(s) are not in the file)",
                    o.network,
                    a.config.name(),
                    a.measurer.unsaved
                )));
            }
            let stop = a.stop.unwrap_or(SchedulerStop::TrialBudget);
            let result = a.scheduler.result(stop);
            let run = NetworkRun {
                config: a.config,
                seed,
                trials: result.trials,
                search_seconds: a.seconds,
                policy_seconds: a.clock.seconds(),
                stop_reason: format!("{stop:?}"),
                estimated_seconds: result.estimated_seconds,
                tasks: result
                    .tasks
                    .iter()
                    .map(|t| TaskBest {
                        name: t.name.clone(),
                        weight: t.weight,
                        trials: t.trials,
                        best_seconds: t.best_seconds,
                    })
                    .collect(),
                records: a.records,
                rounds: a.points,
                checkpoints: a.checkpoints,
                ..NetworkRun::default()
            };
            eprintln!(
                "{} {:<8} seed {seed}: estimated {} after {} trials in {:.1} s",
                o.network,
                run.config.name(),
                run.estimated_seconds
                    .map_or("-".to_string(), |s| format!("{:.3} ms", s * 1e3)),
                run.trials,
                run.search_seconds
            );
            runs.push(run);
        }
    }
    time_modules(job, net, weights, o, &mut runs)?;
    let mut summary = summarize(o, tasks.len(), &runs);
    summary.threads = job.options().space.target.cores.max(1) as usize;
    summary.isolation = o.isolation.clone();
    summary.scheduler = scheduler_text(&o.scheduler);
    summary.plots = network_plots(&o.out, &stem, &o.configs, &runs)?;
    summary.runs = runs;
    let report = report(&summary);
    std::fs::write(
        o.out.join("summary.json"),
        serde_json::to_string_pretty(&summary)?,
    )?;
    std::fs::write(o.out.join("report.md"), &report.markdown)?;
    write!(out, "{}", report.text)?;
    Ok(summary)
}

/// The scheduler settings every config shares, in words (the budget and seed are per run).
fn scheduler_text(p: &SchedulerParams) -> String {
    format!(
        "{:?} (≤ {} measured per round, α {}, β {}, backward window {}, forward power {}, \
         round floor {}, group room {})",
        p.strategy,
        p.measures_per_round,
        p.alpha,
        p.beta,
        p.backward_window,
        p.forward_power,
        p.round_floor,
        if p.group_room { "on" } else { "off" }
    )
}

/// One module timed side by side with others.
struct Timed {
    /// Median latency (seconds).
    median: Option<f64>,
    /// (IQR ÷ median) of its inferences.
    spread: Option<f64>,
    /// Seconds its build took.
    build_seconds: f64,
    /// Tasks it ran on a default schedule.
    fallbacks: usize,
}

/// Builds one module per records file and times them side by side: `rounds` rounds, each
/// running every module `repeats` times in turn (the order rotated each round).
fn time_side_by_side(
    job: &TuneJob,
    net: &Network,
    weights: &Weights,
    records: &[PathBuf],
    rounds: usize,
    repeats: usize,
) -> Result<Vec<Timed>, ExperimentError> {
    let target = job.options().space.target;
    let threads = target.cores.max(1) as usize;
    let mut modules = Vec::with_capacity(records.len());
    let mut built = Vec::with_capacity(records.len());
    for path in records {
        let start = Instant::now();
        let module = Module::build(net, weights, Some(path), &target, threads)?;
        built.push((
            start.elapsed().as_secs_f64(),
            module.report().fallbacks().count(),
        ));
        modules.push(module);
    }
    let inputs = networks::random_inputs(net, 1);
    let refs: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
    let mut outputs: Vec<Vec<Vec<f32>>> = modules
        .iter()
        .map(|m| m.outputs().iter().map(|s| vec![0.0; s.len]).collect())
        .collect();
    let mut run_once = |k: usize, modules: &mut [Module]| -> Result<f64, ExperimentError> {
        let mut outs: Vec<&mut [f32]> = outputs[k].iter_mut().map(Vec::as_mut_slice).collect();
        let start = Instant::now();
        modules[k].run_into(&refs, &mut outs)?;
        Ok(start.elapsed().as_secs_f64())
    };
    // One untimed inference each (first-touch of the arenas).
    for k in 0..modules.len() {
        run_once(k, &mut modules)?;
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); modules.len()];
    let n = modules.len();
    for round in 0..rounds.max(1) {
        for j in 0..n {
            let k = (j + round) % n;
            for _ in 0..repeats.max(1) {
                times[k].push(run_once(k, &mut modules)?);
            }
        }
    }
    Ok(times
        .iter()
        .zip(built)
        .map(|(t, (build_seconds, fallbacks))| Timed {
            median: median(t),
            spread: match (quantile(t, 0.25), quantile(t, 0.75), median(t)) {
                (Some(q1), Some(q3), Some(m)) if m > 0.0 => Some((q3 - q1) / m),
                _ => None,
            },
            build_seconds,
            fallbacks,
        })
        .collect())
}

/// A measured checkpoint of the runs of `seed`: each run's network built from its records
/// as they stand, timed side by side (half the final timing's rounds).
fn checkpoint(
    job: &TuneJob,
    net: &Network,
    weights: &Weights,
    o: &NetworkOptions,
    seed: u64,
    active: &mut [Active],
) -> Result<(), ExperimentError> {
    let paths: Vec<PathBuf> = active.iter().map(|a| o.out.join(&a.records)).collect();
    let rounds = o.timing_rounds.div_ceil(2).max(1);
    let timed = time_side_by_side(job, net, weights, &paths, rounds, o.timing_repeats)?;
    let mut line = Vec::new();
    for (a, t) in active.iter_mut().zip(timed) {
        let point = MeasuredPoint {
            round: a.points.len().saturating_sub(1),
            trials: a.scheduler.trials(),
            seconds: a.seconds,
            estimated_seconds: a.scheduler.objective(),
            measured_seconds: t.median,
            fallbacks: t.fallbacks,
        };
        line.push(format!(
            "{} {} (est {})",
            a.config.name(),
            point
                .measured_seconds
                .map_or("-".to_string(), |s| format!("{:.3} ms", s * 1e3)),
            point
                .estimated_seconds
                .map_or("-".to_string(), |s| format!("{:.3} ms", s * 1e3)),
        ));
        a.checkpoints.push(point);
    }
    eprintln!(
        "{} seed {seed}: measured checkpoint {}: {}",
        o.network,
        active.first().map_or(0, |a| a.checkpoints.len()),
        line.join(", ")
    );
    Ok(())
}

/// Builds every run's module from its records and times them side by side, filling the
/// runs' measured latencies.
fn time_modules(
    job: &TuneJob,
    net: &Network,
    weights: &Weights,
    o: &NetworkOptions,
    runs: &mut [NetworkRun],
) -> Result<(), ExperimentError> {
    let paths: Vec<PathBuf> = runs.iter().map(|r| o.out.join(&r.records)).collect();
    let start = Instant::now();
    let timed = time_side_by_side(job, net, weights, &paths, o.timing_rounds, o.timing_repeats)?;
    eprintln!(
        "{}: timed {} modules × {} rounds × {} inferences side by side in {:.1} s",
        o.network,
        runs.len(),
        o.timing_rounds.max(1),
        o.timing_repeats.max(1),
        start.elapsed().as_secs_f64()
    );
    for (r, t) in runs.iter_mut().zip(timed) {
        r.measured_seconds = t.median;
        r.measured_spread = t.spread;
        r.build_seconds = t.build_seconds;
        r.fallbacks = t.fallbacks;
    }
    Ok(())
}

/// The statistics of `runs` (without plots and the run list).
pub fn summarize(o: &NetworkOptions, tasks: usize, runs: &[NetworkRun]) -> NetworkSummary {
    let baseline = |seed: u64| {
        runs.iter()
            .find(|r| r.config == Config::Baseline && r.seed == seed)
    };
    let ms = |s: Option<f64>| s.map(|s| s * 1e3);
    let mut configs = Vec::new();
    for &config in &o.configs {
        let mine: Vec<&NetworkRun> = runs.iter().filter(|r| r.config == config).collect();
        if mine.is_empty() {
            continue;
        }
        let measured: Vec<f64> = mine.iter().filter_map(|r| r.measured_seconds).collect();
        let estimated: Vec<f64> = mine.iter().filter_map(|r| r.estimated_seconds).collect();
        let scale: Vec<f64> = mine
            .iter()
            .filter_map(|r| r.measured_over_estimate())
            .collect();
        let (mut final_ratios, mut log_ratios) = (vec![], vec![]);
        let (mut time_ratios, mut trial_ratios) = (vec![], vec![]);
        let (mut reached, mut compared) = (0, 0);
        for r in &mine {
            let Some(base) = baseline(r.seed) else {
                continue;
            };
            let Some(b) = base.measured_seconds else {
                continue;
            };
            compared += 1;
            final_ratios.push(r.measured_seconds.map_or(0.0, |s| b / s));
            if let Some(s) = r.measured_seconds {
                log_ratios.push((b / s).ln());
            }
            let target = b * (1.0 + o.tolerance);
            match (r.reach(target), base.reach(target)) {
                (Some(p), Some(q)) => {
                    reached += 1;
                    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 1.0 };
                    time_ratios.push(ratio(p.seconds, q.seconds));
                    trial_ratios.push(ratio(p.trials as f64, q.trials as f64));
                }
                _ => {
                    time_ratios.push(f64::INFINITY);
                    trial_ratios.push(f64::INFINITY);
                }
            }
        }
        let checkpoints_ms: Vec<Option<f64>> = (0..o.checkpoints.max(1))
            .map(|k| {
                let at: Vec<f64> = mine
                    .iter()
                    .filter_map(|r| {
                        if k + 1 == o.checkpoints.max(1) {
                            r.measured_seconds
                        } else {
                            r.checkpoints.get(k)?.measured_seconds
                        }
                    })
                    .collect();
                ms(median(&at))
            })
            .collect();
        let search: f64 = mine.iter().map(|r| r.search_seconds).sum();
        let policy: f64 = mine.iter().map(|r| r.policy_seconds).sum();
        configs.push(NetworkConfigSummary {
            config,
            sketch_policy: config.sketch_policy().to_string(),
            mutation_policy: config.mutation_policy().to_string(),
            runs: mine.len(),
            estimated_ms_median: ms(median(&estimated)),
            measured_ms_median: ms(median(&measured)),
            measured_ms_q1: ms(quantile(&measured, 0.25)),
            measured_ms_q3: ms(quantile(&measured, 0.75)),
            measured_over_estimate_median: median(&scale),
            checkpoints_ms,
            final_ratio: median(&final_ratios),
            signed_rank: signed_rank(&log_ratios),
            time_to_reach_ratio: median(&time_ratios),
            trials_to_reach_ratio: median(&trial_ratios),
            reached,
            compared,
            policy_share: if search > 0.0 { policy / search } else { 0.0 },
            search_seconds_median: median(
                &mine.iter().map(|r| r.search_seconds).collect::<Vec<_>>(),
            ),
            trials: mine.iter().map(|r| r.trials).sum(),
            fallbacks: mine.iter().map(|r| r.fallbacks).sum(),
        });
    }
    NetworkSummary {
        network: o.network.clone(),
        tasks,
        trials_per_task: o.trials_per_task,
        seeds: o.seeds,
        timing_rounds: o.timing_rounds.max(1),
        timing_repeats: o.timing_repeats.max(1),
        checkpoint_fractions: (1..=o.checkpoints.max(1))
            .map(|k| k as f64 / o.checkpoints.max(1) as f64)
            .collect(),
        tolerance: o.tolerance,
        reach_definition: REACH_DEFINITION.to_string(),
        task_breakdown: breakdown(o, runs),
        configs,
        ..NetworkSummary::default()
    }
}

/// Per task, per config: median over seeds of weight × best latency, and of the gain over
/// the baseline of the same seed.
fn breakdown(o: &NetworkOptions, runs: &[NetworkRun]) -> Vec<TaskBreakdown> {
    let Some(first) = runs.first() else {
        return Vec::new();
    };
    let weighted = |r: &NetworkRun, i: usize| {
        r.tasks
            .get(i)
            .and_then(|t| t.best_seconds.map(|s| t.weight * s * 1e3))
    };
    first
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut weighted_ms = Vec::new();
            let mut gain_ms = Vec::new();
            for &config in &o.configs {
                let mine: Vec<&NetworkRun> = runs.iter().filter(|r| r.config == config).collect();
                let w: Vec<f64> = mine.iter().filter_map(|r| weighted(r, i)).collect();
                let g: Vec<f64> = mine
                    .iter()
                    .filter_map(|r| {
                        let base = runs
                            .iter()
                            .find(|b| b.config == Config::Baseline && b.seed == r.seed)?;
                        Some(weighted(base, i)? - weighted(r, i)?)
                    })
                    .collect();
                weighted_ms.push(median(&w));
                gain_ms.push(median(&g));
            }
            TaskBreakdown {
                task: t.name.clone(),
                weight: t.weight,
                weighted_ms,
                gain_ms,
            }
        })
        .collect()
}

/// The median over `runs` of `value(point)` at the last point whose `x(point)` is at most
/// each of `xs`; a grid point where fewer than half the runs have a value is left out.
fn median_curve(
    runs: &[&NetworkRun],
    xs: &[f64],
    x: impl Fn(&NetPoint) -> f64,
    value: impl Fn(&NetworkRun, &NetPoint) -> Option<f64>,
) -> Vec<(f64, f64)> {
    xs.iter()
        .filter_map(|&at| {
            let vals: Vec<f64> = runs
                .iter()
                .filter_map(|r| {
                    let p = r.rounds.iter().take_while(|p| x(p) <= at).last()?;
                    value(r, p)
                })
                .collect();
            (2 * vals.len() >= runs.len() && !vals.is_empty())
                .then(|| median(&vals).map(|m| (at, m)))
                .flatten()
        })
        .collect()
}

/// The four plots: estimated and measured-scale latency (ms), vs trials and vs search
/// seconds; returns their file names.
fn network_plots(
    out: &Path,
    stem: &str,
    configs: &[Config],
    runs: &[NetworkRun],
) -> Result<Vec<String>, ExperimentError> {
    let grid = |max: f64| -> Vec<f64> { (0..=200).map(|k| max * k as f64 / 200.0).collect() };
    let t_max = runs.iter().map(|r| r.search_seconds).fold(0.0, f64::max);
    let n_max = runs.iter().map(|r| r.trials).max().unwrap_or(0) as f64;
    let estimated = |_: &NetworkRun, p: &NetPoint| p.estimated_seconds.map(|s| s * 1e3);
    let measured = |r: &NetworkRun, p: &NetPoint| {
        let scale = r.scale_at(p.round)?;
        p.estimated_seconds.map(|s| s * scale * 1e3)
    };
    let mut names = Vec::new();
    type Value<'a> = &'a dyn Fn(&NetworkRun, &NetPoint) -> Option<f64>;
    let kinds: [(&str, &str, Value); 2] = [
        (
            "estimated",
            "estimated latency (ms, Σ weight × best)",
            &estimated,
        ),
        (
            "measured",
            "measured-scale latency (ms, estimate × measured/estimate of the next checkpoint)",
            &measured,
        ),
    ];
    for (kind, y_desc, value) in kinds {
        for (axis, x_desc, by_time) in [
            ("time", "search seconds (the run's own rounds)", true),
            ("trials", "trials", false),
        ] {
            let xs = grid(if by_time { t_max } else { n_max });
            let curves: Vec<(Config, Vec<(f64, f64)>)> = configs
                .iter()
                .map(|&c| {
                    let mine: Vec<&NetworkRun> = runs.iter().filter(|r| r.config == c).collect();
                    let x = |p: &NetPoint| if by_time { p.seconds } else { p.trials as f64 };
                    (c, median_curve(&mine, &xs, x, value))
                })
                .collect();
            let name = format!("{stem}.{kind}.{axis}.svg");
            plot(
                &out.join(&name),
                &format!("{stem}: {kind} latency vs {axis} (median over seeds)"),
                x_desc,
                y_desc,
                &curves,
            )?;
            names.push(name);
        }
    }
    Ok(names)
}

/// The report as text (stdout) and Markdown (report.md).
struct Report {
    text: String,
    markdown: String,
}

const METRICS: &str = "\
* **estimated ms**: the scheduler's Σ weight × best latency at the end, median over seeds. \
**measured ms**: every run's tuned network built with the runtime (each task from its \
fastest record) and timed side by side with the other runs' modules (interleaved rounds, \
order rotated), median of the inferences; median [quartiles] over seeds. **meas/est**: \
measured ÷ estimated, median over runs.
* **final ×base**: median over seeds of the baseline's measured latency ÷ this config's \
(same seed); above 1 = faster. **signed-rank p (n)**: exact two-sided Wilcoxon signed-rank \
test of the log latency ratios, paired by seed.
* **time-to-reach**: median over seeds of (search seconds until the run reaches the \
baseline's final measured latency ÷ the baseline's own); below 1 = faster; \"not reached\" \
when the median seed never got there. Reached: the run's estimate curve, scaled by the \
measured ÷ estimate of its next measured checkpoint (the network built from the records as \
they stood and timed side by side with the other runs of its seed; the final module after \
the last checkpoint), is within the tolerance of the target. **trials-to-reach**: the same \
in trials. **reached**: seeds that got there / seeds compared.
* **measured at checkpoints**: median over seeds of each run's built network at each share \
of the budget (the last column is the final timing).
* **policy %**: share of the search seconds spent inside the sketch and mutation policies \
(timed exactly). **fallbacks**: tasks the built modules ran on a default schedule.
* **task breakdown**: per task, weight × best latency (ms, median over seeds) per config, \
and the learned configs' gain over the baseline of the same seed (ms, median; above 0 = \
gained).
";

fn report(s: &NetworkSummary) -> Report {
    let mut rows = vec![header(&[
        "config",
        "policies",
        "estimated ms",
        "measured ms med [q1,q3]",
        "meas/est",
        "final ×base",
        "signed-rank p (n)",
        "time-to-reach",
        "trials-to-reach",
        "reached",
        "policy %",
        "search s (med)",
        "fallbacks",
    ])];
    for c in &s.configs {
        rows.push(vec![
            c.config.name().to_string(),
            format!("{}+{}", c.sketch_policy, c.mutation_policy),
            opt(c.estimated_ms_median, 3),
            format!(
                "{} [{},{}]",
                opt(c.measured_ms_median, 3),
                opt(c.measured_ms_q1, 3),
                opt(c.measured_ms_q3, 3)
            ),
            opt(c.measured_over_estimate_median, 2),
            opt(c.final_ratio, 3),
            c.signed_rank
                .as_ref()
                .map_or("-".to_string(), |t| format!("{:.3} ({})", t.p_value, t.n)),
            reach(c.time_to_reach_ratio),
            reach(c.trials_to_reach_ratio),
            format!("{}/{}", c.reached, c.compared),
            format!("{:.2}%", 100.0 * c.policy_share),
            opt(c.search_seconds_median, 1),
            c.fallbacks.to_string(),
        ]);
    }
    let names: Vec<&str> = s.configs.iter().map(|c| c.config.name()).collect();
    let mut head = vec!["task".to_string(), "weight".to_string()];
    head.extend(names.iter().map(|n| format!("{n} ms")));
    head.extend(names.iter().skip(1).map(|n| format!("{n} gain ms")));
    let mut tasks = vec![head];
    for t in &s.task_breakdown {
        let mut row = vec![t.task.clone(), format!("{}", t.weight)];
        row.extend(t.weighted_ms.iter().map(|v| opt(*v, 4)));
        row.extend(t.gain_ms.iter().skip(1).map(|v| opt(*v, 4)));
        tasks.push(row);
    }
    let mut head = vec!["config".to_string()];
    head.extend(
        s.checkpoint_fractions
            .iter()
            .map(|f| format!("{:.0} % ms", 100.0 * f)),
    );
    let mut checkpoints = vec![head];
    for c in &s.configs {
        let mut row = vec![c.config.name().to_string()];
        row.extend(c.checkpoints_ms.iter().map(|v| opt(*v, 3)));
        checkpoints.push(row);
    }
    let setup = format!(
        "{} tasks, {} trials per task, {} seeds, {} kernel threads, isolation {}, scheduler \
         {}; configs in lockstep per seed, no shared measurement cache; modules timed in {} \
         rounds × {} inferences; tolerance {}.",
        s.tasks,
        s.trials_per_task,
        s.seeds,
        s.threads,
        s.isolation,
        s.scheduler,
        s.timing_rounds,
        s.timing_repeats,
        s.tolerance
    );
    let text = format!(
        "\n{} ({setup})\n{}\nmeasured at checkpoints (share of the budget):\n{}\n{}",
        s.network,
        text_table(&rows),
        text_table(&checkpoints),
        text_table(&tasks)
    );
    let mut markdown = format!(
        "# Learned-policies experiment on {}\n\n{setup}\n\n{METRICS}\n## Results\n\n{}\n\
         Reached: {}.\n\n## Measured at checkpoints\n\n{}\n## Per-task breakdown\n\n{}\n\
         ## Plots\n\n",
        s.network,
        markdown_table(&rows),
        s.reach_definition,
        markdown_table(&checkpoints),
        markdown_table(&tasks)
    );
    for f in &s.plots {
        markdown.push_str(&format!("![{f}]({f})\n"));
    }
    markdown
        .push_str("\n## Records\n\nEach run's records, for `tessel run-network --records`:\n\n");
    for r in &s.runs {
        markdown.push_str(&format!(
            "* {} seed {}: `{}`\n",
            r.config.name(),
            r.seed,
            r.records
        ));
    }
    Report { text, markdown }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(config: Config, seed: u64, points: &[(f64, f64)], measured: f64) -> NetworkRun {
        NetworkRun {
            config,
            seed,
            rounds: points
                .iter()
                .enumerate()
                .map(|(k, &(t, est))| NetPoint {
                    round: k,
                    trials: 10 * (k + 1),
                    seconds: t,
                    policy_seconds: 0.01 * t,
                    estimated_seconds: Some(est),
                })
                .collect(),
            trials: 10 * points.len(),
            search_seconds: points.last().map_or(0.0, |p| p.0),
            policy_seconds: 0.01 * points.last().map_or(0.0, |p| p.0),
            estimated_seconds: points.last().map(|p| p.1),
            measured_seconds: Some(measured),
            tasks: vec![TaskBest {
                name: "t".into(),
                weight: 2.0,
                trials: 10 * points.len(),
                best_seconds: points.last().map(|p| p.1 / 2.0),
            }],
            ..NetworkRun::default()
        }
    }

    #[test]
    fn reach_uses_the_estimate_scaled_to_the_measured_module() {
        let o = NetworkOptions::new("n", 10, 1, vec![Config::Baseline, Config::Both], "x".into());
        // Baseline: final estimate 1.0, measured 1.2 (scale 1.2): reaches 1.2 at 4 s.
        let base = run(
            Config::Baseline,
            0,
            &[(1.0, 3.0), (2.0, 2.0), (4.0, 1.0)],
            1.2,
        );
        // Both: scale 1.5; its estimate 0.8 at 2 s scales to 1.2 ≤ 1.2 · 1.01: reached.
        let both = run(Config::Both, 0, &[(1.0, 2.0), (2.0, 0.8), (4.0, 0.7)], 1.05);
        let scale = both.measured_over_estimate().unwrap();
        assert!((scale - 1.5).abs() < 1e-12);
        let s = summarize(&o, 1, &[base, both]);
        let (b, c) = (&s.configs[0], &s.configs[1]);
        assert_eq!(b.time_to_reach_ratio, Some(1.0));
        assert_eq!(c.time_to_reach_ratio, Some(0.5));
        assert_eq!(c.trials_to_reach_ratio, Some(20.0 / 30.0));
        assert_eq!((c.reached, c.compared), (1, 1));
        assert!((c.final_ratio.unwrap() - 1.2 / 1.05).abs() < 1e-12);
        assert!((c.policy_share - 0.01).abs() < 1e-12);
        // Task breakdown: weight 2 × best (0.35 s vs 0.5 s) → 700 ms vs 1000 ms; gain 300.
        let t = &s.task_breakdown[0];
        assert_eq!(t.weighted_ms[0], Some(1000.0));
        assert!((t.gain_ms[1].unwrap() - 300.0).abs() < 1e-9);
        assert_eq!(s.reach_definition, REACH_DEFINITION);
    }

    #[test]
    fn a_measured_checkpoint_scales_the_estimate_up_to_its_round() {
        let o = NetworkOptions::new("n", 10, 1, vec![Config::Baseline, Config::Both], "x".into());
        let base = run(Config::Baseline, 0, &[(1.0, 2.0), (2.0, 1.0)], 1.0);
        // Final scale 1.0, but the module built after round 0 measured 2× its estimate:
        // round 0's estimate 0.9 is 1.8 measured (not reached), round 1's 0.95 is 0.95.
        let mut both = run(Config::Both, 0, &[(1.0, 0.9), (2.0, 0.95)], 0.95);
        both.checkpoints.push(MeasuredPoint {
            round: 0,
            trials: 10,
            seconds: 1.0,
            estimated_seconds: Some(0.9),
            measured_seconds: Some(1.8),
            fallbacks: 0,
        });
        assert_eq!(both.scale_at(0), Some(2.0));
        assert!((both.scale_at(1).unwrap() - 1.0).abs() < 1e-12);
        assert_eq!(both.reach(1.01).map(|p| p.round), Some(1));
        let mut o2 = o.clone();
        o2.checkpoints = 2;
        let s = summarize(&o2, 1, &[base.clone(), both.clone()]);
        assert_eq!(s.configs[1].time_to_reach_ratio, Some(1.0));
        assert_eq!(s.checkpoint_fractions, [0.5, 1.0]);
        let cps = &s.configs[1].checkpoints_ms;
        assert!((cps[0].unwrap() - 1800.0).abs() < 1e-9 && (cps[1].unwrap() - 950.0).abs() < 1e-9);
        assert_eq!(
            s.configs[0].checkpoints_ms[0], None,
            "the baseline has no checkpoint"
        );
        // Without the checkpoint the final scale would call round 0 reached.
        both.checkpoints.clear();
        assert_eq!(both.reach(1.01).map(|p| p.round), Some(0));
        let _ = o;
    }

    #[test]
    fn a_run_that_never_gets_there_is_not_reached() {
        let o = NetworkOptions::new("n", 10, 1, vec![Config::Baseline, Config::Rl], "x".into());
        let base = run(Config::Baseline, 0, &[(1.0, 1.0)], 1.0);
        let rl = run(Config::Rl, 0, &[(1.0, 2.0), (2.0, 1.5)], 1.5);
        let s = summarize(&o, 1, &[base, rl]);
        assert_eq!(s.configs[1].time_to_reach_ratio, None);
        assert_eq!(s.configs[1].reached, 0);
        assert!((s.configs[1].final_ratio.unwrap() - 1.0 / 1.5).abs() < 1e-12);
        assert_eq!(s.configs[0].signed_rank, None, "the baseline ties itself");
    }
}
