//! The learned-policies experiment (PAPER.md §5): the same workload tuned under four
//! configurations with the same seeds, and the statistics that compare them.
//!
//! The four [`Config`]s:
//!
//! | config     | sketch policy   | mutation policy | paper |
//! |------------|-----------------|-----------------|-------|
//! | `baseline` | `uniform`       | `fixed`         | (B) Ansor |
//! | `rl`       | `ducb`          | `fixed`         | (S) + sketch selection |
//! | `ml`       | `uniform`       | `classifier`    | (M) + mutation-rule prediction |
//! | `both`     | `ducb`          | `classifier`    | (S+M) |
//!
//! [`run_traced`] tunes once and returns a [`RunTrace`]: per round the trials, the
//! cumulative wall time and accounted time, the best latency so far and the time spent
//! inside the two policies (measured exactly by wrapping them, see [`PolicyClock`]).
//! [`summarize`] turns the traces of one workload into a [`WorkloadSummary`];
//! [`median_curve`] gives the best-so-far curve that the plots draw.
//!
//! # Robustness to measurement noise
//!
//! * [`run_lockstep`] tunes the configurations of one seed one round each in turn: the
//!   host's speed drifts over minutes on a shared machine, and in lockstep the drift meets
//!   every configuration at the same point of its search instead of deciding, run by run,
//!   which one looks faster. A run's clock counts its own rounds only.
//! * The runs of one workload share a [`MeasureCache`](crate::cache::MeasureCache): a program (step log) found by two
//!   runs has the same measured time in both, so noise cannot reorder them.
//! * Time is **accounted** from the round records: sampling, evolution (policies
//!   included) and training as measured, measurement as *charged* — a cache hit costs what
//!   its first measurement cost, so a run is not sped up by another run's measurements.
//!   Time-to-reach ratios use accounted time; the wall-clock ratio is reported next to it.
//! * After the runs, every run's final best is re-measured side by side
//!   ([`crate::remeasure`]) and final ratios are computed from that, paired by seed, with a
//!   Wilcoxon signed-rank test ([`crate::signed_rank`]).
//!
//! ```
//! use tessel_search::experiment::{summarize, Config, RoundPoint, RunTrace};
//! let trace = |config, seed, points: &[(f64, f64)]| RunTrace {
//!     config, seed,
//!     rounds: points.iter().enumerate().map(|(k, &(t, best))| RoundPoint {
//!         round: k, trials: 10 * (k + 1), seconds: t, accounted_seconds: t,
//!         best_seconds: Some(best), round_seconds: 1.0, evolution_seconds: 0.5,
//!         policy_seconds: 0.01, ..RoundPoint::default()
//!     }).collect(),
//!     ..RunTrace::default()
//! }.finished();
//! let runs = vec![
//!     trace(Config::Baseline, 0, &[(1.0, 4.0), (2.0, 2.0), (4.0, 1.0)]),
//!     trace(Config::Rl, 0, &[(1.0, 1.0), (2.0, 1.0), (4.0, 0.5)]),
//! ];
//! let s = summarize("w", "w", 1e9, &runs, 0.01);
//! let rl = &s.configs[1];
//! // rl reached the baseline's final best (1.0 s) at 1 s instead of 4 s.
//! assert_eq!(rl.time_to_reach_ratio, Some(0.25));
//! assert_eq!(rl.final_ratio, Some(2.0));
//! ```

use crate::cache::{CachingMeasurer, SharedCache};
use crate::registry::{Preset, PRESETS};
use crate::remeasure::Remeasurement;
use crate::signed_rank::{signed_rank, SignedRank};
use crate::tuner::{Measurer, Scorer, TuneSession};
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tessel_ir::rng::TesselRng;
use tessel_ir::{State, Step};
use tessel_mutation_model::{MutationOutcome, MutationPolicy, RuleInfo};
use tessel_rl_policy::SketchPolicy;

pub use crate::job::Problem;
use crate::job::TuneJob;

/// One system of the comparison: a sketch policy and a mutation policy.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Config {
    /// Ansor: uniform sketch choice, fixed mutation weights.
    #[default]
    Baseline,
    /// Discounted-UCB sketch selection, fixed mutation weights.
    Rl,
    /// Uniform sketch choice, learned mutation-rule classifier.
    Ml,
    /// Discounted-UCB sketch selection and the classifier.
    Both,
}

impl Config {
    /// Every configuration, baseline first.
    pub const ALL: [Config; 4] = [Config::Baseline, Config::Rl, Config::Ml, Config::Both];

    /// Its row of the policy presets ([`crate::registry::PRESETS`], in the same order).
    pub fn preset(self) -> &'static Preset {
        &PRESETS[self as usize]
    }

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        self.preset().name
    }

    /// The configuration called `name`.
    pub fn parse(name: &str) -> Option<Config> {
        Config::ALL.into_iter().find(|c| c.name() == name.trim())
    }

    /// Name of the sketch policy (in [`crate::registry::sketch_policies`]).
    pub fn sketch_policy(self) -> &'static str {
        self.preset().sketch
    }

    /// Name of the mutation policy (in [`crate::registry::mutation_policies`]).
    pub fn mutation_policy(self) -> &'static str {
        self.preset().mutation
    }
}

