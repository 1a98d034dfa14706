//! The task scheduler of a whole network (ANSOR.md §7): splits one trial budget over the
//! tasks of a network, one tuning round at a time.
//!
//! Every task is a [`TuneSession`] (its own search state) with a weight (how often it occurs
//! in the network) and its FLOPs. The objective is the estimated network latency
//! `f = Σ wᵢ·gᵢ`, with `gᵢ` the best latency of task `i`. One "time unit" is one round of one
//! task with `min(measures_per_round, total_trials / #tasks)` measurements. After a
//! warm-up of one round per task (round-robin), the scheduler repeatedly tunes
//!
//! * [`Strategy::Gradient`] (Ansor's default): the live task with the most negative
//!   `∂f/∂tᵢ ≈ wᵢ·(α·backward + (1−α)·forward)`, where `backward` is the slope of the task's
//!   best latency over its last `backward_window` rounds and `forward = min(gᵢ − rᵢ/tᵢᵖ,
//!   β·flopᵢ / max_{j∈similar} flopⱼ/gⱼ) − gᵢ` is an optimistic guess of the next round
//!   (α = 0.2, β = 2, window 3, p = 1.7), `rᵢ` the task's room (below); uniformly at random
//!   when all are equal; but first, any live task below the exploration floor (below);
//! * [`Strategy::RoundRobin`]: the live tasks in turn.
//!
//! Tessel-specific: the forward guess. Ansor's is `gᵢ − gᵢ/tᵢ` (p = 1): a task with `t`
//! rounds is guessed to lose `1/t` of its latency in its next round, so a 3rd round is
//! guessed half as fruitful as a 2nd, and rounds go roughly in proportion to `wᵢ·gᵢ`
//! whatever they bring. On ResNet-50 (two recorded 5,400-trial runs in which all 27 tasks
//! had a 2nd and a 3rd round) the mean relative gain of a task's 2nd round was 13% and 27%,
//! of its 3rd 4% and 9%: a ratio of 0.31 and 0.34, i.e. `2^−p` with p ≈ 1.6–1.7; over the
//! 4th–12th rounds that Ansor's guess gave its favourites, 0.3%. The big convolutions kept
//! getting rounds that found nothing while cheap tasks far from their best (maxpool,
//! dense: −60% in a 2nd round) never had one. With p = 1.7 a 2nd round of most tasks comes
//! before a 3rd of the heaviest, and rounds still go to the heavier tasks (about as
//! `(wᵢ·gᵢ)^(1/p)`). Replayed on those runs' curves (`examples/schedule_replay.rs`), the
//! estimate at 5,400 trials is 0.5 and 2.0 ms lower than with p = 1 (p = 2: 0.9 and 2.3).
//! [`SchedulerParams::forward_power`] = 1 restores Ansor's guess.
//!
//! Tessel-specific: the exploration floor ([`SchedulerParams::round_floor`], default 0.85).
//! A live task with fewer rounds than `0.85 ×` the mean rounds of the live tasks is tuned
//! before the gradient is asked (the fewest rounds first, then the most negative gradient),
//! so no task starves: with the gradient alone, the cheap tasks of ResNet-50 (avgpool,
//! maxpool, dense: 0.06–0.35 ms to gain in a 2nd round) never had a round after the warm-up,
//! and the heaviest convolution had its 4th and 5th before they had their 2nd. What a round
//! finds is hardly predictable from a task's own history: in one recorded run, 4 tasks whose
//! 2nd round found nothing found something in their 3rd, and estimates of the next gain
//! from the observed gains (smoothed per task, or pooled over tasks by round) did worse in
//! replay than the guess above. With few tasks the floor is close to round-robin (two tasks:
//! the lighter one keeps at least 74% of the heavier one's rounds); with ResNet-50's 27, the
//! favourite can have about 5× the mean.
//!
//! Tessel-specific: the room ([`SchedulerParams::group_room`], default on). Ansor's guess
//! removes `1/tᵖ` of the whole latency (`rᵢ = gᵢ`), so two tasks of the same weighted latency
//! look alike even when one already runs at the best FLOP/s of its similarity group and the
//! other at half of it. The room is the part the group shows to be removable:
//! `rᵢ = max(0, gᵢ − flopᵢ / max_{j∈similar} flopⱼ/gⱼ)` (`gᵢ` for a task without group). On
//! the recorded runs the 2nd-round gain of most convolutions was 0.6–0.9× their room in one
//! run, and the 3 tasks with the most room had the 3 largest 2nd-round gains in the other; a
//! task at its group's best gets its rounds from the backward term and the floor.
//!
//! Replayed on recorded ResNet-50 runs (`examples/schedule_replay.rs`, 5,400 trials, two
//! pairs of runs sharing their 1,728-trial warm-up), round-robin's final estimate is reached
//! after 0.79× and 0.95× its trials with floor and room, 0.85× and 0.95× with the floor alone,
//! 0.97× and never with the gradient alone (p = 1.7), never with Ansor's gradient; floors
//! from 0.8 to 0.9 give 0.79–0.83× and 0.94–0.97×. A clairvoyant allocation would need 0.68×
//! and 0.64×. Those curves end where the recorded runs stopped (mostly 3 rounds a task,
//! round-robin's share; a strategy gains nothing past them), which favours allocations
//! close to round-robin's. `round_floor` = 0 with `group_room` = false restores the gradient
//! alone, and with `forward_power` = 1 Ansor's.
//!
//! Resuming: the latencies of a task's earlier trials ([`TaskSpec::with_resumed`]), cut into
//! rounds of this run's round size, become its first rounds and their history, so the
//! gradient continues where the previous run stopped; such a task gets no warm-up round.
//! `total_trials` counts the trials of this run only.
//!
//! A task dies (gets no more rounds) when it has no valid program after the warm-up, when a
//! round (retried once) finds nothing new to measure, when it saw no improvement for more
//! than `per_task_early_stopping` trials, or when its session stops by its own budget. The
//! scheduler stops when the budget is spent, every task is dead, or the objective did not
//! improve for `early_stopping` trials. Similarity groups: tasks with the same tag and the
//! same integer part of `log_1.618(flop + 1)`; a task leaves its group when, after more than
//! 5 rounds beyond every other member, its FLOP/s is still below the group's best / β.
//!
//! One cost model ([`Scorer`]) is shared by all tasks: the same `&mut dyn Scorer` is passed
//! to every session's round.
//!
//! ```
//! use std::sync::Arc;
//! use tessel_search::evolution::EvolutionParams;
//! use tessel_search::scheduler::*;
//! use tessel_search::tuner::*;
//! use tessel_sketch::{generate_sketches, HardwareParams};
//! # struct Fixed; impl Measurer for Fixed { fn measure(&mut self, s: &[tessel_ir::State]) -> Vec<Measurement> {
//! #   s.iter().map(|_| Measurement { seconds: Some(1e-3), error: None, compile_seconds: 0.0 }).collect() } }
//! # struct Flat; impl Scorer for Flat { fn predict(&mut self, s: &[tessel_ir::State]) -> Vec<f32> { vec![0.0; s.len()] }
//! #   fn update(&mut self, _: &[tessel_ir::State], _: &[f32]) {} }
//! let hw = HardwareParams::with_cores(2);
//! let mut scorer = Flat;
//! let tasks: Vec<TaskSpec> = ["gmm:b=1,n=16,m=16,k=16", "gmm:b=1,n=16,m=32,k=16"]
//!     .iter()
//!     .map(|spec| {
//!         let w = tessel_workloads::lookup(spec).unwrap();
//!         let dag = Arc::new(w.dag);
//!         let params = TuneParams {
//!             trials: usize::MAX,
//!             evolution: EvolutionParams { population: 16, ..EvolutionParams::default() },
//!             ..TuneParams::default()
//!         };
//!         let tuner = Tuner::new(dag.clone(), generate_sketches(&dag, &hw).unwrap(), hw.clone());
//!         let session = tuner.params(params).start(&mut scorer);
//!         TaskSpec::new(spec, 1.0, dag.flop_count(), session)
//!     })
//!     .collect();
//! let params = SchedulerParams { total_trials: 16, measures_per_round: 4, ..SchedulerParams::default() };
//! let mut sched = TaskScheduler::new(tasks, params).unwrap();
//! let mut measurer = |_task: usize, states: &[tessel_ir::State]| Fixed.measure(states);
//! let result = sched.run(&mut measurer, &mut scorer);
//! assert_eq!(result.trials, 16);
//! assert_eq!(result.estimated_seconds, Some(2e-3));
//! ```

