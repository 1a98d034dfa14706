//! The tuning loop (ANSOR.md §1): rounds of sample → evolve → pick → measure → retrain,
//! configured builder-style like egg's `Runner`, ending with a typed [`StopReason`] and one
//! serializable [`RoundRecord`] per round.
//!
//! Measurement and the cost model are reached through two small traits, [`Measurer`] and
//! [`Scorer`], so that the loop can be driven by the real harness and model, or by
//! deterministic fakes in tests.

use crate::evolution::{
    evolve_keeping_sketches, state_key, EvolutionContext, EvolutionParams, EvolutionStats,
};
use crate::heuristic::heuristic_state_with;
use crate::lowering::Lowerings;
use rand::RngExt;
use serde::Serialize;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tessel_ir::rng::{seeded, TesselRng};
use tessel_ir::{ComputeDag, State, Step};
pub use tessel_measure::{ErrorClass, MeasureError};
use tessel_mutation_model::MutationPolicy;
use tessel_rl_policy::SketchPolicy;
use tessel_sketch::{sample_initial_with, HardwareParams, InitRules, MutationRegistry, Sketch};

/// The result of measuring one candidate.
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    /// Mean run time in seconds, or `None` when the candidate failed.
    pub seconds: Option<f64>,
    /// Why the candidate failed (its class and message), when it did.
    pub error: Option<MeasureError>,
    /// Time spent compiling it (seconds).
    pub compile_seconds: f64,
}

impl Measurement {
    /// A failed measurement: no time, `error`, no compile time.
    pub fn failed(error: MeasureError) -> Measurement {
        Measurement {
            seconds: None,
            error: Some(error),
            compile_seconds: 0.0,
        }
    }
}

/// Measures candidates (and records them).
pub trait Measurer {
    /// Measures `states` of the tuned workload; one result per state, in order.
    fn measure(&mut self, states: &[State]) -> Vec<Measurement>;

    /// Seconds the last [`measure`](Measurer::measure) call is charged on the search's time
    /// axis when that is not the wall time it took: a shared cache
    /// (`tessel_experiment::cache::CachingMeasurer`) charges a hit what its first measurement cost.
    /// `None` (the default): the wall time.
    fn charged_seconds(&self) -> Option<f64> {
        None
    }

    /// True when the measurer cannot go on (its records cannot be written, or the user
    /// asked to stop): the search then ends with [`StopReason::Halted`]. A halted
    /// measurer may return fewer results than states (only those it measured).
    fn halted(&self) -> bool {
        false
    }
}

/// A cost model as the search sees it: scores of states, retrained on measurements.
pub trait Scorer {
    /// Predicted scores (higher = faster) of `states`.
    fn predict(&mut self, states: &[State]) -> Vec<f32>;
    /// Retrains on every measurement so far: states and their normalized throughputs
    /// (`best_seconds / seconds`, 0 for failures).
    fn update(&mut self, states: &[State], throughputs: &[f32]);
}

/// Why tuning stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The trial budget is used up.
    TrialBudget,
    /// The time budget is used up.
    TimeBudget,
    /// No improvement for the early-stopping number of trials.
    EarlyStopping,
    /// A round found nothing new to measure (the space is exhausted).
    Exhausted,
    /// The measurer halted ([`Measurer::halted`]): records could not be written, or an
    /// interrupt asked to stop.
    Halted,
}

/// Where a round's time went (seconds).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TimeSplit {
    /// Sampling the initial population.
    pub sample: f64,
    /// Evolution, cost-model prediction included.
    pub evolution: f64,
    /// Rewarding the sketch policy and retraining the cost model.
    pub train: f64,
    /// Measuring (compile + run + verify + records), wall time.
    pub measure: f64,
    /// Measuring as charged by the measurer ([`Measurer::charged_seconds`]): the same as
    /// `measure` unless results came from a shared cache, whose hits are charged what
    /// their first measurement cost.
    pub measure_charged: f64,
}

impl TimeSplit {
    fn add(&mut self, o: &TimeSplit) {
        self.sample += o.sample;
        self.evolution += o.evolution;
        self.train += o.train;
        self.measure += o.measure;
        self.measure_charged += o.measure_charged;
    }

