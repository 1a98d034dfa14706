//! Produces cost-model training data without the driver: samples random complete schedules
//! of a workload (Ansor's sketches + random annotation), measures them in this process with
//! `tessel-measure` (compile with codegen, verify, time: median of a few repeats) and
//! appends them as records to a file that `tessel cost-model eval --records` reads.
//!
//! ```text
//! cargo run --release -p tessel-cost-model --example gen_records -- \
//!     --workload gmm-3 --n 2000 --seed 1 --out /tmp/gmm-3.jsonl [--threads 1] [--repeat 3]
//! ```
use std::sync::Arc;
use std::time::Instant;
use tessel_measure::{
    records::Record, Candidate, InProcessRunner, MeasureOptions, RecordWriter, Runner, Target,
};
use tessel_sketch::{generate_sketches, sample_population, HardwareParams};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let workload = arg(&args, "--workload").ok_or("--workload SPEC is required")?;
    let out = arg(&args, "--out").ok_or("--out FILE is required")?;
    let n: usize = arg(&args, "--n").map_or(Ok(200), |s| s.parse())?;
    let seed: u64 = arg(&args, "--seed").map_or(Ok(1), |s| s.parse())?;
    let threads: usize = arg(&args, "--threads").map_or(Ok(1), |s| s.parse())?;
    let repeat: u32 = arg(&args, "--repeat").map_or(Ok(3), |s| s.parse())?;
    let batch: usize = arg(&args, "--batch").map_or(Ok(32), |s| s.parse())?;

    let w = tessel_workloads::lookup(&workload)?;
    let hw = HardwareParams::with_cores(threads as i64);
    let sketches = generate_sketches(&Arc::new(w.dag.clone()), &hw)?;
    let mut rng = tessel_ir::rng::seeded(seed);
    let states = sample_population(&sketches, n, &hw, &mut rng);
    eprintln!(
        "{}: {} sketches, {} distinct random schedules",
        w.name,
        sketches.len(),
        states.len()
    );

    let mut options = MeasureOptions::with_threads(threads);
    options.builder_threads = 1;
    options.timing.warmup = 0;
    options.timing.repeat = repeat;
    options.timing.min_repeat_ms = 1.0;
    let mut runner = InProcessRunner::new(options.clone())?;
    let target = Target::host();
    let mut writer = RecordWriter::open(&out)?;
    let start = Instant::now();
    let (mut ok, mut failed) = (0, 0);
    for (b, chunk) in states.chunks(batch.max(1)).enumerate() {
        let cands: Vec<Candidate> = chunk.iter().map(|s| Candidate::from_state(&w, s)).collect();
        let results = runner.measure(&cands);
        for r in &results {
            if r.is_ok() {
                ok += 1
            } else {
                failed += 1
            }
        }
        writer.append(&Record::batch(&cands, &results, &options, &target))?;
        eprintln!(
            "batch {b}: {} measured ({ok} ok, {failed} failed), {:.0} s",
            ok + failed,
            start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
