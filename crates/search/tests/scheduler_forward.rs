//! The gradient's forward guess and resuming, with fake measurers whose latency is a fixed
//! function of the task and of how many rounds it had: a cheap task that can still drop a
//! lot gets rounds rather than starving behind heavy tasks that stopped improving (Ansor's
//! `g/t` guess starves it); resumed trials give a task its rounds and history.

mod common;

use common::{session, FakeScorer};
use tessel_ir::State;
use tessel_search::scheduler::*;
use tessel_search::tuner::*;

/// The latency of every trial of a task's `k`-th round (from 0).
type Curve = fn(usize) -> f64;

/// Heavy tasks (1 ms) never improve; a cheap one (0.2 ms) halves every round.
const HEAVY: Curve = |_| 1e-3;
const CHEAP: Curve = |k| 2e-4 * 0.5f64.powi(k as i32);

/// Runs the gradient over tasks `(weight, curve, resumed latencies)`.
fn run(
    tasks: &[(f64, Curve, Vec<Option<f64>>)],
    params: SchedulerParams,
) -> (SchedulerResult, Vec<f64>) {
    let mut scorer = FakeScorer::default();
    let specs: Vec<TaskSpec> = tasks
        .iter()
        .enumerate()
        .map(|(i, (w, _, resumed))| {
            let (s, flop) = session("gmm:b=1,n=32,m=32,k=32", i as u64, &mut scorer);
            TaskSpec::new(&format!("t{i}"), *w, flop, s).with_resumed(resumed.clone())
        })
        .collect();
    let mut sched = TaskScheduler::new(specs, params).expect("scheduler");
    let before = sched.gradients();
    let mut calls = vec![0usize; tasks.len()];
    let mut measurer = |task: usize, states: &[State]| {
        let seconds = (tasks[task].1)(calls[task]);
        calls[task] += 1;
        states
            .iter()
            .map(|_| Measurement {
                seconds: Some(seconds),
                error: None,
                compile_seconds: 0.0,
            })
            .collect::<Vec<_>>()
    };
    let result = sched.run(&mut measurer, &mut scorer);
    (result, before)
}

/// The gradient alone, without the exploration floor (see tests/scheduler_floor.rs).
fn params(total: usize) -> SchedulerParams {
    SchedulerParams {
        total_trials: total,
        measures_per_round: 4,
        round_floor: 0.0,
        ..SchedulerParams::default()
    }
}

fn network() -> Vec<(f64, Curve, Vec<Option<f64>>)> {
    let mut tasks: Vec<(f64, Curve, Vec<Option<f64>>)> =
        (0..4).map(|_| (1.0, HEAVY, Vec::new())).collect();
    tasks.push((1.0, CHEAP, Vec::new()));
    tasks
}

#[test]
fn a_cheap_task_that_keeps_improving_gets_rounds() {
    // Warm-up (5 rounds) and 12 more rounds of 4 trials.
    let (r, _) = run(&network(), params(68));
    assert_eq!(r.trials, 68);
    // The guess of a heavy task with t rounds is 1 ms / t^1.7, of the cheap one 0.2 ms:
    // each heavy task gets a 2nd and a 3rd round (guesses 1 and 0.31 ms), then (0.15 ms)
    // the cheap task gets its 2nd, which halves it; its guess is then 0.1 ms / 2^1.7 and the
    // heavy ones go on.
    let order: Vec<usize> = r.history.iter().skip(5).map(|h| h.task).collect();
    assert_eq!(order, [0, 1, 2, 3, 0, 1, 2, 3, 4, 0, 1, 2]);
    let cheap = &r.tasks[4];
    assert_eq!(cheap.rounds, 2);
    assert_eq!(cheap.best_seconds, Some(1e-4));
    // Ansor's guess (1 ms / t against 0.2 ms) gives every heavy task 4 more rounds first
    // (16 rounds): the cheap task, the only one that can still improve, starves.
    let ansor = SchedulerParams {
        forward_power: 1.0,
        ..params(68)
    };
    let (a, _) = run(&network(), ansor);
    assert_eq!(a.tasks[4].rounds, 1, "only its warm-up round");
    let (est, ansor_est) = (r.estimated_seconds.expect("est"), a.estimated_seconds);
    assert!(
        est < ansor_est.expect("est") - 0.5e-4,
        "{est} vs {ansor_est:?}"
    );
}

#[test]
fn resumed_trials_become_rounds_and_history() {
    // Task 0 resumes 10 trials (rounds of 4: 4 + 4 + 2), its best after each round
    // 3, 2 and 2 ms (one failed trial); task 1 resumes only failures, so it gets a warm-up.
    let ms = |x: f64| Some(x * 1e-3);
    let resumed0 = vec![
        ms(4.0),
        ms(3.0),
        None,
        ms(5.0),
        ms(2.0),
        ms(2.5),
        ms(6.0),
        ms(2.2),
        ms(3.0),
        ms(2.1),
    ];
    let tasks: Vec<(f64, Curve, Vec<Option<f64>>)> =
        vec![(4.0, |_| 1e-3, resumed0), (1.0, |_| 1e-3, vec![None, None])];
    let p = SchedulerParams {
        backward_window: 2,
        ..params(8)
    };
    let (r, before) = run(&tasks, p);
    // Task 0: 3 rounds, backward (2 − 3) / 2 ms per round, forward −2 ms / 3^1.7.
    let power = SchedulerParams::default().forward_power;
    assert_eq!(power, 1.7);
    let want = 4.0 * (0.2 * (2e-3 - 3e-3) / 2.0 + 0.8 * -(2e-3 / 3f64.powf(power)));
    assert!((before[0] - want).abs() < 1e-15, "{} vs {want}", before[0]);
    // Task 1 has no valid program yet: its guess is the huge missing latency.
    assert!(before[1] < -1e9);
    // Only task 1 gets a warm-up round (1 ms); the next round is task 0's (gradient
    // −1.4 ms against task 1's −0.8 · 1 ms), which brings it to 1 ms.
    assert_eq!(r.history.len(), 2);
    assert!(r.history[0].warmup && r.history[0].task == 1);
    assert!(!r.history[1].warmup && r.history[1].task == 0);
    assert_eq!(r.trials, 8);
    assert_eq!(r.tasks[0].best_seconds, Some(1e-3));
    assert_eq!(r.tasks[0].rounds, 3 + r.tasks[0].trials / 4);
    assert_eq!(r.tasks[1].rounds, 1 + (r.tasks[1].trials - 4) / 4);
}

#[test]
fn without_resumed_trials_the_warm_up_is_round_robin() {
    let (r, before) = run(&network(), params(20));
    assert!(r.history.iter().all(|h| h.warmup));
    let order: Vec<usize> = r.history.iter().map(|h| h.task).collect();
    assert_eq!(order, [0, 1, 2, 3, 4]);
    assert!(
        before.iter().all(|&g| g < -1e9),
        "no program yet: {before:?}"
    );
}