    /// Total wall seconds.
    pub fn total(&self) -> f64 {
        self.sample + self.evolution + self.train + self.measure
    }

    /// Total accounted seconds: the wall time of every phase but measurement, which counts
    /// as charged.
    pub fn accounted(&self) -> f64 {
        self.sample + self.evolution + self.train + self.measure_charged
    }
}

/// One round of tuning, as logged.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RoundRecord {
    /// Round number, from 0.
    pub round: usize,
    /// Trials measured so far (all rounds).
    pub trials: usize,
    /// Candidates measured this round.
    pub measured: usize,
    /// Of those, how many failed.
    pub failed: usize,
    /// Best time so far (seconds), if any candidate succeeded.
    pub best_seconds: Option<f64>,
    /// The step log of that best program (not logged: records files hold the programs).
    #[serde(skip)]
    pub best_steps: Option<Vec<Step>>,
    /// Time split of this round.
    pub time: TimeSplit,
    /// Mutation statistics of this round's evolution.
    pub evolution: EvolutionStats,
}

/// Parameters of a tuning run (Ansor's defaults, ANSOR.md §9).
#[derive(Clone, Debug)]
pub struct TuneParams {
    /// Total measurement trials.
    pub trials: usize,
    /// Wall-clock budget.
    pub time_budget: Option<Duration>,
    /// Stop after this many trials without improvement.
    pub early_stopping: Option<usize>,
    /// Candidates measured per round (64).
    pub measures_per_round: usize,
    /// Share of each round given to random states (0.05).
    pub eps_greedy: f64,
    /// Share of the population taken from the best measured states (0.2).
    pub use_measured_ratio: f64,
    /// Evolution parameters.
    pub evolution: EvolutionParams,
    /// Seed of every random decision.
    pub seed: u64,
}

impl Default for TuneParams {
    fn default() -> TuneParams {
        TuneParams {
            trials: 1000,
            time_budget: None,
            early_stopping: None,
            measures_per_round: 64,
            eps_greedy: 0.05,
            use_measured_ratio: 0.2,
            evolution: EvolutionParams::default(),
            seed: 0,
        }
    }
}

impl TuneParams {
    /// A short search for tutorials and tests: `trials` trials, 4 measured per round, an
    /// evolution population of 32; Ansor's defaults otherwise.
    pub fn quick(trials: usize) -> TuneParams {
        TuneParams {
            trials,
            measures_per_round: 4,
            evolution: EvolutionParams {
                population: 32,
                ..EvolutionParams::default()
            },
            ..TuneParams::default()
        }
    }
}

/// What a tuning run found.
#[derive(Clone, Debug)]
pub struct TuneResult {
    /// The fastest correct state measured (this run or a resumed one) and its time.
    pub best: Option<(State, f64)>,
    /// The fastest distinct correct states measured (this run or a resumed one), fastest
    /// first, at most [`LEADERS`]: what a final confirmation re-measures
    /// ([`crate::confirm`]).
    pub leaders: Vec<(State, f64)>,
    /// One record per round.
    pub rounds: Vec<RoundRecord>,
    /// Why it stopped.
    pub stop_reason: StopReason,
    /// Trials measured by this run.
    pub trials: usize,
    /// Of those, the valid ones.
    pub valid: usize,
    /// Time split over all rounds.
    pub time: TimeSplit,
}

/// How many leaders a [`TuneResult`] keeps.
pub const LEADERS: usize = 16;

/// A callback run after every round.
pub type RoundHook = Box<dyn FnMut(&RoundRecord)>;

/// A measured state kept by the tuner.
#[derive(Clone, Debug)]
struct Measured {
    state: State,
    seconds: Option<f64>,
}

