//! `tessel workloads [SPEC] [--batch N] [--json]`: the workload registry.
//!
//! Without `SPEC`, a table of every named workload (name, op, shape parameters, GFLOP);
//! with `SPEC` (a registry name or an `OP:key=value,...` spec, see `docs/workloads.md`),
//! that workload's name, canonical spec, workload key, FLOPs and DAG. `--json` adds one
//! JSON object as the last line of the output.

use crate::error::DriverError;
use serde_json::{json, Map, Value};
use std::io::Write;
use tessel_workloads::Workload;

/// Arguments of `tessel workloads`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A registry name (`c2d-1`, `gmm-3`, `resnet50-conv-7`, ...) or a spec such as
    /// `gmm:b=1,n=512,m=512,k=512`; without it, list every named workload.
    pub spec: Option<String>,
    /// Batch size: overrides the batch key (`n`, or `b` for gmm/nrm/tbg).
    #[arg(long)]
    pub batch: Option<i64>,
    /// Also print one machine-readable JSON object as the last line.
    #[arg(long)]
    pub json: bool,
}

/// Runs the subcommand, writing to stdout.
pub fn run(args: &Args) -> Result<(), DriverError> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match &args.spec {
        None => list(&mut out, args),
        Some(spec) => show(&mut out, spec, args),
    }
}

/// The JSON summary of one workload.
fn summary(w: &Workload) -> Map<String, Value> {
    let params: Map<String, Value> = w
        .params
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let mut m = Map::new();
    m.insert("name".into(), json!(w.name));
    m.insert("op".into(), json!(w.op));
    m.insert("spec".into(), json!(w.spec()));
    m.insert("key".into(), json!(w.dag.workload_key()));
    m.insert("flop".into(), json!(w.flop()));
    m.insert("gflop".into(), json!(gflop(w)));
    m.insert("params".into(), Value::Object(params));
    m
}

fn gflop(w: &Workload) -> f64 {
    w.flop() as f64 / 1e9
}

/// `key=value` pairs of the shape, space-separated.
fn shape_text(w: &Workload) -> String {
    w.params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn list(out: &mut impl Write, args: &Args) -> Result<(), DriverError> {
    let all = tessel_workloads::registry_with_batch(args.batch)?;
    let name_w = all.iter().map(|w| w.name.len()).max().unwrap_or(4).max(4);
    let op_w = all.iter().map(|w| w.op.len()).max().unwrap_or(2).max(2);
    let shape_w = all
        .iter()
        .map(|w| shape_text(w).len())
        .max()
        .unwrap_or(5)
        .max(5);
    writeln!(
        out,
        "{:name_w$}  {:op_w$}  {:shape_w$}  {:>10}",
        "name", "op", "shape", "GFLOP"
    )?;
    for w in &all {
        writeln!(
            out,
            "{:name_w$}  {:op_w$}  {:shape_w$}  {:>10.3}",
            w.name,
            w.op,
            shape_text(w),
            gflop(w)
        )?;
    }
    if args.json {
        let list: Vec<Value> = all.iter().map(|w| Value::Object(summary(w))).collect();
        writeln!(out, "{}", json!({ "workloads": list }))?;
    }
    Ok(())
}

fn show(out: &mut impl Write, spec: &str, args: &Args) -> Result<(), DriverError> {
    let w = match args.batch {
        Some(b) => tessel_workloads::lookup_with_batch(spec, b)?,
        None => tessel_workloads::lookup(spec)?,
    };
    writeln!(out, "name:  {}", w.name)?;
    writeln!(out, "op:    {}", w.op)?;
    writeln!(out, "spec:  {}", w.spec())?;
    writeln!(out, "key:   {}", w.dag.workload_key())?;
    writeln!(out, "FLOP:  {} ({:.3} GFLOP)", w.flop(), gflop(&w))?;
    writeln!(out, "DAG:")?;
    for line in w.dag.to_string().lines() {
        writeln!(out, "  {line}")?;
    }
    if args.json {
        let mut m = summary(&w);
        m.insert("dag".into(), json!(w.dag.to_string()));
        writeln!(out, "{}", json!({ "workload": m }))?;
    }
    Ok(())
}
