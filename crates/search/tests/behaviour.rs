//! Behaviour preservation of the four searching commands (issue #27): with a deterministic
//! fake runner and the real cost model, the same seed gives the same candidates, in the same
//! order, as before the tuning job was introduced. Each test pins a digest (FNV-1a over the
//! step logs of every measured candidate, in measurement order) taken from the code before
//! the change; a change of search behaviour changes the digest.
//!
//! The set-ups mirror the driver's wiring: `tune` (one task, resumable tuner, policies by
//! preset), `tune-network` (the task scheduler over two tasks sharing one model) and `sample`
//! (random sampling of the sketches); `experiment` (the baseline and `both` configurations
//! in lockstep) is pinned the same way in the experiment crate's `tests/behaviour.rs`.

use std::sync::Arc;
use tessel_ir::State;
use tessel_search::testing::{pinned_target, LoggingMeasurer, PINNED_TRIALS};
use tessel_sketch::HardwareParams;

/// The deterministic fake runner of the behaviour tests.
type FakeRunner = LoggingMeasurer;

fn hw() -> HardwareParams {
    HardwareParams::for_target(&pinned_target())
}

const GMM: &str = "gmm:b=1,n=32,m=32,k=64";
const GMM2: &str = "gmm:b=1,n=16,m=64,k=32";

fn dag(spec: &str) -> Arc<tessel_ir::ComputeDag> {
    Arc::new(tessel_workloads::lookup(spec).expect("spec").dag)
}

/// The set-ups, written as the driver wires them: over one tuning job.
mod setups {
    use super::*;
    use tessel_search::scheduler::{SchedulerParams, TaskScheduler, TaskSpec};
    use tessel_search::testing::pinned_job as job;

    /// `tessel tune SPEC --policy PRESET --seed SEED`.
    pub fn tune(spec: &str, preset: &str, seed: u64, runner: &mut FakeRunner) {
        let job = job(preset, PINNED_TRIALS, seed);
        let problem = job.problem(dag(spec)).expect("sketches");
        assert_eq!(problem.hw, hw());
        let mut scorer = job.scorer(job.seed());
        job.tuner(&problem, job.seed()).run(runner, &mut scorer);
    }

    /// `tessel tune-network` over `specs` as tasks (weights 1, 2, ...).
    pub fn tune_network(specs: &[&str], seed: u64, runner: &mut FakeRunner) {
        let job = job("baseline", usize::MAX, seed);
        let mut scorer = job.scorer(job.seed());
        let tasks: Vec<TaskSpec> = specs
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let problem = job.problem(dag(spec)).expect("sketches");
                let flop = problem.dag.flop_count();
                let session = job
                    .tuner(&problem, job.seed().wrapping_add(i as u64))
                    .start(&mut scorer);
                TaskSpec::new(spec, (i + 1) as f64, flop, session).with_tag("gmm")
            })
            .collect();
        let params = SchedulerParams {
            total_trials: PINNED_TRIALS,
            measures_per_round: 16,
            seed,
            ..SchedulerParams::default()
        };
        let mut measure = |task: usize, states: &[State]| runner.run(&format!("{task}:"), states);
        TaskScheduler::new(tasks, params)
            .expect("scheduler")
            .run(&mut measure, &mut scorer);
    }

    /// `tessel sample SPEC --count N --seed SEED`: the sampled schedules.
    pub fn sample(spec: &str, count: usize, seed: u64) -> Vec<State> {
        let job = job("baseline", 1, 0);
        let problem = job.problem(dag(spec)).expect("sketches");
        job.sample(&problem, count, seed)
    }
}

#[test]
fn tune_one_task_is_unchanged() {
    let mut runner = FakeRunner::default();
    setups::tune(GMM, "baseline", 5, &mut runner);
    assert_eq!(runner.digest(), (144, 4677609683207709013), "tune baseline");
    let mut runner = FakeRunner::default();
    setups::tune(GMM, "both", 2, &mut runner);
    assert_eq!(runner.digest(), (144, 5921612032128911924), "tune both");
}

#[test]
fn tune_network_scheduling_is_unchanged() {
    let mut runner = FakeRunner::default();
    setups::tune_network(&[GMM, GMM2], 3, &mut runner);
    assert_eq!(runner.digest(), (144, 2772919646441266161));
}

#[test]
fn sample_is_unchanged() {
    let states = setups::sample(GMM, 24, 9);
    let mut runner = FakeRunner::default();
    runner.run("", &states);
    assert_eq!(runner.digest(), (24, 16719021470580367484));
}
