//! The task scheduler with deterministic fake measurers (per-task latencies) and a fake
//! model: the gradient strategy favours the task whose weighted latency can drop most,
//! round-robin splits evenly, dead tasks get no more trials; and every task of every
//! built-in network can be tuned (it has sketches, and a sampled program lowers).

mod common;

use common::{session, FakeScorer};
use std::sync::Arc;
use tessel_ir::dag::fnv1a;
use tessel_ir::State;
use tessel_search::evolution::state_key;
use tessel_search::scheduler::*;
use tessel_search::tuner::*;
use tessel_sketch::{generate_sketches, sample_initial, HardwareParams};
use tessel_workloads::networks;

/// How a fake task behaves.
#[derive(Clone, Copy)]
enum Fake {
    /// `base × (1 + h/100)`, `h` a hash of the step log in `0..1000`: improves by luck.
    Varied(f64),
    /// Always `base`: never improves after its first round.
    Constant(f64),
    /// Every candidate fails.
    Failing,
}

fn measure(fake: Fake, states: &[State]) -> Vec<Measurement> {
    states
        .iter()
        .map(|s| {
            let h = fnv1a(state_key(s).as_bytes()) % 1000;
            let seconds = match fake {
                Fake::Varied(base) => Some(base * (1.0 + h as f64 / 100.0)),
                Fake::Constant(base) => Some(base),
                Fake::Failing => None,
            };
            Measurement {
                seconds,
                error: seconds
                    .is_none()
                    .then(|| MeasureError::new(ErrorClass::RuntimeCrash, "fake")),
                compile_seconds: 0.0,
            }
        })
        .collect()
}

/// Runs a scheduler over tasks `(weight, fake)` (all the same 32×32×32 matmul).
fn run(
    tasks: &[(f64, Fake)],
    params: SchedulerParams,
) -> (SchedulerResult, Vec<SchedulerRound>, Vec<f64>) {
    let mut scorer = FakeScorer::default();
    let specs: Vec<TaskSpec> = tasks
        .iter()
        .enumerate()
        .map(|(i, (w, _))| {
            let (s, flop) = session("gmm:b=1,n=32,m=32,k=32", i as u64, &mut scorer);
            TaskSpec::new(&format!("t{i}"), *w, flop, s)
        })
        .collect();
    let mut seen = Vec::new();
    let mut sched = TaskScheduler::new(specs, params)
        .expect("scheduler")
        .on_round(|r| seen.push(r.clone()));
    let fakes: Vec<Fake> = tasks.iter().map(|t| t.1).collect();
    let mut measurer = |task: usize, states: &[State]| measure(fakes[task], states);
    let result = sched.run(&mut measurer, &mut scorer);
    let grads = sched.gradients();
    drop(sched);
    assert!(!scorer.updates.is_empty(), "the shared model is trained");
    (result, seen, grads)
}

/// The gradient alone, without the exploration floor (see tests/scheduler_floor.rs).
fn params(strategy: Strategy, total: usize) -> SchedulerParams {
    SchedulerParams {
        strategy,
        total_trials: total,
        measures_per_round: 4,
        round_floor: 0.0,
        ..SchedulerParams::default()
    }
}

#[test]
fn gradient_gives_more_trials_to_the_heavier_task() {
    let tasks = [(10.0, Fake::Varied(1e-3)), (1.0, Fake::Varied(1e-3))];
    let (r, rounds, _) = run(&tasks, params(Strategy::Gradient, 160));
    assert_eq!(r.trials, 160);
    assert_eq!(r.stop_reason, SchedulerStop::TrialBudget);
    let (a, b) = (r.tasks[0].trials, r.tasks[1].trials);
    assert!(a > 3 * b, "weight 10: {a} trials, weight 1: {b}");
    assert!(b >= 4, "the warm-up tunes every task once");
    // Warm-up: one round per task, in order.
    assert!(rounds[0].warmup && rounds[1].warmup && !rounds[2].warmup);
    assert_eq!((rounds[0].task, rounds[1].task), (0, 1));
    assert_eq!(rounds.len(), r.history.len());
    assert_eq!(rounds, r.history);
    // The objective is Σ w·best and never gets worse.
    let obj: Vec<f64> = r.history.iter().filter_map(|h| h.objective).collect();
    assert!(obj.windows(2).all(|w| w[1] <= w[0]), "{obj:?}");
    let want =
        10.0 * r.tasks[0].best_seconds.expect("best") + r.tasks[1].best_seconds.expect("best");
    assert_eq!(r.estimated_seconds, Some(want));
    assert_eq!(obj.last().copied(), Some(want));
}