use crate::tuner::{
    ErrorClass, MeasureError, Measurement, Measurer, Scorer, StopReason, TuneSession,
};
use rand::RngExt;
use serde::Serialize;
use tessel_ir::rng::{seeded, TesselRng};
use tessel_ir::State;

/// The latency the gradient uses for a task without a valid program (TVM's `1e10`).
const MISSING: f64 = 1e10;

/// Base of the FLOP buckets of similarity groups (the golden ratio, as TVM).
const LOG_BASE: f64 = 1.618;

/// How the next task to tune is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Ansor's gradient-based allocation (the default), with Tessel's forward guess and
    /// exploration floor ([`SchedulerParams::forward_power`], [`SchedulerParams::round_floor`]).
    Gradient,
    /// The live tasks in turn.
    RoundRobin,
}

impl std::str::FromStr for Strategy {
    type Err = SchedulerError;
    fn from_str(s: &str) -> Result<Strategy, SchedulerError> {
        match s {
            "gradient" => Ok(Strategy::Gradient),
            "round-robin" | "roundrobin" | "rr" => Ok(Strategy::RoundRobin),
            other => Err(SchedulerError::UnknownStrategy(other.to_string())),
        }
    }
}

/// Parameters of the task scheduler (Ansor's defaults, ANSOR.md §7 and §9).
#[derive(Clone, Debug)]
pub struct SchedulerParams {
    /// Gradient (default) or round-robin.
    pub strategy: Strategy,
    /// Measurements over all tasks.
    pub total_trials: usize,
    /// Measurements per round (64); a round measures
    /// `min(measures_per_round, total_trials / #tasks)` (at least 1).
    pub measures_per_round: usize,
    /// Weight of the backward gradient (0.2).
    pub alpha: f64,
    /// Optimism of the similarity-based forward guess, and the slack of similarity groups (2).
    pub beta: f64,
    /// Rounds over which the backward gradient is taken (3).
    pub backward_window: usize,
    /// A task dies after more than this many of its trials without improvement.
    pub per_task_early_stopping: Option<usize>,
    /// Stop after this many trials without improvement of the objective (once every task
    /// has a valid program).
    pub early_stopping: Option<usize>,
    /// Seed of the random choice among equal gradients.
    pub seed: u64,
    /// Stop starting rounds after this much wall time (the round in flight finishes).
    pub time_budget: Option<std::time::Duration>,
    /// The forward guess of a task with `t` rounds is that its next round removes
    /// `1/t^forward_power` of its best latency: 1 is Ansor's `gᵢ − gᵢ/tᵢ`; Tessel's default
    /// is 1.7 (see the module docs).
    pub forward_power: f64,
    /// Exploration floor of the gradient strategy: a live task whose rounds fall below
    /// `round_floor ×` the mean rounds of the live tasks is tuned before any other (the one
    /// with the fewest rounds first, then by gradient). 0 turns the floor off (Ansor's
    /// gradient); 1 keeps every task within one round of the mean (close to round-robin).
    /// Tessel's default is 0.85 (see the module docs).
    pub round_floor: f64,
    /// The forward guess removes `1/tᵖ` of a task's *room* rather than of its whole
    /// latency: its latency minus the latency it would have at the best FLOP/s of its
    /// similarity group (its whole latency when it has no group). Tessel's default (true);
    /// false is Ansor's guess (see the module docs).
    pub group_room: bool,
}

