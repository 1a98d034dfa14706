//! Which sketch to spend the search budget on.
//!
//! Ansor draws the sketch of every initial-population sample uniformly at random. A
//! [`SketchPolicy`] makes that choice replaceable: the search asks it to
//! [`allocate`](SketchPolicy::allocate) each round's samples over the sketches, and after
//! measuring it [`reward`](SketchPolicy::reward)s each sketch with the best normalized
//! throughput its candidates reached. [`Uniform`] is Ansor's behaviour; learned policies
//! (the paper's reinforcement-learning sketch selection) implement the same trait, so the
//! search loop does not change when a researcher plugs in a new one.
//!
//! ```
//! use tessel_rl_policy::{SketchPolicy, Uniform};
//! let mut policy = Uniform::default();
//! let picks = policy.allocate(100, 3, &mut tessel_ir::rng::seeded(1));
//! assert_eq!(picks.len(), 100);
//! assert!(picks.iter().all(|&s| s < 3));
//! ```
#![warn(missing_docs)]

pub mod bandits;

pub use bandits::{DiscountedUcb, EpsilonGreedy, Thompson};

use rand::RngExt;
use tessel_ir::rng::TesselRng;

/// Chooses which sketches the initial population is sampled from.
pub trait SketchPolicy: Send {
    /// A short name, as given to `tessel tune --policy`.
    fn name(&self) -> &str;

    /// The sketch of each of `n` samples (sketch ids in `0..num_sketches`).
    fn allocate(&mut self, n: usize, num_sketches: usize, rng: &mut TesselRng) -> Vec<u32>;

    /// Feedback after a measured round: the best normalized throughput (in `[0, 1]`, 1 =
    /// the best program measured so far for the workload) that a candidate of `sketch`
    /// reached in the round.
    fn reward(&mut self, sketch: u32, reward: f64);

    /// The share of a round's measured candidates each sketch should get (summing to 1),
    /// or `None` to leave that choice to the cost model, as Ansor does. A policy that
    /// answers also gets a *probe* in the first round: a few random programs of every
    /// sketch are measured and rewarded first, and the shares are asked again before the
    /// rest of the round is picked. Called after the rewards of the previous batch.
    fn measure_shares(&mut self, _num_sketches: usize) -> Option<Vec<f64>> {
        None
    }

    /// Whether the sketches given the largest [measurement share](Self::measure_shares)
    /// are picked as one pool: together they get the sum of their quotas, filled with the
    /// best predicted states of any of them, so that the policy only decides which sketches
    /// are out and the cost model ranks the rest. `false` (the default): every sketch gets
    /// its own quota.
    fn pools_leading_sketches(&self) -> bool {
        false
    }

    /// The policy's internal state, for logs (`null` when it has none).
    fn state_json(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}

/// Ansor's policy: every sample picks a sketch uniformly at random; rewards are ignored.
#[derive(Clone, Debug, Default)]
pub struct Uniform;

impl SketchPolicy for Uniform {
    fn name(&self) -> &str {
        "uniform"
    }

    fn allocate(&mut self, n: usize, num_sketches: usize, rng: &mut TesselRng) -> Vec<u32> {
        if num_sketches == 0 {
            return Vec::new();
        }
        (0..n)
            .map(|_| rng.random_range(0..num_sketches) as u32)
            .collect()
    }

    fn reward(&mut self, _sketch: u32, _reward: f64) {}
}