/// Total time spent inside policy calls (shared by the timed wrappers of one run).
#[derive(Clone, Debug, Default)]
pub struct PolicyClock(Arc<AtomicU64>);

impl PolicyClock {
    /// Seconds counted so far.
    pub fn seconds(&self) -> f64 {
        self.0.load(Ordering::Relaxed) as f64 * 1e-9
    }

    fn time<T>(&self, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let out = f();
        let ns = u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.0.fetch_add(ns, Ordering::Relaxed);
        out
    }
}

/// A sketch policy whose calls are timed.
struct TimedSketchPolicy {
    inner: Box<dyn SketchPolicy>,
    clock: PolicyClock,
}

impl SketchPolicy for TimedSketchPolicy {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn allocate(&mut self, n: usize, num_sketches: usize, rng: &mut TesselRng) -> Vec<u32> {
        let inner = &mut self.inner;
        self.clock.time(|| inner.allocate(n, num_sketches, rng))
    }

    fn reward(&mut self, sketch: u32, reward: f64) {
        let inner = &mut self.inner;
        self.clock.time(|| inner.reward(sketch, reward))
    }

    fn measure_shares(&mut self, num_sketches: usize) -> Option<Vec<f64>> {
        let inner = &mut self.inner;
        self.clock.time(|| inner.measure_shares(num_sketches))
    }

    fn pools_leading_sketches(&self) -> bool {
        self.inner.pools_leading_sketches()
    }

    fn state_json(&self) -> serde_json::Value {
        self.inner.state_json()
    }
}

/// A mutation policy whose calls are timed.
struct TimedMutationPolicy {
    inner: Box<dyn MutationPolicy>,
    clock: PolicyClock,
}

impl MutationPolicy for TimedMutationPolicy {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn choose(&mut self, state: &State, rules: &[RuleInfo], rng: &mut TesselRng) -> usize {
        let inner = &mut self.inner;
        self.clock.time(|| inner.choose(state, rules, rng))
    }

    fn observe(&mut self, state: &State, rule: usize, outcome: MutationOutcome) {
        let inner = &mut self.inner;
        self.clock.time(|| inner.observe(state, rule, outcome))
    }

    fn state_json(&self) -> serde_json::Value {
        self.inner.state_json()
    }
}

/// One round of a traced run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RoundPoint {
    /// Round number, from 0.
    pub round: usize,
    /// Trials measured so far.
    pub trials: usize,
    /// Wall seconds since the run started, at the end of this round.
    pub seconds: f64,
    /// Accounted seconds since the run started, at the end of this round: the sum over
    /// rounds of sample + evolution + training + *charged* measurement.
    #[serde(default)]
    pub accounted_seconds: f64,
    /// Best latency so far (seconds).
    pub best_seconds: Option<f64>,
    /// Wall seconds of this round (sample + evolution + training + measurement).
    pub round_seconds: f64,
    /// Wall seconds of this round's measurement.
    #[serde(default)]
    pub measure_seconds: f64,
    /// Seconds this round's measurement is charged (cache hits at their first cost).
    #[serde(default)]
    pub measure_charged_seconds: f64,
    /// Seconds of this round's evolution (cost-model prediction included).
    pub evolution_seconds: f64,
    /// Seconds of this round spent inside the sketch and mutation policies.
    pub policy_seconds: f64,
}

/// A program a run would have returned had it stopped at the end of a round: its best so
/// far, recorded each time that changed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrailPoint {
    /// The first round (an index into [`RunTrace::rounds`]) that ended with this best.
    pub round: usize,
    /// Its step log.
    pub steps: Vec<Step>,
    /// Its time re-measured side by side with every trail program of the workload's runs
    /// (median of the rounds; `None` until re-measured, or if that failed).
    #[serde(default)]
    pub remeasured_seconds: Option<f64>,
}

/// One tuning run of the experiment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunTrace {
    /// Its configuration.
    pub config: Config,
    /// Its seed (the same for every configuration).
    pub seed: u64,
    /// Per round.
    pub rounds: Vec<RoundPoint>,
    /// Final best latency (seconds).
    pub best_seconds: Option<f64>,
    /// Wall seconds of the whole run.
    pub wall_seconds: f64,
    /// Accounted seconds of the whole run (see [`RoundPoint::accounted_seconds`]).
    #[serde(default)]
    pub accounted_seconds: f64,
    /// Trials measured.
    pub trials: usize,
    /// Of those, the ones answered by the shared measurement cache.
    #[serde(default)]
    pub cache_hits: usize,
    /// The step log of the final best program.
    #[serde(default)]
    pub best_steps: Option<Vec<Step>>,
    /// The final best re-measured side by side with the other runs' (see
    /// [`crate::remeasure`]); filled in after all runs of the workload.
    #[serde(default)]
    pub remeasured: Option<Remeasurement>,
    /// Every program the run would have returned had it stopped after some round (its best
    /// so far, each time that changed), in order; the last is the final best.
    #[serde(default)]
    pub trail: Vec<TrailPoint>,
    /// Mutations tried, over all rounds and rules.
    pub mutations_tried: usize,
    /// Of those, the legal ones.
    pub mutations_valid: usize,
    /// Of those, the ones predicted better than their parent.
    pub mutations_improved: usize,
}