impl Default for SchedulerParams {
    fn default() -> SchedulerParams {
        SchedulerParams {
            strategy: Strategy::Gradient,
            total_trials: 1000,
            measures_per_round: 64,
            alpha: 0.2,
            beta: 2.0,
            backward_window: 3,
            per_task_early_stopping: None,
            early_stopping: None,
            seed: 0,
            time_budget: None,
            forward_power: 1.7,
            round_floor: 0.85,
            group_room: true,
        }
    }
}

/// Errors in setting up a scheduler.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SchedulerError {
    /// There is nothing to schedule.
    #[error("the task scheduler needs at least one task")]
    NoTasks,
    /// A weight is negative or not finite.
    #[error("task `{task}` has an invalid weight {weight} (must be finite and >= 0)")]
    BadWeight {
        /// The task's name.
        task: String,
        /// Its weight.
        weight: f64,
    },
    /// A strategy name that is neither `gradient` nor `round-robin`.
    #[error("unknown task-scheduler strategy `{0}` (use `gradient` or `round-robin`)")]
    UnknownStrategy(String),
    /// A scheduler parameter out of its range.
    #[error("scheduler parameter `{name}` is {value}; it must be {expected}")]
    BadParam {
        /// The parameter's name in [`SchedulerParams`].
        name: &'static str,
        /// The value given.
        value: f64,
        /// The range it must be in.
        expected: &'static str,
    },
}

impl SchedulerParams {
    /// Checks the parameters that have a range: `round_floor` in `0..=1` and `forward_power`
    /// positive, both finite.
    pub fn validate(&self) -> Result<(), SchedulerError> {
        let checks = [
            (
                "round_floor",
                self.round_floor,
                (0.0..=1.0).contains(&self.round_floor),
                "a number from 0 to 1",
            ),
            (
                "forward_power",
                self.forward_power,
                self.forward_power > 0.0,
                "a positive number",
            ),
        ];
        match checks
            .into_iter()
            .find(|(_, value, ok, _)| !(value.is_finite() && *ok))
        {
            Some((name, value, _, expected)) => Err(SchedulerError::BadParam {
                name,
                value,
                expected,
            }),
            None => Ok(()),
        }
    }
}

