//! The learned mutation-rule predictor on a planted pattern.

use rand::RngExt;
use std::sync::Arc;
use tessel_ir::{State, Step};
use tessel_mutation_model::{Classifier, MutationOutcome, MutationPolicy, RuleInfo};
use tessel_sketch::{generate_sketches, sample_initial, HardwareParams};

fn states(n: usize) -> Vec<State> {
    let dag = Arc::new(
        tessel_workloads::lookup("gmm:b=1,n=64,m=64,k=64")
            .expect("spec")
            .dag,
    );
    let hw = HardwareParams::with_cores(2);
    let sketches = generate_sketches(&dag, &hw).expect("sketches");
    let mut rng = tessel_ir::rng::seeded(4);
    (0..n)
        .filter_map(|k| sample_initial(&sketches[k % sketches.len()], &hw, &mut rng))
        .collect()
}

fn unroll_of(s: &State) -> Option<u32> {
    s.steps().iter().find_map(|st| match st {
        Step::Pragma {
            auto_unroll_max_step,
            ..
        } => Some(*auto_unroll_max_step),
        _ => None,
    })
}

const RULES: [RuleInfo; 3] = [
    RuleInfo {
        name: "MutateTileSize",
        weight: 0.9,
    },
    RuleInfo {
        name: "MutateAutoUnroll",
        weight: 0.05,
    },
    RuleInfo {
        name: "MutateComputeLocation",
        weight: 0.05,
    },
];

/// Trains `policy` on the planted pattern: unrolling helps exactly the states whose
/// auto_unroll_max_step is 0; tile-size mutations help one time in ten.
fn train_planted(policy: &mut Classifier, pool: &[State]) {
    let mut rng = tessel_ir::rng::seeded(9);
    for _ in 0..3 {
        for s in pool {
            let tile = if rng.random_bool(0.1) {
                MutationOutcome::Improved
            } else {
                MutationOutcome::NoGain
            };
            policy.observe(s, 0, tile);
            let unroll = if unroll_of(s) == Some(0) {
                MutationOutcome::Improved
            } else {
                MutationOutcome::NoGain
            };
            policy.observe(s, 1, unroll);
        }
    }
}

#[test]
fn it_learns_which_rule_improves_which_state() {
    let pool = states(600);
    let probe_zero = pool
        .iter()
        .find(|s| unroll_of(s) == Some(0))
        .expect("a state with unroll 0");
    let probe_big = pool
        .iter()
        .find(|s| unroll_of(s) == Some(512))
        .expect("a state with unroll 512");
    for prior_weighted in [true, false] {
        let mut policy = Classifier::default();
        policy.prior_weighted = prior_weighted;
        let before = policy.probabilities(probe_zero, &RULES);
        train_planted(&mut policy, &pool);
        let zero = policy.probabilities(probe_zero, &RULES);
        let big = policy.probabilities(probe_big, &RULES);
        // The default share of unrolling among the two applicable rules: 0.05 / 0.95.
        let default = before[1];
        assert!((default - 0.05 / 0.95).abs() < 1e-9, "{before:?}");
        // Prior-weighted: 0.5·0.053 + 0.5·(0.05·1 / (0.05·1 + 0.9·0.1)) ≈ 0.21; alone: ≈ 0.48.
        let wanted = if prior_weighted { 0.15 } else { 0.3 };
        assert!(
            zero[1] > wanted,
            "unroll favoured where it helps (prior-weighted {prior_weighted}): {zero:?}"
        );
        assert!(
            big[1] < default,
            "and below its default share elsewhere: {big:?}"
        );
        assert!(!policy.state_json().is_null());
    }
}

#[test]
fn prior_weighting_keeps_the_default_mix_when_every_rule_improves_alike() {
    let pool = states(600);
    let probe = &pool[0];
    let mut rng = tessel_ir::rng::seeded(2);
    let mut weighted = Classifier::default();
    let mut alone = Classifier::default();
    alone.prior_weighted = false;
    for _ in 0..3 {
        for s in &pool {
            for rule in 0..2 {
                let outcome = if rng.random_bool(0.3) {
                    MutationOutcome::Improved
                } else {
                    MutationOutcome::NoGain
                };
                weighted.observe(s, rule, outcome);
                alone.observe(s, rule, outcome);
            }
        }
    }
    let w = weighted.probabilities(probe, &RULES);
    let a = alone.probabilities(probe, &RULES);
    // Default among the applicable rules: 0.9 / 0.95 ≈ 0.947 for tile sizes.
    assert!(w[0] > 0.9, "tile sizes keep their share: {w:?}");
    assert!(a[0] < 0.8, "P(improve) alone flattens the mix: {a:?}");
}

#[test]
fn rules_with_nothing_to_mutate_are_skipped_and_defaults_rule_until_trained() {
    let pool = states(40);
    let no_ca = pool
        .iter()
        .find(|s| {
            !s.steps()
                .iter()
                .any(|st| matches!(st, Step::ComputeAt { .. }))
        })
        .expect("a state without compute_at");
    let mut policy = Classifier::default();
    let p = policy.probabilities(no_ca, &RULES);
    assert_eq!(
        p[2], 0.0,
        "MutateComputeLocation has nothing to move: {p:?}"
    );
    let total: f64 = p.iter().sum();
    assert!((total - 1.0).abs() < 1e-9);
    assert!(
        (p[0] / p[1] - 0.9 / 0.05).abs() < 1e-6,
        "untrained: the fixed weights, renormalized"
    );
    let mut rng = tessel_ir::rng::seeded(1);
    for _ in 0..200 {
        assert_ne!(policy.choose(no_ca, &RULES, &mut rng), 2);
    }
}
