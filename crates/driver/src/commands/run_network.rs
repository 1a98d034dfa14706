//! `tessel run-network <network> [--records F] [--threads N] [--target T] [--repeat K]
//! [--no-verify] [--json]`: build a whole network into one module and run inference.
//!
//! Builds the network with `tessel_runtime::Module::build` (every task from its best usable
//! record of `--records`, else a default schedule), prints the build report (fallbacks and
//! why, JIT and other build times, the planned activation memory against the sum of all
//! intermediates), checks one inference against the whole-network reference evaluator
//! (`--no-verify` skips it), then times `--repeat` inferences: median, p90 and min latency,
//! the records' estimate Σ weight × record latency beside the median, and a per-task profile
//! (measured time per inference against weight × record time).

use crate::error::DriverError;
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;
use tessel_ir::target::Target;
use tessel_runtime::{Module, ScheduleSource};
use tessel_workloads::networks::{self, Weights};

/// Arguments of `tessel run-network`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A built-in network: resnet50, mobilenet-v2, bert-base or tiny-cnn.
    pub network: String,
    /// Batch size.
    #[arg(long, default_value_t = 1)]
    pub batch: i64,
    /// Records file whose best programs the tasks run (none: default schedules).
    #[arg(long)]
    pub records: Option<PathBuf>,
    /// Threads (default: one per available core).
    #[arg(long, value_parser = super::numbers::positive)]
    pub threads: Option<usize>,
    /// Target: native, generic, avx2 or avx512.
    #[arg(long, default_value = "native")]
    pub target: String,
    /// Timed inferences.
    #[arg(long, default_value_t = 10, value_parser = super::numbers::positive)]
    pub repeat: usize,
    /// Seed of the random weights and input.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Skip the check against the reference evaluator (it takes seconds on large networks).
    #[arg(long)]
    pub no_verify: bool,
    /// The input, as raw little-endian `f32` in the layout the network holds it (NHWC for
    /// images; an imported NCHW model's input is transposed to NHWC), instead of a random one.
    /// A network with several inputs takes them concatenated in order.
    #[arg(long)]
    pub input_file: Option<PathBuf>,
    /// Write the outputs of the first inference as raw little-endian `f32`, in order.
    #[arg(long)]
    pub output_file: Option<PathBuf>,
    /// Input shapes of an `.onnx` model (`--input NAME:1x3x224x224`).
    #[command(flatten)]
    pub inputs: super::network_source::InputArgs,
    /// Also time every launch alone: N back-to-back calls of its kernel, hot, as a tuning
    /// measurement runs it; the profile gets an `alone ms` column beside the in-network time
    /// (the difference is what the network around a kernel costs it). Calls during which the
    /// kernel's threads lost more than 5 % of their time to other processes are retaken, as
    /// a measurement does, and counted (`alone_contended_calls` per task in `--json`).
    #[arg(long, value_name = "N", value_parser = super::numbers::positive)]
    pub alone: Option<usize>,
    /// Also print one machine-readable JSON object as the last line.
    #[arg(long)]
    pub json: bool,
}

