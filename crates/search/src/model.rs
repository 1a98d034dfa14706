//! The tuner's [`Scorer`] over a learned cost model: states are lowered, their per-store
//! features extracted, and the model predicts; every measurement becomes a training sample.
//!
//! Samples are kept per (workload, step log), so one scorer can be shared by all tasks of a
//! network (Ansor shares one model): a task's update replaces its own samples' labels and
//! keeps the other tasks' samples, then the model is retrained from scratch on all of them
//! ([`CostModel::clear`], then [`CostModel::update_tasks`]).
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

    fn features_of(&mut self, state: &State) -> ProgramFeatures {
        match tessel_ir::lower::lower(state) {
            Ok(nest) => self.extractor.extract(&nest),
            Err(_) => ProgramFeatures::default(),
        }
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
        // Lowering dominates; programs are independent, so use every core.
        let feats: Vec<ProgramFeatures> = states
            .par_iter()
            .map_init(
                FeatureExtractor::new,
                |ex, s| match tessel_ir::lower::lower(s) {
                    Ok(nest) => ex.extract(&nest),
                    Err(_) => ProgramFeatures::default(),
                },
            )
            .collect();
        self.model.predict(&feats)
    }

    fn update(&mut self, states: &[State], throughputs: &[f32]) {
        for (s, &y) in states.iter().zip(throughputs) {
            let key = (self.workload_key(s), state_key(s));
            match self.index.get(&key) {
                Some(&i) => self.labels[i] = y,
                None => {
                    let f = self.features_of(s);
                    let n_tasks = self.task_ids.len() as u32;
                    let task = *self.task_ids.entry(key.0.clone()).or_insert(n_tasks);
                    self.index.insert(key, self.features.len());
                    self.features.push(f);
                    self.labels.push(y);
                    self.tasks.push(task);
                }
            }
        }
        self.model.clear();
        self.model
            .update_tasks(&self.features, &self.labels, &self.tasks);
    }
}