impl RunTrace {
    /// Fills `best_seconds`, `wall_seconds`, `accounted_seconds` and `trials` from the last
    /// round (for traces built by hand).
    pub fn finished(mut self) -> RunTrace {
        if let Some(last) = self.rounds.last() {
            self.best_seconds = last.best_seconds;
            self.wall_seconds = last.seconds;
            self.accounted_seconds = last.accounted_seconds;
            self.trials = last.trials;
        }
        self
    }

    /// The first round whose best is at most `target` seconds.
    pub fn reach(&self, target: f64) -> Option<&RoundPoint> {
        self.rounds
            .iter()
            .find(|r| r.best_seconds.is_some_and(|b| b <= target))
    }

    /// The first round that ended with a best whose *re-measured* time (see
    /// [`TrailPoint::remeasured_seconds`]) is at most `target` seconds. Robust to a lucky
    /// reading in the search: every trail program is timed again under the same conditions.
    pub fn reach_remeasured(&self, target: f64) -> Option<&RoundPoint> {
        self.trail
            .iter()
            .find(|p| p.remeasured_seconds.is_some_and(|s| s <= target))
            .and_then(|p| self.rounds.get(p.round))
    }

    /// The final best's time in the trail re-measurement.
    pub fn final_trail_seconds(&self) -> Option<f64> {
        self.trail.last().and_then(|p| p.remeasured_seconds)
    }

    /// Best latency so far at accounted time `t` (`None` before the first valid program).
    pub fn best_at_time(&self, t: f64) -> Option<f64> {
        self.rounds
            .iter()
            .take_while(|r| r.accounted_seconds <= t)
            .last()
            .and_then(|r| r.best_seconds)
    }

    /// The final best as re-measured, else as found by the search.
    pub fn final_seconds(&self) -> Option<f64> {
        self.remeasured
            .as_ref()
            .and_then(|r| r.seconds)
            .or(self.best_seconds)
    }

    /// Seconds spent in the policies over the run.
    pub fn policy_seconds(&self) -> f64 {
        self.rounds.iter().map(|r| r.policy_seconds).sum()
    }

    /// Seconds of evolution over the run.
    pub fn evolution_seconds(&self) -> f64 {
        self.rounds.iter().map(|r| r.evolution_seconds).sum()
    }

    /// Wall seconds of all rounds (sample + evolution + training + measurement).
    pub fn round_seconds(&self) -> f64 {
        self.rounds.iter().map(|r| r.round_seconds).sum()
    }

    /// Accounted seconds of all rounds (measurement as charged).
    pub fn round_accounted_seconds(&self) -> f64 {
        self.rounds
            .iter()
            .map(|r| r.round_seconds - r.measure_seconds + r.measure_charged_seconds)
            .sum()
    }
}

/// Tunes `problem` once under `config` (the job's seed is the seed) with fresh policies, and
/// traces it. With a `cache`, results come from (and go to) it before `measurer` is asked.
pub fn run_traced(
    job: &TuneJob,
    problem: &Problem,
    config: Config,
    measurer: &mut dyn Measurer,
    scorer: &mut dyn Scorer,
    cache: Option<&SharedCache>,
) -> RunTrace {
    let mut run = TracedRun::start(job, problem, config, scorer, cache);
    while !run.is_done() {
        run.round(measurer, scorer);
    }
    run.finish()
}

/// One system's tuning of one seed, `(measurer, scorer)` given per round: what
/// [`run_lockstep`] advances.
pub struct RunParts<'a> {
    /// The configuration.
    pub config: Config,
    /// Its measurer (its own records file, say).
    pub measurer: &'a mut dyn Measurer,
    /// Its cost model.
    pub scorer: &'a mut dyn Scorer,
}

/// Tunes `problem` under several configurations with the same seed (the job's), **in lockstep**: one
/// round of each run in turn until all are done. Host speed drifts over minutes on a shared
/// machine; in lockstep every system of a seed meets the same drift at the same point of
/// its search, so the drift cannot decide which one reaches a target first. Each trace's
/// time counts its own rounds only. Traces come back in the order of `runs`.
pub fn run_lockstep(
    job: &TuneJob,
    problem: &Problem,
    runs: &mut [RunParts],
    cache: Option<&SharedCache>,
) -> Vec<RunTrace> {
    let mut active: Vec<TracedRun> = runs
        .iter_mut()
        .map(|r| TracedRun::start(job, problem, r.config, &mut *r.scorer, cache))
        .collect();
    while active.iter().any(|r| !r.is_done()) {
        for (run, parts) in active.iter_mut().zip(runs.iter_mut()) {
            if !run.is_done() {
                run.round(&mut *parts.measurer, &mut *parts.scorer);
            }
        }
    }
    active.into_iter().map(TracedRun::finish).collect()
}

