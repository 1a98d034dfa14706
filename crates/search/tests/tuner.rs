//! The tuning loop with a deterministic fake runner and model.

mod common;

use common::FakeScorer;
use std::collections::HashSet;
use std::sync::Arc;
use tessel_ir::dag::fnv1a;
use tessel_ir::State;
use tessel_search::evolution::{state_key, EvolutionParams};
use tessel_search::heuristic::heuristic_state;
use tessel_search::tuner::*;
use tessel_sketch::{generate_sketches, HardwareParams};

/// Times are a fixed function of the step log; every 7th distinct candidate "fails".
#[derive(Default)]
struct FakeMeasurer {
    seen: HashSet<String>,
    order: Vec<String>,
    duplicates: usize,
}

fn fake_seconds(key: &str) -> f64 {
    1e-3 * (1.0 + (fnv1a(key.as_bytes()) % 1000) as f64 / 100.0)
}

impl Measurer for FakeMeasurer {
    fn measure(&mut self, states: &[State]) -> Vec<Measurement> {
        states
            .iter()
            .map(|s| {
                let key = state_key(s);
                if !self.seen.insert(key.clone()) {
                    self.duplicates += 1;
                }
                self.order.push(key.clone());
                let fails = fnv1a(key.as_bytes()).is_multiple_of(7);
                Measurement {
                    seconds: (!fails).then(|| fake_seconds(&key)),
                    error: fails.then(|| MeasureError::new(ErrorClass::RuntimeCrash, "fake")),
                    compile_seconds: 0.0,
                }
            })
            .collect()
    }
}

/// The small matmul most tests tune.
const SMALL_GMM: &str = "gmm:b=1,n=64,m=64,k=64";

fn tuner(seed: u64) -> Tuner {
    tuner_for(SMALL_GMM, seed)
}

fn tuner_for(spec: &str, seed: u64) -> Tuner {
    let dag = Arc::new(tessel_workloads::lookup(spec).expect("spec").dag);
    let hw = HardwareParams::with_cores(2);
    let sketches = generate_sketches(&dag, &hw).expect("sketches");
    let params = TuneParams {
        trials: 96,
        measures_per_round: 32,
        evolution: EvolutionParams {
            population: 128,
            ..EvolutionParams::default()
        },
        seed,
        ..TuneParams::default()
    };
    Tuner::new(dag, sketches, hw).params(params)
}

#[test]
fn same_seed_and_same_times_choose_the_same_candidates() {
    let (mut m1, mut m2) = (FakeMeasurer::default(), FakeMeasurer::default());
    let r1 = tuner(3).run(&mut m1, &mut FakeScorer::default());
    tuner(3).run(&mut m2, &mut FakeScorer::default());
    assert_eq!(m1.order, m2.order);
    assert_eq!(r1.trials, 96);
    assert_eq!(r1.stop_reason, StopReason::TrialBudget);
    assert_eq!(r1.rounds.len(), 3);
    assert_eq!(m1.duplicates, 0, "a state is never measured twice");
    let best = r1.best.expect("some candidate succeeded");
    let fastest = m1
        .order
        .iter()
        .filter(|k| !fnv1a(k.as_bytes()).is_multiple_of(7))
        .map(|k| fake_seconds(k))
        .fold(f64::INFINITY, f64::min);
    assert_eq!(best.1, fastest, "the best is the fastest measured");
    assert!(r1.valid < r1.trials, "failures are counted");
}

#[test]
fn the_heuristic_schedule_is_measured_in_the_first_round() {
    let dag = Arc::new(tessel_workloads::lookup(SMALL_GMM).expect("spec").dag);
    let h = heuristic_state(&dag, &HardwareParams::with_cores(2)).expect("heuristic lowers");
    let mut m = FakeMeasurer::default();
    tuner(1).run(&mut m, &mut FakeScorer::default());
    assert_eq!(m.order[0], state_key(&h));
}

#[test]
fn resuming_never_remeasures_and_keeps_the_best() {
    let mut first = FakeMeasurer::default();
    let r1 = tuner(5)
        .trials(64)
        .run(&mut first, &mut FakeScorer::default());
    let best1 = r1.best.clone().expect("best");
    // Rebuild what a records file would give back: replayed states and their times.
    let dag = Arc::new(tessel_workloads::lookup(SMALL_GMM).expect("spec").dag);
    let previous: Vec<(State, Option<f64>)> = first
        .order
        .iter()
        .map(|k| {
            let s = State::from_steps_json(dag.clone(), k).expect("replays");
            let fails = fnv1a(k.as_bytes()).is_multiple_of(7);
            (s, (!fails).then(|| fake_seconds(k)))
        })
        .collect();
    let mut second = FakeMeasurer::default();
    let mut scorer = FakeScorer::default();
    let r2 = tuner(6)
        .trials(64)
        .resume_from(previous)
        .run(&mut second, &mut scorer);
    assert!(
        second.order.iter().all(|k| !first.seen.contains(k)),
        "nothing measured again"
    );
    assert_eq!(
        scorer.updates[0], 64,
        "the model trains on the earlier records first"
    );
    let best2 = r2.best.expect("best").1;
    assert!(best2 <= best1.1);
}

