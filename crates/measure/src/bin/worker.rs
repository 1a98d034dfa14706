//! `tessel-measure-worker`: the measurement worker as a stand-alone binary (the same
//! [`tessel_measure::worker::serve`] loop as `tessel worker`), so that this crate's tests can
//! start real worker processes.
//!
//! With `--nats URL` it is a farm worker instead ([`tessel_measure::farm::serve_farm`]), for
//! this crate's farm tests and benches: `--prefix P`, `--cpu NAME`, `--threads N`,
//! `--ack-wait-ms N`, `--max-attempts N`, `--max-candidates N`, `--fake-ms N` (a
//! [`tessel_measure::farm::FakeMeasurer`] sleeping N ms instead of a worker process),
//! `--duplicate-results`, `--quiet`.

use std::process::ExitCode;
use std::time::Duration;
use tessel_measure::farm::{
    serve_farm, FakeMeasurer, FarmMeasurer, FarmWorkerConfig, ProcessMeasurer,
};
use tessel_measure::WorkerCommand;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        return match tessel_measure::worker::serve_stdio() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tessel-measure-worker: {e}");
                ExitCode::from(2)
            }
        };
    }
    match farm(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tessel-measure-worker: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs a farm worker from the command line.
fn farm(args: &[String]) -> Result<(), String> {
    let mut config = FarmWorkerConfig::new("", 1);
    let mut fake: Option<u64> = None;
    let mut it = args.iter();
    let number = |v: Option<&String>, flag: &str| -> Result<u64, String> {
        v.and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{flag} takes a whole number"))
    };
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--nats" => config.url = it.next().cloned().ok_or("--nats takes a URL")?,
            "--prefix" => config.prefix = it.next().cloned().ok_or("--prefix takes a name")?,
            "--cpu" => config.cpu = Some(it.next().cloned().ok_or("--cpu takes a name")?),
            "--threads" => config.threads = number(it.next(), flag)?.max(1) as usize,
            "--ack-wait-ms" => config.ack_wait = Duration::from_millis(number(it.next(), flag)?),
            "--max-attempts" => config.max_attempts = number(it.next(), flag)? as u32,
            "--max-candidates" => config.max_candidates = Some(number(it.next(), flag)?),
            "--fake-ms" => fake = Some(number(it.next(), flag)?),
            "--duplicate-results" => config.duplicate_results = true,
            "--quiet" => config.verbose = false,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let measurer: Box<dyn FarmMeasurer> = match fake {
        Some(ms) => Box::new(FakeMeasurer {
            sleep: Duration::from_millis(ms),
        }),
        None => Box::new(ProcessMeasurer::new(
            WorkerCommand::current_exe(&[]).map_err(|e| e.to_string())?,
        )),
    };
    serve_farm(config, measurer)
        .map(|_| ())
        .map_err(|e| e.to_string())
}