fn failed(e: impl std::fmt::Display) -> DriverError {
    DriverError::Failed(e.to_string())
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs the subcommand, writing to stdout.
pub fn run(args: &Args) -> Result<(), DriverError> {
    let (net, model_weights) =
        super::network_source::load_with_weights(&args.network, args.batch, &args.inputs)?;
    let target = Target::parse_host(&args.target).map_err(|e| DriverError::Usage(e.to_string()))?;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let weights = model_weights.unwrap_or_else(|| Weights::random(&net, args.seed));
    let mut module =
        Module::build(&net, &weights, args.records.as_deref(), &target, threads).map_err(failed)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let r = module.report().clone();
    let t = &r.timings;
    writeln!(
        out,
        "{} (batch {}), target {}, {} threads",
        net.name(),
        net.batch(),
        target.isa,
        threads
    )?;
    writeln!(
        out,
        "built in {:.1} ms: JIT {:.1} ms, schedules {:.1} ms, graph {:.1} ms, records {:.1} ms, \
         weights {:.1} ms, plan {:.2} ms; {} kernels for {} tasks, {} launches",
        ms(t.total),
        ms(t.compile),
        ms(t.schedule),
        ms(t.graph),
        ms(t.records),
        ms(t.weights),
        ms(t.plan),
        r.kernels,
        r.tasks.len(),
        r.launches
    )?;
    for w in &r.warnings {
        writeln!(out, "warning: {w}")?;
    }
    let fallbacks: Vec<_> = r.fallbacks().collect();
    writeln!(
        out,
        "fallbacks: {} of {} tasks run a default schedule",
        fallbacks.len(),
        r.tasks.len()
    )?;
    for f in &fallbacks {
        if let ScheduleSource::Default { why, tensorized } = &f.source {
            let kind = if *tensorized { "tensorized" } else { "plain" };
            writeln!(out, "  {} ({kind}): {why}", f.name)?;
        }
    }
    let mib = |b: usize| b as f64 / (1 << 20) as f64;
    writeln!(
        out,
        "memory: activation arena {:.2} MiB planned peak, {:.2} MiB if every intermediate \
         had its own buffer ({:.0} %); weights {:.2} MiB",
        mib(r.arena_bytes),
        mib(r.intermediates_bytes),
        100.0 * r.arena_bytes as f64 / r.intermediates_bytes.max(1) as f64,
        mib(r.weight_bytes)
    )?;
    out.flush()?;

    let x = match &args.input_file {
        Some(path) => read_inputs(path, &net)?,
        None => networks::random_inputs(&net, args.seed.wrapping_add(1)),
    };
    let refs: Vec<&[f32]> = x.iter().map(|v| v.as_slice()).collect();
    let first = module.run(&refs).map_err(failed)?;
    if let Some(path) = &args.output_file {
        let bytes: Vec<u8> = first
            .iter()
            .flatten()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        std::fs::write(path, bytes).map_err(|e| failed(format!("{}: {e}", path.display())))?;
    }
    let max_err = if args.no_verify {
        writeln!(out, "verify: skipped")?;
        None
    } else {
        let want = networks::evaluate(&net, &weights, &x)?;
        let err = first
            .iter()
            .flatten()
            .zip(want.iter().flatten())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        let ok = tessel_ir::testing::check_close(&first, &want, 1e-3, 1e-2);
        match &ok {
            Ok(()) => writeln!(
                out,
                "verify: matches the reference evaluator (max |error| {err:.2e}; tolerance \
                 1e-3 + 1e-2·|want|)"
            )?,
            Err(e) => writeln!(out, "verify: MISMATCH with the reference evaluator: {e}")?,
        }
        ok.map_err(|e| DriverError::Failed(format!("the module's output is wrong: {e}")))?;
        Some(err)
    };

    module.set_profiling(true);
    module.reset_profile();
    let lat = time_inferences(&mut module, &refs, args.repeat)?;
    let (median, p90, min) = (lat.median, lat.p90, lat.min);
    let (estimate, with_records) = r.estimate();
    writeln!(
        out,
        "latency over {} runs: median {:.3} ms, p90 {:.3} ms, min {:.3} ms",
        args.repeat,
        median * 1e3,
        p90 * 1e3,
        min * 1e3
    )?;
    if with_records > 0 {
        writeln!(
            out,
            "estimate Σ weight × record latency: {:.3} ms over {} of {} tasks (median ÷ \
             estimate {:.2}{})",
            estimate * 1e3,
            with_records,
            r.tasks.len(),
            median / estimate,
            if with_records < r.tasks.len() {
                "; tasks on defaults are in the median only"
            } else {
                ""
            }
        )?;
    } else {
        writeln!(out, "estimate: none (no task runs a record)")?;
    }

    // Per task: measured time per inference (all occurrences), against weight × record.
    let (profile, runs) = module.profile();
    let mut per_task = vec![0.0f64; r.tasks.len()];
    for p in &profile {
        per_task[p.task] += p.total.as_secs_f64() / runs.max(1) as f64;
    }
    let total: f64 = per_task.iter().sum();
    let mut contended = (0usize, 0usize);
    let mut task_contended = vec![0usize; r.tasks.len()];
    let alone: Option<Vec<f64>> = match args.alone {
        Some(n) => {
            let mut outs: Vec<Vec<f32>> =
                module.outputs().iter().map(|o| vec![0.0; o.len]).collect();
            let mut o: Vec<&mut [f32]> = outs.iter_mut().map(|v| v.as_mut_slice()).collect();
            let timings = module
                .profile_alone_timings(&refs, &mut o, n)
                .map_err(failed)?;
            let mut a = vec![0.0f64; r.tasks.len()];
            for (p, m) in profile.iter().zip(timings) {
                a[p.task] += m.median.as_secs_f64();
                task_contended[p.task] += m.contended;
                contended.0 += m.contended;
                contended.1 += usize::from(m.timed == 0);
            }
            Some(a)
        }
        None => None,
    };
    writeln!(
        out,
        "{:>4} {:>6} {:>10} {:>10} {:>6} {:>9}{}  task",
        "#",
        "weight",
        "ms/infer",
        "est ms",
        "share",
        "source",
        if alone.is_some() { "   alone ms" } else { "" }
    )?;
    let mut rows = Vec::new();
    for (k, task) in r.tasks.iter().enumerate() {
        let est = task.record_seconds().map(|s| s * task.weight as f64);
        let source = match &task.source {
            ScheduleSource::Record { rank, .. } => {
                format!("record{}", if *rank > 0 { "*" } else { "" })
            }
            ScheduleSource::Default { .. } => "default".to_string(),
        };
        let alone_ms = alone.as_ref().map(|a| a[k] * 1e3);
        writeln!(
            out,
            "{:>4} {:>6} {:>10.3} {:>10} {:>5.1}% {:>9}{}  {}",
            k,
            task.weight,
            per_task[k] * 1e3,
            est.map_or("-".to_string(), |e| format!("{:.3}", e * 1e3)),
            100.0 * per_task[k] / total.max(1e-12),
            source,
            alone_ms.map_or(String::new(), |a| format!(" {a:>10.3}")),
            task.name
        )?;
        rows.push(json!({
            "task": task.name,
            "weight": task.weight,
            "measured_ms": per_task[k] * 1e3,
            "estimate_ms": est.map(|e| e * 1e3),
            "source": source,
            "micro_kernel_calls": task.micro_kernel_calls,
            "kernels": task.kernels,
            "compile_ms": task.compile_ms,
            "alone_ms": alone_ms,
            "alone_contended_calls": alone.as_ref().map(|_| task_contended[k]),
        }));
    }
    writeln!(
        out,
        "kernels {:.3} ms of the {:.3} ms mean inference; the rest is the runtime's own \
         (input/output copies, launch overhead)",
        total * 1e3,
        lat.mean * 1e3
    )?;
    if let Some(a) = &alone {
        writeln!(
            out,
            "alone: every launch's median of {} back-to-back calls (hot); Σ {:.3} ms per \
             inference; {} contended calls retaken ({} launches had no uncontended call)",
            args.alone.unwrap_or(0),
            a.iter().sum::<f64>() * 1e3,
            contended.0,
            contended.1
        )?;
    }
    if args.json {
        let v = json!({
            "network": net.name(),
            "batch": net.batch(),
            "target": target.isa.name(),
            "threads": threads,
            "build_ms": ms(t.total),
            "jit_ms": ms(t.compile),
            "kernels": r.kernels,
            "launches": r.launches,
            "fallbacks": fallbacks.iter().map(|f| f.name.clone()).collect::<Vec<_>>(),
            "warnings": r.warnings,
            "arena_bytes": r.arena_bytes,
            "intermediates_bytes": r.intermediates_bytes,
            "weight_bytes": r.weight_bytes,
            "max_abs_error": max_err,
            "repeat": args.repeat,
            "median_ms": median * 1e3,
            "p90_ms": p90 * 1e3,
            "min_ms": min * 1e3,
            "estimate_ms": (with_records > 0).then_some(estimate * 1e3),
            "tasks": rows,
        });
        writeln!(out, "{v}")?;
    }
    Ok(())
}

/// Latencies of timed inferences, in seconds.
#[derive(Clone, Copy, Debug)]
pub struct Latency {
    /// Median.
    pub median: f64,
    /// 90th percentile.
    pub p90: f64,
    /// Fastest.
    pub min: f64,
    /// Mean.
    pub mean: f64,
}

/// Times `repeat` inferences of `module` on `inputs` (into reused output buffers, so the
/// timed path allocates nothing).
pub fn time_inferences(
    module: &mut Module,
    inputs: &[&[f32]],
    repeat: usize,
) -> Result<Latency, DriverError> {
    let mut outs: Vec<Vec<f32>> = module.outputs().iter().map(|o| vec![0.0; o.len]).collect();
    let mut o: Vec<&mut [f32]> = outs.iter_mut().map(|v| v.as_mut_slice()).collect();
    let mut lat = Vec::with_capacity(repeat.max(1));
    for _ in 0..repeat.max(1) {
        let t0 = Instant::now();
        module.run_into(inputs, &mut o).map_err(failed)?;
        lat.push(t0.elapsed().as_secs_f64());
    }
    lat.sort_by(f64::total_cmp);
    let n = lat.len();
    Ok(Latency {
        median: lat[n / 2],
        p90: lat[((n as f64 * 0.9).ceil() as usize).clamp(1, n) - 1],
        min: lat[0],
        mean: lat.iter().sum::<f64>() / n as f64,
    })
}

/// The network's inputs read from `path`: raw little-endian `f32`, the inputs concatenated in
/// order, each in the shape the network holds it.
fn read_inputs(
    path: &std::path::Path,
    net: &networks::Network,
) -> Result<Vec<Vec<f32>>, DriverError> {
    let bytes = std::fs::read(path).map_err(|e| failed(format!("{}: {e}", path.display())))?;
    let lens: Vec<usize> = net
        .input_layers()
        .iter()
        .map(|&id| net.node(id).shape.iter().product::<i64>().max(0) as usize)
        .collect();
    let want: usize = lens.iter().sum::<usize>() * 4;
    if bytes.len() != want {
        return Err(DriverError::Usage(format!(
            "{}: {} bytes, the network's inputs take {want} ({} f32)",
            path.display(),
            bytes.len(),
            want / 4
        )));
    }
    let mut values = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    Ok(lens
        .iter()
        .map(|&n| values.by_ref().take(n).collect())
        .collect())
}
