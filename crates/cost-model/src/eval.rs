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
    pairwise_accuracy_beyond(pred, labels, groups, 0.0)
}

/// [`pairwise_accuracy`] over the pairs whose labels differ by more than the relative
/// `noise`: the larger label exceeds the smaller by more than `noise ×` the smaller (for
/// normalized throughput, the slower program is more than `noise` slower). Pairs closer
/// than the measurement noise have no reliable order.
pub fn pairwise_accuracy_beyond(
    pred: &[f32],
    labels: &[f32],
    groups: &[u32],
    noise: f32,
) -> Option<f64> {
    let (mut right, mut total) = (0.0f64, 0u64);
    for i in 0..pred.len() {
        for j in i + 1..pred.len() {
            let (lo, hi) = (labels[i].min(labels[j]), labels[i].max(labels[j]));
            if groups[i] != groups[j] || hi <= lo * (1.0 + noise) {
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

/// Relative cost difference below which [`EvalReport::pairwise_beyond_noise`] ignores a
/// pair: 5 %, about twice the median coefficient of variation of the 2-thread measurements
/// of `/work/bench` (1-thread random samples are noisier, cv ≈ 8 %).
pub const NOISE: f32 = 0.05;

/// Accuracy on the test programs of one workload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkloadAccuracy {
    /// The workload.
    pub workload: String,
    /// Its test programs.
    pub n_test: usize,
    /// Pairwise accuracy over its pairs (of the same task).
    pub pairwise_accuracy: Option<f64>,
    /// The same over pairs whose costs differ by more than [`NOISE`].
    pub pairwise_beyond_noise: Option<f64>,
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
    /// Pairwise ranking accuracy on the test part (pairs of the same task).
    pub pairwise_accuracy: Option<f64>,
    /// The same over pairs whose costs differ by more than [`NOISE`].
    pub pairwise_beyond_noise: Option<f64>,
    /// Per workload of the test part.
    pub per_workload: Vec<WorkloadAccuracy>,
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
    evaluate_with_train_labels(model, ds, &ds.labels, train, test, split, k)
}

/// [`evaluate`], training on `train_labels` (one per program of `ds`, e.g. labels from
/// another statistic of the repeated measurements) and testing against `ds.labels`.
pub fn evaluate_with_train_labels(
    model: &mut dyn CostModel,
    ds: &Dataset,
    train_labels: &[f32],
    train: &[usize],
    test: &[usize],
    split: &str,
    k: usize,
) -> EvalReport {
    let (xtr, _, ttr) = ds.subset(train);
    let ytr: Vec<f32> = train.iter().map(|&i| train_labels[i]).collect();
    let (xte, yte, gte) = ds.subset(test);
    let t0 = Instant::now();
    model.update_tasks(&xtr, &ytr, &ttr);
    let train_seconds = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let pred = model.predict(&xte);
    let predict_seconds = t1.elapsed().as_secs_f64();
    let mut wids: Vec<u32> = test.iter().map(|&i| ds.groups[i]).collect();
    wids.sort_unstable();
    wids.dedup();
    let per_workload = wids
        .into_iter()
        .map(|w| {
            let (mut p, mut y, mut g) = (Vec::new(), Vec::new(), Vec::new());
            for (k, &i) in test.iter().enumerate() {
                if ds.groups[i] == w {
                    p.push(pred[k]);
                    y.push(yte[k]);
                    g.push(gte[k]);
                }
            }
            WorkloadAccuracy {
                workload: ds.workloads[w as usize].clone(),
                n_test: p.len(),
                pairwise_accuracy: pairwise_accuracy(&p, &y, &g),
                pairwise_beyond_noise: pairwise_accuracy_beyond(&p, &y, &g, NOISE),
            }
        })
        .collect();
    EvalReport {
        split: split.to_string(),
        model: model.name(),
        n_train: train.len(),
        n_test: test.len(),
        pairwise_accuracy: pairwise_accuracy(&pred, &yte, &gte),
        pairwise_beyond_noise: pairwise_accuracy_beyond(&pred, &yte, &gte, NOISE),
        per_workload,
        k,
        recall_at_k: recall_at_k(&pred, &yte, &gte, k),
        rmse: rmse(&pred, &yte),
        train_seconds,
        predict_seconds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_closer_than_the_noise_are_ignored() {
        // Labels 1.0, 0.98, 0.5: the pair (1.0, 0.98) is within 5 % and mis-ordered.
        let labels = [1.0, 0.98, 0.5];
        let pred = [0.5, 0.6, 0.1];
        let g = [0, 0, 0];
        assert_eq!(pairwise_accuracy(&pred, &labels, &g), Some(2.0 / 3.0));
        assert_eq!(
            pairwise_accuracy_beyond(&pred, &labels, &g, 0.05),
            Some(1.0)
        );
        // Different groups are never compared.
        assert_eq!(pairwise_accuracy(&pred, &labels, &[0, 1, 2]), None);
    }
}
