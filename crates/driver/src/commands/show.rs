//! `tessel show <records> (--workload W | --network N) [--batch B] [--disasm]`: the best
//! program of a workload, or of every task of a network, as text.
//!
//! For each program: the record it comes from (median time, threads, ISA, layout rewrite),
//! its step log (one JSON step per line), the schedule state, the loop nest that lowering
//! the steps gives, the micro-kernel calls the code generator makes of it, and with
//! `--disasm` the generated machine code. The network form lists every task, saying so
//! when a task has no successful record.

use crate::error::DriverError;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use tessel_ir::{lower, State};
use tessel_measure::records::{best_n, read_records};
use tessel_measure::Record;
use tessel_workloads::networks;

/// Arguments of `tessel show`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The records file.
    pub records: PathBuf,
    /// A workload (name or `OP:key=value,...` spec).
    #[arg(long, conflicts_with = "network", required_unless_present = "network")]
    pub workload: Option<String>,
    /// A built-in network: show the best program of each of its tasks.
    #[arg(long)]
    pub network: Option<String>,
    /// Batch size of the network.
    #[arg(long, default_value_t = 1)]
    pub batch: i64,
    /// Also print the generated machine code.
    #[arg(long)]
    pub disasm: bool,
}

fn failed(e: impl std::fmt::Display) -> DriverError {
    DriverError::Failed(e.to_string())
}

/// Runs the subcommand, writing to stdout.
pub fn run(args: &Args) -> Result<(), DriverError> {
    let log = read_records(&args.records).map_err(failed)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for p in &log.problems {
        writeln!(out, "warning: line {} skipped: {}", p.line, p.reason)?;
    }
    let mut items: Vec<(String, Arc<tessel_ir::ComputeDag>)> = Vec::new();
    if let Some(w) = &args.workload {
        let w = tessel_workloads::lookup(w)?;
        items.push((w.spec(), Arc::new(w.dag)));
    } else if let Some(n) = &args.network {
        let net = networks::lookup(n, args.batch)?;
        for (k, t) in networks::extract_tasks(&net)?.into_iter().enumerate() {
            items.push((format!("task {k}: {}", t.name), Arc::new(t.dag)));
        }
    }
    for (title, dag) in items {
        show(&mut out, &log.records, &title, &dag, args.disasm)?;
    }
    Ok(())
}

/// Prints the best record of `dag` in `records`.
fn show(
    out: &mut impl Write,
    records: &[Record],
    title: &str,
    dag: &Arc<tessel_ir::ComputeDag>,
    disasm: bool,
) -> Result<(), DriverError> {
    let key = dag.workload_key();
    let ours: Vec<Record> = records
        .iter()
        .filter(|r| r.key.workload_key == key)
        .cloned()
        .collect();
    writeln!(out, "== {title} (key {key})")?;
    let Some(best) = best_n(&ours, 1).into_iter().next() else {
        writeln!(out, "no successful record ({} records of it)", ours.len())?;
        return Ok(());
    };
    let c = &best.key.codegen;
    writeln!(
        out,
        "best of {} records: median {:.4} ms{}, {} threads, target {}, layout rewrite {}, \
         codegen revision {}",
        ours.len(),
        best.cost().unwrap_or(f64::NAN) * 1e3,
        if best.confirmed { " (confirmed)" } else { "" },
        c.threads,
        c.isa,
        c.layout_rewrite,
        c.revision
    )?;
    let state = State::replay(dag.clone(), &best.steps).map_err(failed)?;
    writeln!(out, "-- steps")?;
    writeln!(out, "{}", state.steps_text().trim_end())?;
    writeln!(out, "-- state")?;
    writeln!(out, "{}", state.to_string().trim_end())?;
    let nest = lower::lower(&state).map_err(failed)?;
    writeln!(out, "-- loop nest")?;
    writeln!(out, "{}", nest.to_string().trim_end())?;
    let opts = tessel_codegen::CompileOptions {
        disasm,
        ..c.compile_options()
    };
    let kernel = tessel_codegen::compile(&nest, &opts).map_err(failed)?;
    writeln!(out, "-- micro-kernel calls")?;
    if kernel.micro_kernel_calls().is_empty() {
        writeln!(out, "(none)")?;
    }
    for m in kernel.micro_kernel_calls() {
        writeln!(
            out,
            "loop {}: {:?} {}x{} (blocks {:?}), k {} x {}, B {}{}{}{}",
            m.loop_name,
            m.kind,
            m.mr,
            m.nr,
            m.blocks,
            m.k,
            m.k2,
            match (m.packed_b, m.packs_per_call) {
                (false, _) => "read in place",
                (true, false) => "packed once",
                (true, true) => "packed per call",
            },
            if m.zero_start { ", zero start" } else { "" },
            match (m.reads_through, m.guarded_edges) {
                (true, true) => ", A read through (edges guarded, no copy)",
                (true, false) => ", A read through",
                _ => "",
            },
            if m.fused_write_back {
                ", write-back fused"
            } else {
                ""
            }
        )?;
    }
    if !kernel.fused_write_backs().is_empty() {
        writeln!(
            out,
            "-- fused write-backs (at the target's width: in the kernel, or one routine call)"
        )?;
        for w in kernel.fused_write_backs() {
            writeln!(out, "{w}")?;
        }
    }
    if disasm {
        writeln!(out, "-- machine code")?;
        writeln!(out, "{}", kernel.disasm().unwrap_or("(none)").trim_end())?;
    }
    Ok(())
}
