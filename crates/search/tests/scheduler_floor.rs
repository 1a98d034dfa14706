//! The gradient's exploration floor, with fake measurers whose latency is a fixed function of
//! the task and of how many rounds it had: rounds still go to the task whose weighted
//! latency can drop most, but no live task falls below `round_floor ×` the mean rounds, so a
//! flat or cheap task still gets rounds; 0 turns the floor off (Ansor's gradient). And the
//! forward guess's room: a task already at its similarity group's best FLOP/s is guessed to
//! gain less than one far from it.

mod common;

use common::{session, FakeScorer};
use tessel_ir::State;
use tessel_search::scheduler::*;
use tessel_search::tuner::*;

/// The latency of every trial of a task's `k`-th round (from 0).
type Curve = fn(usize) -> f64;

/// A heavy task that keeps improving: 1 ms, −20 % a round.
const IMPROVING: Curve = |k| 1e-3 * 0.8f64.powi(k as i32);
/// A cheap task (1 µs) that never improves after its warm-up.
const FLAT: Curve = |_| 1e-6;
/// A task whose every candidate fails.
const FAILING: Curve = |_| 0.0;

/// Runs the gradient over tasks `(weight, curve)`, rounds of 4 trials; a latency of 0 is a
/// failed measurement.
fn run(tasks: &[(f64, Curve)], total: usize, round_floor: f64) -> SchedulerResult {
    let mut scorer = FakeScorer::default();
    let specs: Vec<TaskSpec> = tasks
        .iter()
        .enumerate()
        .map(|(i, (w, _))| {
            let (s, flop) = session("gmm:b=1,n=32,m=32,k=32", i as u64, &mut scorer);
            TaskSpec::new(&format!("t{i}"), *w, flop, s)
        })
        .collect();
    let params = SchedulerParams {
        total_trials: total,
        measures_per_round: 4,
        round_floor,
        ..SchedulerParams::default()
    };
    let mut sched = TaskScheduler::new(specs, params).expect("scheduler");
    let mut calls = vec![0usize; tasks.len()];
    let mut measurer = |task: usize, states: &[State]| {
        let seconds = (tasks[task].1)(calls[task]);
        calls[task] += 1;
        states
            .iter()
            .map(|_| Measurement {
                seconds: (seconds > 0.0).then_some(seconds),
                error: (seconds <= 0.0)
                    .then(|| MeasureError::new(ErrorClass::RuntimeCrash, "fake")),
                compile_seconds: 0.0,
            })
            .collect::<Vec<_>>()
    };
    sched.run(&mut measurer, &mut scorer)
}

/// One heavy improving task (weight 10) and five cheap flat ones.
fn network() -> Vec<(f64, Curve)> {
    let mut tasks = vec![(10.0, IMPROVING)];
    tasks.extend((0..5).map(|_| (1.0, FLAT)));
    tasks
}

#[test]
fn the_default_floor_is_0_85() {
    assert_eq!(SchedulerParams::default().round_floor, 0.85);
    assert_eq!(SchedulerParams::default().validate(), Ok(()));
}

#[test]
fn a_floor_or_forward_power_out_of_range_is_refused() {
    let mut scorer = FakeScorer::default();
    for (floor, power, name) in [
        (1.5, 1.7, "round_floor"),
        (-0.1, 1.7, "round_floor"),
        (f64::NAN, 1.7, "round_floor"),
        (0.85, 0.0, "forward_power"),
        (0.85, f64::INFINITY, "forward_power"),
    ] {
        let (s, flop) = session("gmm:b=1,n=32,m=32,k=32", 0, &mut scorer);
        let params = SchedulerParams {
            round_floor: floor,
            forward_power: power,
            ..SchedulerParams::default()
        };
        let err = TaskScheduler::new(vec![TaskSpec::new("t0", 1.0, flop, s)], params)
            .err()
            .expect("refused");
        assert!(
            matches!(err, SchedulerError::BadParam { name: n, .. } if n == name),
            "{floor} {power}: {err}"
        );
        assert!(err.to_string().contains(name), "{err}");
    }
}

#[test]
fn without_the_floor_the_flat_tasks_starve() {
    // Warm-up (6 rounds) and 24 more rounds of 4 trials: the heavy task's gradient (its
    // backward term alone is 10 × 0.2 × 0.32 × 0.8^t ms) stays above the flat ones' (0.8 µs).
    let r = run(&network(), 120, 0.0);
    assert_eq!(r.trials, 120);
    assert_eq!(r.tasks[0].rounds, 25);
    assert!(r.tasks[1..].iter().all(|t| t.rounds == 1), "{:?}", r.tasks);
}

