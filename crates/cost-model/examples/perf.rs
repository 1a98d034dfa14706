//! Performance of the cost model on this machine (single thread):
//! features + prediction throughput, and retraining time on 5,000 programs.
//!
//! ```text
//! cargo run --release -p tessel-cost-model --example perf [-- --n 5000]
//! ```
//! Programs are random schedules of gmm-3 and c2d-3 (half each), lowered beforehand (lowering
//! is not part of the timed work). Labels for the retraining time are synthetic (a feature
//! signal plus noise) so that trees grow fully; accuracy is measured by `tessel cost-model eval`.
use std::sync::Arc;
use std::time::Instant;
use tessel_cost_model::{CostModel, FeatureExtractor, Formulation, GbdtModel, GbdtModelParams};
use tessel_sketch::{generate_sketches, sample_population, HardwareParams};

/// Nanoseconds this thread has been on a CPU (Linux `schedstat`), so that figures do not
/// depend on how busy the shared machine is; 0 where unavailable.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|x| x.parse().ok()))
        .unwrap_or(0)
}

/// (wall seconds, on-CPU seconds) of `f`.
fn timed<T>(f: impl FnOnce() -> T) -> (T, f64, f64) {
    let (t, c) = (Instant::now(), cpu_ns());
    let v = f();
    (v, t.elapsed().as_secs_f64(), (cpu_ns() - c) as f64 * 1e-9)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args
        .iter()
        .position(|a| a == "--n")
        .and_then(|i| args.get(i + 1))
        .map_or(Ok(5000), |s| s.parse())?;
    let hw = HardwareParams::with_cores(2);
    let mut nests = Vec::new();
    let t = Instant::now();
    for (k, spec) in ["gmm-3", "c2d-3"].iter().enumerate() {
        let w = tessel_workloads::lookup(spec)?;
        let sketches = generate_sketches(&Arc::new(w.dag.clone()), &hw)?;
        let mut rng = tessel_ir::rng::seeded(100 + k as u64);
        for s in sample_population(&sketches, n / 2, &hw, &mut rng) {
            nests.push(tessel_ir::lower::lower(&s)?);
        }
    }
    println!(
        "{} programs sampled and lowered in {:.2} s",
        nests.len(),
        t.elapsed().as_secs_f64()
    );

    let mut fx = FeatureExtractor::new();
    let (programs, fw, fs) = timed(|| {
        nests
            .iter()
            .map(|nest| fx.extract(nest))
            .collect::<Vec<_>>()
    });
    let rows: usize = programs.iter().map(|p| p.n_stores()).sum();
    println!(
        "features: {:.1} µs/program on CPU ({:.1} wall), {:.0} programs/s/core ({} store vectors)",
        fs * 1e6 / nests.len() as f64,
        fw * 1e6 / nests.len() as f64,
        nests.len() as f64 / fs,
        rows
    );
    // Synthetic labels: a smooth function of a few features plus noise, normalized to (0, 1].
    let names = tessel_cost_model::feature_names();
    let col = |n: &str| names.iter().position(|x| x == n).unwrap_or(0);
    let (a, b, c) = (
        col("B0.unique_lines"),
        col("vec_prod"),
        col("arith_intensity_curve_9"),
    );
    let mut seed = 7u64;
    let raw: Vec<f32> = programs
        .iter()
        .map(|p| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let noise = (seed >> 40) as f32 / (1u64 << 24) as f32;
            let s: f32 = p.rows().map(|r| 0.1 * r[b] + r[c] - 0.05 * r[a]).sum();
            (s + 0.3 * noise).exp()
        })
        .collect();
    let max = raw.iter().copied().fold(f32::MIN, f32::max);
    let labels: Vec<f32> = raw.iter().map(|&v| v / max).collect();

    let configs = [
        GbdtModelParams {
            formulation: Formulation::PackSum,
            ..GbdtModelParams::squared_error()
        },
        GbdtModelParams::squared_error(),
        GbdtModelParams::rank(),
    ];
    for params in configs {
        let mut m = GbdtModel::new(GbdtModelParams {
            num_warmup_sample: 0,
            ..params
        });
        let ((), train_wall, train) = timed(|| m.update(&programs, &labels));
        let booster = m.booster().ok_or("no trees")?;
        let trees = booster.trees.len();
        let mut scratch = Vec::new();
        let reps = 3;
        let (sink, _, both) = timed(|| {
            let mut sink = 0.0f32;
            for _ in 0..reps {
                for nest in &nests {
                    let p = fx.extract(nest);
                    sink += m.predict_one(booster, &p, &mut scratch);
                }
            }
            sink
        });
        let both = both / reps as f64;
        let (pred, _, ps) = timed(|| m.predict(&programs));
        println!(
            "{}: retrain on {} programs {:.3} s on CPU ({:.3} wall, {} trees); predict {:.1} µs/program; features + prediction {:.0} programs/s/core (checksum {:.1})",
            m.name(),
            programs.len(),
            train,
            train_wall,
            trees,
            ps * 1e6 / pred.len() as f64,
            nests.len() as f64 / both,
            sink
        );
    }
    Ok(())
}
