//! Accuracy metrics of a cost model (ANSOR.md §6.2: pairwise accuracy, recall@k, RMSE) and
//! a train-then-test evaluation.

use crate::dataset::Dataset;
use crate::model::CostModel;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Fraction of pairs of programs of the same group, with different labels, that the
/// predictions order like the labels (ties in prediction count one half). `None` when there
/// is no such pair.
pub fn pairwise_accuracy(pred: &[f32], labels: &[f32], groups: &[u32]) -> Option<f64> {
    let (mut right, mut total) = (0.0f64, 0u64);
    for i in 0..pred.len() {
        for j in i + 1..pred.len() {
            if groups[i] != groups[j] || labels[i] == labels[j] {
                continue;
            }
            total += 1;
            let (pi, pj) = (pred[i], pred[j]);
            if pi == pj {
                right += 0.5;
            } else if (pi > pj) == (labels[i] > labels[j]) {
                right += 1.0;
            }
        }
    }
    (total > 0).then(|| right / total as f64)
}

/// Mean over groups of `|true top-k ∩ predicted top-k| / k` (k capped at the group's size).
/// `None` when there is no program.
pub fn recall_at_k(pred: &[f32], labels: &[f32], groups: &[u32], k: usize) -> Option<f64> {
    let mut ids: Vec<u32> = groups.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let mut sum = 0.0;
    for &g in &ids {
        let members: Vec<usize> = (0..pred.len()).filter(|&i| groups[i] == g).collect();
        let kk = k.min(members.len());
        if kk == 0 {
            continue;
        }
        let top = |key: &dyn Fn(usize) -> f32| {
            let mut m = members.clone();
            m.sort_by(|&a, &b| key(b).total_cmp(&key(a)).then(a.cmp(&b)));
            m.truncate(kk);
            m
        };
        let t = top(&|i| labels[i]);
        let p = top(&|i| pred[i]);
        sum += t.iter().filter(|i| p.contains(i)).count() as f64 / kk as f64;
    }
    (!ids.is_empty()).then(|| sum / ids.len() as f64)
}

/// Root mean squared error between predictions and labels (non-finite predictions count
/// as 0).
pub fn rmse(pred: &[f32], labels: &[f32]) -> f64 {
    if pred.is_empty() {
        return 0.0;
    }
    let s: f64 = pred
        .iter()
        .zip(labels)
        .map(|(&p, &y)| {
            let p = if p.is_finite() { p } else { 0.0 };
            ((p - y) as f64).powi(2)
        })
        .sum();
    (s / pred.len() as f64).sqrt()
}

/// The outcome of training a model on one part of a dataset and testing it on another.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Which split (`"candidate"`, `"workload:<name>"`).
    pub split: String,
    /// The model's name.
    pub model: String,
    /// Training programs.
    pub n_train: usize,
    /// Test programs.
    pub n_test: usize,
    /// Pairwise ranking accuracy on the test part.
    pub pairwise_accuracy: Option<f64>,
    /// The `k` of [`EvalReport::recall_at_k`].
    pub k: usize,
    /// Recall of the true top-k in the predicted top-k, per workload, averaged.
    pub recall_at_k: Option<f64>,
    /// RMSE of normalized throughput on the test part.
    pub rmse: f64,
    /// Seconds to train (`update` on the training part).
    pub train_seconds: f64,
    /// Seconds to predict the test part (features already extracted).
    pub predict_seconds: f64,
}

/// Trains `model` on `train` (indices into `ds`) and measures it on `test`.
pub fn evaluate(
    model: &mut dyn CostModel,
    ds: &Dataset,
    train: &[usize],
    test: &[usize],
    split: &str,
    k: usize,
) -> EvalReport {
    let (xtr, ytr, _) = ds.subset(train);
    let (xte, yte, gte) = ds.subset(test);
    let t0 = Instant::now();
    model.update(&xtr, &ytr);
    let train_seconds = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let pred = model.predict(&xte);
    let predict_seconds = t1.elapsed().as_secs_f64();
    EvalReport {
        split: split.to_string(),
        model: model.name(),
        n_train: train.len(),
        n_test: test.len(),
        pairwise_accuracy: pairwise_accuracy(&pred, &yte, &gte),
        k,
        recall_at_k: recall_at_k(&pred, &yte, &gte, k),
        rmse: rmse(&pred, &yte),
        train_seconds,
        predict_seconds,
    }
}
