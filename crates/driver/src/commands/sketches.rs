//! `tessel sketches <workload> [--cores N] [--target T] [--json]`: the sketches Ansor's CPU
//! rules make for a target (tensorized sketches only when its ISA has micro-kernels).
//!
//! Each sketch is printed as its loop structure (split lengths still `?`) and its step log;
//! `--json` adds one JSON object as the last line with each sketch's text and steps.

use crate::error::DriverError;
use serde_json::json;
use std::io::Write;
use std::sync::Arc;
use tessel_sketch::{generate_sketches, HardwareParams};

/// Arguments of `tessel sketches`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A registry name or an `OP:key=value,...` spec.
    pub spec: String,
    /// Batch size: overrides the workload's batch key.
    #[arg(long)]
    pub batch: Option<i64>,
    /// Cores the schedules are for (default: this machine's); rfactor and parallel rules
    /// depend on it.
    #[arg(long)]
    pub cores: Option<i64>,
    /// The target whose sketches to print (its ISA decides the tensorized sketches).
    #[command(flatten)]
    pub target: super::search_options::TargetArgs,
    /// Also print one machine-readable JSON object as the last line.
    #[arg(long)]
    pub json: bool,
}

/// Runs the subcommand, writing to stdout.
pub fn run(args: &Args) -> Result<(), DriverError> {
    let w = match args.batch {
        Some(b) => tessel_workloads::lookup_with_batch(&args.spec, b)?,
        None => tessel_workloads::lookup(&args.spec)?,
    };
    let cores = match args.cores {
        Some(c) if c >= 1 => c,
        Some(c) => {
            return Err(DriverError::Usage(format!(
                "--cores {c} must be at least 1"
            )))
        }
        None => HardwareParams::detect().num_cores,
    };
    let target = args.target.resolve(cores as usize);
    let hw = HardwareParams::for_target(&target);
    let sketches = generate_sketches(&Arc::new(w.dag.clone()), &hw).map_err(DriverError::failed)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(
        out,
        "{} ({}): {} sketches for {} cores, target {}\n",
        w.name,
        w.spec(),
        sketches.len(),
        hw.num_cores,
        hw.isa
    )?;
    for s in &sketches {
        writeln!(out, "{}", s.text())?;
    }
    if args.json {
        let list: Vec<_> = sketches
            .iter()
            .map(|s| json!({"id": s.id, "text": s.state.to_string(), "steps": s.state.steps()}))
            .collect();
        let summary = json!({"workload": w.name, "spec": w.spec(), "cores": hw.num_cores, "target": hw.isa.name(), "sketches": list});
        writeln!(out, "{summary}")?;
    }
    Ok(())
}
