//! The tuner's [`Scorer`] over a learned cost model: states are lowered, their per-store
//! features extracted, and the model predicts; every measurement becomes a training sample.
//!
//! Samples are kept per (workload, step log), so one scorer can be shared by all tasks of a
//! network (Ansor shares one model): a task's update replaces its own samples' labels and
//! keeps the other tasks' samples, then the model is retrained from scratch on all of them
//! ([`CostModel::clear`], then [`CostModel::update_tasks`]).
//!
//! Each candidate is lowered once: predictions look the features up by (workload, step log)
//! first among the training samples, then among the states predicted since the last update
//! (evolution scores its survivors again every generation, and the measured best join the
//! next round's population); only a state seen in neither is lowered. An update takes a
//! measured state's features from there and forgets the rest, so what is kept beyond the
//! samples is one round's predictions.
//!
//! The scorer is generic over the model: any [`CostModel`] (a user's own included) scores
//! states through [`ModelScorer::with_model`]; the default type parameter is a boxed model,
//! what the registry of cost models ([`crate::registry::cost_models`]) makes.

use crate::evolution::state_key;
use crate::tuner::Scorer;
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;
use tessel_cost_model::features::{FeatureExtractor, ProgramFeatures};
use tessel_cost_model::model::{CostModel, GbdtModel, GbdtModelParams};
use tessel_ir::State;

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
    workload_keys: HashMap<usize, String>,
    /// Features of the states predicted since the last update that are not samples.
    predicted: HashMap<(String, String), ProgramFeatures>,
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
            workload_keys: HashMap::new(),
            predicted: HashMap::new(),
        }
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
    fn key(&mut self, state: &State) -> (String, String) {
        (self.workload_key(state), state_key(state))
    }

    fn workload_key(&mut self, state: &State) -> String {
        let dag = state.original_dag();
        let ptr = Arc::as_ptr(dag) as usize;
        self.workload_keys
            .entry(ptr)
            .or_insert_with(|| dag.workload_key())
            .clone()
    }
}

impl<M: CostModel> Scorer for ModelScorer<M> {
    fn predict(&mut self, states: &[State]) -> Vec<f32> {
        let keys: Vec<(String, String)> = states.iter().map(|s| self.key(s)).collect();
        // The states never lowered, each once.
        let mut fresh: HashMap<&(String, String), usize> = HashMap::new();
        for (k, key) in keys.iter().enumerate() {
            if !self.index.contains_key(key) && !self.predicted.contains_key(key) {
                fresh.entry(key).or_insert(k);
            }
        }
        let fresh: Vec<(&(String, String), usize)> = fresh.into_iter().collect();
        // Lowering dominates; programs are independent, so use every core.
        let lowered: Vec<ProgramFeatures> = fresh
            .par_iter()
            .map_init(FeatureExtractor::new, |ex, &(_, k)| {
                features_of(ex, &states[k])
            })
            .collect();
        for ((key, _), f) in fresh.into_iter().zip(lowered) {
            self.predicted.insert(key.clone(), f);
        }
        let feats: Vec<ProgramFeatures> = keys
            .iter()
            .map(|key| match self.index.get(key) {
                Some(&i) => self.features[i].clone(),
                None => self.predicted.get(key).cloned().unwrap_or_default(),
            })
            .collect();
        self.model.predict(&feats)
    }

    fn update(&mut self, states: &[State], throughputs: &[f32]) {
        for (s, &y) in states.iter().zip(throughputs) {
            let key = self.key(s);
            match self.index.get(&key) {
                Some(&i) => self.labels[i] = y,
                None => {
                    let f = match self.predicted.remove(&key) {
                        Some(f) => f,
                        None => features_of(&mut self.extractor, s),
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
        self.predicted.clear();
        self.model.clear();
        self.model
            .update_tasks(&self.features, &self.labels, &self.tasks);
    }
}

/// The features of `state`, lowered (the default, empty features when it does not lower).
fn features_of(extractor: &mut FeatureExtractor, state: &State) -> ProgramFeatures {
    match tessel_ir::lower::lower(state) {
        Ok(nest) => extractor.extract(&nest),
        Err(_) => ProgramFeatures::default(),
    }
}