/// One task to schedule: its search session and what the objective needs.
pub struct TaskSpec {
    /// Name, as reported.
    pub name: String,
    /// Occurrences in the network (the weight of its latency in the objective).
    pub weight: f64,
    /// FLOPs of one run (for similarity groups).
    pub flop: u64,
    /// Similarity tag (e.g. the anchor op's kind, `conv2d`); `None` puts the task in no
    /// group. The FLOP bucket is appended by the scheduler.
    pub tag: Option<String>,
    /// The task's tuning session; give it a trial budget of at least the scheduler's.
    pub session: TuneSession,
    /// Latencies of the task's earlier trials (resumed records, `None` when failed), in
    /// measurement order: they become its first rounds (see [`TaskSpec::with_resumed`]).
    pub resumed: Vec<Option<f64>>,
}

impl TaskSpec {
    /// A task without similarity tag.
    pub fn new(name: &str, weight: f64, flop: u64, session: TuneSession) -> TaskSpec {
        TaskSpec {
            name: name.to_string(),
            weight,
            flop,
            tag: None,
            session,
            resumed: Vec::new(),
        }
    }

    /// The same task with earlier trials (e.g. the records a session resumed from), in
    /// measurement order. Cut into rounds of the scheduler's round size, they give the task
    /// its rounds and per-round history, so the gradient continues where a previous run
    /// left off; a task with resumed trials skips the warm-up unless none of them is valid.
    pub fn with_resumed(self, latencies: Vec<Option<f64>>) -> TaskSpec {
        TaskSpec {
            resumed: latencies,
            ..self
        }
    }

    /// The same task with similarity tag `tag`.
    pub fn with_tag(self, tag: &str) -> TaskSpec {
        TaskSpec {
            tag: Some(tag.to_string()),
            ..self
        }
    }
}

/// Measures the candidates of one task: the scheduler calls it with the task's index.
pub trait TaskMeasurer {
    /// Measures `states` of task `task`; one result per state, in order.
    fn measure(&mut self, task: usize, states: &[State]) -> Vec<Measurement>;

    /// True when the measurer cannot go on (see [`Measurer::halted`]): the scheduler then
    /// stops with [`SchedulerStop::Halted`].
    fn halted(&self) -> bool {
        false
    }
}

impl<F: FnMut(usize, &[State]) -> Vec<Measurement>> TaskMeasurer for F {
    fn measure(&mut self, task: usize, states: &[State]) -> Vec<Measurement> {
        self(task, states)
    }
}

/// One [`Measurer`] per task, by index.
pub struct PerTask<'m>(pub Vec<&'m mut dyn Measurer>);

impl TaskMeasurer for PerTask<'_> {
    fn measure(&mut self, task: usize, states: &[State]) -> Vec<Measurement> {
        match self.0.get_mut(task) {
            Some(m) => m.measure(states),
            None => states
                .iter()
                .map(|_| {
                    Measurement::failed(MeasureError::new(
                        ErrorClass::WorkerLost,
                        format!("no measurer for task {task}"),
                    ))
                })
                .collect(),
        }
    }

    fn halted(&self) -> bool {
        self.0.iter().any(|m| m.halted())
    }
}

/// The [`Measurer`] a session sees: the task measurer bound to one task.
struct ForTask<'a> {
    inner: &'a mut dyn TaskMeasurer,
    task: usize,
}

impl Measurer for ForTask<'_> {
    fn measure(&mut self, states: &[State]) -> Vec<Measurement> {
        self.inner.measure(self.task, states)
    }

    fn halted(&self) -> bool {
        self.inner.halted()
    }
}

/// Why a task gets no more rounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeathReason {
    /// No valid program after the warm-up round.
    NoValidProgram,
    /// A round (retried once) found nothing new to measure.
    Exhausted,
    /// No improvement for more than `per_task_early_stopping` trials.
    EarlyStopping,
    /// The task's own session stopped (its trial or time budget, or its early stopping).
    Session(StopReason),
}

/// Why the scheduler stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SchedulerStop {
    /// The trial budget is spent.
    TrialBudget,
    /// Every task is dead.
    AllTasksDead,
    /// The objective did not improve for `early_stopping` trials.
    EarlyStopping,
    /// The time budget ([`SchedulerParams::time_budget`]) is spent.
    TimeBudget,
    /// The measurer halted ([`TaskMeasurer::halted`]): records could not be written, or an
    /// interrupt asked to stop.
    Halted,
}

/// One round of the scheduler (one task tuned for one round), as logged.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SchedulerRound {
    /// Round number over all tasks, from 0.
    pub round: usize,
    /// The task tuned.
    pub task: usize,
    /// Part of the warm-up (one round per task).
    pub warmup: bool,
    /// Candidates measured in this round.
    pub measured: usize,
    /// Trials so far, all tasks.
    pub trials: usize,
    /// Trials so far of this task.
    pub task_trials: usize,
    /// Best latency of this task so far (seconds).
    pub task_best_seconds: Option<f64>,
    /// The objective `Σ wᵢ·gᵢ` after this round, once every task has a valid program.
    pub objective: Option<f64>,
    /// Set when this round killed the task.
    pub died: Option<DeathReason>,
    /// Wall time since the scheduler was made, at the end of this round (seconds).
    pub seconds: f64,
}

