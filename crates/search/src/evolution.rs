//! Ansor's evolutionary search (ANSOR.md §5): fitness-proportional selection by predicted
//! score, mutation through a [`MutationPolicy`], and a bounded heap of the best distinct
//! states that have not been measured yet.

use rand::RngExt;
use std::collections::{BinaryHeap, HashSet};
use tessel_ir::rng::TesselRng;
use tessel_ir::State;
use tessel_mutation_model::{MutationOutcome, MutationPolicy, RuleInfo};
use tessel_sketch::{HardwareParams, MutationRegistry};

/// Parameters of one evolutionary search (Ansor's defaults).
#[derive(Clone, Debug, PartialEq)]
pub struct EvolutionParams {
    /// Population size (2048).
    pub population: usize,
    /// Generations (4).
    pub generations: usize,
    /// Probability that a child is a mutant rather than a copy (0.85).
    pub mutation_prob: f64,
}

impl Default for EvolutionParams {
    fn default() -> EvolutionParams {
        EvolutionParams {
            population: 2048,
            generations: 4,
            mutation_prob: 0.85,
        }
    }
}

/// Counters of one evolutionary search.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct EvolutionStats {
    /// Mutations tried, per rule (in registry order).
    pub mutations_tried: Vec<usize>,
    /// Mutations that produced a legal state, per rule.
    pub mutations_valid: Vec<usize>,
    /// Legal mutants predicted better than their parent, per rule.
    pub mutations_improved: Vec<usize>,
    /// States scored by the cost model.
    pub scored: usize,
}

/// The key under which states are de-duplicated: their step log.
pub fn state_key(state: &State) -> String {
    state.steps_json()
}

/// A state in a [`TopK`], with its score, when it was offered, and its key.
struct Scored {
    score: f32,
    order: usize,
    state: State,
    key: String,
}

impl PartialEq for Scored {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}
impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scored {
    /// Reversed, so that `BinaryHeap` is a min-heap on score (ties: the later one is
    /// smaller, so the earlier-found state is kept).
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then(self.order.cmp(&other.order))
    }
}

/// Everything the evolution uses but does not own.
pub struct EvolutionContext<'a> {
    /// Target parameters for the mutation rules.
    pub hw: &'a HardwareParams,
    /// The mutation rules.
    pub rules: &'a MutationRegistry,
    /// Which rule to apply.
    pub policy: &'a mut dyn MutationPolicy,
    /// Predicted scores (higher is better) of a batch of states.
    pub score: &'a mut dyn FnMut(&[State]) -> Vec<f32>,
    /// Keys of states measured already (never returned).
    pub measured: &'a HashSet<String>,
}

/// The `k` best-scored distinct states offered so far (a min-heap on score; ties keep the
/// earlier-offered state).
struct TopK {
    k: usize,
    heap: BinaryHeap<Scored>,
    keys: HashSet<String>,
}

impl TopK {
    fn new(k: usize) -> TopK {
        TopK {
            k,
            heap: BinaryHeap::new(),
            keys: HashSet::new(),
        }
    }

    fn offer(&mut self, state: &State, key: &str, score: f32, order: usize) {
        if self.k == 0 || self.keys.contains(key) {
            return;
        }
        if self.heap.len() >= self.k {
            if !self.heap.peek().is_some_and(|min| score > min.score) {
                return;
            }
            if let Some(old) = self.heap.pop() {
                self.keys.remove(&old.key);
            }
        }
        self.keys.insert(key.to_string());
        self.heap.push(Scored {
            score,
            order,
            state: state.clone(),
            key: key.to_string(),
        });
    }
}

/// Evolves `init` and returns up to `out_size` distinct, unmeasured states with the best
/// predicted scores, best first.
pub fn evolve(
    init: Vec<State>,
    out_size: usize,
    params: &EvolutionParams,
    ctx: &mut EvolutionContext,
    rng: &mut TesselRng,
) -> (Vec<(State, f32)>, EvolutionStats) {
    evolve_keeping_sketches(init, out_size, 0, params, ctx, rng)
}

