//! The lowerings of a search, kept so that a candidate is lowered once (issue #27): the cost
//! model's scorer ([`crate::model::ModelScorer`]) lowers a state to extract its features and
//! leaves the loop nest here; the measurer ([`crate::harness::HarnessMeasurer`]) takes it
//! from here and sends it with the candidate, so the builder compiles it without replaying
//! and lowering the step log again (in process, and in a worker, which receives it over the
//! pipe: ~30 µs against ~80-110 µs of replay and lowering, see `examples/nest_wire.rs`).
//!
//! [`Lowerings`] is a handle (clones share one memo), bounded by an estimate of the nests'
//! memory: when the newer of its two generations reaches half the budget, the older is
//! dropped (a nest used again is moved to the newer). The key is the workload key and the
//! state's step log, as the scorer's. A round scores some 8,000 fresh states and measures
//! 64 of them, the best-scored (and a few random ones): so that those are held whatever the
//! budget drops, the scorer also keeps the nests of the [`KEPT_BEST`] best-scored states
//! of the round apart ([`Lowerings::keep_best`]).
//!
//! Memory against lowerings, measured with `examples/lower_count.rs` (3-round in-process
//! tunes, default population 2048, about 23,000 states lowered per tune): the peak resident
//! memory of the process, and how many of the 192 measured candidates the measurer lowered
//! again, per memo budget:
//!
//! | budget           | gmm-3            | c2d-3            |
//! |------------------|------------------|------------------|
//! | none (1 byte)    | 177 MB, 19 again | 253 MB, 17 again |
//! | 16 MiB (default) | 195 MB, 21 again | 271 MB, 17 again |
//! | 64 MiB           | 251 MB, 19 again | 319 MB, 17 again |
//! | 256 MiB          | 364 MB, 0 again  | 526 MB, 0 again  |
//!
//! The best-scored set does the work; what is lowered again (~100 µs each, under a
//! millisecond a round) are the ε-greedy random picks and states returning from an earlier
//! round, which only a budget holding whole rounds keeps, at ~200 MB: so the default is
//! small.
//!
//! ```
//! use std::sync::Arc;
//! use tessel_search::lowering::Lowerings;
//! let dag = Arc::new(tessel_workloads::lookup("gmm:b=1,n=8,m=8,k=8").unwrap().dag);
//! let state = tessel_ir::State::new(dag);
//! let lowerings = Lowerings::default();
//! let before = tessel_ir::lower::lowerings();
//! let a = lowerings.get_or_lower(&state).unwrap();
//! let b = lowerings.get_or_lower(&state).unwrap();
//! assert!(Arc::ptr_eq(&a, &b));
//! assert_eq!(tessel_ir::lower::lowerings() - before, 1);
//! ```

use crate::evolution::state_key;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tessel_ir::loop_nest::LoopNest;
use tessel_ir::{ComputeDag, State};

/// A state's key: its workload key and its step log ([`state_key`]).
pub type LoweringKey = (String, String);

/// The default memory budget of a [`Lowerings`] (estimated bytes of the nests it holds, the
/// best-scored kept apart not counted): 16 MiB, about 1,500 nests of c2d-3 programs or
/// 2,300 of gmm-3 (`examples/nest_wire.rs` estimates 11 and 7 KB each). See the module
/// docs for what a larger one buys.
pub const DEFAULT_BUDGET_BYTES: usize = 16 << 20;

/// How many best-scored states of a round keep their nests apart from the budget
/// ([`Lowerings::keep_best`]): well above the 128–256 states an evolution hands the tuner to
/// pick 64 from.
pub const KEPT_BEST: usize = 1024;

/// A shared, bounded memo of lowered states (see the module docs).
#[derive(Clone, Debug)]
pub struct Lowerings {
    inner: Arc<Mutex<Inner>>,
}

/// What [`Lowerings`] counted so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoweringStats {
    /// Nests found when asked for.
    pub hits: u64,
    /// Nests asked for and not held.
    pub misses: u64,
    /// Nests stored.
    pub stored: u64,
    /// Nests dropped to stay within the budget.
    pub dropped: u64,
}

#[derive(Debug)]
struct Inner {
    budget: usize,
    newer: Generation,
    older: Generation,
    /// Workload key per DAG (the DAG is held, so that its address stays its own).
    dags: HashMap<usize, (Arc<ComputeDag>, String)>,
    stats: LoweringStats,
    /// The best-scored states' nests, kept apart ([`Lowerings::keep_best`]).
    best: HashMap<LoweringKey, (f32, Arc<LoopNest>)>,
    /// The lowest score in `best` (when it is full).
    best_floor: f32,
}

#[derive(Debug, Default)]
struct Generation {
    nests: HashMap<LoweringKey, Lowered>,
    bytes: usize,
}

/// A held lowering of a state.
#[derive(Clone, Debug, PartialEq)]
pub enum Lowered {
    /// Its loop nest.
    Nest(Arc<LoopNest>),
    /// The state does not lower.
    Failed,
}