/// The tuner of one workload, configured builder-style.
///
/// ```no_run
/// # use tessel_search::tuner::*;
/// # fn demo(dag: std::sync::Arc<tessel_ir::ComputeDag>, m: &mut dyn Measurer, s: &mut dyn Scorer) {
/// let hw = tessel_sketch::HardwareParams::detect();
/// let sketches = tessel_sketch::generate_sketches(&dag, &hw).unwrap();
/// let result = Tuner::new(dag, sketches, hw).trials(200).seed(7).run(m, s);
/// println!("stopped: {:?}", result.stop_reason);
/// # }
/// ```
pub struct Tuner {
    dag: Arc<ComputeDag>,
    sketches: Vec<Sketch>,
    hw: HardwareParams,
    init_rules: Arc<InitRules>,
    rules: MutationRegistry,
    params: TuneParams,
    sketch_policy: Box<dyn SketchPolicy>,
    mutation_policy: Box<dyn MutationPolicy>,
    history: Vec<Measured>,
    on_round: Option<RoundHook>,
    /// Where the heuristic schedule's lowering goes (see [`Tuner::lowerings`]).
    lowerings: Option<Lowerings>,
}

impl Tuner {
    /// A tuner with Ansor's defaults: the CPU init and mutation rules, uniform sketch
    /// choice, fixed mutation weights ([`crate::job::TuneJob::tuner`] sets them all).
    pub fn new(dag: Arc<ComputeDag>, sketches: Vec<Sketch>, hw: HardwareParams) -> Tuner {
        Tuner {
            dag,
            sketches,
            hw,
            init_rules: Arc::new(InitRules::cpu()),
            rules: MutationRegistry::cpu(),
            params: TuneParams::default(),
            sketch_policy: Box::new(tessel_rl_policy::Uniform),
            mutation_policy: Box::new(tessel_mutation_model::FixedWeights),
            history: Vec::new(),
            on_round: None,
            lowerings: None,
        }
    }

    /// Keeps the lowering that checks the heuristic schedule in `lowerings` (the memo the
    /// scorer and the measurer share), so that it is not lowered again.
    pub fn lowerings(mut self, lowerings: Lowerings) -> Tuner {
        self.lowerings = Some(lowerings);
        self
    }

    /// Sets the trial budget.
    pub fn trials(mut self, n: usize) -> Tuner {
        self.params.trials = n;
        self
    }

    /// Sets the wall-clock budget.
    pub fn time_budget(mut self, budget: Option<Duration>) -> Tuner {
        self.params.time_budget = budget;
        self
    }

    /// Stops after `n` trials without improvement.
    pub fn early_stopping(mut self, n: Option<usize>) -> Tuner {
        self.params.early_stopping = n;
        self
    }

    /// Sets the number of candidates measured per round.
    pub fn measures_per_round(mut self, n: usize) -> Tuner {
        self.params.measures_per_round = n.max(1);
        self
    }

    /// Sets the seed.
    pub fn seed(mut self, seed: u64) -> Tuner {
        self.params.seed = seed;
        self
    }

    /// Replaces all parameters.
    pub fn params(mut self, params: TuneParams) -> Tuner {
        self.params = params;
        self
    }

    /// Replaces the sketch policy.
    pub fn sketch_policy(mut self, p: Box<dyn SketchPolicy>) -> Tuner {
        self.sketch_policy = p;
        self
    }

    /// Replaces the mutation policy.
    pub fn mutation_policy(mut self, p: Box<dyn MutationPolicy>) -> Tuner {
        self.mutation_policy = p;
        self
    }

    /// Replaces the init rules that fill sketches into complete programs.
    pub fn init_rules(mut self, rules: Arc<InitRules>) -> Tuner {
        self.init_rules = rules;
        self
    }

    /// Replaces the mutation rules of the evolution.
    pub fn mutation_rules(mut self, rules: MutationRegistry) -> Tuner {
        self.rules = rules;
        self
    }

    /// Wraps both policies (to time or log their calls, say): `sketch` and `mutation` get
    /// the current ones and return their replacements.
    pub fn wrap_policies(
        mut self,
        sketch: impl FnOnce(Box<dyn SketchPolicy>) -> Box<dyn SketchPolicy>,
        mutation: impl FnOnce(Box<dyn MutationPolicy>) -> Box<dyn MutationPolicy>,
    ) -> Tuner {
        let s = std::mem::replace(&mut self.sketch_policy, Box::new(tessel_rl_policy::Uniform));
        let m = std::mem::replace(
            &mut self.mutation_policy,
            Box::new(tessel_mutation_model::FixedWeights),
        );
        self.sketch_policy = sketch(s);
        self.mutation_policy = mutation(m);
        self
    }

