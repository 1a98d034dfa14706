//! Tutorial: plug your own cost model into a tune.
//!
//! A cost model predicts a score (higher = faster) for the features of each program and
//! learns from measured programs. This one is a nearest neighbour: a program scores what
//! the measured program closest to it (L1 distance of the summed store features) reached.
//! Any type implementing `tessel_cost_model::model::CostModel` works the same way: hand a
//! factory to `TuneOptions::cost_model`, or register it by name in
//! `tessel_search::registry::cost_models()`.
//!
//! Run it: `cargo run --release --example own_cost_model`.

use std::sync::Arc;
use tessel_cost_model::features::ProgramFeatures;
use tessel_cost_model::model::CostModel;
use tessel_search::job::{TuneJob, TuneOptions};
use tessel_search::tuner::{TuneParams, TuneResult};

/// Nearest-neighbour scores over the summed store vectors of a program.
#[derive(Default)]
pub struct NearestNeighbour {
    seen: Vec<(Vec<f32>, f32)>,
}

fn summed(p: &ProgramFeatures) -> Vec<f32> {
    let mut sum = Vec::new();
    for row in p.rows() {
        sum.resize(row.len(), 0.0);
        for (s, x) in sum.iter_mut().zip(row) {
            *s += x;
        }
    }
    sum
}

impl CostModel for NearestNeighbour {
    fn name(&self) -> String {
        "nearest-neighbour".to_string()
    }

    fn predict(&self, programs: &[ProgramFeatures]) -> Vec<f32> {
        programs
            .iter()
            .map(|p| {
                let x = summed(p);
                let distance =
                    |y: &[f32]| -> f32 { x.iter().zip(y).map(|(a, b)| (a - b).abs()).sum() };
                self.seen
                    .iter()
                    .min_by(|a, b| distance(&a.0).total_cmp(&distance(&b.0)))
                    .map_or(0.5, |(_, label)| *label)
            })
            .collect()
    }

    fn update(&mut self, programs: &[ProgramFeatures], throughputs: &[f32]) {
        for (p, &y) in programs.iter().zip(throughputs) {
            self.seen.push((summed(p), y));
        }
    }

    /// The search hands the model all its samples each round: forget the old ones first.
    fn clear(&mut self) {
        self.seen.clear();
    }
}

/// Tunes a small matrix multiplication for a few trials with the nearest-neighbour model.
pub fn run() -> Result<TuneResult, Box<dyn std::error::Error>> {
    let mut options = TuneOptions::new(tessel_sketch::Target::native().with_cores(1));
    options.cost_model = Arc::new(|_seed| Box::new(NearestNeighbour::default()));
    options.params = TuneParams::quick(8);
    let workload = tessel_workloads::lookup("gmm:b=1,n=16,m=16,k=16")?;
    Ok(TuneJob::new(options).tune_workload(&workload)?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let result = run()?;
    let best = result.best.map(|b| b.1 * 1e3);
    println!(
        "nearest-neighbour model: {} trials, best {best:?} ms",
        result.trials
    );
    Ok(())
}