impl Lowered {
    fn bytes(&self) -> usize {
        match self {
            Lowered::Nest(n) => nest_bytes(n),
            Lowered::Failed => 64,
        }
    }
}

/// An estimate of the heap memory of `nest` (bytes): its arenas and interning table.
pub fn nest_bytes(nest: &LoopNest) -> usize {
    let names: usize = nest.buffers.iter().map(|b| b.name.len()).sum::<usize>()
        + nest.loops.iter().map(|l| l.name.len()).sum::<usize>();
    256 + names
        + 64 * (nest.nodes().len() + nest.stmts.len() + nest.loops.len() + nest.buffers.len())
}

impl Default for Lowerings {
    /// A memo with the default budget ([`DEFAULT_BUDGET_BYTES`]).
    fn default() -> Lowerings {
        Lowerings::with_budget(DEFAULT_BUDGET_BYTES)
    }
}

impl Lowerings {
    /// A memo holding at most about `budget` bytes of nests (at least one nest).
    pub fn with_budget(budget: usize) -> Lowerings {
        Lowerings {
            inner: Arc::new(Mutex::new(Inner {
                budget,
                newer: Generation::default(),
                older: Generation::default(),
                dags: HashMap::new(),
                stats: LoweringStats::default(),
                best: HashMap::new(),
                best_floor: f32::NEG_INFINITY,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the maps consistent (no step of an update
        // can panic half-way), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The key of `state`: its workload key (computed once per DAG) and its step log.
    pub fn key(&self, state: &State) -> LoweringKey {
        (self.workload_key(state.original_dag()), state_key(state))
    }

    /// The workload key of `dag` (computed once per DAG).
    pub fn workload_key(&self, dag: &Arc<ComputeDag>) -> String {
        let ptr = Arc::as_ptr(dag) as usize;
        let mut inner = self.lock();
        if inner.dags.len() > 4096 {
            inner.dags.clear();
        }
        inner
            .dags
            .entry(ptr)
            .or_insert_with(|| (Arc::clone(dag), dag.workload_key()))
            .1
            .clone()
    }

    /// The lowering held for `key`, if any. Counts a hit or a miss.
    pub fn lookup(&self, key: &LoweringKey) -> Option<Lowered> {
        let mut inner = self.lock();
        if let Some((_, nest)) = inner.best.get(key) {
            let nest = Arc::clone(nest);
            inner.stats.hits += 1;
            return Some(Lowered::Nest(nest));
        }
        let found = inner.take(key);
        match found {
            Some(l) => {
                inner.stats.hits += 1;
                inner.put(key.clone(), l.clone());
                Some(l)
            }
            None => {
                inner.stats.misses += 1;
                None
            }
        }
    }

    /// The nest held for `state`, if it is held and lowered.
    pub fn nest_of(&self, state: &State) -> Option<Arc<LoopNest>> {
        match self.lookup(&self.key(state)) {
            Some(Lowered::Nest(n)) => Some(n),
            _ => None,
        }
    }

    /// Stores the lowering of the state of `key`: its nest, or `None` when it failed.
    pub fn insert(&self, key: LoweringKey, nest: Option<Arc<LoopNest>>) {
        let lowered = match nest {
            Some(n) => Lowered::Nest(n),
            None => Lowered::Failed,
        };
        let mut inner = self.lock();
        inner.stats.stored += 1;
        inner.put(key, lowered);
    }

    /// The nest of `state`: the one held, or a new lowering (stored). `None` when the state
    /// does not lower.
    pub fn get_or_lower(&self, state: &State) -> Option<Arc<LoopNest>> {
        let key = self.key(state);
        match self.lookup(&key) {
            Some(Lowered::Nest(n)) => return Some(n),
            Some(Lowered::Failed) => return None,
            None => {}
        }
        let nest = tessel_ir::lower::lower(state).ok().map(Arc::new);
        self.insert(key, nest.clone());
        nest
    }

    /// Keeps apart the nests of the best-scored states among `scored` (keys, predicted
    /// scores, higher is better, and the nest when the caller has it in hand) and those kept
    /// before, [`KEPT_BEST`] at most, so that the budget does not drop the states a round is
    /// likely to measure. A state without a nest in hand is kept only if the memo holds it.
    pub fn keep_best<'a>(
        &self,
        scored: impl IntoIterator<Item = (&'a LoweringKey, f32, Option<Arc<LoopNest>>)>,
    ) {
        let mut inner = self.lock();
        for (key, score, in_hand) in scored {
            if score.is_nan() || inner.best.contains_key(key) {
                continue;
            }
            if inner.best.len() >= KEPT_BEST && score <= inner.best_floor {
                continue;
            }
            let held = match inner
                .newer
                .nests
                .get(key)
                .or_else(|| inner.older.nests.get(key))
            {
                Some(Lowered::Nest(n)) => Some(Arc::clone(n)),
                _ => None,
            };
            let Some(nest) = in_hand.or(held) else {
                continue;
            };
            inner.best.insert(key.clone(), (score, nest));
            if inner.best.len() > KEPT_BEST {
                let lowest = inner
                    .best
                    .iter()
                    .min_by(|a, b| a.1 .0.total_cmp(&b.1 .0))
                    .map(|(k, _)| k.clone());
                if let Some(k) = lowest {
                    inner.best.remove(&k);
                }
            }
            if inner.best.len() >= KEPT_BEST {
                inner.best_floor = inner
                    .best
                    .values()
                    .map(|v| v.0)
                    .fold(f32::INFINITY, f32::min);
            }
        }
    }

    /// Forgets the best-scored states kept apart (the scores change when the model is
    /// retrained); their nests stay in the memo if it holds them.
    pub fn clear_best(&self) {
        let mut inner = self.lock();
        inner.best.clear();
        inner.best_floor = f32::NEG_INFINITY;
    }

    /// Number of states held within the budget (the best-scored kept apart not counted).
    pub fn len(&self) -> usize {
        let inner = self.lock();
        inner.newer.nests.len() + inner.older.nests.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The counts so far.
    pub fn stats(&self) -> LoweringStats {
        self.lock().stats
    }
}

impl Inner {
    /// Removes and returns the entry of `key` from either generation.
    fn take(&mut self, key: &LoweringKey) -> Option<Lowered> {
        for g in [&mut self.newer, &mut self.older] {
            if let Some(l) = g.nests.remove(key) {
                g.bytes = g.bytes.saturating_sub(l.bytes());
                return Some(l);
            }
        }
        None
    }

    /// Puts an entry in the newer generation, retiring the older one when the newer is full.
    fn put(&mut self, key: LoweringKey, lowered: Lowered) {
        if let Some(old) = self.older.nests.remove(&key) {
            self.older.bytes = self.older.bytes.saturating_sub(old.bytes());
        }
        let bytes = lowered.bytes();
        if let Some(old) = self.newer.nests.insert(key, lowered) {
            self.newer.bytes = self.newer.bytes.saturating_sub(old.bytes());
        }
        self.newer.bytes += bytes;
        if self.newer.bytes > self.budget / 2 {
            let retired = std::mem::replace(&mut self.older, std::mem::take(&mut self.newer));
            self.stats.dropped += retired.nests.len() as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn states(n: usize) -> Vec<State> {
        let dag = Arc::new(
            tessel_workloads::lookup("gmm:b=1,n=16,m=16,k=16")
                .expect("spec")
                .dag,
        );
        let mut rng = tessel_ir::rng::seeded(3);
        let mut out: Vec<State> = Vec::new();
        while out.len() < n {
            let s = tessel_ir::testing::random_state(
                &dag,
                &mut rng,
                &tessel_ir::testing::Limits::default(),
            );
            if !out.iter().any(|o| state_key(o) == state_key(&s)) {
                out.push(s);
            }
        }
        out
    }

    #[test]
    fn a_held_state_is_not_lowered_again_and_the_budget_drops_the_oldest() {
        let states = states(6);
        let max = states
            .iter()
            .map(|s| nest_bytes(&tessel_ir::lower::lower(s).expect("lowers")))
            .max()
            .unwrap_or(0);
        // The newer generation retires once it holds more than one nest's worth.
        let memo = Lowerings::with_budget(2 * max);
        let nests: Vec<Arc<LoopNest>> = states
            .iter()
            .map(|s| memo.get_or_lower(s).expect("lowers"))
            .collect();
        // The last one is held: the same nest, not a new lowering.
        let last = memo.get_or_lower(&states[5]).expect("held");
        assert!(Arc::ptr_eq(&last, &nests[5]));
        assert_eq!(*last, tessel_ir::lower::lower(&states[5]).expect("lowers"));
        // The first ones were dropped to stay within the budget.
        assert!(memo.nest_of(&states[0]).is_none());
        assert!(memo.len() <= 3, "{}", memo.len());
        let stats = memo.stats();
        assert_eq!(stats.stored, 6);
        assert!(stats.dropped >= 2, "{stats:?}");
        // A best-scored state is kept apart: the budget drops it no more.
        let (best, other) = (memo.key(&states[4]), memo.key(&states[5]));
        memo.keep_best([(&best, 0.9f32, None), (&other, 0.1f32, None)]);
        for s in &states[..4] {
            memo.get_or_lower(s);
        }
        assert_eq!(
            memo.lookup(&best),
            Some(Lowered::Nest(Arc::clone(&nests[4])))
        );
        memo.clear_best();
        for s in &states[..4] {
            memo.get_or_lower(s);
        }
        assert_eq!(memo.lookup(&best), None);
        // A state that does not lower is remembered as such.
        let key = memo.key(&states[0]);
        memo.insert(key.clone(), None);
        assert_eq!(memo.lookup(&key), Some(Lowered::Failed));
    }
}
