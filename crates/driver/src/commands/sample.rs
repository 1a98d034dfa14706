//! `tessel sample <workload> --count N`: random search — sample N distinct complete
//! schedules from the sketches (uniform sketch choice, Ansor's annotation rules), measure
//! them with the harness, and report the best and median GFLOP/s, the errors by class and
//! the compile time. This is the floor the real search must beat.

use super::search_options::{job_options, resolve_threads, Isolation, TargetArgs};
use crate::error::DriverError;
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tessel_ir::stats::median;
use tessel_measure::{Candidate, Record, RecordWriter, Target};
use tessel_search::harness::RECORD_CHUNK;
use tessel_search::job::TuneJob;

/// Arguments of `tessel sample`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A registry name or an `OP:key=value,...` spec.
    pub spec: String,
    /// Number of schedules.
    #[arg(long, default_value_t = 64, value_parser = super::numbers::positive, allow_negative_numbers = true)]
    pub count: usize,
    /// Seed of the sampling.
    #[arg(long, default_value_t = 0, value_parser = super::numbers::seed, allow_negative_numbers = true)]
    pub seed: u64,
    /// Threads the kernels run on (default: every core).
    #[arg(long, value_parser = super::numbers::positive, allow_negative_numbers = true)]
    pub threads: Option<usize>,
    /// Where candidates run.
    #[arg(long, value_enum, default_value_t = Isolation::Worker)]
    pub isolation: Isolation,
    /// Measure on the farm: `nats://HOST:PORT[?cpu=NAME&wait=SECONDS]` (docs/farm.md).
    #[arg(long)]
    pub measure: Option<String>,
    /// The target machine (`--target`, `--no-micro-kernels`).
    #[command(flatten)]
    pub target: TargetArgs,
    /// Append the measurements to this records file.
    #[arg(long)]
    pub records: Option<PathBuf>,
    /// Also print one machine-readable JSON object as the last line.
    #[arg(long)]
    pub json: bool,
}

/// Runs the subcommand.
pub fn run(args: &Args) -> Result<(), DriverError> {
    let w = tessel_workloads::lookup(&args.spec)?;
    let target = args.target.resolve(resolve_threads(args.threads));
    let job = TuneJob::new(job_options(target, args.isolation, args.measure.as_deref()));
    let problem = job
        .problem(Arc::new(w.dag.clone()))
        .map_err(DriverError::failed)?;
    let sketches = &problem.sketches;
    let start = Instant::now();
    let states = job.sample(&problem, args.count, args.seed);
    let sample_seconds = start.elapsed().as_secs_f64();
    let candidates: Vec<Candidate> = states
        .iter()
        .map(|s| Candidate::from_state(&w, s))
        .collect();
    let options = job.measure_options();
    let mut runner = job.runner().map_err(DriverError::failed)?;
    // Records are appended chunk by chunk as the candidates are measured (a kill loses at
    // most the chunk in flight); a write that fails stops the command (exit code 3).
    let mut writer = args
        .records
        .as_ref()
        .map(RecordWriter::open)
        .transpose()
        .map_err(DriverError::failed)?;
    let t = Instant::now();
    let mut results = Vec::with_capacity(candidates.len());
    for chunk in candidates.chunks(RECORD_CHUNK) {
        let part = runner.measure(chunk);
        if let (Some(w), Some(path)) = (writer.as_mut(), &args.records) {
            let records = Record::batch(chunk, &part, &options, &Target::host());
            w.append(&records).map_err(|e| {
                DriverError::RecordsLost(format!(
                    "records could not be written to {}: {e}; the sampling stopped ({} \
                     measurement(s) of this run are not in the file)",
                    path.display(),
                    records.len()
                ))
            })?;
        }
        results.extend(part);
    }
    let measure_seconds = t.elapsed().as_secs_f64();
    let flop = w.flop() as f64;
    let gflops: Vec<f64> = results
        .iter()
        .filter_map(|r| r.median())
        .map(|s| flop / s / 1e9)
        .collect();
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    for r in &results {
        if let Some(c) = r.error_class() {
            *errors.entry(c.name().to_string()).or_default() += 1;
        }
    }
    let compile_ms = median(
        &results
            .iter()
            .map(|r| r.phases.compile_ms)
            .collect::<Vec<_>>(),
    );
    let best = gflops
        .iter()
        .copied()
        .fold(None, |b: Option<f64>, g| Some(b.map_or(g, |b| b.max(g))));
    let med = median(&gflops);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(
        out,
        "workload        {} ({}), {} sketches",
        w.name,
        w.spec(),
        sketches.len()
    )?;
    writeln!(
        out,
        "sampled         {} distinct schedules in {:.3} s",
        states.len(),
        sample_seconds
    )?;
    writeln!(
        out,
        "measured        {} ok, {} failed in {measure_seconds:.1} s",
        gflops.len(),
        results.len() - gflops.len()
    )?;
    match (best, med) {
        (Some(b), Some(m)) => writeln!(out, "GFLOP/s         best {b:.2}, median {m:.2}")?,
        _ => writeln!(out, "GFLOP/s         none ran correctly")?,
    }
    if let Some(c) = compile_ms {
        writeln!(out, "compile         median {c:.2} ms")?;
    }
    for (class, n) in &errors {
        writeln!(out, "error           {class}: {n}")?;
    }
    if args.json {
        let summary = json!({
            "workload": w.name, "spec": w.spec(), "sketches": sketches.len(),
            "sampled": states.len(), "ok": gflops.len(), "errors": errors,
            "best_gflops": best, "median_gflops": med, "compile_ms_median": compile_ms,
            "sample_seconds": sample_seconds, "measure_seconds": measure_seconds,
        });
        writeln!(out, "{summary}")?;
    }
    Ok(())
}
