//! What the classifier policy costs per mutation: `choose` + `observe` over a stream of
//! real states with a planted outcome pattern, as one search run would call them.
//!
//! `cargo run --release -p tessel-mutation-model --example classifier_cost [CALLS]`

use rand::RngExt;
use std::sync::Arc;
use std::time::Instant;
use tessel_mutation_model::{Classifier, MutationOutcome, MutationPolicy, RuleInfo};
use tessel_sketch::{generate_sketches, sample_initial, HardwareParams};

fn main() {
    let calls: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(30_000);
    let dag = Arc::new(
        tessel_ir::workloads::lookup("gmm:b=1,n=512,m=512,k=512")
            .expect("spec")
            .dag,
    );
    let hw = HardwareParams::with_cores(2);
    let sketches = generate_sketches(&dag, &hw).expect("sketches");
    let mut rng = tessel_ir::rng::seeded(4);
    let states: Vec<_> = (0..2048)
        .filter_map(|k| sample_initial(&sketches[k % sketches.len()], &hw, &mut rng))
        .collect();
    let rules = [
        ("MutateTileSize", 0.90),
        ("MutateAutoUnroll", 0.04),
        ("MutateComputeLocation", 0.05),
        ("MutateParallel", 0.01),
    ]
    .map(|(name, weight)| RuleInfo { name, weight });
    let mut policy = Classifier::default();
    let t = Instant::now();
    for i in 0..calls {
        let s = &states[i % states.len()];
        let rule = policy.choose(s, &rules, &mut rng);
        let outcome = if rng.random_bool(0.3) {
            MutationOutcome::Improved
        } else {
            MutationOutcome::NoGain
        };
        policy.observe(s, rule, outcome);
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{calls} choose+observe calls: {:.3} s, {:.2} µs per call",
        secs,
        secs / calls as f64 * 1e6
    );
}
