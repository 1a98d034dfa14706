//! Tutorial: plug your own mutation policy into a tune.
//!
//! The evolutionary search mutates parents with one rule at a time (tile size, unroll,
//! compute location, parallel, tensorize shape); a mutation policy picks the rule and hears
//! what came of it. This one learns nothing fancy: it keeps a success count per rule and
//! picks the rule with the best rate of predicted improvements (every rule tried at least
//! a few times first). Hand a factory to `TuneOptions::mutation_policy`, or register it by
//! name in `tessel_search::registry::mutation_policies()`.
//!
//! Run it: `cargo run --release --example own_mutation_policy`.

use std::sync::Arc;
use tessel_ir::rng::TesselRng;
use tessel_ir::State;
use tessel_mutation_model::{MutationOutcome, MutationPolicy, RuleInfo};
use tessel_search::job::{TuneJob, TuneOptions};
use tessel_search::tuner::{TuneParams, TuneResult};

/// Picks the rule with the best rate of improvements so far.
#[derive(Default)]
pub struct BestRate {
    /// Per rule: (tried, improved).
    counts: Vec<(u32, u32)>,
}

impl MutationPolicy for BestRate {
    fn name(&self) -> &str {
        "best-rate"
    }

    fn choose(&mut self, _: &State, rules: &[RuleInfo], _: &mut TesselRng) -> usize {
        self.counts.resize(rules.len(), (0, 0));
        if let Some(untried) = self.counts.iter().position(|&(tried, _)| tried < 4) {
            return untried;
        }
        let rate = |&(tried, improved): &(u32, u32)| (improved as f64 + 1.0) / (tried as f64 + 2.0);
        (0..rules.len())
            .max_by(|&a, &b| rate(&self.counts[a]).total_cmp(&rate(&self.counts[b])))
            .unwrap_or(0)
    }

    fn observe(&mut self, _: &State, rule: usize, outcome: MutationOutcome) {
        if let Some((tried, improved)) = self.counts.get_mut(rule) {
            *tried += 1;
            *improved += u32::from(outcome == MutationOutcome::Improved);
        }
    }
}

/// Tunes a small matrix multiplication for a few trials with the policy.
pub fn run() -> Result<TuneResult, Box<dyn std::error::Error>> {
    let mut options = TuneOptions::new(tessel_sketch::Target::native().with_cores(1));
    options.mutation_policy = Arc::new(|_seed| Box::new(BestRate::default()));
    options.params = TuneParams::quick(8);
    let workload = tessel_workloads::lookup("gmm:b=1,n=16,m=16,k=16")?;
    Ok(TuneJob::new(options).tune_workload(&workload)?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let result = run()?;
    let tried: usize = result
        .rounds
        .iter()
        .flat_map(|r| &r.evolution.mutations_tried)
        .sum();
    let best = result.best.map(|b| b.1 * 1e3);
    println!(
        "best-rate: {} trials, {tried} mutations tried, best {best:?} ms",
        result.trials
    );
    Ok(())
}
