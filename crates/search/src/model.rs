//! The tuner's [`Scorer`] over a learned cost model: states are lowered, their per-store
//! features extracted, and the model predicts; every measurement becomes a training sample.
//!
//! Samples are kept per (workload, step log), so one scorer can be shared by all tasks of a
//! network (Ansor shares one model): a task's update replaces its own samples' labels and
//! keeps the other tasks' samples, then the model is retrained from scratch on all of them
//! ([`CostModel::clear`], then [`CostModel::update_tasks`]).
//!
//! Each candidate is lowered once: predictions look the features up by (workload, step log)
//! first among the training samples, then among the states predicted before (evolution
//! scores its survivors again every generation, the measured best join the next round's
//! population, and a state may return in a later round); only a state seen in neither is
//! lowered. The features of predicted states are kept across rounds, up to
//! [`FEATURE_MEMO`] states (the oldest half is dropped beyond). The loop nests go to the
//! scorer's [`Lowerings`], which the measurer shares ([`crate::job::TuneJob`] wires both):
//! the measured candidate is compiled from the same nest, and a state the measurer lowered
//! first (the heuristic schedule) gives its training sample from that nest. The nests of
//! the round's best-scored states are kept apart from the memo's budget
//! ([`Lowerings::keep_best`]) until the next update.
//!
//! The scorer is generic over the model: any [`CostModel`] (a user's own included) scores
//! states through [`ModelScorer::with_model`]; the default type parameter is a boxed model,
//! what the registry of cost models ([`crate::registry::cost_models`]) makes.

use crate::lowering::{Lowered, LoweringKey, Lowerings};
use crate::tuner::Scorer;
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;
use tessel_cost_model::features::{FeatureExtractor, ProgramFeatures};
use tessel_cost_model::model::{CostModel, GbdtModel, GbdtModelParams};
use tessel_ir::loop_nest::LoopNest;
use tessel_ir::State;

/// The most predicted states whose features a [`ModelScorer`] keeps besides its training
/// samples (1–2 KB each for gmm-3 and c2d-3 programs: two or three stores of 170 floats):
/// when the newer half is full, the older half is dropped. A round of the default search
/// predicts about 8,000 fresh states, so the last two or more rounds' are kept. Measured with
/// `examples/lower_count.rs` (3 rounds of gmm-3): 0 states lowered again at this size, 345
/// at half of it, which saved 16 MB of peak memory (179 vs 195 MB).
pub const FEATURE_MEMO: usize = 32_768;

/// A [`Scorer`] backed by a cost model `M`.
pub struct ModelScorer<M: CostModel = Box<dyn CostModel>> {
    model: M,
    extractor: FeatureExtractor,
    index: HashMap<(String, String), usize>,
    features: Vec<ProgramFeatures>,
    labels: Vec<f32>,
    /// Task (workload) of each sample: a pairwise-trained model compares only programs of
    /// one workload.
    tasks: Vec<u32>,
    task_ids: HashMap<String, u32>,
    /// Features of predicted states that are not samples: the newer and the older half.
    predicted: HashMap<LoweringKey, ProgramFeatures>,
    predicted_older: HashMap<LoweringKey, ProgramFeatures>,
    /// Where the loop nests go (shared with the measurer when wired so).
    lowerings: Lowerings,
}

impl ModelScorer {
    /// The search's GBDT model, seeded: squared error on one row per program
    /// ([`GbdtModelParams::squared_error`]), the configuration every tuning figure so far was
    /// measured with. The pairwise-ranking default of `tessel cost-model eval`
    /// ([`GbdtModelParams::default`]) ranks held-out records better (0.84 vs 0.79) but costs
    /// twice the retraining time and has not been measured end to end in the search yet; pass
    /// it with [`ModelScorer::with_model`] to try it.
    pub fn new(seed: u64) -> ModelScorer {
        ModelScorer::with_model(Box::new(GbdtModel::new(GbdtModelParams {
            seed,
            ..GbdtModelParams::squared_error()
        })))
    }
}

impl<M: CostModel> ModelScorer<M> {
    /// A scorer with the given model.
    pub fn with_model(model: M) -> ModelScorer<M> {
        ModelScorer {
            model,
            extractor: FeatureExtractor::new(),
            index: HashMap::new(),
            features: Vec::new(),
            labels: Vec::new(),
            tasks: Vec::new(),
            task_ids: HashMap::new(),
            predicted: HashMap::new(),
            predicted_older: HashMap::new(),
            lowerings: Lowerings::default(),
        }
    }

    /// The same scorer leaving its loop nests in `lowerings` (shared with a measurer, which
    /// then compiles them instead of lowering again).
    pub fn with_lowerings(mut self, lowerings: Lowerings) -> ModelScorer<M> {
        self.lowerings = lowerings;
        self
    }

    /// The memo of loop nests this scorer fills.
    pub fn lowerings(&self) -> &Lowerings {
        &self.lowerings
    }