/// The outcome for one task.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TaskReport {
    /// Its name.
    pub name: String,
    /// Its weight.
    pub weight: f64,
    /// Its FLOPs.
    pub flop: u64,
    /// Rounds it was given.
    pub rounds: usize,
    /// Trials it measured.
    pub trials: usize,
    /// Its best latency (seconds).
    pub best_seconds: Option<f64>,
    /// Why it got no more rounds, if it died.
    pub dead: Option<DeathReason>,
}

/// What a scheduler run did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SchedulerResult {
    /// Per task, in input order.
    pub tasks: Vec<TaskReport>,
    /// One record per round, in order; `objective` is the objective's history.
    pub history: Vec<SchedulerRound>,
    /// Trials measured, all tasks.
    pub trials: usize,
    /// The estimated network latency `Σ wᵢ·gᵢ` (seconds), when every task has a program.
    pub estimated_seconds: Option<f64>,
    /// Why it stopped.
    pub stop_reason: SchedulerStop,
}

/// A callback run after every round.
pub type SchedulerHook<'h> = Box<dyn FnMut(&SchedulerRound) + 'h>;

/// The scheduler's bookkeeping of one task.
struct TaskState {
    spec: TaskSpec,
    /// Rounds given (TVM's `task_cts`).
    rounds: usize,
    /// Best latency after each of its rounds (`MISSING` while none).
    history: Vec<f64>,
    /// The session's trial count when the best last improved.
    trials_at_best: usize,
    best: Option<f64>,
    dead: Option<DeathReason>,
    group: Option<usize>,
}

impl TaskState {
    fn cost(&self) -> f64 {
        self.best.unwrap_or(MISSING)
    }
}

/// Measurements per round of a scheduler over `n_tasks` tasks:
/// `min(measures_per_round, total_trials / n_tasks)`, at least 1.
fn round_size(params: &SchedulerParams, n_tasks: usize) -> usize {
    params
        .measures_per_round
        .min(params.total_trials / n_tasks.max(1))
        .max(1)
}

/// A task's best latency after each round of `per_round` of its earlier trials (the last
/// round may be shorter); empty when none of them is valid (the task then gets a warm-up).
fn resumed_history(latencies: &[Option<f64>], per_round: usize) -> Vec<f64> {
    let mut best = MISSING;
    let history: Vec<f64> = latencies
        .chunks(per_round)
        .map(|round| {
            best = round.iter().flatten().fold(best, |b, &s| b.min(s));
            best
        })
        .collect();
    if best < MISSING {
        history
    } else {
        Vec::new()
    }
}

/// Splits a trial budget over the tasks of a network (see the module docs).
pub struct TaskScheduler<'h> {
    tasks: Vec<TaskState>,
    groups: Vec<Vec<usize>>,
    params: SchedulerParams,
    rng: TesselRng,
    history: Vec<SchedulerRound>,
    trials: usize,
    on_round: Option<SchedulerHook<'h>>,
    started: std::time::Instant,
    progress: Progress,
}

/// Where a run of the scheduler is (what [`TaskScheduler::step`] continues from).
#[derive(Clone, Copy, Debug)]
struct Progress {
    /// The next task to warm up.
    warmup_next: usize,
    /// Whether the warm-up is over (and the early-stopping reference set).
    warmed: bool,
    /// The best objective since the warm-up.
    best_score: f64,
    /// Trials when it was reached.
    best_trials: usize,
    /// The next task of the round-robin strategy.
    rr_next: usize,
    /// Why the run stopped, once it has.
    stopped: Option<SchedulerStop>,
}

impl Default for Progress {
    fn default() -> Progress {
        Progress {
            warmup_next: 0,
            warmed: false,
            best_score: f64::INFINITY,
            best_trials: 0,
            rr_next: 0,
            stopped: None,
        }
    }
}

