//! `tessel tasks <network> [--batch N] [--dag] [--json]`: the tasks of a whole network.
//!
//! Partitions a built-in network (`resnet50`, `mobilenet-v2`, `bert-base`; see
//! `docs/networks.md`) into fused subgraphs and lists the distinct ones: index, weight
//! (occurrences), GFLOP of one run and weighted, the workload key, and the task name (which
//! spells out the shapes and the fused epilogues). `--dag` also prints each task's DAG;
//! `--json` adds one JSON object as the last line.

use crate::error::DriverError;
use serde_json::{json, Value};
use std::io::Write;
use tessel_workloads::networks::{self, Task};

/// Arguments of `tessel tasks`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A built-in network (`resnet50`, `mobilenet-v2`, `bert-base`) or an `.onnx` file.
    pub network: String,
    /// Input shapes of an `.onnx` model.
    #[command(flatten)]
    pub input: super::network_source::InputArgs,
    /// Batch size (default 1).
    #[arg(long, default_value_t = 1)]
    pub batch: i64,
    /// Also print the DAG of every task.
    #[arg(long)]
    pub dag: bool,
    /// Also print one machine-readable JSON object as the last line.
    #[arg(long)]
    pub json: bool,
}

/// The JSON summary of one task.
fn summary(index: usize, t: &Task) -> Value {
    json!({
        "index": index,
        "name": t.name,
        "spec": t.spec,
        "kind": t.kind,
        "anchor": t.anchor_kind,
        "weight": t.weight,
        "flop": t.flop(),
        "key": t.workload_key(),
        "occurrences": t.occurrences,
    })
}

/// Runs the subcommand, writing to stdout.
pub fn run(args: &Args) -> Result<(), DriverError> {
    let net = super::network_source::load(&args.network, args.batch, &args.input)?;
    let tasks = networks::extract_tasks(&net)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let total: u64 = tasks.iter().map(|t| t.weight as u64 * t.flop()).sum();
    let occurrences: usize = tasks.iter().map(|t| t.weight).sum();
    writeln!(
        out,
        "{} (batch {}): {} tasks, {} subgraphs, {:.3} GFLOP",
        net.name(),
        net.batch(),
        tasks.len(),
        occurrences,
        total as f64 / 1e9
    )?;
    writeln!(
        out,
        "{:>3}  {:>6}  {:>9}  {:>9}  {:16}  name",
        "#", "weight", "GFLOP", "x weight", "key"
    )?;
    for (k, t) in tasks.iter().enumerate() {
        writeln!(
            out,
            "{:>3}  {:>6}  {:>9.4}  {:>9.4}  {:16}  {}",
            k,
            t.weight,
            t.flop() as f64 / 1e9,
            (t.weight as u64 * t.flop()) as f64 / 1e9,
            t.workload_key(),
            t.name
        )?;
        if args.dag {
            for line in t.dag.to_string().lines() {
                writeln!(out, "       {line}")?;
            }
        }
    }
    if args.json {
        let list: Vec<Value> = tasks
            .iter()
            .enumerate()
            .map(|(k, t)| summary(k, t))
            .collect();
        writeln!(
            out,
            "{}",
            json!({
                "network": net.name(),
                "batch": net.batch(),
                "total_flop": total,
                "subgraphs": occurrences,
                "tasks": list,
            })
        )?;
    }
    Ok(())
}
