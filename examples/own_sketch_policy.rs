//! Tutorial: plug your own sketch policy into a tune.
//!
//! A sketch policy decides which sketch (high-level program structure) each sample of the
//! initial population comes from, and hears after every round how well each sketch did.
//! This one is a greedy "stick with the winner": after a sketch has been rewarded it gets
//! three quarters of the samples, the others share the rest round-robin. Hand a factory to
//! `TuneOptions::sketch_policy`, or register it by name in
//! `tessel_search::registry::sketch_policies()`.
//!
//! Run it: `cargo run --release --example own_sketch_policy`.

use std::sync::Arc;
use tessel_ir::rng::TesselRng;
use tessel_rl_policy::SketchPolicy;
use tessel_search::job::{TuneJob, TuneOptions};
use tessel_search::tuner::{TuneParams, TuneResult};

/// Three quarters of the samples to the best-rewarded sketch so far.
#[derive(Default)]
pub struct StickWithTheWinner {
    best: Option<(u32, f64)>,
    /// How many rewards it heard (for the tutorial's output).
    pub rewards: usize,
}

impl SketchPolicy for StickWithTheWinner {
    fn name(&self) -> &str {
        "stick-with-the-winner"
    }

    fn allocate(&mut self, n: usize, num_sketches: usize, _: &mut TesselRng) -> Vec<u32> {
        let sketches = num_sketches.max(1) as u32;
        (0..n)
            .map(|k| match self.best {
                Some((winner, _)) if k % 4 != 3 => winner,
                _ => k as u32 % sketches,
            })
            .collect()
    }

    fn reward(&mut self, sketch: u32, reward: f64) {
        self.rewards += 1;
        if self.best.is_none_or(|(_, r)| reward > r) {
            self.best = Some((sketch, reward));
        }
    }
}

/// Tunes a small matrix multiplication for a few trials with the policy.
pub fn run() -> Result<TuneResult, Box<dyn std::error::Error>> {
    let mut options = TuneOptions::new(tessel_sketch::Target::native().with_cores(1));
    options.sketch_policy = Arc::new(|_seed| Box::new(StickWithTheWinner::default()));
    options.params = TuneParams::quick(8);
    let workload = tessel_workloads::lookup("gmm:b=1,n=16,m=16,k=16")?;
    Ok(TuneJob::new(options).tune_workload(&workload)?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let result = run()?;
    let best = result.best.map(|b| b.1 * 1e3);
    println!(
        "stick-with-the-winner: {} trials, best {best:?} ms",
        result.trials
    );
    Ok(())
}