/// A traced tuning run in progress: [`run_traced`] and [`run_lockstep`] step it round by
/// round. Its wall clock runs only inside its own rounds.
pub struct TracedRun {
    config: Config,
    seed: u64,
    session: TuneSession,
    measures_per_round: usize,
    points: Rc<RefCell<Vec<RoundPoint>>>,
    trail: Rc<RefCell<Vec<TrailPoint>>>,
    clock: RunClock,
    cache: Option<SharedCache>,
    cache_hits: usize,
}

/// A wall clock that runs only while its run is working (shared with the round hook).
#[derive(Clone, Default)]
struct RunClock {
    /// Seconds of the finished rounds (and the start).
    before: Rc<Cell<f64>>,
    /// When the current round started.
    round_start: Rc<Cell<Option<Instant>>>,
}

impl RunClock {
    fn now(&self) -> f64 {
        self.before.get()
            + self
                .round_start
                .get()
                .map_or(0.0, |t| t.elapsed().as_secs_f64())
    }

    fn time<T>(&self, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        self.round_start.set(Some(t));
        let out = f();
        self.round_start.set(None);
        self.before
            .set(self.before.get() + t.elapsed().as_secs_f64());
        out
    }
}

impl TracedRun {
    /// Starts tuning `problem` with `job`, under the policies of `config` (fresh ones; the
    /// job's seed is the seed). With a `cache`, results come from (and go to) it before a
    /// measurer is asked.
    pub fn start(
        job: &TuneJob,
        problem: &Problem,
        config: Config,
        scorer: &mut dyn Scorer,
        cache: Option<&SharedCache>,
    ) -> TracedRun {
        let policy_clock = PolicyClock::default();
        let seed = job.seed();
        let measures_per_round = job.options().params.measures_per_round;
        // The presets name registered policies; a job whose registry lacks them keeps its own.
        let job = job
            .with_preset(config.preset())
            .unwrap_or_else(|_| job.clone());
        let (c1, c2) = (policy_clock.clone(), policy_clock.clone());
        let tuner = job.tuner(problem, seed).wrap_policies(
            |inner| Box::new(TimedSketchPolicy { inner, clock: c1 }),
            |inner| Box::new(TimedMutationPolicy { inner, clock: c2 }),
        );
        let points: Rc<RefCell<Vec<RoundPoint>>> = Rc::default();
        let trail: Rc<RefCell<Vec<TrailPoint>>> = Rc::default();
        let clock = RunClock::default();
        let hook_points = Rc::clone(&points);
        let hook_trail = Rc::clone(&trail);
        let hook_clock = clock.clone();
        let mut policy_before = 0.0;
        let mut accounted = 0.0;
        let tuner = tuner.on_round(move |r| {
            let policy_now = policy_clock.seconds();
            accounted += r.time.accounted();
            let mut trail = hook_trail.borrow_mut();
            if let Some(steps) = &r.best_steps {
                if trail.last().is_none_or(|p| &p.steps != steps) {
                    trail.push(TrailPoint {
                        round: hook_points.borrow().len(),
                        steps: steps.clone(),
                        remeasured_seconds: None,
                    });
                }
            }
            hook_points.borrow_mut().push(RoundPoint {
                round: r.round,
                trials: r.trials,
                seconds: hook_clock.now(),
                accounted_seconds: accounted,
                best_seconds: r.best_seconds,
                round_seconds: r.time.total(),
                measure_seconds: r.time.measure,
                measure_charged_seconds: r.time.measure_charged,
                evolution_seconds: r.time.evolution,
                policy_seconds: policy_now - policy_before,
            });
            policy_before = policy_now;
        });
        let session = clock.time(|| tuner.start(scorer));
        TracedRun {
            config,
            seed,
            session,
            measures_per_round,
            points,
            trail,
            clock,
            cache: cache.cloned(),
            cache_hits: 0,
        }
    }

    /// Whether the run has reached its budget (or cannot go on).
    pub fn is_done(&self) -> bool {
        self.session.stop_reason().is_some()
    }

    /// One round, measured by `measurer` (through the cache, if any).
    pub fn round(&mut self, measurer: &mut dyn Measurer, scorer: &mut dyn Scorer) {
        let hits_before = self.cache.as_ref().map_or(0, |c| c.borrow().hits());
        let per_round = self.measures_per_round;
        let (session, cache) = (&mut self.session, &self.cache);
        self.clock.time(|| match cache {
            Some(cache) => {
                let mut caching = CachingMeasurer::new(measurer, cache.clone());
                session.round(&mut caching, scorer, per_round);
            }
            None => {
                session.round(measurer, scorer, per_round);
            }
        });
        // Only this run measures during its round, so the new hits are its own.
        self.cache_hits += self.cache.as_ref().map_or(0, |c| c.borrow().hits()) - hits_before;
    }