    /// Calls `f` after every round (progress bars, logs).
    pub fn on_round(mut self, f: impl FnMut(&RoundRecord) + 'static) -> Tuner {
        self.on_round = Some(Box::new(f));
        self
    }

    /// Adds earlier measurements (resume): they are never measured again, count for the
    /// best, and train the cost model from the start.
    pub fn resume_from(mut self, measured: Vec<(State, Option<f64>)>) -> Tuner {
        self.history.extend(
            measured
                .into_iter()
                .map(|(state, seconds)| Measured { state, seconds }),
        );
        self
    }

    /// The `n` fastest distinct correct states measured, fastest first (a state measured
    /// more than once counts with its fastest reading).
    fn leaders(&self, n: usize) -> Vec<(State, f64)> {
        let mut timed: Vec<(&State, f64)> = self
            .history
            .iter()
            .filter_map(|m| m.seconds.map(|s| (&m.state, s)))
            .collect();
        timed.sort_by(|a, b| a.1.total_cmp(&b.1));
        let mut seen = std::collections::HashSet::new();
        timed
            .into_iter()
            .filter(|(s, _)| seen.insert(crate::evolution::state_key(s)))
            .take(n)
            .map(|(s, t)| (s.clone(), t))
            .collect()
    }

    fn best(&self) -> Option<(State, f64)> {
        self.history
            .iter()
            .filter_map(|m| m.seconds.map(|s| (m, s)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(m, s)| (m.state.clone(), s))
    }

    fn train(&self, scorer: &mut dyn Scorer) {
        if self.history.is_empty() {
            return;
        }
        let best = self.best().map(|b| b.1);
        let states: Vec<State> = self.history.iter().map(|m| m.state.clone()).collect();
        let y: Vec<f32> = self
            .history
            .iter()
            .map(|m| match (m.seconds, best) {
                (Some(s), Some(b)) if s > 0.0 => (b / s) as f32,
                _ => 0.0,
            })
            .collect();
        scorer.update(&states, &y);
    }

    /// Samples the initial population: at least the evolution population, distinct.
    fn sample_population(&mut self, rng: &mut TesselRng) -> Vec<State> {
        let want = self.params.evolution.population;
        let picks = self.sketch_policy.allocate(want, self.sketches.len(), rng);
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(want);
        for sketch in picks {
            let Some(sk) = self.sketches.get(sketch as usize) else {
                continue;
            };
            if let Some(s) = sample_initial_with(sk, &self.init_rules, &self.hw, rng) {
                if seen.insert(state_key(&s)) {
                    out.push(s);
                }
            }
        }
        out
    }

    /// Starts a session that tunes round by round (the task scheduler of a network
    /// interleaves several sessions); earlier measurements train `scorer` first.
    pub fn start(self, scorer: &mut dyn Scorer) -> TuneSession {
        let measured_keys: HashSet<String> =
            self.history.iter().map(|m| state_key(&m.state)).collect();
        self.train(scorer);
        let best = self.best();
        let best_seconds = best.as_ref().map(|b| b.1);
        let best_steps = best.map(|b| b.0.steps().to_vec());
        let mut sketch_best = vec![None; self.sketches.len()];
        for m in &self.history {
            note_sketch_best(&mut sketch_best, &m.state, m.seconds);
        }
        TuneSession {
            sketch_best,
            rng: seeded(self.params.seed),
            tuner: self,
            measured_keys,
            rounds: Vec::new(),
            total: TimeSplit::default(),
            trials: 0,
            valid: 0,
            best_trial: 0,
            best_seconds,
            best_steps,
            empty_rounds: 0,
            halted: false,
            start: Instant::now(),
        }
    }

    /// Runs the search until a budget is spent.
    pub fn run(self, measurer: &mut dyn Measurer, scorer: &mut dyn Scorer) -> TuneResult {
        let mut session = self.start(scorer);
        let reason = loop {
            if measurer.halted() {
                break StopReason::Halted;
            }
            if let Some(reason) = session.stop_reason() {
                break reason;
            }
            let per_round = session.tuner.params.measures_per_round;
            session.round(measurer, scorer, per_round);
        };
        session.finish(reason)
    }
}

/// A tuning run in progress: one [`round`](TuneSession::round) at a time.
pub struct TuneSession {
    tuner: Tuner,
    rng: TesselRng,
    measured_keys: HashSet<String>,
    rounds: Vec<RoundRecord>,
    total: TimeSplit,
    trials: usize,
    valid: usize,
    best_trial: usize,
    best_seconds: Option<f64>,
    /// The step log of the program with `best_seconds`.
    best_steps: Option<Vec<Step>>,
    /// Per sketch, the best time any of its programs reached (resumed records included).
    sketch_best: Vec<Option<f64>>,
    empty_rounds: usize,
    /// The measurer halted ([`Measurer::halted`]): no more rounds.
    halted: bool,
    start: Instant,
}

/// Lowers `state`'s sketch's best time to `seconds` if it is faster.
fn note_sketch_best(best: &mut [Option<f64>], state: &State, seconds: Option<f64>) {
    let slot = state.sketch_id().and_then(|k| best.get_mut(k as usize));
    if let (Some(slot), Some(s)) = (slot, seconds) {
        *slot = Some(slot.map_or(s, |b: f64| b.min(s)));
    }
}

impl TuneSession {
    /// Trials measured by this session.
    pub fn trials(&self) -> usize {
        self.trials
    }

