//! `tessel experiment <workload>...` and `tessel experiment --network <net>`: the
//! learned-policies experiment (PAPER.md §5), wired to the `tessel-experiment` crate.
//!
//! The flags make one tuning job (target, runner, sizes) and the experiment's options; the
//! crate runs the configs in lockstep per seed, writes the report, the summary, the plots
//! and every run's records under `--out`, and returns the summary (the last stdout line
//! with `--json`). See `tessel_experiment::operator` (single operators) and
//! `tessel_experiment::network` (whole networks, built and timed end to end) for what is
//! measured and reported.

use crate::commands::search_options::{job_options, resolve_threads, Isolation, TargetArgs};
use crate::commands::tune_network;
use crate::error::DriverError;
use std::io::Write;
use std::path::PathBuf;
use tessel_experiment::network::NetworkOptions;
use tessel_experiment::operator::OperatorOptions;
use tessel_experiment::{parse_configs, ExperimentError};
use tessel_measure::options::Residence;
use tessel_search::evolution::EvolutionParams;
use tessel_search::job::TuneJob;
use tessel_search::scheduler::SchedulerParams;
use tessel_search::tuner::TuneParams;
use tessel_workloads::networks::{self, Weights};
use tessel_workloads::{self as workloads, Workload};

/// Arguments of `tessel experiment`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Workloads: registry names (`gmm-3`) or `OP:key=value,...` specs.
    #[arg(required_unless_present = "network", conflicts_with = "network")]
    pub specs: Vec<String>,
    /// Tune a whole network instead (resnet50, mobilenet-v2, bert-base, tiny-cnn or an
    /// `.onnx` file) with the task scheduler, then build and time every run's network.
    /// Candidates are measured with each layer's operands where the network keeps them, as
    /// `tune-network` does (its default `--weights` and `--activations`).
    #[arg(long)]
    pub network: Option<String>,
    /// Input shapes of an `.onnx` model (`--network model.onnx`).
    #[command(flatten)]
    pub input: super::network_source::InputArgs,
    /// Batch size of a built-in network.
    #[arg(long, default_value_t = 1)]
    pub batch: i64,
    /// Measurement trials per run (operators).
    #[arg(long, default_value_t = 1000, value_parser = super::numbers::positive, allow_negative_numbers = true)]
    pub trials: usize,
    /// Measurement trials per task of the network (a run's budget is this × its tasks).
    #[arg(long, default_value_t = 64, value_parser = super::numbers::positive, allow_negative_numbers = true)]
    pub trials_per_task: usize,
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
    /// measures every program once, interleaved); 0 turns it off (operators).
    #[arg(long, default_value_t = 10)]
    pub remeasure_rounds: usize,
    /// Rounds of the trail re-measurement: every program a run held as its best after some
    /// round, from every run of the workload, timed again side by side (interleaved,
    /// median of the rounds) to decide time-to-reach without lucky readings; 0 turns it
    /// off (operators).
    #[arg(long, default_value_t = 5)]
    pub trail_rounds: usize,
    /// Further measurements of a candidate whose first reading is within 1 % of its run's
    /// best (it gets the median of all its repeats); 0 (the default) measures every
    /// candidate once (operators).
    #[arg(long, default_value_t = 0, value_parser = super::numbers::non_negative, allow_negative_numbers = true)]
    pub confirm: usize,
    /// Do not share measurements between the runs of a workload (operators; the network
    /// experiment never shares them).
    #[arg(long)]
    pub no_cache: bool,
    /// Rounds of the side-by-side timing of the tuned networks (each round runs every
    /// run's module in turn).
    #[arg(long, default_value_t = 10, value_parser = super::numbers::positive, allow_negative_numbers = true)]
    pub timing_rounds: usize,
    /// Inferences of each module per timing round.
    #[arg(long, default_value_t = 5, value_parser = super::numbers::positive, allow_negative_numbers = true)]
    pub timing_repeats: usize,
    /// Measured checkpoints of the network experiment, the final timing included: at every
    /// 1/N of the budget each run's network is built from its records as they stand and
    /// timed beside the other runs of its seed (1: the end only).
    #[arg(long, default_value_t = 4, value_parser = super::numbers::positive, allow_negative_numbers = true)]
    pub checkpoints: usize,
    /// Also print the summary as one JSON object on the last stdout line.
    #[arg(long)]
    pub json: bool,
}