impl<'h> TaskScheduler<'h> {
    /// A scheduler over `tasks` (at least one; weights finite and ≥ 0) with `params`
    /// ([`SchedulerParams::validate`]).
    pub fn new(
        tasks: Vec<TaskSpec>,
        params: SchedulerParams,
    ) -> Result<TaskScheduler<'h>, SchedulerError> {
        if tasks.is_empty() {
            return Err(SchedulerError::NoTasks);
        }
        params.validate()?;
        if let Some(t) = tasks
            .iter()
            .find(|t| !t.weight.is_finite() || t.weight < 0.0)
        {
            return Err(SchedulerError::BadWeight {
                task: t.name.clone(),
                weight: t.weight,
            });
        }
        let per_round = round_size(&params, tasks.len());
        let mut tags: Vec<String> = Vec::new();
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut states = Vec::with_capacity(tasks.len());
        for (i, spec) in tasks.into_iter().enumerate() {
            let group = spec.tag.as_ref().map(|tag| {
                let bucket = ((spec.flop as f64 + 1.0).ln() / LOG_BASE.ln()).floor() as i64;
                let full = format!("{tag}_{bucket}");
                match tags.iter().position(|t| *t == full) {
                    Some(g) => {
                        groups[g].push(i);
                        g
                    }
                    None => {
                        tags.push(full);
                        groups.push(vec![i]);
                        groups.len() - 1
                    }
                }
            });
            let history = resumed_history(&spec.resumed, per_round);
            let resumed_best = history.last().copied();
            let best = match (spec.session.best_seconds(), resumed_best) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            states.push(TaskState {
                trials_at_best: spec.session.trials(),
                spec,
                rounds: history.len(),
                history,
                best,
                dead: None,
                group,
            });
        }
        Ok(TaskScheduler {
            tasks: states,
            groups,
            rng: seeded(params.seed),
            params,
            history: Vec::new(),
            trials: 0,
            on_round: None,
            started: std::time::Instant::now(),
            progress: Progress::default(),
        })
    }

    /// Calls `f` after every round (progress bars, logs).
    pub fn on_round(mut self, f: impl FnMut(&SchedulerRound) + 'h) -> TaskScheduler<'h> {
        self.on_round = Some(Box::new(f));
        self
    }

    /// The session of task `i`.
    pub fn session(&self, i: usize) -> Option<&TuneSession> {
        self.tasks.get(i).map(|t| &t.spec.session)
    }

    /// Ends the scheduler, handing back every task's session (for its best state and rounds).
    pub fn into_sessions(self) -> Vec<TuneSession> {
        self.tasks.into_iter().map(|t| t.spec.session).collect()
    }

    /// The members of each similarity group (task indices), groups in order of first member.
    pub fn similarity_groups(&self) -> &[Vec<usize>] {
        &self.groups
    }

    /// Measurements per round: `min(measures_per_round, total_trials / #tasks)`, at least 1.
    pub fn per_round(&self) -> usize {
        round_size(&self.params, self.tasks.len())
    }

    /// The objective `Σ wᵢ·gᵢ`, when every task has a valid program.
    pub fn objective(&self) -> Option<f64> {
        self.tasks
            .iter()
            .map(|t| t.best.map(|b| t.spec.weight * b))
            .sum()
    }

    /// Runs until the budget is spent, every task is dead, or early stopping. Calling it
    /// again continues (the warm-up is not repeated; raise `total_trials` with
    /// [`TaskScheduler::set_total_trials`] first).
    pub fn run(
        &mut self,
        measurer: &mut dyn TaskMeasurer,
        scorer: &mut dyn Scorer,
    ) -> SchedulerResult {
        self.progress = Progress::default();
        let stop = loop {
            if let Some(stop) = self.step(measurer, scorer) {
                break stop;
            }
        };
        self.result(stop)
    }

    /// One round of [`TaskScheduler::run`]: a warm-up round of the next task not yet
    /// tuned, or one round of the task the strategy picks. Returns why the run stops
    /// (without tuning) once it does, and the same reason on every later call; `None` after
    /// a round. Stepping several schedulers in turn tunes them in lockstep (the network
    /// experiment); stepping one until it stops is [`TaskScheduler::run`].
    pub fn step(
        &mut self,
        measurer: &mut dyn TaskMeasurer,
        scorer: &mut dyn Scorer,
    ) -> Option<SchedulerStop> {
        if let Some(stop) = self.progress.stopped {
            return Some(stop);
        }
        let n = self.tasks.len();
        // Warm-up: one round per task.
        while self.progress.warmup_next < n {
            if self.trials >= self.params.total_trials || self.out_of_time() || measurer.halted() {
                self.progress.warmup_next = n;
                break;
            }
            let i = self.progress.warmup_next;
            self.progress.warmup_next += 1;
            if self.tasks[i].rounds == 0 && self.tasks[i].dead.is_none() {
                self.tune(i, true, measurer, scorer);
                if self.progress.warmup_next == n {
                    self.end_warmup();
                }
                return None;
            }
        }
        if !self.progress.warmed {
            self.end_warmup();
        }
        let stop = self.main_round(measurer, scorer);
        self.progress.stopped = stop;
        stop
    }

    /// The early-stopping reference after the warm-up: the objective and trials so far.
    fn end_warmup(&mut self) {
        self.progress.warmed = true;
        self.progress.best_score = self.objective().unwrap_or(f64::INFINITY);
        self.progress.best_trials = self.trials;
    }

    /// One round after the warm-up, or why there is none.
    fn main_round(
        &mut self,
        measurer: &mut dyn TaskMeasurer,
        scorer: &mut dyn Scorer,
    ) -> Option<SchedulerStop> {
        let n = self.tasks.len();
        if measurer.halted() {
            return Some(SchedulerStop::Halted);
        }
        if self.trials >= self.params.total_trials {
            return Some(SchedulerStop::TrialBudget);
        }
        if self.out_of_time() {
            return Some(SchedulerStop::TimeBudget);
        }
        let live: Vec<usize> = (0..n).filter(|&i| self.tasks[i].dead.is_none()).collect();
        if live.is_empty() {
            return Some(SchedulerStop::AllTasksDead);
        }
        let i = match self.params.strategy {
            Strategy::RoundRobin => {
                let rr_next = self.progress.rr_next;
                let i = (0..n)
                    .map(|k| (rr_next + k) % n)
                    .find(|&k| self.tasks[k].dead.is_none())
                    .unwrap_or(live[0]);
                self.progress.rr_next = (i + 1) % n;
                i
            }
            Strategy::Gradient => self.pick_by_gradient(&live),
        };
        self.tune(i, false, measurer, scorer);
        self.adjust_similarity_group(i);
        match self.objective() {
            Some(s) if s < self.progress.best_score => {
                self.progress.best_score = s;
                self.progress.best_trials = self.trials;
            }
            Some(_)
                if self
                    .params
                    .early_stopping
                    .is_some_and(|es| self.trials - self.progress.best_trials >= es) =>
            {
                return Some(SchedulerStop::EarlyStopping);
            }
            Some(_) | None => {}
        }
        None
    }

    /// Trials measured so far, over all tasks.
    pub fn trials(&self) -> usize {
        self.trials
    }

    /// True when the time budget is set and spent.
    fn out_of_time(&self) -> bool {
        self.params
            .time_budget
            .is_some_and(|b| self.started.elapsed() >= b)
    }

    /// Changes the total trial budget (to continue a finished run).
    pub fn set_total_trials(&mut self, total: usize) {
        self.params.total_trials = total;
    }

    /// The gradient `∂f/∂tᵢ` of every task (0 for dead ones), as the gradient strategy
    /// computes it now.
    pub fn gradients(&self) -> Vec<f64> {
        (0..self.tasks.len())
            .map(|i| {
                if self.tasks[i].dead.is_some() {
                    0.0
                } else {
                    self.gradient(i)
                }
            })
            .collect()
    }

    fn gradient(&self, i: usize) -> f64 {
        let p = &self.params;
        let t = &self.tasks[i];
        // ∂f/∂gᵢ of f = Σ wⱼ·gⱼ.
        let chain = t.spec.weight;
        let rounds = t.rounds.max(1);
        let w = p.backward_window;
        let backward = if w > 0 && rounds > w && t.history.len() >= rounds {
            (t.history[rounds - 1] - t.history[rounds - 1 - w]) / w as f64
        } else {
            0.0
        };
        let best = t.cost();
        // The best FLOP/s of the task's similarity group, when it has other members.
        let best_flops = t
            .group
            .map(|g| &self.groups[g])
            .filter(|members| members.len() > 1)
            .map(|members| {
                members
                    .iter()
                    .map(|&j| self.tasks[j].spec.flop as f64 / self.tasks[j].cost())
                    .fold(0.0, f64::max)
            })
            .filter(|&f| f > 0.0);
        // The part of its latency the next round is guessed to remove 1/tᵖ of.
        let room = match best_flops {
            Some(f) if p.group_room => (best - t.spec.flop as f64 / f).max(0.0),
            _ => best,
        };
        let g1 = best - room / (rounds as f64).powf(p.forward_power);
        let g2 = match best_flops {
            Some(f) => p.beta * t.spec.flop as f64 / f,
            None => p.beta * 1e30,
        };
        let forward = g1.min(g2) - best;
        chain * (p.alpha * backward + (1.0 - p.alpha) * forward)
    }

    /// The live tasks below the exploration floor: fewer rounds than
    /// `round_floor ×` the mean rounds of the live tasks.
    fn below_floor(&self, live: &[usize]) -> Vec<usize> {
        let f = self.params.round_floor;
        if f.is_nan() || f <= 0.0 || live.is_empty() {
            return Vec::new();
        }
        let mean = live
            .iter()
            .map(|&i| self.tasks[i].rounds as f64)
            .sum::<f64>()
            / live.len() as f64;
        live.iter()
            .copied()
            .filter(|&i| (self.tasks[i].rounds as f64) < f * mean)
            .collect()
    }

    fn pick_by_gradient(&mut self, live: &[usize]) -> usize {
        let starved = self.below_floor(live);
        if let Some(fewest) = starved.iter().map(|&i| self.tasks[i].rounds).min() {
            // The exploration floor: the most starved task, by gradient among equals.
            return starved
                .iter()
                .copied()
                .filter(|&i| self.tasks[i].rounds == fewest)
                .map(|i| (i, self.gradient(i)))
                .fold(None, |best: Option<(usize, f64)>, (i, g)| match best {
                    Some((_, bg)) if bg <= g => best,
                    _ => Some((i, g)),
                })
                .map_or(starved[0], |(i, _)| i);
        }
        let grads: Vec<(usize, f64)> = live.iter().map(|&i| (i, self.gradient(i))).collect();
        let min = grads.iter().map(|g| g.1).fold(f64::INFINITY, f64::min);
        let max = grads.iter().map(|g| g.1).fold(f64::NEG_INFINITY, f64::max);
        if min == max {
            return live[self.rng.random_range(0..live.len())];
        }
        grads.iter().find(|g| g.1 == min).map_or(live[0], |g| g.0)
    }

    /// One round of task `i`, with the bookkeeping of ANSOR.md §7.
    fn tune(
        &mut self,
        i: usize,
        warmup: bool,
        measurer: &mut dyn TaskMeasurer,
        scorer: &mut dyn Scorer,
    ) {
        let max = self
            .per_round()
            .min(self.params.total_trials.saturating_sub(self.trials))
            .max(1);
        let es = self.params.per_task_early_stopping;
        let task = &mut self.tasks[i];
        let before = task.spec.session.trials();
        let mut died = task.spec.session.stop_reason().map(DeathReason::Session);
        if died.is_none() {
            let mut m = ForTask {
                inner: measurer,
                task: i,
            };
            if task.spec.session.round(&mut m, scorer, max).is_none() {
                // Ansor retries an empty round once before giving up on the task.
                task.spec.session.round(&mut m, scorer, max);
            }
        }
        let after = task.spec.session.trials();
        let measured = after - before;
        task.rounds += 1;
        if let Some(b) = task.spec.session.best_seconds() {
            if task.best.is_none_or(|old| b < old) {
                task.best = Some(b);
                task.trials_at_best = after;
            }
        }
        if died.is_none() {
            died = if warmup && task.best.is_none() {
                Some(DeathReason::NoValidProgram)
            } else if measured == 0 {
                Some(DeathReason::Exhausted)
            } else if es.is_some_and(|es| after - task.trials_at_best > es) {
                Some(DeathReason::EarlyStopping)
            } else {
                task.spec.session.stop_reason().map(DeathReason::Session)
            };
        }
        task.dead = died;
        task.history.push(task.cost());
        self.trials += measured;
        let record = SchedulerRound {
            round: self.history.len(),
            task: i,
            warmup,
            measured,
            trials: self.trials,
            task_trials: after,
            task_best_seconds: self.tasks[i].best,
            objective: self.objective(),
            died,
            seconds: self.started.elapsed().as_secs_f64(),
        };
        if let Some(f) = self.on_round.as_mut() {
            f(&record);
        }
        self.history.push(record);
    }

    /// Removes task `i` from its similarity group when, after more than 5 rounds beyond
    /// every other member, its FLOP/s is still below the group's best / β.
    fn adjust_similarity_group(&mut self, i: usize) {
        let Some(g) = self.tasks[i].group else { return };
        let members = &self.groups[g];
        if members.len() <= 1 {
            return;
        }
        let flops = |j: usize| self.tasks[j].spec.flop as f64 / self.tasks[j].cost();
        let best = members.iter().map(|&j| flops(j)).fold(0.0, f64::max);
        let others = members
            .iter()
            .filter(|&&j| j != i)
            .map(|&j| self.tasks[j].rounds)
            .max()
            .unwrap_or(0);
        if flops(i) < best / self.params.beta && self.tasks[i].rounds > 5 + others {
            self.groups[g].retain(|&j| j != i);
            self.tasks[i].group = None;
        }
    }

    /// The result so far, stopped for `stop_reason` (what [`TaskScheduler::run`] returns;
    /// after stepping with [`TaskScheduler::step`], give it the reason the last step gave).
    pub fn result(&self, stop_reason: SchedulerStop) -> SchedulerResult {
        SchedulerResult {
            tasks: self
                .tasks
                .iter()
                .map(|t| TaskReport {
                    name: t.spec.name.clone(),
                    weight: t.spec.weight,
                    flop: t.spec.flop,
                    rounds: t.rounds,
                    trials: t.spec.session.trials(),
                    best_seconds: t.best,
                    dead: t.dead,
                })
                .collect(),
            history: self.history.clone(),
            trials: self.trials,
            estimated_seconds: self.objective(),
            stop_reason,
        }
    }
}