    /// The best time so far (this session or resumed records), in seconds.
    pub fn best_seconds(&self) -> Option<f64> {
        self.best_seconds
    }

    /// The `n` fastest distinct correct states so far (this session or resumed records),
    /// fastest first, with their times: what a final confirmation re-measures.
    pub fn leaders(&self, n: usize) -> Vec<(State, f64)> {
        self.tuner.leaders(n)
    }

    /// The fastest correct state so far and its time.
    pub fn best(&self) -> Option<(State, f64)> {
        self.tuner.best()
    }

    /// The records of the rounds so far.
    pub fn rounds(&self) -> &[RoundRecord] {
        &self.rounds
    }

    /// Why the session should stop now, if it should.
    pub fn stop_reason(&self) -> Option<StopReason> {
        let p = &self.tuner.params;
        if self.halted {
            Some(StopReason::Halted)
        } else if self.trials >= p.trials {
            Some(StopReason::TrialBudget)
        } else if p.time_budget.is_some_and(|b| self.start.elapsed() >= b) {
            Some(StopReason::TimeBudget)
        } else if p
            .early_stopping
            .is_some_and(|n| self.trials - self.best_trial >= n)
        {
            Some(StopReason::EarlyStopping)
        } else if self.empty_rounds > 1 {
            Some(StopReason::Exhausted)
        } else {
            None
        }
    }

    /// Ends the session.
    pub fn finish(self, stop_reason: StopReason) -> TuneResult {
        TuneResult {
            best: self.tuner.best(),
            leaders: self.tuner.leaders(LEADERS),
            rounds: self.rounds,
            stop_reason,
            trials: self.trials,
            valid: self.valid,
            time: self.total,
        }
    }

