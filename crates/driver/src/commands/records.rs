//! `tessel records stats|best|distill <file>`: what a records file holds.
//!
//! * `stats`: records, successes, counts by error class, workloads, skipped lines;
//! * `best`: the best successful record of each workload;
//! * `distill --top N --output OUT`: keep only the best N successful records per workload.
//!
//! Bad lines are reported on stderr and skipped; they never stop the command.

use super::run::{finish, CmdError};
use crate::error::DriverError;
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use tessel_measure::records::{self, read_records, RecordLog};

/// Arguments of `tessel records`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub action: Action,
}

/// The `records` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum Action {
    /// Counts of records by outcome and error class.
    Stats {
        /// The records file.
        file: PathBuf,
        /// Also print one JSON object as the last line.
        #[arg(long)]
        json: bool,
    },
    /// The best successful record of each workload.
    Best {
        /// The records file.
        file: PathBuf,
        /// Also print one JSON object as the last line.
        #[arg(long)]
        json: bool,
    },
    /// Keep only the best N successful records of each workload.
    Distill {
        /// The records file.
        file: PathBuf,
        /// How many records to keep per workload.
        #[arg(long, default_value_t = 1, value_parser = super::numbers::positive, allow_negative_numbers = true)]
        top: usize,
        /// Where to write the distilled records (replaced).
        #[arg(long, short)]
        output: PathBuf,
        /// Also print one JSON object as the last line.
        #[arg(long)]
        json: bool,
    },
}

/// Runs the subcommand.
pub fn run(args: &Args) -> Result<(), DriverError> {
    finish(run_inner(args))
}

fn load(file: &Path) -> Result<RecordLog, CmdError> {
    let log = read_records(file)?;
    for p in &log.problems {
        eprintln!(
            "warning: {}:{}: skipped: {}",
            file.display(),
            p.line,
            p.reason
        );
    }
    Ok(log)
}

fn run_inner(args: &Args) -> Result<(), CmdError> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match &args.action {
        Action::Stats { file, json } => {
            let log = load(file)?;
            let s = records::stats(&log.records);
            writeln!(out, "records:    {}", s.records)?;
            writeln!(out, "ok:         {}", s.ok)?;
            for c in tessel_measure::ErrorClass::ALL {
                let n = s.errors.get(c.key()).copied().unwrap_or(0);
                writeln!(out, "{:18}  {n}", format!("{}:", c.name()))?;
            }
            writeln!(out, "workloads:  {}", s.workloads)?;
            writeln!(out, "bad lines:  {}", log.problems.len())?;
            if *json {
                let mut v = serde_json::to_value(&s).unwrap_or(Value::Null);
                if let Some(m) = v.as_object_mut() {
                    m.insert("bad_lines".into(), json!(log.problems));
                }
                writeln!(out, "{}", json!({ "stats": v }))?;
            }
        }
        Action::Best { file, json } => {
            let log = load(file)?;
            let best = records::best_per_workload(&log.records);
            writeln!(
                out,
                "{:40}  {:>12}  {:>6}  {:>7}",
                "workload", "median ms", "steps", "threads"
            )?;
            let mut rows = Vec::new();
            for r in &best {
                let cost = r.cost().unwrap_or(f64::NAN);
                writeln!(
                    out,
                    "{:40}  {:>12.4}  {:>6}  {:>7}",
                    r.key.workload,
                    cost * 1e3,
                    r.steps.len(),
                    r.key.codegen.threads
                )?;
                rows.push(json!({
                    "workload": r.key.workload,
                    "key": r.key.workload_key,
                    "median_ms": cost * 1e3,
                    "steps": r.steps.len(),
                    "threads": r.key.codegen.threads,
                    "timestamp": r.timestamp,
                }));
            }
            if *json {
                writeln!(out, "{}", json!({ "best": rows }))?;
            }
        }
        Action::Distill {
            file,
            top,
            output,
            json,
        } => {
            let log = load(file)?;
            let kept = records::best_n(&log.records, *top);
            records::write_records(output, &kept)?;
            writeln!(
                out,
                "kept {} of {} records (best {top} per workload) in {}",
                kept.len(),
                log.records.len(),
                output.display()
            )?;
            if *json {
                let v = json!({ "distill": {
                    "kept": kept.len(),
                    "read": log.records.len(),
                    "bad_lines": log.problems.len(),
                    "output": output.display().to_string(),
                }});
                writeln!(out, "{v}")?;
            }
        }
    }
    Ok(())
}
