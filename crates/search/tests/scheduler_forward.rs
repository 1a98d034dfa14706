//! The gradient's forward guess, with fake measurers whose latency is a fixed function of
//! the task and of how many rounds it had: a cheap task that can still drop a lot gets
//! rounds rather than starving behind heavy tasks that stopped improving (Ansor's `g/t`
//! guess starves it).

use std::sync::Arc;
use tessel_ir::dag::fnv1a;
use tessel_ir::State;
use tessel_search::evolution::{state_key, EvolutionParams};
use tessel_search::scheduler::*;
use tessel_search::tuner::*;
use tessel_sketch::{generate_sketches, HardwareParams};

/// Scores are a fixed function of the step log.
struct FakeScorer;

impl Scorer for FakeScorer {
    fn predict(&mut self, states: &[State]) -> Vec<f32> {
        states
            .iter()
            .map(|s| (fnv1a(state_key(s).as_bytes()) % 1000) as f32 / 1000.0)
            .collect()
    }
    fn update(&mut self, _states: &[State], _throughputs: &[f32]) {}
}

fn session(seed: u64, scorer: &mut dyn Scorer) -> (TuneSession, u64) {
    let dag = Arc::new(
        tessel_ir::workloads::lookup("gmm:b=1,n=32,m=32,k=32")
            .expect("spec")
            .dag,
    );
    let hw = HardwareParams::with_cores(2);
    let sketches = generate_sketches(&dag, &hw).expect("sketches");
    let params = TuneParams {
        trials: usize::MAX,
        evolution: EvolutionParams {
            population: 32,
            ..EvolutionParams::default()
        },
        seed,
        ..TuneParams::default()
    };
    let flop = dag.flop_count();
    (
        Tuner::new(dag, sketches, hw).params(params).start(scorer),
        flop,
    )
}

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
    let mut scorer = FakeScorer;
    let specs: Vec<TaskSpec> = tasks
        .iter()
        .enumerate()
        .map(|(i, (w, _, _))| {
            let (s, flop) = session(i as u64, &mut scorer);
            TaskSpec::new(&format!("t{i}"), *w, flop, s)
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

fn params(total: usize) -> SchedulerParams {
    SchedulerParams {
        total_trials: total,
        measures_per_round: 4,
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