    /// Ends the run and returns its trace.
    pub fn finish(self) -> RunTrace {
        let reason = self
            .session
            .stop_reason()
            .unwrap_or(crate::tuner::StopReason::TrialBudget);
        let wall_seconds = self.clock.now();
        let result = self.session.finish(reason);
        let sum = |v: &[usize]| v.iter().sum::<usize>();
        let rounds = self.points.borrow().clone();
        let trail = self.trail.borrow().clone();
        RunTrace {
            config: self.config,
            seed: self.seed,
            best_seconds: result.best.as_ref().map(|b| b.1),
            best_steps: result.best.as_ref().map(|b| b.0.steps().to_vec()),
            wall_seconds,
            accounted_seconds: rounds.last().map_or(0.0, |r| r.accounted_seconds),
            rounds,
            trials: result.trials,
            cache_hits: self.cache_hits,
            remeasured: None,
            trail,
            mutations_tried: result
                .rounds
                .iter()
                .map(|r| sum(&r.evolution.mutations_tried))
                .sum(),
            mutations_valid: result
                .rounds
                .iter()
                .map(|r| sum(&r.evolution.mutations_valid))
                .sum(),
            mutations_improved: result
                .rounds
                .iter()
                .map(|r| sum(&r.evolution.mutations_improved))
                .sum(),
        }
    }
}

/// Order statistics (one home: [`tessel_ir::stats`]); `None` for an infinite median.
pub use tessel_ir::stats::{median, quantile};

/// The statistics of one configuration on one workload, over seeds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ConfigSummary {
    /// The configuration.
    pub config: Config,
    /// Its sketch policy.
    pub sketch_policy: String,
    /// Its mutation policy.
    pub mutation_policy: String,
    /// Runs (seeds).
    pub runs: usize,
    /// Median over seeds of the final best GFLOP/s.
    pub best_gflops_median: Option<f64>,
    /// Its first quartile.
    pub best_gflops_q1: Option<f64>,
    /// Its third quartile.
    pub best_gflops_q3: Option<f64>,
    /// Median over seeds of (final best GFLOP/s ÷ the baseline's of the same seed), as
    /// found in the search; above 1 = faster than the baseline.
    pub final_ratio: Option<f64>,
    /// Median over seeds of the re-measured final best GFLOP/s (`None` without a
    /// re-measurement).
    pub remeasured_gflops_median: Option<f64>,
    /// Its first quartile.
    pub remeasured_gflops_q1: Option<f64>,
    /// Its third quartile.
    pub remeasured_gflops_q3: Option<f64>,
    /// [`final_ratio`](Self::final_ratio) from the side-by-side re-measurement.
    pub final_ratio_remeasured: Option<f64>,
    /// Wilcoxon signed-rank test of the re-measured log time ratios against the baseline,
    /// paired by seed (`None` for the baseline, or when all pairs tie).
    pub signed_rank: Option<SignedRank>,
    /// Median over runs of the re-measurement's relative spread (IQR ÷ median of the
    /// rounds).
    pub remeasure_spread_median: Option<f64>,
    /// Median over seeds of (accounted time to reach the baseline's final best ÷ the
    /// baseline's own accounted time to reach it); below 1 = faster. `None` when the median
    /// seed did not reach it. Accounted time: measurement as charged (cache hits at their
    /// first cost), every other phase as measured.
    pub time_to_reach_ratio: Option<f64>,
    /// The same ratio by the wall clock (cache hits nearly free).
    pub time_to_reach_ratio_wall: Option<f64>,
    /// The same ratio in trials.
    pub trials_to_reach_ratio: Option<f64>,
    /// Seeds on which the baseline's final best was reached.
    pub reached: usize,
    /// [`time_to_reach_ratio`](Self::time_to_reach_ratio) with every run's best-so-far
    /// programs re-measured side by side ([`RunTrace::reach_remeasured`]): the target is the
    /// baseline's final best as timed in that same re-measurement, so a lucky reading in a
    /// search sets no target and reaches none. `None` without a trail re-measurement, or
    /// when the median seed did not reach it.
    #[serde(default)]
    pub time_to_reach_ratio_remeasured: Option<f64>,
    /// The same in trials.
    #[serde(default)]
    pub trials_to_reach_ratio_remeasured: Option<f64>,
    /// Seeds that reached the re-measured target.
    #[serde(default)]
    pub reached_remeasured: usize,
    /// Seeds compared on re-measured trails (the baseline's final best was re-measured).
    #[serde(default)]
    pub compared_remeasured: usize,
    /// Seeds compared with the baseline (those where the baseline found a program).
    pub compared: usize,
    /// Share of the round wall time spent inside the policies (pooled over seeds).
    pub policy_share: f64,
    /// Share of the round accounted time spent inside the policies (pooled over seeds).
    pub policy_share_accounted: f64,
    /// Share of the round accounted time spent in evolution (pooled over seeds; accounted,
    /// so that cache hits do not inflate it).
    pub evolution_share: f64,
    /// Median wall seconds of a run.
    pub wall_seconds_median: Option<f64>,
    /// Median accounted seconds of a run.
    pub accounted_seconds_median: Option<f64>,
    /// Trials answered by the shared measurement cache (over seeds).
    pub cache_hits: usize,
    /// Trials (over seeds).
    pub trials: usize,
    /// Legal mutations ÷ mutations tried (pooled over seeds).
    pub mutation_validity: Option<f64>,
    /// Mutations predicted better than their parent ÷ mutations tried (pooled).
    pub mutation_improved: Option<f64>,
}