#[test]
fn gradient_favours_the_slower_task_at_equal_weights() {
    let tasks = [(1.0, Fake::Varied(1e-4)), (1.0, Fake::Varied(2e-3))];
    let (r, _, _) = run(&tasks, params(Strategy::Gradient, 120));
    let (a, b) = (r.tasks[0].trials, r.tasks[1].trials);
    assert!(b > 3 * a, "fast task: {a} trials, slow task: {b}");
}

#[test]
fn after_the_warm_up_the_gradient_is_minus_0_8_weighted_latency() {
    // A budget of exactly one round per task: the warm-up only. With one round each, the
    // backward term is 0 and forward = (g - g/1) - g = -g: grad = -(1 - α)·w·g.
    let tasks = [(3.0, Fake::Varied(1e-3)), (1.0, Fake::Varied(5e-3))];
    let (r, _, grads) = run(&tasks, params(Strategy::Gradient, 8));
    assert!(r.history.iter().all(|h| h.warmup));
    for (k, (w, _)) in tasks.iter().enumerate() {
        let best = r.tasks[k].best_seconds.expect("best");
        let want = -0.8 * w * best;
        assert!(
            (grads[k] - want).abs() < 1e-12,
            "{k}: {} vs {want}",
            grads[k]
        );
    }
}

#[test]
fn round_robin_splits_evenly() {
    let tasks = [
        (10.0, Fake::Varied(1e-3)),
        (1.0, Fake::Varied(1e-3)),
        (1.0, Fake::Varied(5e-3)),
    ];
    let (r, _, _) = run(&tasks, params(Strategy::RoundRobin, 120));
    let trials: Vec<usize> = r.tasks.iter().map(|t| t.trials).collect();
    assert_eq!(trials, [40, 40, 40]);
    let order: Vec<usize> = r.history.iter().map(|h| h.task).collect();
    assert_eq!(&order[..6], [0, 1, 2, 0, 1, 2]);
}

#[test]
fn a_task_without_valid_programs_dies_after_the_warm_up() {
    let tasks = [
        (1.0, Fake::Varied(1e-3)),
        (5.0, Fake::Failing),
        (1.0, Fake::Varied(1e-3)),
    ];
    for strategy in [Strategy::Gradient, Strategy::RoundRobin] {
        let (r, _, grads) = run(&tasks, params(strategy, 96));
        assert_eq!(r.tasks[1].dead, Some(DeathReason::NoValidProgram));
        assert_eq!(r.tasks[1].trials, 4, "only its warm-up round");
        assert_eq!(r.tasks[1].rounds, 1);
        assert_eq!(r.trials, 96, "the others get the rest of the budget");
        assert_eq!(r.tasks[0].trials + r.tasks[2].trials, 92);
        assert_eq!(grads[1], 0.0);
        assert_eq!(r.estimated_seconds, None, "no latency for the network");
        assert!(r.history.iter().skip(3).all(|h| h.task != 1));
        assert_eq!(r.history[1].died, Some(DeathReason::NoValidProgram));
    }
}

#[test]
fn a_task_that_stops_improving_dies_by_early_stopping() {
    let tasks = [(100.0, Fake::Constant(1e-3)), (1.0, Fake::Varied(1e-3))];
    let p = SchedulerParams {
        per_task_early_stopping: Some(8),
        ..params(Strategy::Gradient, 100)
    };
    let (r, _, _) = run(&tasks, p);
    // Its weight makes it the gradient's favourite, but after its best (first round) it
    // dies once more than 8 trials passed without improvement: after its 4th round of 4
    // (12 trials since its best), as TVM's `(task_cts - task_best_cts) * per_round > 8`.
    assert_eq!(r.tasks[0].dead, Some(DeathReason::EarlyStopping));
    assert_eq!(r.tasks[0].trials, 16);
    // No round for it after the one that killed it; the other task (which may stop
    // improving too) gets the rest.
    let death = r
        .history
        .iter()
        .position(|h| h.task == 0 && h.died.is_some())
        .expect("a round killed task 0");
    assert_eq!(r.history[death].died, Some(DeathReason::EarlyStopping));
    assert!(r.history[death + 1..].iter().all(|h| h.task == 1));
    assert_eq!(r.trials, r.tasks[0].trials + r.tasks[1].trials);
    assert!(r.tasks[1].trials > 4, "{}", r.tasks[1].trials);
}

#[test]
fn all_tasks_dead_ends_the_run_early() {
    let tasks = [(1.0, Fake::Failing), (1.0, Fake::Failing)];
    let (r, _, _) = run(&tasks, params(Strategy::Gradient, 1000));
    assert_eq!(r.stop_reason, SchedulerStop::AllTasksDead);
    assert_eq!(r.trials, 8);
}