    /// The model.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// Number of training samples held.
    pub fn samples(&self) -> usize {
        self.labels.len()
    }

    /// The (workload, step log) key of `state`.
    fn key(&self, state: &State) -> LoweringKey {
        self.lowerings.key(state)
    }

    /// The features of a predicted state, if kept (moved to the newer half).
    fn predicted_features(&mut self, key: &LoweringKey) -> Option<&ProgramFeatures> {
        if !self.predicted.contains_key(key) {
            let f = self.predicted_older.remove(key)?;
            self.keep_predicted(key.clone(), f);
        }
        self.predicted.get(key)
    }

    /// Keeps the features of a predicted state, dropping the older half when full.
    fn keep_predicted(&mut self, key: LoweringKey, f: ProgramFeatures) {
        if self.predicted.len() >= FEATURE_MEMO / 2 {
            self.predicted_older = std::mem::take(&mut self.predicted);
        }
        self.predicted.insert(key, f);
    }

    /// Removes the kept features of a predicted state.
    fn take_predicted(&mut self, key: &LoweringKey) -> Option<ProgramFeatures> {
        self.predicted
            .remove(key)
            .or_else(|| self.predicted_older.remove(key))
    }
}

impl<M: CostModel> Scorer for ModelScorer<M> {
    fn predict(&mut self, states: &[State]) -> Vec<f32> {
        let keys: Vec<LoweringKey> = states.iter().map(|s| self.key(s)).collect();
        // The states without features, each once.
        let mut fresh: HashMap<&LoweringKey, usize> = HashMap::new();
        for (k, key) in keys.iter().enumerate() {
            if !self.index.contains_key(key) && self.predicted_features(key).is_none() {
                fresh.entry(key).or_insert(k);
            }
        }
        // Nests held already (another scorer sharing the memo lowered them) are reused.
        let fresh: Vec<(&LoweringKey, usize, Option<Lowered>)> = fresh
            .into_iter()
            .map(|(key, k)| (key, k, self.lowerings.lookup(key)))
            .collect();
        // Lowering dominates; programs are independent, so use every core.
        let lowered: Vec<(ProgramFeatures, Option<Option<Arc<LoopNest>>>)> = fresh
            .par_iter()
            .map_init(FeatureExtractor::new, |ex, (_, k, held)| match held {
                Some(Lowered::Nest(nest)) => (ex.extract(nest), None),
                Some(Lowered::Failed) => (ProgramFeatures::default(), None),
                None => {
                    let nest = tessel_ir::lower::lower(&states[*k]).ok().map(Arc::new);
                    let f = nest.as_deref().map(|n| ex.extract(n)).unwrap_or_default();
                    (f, Some(nest))
                }
            })
            .collect();
        let mut in_hand: HashMap<&LoweringKey, Arc<LoopNest>> = HashMap::new();
        for ((key, _, _), (f, nest)) in fresh.into_iter().zip(lowered) {
            if let Some(nest) = nest {
                if let Some(n) = &nest {
                    in_hand.insert(key, Arc::clone(n));
                }
                self.lowerings.insert(key.clone(), nest);
            }
            self.keep_predicted(key.clone(), f);
        }
        let feats: Vec<ProgramFeatures> = keys
            .iter()
            .map(|key| match self.index.get(key) {
                Some(&i) => self.features[i].clone(),
                None => self.predicted_features(key).cloned().unwrap_or_default(),
            })
            .collect();
        let scores = self.model.predict(&feats);
        // The best-scored unmeasured states are the ones the round will measure: their
        // nests stay held for the measurer whatever the memo's budget drops.
        let index = &self.index;
        self.lowerings.keep_best(
            keys.iter()
                .zip(scores.iter().copied())
                .filter(|(k, _)| !index.contains_key(*k))
                .map(|(k, s)| (k, s, in_hand.get(k).cloned())),
        );
        scores
    }

    fn update(&mut self, states: &[State], throughputs: &[f32]) {
        for (s, &y) in states.iter().zip(throughputs) {
            let key = self.key(s);
            match self.index.get(&key) {
                Some(&i) => self.labels[i] = y,
                None => {
                    let f = match self.take_predicted(&key) {
                        Some(f) => f,
                        None => match self.lowerings.get_or_lower(s) {
                            Some(nest) => self.extractor.extract(&nest),
                            None => ProgramFeatures::default(),
                        },
                    };
                    let n_tasks = self.task_ids.len() as u32;
                    let task = *self.task_ids.entry(key.0.clone()).or_insert(n_tasks);
                    self.index.insert(key, self.features.len());
                    self.features.push(f);
                    self.labels.push(y);
                    self.tasks.push(task);
                }
            }
        }
        self.lowerings.clear_best();
        self.model.clear();
        self.model
            .update_tasks(&self.features, &self.labels, &self.tasks);
    }
}