/// The comparison on one workload.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkloadSummary {
    /// Workload name.
    pub workload: String,
    /// Its canonical spec.
    pub spec: String,
    /// Floating-point operations of one run of the workload.
    pub flop: f64,
    /// The target's tolerance: a run reaches the baseline's best `b` when its best is at
    /// most `b · (1 + tolerance)`.
    pub tolerance: f64,
    /// One entry per configuration, in the order of [`Config::ALL`].
    pub configs: Vec<ConfigSummary>,
}

fn ratio(a: usize, b: usize) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

fn share(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        part / whole
    } else {
        0.0
    }
}

/// The accounted-time, wall-time and trial ratios of a run's reach `p` of a target to the
/// baseline's reach `b` of it; infinite when either never got there.
fn reach_ratios(p: Option<&RoundPoint>, b: Option<&RoundPoint>) -> [f64; 3] {
    let ratio_of = |t: f64, base: f64| if base > 0.0 { t / base } else { 1.0 };
    match (p, b) {
        (Some(p), Some(b)) => [
            ratio_of(p.accounted_seconds, b.accounted_seconds),
            ratio_of(p.seconds, b.seconds),
            ratio_of(p.trials as f64, b.trials as f64),
        ],
        _ => [f64::INFINITY; 3],
    }
}

/// Summarizes the runs of one workload (`flop` per run of the workload); the baseline
/// runs give the per-seed targets.
pub fn summarize(
    workload: &str,
    spec: &str,
    flop: f64,
    runs: &[RunTrace],
    tolerance: f64,
) -> WorkloadSummary {
    let baseline = |seed: u64| {
        runs.iter()
            .find(|r| r.config == Config::Baseline && r.seed == seed)
    };
    let gflops = |s: f64| flop / s / 1e9;
    let mut configs = Vec::new();
    for config in Config::ALL {
        let mine: Vec<&RunTrace> = runs.iter().filter(|r| r.config == config).collect();
        if mine.is_empty() {
            continue;
        }
        let best: Vec<f64> = mine
            .iter()
            .map(|r| r.best_seconds.map_or(0.0, gflops))
            .collect();
        let remeasured: Vec<f64> = mine
            .iter()
            .filter_map(|r| r.remeasured.as_ref())
            .map(|m| m.seconds.map_or(0.0, gflops))
            .collect();
        let (mut final_ratios, mut remeasured_ratios, mut log_ratios) = (vec![], vec![], vec![]);
        let (mut time_ratios, mut wall_ratios, mut trial_ratios) = (vec![], vec![], vec![]);
        let (mut reached, mut compared) = (0, 0);
        let (mut again_time, mut again_trials) = (vec![], vec![]);
        let (mut reached_again, mut compared_again) = (0, 0);
        for r in &mine {
            let Some(base) = baseline(r.seed) else {
                continue;
            };
            let Some(target_best) = base.best_seconds else {
                continue;
            };
            compared += 1;
            final_ratios.push(r.best_seconds.map_or(0.0, |s| target_best / s));
            let again = |t: &RunTrace| t.remeasured.as_ref().and_then(|m| m.seconds);
            if let Some(b) = again(base) {
                let mine = again(r);
                remeasured_ratios.push(mine.map_or(0.0, |s| b / s));
                if let Some(s) = mine {
                    log_ratios.push((b / s).ln());
                }
            }
            let target = target_best * (1.0 + tolerance);
            let [t, w, n] = reach_ratios(r.reach(target), base.reach(target));
            reached += usize::from(t.is_finite());
            time_ratios.push(t);
            wall_ratios.push(w);
            trial_ratios.push(n);
            if let Some(b) = base.final_trail_seconds() {
                compared_again += 1;
                let target = b * (1.0 + tolerance);
                let [t, _, n] =
                    reach_ratios(r.reach_remeasured(target), base.reach_remeasured(target));
                reached_again += usize::from(t.is_finite());
                again_time.push(t);
                again_trials.push(n);
            }
        }
        let rounds: f64 = mine.iter().map(|r| r.round_seconds()).sum();
        let rounds_accounted: f64 = mine.iter().map(|r| r.round_accounted_seconds()).sum();
        let policy: f64 = mine.iter().map(|r| r.policy_seconds()).sum();
        let spreads: Vec<f64> = mine
            .iter()
            .filter_map(|r| r.remeasured.as_ref().and_then(|m| m.spread))
            .collect();
        let seconds_median =
            |f: fn(&RunTrace) -> f64| median(&mine.iter().map(|r| f(r)).collect::<Vec<_>>());
        configs.push(ConfigSummary {
            config,
            sketch_policy: config.sketch_policy().to_string(),
            mutation_policy: config.mutation_policy().to_string(),
            runs: mine.len(),
            best_gflops_median: median(&best),
            best_gflops_q1: quantile(&best, 0.25),
            best_gflops_q3: quantile(&best, 0.75),
            final_ratio: median(&final_ratios),
            remeasured_gflops_median: median(&remeasured),
            remeasured_gflops_q1: quantile(&remeasured, 0.25),
            remeasured_gflops_q3: quantile(&remeasured, 0.75),
            final_ratio_remeasured: median(&remeasured_ratios),
            signed_rank: signed_rank(&log_ratios),
            remeasure_spread_median: median(&spreads),
            time_to_reach_ratio: median(&time_ratios),
            time_to_reach_ratio_wall: median(&wall_ratios),
            trials_to_reach_ratio: median(&trial_ratios),
            reached,
            compared,
            time_to_reach_ratio_remeasured: median(&again_time),
            trials_to_reach_ratio_remeasured: median(&again_trials),
            reached_remeasured: reached_again,
            compared_remeasured: compared_again,
            policy_share: share(policy, rounds),
            policy_share_accounted: share(policy, rounds_accounted),
            evolution_share: share(
                mine.iter().map(|r| r.evolution_seconds()).sum(),
                rounds_accounted,
            ),
            wall_seconds_median: seconds_median(|r| r.wall_seconds),
            accounted_seconds_median: seconds_median(|r| r.accounted_seconds),
            cache_hits: mine.iter().map(|r| r.cache_hits).sum(),
            trials: mine.iter().map(|r| r.trials).sum(),
            mutation_validity: ratio(
                mine.iter().map(|r| r.mutations_valid).sum(),
                mine.iter().map(|r| r.mutations_tried).sum(),
            ),
            mutation_improved: ratio(
                mine.iter().map(|r| r.mutations_improved).sum(),
                mine.iter().map(|r| r.mutations_tried).sum(),
            ),
        });
    }
    WorkloadSummary {
        workload: workload.to_string(),
        spec: spec.to_string(),
        flop,
        tolerance,
        configs,
    }
}

