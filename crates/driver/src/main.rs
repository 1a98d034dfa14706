//! `tessel`: the command-line driver of the Tessel auto-scheduler.
//!
//! Each subcommand lives in its own module under [`commands`]; `main` only parses the
//! command line, dispatches, and turns a [`DriverError`] into a message on stderr and
//! its exit code ([`DriverError::exit_code`]: 2, 3 for lost records, 130 when interrupted).

mod commands;
mod error;

use clap::{Parser, Subcommand};
use error::DriverError;
use std::process::ExitCode;

/// Tessel: an auto-scheduler for tensor programs.
#[derive(Parser, Debug)]
#[command(name = "tessel", version, about)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
enum Command {
    /// List the named workloads, or show one workload (a name or an `OP:key=value,...` spec).
    Workloads(commands::workloads::Args),
    /// Search for a fast schedule of a workload (the main job).
    Tune(commands::tune::Args),
    /// Random search: sample and measure complete schedules of a workload.
    Sample(commands::sample::Args),
    /// Tune every task of a built-in network with Ansor's task scheduler.
    TuneNetwork(commands::tune_network::Args),
    /// Compare the baseline with the learned policies (same seeds) and write a report.
    Experiment(commands::experiment::Args),
    /// Print the sketches (loop structures with undecided tile sizes) of a workload.
    Sketches(commands::sketches::Args),
    /// Lower, compile, verify and time one schedule (a step-log file) of a workload.
    Run(commands::run::Args),
    /// Re-measure the best record of each workload of a records file.
    Replay(commands::replay::Args),
    /// Statistics, best-of and distillation of a records file.
    Records(commands::records::Args),
    /// (internal) The measurement worker: JSON lines on stdin/stdout.
    #[command(hide = true)]
    Worker(commands::worker::Args),
    /// Evaluate the learned cost model on measured records, or train a pre-trained one.
    CostModel(commands::cost_model::Args),
    /// Measure a training set for the cost model: searched and random programs of workloads.
    Dataset(commands::dataset::Args),
    /// List the tasks (distinct fused subgraphs, with weights) of a built-in network.
    Tasks(commands::tasks::Args),
    /// Build a whole network into one module (tuned records or default schedules) and run it.
    RunNetwork(commands::run_network::Args),
    /// Show the best program of a workload (or of each task of a network) in a records file.
    Show(commands::show::Args),
}

fn run(cli: Cli) -> Result<(), DriverError> {
    match cli.command {
        Command::Workloads(args) => commands::workloads::run(&args),
        Command::Tune(args) => commands::tune::run(&args),
        Command::Sample(args) => commands::sample::run(&args),
        Command::TuneNetwork(args) => commands::tune_network::run(&args),
        Command::Experiment(args) => commands::experiment::run(&args),
        Command::Sketches(args) => commands::sketches::run(&args),
        Command::Run(args) => commands::run::run(&args),
        Command::Replay(args) => commands::replay::run(&args),
        Command::Records(args) => commands::records::run(&args),
        Command::Worker(args) => commands::worker::run(&args),
        Command::CostModel(args) => commands::cost_model::run(&args),
        Command::Dataset(args) => commands::dataset::run(&args),
        Command::Tasks(args) => commands::tasks::run(&args),
        Command::RunNetwork(args) => commands::run_network::run(&args),
        Command::Show(args) => commands::show::run(&args),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away (`tessel tasks resnet50 | head`): what it
        // wanted is written, so end quietly, as other command-line tools do.
        Err(DriverError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
