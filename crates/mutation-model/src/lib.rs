//! Which mutation rule to apply to a schedule.
//!
//! Ansor picks every mutation rule from a fixed categorical distribution (CPU: tile size
//! 0.90, auto-unroll 0.04, compute location 0.05, parallel 0.01), whatever the program.
//! A [`MutationPolicy`] makes that choice replaceable: the evolutionary search asks it to
//! [`choose`](MutationPolicy::choose) a rule for a parent state and reports what came of it
//! with [`observe`](MutationPolicy::observe). [`FixedWeights`] is Ansor's behaviour; the
//! paper's learned rule predictor implements the same trait.
//!
//! Rules are passed as plain data ([`RuleInfo`]: name and default weight), so this crate
//! depends only on the IR.
//!
//! ```
//! use tessel_mutation_model::{FixedWeights, MutationPolicy, RuleInfo};
//! let rules = [RuleInfo { name: "MutateTileSize", weight: 0.9 }, RuleInfo { name: "MutateParallel", weight: 0.1 }];
//! let state = tessel_ir::State::new(std::sync::Arc::new(
//!     tessel_workloads::lookup("gmm:b=1,n=8,m=8,k=8").unwrap().dag,
//! ));
//! let mut policy = FixedWeights::default();
//! let rule = policy.choose(&state, &rules, &mut tessel_ir::rng::seeded(3));
//! assert!(rule < 2);
//! ```
#![warn(missing_docs)]

pub mod classifier;

pub use classifier::Classifier;

use rand::RngExt;
use tessel_ir::rng::TesselRng;
use tessel_ir::State;

/// A mutation rule as the policy sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RuleInfo<'a> {
    /// The rule's name (`MutateTileSize`, ...).
    pub name: &'a str,
    /// Its default (Ansor) selection weight.
    pub weight: f64,
}

/// What came of one mutation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MutationOutcome {
    /// The rule did not apply, or its result was illegal.
    Invalid,
    /// A legal child whose predicted score is not above the parent's.
    NoGain,
    /// A legal child predicted better than its parent.
    Improved,
}

/// Chooses the mutation rule to apply to a state.
pub trait MutationPolicy: Send {
    /// A short name, as given to `tessel tune --policy`.
    fn name(&self) -> &str;

    /// Index into `rules` of the rule to apply to `state`.
    fn choose(&mut self, state: &State, rules: &[RuleInfo], rng: &mut TesselRng) -> usize;

    /// Feedback: applying `rules[rule]` to `state` had `outcome`.
    fn observe(&mut self, state: &State, rule: usize, outcome: MutationOutcome);

    /// The policy's internal state, for logs (`null` when it has none).
    fn state_json(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}

/// Ansor's policy: a fixed categorical distribution given by the rules' weights.
#[derive(Clone, Debug, Default)]
pub struct FixedWeights;

/// Draws an index with probability proportional to `weights` (uniform if they are all 0).
pub fn sample_weighted(weights: &[f64], rng: &mut TesselRng) -> usize {
    let total: f64 = weights.iter().filter(|w| **w > 0.0).sum();
    if weights.is_empty() {
        return 0;
    }
    if total <= 0.0 {
        return rng.random_range(0..weights.len());
    }
    let mut x = rng.random_range(0.0..total);
    for (k, &w) in weights.iter().enumerate() {
        if w > 0.0 {
            if x < w {
                return k;
            }
            x -= w;
        }
    }
    weights.len() - 1
}

impl MutationPolicy for FixedWeights {
    fn name(&self) -> &str {
        "fixed"
    }

    fn choose(&mut self, _state: &State, rules: &[RuleInfo], rng: &mut TesselRng) -> usize {
        let weights: Vec<f64> = rules.iter().map(|r| r.weight).collect();
        sample_weighted(&weights, rng)
    }

    fn observe(&mut self, _state: &State, _rule: usize, _outcome: MutationOutcome) {}
}