/// Sketch 0's programs are 8× slower than the others'; no failures.
#[derive(Default)]
struct SketchSpeedMeasurer {
    sketches: Vec<Option<u32>>,
}

impl Measurer for SketchSpeedMeasurer {
    fn measure(&mut self, states: &[State]) -> Vec<Measurement> {
        states
            .iter()
            .map(|s| {
                self.sketches.push(s.sketch_id());
                let base = fake_seconds(&state_key(s));
                let slow = if s.sketch_id() == Some(0) { 8.0 } else { 1.0 };
                Measurement {
                    seconds: Some(base * slow),
                    error: None,
                    compile_seconds: 0.0,
                }
            })
            .collect()
    }
}

/// A matmul whose reduction is too long for in-place tensorized sketches: five sketches, so
/// the probe leaves most of 160 trials to the steering.
const LONG_K_GMM: &str = "gmm:b=1,n=64,m=64,k=128";

#[test]
fn a_steering_sketch_policy_probes_every_sketch_then_measures_the_slow_one_less() {
    let n_sketches = {
        let dag = tessel_workloads::lookup(LONG_K_GMM).expect("spec").dag;
        generate_sketches(&Arc::new(dag), &HardwareParams::with_cores(2))
            .expect("sketches")
            .len()
    };
    assert!(n_sketches >= 3, "the test needs several sketches");
    let slow_share = |policy: &str, seed: u64| {
        let mut m = SketchSpeedMeasurer::default();
        let policy = tessel_search::registry::sketch_policies()
            .make(policy, seed)
            .expect("policy");
        let result = tuner_for(LONG_K_GMM, seed)
            .trials(160)
            .sketch_policy(policy)
            .run(&mut m, &mut FakeScorer::default());
        assert_eq!(result.trials, 160);
        (m.sketches.iter().filter(|&&s| s == Some(0)).count(), m)
    };
    let (mut uniform, mut steered) = (0, 0);
    for seed in 0..3 {
        uniform += slow_share("uniform", seed).0;
        let (slow, m) = slow_share("ducb", seed);
        steered += slow;
        // The probe: the first measurements cover every sketch.
        let first: HashSet<u32> = m.sketches[..PROBE_PER_SKETCH * n_sketches]
            .iter()
            .flatten()
            .copied()
            .collect();
        assert_eq!(
            first.len(),
            n_sketches,
            "probe {:?}",
            &m.sketches[..PROBE_PER_SKETCH * n_sketches]
        );
    }
    // Steered, the slow sketch keeps its probe, its floor quota and its part of the
    // ε-greedy random picks, drawn from a population that is uniform over the sketches
    // (58 trials over the three seeds, against 96 when the cost model picks alone).
    assert!(
        3 * steered < 2 * uniform,
        "the slow sketch got {steered} trials steered, {uniform} uniform"
    );
}

#[test]
fn pooled_leaders_share_one_quota_and_the_ranking_fills_it() {
    let dag = Arc::new(tessel_workloads::lookup(LONG_K_GMM).expect("spec").dag);
    let hw = HardwareParams::with_cores(2);
    let sketches = generate_sketches(&dag, &hw).expect("sketches");
    let mut rng = tessel_ir::rng::seeded(3);
    // Six distinct programs of each of the first three sketches, ranked sketch 1 first,
    // then 0, then 2.
    let mut of_sketch = |k: usize| {
        let mut out: Vec<State> = Vec::new();
        let mut seen = HashSet::new();
        for _ in 0..200 {
            if let Some(s) = tessel_sketch::sample_initial(&sketches[k], &hw, &mut rng) {
                if seen.insert(state_key(&s)) {
                    out.push(s);
                }
            }
            if out.len() == 6 {
                break;
            }
        }
        assert_eq!(out.len(), 6, "sketch {k}");
        out
    };
    let ranked: Vec<State> = [of_sketch(1), of_sketch(0), of_sketch(2)].concat();
    let shares = [0.45, 0.45, 0.1];
    let count = |chosen: &[State]| {
        let mut n = [0usize; 3];
        for s in chosen {
            n[s.sketch_id().expect("sketch") as usize] += 1;
        }
        n
    };
    let (own, rest) = split_by_shares(ranked.clone(), &shares, 10, &mut HashSet::new());
    assert_eq!(rest.len(), 8);
    let n = count(&own);
    assert!(n[0] >= 4 && n[1] >= 4 && n[2] == 1, "own quotas: {n:?}");
    let (pooled, rest) = split_by_shares_pooling_leaders(ranked, &shares, 10, &mut HashSet::new());
    assert_eq!(rest.len(), 8);
    // Sketches 0 and 1 hold nine picks together; sketch 1 ranks first, so it takes six.
    assert_eq!(count(&pooled), [3, 6, 1]);
}
