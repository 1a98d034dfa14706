//! The search: Ansor's evolutionary search over complete schedules, and the tuning loop.
//!
//! [`tuner::Tuner`] runs rounds of sampling, evolution, ε-greedy picking, measurement and
//! cost-model retraining until a trial or time budget is spent.
//!
//! [`evolution::evolve`] takes an initial population (sampled from the sketches), scores it
//! with a cost model, mutates parents chosen in proportion to their predicted scores through
//! a [`tessel_mutation_model::MutationPolicy`], and returns the best distinct states that
//! were not measured before.
//!
//! ```
//! use std::collections::HashSet;
//! use std::sync::Arc;
//! use tessel_search::evolution::{evolve, EvolutionContext, EvolutionParams};
//! use tessel_sketch::{generate_sketches, sample_initial, HardwareParams, MutationRegistry};
//! let dag = Arc::new(tessel_workloads::lookup("gmm:b=1,n=32,m=32,k=32").unwrap().dag);
//! let hw = HardwareParams::with_cores(2);
//! let sketches = generate_sketches(&dag, &hw).unwrap();
//! let mut rng = tessel_ir::rng::seeded(0);
//! let init: Vec<_> = (0..16).filter_map(|k| sample_initial(&sketches[k % 3], &hw, &mut rng)).collect();
//! let mut score = |states: &[tessel_ir::State]| states.iter().map(|s| s.steps().len() as f32).collect();
//! let mut policy = tessel_mutation_model::FixedWeights;
//! let rules = MutationRegistry::cpu();
//! let measured = HashSet::new();
//! let mut ctx = EvolutionContext { hw: &hw, rules: &rules, policy: &mut policy, score: &mut score, measured: &measured };
//! let params = EvolutionParams { population: 32, ..EvolutionParams::default() };
//! let (best, _stats) = evolve(init, 8, &params, &mut ctx, &mut rng);
//! assert!(!best.is_empty() && best.len() <= 8);
//! ```
#![warn(missing_docs)]

pub mod confirm;
pub mod evolution;
pub mod harness;
pub mod heuristic;
pub mod job;
pub mod lowering;
pub mod model;
pub mod registry;
pub mod run_limit;
pub mod scheduler;
pub mod testing;
pub mod tuner;
