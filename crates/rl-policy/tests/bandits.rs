//! The sketch policies on a simulated search: three sketches whose best programs reach
//! normalized throughputs around 0.9, 0.5 and 0.2.

use rand::RngExt;
use tessel_ir::rng::seeded;
use tessel_rl_policy::{DiscountedUcb, EpsilonGreedy, SketchPolicy, Thompson, Uniform};

/// Every policy of the crate with its default parameters.
fn all_policies() -> Vec<Box<dyn SketchPolicy>> {
    vec![
        Box::new(Uniform),
        Box::new(DiscountedUcb::default()),
        Box::new(Thompson::default()),
        Box::new(EpsilonGreedy::default()),
    ]
}

/// Runs `rounds` rounds of 256 samples; a sketch with samples gets a noisy reward near its
/// mean. Returns the share of samples each sketch got in the last round.
fn simulate(policy: &mut dyn SketchPolicy, rounds: usize, seed: u64) -> Vec<f64> {
    let means = [0.9, 0.5, 0.2];
    let mut rng = seeded(seed);
    let mut shares = vec![0.0; 3];
    for _ in 0..rounds {
        let picks = policy.allocate(256, 3, &mut rng);
        assert_eq!(picks.len(), 256);
        let mut counts = [0usize; 3];
        for p in picks {
            counts[p as usize] += 1;
        }
        for k in 0..3 {
            if counts[k] > 0 {
                let noise: f64 = rng.random_range(-0.1..0.1);
                policy.reward(k as u32, (means[k] + noise).clamp(0.0, 1.0));
            }
        }
        shares = counts.iter().map(|&c| c as f64 / 256.0).collect();
    }
    shares
}

/// Asserts that the three sketches' shares are each within 0.1 of a third.
fn assert_about_even(shares: &[f64]) {
    assert!(
        shares.iter().all(|&s| (s - 1.0 / 3.0).abs() < 0.1),
        "{shares:?}"
    );
}

#[test]
fn learned_policies_concentrate_on_the_best_sketch_and_starve_none() {
    for mut policy in all_policies().into_iter().skip(1) {
        let name = policy.name().to_string();
        if name == "ducb" {
            // By default ducb draws the initial population uniformly and steers only the
            // measurements; its allocation is still there for a population floor below 1.
            let mut ducb = tessel_rl_policy::DiscountedUcb::default();
            ducb.population_floor = 0.4;
            policy = Box::new(ducb);
        }
        let shares = simulate(policy.as_mut(), 12, 7);
        // With a population floor the best sketch gets the most samples, not all.
        let least = if name == "ducb" { 0.5 } else { 0.6 };
        assert!(shares[0] > least, "{name}: best sketch share {shares:?}");
        assert!(
            shares[0] > 2.0 * shares[1].max(shares[2]),
            "{name}: best sketch share {shares:?}"
        );
        assert!(
            shares.iter().all(|&s| s > 0.0),
            "{name}: a sketch starved {shares:?}"
        );
        assert!(!policy.state_json().is_null(), "{name} logs its state");
    }
}

#[test]
fn uniform_spreads_evenly_and_warm_up_is_uniform() {
    let mut uniform = Box::new(Uniform);
    let shares = simulate(uniform.as_mut(), 5, 3);
    assert_about_even(&shares);
    // Round 1 of a learned policy is still uniform.
    let mut ducb = Box::new(DiscountedUcb::default());
    let shares = simulate(ducb.as_mut(), 1, 3);
    assert_about_even(&shares);
}

#[test]
fn every_policy_handles_one_sketch() {
    for mut p in all_policies() {
        let picks = p.allocate(10, 1, &mut seeded(1));
        assert!(picks.iter().all(|&s| s == 0));
        p.reward(0, 1.0);
    }
}

#[test]
fn ducb_steers_measurements_for_its_first_rounds_and_uniform_never() {
    let mut uniform = Box::new(Uniform);
    uniform.allocate(8, 3, &mut seeded(1));
    assert_eq!(uniform.measure_shares(3), None);

    let mut ducb = Box::new(DiscountedUcb::default());
    let mut rng = seeded(2);
    ducb.allocate(64, 3, &mut rng);
    // Nothing tried yet: every sketch gets the same share (the probe comes first).
    let shares = ducb.measure_shares(3).expect("ducb steers");
    assert!(
        shares.iter().all(|&s| (s - 1.0 / 3.0).abs() < 1e-9),
        "{shares:?}"
    );
    // After the probe: the best sketch and the one 20 % behind share evenly, the 5× slower
    // one gets the floor only.
    for (sketch, reward) in [(0, 1.0), (1, 0.8), (2, 0.2)] {
        ducb.reward(sketch, reward);
    }
    let shares = ducb.measure_shares(3).expect("ducb steers");
    assert!(
        (shares.iter().sum::<f64>() - 1.0).abs() < 1e-9,
        "{shares:?}"
    );
    assert!((shares[0] - shares[1]).abs() < 1e-9, "{shares:?}");
    assert!(shares[1] > 10.0 * shares[2], "{shares:?}");
    assert!(shares[2] > 0.0 && shares[2] < 0.05, "{shares:?}");
    // Steering ends after three rounds; the model picks alone from then on.
    for _ in 0..3 {
        ducb.allocate(64, 3, &mut rng);
    }
    assert_eq!(ducb.measure_shares(3), None);
}

#[test]
fn ducb_draws_a_uniform_population_by_default_while_measurements_concentrate() {
    let mut ducb = Box::new(DiscountedUcb::default());
    let shares = simulate(ducb.as_mut(), 12, 7);
    assert_about_even(&shares);
    let probs: Vec<f64> =
        serde_json::from_value(ducb.state_json()["probabilities"].clone()).expect("probs");
    assert!(
        probs[0] > 0.9,
        "the 0.9 sketch leads what is measured: {probs:?}"
    );
}

#[test]
fn ducb_population_keeps_its_floor_while_measurements_concentrate() {
    let mut ducb = tessel_rl_policy::DiscountedUcb::default();
    ducb.population_floor = 0.4;
    let floor = ducb.population_floor;
    let mut rng = seeded(5);
    // Sketch 0's first programs look bad: it earns a tenth of the others' reward.
    for _ in 0..8 {
        let picks = ducb.allocate(1000, 4, &mut rng);
        for k in 0..4u32 {
            if picks.contains(&k) {
                ducb.reward(k, if k == 0 { 0.1 } else { 0.9 });
            }
        }
    }
    let picks = ducb.allocate(20_000, 4, &mut rng);
    let share0 = picks.iter().filter(|&&k| k == 0).count() as f64 / picks.len() as f64;
    assert!(
        share0 > 0.9 * floor / 4.0,
        "sketch 0 keeps {share0} of the population"
    );
    // The policy's own probabilities (what steered measurements follow) concentrate away
    // from it.
    let state = ducb.state_json();
    let probs: Vec<f64> = serde_json::from_value(state["probabilities"].clone()).expect("probs");
    assert!(
        probs[0] < share0 && probs[0] < 0.05,
        "{probs:?} vs {share0}"
    );
}
