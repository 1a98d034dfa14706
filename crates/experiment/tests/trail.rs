//! The experiment's trail: every best-so-far program of a traced run, and time-to-reach
//! decided by re-measuring those programs.

mod common;

use common::FakeScorer;
use tessel_experiment::remeasure::remeasure;
use tessel_experiment::runs::{run_traced, Config, Problem};
use tessel_ir::dag::fnv1a;
use tessel_ir::State;
use tessel_search::evolution::{state_key, EvolutionParams};
use tessel_search::tuner::{Measurement, Measurer, TuneParams};

/// Times are a fixed function of the step log: the faster the better [`FakeScorer`] scores
/// it, so that the search keeps improving.
#[derive(Default)]
struct FakeMeasurer {
    /// Per batch, the (step log, seconds) it measured.
    batches: Vec<Vec<(String, f64)>>,
}

fn fake_seconds(key: &str) -> f64 {
    1e-3 * (11.0 - (fnv1a(key.as_bytes()) % 1000) as f64 / 100.0)
}

impl Measurer for FakeMeasurer {
    fn measure(&mut self, states: &[State]) -> Vec<Measurement> {
        let batch: Vec<(String, f64)> = states
            .iter()
            .map(|s| {
                let key = state_key(s);
                let t = fake_seconds(&key);
                (key, t)
            })
            .collect();
        let out = batch
            .iter()
            .map(|(_, t)| Measurement {
                seconds: Some(*t),
                error: None,
                compile_seconds: 0.0,
            })
            .collect();
        self.batches.push(batch);
        out
    }
}

fn problem() -> Problem {
    let (dag, sketches, hw) = common::problem_parts("gmm:b=1,n=64,m=64,k=64");
    Problem { dag, sketches, hw }
}

fn params(seed: u64) -> TuneParams {
    TuneParams {
        trials: 128,
        measures_per_round: 16,
        evolution: EvolutionParams {
            population: 64,
            ..EvolutionParams::default()
        },
        seed,
        ..TuneParams::default()
    }
}

#[test]
fn the_trail_holds_each_rounds_best_so_far_and_ends_with_the_final_best() {
    let p = problem();
    let mut points = 0;
    for seed in 0..4 {
        let mut m = FakeMeasurer::default();
        let trace = run_traced(
            &common::job(params(seed)),
            &p,
            Config::Baseline,
            &mut m,
            &mut FakeScorer::default(),
            None,
        );
        points += trace.trail.len();
        check_trail(&p, &trace, &m);
    }
    assert!(points > 4, "some search improves after its first round");
}

fn check_trail(p: &Problem, trace: &tessel_experiment::runs::RunTrace, m: &FakeMeasurer) {
    let last = trace.trail.last().expect("a trail");
    assert_eq!(Some(&last.steps), trace.best_steps.as_ref());
    // Rounds strictly increase and every point is the best of all batches up to its round
    // (one batch per round here: no probe without a steering policy).
    assert_eq!(m.batches.len(), trace.rounds.len());
    let mut previous = None;
    for point in &trace.trail {
        assert!(previous.is_none_or(|r| point.round > r));
        previous = Some(point.round);
        let best = m.batches[..=point.round]
            .iter()
            .flatten()
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .expect("measured");
        let state = State::replay(p.dag.clone(), &point.steps).expect("replays");
        assert_eq!(state_key(&state), best.0, "round {}", point.round);
        assert_eq!(
            trace.rounds[point.round].best_seconds,
            Some(best.1),
            "the round's best is the trail program's time"
        );
    }
    // Between trail points, the best does not change.
    for w in trace.trail.windows(2) {
        let held = &trace.rounds[w[0].round..w[1].round];
        assert!(held.iter().all(|r| r.best_seconds == held[0].best_seconds));
    }
}

#[test]
fn a_re_measured_trail_decides_time_to_reach() {
    let p = problem();
    let mut runs = Vec::new();
    for config in [Config::Baseline, Config::Rl] {
        let trace = run_traced(
            &common::job(params(5)),
            &p,
            config,
            &mut FakeMeasurer::default(),
            &mut FakeScorer::default(),
            None,
        );
        runs.push(trace);
    }
    // Re-measure every trail program with a measurer that agrees with the search.
    let programs: Vec<Option<State>> = runs
        .iter()
        .flat_map(|r| &r.trail)
        .map(|t| State::replay(p.dag.clone(), &t.steps).ok())
        .collect();
    let again = remeasure(&programs, &mut FakeMeasurer::default(), 2);
    let mut it = again.into_iter();
    for r in &mut runs {
        for t in &mut r.trail {
            t.remeasured_seconds = it.next().flatten().and_then(|m| m.seconds);
        }
    }
    let base = &runs[0];
    let target = base.final_trail_seconds().expect("re-measured");
    assert_eq!(
        Some(target),
        base.best_seconds,
        "the fake measures the same again"
    );
    // Agreeing measurements: the re-measured reach is the search's own.
    for r in &runs {
        let t = target * 1.01;
        assert_eq!(
            r.reach_remeasured(t).map(|p| p.round),
            r.reach(t).map(|p| p.round)
        );
    }
    // A trail program that re-measures slower no longer reaches: the target moves to the
    // next trail point that does.
    let mut slower = runs[0].clone();
    let first = slower
        .trail
        .iter()
        .position(|t| t.remeasured_seconds.is_some_and(|s| s <= target * 1.01))
        .expect("the final reaches");
    slower.trail[first].remeasured_seconds = Some(target * 2.0);
    let moved = slower.reach_remeasured(target * 1.01).map(|p| p.round);
    let next = slower.trail[first + 1..]
        .iter()
        .find(|t| t.remeasured_seconds.is_some_and(|s| s <= target * 1.01))
        .map(|t| t.round);
    assert_eq!(moved, next);
}