impl From<ExperimentError> for DriverError {
    fn from(e: ExperimentError) -> DriverError {
        match e {
            ExperimentError::Usage(m) => DriverError::Usage(m),
            ExperimentError::RecordsLost(m) => DriverError::RecordsLost(m),
            ExperimentError::Ir(e) => DriverError::Ir(e),
            other => DriverError::Failed(other.to_string()),
        }
    }
}

/// The experiment's tuning job: the target and runner of the flags, the sizes and budget of
/// every run (the seed and the policies are set per run).
fn job(args: &Args, threads: usize, residences: Option<(Residence, Residence)>) -> TuneJob {
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
    if let Some((weights, activations)) = residences {
        options.weights = weights;
        options.activations = activations;
    }
    TuneJob::new(options)
}

/// How candidates are measured, in words for the report.
fn isolation(args: &Args) -> String {
    match &args.measure {
        Some(farm) => format!("farm {farm}"),
        None => format!("{:?}", args.isolation).to_lowercase(),
    }
}

/// Runs the subcommand.
pub fn run(args: &Args) -> Result<(), DriverError> {
    let configs = parse_configs(&args.configs)?;
    let threads = resolve_threads(args.threads);
    let stdout = std::io::stdout();
    let summary = match &args.network {
        Some(network) => {
            let (net, weights) =
                super::network_source::load_with_weights(network, args.batch, &args.input)?;
            let weights = weights.unwrap_or_else(|| Weights::random(&net, 1));
            let tasks = networks::extract_tasks(&net)?;
            // Candidates measured as `tune-network` measures them: each layer's operands
            // where the built network keeps them, so that estimates are comparable with
            // the measured modules.
            let residences =
                tune_network::network_residence(tune_network::network_weight_bytes(&tasks));
            let job = job(args, threads, Some(residences));
            let task_workloads = tasks
                .iter()
                .map(|t| super::network_source::task_workload(network, &net, t))
                .collect::<Result<Vec<_>, _>>()?;
            let name = std::path::Path::new(network)
                .file_stem()
                .map_or(network.clone(), |s| s.to_string_lossy().to_string());
            let options = NetworkOptions {
                scheduler: SchedulerParams {
                    measures_per_round: args.measures_per_round.max(1),
                    ..SchedulerParams::default()
                },
                timing_rounds: args.timing_rounds,
                timing_repeats: args.timing_repeats,
                checkpoints: args.checkpoints,
                isolation: format!(
                    "{}; weights {}, activations {}",
                    isolation(args),
                    residences.0.name(),
                    residences.1.name()
                ),
                ..NetworkOptions::new(
                    &name,
                    args.trials_per_task,
                    args.seeds,
                    configs,
                    args.out.clone(),
                )
            };
            let s = tessel_experiment::network::run(
                &job,
                &net,
                &weights,
                &task_workloads,
                &options,
                &mut stdout.lock(),
            )?;
            serde_json::to_value(&s).map_err(DriverError::failed)?
        }
        None => {
            let job = job(args, threads, None);
            let workloads: Vec<Workload> = args
                .specs
                .iter()
                .map(|s| workloads::lookup(s))
                .collect::<Result<_, _>>()?;
            let options = OperatorOptions {
                seeds: args.seeds,
                configs,
                out: args.out.clone(),
                remeasure_rounds: args.remeasure_rounds,
                trail_rounds: args.trail_rounds,
                confirm: args.confirm,
                no_cache: args.no_cache,
                isolation: isolation(args),
            };
            tessel_experiment::operator::run(&job, &workloads, &options, &mut stdout.lock())?
        }
    };
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