    /// One round: sample, evolve, pick at most `max_measures` new candidates (and never more
    /// than the trial budget left), measure them, reward the sketch policy, retrain the
    /// model. Returns the round's record, or `None` if there was nothing new to measure.
    ///
    /// When the sketch policy gives [measurement shares](SketchPolicy::measure_shares),
    /// the picks follow them (best predicted first within a sketch), and the first round
    /// starts with a probe of [`PROBE_PER_SKETCH`] random programs of every sketch.
    pub fn round(
        &mut self,
        measurer: &mut dyn Measurer,
        scorer: &mut dyn Scorer,
        max_measures: usize,
    ) -> Option<&RoundRecord> {
        if measurer.halted() {
            self.halted = true;
            return None;
        }
        let mut time = TimeSplit::default();
        let per_round = max_measures
            .min(self.tuner.params.trials.saturating_sub(self.trials))
            .max(1);
        let n_sketches = self.tuner.sketches.len();
        let first_round = self.rounds.is_empty();
        // 1. Initial population, plus the best measured states.
        let t = Instant::now();
        let mut population = self.tuner.sample_population(&mut self.rng);
        let mut shares = self.tuner.sketch_policy.measure_shares(n_sketches);
        let mut probe: Vec<State> = Vec::new();
        if shares.is_some() && first_round {
            let mut per_sketch = vec![0usize; n_sketches];
            for s in &population {
                let Some(k) = s.sketch_id().map(|k| k as usize) else {
                    continue;
                };
                if per_sketch.get(k).is_some_and(|&n| n < PROBE_PER_SKETCH)
                    && probe.len() < per_round / 2
                    && self.measured_keys.insert(state_key(s))
                {
                    per_sketch[k] += 1;
                    probe.push(s.clone());
                }
            }
        }
        let n_random = ((self.tuner.params.eps_greedy * per_round as f64).floor() as usize)
            .min(per_round - probe.len());
        let random: Vec<State> = if population.is_empty() {
            Vec::new()
        } else {
            (0..3 * n_random)
                .map(|_| population[self.rng.random_range(0..population.len())].clone())
                .collect()
        };
        let mut by_speed: Vec<&Measured> = self
            .tuner
            .history
            .iter()
            .filter(|m| m.seconds.is_some())
            .collect();
        by_speed.sort_by(|a, b| {
            a.seconds
                .partial_cmp(&b.seconds)
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        let params = &self.tuner.params;
        let n_best = (params.use_measured_ratio * params.evolution.population as f64) as usize;
        population.extend(by_speed.iter().take(n_best).map(|m| m.state.clone()));
        time.sample = t.elapsed().as_secs_f64();
        // 2. Evolution (a wider selection, and every sketch's own best, when the picks must
        //    follow shares).
        let t = Instant::now();
        let tuner = &mut self.tuner;
        let out_size = if shares.is_some() { 4 } else { 2 } * per_round;
        let per_sketch = if shares.is_some() { per_round } else { 0 };
        let mut score = |states: &[State]| scorer.predict(states);
        let mut ctx = EvolutionContext {
            hw: &tuner.hw,
            rules: &tuner.rules,
            policy: tuner.mutation_policy.as_mut(),
            score: &mut score,
            measured: &self.measured_keys,
        };
        let (evolved, stats) = evolve_keeping_sketches(
            population,
            out_size,
            per_sketch,
            &tuner.params.evolution,
            &mut ctx,
            &mut self.rng,
        );
        time.evolution = t.elapsed().as_secs_f64();
        // 3. The probe, measured and rewarded before the rest is picked.
        let mut tally = RoundTally::new(n_sketches);
        if !probe.is_empty() {
            self.measure_batch(measurer, probe, &mut time, &mut tally);
            let t = Instant::now();
            self.reward_sketches(&tally);
            shares = self.tuner.sketch_policy.measure_shares(n_sketches);
            time.train += t.elapsed().as_secs_f64();
        }
        let budget = per_round - tally.measured;
        // 4. Pick: the heuristic schedule first (first round), then the best predicted (by
        //    sketch shares if any), then random states (ε-greedy); never a state measured
        //    before.
        let keys = &mut self.measured_keys;
        let mut picks: Vec<State> = Vec::with_capacity(budget);
        let take = |s: State, picks: &mut Vec<State>, keys: &mut HashSet<String>| {
            if picks.len() < budget && keys.insert(state_key(&s)) {
                picks.push(s);
            }
        };
        if first_round {
            let lowerings = self.tuner.lowerings.as_ref();
            if let Some(h) = heuristic_state_with(&self.tuner.dag, &self.tuner.hw, lowerings) {
                take(h, &mut picks, keys);
            }
        }
        let n_good = budget.saturating_sub(n_random);
        let mut evolved: Vec<State> = evolved.into_iter().map(|(s, _)| s).collect();
        if let Some(shares) = &shares {
            let wanted = n_good.saturating_sub(picks.len());
            let (chosen, rest) = if self.tuner.sketch_policy.pools_leading_sketches() {
                split_by_shares_pooling_leaders(evolved, shares, wanted, keys)
            } else {
                split_by_shares(evolved, shares, wanted, keys)
            };
            picks.extend(chosen);
            evolved = rest;
        }
        let mut evolved = evolved.into_iter();
        for s in evolved.by_ref() {
            if picks.len() >= n_good {
                break;
            }
            take(s, &mut picks, keys);
        }
        for s in random.into_iter().chain(evolved) {
            take(s, &mut picks, keys);
        }
        if picks.is_empty() && tally.measured == 0 {
            self.empty_rounds += 1;
            return None;
        }
        self.empty_rounds = 0;
        // 5. Measure.
        let mut round_tally = RoundTally::new(n_sketches);
        self.measure_batch(measurer, picks, &mut time, &mut round_tally);
        self.halted = measurer.halted();
        // 6. Reward the sketch policy, retrain the model.
        let t = Instant::now();
        self.reward_sketches(&round_tally);
        self.tuner.train(scorer);
        time.train += t.elapsed().as_secs_f64();
        self.total.add(&time);
        let record = RoundRecord {
            round: self.rounds.len(),
            trials: self.trials,
            measured: tally.measured + round_tally.measured,
            failed: tally.failed + round_tally.failed,
            best_seconds: self.best_seconds,
            best_steps: self.best_steps.clone(),
            time,
            evolution: stats,
        };
        if let Some(f) = self.tuner.on_round.as_mut() {
            f(&record);
        }
        self.rounds.push(record);
        self.rounds.last()
    }

    /// Measures `picks`, adds them to the history and the counters, and tallies them.
    fn measure_batch(
        &mut self,
        measurer: &mut dyn Measurer,
        picks: Vec<State>,
        time: &mut TimeSplit,
        tally: &mut RoundTally,
    ) {
        if picks.is_empty() {
            return;
        }
        let t = Instant::now();
        let results = measurer.measure(&picks);
        let wall = t.elapsed().as_secs_f64();
        time.measure += wall;
        time.measure_charged += measurer.charged_seconds().unwrap_or(wall);
        for (state, m) in picks.into_iter().zip(results) {
            self.trials += 1;
            tally.measured += 1;
            let sketch = state.sketch_id().map(|id| id as usize);
            if let Some(slot) = sketch.and_then(|id| tally.had_program.get_mut(id)) {
                *slot = true;
            }
            match m.seconds {
                Some(s) => {
                    self.valid += 1;
                    if self.best_seconds.is_none_or(|b| s < b) {
                        self.best_seconds = Some(s);
                        self.best_steps = Some(state.steps().to_vec());
                        self.best_trial = self.trials;
                    }
                }
                None => tally.failed += 1,
            }
            note_sketch_best(&mut self.sketch_best, &state, m.seconds);
            self.tuner.history.push(Measured {
                state,
                seconds: m.seconds,
            });
        }
    }

    /// Rewards every sketch that had a program measured in `tally` with the normalized
    /// throughput of the best program it has reached so far (0 while all have failed).
    ///
    /// The best so far, not the round's best: a round's best rewards a sketch for the
    /// number of its programs measured in the round (the best of 50 beats the best of 3),
    /// so a sketch that got more picks would get more again.
    fn reward_sketches(&mut self, tally: &RoundTally) {
        for (sketch, had) in tally.had_program.iter().enumerate() {
            if *had {
                let reward = match (self.sketch_best[sketch], self.best_seconds) {
                    (Some(b), Some(best)) => (best / b).clamp(0.0, 1.0),
                    _ => 0.0,
                };
                self.tuner.sketch_policy.reward(sketch as u32, reward);
            }
        }
    }
}

/// Random programs of every sketch measured first in the first round when the sketch policy
/// steers the measurements (at most half the round). Four, not two: a sketch is judged by
/// the best of its probe, and random programs of some sketches are very uneven (dep-1's
/// best sketch: 4–19 GFLOP/s in round 1, against a steady 15–18 for the others), so a
/// best-of-two often ranked it last and the steering starved it (one-thread experiment:
/// 2 of 5 seeds; with four, none of 5).
pub const PROBE_PER_SKETCH: usize = 4;

/// What one measured batch gave.
struct RoundTally {
    measured: usize,
    failed: usize,
    /// Did the sketch have a program measured?
    had_program: Vec<bool>,
}

impl RoundTally {
    fn new(n_sketches: usize) -> RoundTally {
        RoundTally {
            measured: 0,
            failed: 0,
            had_program: vec![false; n_sketches],
        }
    }
}

/// Takes up to `wanted` states from `ranked` (best first) so that each sketch gets its
/// share (largest-remainder quotas), skipping states in `keys` and adding the taken ones to
/// it. Returns the taken states and the untaken rest, still in rank order; a sketch with
/// too few states leaves its quota unfilled (the caller fills up from the rest).
pub fn split_by_shares(
    ranked: Vec<State>,
    shares: &[f64],
    wanted: usize,
    keys: &mut HashSet<String>,
) -> (Vec<State>, Vec<State>) {
    let groups: Vec<usize> = (0..shares.len()).collect();
    split_by_groups(ranked, shares, &groups, wanted, keys)
}

/// [`split_by_shares`], but the sketches with the largest share form one pool: their
/// quotas add up, and the pool takes its best ranked states whatever their sketch.
pub fn split_by_shares_pooling_leaders(
    ranked: Vec<State>,
    shares: &[f64],
    wanted: usize,
    keys: &mut HashSet<String>,
) -> (Vec<State>, Vec<State>) {
    let top = shares
        .iter()
        .copied()
        .filter(|s| s.is_finite())
        .fold(0.0, f64::max);
    let leads = |s: f64| s >= top * (1.0 - 1e-9);
    let pool = shares.iter().position(|&s| leads(s));
    let groups: Vec<usize> = shares
        .iter()
        .enumerate()
        .map(|(k, &s)| match pool {
            Some(first) if leads(s) => first,
            _ => k,
        })
        .collect();
    split_by_groups(ranked, shares, &groups, wanted, keys)
}

/// Takes up to `wanted` states from `ranked` so that each group of sketches (`groups[k]`:
/// the group of sketch `k`, a sketch index) gets the quotas of its sketches' shares.
fn split_by_groups(
    ranked: Vec<State>,
    shares: &[f64],
    groups: &[usize],
    wanted: usize,
    keys: &mut HashSet<String>,
) -> (Vec<State>, Vec<State>) {
    let mut left = vec![0usize; shares.len()];
    for (k, q) in quotas(shares, wanted).into_iter().enumerate() {
        left[groups[k]] += q;
    }
    let mut chosen = Vec::with_capacity(wanted);
    let mut rest = Vec::new();
    for s in ranked {
        let slot = s
            .sketch_id()
            .and_then(|k| groups.get(k as usize))
            .and_then(|&g| left.get_mut(g))
            .filter(|n| **n > 0);
        match slot {
            Some(n) if keys.insert(state_key(&s)) => {
                *n -= 1;
                chosen.push(s);
            }
            _ => rest.push(s),
        }
    }
    (chosen, rest)
}

/// Splits `n` into integer quotas proportional to `shares` (largest remainder).
pub fn quotas(shares: &[f64], n: usize) -> Vec<usize> {
    let usable: Vec<f64> = shares
        .iter()
        .map(|&s| if s.is_finite() && s > 0.0 { s } else { 0.0 })
        .collect();
    let total: f64 = usable.iter().sum();
    if total <= 0.0 {
        return vec![0; shares.len()];
    }
    let exact: Vec<f64> = usable.iter().map(|s| s / total * n as f64).collect();
    let mut out: Vec<usize> = exact.iter().map(|x| x.floor() as usize).collect();
    let mut order: Vec<usize> = (0..shares.len()).collect();
    order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())));
    let short = n.saturating_sub(out.iter().sum());
    for &k in order.iter().cycle().take(short) {
        out[k] += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::quotas;

    #[test]
    fn quotas_follow_shares_and_sum_to_n() {
        assert_eq!(quotas(&[0.5, 0.25, 0.25], 8), vec![4, 2, 2]);
        assert_eq!(quotas(&[0.7, 0.2, 0.1], 10), vec![7, 2, 1]);
        let q = quotas(&[0.34, 0.33, 0.33], 10);
        assert_eq!(q.iter().sum::<usize>(), 10);
        assert_eq!(q[0], 4);
        assert_eq!(quotas(&[0.0, 0.0], 5), vec![0, 0]);
        assert_eq!(quotas(&[1.0, f64::NAN], 3), vec![3, 0]);
    }
}