#[test]
fn the_floor_gives_every_task_rounds_and_the_rest_to_the_largest_gain() {
    let r = run(&network(), 120, 0.85);
    assert_eq!(r.trials, 120);
    let rounds: Vec<usize> = r.tasks.iter().map(|t| t.rounds).collect();
    let total: usize = rounds.iter().sum();
    assert_eq!(total, 30);
    // Every task ends at or above 0.85 × the mean (5 rounds), less the round in flight.
    let mean = total as f64 / rounds.len() as f64;
    assert!(
        rounds.iter().all(|&k| k as f64 >= 0.85 * mean - 1.0),
        "{rounds:?}"
    );
    // The heavy task, whose weighted gain is the largest, gets the most rounds: about twice
    // a flat task's (k ≥ 0.85 × (5k + h) / 6 allows h up to 2.06 k).
    assert!(
        rounds[1..].iter().all(|&k| 2 * rounds[0] >= 3 * k),
        "{rounds:?}"
    );
    // The floor costs the heavy task rounds, but the estimate is still its latency ×10 plus
    // the flat ones'.
    let heavy = r.tasks[0].best_seconds.expect("best");
    assert_eq!(heavy, IMPROVING(rounds[0] - 1));
    let est = r.estimated_seconds.expect("estimate");
    assert!((est - (10.0 * heavy + 5e-6)).abs() < 1e-12, "{est}");
}

#[test]
fn the_floor_serves_the_fewest_rounds_first_then_by_gradient() {
    // Two flat tasks of different weights behind a heavy one: once the floor is hit, the
    // task with the fewest rounds goes first; among equals, the heavier flat task (the more
    // negative gradient).
    let tasks: Vec<(f64, Curve)> = vec![(10.0, IMPROVING), (1.0, FLAT), (3.0, FLAT)];
    let r = run(&tasks, 40, 0.85);
    let order: Vec<usize> = r.history.iter().skip(3).map(|h| h.task).collect();
    // After the warm-up (1, 1, 1) the gradient picks the heavy task: (2, 1, 1), mean 4/3,
    // floor 1.13: both flat tasks are below it, the heavier one first.
    assert_eq!(&order[..3], [0, 2, 1], "{order:?}");
    let rounds: Vec<usize> = r.tasks.iter().map(|t| t.rounds).collect();
    assert!(rounds[0] > rounds[1] && rounds[0] > rounds[2], "{rounds:?}");
}

#[test]
fn the_floor_ignores_dead_tasks() {
    // A task with no valid program dies after its warm-up; it neither counts in the mean nor
    // is served by the floor.
    let tasks: Vec<(f64, Curve)> = vec![(10.0, IMPROVING), (1.0, FLAT), (1.0, FAILING)];
    let r = run(&tasks, 60, 0.85);
    assert_eq!(r.tasks[2].rounds, 1);
    assert_eq!(r.tasks[0].rounds + r.tasks[1].rounds, 14);
    assert!(r.tasks[1].rounds >= 3, "{:?}", r.tasks);
}

/// Runs the gradient alone (no floor) over tasks `(weight, latency)` of the same workload
/// and similarity tag (one group), constant latencies; the order of the rounds after the
/// warm-up.
fn order_in_one_group(tasks: &[(f64, f64)], total: usize, group_room: bool) -> Vec<usize> {
    let mut scorer = FakeScorer::default();
    let specs: Vec<TaskSpec> = tasks
        .iter()
        .enumerate()
        .map(|(i, (w, _))| {
            let (s, flop) = session("gmm:b=1,n=32,m=32,k=32", i as u64, &mut scorer);
            TaskSpec::new(&format!("t{i}"), *w, flop, s).with_tag("batch_matmul")
        })
        .collect();
    let params = SchedulerParams {
        total_trials: total,
        measures_per_round: 4,
        round_floor: 0.0,
        group_room,
        ..SchedulerParams::default()
    };
    let mut sched = TaskScheduler::new(specs, params).expect("scheduler");
    assert_eq!(sched.similarity_groups(), [vec![0, 1]]);
    let latencies: Vec<f64> = tasks.iter().map(|t| t.1).collect();
    let mut measurer = |task: usize, states: &[State]| {
        states
            .iter()
            .map(|_| Measurement {
                seconds: Some(latencies[task]),
                error: None,
                compile_seconds: 0.0,
            })
            .collect::<Vec<_>>()
    };
    let r = sched.run(&mut measurer, &mut scorer);
    r.history
        .iter()
        .filter(|h| !h.warmup)
        .map(|h| h.task)
        .collect()
}

#[test]
fn the_room_favours_the_task_far_from_its_groups_best() {
    // Same FLOPs: task 0 (weight 3, 1 ms) runs at the group's best; task 1 (weight 1, 2 ms)
    // at half of it. Ansor's guess sees 3 ms against 2 ms of weighted latency and tunes
    // task 0; the room (0 against 1 ms) tunes task 1.
    let tasks = [(3.0, 1e-3), (1.0, 2e-3)];
    assert_eq!(order_in_one_group(&tasks, 12, false), [0]);
    assert_eq!(order_in_one_group(&tasks, 12, true), [1]);
    // Both constant: task 1's gradient is −0.8 · 1 ms / t^1.7, task 0's 0 (no room, no
    // backward slope): every round goes to task 1.
    assert_eq!(order_in_one_group(&tasks, 24, true), [1, 1, 1, 1]);
    // The default is the room.
    assert!(SchedulerParams::default().group_room);
}
