//! `tessel replay <records> [--workload W] [--json]`: re-measures the best record of each
//! workload in a records file and compares the new latency with the recorded one.
//!
//! Each record is measured with its own key's settings (threads, FMA, timing, verification)
//! unless options override them; bad lines of the file are reported on stderr and skipped.

use super::run::{finish, make_runner, CmdError, MeasureArgs};
use crate::error::DriverError;
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use tessel_ir::target::{CpuFeatures, Isa};
use tessel_measure::records::{best_per_workload, read_records};
use tessel_measure::{MeasureOptions, Record, Runner, Target};

/// Arguments of `tessel replay`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The records file (JSON lines).
    pub records: PathBuf,
    /// Only this workload (a registry name or a spec).
    #[arg(long)]
    pub workload: Option<String>,
    /// Measurement options (override the record's).
    #[command(flatten)]
    pub measure: MeasureArgs,
    /// Also print one machine-readable JSON object as the last line.
    #[arg(long)]
    pub json: bool,
}

/// Runs the subcommand.
pub fn run(args: &Args) -> Result<(), DriverError> {
    finish(run_inner(args))
}

/// The options a record was measured with, overridden by the command line.
fn options_of(r: &Record, args: &MeasureArgs) -> MeasureOptions {
    args.apply(MeasureOptions {
        codegen: r.key.codegen.clone(),
        timing: r.key.timing.clone(),
        verify: r.key.verify.clone(),
        ..MeasureOptions::default()
    })
}

/// Why a record of ISA level `isa` cannot be replayed on a CPU with `cpu`'s features (its
/// kernels would not run, and the code generator would silently measure the plain loops
/// instead), or `None` when it can.
fn refusal(isa: Isa, cpu: &CpuFeatures) -> Option<String> {
    cpu.check(isa).err().map(|e| {
        format!("refused: recorded for target `{isa}`, which this CPU cannot run ({e}); replay it with `--target` set to a level this CPU has, or on a CPU that has it")
    })
}

fn run_inner(args: &Args) -> Result<(), CmdError> {
    let log = read_records(&args.records)?;
    for p in &log.problems {
        eprintln!(
            "warning: {}:{}: skipped: {}",
            args.records.display(),
            p.line,
            p.reason
        );
    }
    let only = match &args.workload {
        Some(w) => Some(tessel_workloads::lookup(w)?.dag.workload_key()),
        None => None,
    };
    let best: Vec<&Record> = best_per_workload(&log.records)
        .into_iter()
        .filter(|r| only.as_ref().is_none_or(|k| *k == r.key.workload_key))
        .collect();
    if best.is_empty() {
        return Err(CmdError::Other(format!(
            "{} has no successful record{}",
            args.records.display(),
            args.workload
                .as_ref()
                .map_or(String::new(), |w| format!(" of {w}"))
        )));
    }
    let host = Target::host();
    let mut runners: Vec<(MeasureOptions, Box<dyn Runner>)> = Vec::new();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(
        out,
        "{:40}  {:>12}  {:>12}  {:>7}  status",
        "workload", "recorded ms", "now ms", "now/rec"
    )?;
    let mut rows = Vec::new();
    let mut failed = 0;
    for r in best {
        if r.key.target != host {
            eprintln!(
                "warning: {} was recorded on {} ({}), not this machine",
                r.key.workload, r.key.target.cpu, r.key.target.arch
            );
        }
        let opts = options_of(r, &args.measure);
        let recorded = r.cost().unwrap_or(f64::NAN);
        let refused = refusal(opts.codegen.isa, CpuFeatures::host())
            .or_else(|| opts.timing.weights.supported().err())
            .or_else(|| opts.timing.activations.supported().err());
        if let Some(why) = refused {
            failed += 1;
            writeln!(
                out,
                "{:40}  {:>12.4}  {:>12}  {:>7}  {why}",
                r.key.workload,
                recorded * 1e3,
                "-",
                "-"
            )?;
            rows.push(json!({
                "workload": r.key.workload,
                "key": r.key.workload_key,
                "recorded_ms": recorded * 1e3,
                "measured_ms": null,
                "cv": null,
                "ok": false,
                "error": {"class": "unsupported_target", "message": why},
            }));
            continue;
        }
        let k = match runners.iter().position(|(o, _)| *o == opts) {
            Some(k) => k,
            None => {
                runners.push((opts.clone(), make_runner(args.measure.isolation, opts)?));
                runners.len() - 1
            }
        };
        let result = runners[k]
            .1
            .measure(&[r.candidate()])
            .pop()
            .ok_or_else(|| CmdError::Other("the runner returned no result".into()))?;
        let now = result.median();
        let status = match (&result.error, now) {
            (Some(e), _) => {
                failed += 1;
                e.to_string()
            }
            (None, None) => {
                failed += 1;
                "not timed (timing.repeat is 0: built and verified only)".to_string()
            }
            (None, Some(_)) => "ok".to_string(),
        };
        writeln!(
            out,
            "{:40}  {:>12.4}  {:>12}  {:>7}  {status}",
            r.key.workload,
            recorded * 1e3,
            now.map_or("-".into(), |n| format!("{:.4}", n * 1e3)),
            now.map_or("-".into(), |n| format!("{:.2}", n / recorded)),
        )?;
        rows.push(json!({
            "workload": r.key.workload,
            "key": r.key.workload_key,
            "recorded_ms": recorded * 1e3,
            "measured_ms": now.map(|n| n * 1e3),
            "cv": result.timing.as_ref().map(|t| t.cv),
            "ok": result.error.is_none() && now.is_some(),
            "error": result.error.as_ref().map(|e| json!({"class": e.class.key(), "message": e.message})),
        }));
    }
    if args.json {
        let v: Value = json!({ "replay": rows, "skipped_lines": log.problems.len() });
        writeln!(out, "{v}")?;
    }
    if failed > 0 {
        return Err(CmdError::Other(format!(
            "{failed} replayed schedule(s) failed"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_of_an_isa_the_cpu_lacks_is_refused_naming_the_feature() {
        let avx2_only = CpuFeatures::from_names(["avx", "avx2", "fma"]);
        let why = refusal(Isa::Avx512, &avx2_only).expect("refused");
        assert!(why.contains("avx512f"), "{why}");
        assert!(why.contains("`avx512`"), "{why}");
        assert_eq!(refusal(Isa::Avx2, &avx2_only), None);
        assert_eq!(
            refusal(
                Isa::Generic,
                &CpuFeatures::from_names::<[&str; 0], &str>([])
            ),
            None
        );
        assert!(refusal(Isa::Avx2, &CpuFeatures::from_names(["avx2"]))
            .is_some_and(|w| w.contains("fma")));
    }
}
