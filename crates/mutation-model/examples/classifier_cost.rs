//! What the classifier policy costs per mutation: `choose` + `observe` over a stream of
//! real states with a planted outcome pattern, as one search run would call them.
//!
//! `cargo run --release -p tessel-mutation-model --example classifier_cost [CALLS] [WORKLOAD]`

use rand::RngExt;
use std::sync::Arc;
use std::time::Instant;
use tessel_mutation_model::{Classifier, MutationOutcome, MutationPolicy, RuleInfo};
use tessel_sketch::{generate_sketches, sample_initial, HardwareParams};

/// Ansor's CPU mutation rules and their default weights.
const RULE_WEIGHTS: [(&str, f64); 4] = [
    ("MutateTileSize", 0.90),
    ("MutateAutoUnroll", 0.04),
    ("MutateComputeLocation", 0.05),
    ("MutateParallel", 0.01),
];

fn main() {
    let calls: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(30_000);
    let spec = std::env::args()
        .nth(2)
        .unwrap_or_else(|| "gmm:b=1,n=512,m=512,k=512".to_string());
    let dag = Arc::new(tessel_workloads::lookup(&spec).expect("spec").dag);
    let hw = HardwareParams::with_cores(2);
    let sketches = generate_sketches(&dag, &hw).expect("sketches");
    let mut rng = tessel_ir::rng::seeded(4);
    let states: Vec<_> = (0..2048)
        .filter_map(|k| sample_initial(&sketches[k % sketches.len()], &hw, &mut rng))
        .collect();
    let rules = RULE_WEIGHTS.map(|(name, weight)| RuleInfo { name, weight });
    let t = Instant::now();
    let mut sink = 0.0;
    for i in 0..calls {
        sink += tessel_mutation_model::classifier::state_features(&states[i % states.len()])[0];
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{calls} state_features calls: {:.2} µs per call ({sink:.0})",
        secs / calls as f64 * 1e6
    );
    let t = Instant::now();
    let mut applies = 0;
    for i in 0..calls {
        for (name, _) in RULE_WEIGHTS {
            applies +=
                tessel_mutation_model::classifier::rule_applies(name, &states[i % states.len()])
                    as usize;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{calls} × 4 rule_applies calls: {:.2} µs per state ({applies})",
        secs / calls as f64 * 1e6
    );
    let mut policy = Classifier::default();
    let mut choose_secs = 0.0;
    let t = Instant::now();
    for i in 0..calls {
        let s = &states[i % states.len()];
        let tc = Instant::now();
        let rule = policy.choose(s, &rules, &mut rng);
        choose_secs += tc.elapsed().as_secs_f64();
        let outcome = if rng.random_bool(0.3) {
            MutationOutcome::Improved
        } else {
            MutationOutcome::NoGain
        };
        policy.observe(s, rule, outcome);
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{calls} choose+observe calls: {:.3} s, {:.2} µs per call ({:.2} µs in choose)",
        secs,
        secs / calls as f64 * 1e6,
        choose_secs / calls as f64 * 1e6
    );
    if std::env::var_os("CLASSIFIER_STATE").is_some() {
        println!("{}", policy.state_json());
    }
}
