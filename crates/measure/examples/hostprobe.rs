//! Do a kernel's slow episodes come from the host? Times one schedule and two fixed probes,
//! interleaved, for a while, and prints how their speeds move together.
//!
//! `cargo run --release -p tessel-measure --example hostprobe -- <workload> <schedule.json>
//! [--threads T] [--seconds S]`: every step times 5 calls of the kernel (median), then on `T`
//! threads at once an FMA probe (a fixed number of independent 512-bit FMAs where the CPU has
//! AVX-512F, else 256-bit: the vector unit's speed) and a memory probe (one vectorized pass over a
//! fixed 16 MiB per thread: L3 and memory bandwidth). It prints each step, then the correlation of
//! the kernel's time with each probe's. `docs/measurement.md` holds what it showed.

use std::sync::Arc;
use std::time::{Duration, Instant};
use tessel_measure::{CodegenSettings, ScheduleFile};

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut threads, mut seconds) = (tessel_measure::options::available_cores(), 20.0f64);
    let mut positional = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--threads" => threads = number(it.next(), "--threads")?,
            "--seconds" => seconds = number(it.next(), "--seconds")?,
            _ => positional.push(a.clone()),
        }
    }
    let [spec, schedule] = positional.as_slice() else {
        return Err(
            "usage: hostprobe <workload> <schedule.json> [--threads T] [--seconds S]".into(),
        );
    };
    let w = tessel_workloads::lookup(spec).map_err(|e| e.to_string())?;
    let file = ScheduleFile::load(std::path::Path::new(schedule)).map_err(|e| e.to_string())?;
    let dag = Arc::new(w.dag.clone());
    let codegen = CodegenSettings {
        threads,
        ..CodegenSettings::default()
    };
    let kernel = tessel_measure::builder::build_one(&codegen, &dag, &file.steps)
        .kernel
        .map_err(|e| e.to_string())?;
    let inputs = tessel_ir::eval::random_inputs(&dag, 1);
    let mut outputs: Vec<Vec<f32>> = dag
        .outputs()
        .iter()
        .map(|&o| vec![0.0; dag.op(o).num_elements().max(0) as usize])
        .collect();
    let ins: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
    let mut call = || -> Result<f64, String> {
        let mut outs: Vec<&mut [f32]> = outputs.iter_mut().map(Vec::as_mut_slice).collect();
        let t = Instant::now();
        kernel.run(&ins, &mut outs).map_err(|e| e.to_string())?;
        Ok(t.elapsed().as_secs_f64() * 1e3)
    };
    call()?;
    let streams: Vec<Vec<u32>> = (0..threads).map(|_| vec![1u32; 4 << 20]).collect();
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let mut rows: Vec<[f64; 3]> = Vec::new();
    println!("  t_s  kernel_ms  fma_us  mem_us");
    let start = Instant::now();
    while Instant::now() < end {
        let mut k: Vec<f64> = (0..5).map(|_| call()).collect::<Result<_, _>>()?;
        k.sort_by(f64::total_cmp);
        let (fma, mem) = probes(&streams);
        println!(
            "{:5.1}  {:9.4}  {fma:6.1}  {mem:6.1}",
            start.elapsed().as_secs_f64(),
            k[2]
        );
        rows.push([k[2], fma, mem]);
    }
    let col = |i: usize| rows.iter().map(|r| r[i]).collect::<Vec<_>>();
    println!(
        "correlation of the kernel's time with the FMA probe's {:.2}, with the memory probe's {:.2} ({} steps)",
        correlation(&col(0), &col(1)),
        correlation(&col(0), &col(2)),
        rows.len()
    );
    Ok(())
}

/// Both probes on every thread at once; the slowest thread's time of each, in µs.
fn probes(streams: &[Vec<u32>]) -> (f64, f64) {
    let times: Vec<(f64, f64)> = std::thread::scope(|s| {
        let handles: Vec<_> = streams
            .iter()
            .map(|data| {
                s.spawn(move || {
                    let t = Instant::now();
                    std::hint::black_box(fma_probe(200_000));
                    let fma = t.elapsed().as_secs_f64() * 1e6;
                    let t = Instant::now();
                    std::hint::black_box(data.iter().fold(0u32, |a, &x| a.wrapping_add(x)));
                    (fma, t.elapsed().as_secs_f64() * 1e6)
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let max = |f: fn(&(f64, f64)) -> f64| times.iter().map(f).fold(0.0, f64::max);
    (max(|t| t.0), max(|t| t.1))
}

/// `iterations` × 12 independent vector FMAs.
fn fma_probe(iterations: usize) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if tessel_ir::target::CpuFeatures::host().supports(tessel_ir::target::Isa::Avx512) {
            // SAFETY: the CPU has AVX-512F (checked above, by the one CPU-feature probe).
            return unsafe { fma512(iterations) };
        }
    }
    let mut acc = [1.0f32; 96];
    for _ in 0..iterations {
        for a in acc.iter_mut() {
            *a = a.mul_add(0.999_999, 1e-7);
        }
    }
    acc.iter().sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma512(iterations: usize) -> f32 {
    use std::arch::x86_64::*;
    let m = _mm512_set1_ps(0.999_999);
    let c = _mm512_set1_ps(1e-7);
    let mut acc = [_mm512_set1_ps(1.0); 12];
    for _ in 0..iterations {
        for a in acc.iter_mut() {
            *a = _mm512_fmadd_ps(*a, m, c);
        }
    }
    let mut sum = _mm512_setzero_ps();
    for a in acc {
        sum = _mm512_add_ps(sum, a);
    }
    _mm512_reduce_add_ps(sum)
}

fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

fn number<T: std::str::FromStr>(arg: Option<&String>, flag: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    arg.ok_or(format!("{flag} needs a value"))?
        .parse()
        .map_err(|e| format!("{flag}: {e}"))
}
