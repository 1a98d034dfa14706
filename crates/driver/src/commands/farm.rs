//! The measurement farm from the command line: `--measure nats://HOST:PORT` on the searching
//! commands ([`farm_runner`]) and `tessel worker --nats nats://HOST:PORT` ([`WorkerArgs`],
//! [`run_worker`]). See `docs/farm.md`.

use super::search_options::{resolve_threads, TargetArgs};
use crate::error::DriverError;
use std::time::Duration;
use tessel_measure::farm::{
    serve_farm, FarmRunnerConfig, FarmWorkerConfig, NatsRunner, ProcessMeasurer,
};
use tessel_measure::{MeasureOptions, Runner, WorkerCommand};

/// A farm runner for `spec` (`nats://HOST:PORT[?cpu=NAME&wait=SECONDS]`): connects, waits up
/// to 3 s to hear from a worker of the target and says how many it heard from.
pub fn farm_runner(
    spec: &str,
    options: MeasureOptions,
) -> Result<Box<dyn Runner>, tessel_measure::HarnessError> {
    let config = FarmRunnerConfig::parse(spec)?;
    let runner = NatsRunner::connect(config, options)?;
    let live = runner.wait_for_workers(1, Duration::from_secs(3));
    eprintln!(
        "farm: measuring on {} ({live} worker{} heard from so far)",
        runner.target(),
        if live == 1 { "" } else { "s" }
    );
    Ok(Box::new(runner))
}

/// The farm options of `tessel worker`.
#[derive(clap::Args, Debug, Clone)]
pub struct WorkerArgs {
    /// Serve the measurement farm at this broker (`nats://HOST:PORT`) instead of stdin.
    #[arg(long)]
    pub nats: Option<String>,
    /// The CPU name this worker serves (default: this machine's model name); tuners select
    /// it with `--measure nats://HOST:PORT?cpu=NAME`.
    #[arg(long, requires = "nats")]
    pub cpu: Option<String>,
    /// Kernel threads it serves (default: every core, as `tessel tune`'s default).
    #[arg(long, requires = "nats", value_parser = super::numbers::positive)]
    pub threads: Option<usize>,
    /// The ISA level it serves (`--target`, `--no-micro-kernels`, as on `tessel tune`).
    #[command(flatten)]
    pub target: TargetArgs,
    /// Seconds without an acknowledgement after which a candidate goes to another worker
    /// (set when the target's queue is first made).
    #[arg(long, default_value_t = 30, requires = "nats")]
    pub ack_wait: u64,
    /// Deliveries of a candidate that may be measured before it is recorded as an error.
    #[arg(long, default_value_t = 3, requires = "nats")]
    pub max_attempts: u32,
}

/// Runs `tessel worker --nats`: serves the farm until killed.
pub fn run_worker(args: &WorkerArgs) -> Result<(), DriverError> {
    let url = args
        .nats
        .as_deref()
        .ok_or_else(|| DriverError::Failed("--nats is required".into()))?;
    let threads = resolve_threads(args.threads);
    let mut config = FarmWorkerConfig::new(url, threads);
    config.cpu = args.cpu.clone();
    config.isa = args.target.resolve(threads).isa;
    config.ack_wait = Duration::from_secs(args.ack_wait.max(1));
    config.max_attempts = args.max_attempts.max(1);
    let command =
        WorkerCommand::current_exe(&["worker"]).map_err(|e| DriverError::Failed(e.to_string()))?;
    serve_farm(config, Box::new(ProcessMeasurer::new(command)))
        .map(|_| ())
        .map_err(|e| DriverError::Failed(e.to_string()))
}