#[test]
fn per_round_size_and_setup_errors() {
    let mut scorer = FakeScorer::default();
    let mk = |scorer: &mut FakeScorer, w: f64| {
        let (s, flop) = session("gmm:b=1,n=16,m=16,k=16", 0, scorer);
        TaskSpec::new("t", w, flop, s).with_tag("batch_matmul")
    };
    let tasks = vec![
        mk(&mut scorer, 1.0),
        mk(&mut scorer, 1.0),
        mk(&mut scorer, 1.0),
    ];
    let p = SchedulerParams {
        total_trials: 30,
        ..SchedulerParams::default()
    };
    let sched = TaskScheduler::new(tasks, p).expect("scheduler");
    assert_eq!(sched.per_round(), 10, "min(64, 30 / 3)");
    assert_eq!(sched.similarity_groups(), [vec![0, 1, 2]]);
    assert!(matches!(
        TaskScheduler::new(Vec::new(), SchedulerParams::default()),
        Err(SchedulerError::NoTasks)
    ));
    let bad = vec![mk(&mut scorer, f64::NAN)];
    assert!(matches!(
        TaskScheduler::new(bad, SchedulerParams::default()),
        Err(SchedulerError::BadWeight { .. })
    ));
    assert_eq!("round-robin".parse::<Strategy>(), Ok(Strategy::RoundRobin));
    assert!("greedy".parse::<Strategy>().is_err());
}

#[test]
fn every_task_of_every_network_can_be_tuned() {
    let hw = HardwareParams::with_cores(2);
    let mut rng = tessel_ir::rng::seeded(0);
    for name in networks::NAMES {
        let net = networks::lookup(name, 1).expect("network");
        for t in networks::extract_tasks(&net).expect("tasks") {
            let dag = Arc::new(t.dag.clone());
            let sketches =
                generate_sketches(&dag, &hw).unwrap_or_else(|e| panic!("{}: {e}", t.name));
            assert!(!sketches.is_empty(), "{}", t.name);
            let state = sketches
                .iter()
                .find_map(|s| sample_initial(s, &hw, &mut rng))
                .unwrap_or_else(|| panic!("{}: no program sampled", t.name));
            tessel_ir::lower::lower(&state).unwrap_or_else(|e| panic!("{}: {e}", t.name));
        }
    }
}

#[test]
fn the_run_stops_when_the_objective_stops_improving() {
    let tasks = [(1.0, Fake::Constant(1e-3)), (2.0, Fake::Constant(1e-3))];
    let p = SchedulerParams {
        early_stopping: Some(8),
        ..params(Strategy::Gradient, 1000)
    };
    let (r, _, _) = run(&tasks, p);
    // The warm-up sets the objective (3 ms); two more rounds of 4 without improvement.
    assert_eq!(r.stop_reason, SchedulerStop::EarlyStopping);
    assert_eq!(r.trials, 16);
    assert_eq!(r.estimated_seconds, Some(3e-3));
}

#[test]
fn stepping_round_by_round_is_the_same_run_and_keeps_its_stop_reason() {
    let tasks = [(3.0, Fake::Varied(1e-3)), (1.0, Fake::Varied(2e-3))];
    let p = params(Strategy::Gradient, 64);
    let (whole, _, _) = run(&tasks, p.clone());
    let mut scorer = FakeScorer::default();
    let specs: Vec<TaskSpec> = (0..2)
        .map(|i| {
            let (s, flop) = session("gmm:b=1,n=32,m=32,k=32", i as u64, &mut scorer);
            TaskSpec::new(&format!("t{i}"), tasks[i].0, flop, s)
        })
        .collect();
    let mut sched = TaskScheduler::new(specs, p).expect("scheduler");
    let mut measurer = |task: usize, states: &[State]| measure(tasks[task].1, states);
    let mut steps = 0;
    let stop = loop {
        match sched.step(&mut measurer, &mut scorer) {
            Some(stop) => break stop,
            None => steps += 1,
        }
        assert_eq!(sched.trials(), 4 * steps, "one round of 4 per step");
    };
    assert_eq!(stop, SchedulerStop::TrialBudget);
    assert_eq!(steps, whole.history.len());
    // A stopped scheduler tunes nothing more.
    assert_eq!(sched.step(&mut measurer, &mut scorer), Some(stop));
    let stepped = sched.result(stop);
    assert_eq!(stepped.trials, 64);
    let picks = |r: &SchedulerResult| {
        r.history
            .iter()
            .map(|h| (h.task, h.objective))
            .collect::<Vec<_>>()
    };
    assert_eq!(picks(&stepped), picks(&whole));
}