/// The median over `runs` of the best-so-far GFLOP/s at `points` evenly spaced accounted
/// times from 0 to `t_max` (0 GFLOP/s before a run's first valid program).
pub fn median_curve(runs: &[&RunTrace], flop: f64, t_max: f64, points: usize) -> Vec<(f64, f64)> {
    let points = points.max(2);
    (0..points)
        .map(|k| {
            let t = t_max * k as f64 / (points - 1) as f64;
            let at: Vec<f64> = runs
                .iter()
                .map(|r| r.best_at_time(t).map_or(0.0, |s| flop / s / 1e9))
                .collect();
            (t, median(&at).unwrap_or(0.0))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(config: Config, seed: u64, points: &[(f64, Option<f64>)]) -> RunTrace {
        RunTrace {
            config,
            seed,
            rounds: points
                .iter()
                .enumerate()
                .map(|(k, &(t, best))| RoundPoint {
                    round: k,
                    trials: 8 * (k + 1),
                    seconds: t,
                    accounted_seconds: t,
                    best_seconds: best,
                    round_seconds: 1.0,
                    measure_seconds: 0.5,
                    measure_charged_seconds: 0.5,
                    evolution_seconds: 0.25,
                    policy_seconds: 0.1,
                })
                .collect(),
            mutations_tried: 100,
            mutations_valid: 50,
            mutations_improved: 10,
            ..RunTrace::default()
        }
        .finished()
    }

    #[test]
    fn configs_round_trip_and_name_existing_policies() {
        for c in Config::ALL {
            assert_eq!(Config::parse(c.name()), Some(c));
            let registered = |r: Vec<&str>, name| r.contains(&name);
            assert!(registered(
                crate::registry::sketch_policies().names(),
                c.sketch_policy()
            ));
            assert!(registered(
                crate::registry::mutation_policies().names(),
                c.mutation_policy()
            ));
        }
        assert_eq!(Config::parse("nope"), None);
    }

    #[test]
    fn time_to_reach_is_paired_by_seed_and_unreached_seeds_count_as_infinite() {
        let runs = vec![
            trace(Config::Baseline, 0, &[(1.0, Some(2.0)), (2.0, Some(1.0))]),
            trace(Config::Baseline, 1, &[(1.0, Some(4.0)), (3.0, Some(2.0))]),
            // seed 0: reaches 1.0 at 1 s (vs 2 s); seed 1: reaches 2.0 at 1.5 s (vs 3 s).
            trace(Config::Both, 0, &[(1.0, Some(1.0)), (2.0, Some(0.5))]),
            trace(Config::Both, 1, &[(1.5, Some(2.0)), (3.0, Some(2.0))]),
            // never reaches on seed 0, reaches on seed 1 at 3 s.
            trace(Config::Ml, 0, &[(1.0, None), (2.0, Some(1.5))]),
            trace(Config::Ml, 1, &[(1.0, Some(3.0)), (3.0, Some(2.0))]),
        ];
        let s = summarize("w", "w", 2e9, &runs, 0.01);
        let names: Vec<Config> = s.configs.iter().map(|c| c.config).collect();
        assert_eq!(names, vec![Config::Baseline, Config::Ml, Config::Both]);
        let base = &s.configs[0];
        assert_eq!(base.time_to_reach_ratio, Some(1.0));
        assert_eq!(base.final_ratio, Some(1.0));
        assert_eq!(base.reached, 2);
        let both = &s.configs[2];
        assert_eq!(both.time_to_reach_ratio, Some(0.5));
        assert_eq!(both.trials_to_reach_ratio, Some(0.5));
        // Final ratios: seed 0 → 1.0 / 0.5 = 2, seed 1 → 2 / 2 = 1.
        assert_eq!(both.final_ratio, Some(1.5));
        let ml = &s.configs[1];
        assert_eq!(ml.reached, 1);
        assert_eq!(ml.time_to_reach_ratio, None);
        assert_eq!(ml.mutation_validity, Some(0.5));
        assert!((ml.policy_share - 0.1).abs() < 1e-12);
        // 2 GFLOP per run, best 0.5 s and 2.0 s → 4 and 1 GFLOP/s.
        assert_eq!(both.best_gflops_median, Some(2.5));
    }

    #[test]
    fn accounted_time_decides_time_to_reach_and_remeasurement_decides_final_ratios() {
        let remeasured = |s: f64| {
            Some(Remeasurement {
                seconds: Some(s),
                spread: Some(0.02),
                ..Remeasurement::default()
            })
        };
        let mut runs = Vec::new();
        for seed in 0..3 {
            let mut base = trace(
                Config::Baseline,
                seed,
                &[(1.0, Some(2.0)), (2.0, Some(1.0))],
            );
            base.remeasured = remeasured(1.0);
            // Reaches 1.0 at 1 s of wall time, but its cache hits are charged: 1.5 s.
            let mut rl = trace(Config::Rl, seed, &[(1.0, Some(1.0)), (2.0, Some(1.0))]);
            rl.rounds[0].accounted_seconds = 1.5;
            rl.cache_hits = 4;
            // In the search it looked 1 % slower; side by side it is 25 % faster.
            rl.best_seconds = Some(1.01);
            rl.remeasured = remeasured(0.8);
            runs.extend([base, rl]);
        }
        let s = summarize("w", "w", 1e9, &runs, 0.01);
        let rl = &s.configs[1];
        assert_eq!(rl.time_to_reach_ratio, Some(0.75));
        assert_eq!(rl.time_to_reach_ratio_wall, Some(0.5));
        assert!((rl.final_ratio.expect("ratio") - 1.0 / 1.01).abs() < 1e-12);
        assert_eq!(rl.final_ratio_remeasured, Some(1.25));
        assert_eq!(rl.remeasured_gflops_median, Some(1.25));
        assert_eq!(rl.remeasure_spread_median, Some(0.02));
        assert_eq!((rl.cache_hits, rl.trials), (12, 48));
        let test = rl.signed_rank.as_ref().expect("a test");
        assert_eq!((test.n, test.w_plus), (3, 6.0));
        assert!((test.p_value - 0.25).abs() < 1e-12);
        assert_eq!(s.configs[0].signed_rank, None, "the baseline ties itself");
        assert_eq!(s.configs[0].final_ratio_remeasured, Some(1.0));
    }

    #[test]
    fn re_measured_trails_set_the_target_and_decide_the_reach() {
        let point = |round: usize, tag: usize, again: f64| TrailPoint {
            round,
            steps: vec![Step::Fuse {
                stage: tag,
                iters: vec![],
            }],
            remeasured_seconds: Some(again),
        };
        // The baseline's last best (1.0 in the search) was a lucky reading: re-measured it
        // takes 1.5, as does its round-1 best. The rl run's round-0 best re-measures at 1.4.
        let mut base = trace(
            Config::Baseline,
            0,
            &[(1.0, Some(3.0)), (2.0, Some(1.6)), (4.0, Some(1.0))],
        );
        base.trail = vec![point(0, 0, 3.0), point(1, 1, 1.5), point(2, 2, 1.5)];
        let mut rl = trace(Config::Rl, 0, &[(1.0, Some(1.1)), (4.0, Some(1.1))]);
        rl.trail = vec![point(0, 3, 1.4)];
        let s = summarize("w", "w", 1e9, &[base, rl], 0.01);
        let (b, r) = (&s.configs[0], &s.configs[1]);
        // In the search rl never reached 1.0 · 1.01.
        assert_eq!(r.time_to_reach_ratio, None);
        assert_eq!(r.reached, 0);
        // Re-measured, the baseline reached its own 1.5 at 2 s, rl at 1 s.
        assert_eq!(b.time_to_reach_ratio_remeasured, Some(1.0));
        assert_eq!(r.time_to_reach_ratio_remeasured, Some(0.5));
        assert_eq!(r.trials_to_reach_ratio_remeasured, Some(0.5));
        assert_eq!((r.reached_remeasured, r.compared_remeasured), (1, 1));
        // Without a trail re-measurement there is nothing to compare.
        let plain = summarize(
            "w",
            "w",
            1e9,
            &[trace(Config::Baseline, 0, &[(1.0, Some(1.0))])],
            0.01,
        );
        assert_eq!(plain.configs[0].compared_remeasured, 0);
        assert_eq!(plain.configs[0].time_to_reach_ratio_remeasured, None);
    }

    #[test]
    fn median_curve_steps_with_the_best_so_far() {
        let a = trace(Config::Baseline, 0, &[(1.0, Some(1.0)), (2.0, Some(0.5))]);
        let b = trace(Config::Baseline, 1, &[(1.0, Some(1.0)), (3.0, Some(0.25))]);
        let c = median_curve(&[&a, &b], 1e9, 3.0, 4);
        let g: Vec<f64> = c.iter().map(|p| p.1).collect();
        assert_eq!(g, vec![0.0, 1.0, 1.5, 3.0]);
    }
}
