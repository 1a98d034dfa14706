//! Prints, for every registry workload, the number of sketches, the time to generate them,
//! the share of init samples that succeed and the sampling rate (release build advised).
use std::sync::Arc;
use std::time::Instant;
use tessel_sketch::{generate_sketches, sample_initial, HardwareParams};

fn main() {
    let hw = HardwareParams::detect();
    let mut rng = tessel_ir::rng::seeded(1);
    let filter: Vec<String> = std::env::args().skip(1).collect();
    for w in tessel_workloads::registry() {
        if !filter.is_empty() && !filter.iter().any(|f| w.name.starts_with(f.as_str())) {
            continue;
        }
        let dag = Arc::new(w.dag);
        let t = Instant::now();
        let reps = 20;
        let mut sketches = Vec::new();
        for _ in 0..reps {
            sketches = match generate_sketches(&dag, &hw) {
                Ok(s) => s,
                Err(e) => {
                    println!("{:<18} ERROR {e}", w.name);
                    break;
                }
            };
        }
        let gen_us = t.elapsed().as_secs_f64() * 1e6 / reps as f64;
        let n = 2000;
        let t = Instant::now();
        let mut ok = 0;
        for k in 0..n {
            if sample_initial(&sketches[k % sketches.len()], &hw, &mut rng).is_some() {
                ok += 1;
            }
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{:<18} sketches {:>2}  gen {:>7.1} us  valid {:>5.1}%  {:>8.0} samples/s  {:>8.0} valid/s",
            w.name,
            sketches.len(),
            gen_us,
            100.0 * ok as f64 / n as f64,
            n as f64 / secs,
            ok as f64 / secs
        );
    }
}
