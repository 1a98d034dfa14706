//! Does where a kernel's buffers sit in memory change its measured time?
//!
//! `cargo run --release -p tessel-measure --example placement -- <workload> <schedule.json>
//! [--threads T] [--readings N]` compiles one schedule once and takes `N` readings of it
//! (each one the harness's default timing: a warm-up call, 5 repeats of ≥ 5 ms, the median),
//! in three ways, interleaved reading by reading so that host drift hits them alike:
//!
//! - `same`: every reading on the same input and output buffers (what a search worker does
//!   for every candidate of a workload, and `tessel run` for its one candidate);
//! - `fresh`: every reading on newly allocated copies of the inputs and new outputs (new
//!   physical pages, so new cache-set placement of every 4 KiB page; the buffers are kept
//!   until the end so that the allocator cannot hand the same pages out again);
//! - `fresh+offset`: as `fresh`, each buffer starting at a random multiple of 64 bytes
//!   within a page.
//!
//! It prints each way's readings (GFLOP/s) with their median and spread. `docs/measurement.md`
//! holds what it showed.

use std::sync::Arc;
use std::time::{Duration, Instant};
use tessel_measure::options::TimingSettings;
use tessel_measure::timing::{time_calls, CacheFlusher};
use tessel_measure::{CodegenSettings, MeasureError, ScheduleFile};

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut threads, mut readings) = (tessel_measure::options::available_cores(), 9usize);
    let mut positional = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--threads" => threads = parse(it.next(), "--threads")?,
            "--readings" => readings = parse(it.next(), "--readings")?,
            _ => positional.push(a.clone()),
        }
    }
    let [spec, schedule] = positional.as_slice() else {
        return Err(
            "usage: placement <workload> <schedule.json> [--threads T] [--readings N]".into(),
        );
    };
    let w = tessel_workloads::lookup(spec).map_err(|e| e.to_string())?;
    let file = ScheduleFile::load(std::path::Path::new(schedule)).map_err(|e| e.to_string())?;
    let dag = Arc::new(w.dag.clone());
    let codegen = CodegenSettings {
        threads,
        ..CodegenSettings::default()
    };
    let built = tessel_measure::builder::build_one(&codegen, &dag, &file.steps);
    let kernel = built.kernel.map_err(|e| e.to_string())?;
    let inputs = tessel_ir::eval::random_inputs(&dag, 1);
    let out_lens: Vec<usize> = dag
        .outputs()
        .iter()
        .map(|&o| dag.op(o).num_elements().max(0) as usize)
        .collect();
    let flop = w.flop() as f64;
    let settings = TimingSettings {
        retakes: 0,
        ..TimingSettings::default()
    };
    let mut flusher = CacheFlusher::new();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    // One reading of the kernel on `ins`/`outs`, in GFLOP/s.
    let mut delays: Vec<f64> = Vec::new();
    let mut reading = |ins: &[&[f32]], outs: &mut [&mut [f32]]| -> Result<f64, String> {
        let d0 = tessel_codegen::contention::snapshot(threads);
        let start = Instant::now();
        let t = Instant::now();
        kernel.run(ins, outs).map_err(|e| e.to_string())?;
        let first = t.elapsed();
        let (timing, _) = time_calls(&settings, threads, Some(first), &mut flusher, || {
            kernel.run(ins, outs).map_err(|e| {
                MeasureError::new(tessel_measure::ErrorClass::RuntimeCrash, e.to_string())
            })
        })
        .map_err(|e| e.to_string())?;
        let wall = start.elapsed().as_secs_f64();
        let after = tessel_codegen::contention::snapshot(threads);
        if let Some(c) = d0.contention_until(&after, threads, Duration::from_secs_f64(wall)) {
            delays.push(100.0 * c);
        }
        let t = timing.ok_or("no timing")?;
        Ok(flop / t.median / 1e9)
    };
    let mut same_outs: Vec<Vec<f32>> = out_lens.iter().map(|&n| vec![0.0; n]).collect();
    let mut results: [Vec<f64>; 3] = Default::default();
    type Buffers = Vec<(Vec<f32>, usize)>;
    let mut kept: Vec<(Buffers, Buffers)> = Vec::new();
    for _ in 0..readings {
        // same
        {
            let ins: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
            let mut outs: Vec<&mut [f32]> = same_outs.iter_mut().map(Vec::as_mut_slice).collect();
            results[0].push(reading(&ins, &mut outs)?);
        }
        // fresh, then fresh+offset
        for (way, offset) in [(1usize, false), (2, true)] {
            let mut pad = |_len: usize| -> usize {
                if offset {
                    (next() % 64) as usize * 16
                } else {
                    0
                }
            };
            let in_bufs: Vec<(Vec<f32>, usize)> = inputs
                .iter()
                .map(|x| {
                    let p = pad(x.len());
                    let mut v = vec![0.0f32; x.len() + p];
                    v[p..].copy_from_slice(x);
                    (v, p)
                })
                .collect();
            let mut out_bufs: Vec<(Vec<f32>, usize)> = out_lens
                .iter()
                .map(|&n| {
                    let p = pad(n);
                    (vec![0.0f32; n + p], p)
                })
                .collect();
            let ins: Vec<&[f32]> = in_bufs.iter().map(|(v, p)| &v[*p..]).collect();
            let mut outs: Vec<&mut [f32]> =
                out_bufs.iter_mut().map(|(v, p)| &mut v[*p..]).collect();
            results[way].push(reading(&ins, &mut outs)?);
            drop((ins, outs));
            // Kept alive to the end: a freed buffer's pages would be handed out again.
            kept.push((in_bufs, out_bufs));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    println!(
        "contention of each reading, % (same, fresh, fresh+offset in turn): [{}]",
        delays
            .iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "{} ({}), {} threads, {} readings per way (GFLOP/s)",
        w.name,
        w.spec(),
        threads,
        readings
    );
    for (name, r) in ["same", "fresh", "fresh+offset"].iter().zip(results.iter()) {
        let mut s = r.clone();
        s.sort_by(f64::total_cmp);
        let med = tessel_ir::stats::median(&s).unwrap_or(f64::NAN);
        println!(
            "{name:13} median {med:7.2}  min {:7.2}  max {:7.2}  (max-min)/median {:5.1}%  [{}]",
            s[0],
            s[s.len() - 1],
            100.0 * (s[s.len() - 1] - s[0]) / med,
            r.iter()
                .map(|x| format!("{x:.1}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    Ok(())
}

fn parse<T: std::str::FromStr>(v: Option<&String>, flag: &str) -> Result<T, String> {
    v.and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{flag} needs a positive number"))
}