/// [`evolve`], plus the `per_sketch` best-scored distinct, unmeasured states of every sketch
/// however low they rank overall; all of them best first, without duplicates.
///
/// A sketch policy that gives each sketch a share of the measurements needs them: the
/// overall best `out_size` can hold almost none of a sketch the model ranks below another
/// (dep-1: 4 of 256 in the third round), and its share then goes to the others.
pub fn evolve_keeping_sketches(
    init: Vec<State>,
    out_size: usize,
    per_sketch: usize,
    params: &EvolutionParams,
    ctx: &mut EvolutionContext,
    rng: &mut TesselRng,
) -> (Vec<(State, f32)>, EvolutionStats) {
    let n_rules = ctx.rules.rules.len();
    let infos: Vec<RuleInfo> = ctx
        .rules
        .rules
        .iter()
        .map(|r| RuleInfo {
            name: r.name,
            weight: r.weight,
        })
        .collect();
    let mut stats = EvolutionStats {
        mutations_tried: vec![0; n_rules],
        mutations_valid: vec![0; n_rules],
        mutations_improved: vec![0; n_rules],
        scored: 0,
    };
    let mut best = TopK::new(out_size);
    let mut best_of_sketch: Vec<TopK> = Vec::new();
    let mut order = 0usize;
    let mut population = init;
    // Scores already known, by population index. New states (the initial population, then
    // each generation's mutants) come first; unmutated copies, which keep their parent's
    // score, come after them, so the states to score are always a prefix.
    let mut known: Vec<Option<f32>> = vec![None; population.len()];
    // Mutants of the previous generation: (index in population, parent score, rule, parent).
    let mut pending: Vec<(usize, f32, usize, State)> = Vec::new();
    for generation in 0..=params.generations {
        if population.is_empty() {
            break;
        }
        let n_new = known.iter().take_while(|k| k.is_none()).count();
        let fresh = (ctx.score)(&population[..n_new]);
        stats.scored += n_new;
        for (slot, &sc) in known.iter_mut().zip(&fresh) {
            *slot = Some(sc);
        }
        let scores: Vec<f32> = known.iter().map(|k| k.unwrap_or(f32::MIN)).collect();
        for (child, parent_score, rule, parent) in pending.drain(..) {
            let outcome = if scores[child] > parent_score {
                stats.mutations_improved[rule] += 1;
                MutationOutcome::Improved
            } else {
                MutationOutcome::NoGain
            };
            ctx.policy.observe(&parent, rule, outcome);
        }
        // Only new states are offered: a copy equals a parent that was offered in its own
        // generation, and a heap's minimum never decreases.
        for (state, &score) in population[..n_new].iter().zip(&fresh) {
            let key = state_key(state);
            if ctx.measured.contains(&key) {
                continue;
            }
            best.offer(state, &key, score, order);
            if let (true, Some(k)) = (per_sketch > 0, state.sketch_id()) {
                let k = k as usize;
                if best_of_sketch.len() <= k {
                    best_of_sketch.resize_with(k + 1, || TopK::new(per_sketch));
                }
                best_of_sketch[k].offer(state, &key, score, order);
            }
            order += 1;
        }
        if generation == params.generations {
            break;
        }
        let weights: Vec<f64> = scores.iter().map(|&s| s.max(0.0) as f64).collect();
        let mut mutants = Vec::with_capacity(params.population);
        let mut copies: Vec<(State, f32)> = Vec::new();
        // Failed mutations are retried, but a population where no rule applies must end.
        let mut attempts = 0usize;
        while mutants.len() + copies.len() < params.population {
            attempts += 1;
            let p = tessel_mutation_model::sample_weighted(&weights, rng);
            if attempts > params.population * 8 {
                copies.push((population[p].clone(), scores[p]));
                continue;
            }
            let parent = &population[p];
            if rng.random_bool(params.mutation_prob) {
                let rule = ctx.policy.choose(parent, &infos, rng).min(n_rules - 1);
                stats.mutations_tried[rule] += 1;
                match ctx.rules.rules[rule].apply(parent, ctx.hw, rng) {
                    Some(child) => {
                        stats.mutations_valid[rule] += 1;
                        pending.push((mutants.len(), scores[p], rule, parent.clone()));
                        mutants.push(child);
                    }
                    None => ctx.policy.observe(parent, rule, MutationOutcome::Invalid),
                }
            } else {
                copies.push((parent.clone(), scores[p]));
            }
        }
        known = vec![None; mutants.len()];
        known.extend(copies.iter().map(|c| Some(c.1)));
        population = mutants;
        population.extend(copies.into_iter().map(|c| c.0));
    }
    let mut seen: HashSet<String> = HashSet::new();
    let mut out: Vec<(State, f32)> = Vec::new();
    for top in std::iter::once(best).chain(best_of_sketch) {
        for s in top.heap {
            if seen.insert(s.key) {
                out.push((s.state, s.score));
            }
        }
    }
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    (out, stats)
}
