//! The learned mutation-rule predictor (PAPER.md §4).
//!
//! `p(rule | parent) = (1 − λ)·p_default(rule) + λ·p_model(rule | parent)` over the rules that
//! can structurally apply to the parent (a rule with nothing to mutate is skipped, which
//! alone removes many failed mutations). `P(improve | rule, features(parent))` comes from
//! one logistic-regression classifier per rule (smartcore), trained online on every
//! mutation the evolution reports: label 1 when the mutant was legal and predicted better
//! than its parent. Until a rule has enough observations of both kinds, the fixed weights
//! are used.
//!
//! By default (`prior_weighted`) `p_model(rule) ∝ p_default(rule) · P(improve | rule,
//! parent)`: the probability that the rule, drawn from the default mix, is the one that
//! improves the parent. PAPER.md §4's per-rule variant, `p_model ∝ P(improve)`
//! (`prior_weighted: false`), ignores the mix: with similar improvement rates it makes the
//! four CPU rules equally likely, so tile-size mutations fall from 90 % to about 58 % of
//! the draws at λ = 0.5. In the session-4 experiment (1,000 trials × 5 seeds) that left 3
//! of 5 c2d-3 runs of `ml` stuck near 182 GFLOP/s while every baseline run reached ~201.

use crate::{sample_weighted, MutationOutcome, MutationPolicy, RuleInfo};
use serde_json::json;
use smartcore::linalg::basic::arrays::Array;
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::linear::logistic_regression::{LogisticRegression, LogisticRegressionParameters};
use std::collections::VecDeque;
use tessel_ir::rng::TesselRng;
use tessel_ir::state::{Annotation, IterKind};
use tessel_ir::{State, Step};

/// Number of state features.
pub const NUM_FEATURES: usize = 14;

/// Names of the state features, in order.
pub const FEATURE_NAMES: [&str; NUM_FEATURES] = [
    "log2_steps",
    "stages",
    "sketch_id",
    "splits",
    "mean_log2_innermost_length",
    "share_innermost_length_1",
    "mean_log2_outermost_length",
    "auto_unroll_log2",
    "compute_at_steps",
    "log2_parallel_extent",
    "log2_vector_length",
    "unrolled_loops",
    "has_cache_write",
    "has_rfactor",
];

/// Cheap, fixed-length features of a state (PAPER.md §4, "tiling" and "annotations").
pub fn state_features(state: &State) -> [f64; NUM_FEATURES] {
    let log2 = |x: f64| (1.0 + x.max(0.0)).log2();
    let steps = state.steps();
    let mut f = [0.0; NUM_FEATURES];
    f[0] = log2(steps.len() as f64);
    f[1] = state.stages().len() as f64;
    f[2] = state.sketch_id().map_or(-1.0, |s| s as f64);
    let (mut splits, mut inner, mut ones, mut outer) = (0.0, 0.0, 0.0, 0.0);
    for s in steps {
        match s {
            Step::Split { lengths, .. } => {
                splits += 1.0;
                let last = lengths.last().copied().flatten().unwrap_or(1) as f64;
                let first = lengths.first().copied().flatten().unwrap_or(1) as f64;
                inner += log2(last);
                outer += log2(first);
                if last <= 1.0 {
                    ones += 1.0;
                }
            }
            Step::Pragma {
                auto_unroll_max_step,
                ..
            } => f[7] = log2(*auto_unroll_max_step as f64),
            Step::ComputeAt { .. } => f[8] += 1.0,
            Step::CacheWrite { .. } => f[12] = 1.0,
            Step::Rfactor { .. } => f[13] = 1.0,
            _ => {}
        }
    }
    f[3] = splits;
    if splits > 0.0 {
        f[4] = inner / splits;
        f[5] = ones / splits;
        f[6] = outer / splits;
    }
    for st in state.stages() {
        for &l in &st.leaves {
            let it = st.iter(l);
            let e = it.extent.unwrap_or(1) as f64;
            match it.annotation {
                Annotation::Parallel if it.kind == IterKind::Spatial => f[9] = f[9].max(log2(e)),
                Annotation::Vectorize => f[10] = f[10].max(log2(e)),
                Annotation::Unroll => f[11] += 1.0,
                _ => {}
            }
        }
    }
    f
}

/// Whether a rule has anything to mutate in `state` (by Ansor's rule names; unknown rules
/// are assumed to apply).
pub fn rule_applies(name: &str, state: &State) -> bool {
    let steps = state.steps();
    match name {
        "MutateTileSize" => steps.iter().any(
            |s| matches!(s, Step::Split { lengths, .. } if lengths.iter().all(|l| l.is_some())),
        ),
        "MutateAutoUnroll" => steps.iter().any(|s| matches!(s, Step::Pragma { .. })),
        "MutateComputeLocation" => steps.iter().any(|s| matches!(s, Step::ComputeAt { .. })),
        "MutateParallel" => steps.windows(2).any(|w| {
            matches!(
                (&w[0], &w[1]),
                (
                    Step::Fuse { .. },
                    Step::Annotate {
                        annotation: Annotation::Parallel,
                        ..
                    }
                )
            )
        }),
        _ => true,
    }
}

/// One rule's online classifier.
#[derive(Default)]
struct RuleModel {
    rows: VecDeque<([f64; NUM_FEATURES], bool)>,
    /// Rows labelled "improved".
    positives: usize,
    /// Weights (one per feature) and intercept of the fitted model.
    fitted: Option<(Vec<f64>, f64)>,
    since_fit: usize,
}

impl RuleModel {
    fn push(&mut self, x: [f64; NUM_FEATURES], improved: bool, capacity: usize) {
        self.rows.push_back((x, improved));
        self.positives += improved as usize;
        if self.rows.len() > capacity {
            if let Some((_, old)) = self.rows.pop_front() {
                self.positives -= old as usize;
            }
        }
        self.since_fit += 1;
    }

    fn fit(&mut self) {
        self.since_fit = 0;
        let pos = self.positives;
        if pos == 0 || pos == self.rows.len() {
            self.fitted = None;
            return;
        }
        let rows: Vec<Vec<f64>> = self.rows.iter().map(|r| r.0.to_vec()).collect();
        let y: Vec<i32> = self.rows.iter().map(|r| r.1 as i32).collect();
        let Ok(x) = DenseMatrix::from_2d_vec(&rows) else {
            return;
        };
        let params = LogisticRegressionParameters::default().with_alpha(1.0);
        if let Ok(model) = LogisticRegression::fit(&x, &y, params) {
            let coef = model.coefficients();
            let w: Vec<f64> = (0..NUM_FEATURES).map(|j| *coef.get((0, j))).collect();
            let b = *model.intercept().get((0, 0));
            self.fitted = Some((w, b));
        }
    }

    fn probability(&self, x: &[f64; NUM_FEATURES]) -> Option<f64> {
        let (w, b) = self.fitted.as_ref()?;
        let z: f64 = b + w.iter().zip(x).map(|(w, x)| w * x).sum::<f64>();
        Some(1.0 / (1.0 + (-z).exp()))
    }
}

/// The classifier policy; see the module docs.
pub struct Classifier {
    /// Weight of the model against the default weights (0.5).
    pub lambda: f64,
    /// `p_model ∝ p_default · P(improve)` (true, the default) or `∝ P(improve)` alone
    /// (PAPER.md §4's per-rule variant); see the module docs.
    pub prior_weighted: bool,
    /// Observations of a rule (with both labels) before its model is used (500).
    pub min_samples: usize,
    /// Most recent observations kept per rule (1,500: the fit (LBFGS, linear in the rows)
    /// must stay a small share of a round's time; `examples/classifier_cost` measures it).
    pub capacity: usize,
    /// New observations of a rule between refits (24,000: about every third round for the
    /// busiest rule with Ansor's population of 2,048 and 4 generations; a smartcore fit on
    /// 1,500 rows takes about 50 ms, and once per round it was half the policy's time, 2–3 %
    /// of a dep-1 round).
    pub refit_every: usize,
    models: Vec<RuleModel>,
    /// Rule and parent features of each `choose` call not yet observed, oldest first,
    /// reused by the matching `observe` (features cost about as much as the rest of a
    /// call). The evolution observes an invalid mutation at once (the newest entry) and a
    /// legal one after scoring the next generation, in the order it chose them (the oldest).
    unobserved: VecDeque<(usize, [f64; NUM_FEATURES])>,
}

/// Most `choose` calls kept waiting for their `observe` (a caller that never observes
/// must not grow the queue without bound).
const MAX_UNOBSERVED: usize = 1 << 16;

impl Default for Classifier {
    fn default() -> Classifier {
        Classifier {
            lambda: 0.5,
            prior_weighted: true,
            min_samples: 500,
            capacity: 1_500,
            refit_every: 24_000,
            models: Vec::new(),
            unobserved: VecDeque::new(),
        }
    }
}

impl Classifier {
    /// The probabilities with which `rules` would be chosen for `state`.
    pub fn probabilities(&mut self, state: &State, rules: &[RuleInfo]) -> Vec<f64> {
        let x = state_features(state);
        self.probabilities_for(state, &x, rules)
    }

    fn probabilities_for(
        &mut self,
        state: &State,
        x: &[f64; NUM_FEATURES],
        rules: &[RuleInfo],
    ) -> Vec<f64> {
        if self.models.len() < rules.len() {
            self.models.resize_with(rules.len(), RuleModel::default);
        }
        let applies: Vec<bool> = rules.iter().map(|r| rule_applies(r.name, state)).collect();
        let mask = |v: Vec<f64>| -> Vec<f64> {
            let v: Vec<f64> = v
                .iter()
                .zip(&applies)
                .map(|(p, &a)| if a { *p } else { 0.0 })
                .collect();
            let z: f64 = v.iter().sum();
            if z > 0.0 {
                v.iter().map(|p| p / z).collect()
            } else {
                v
            }
        };
        let default = mask(rules.iter().map(|r| r.weight.max(0.0)).collect());
        let model: Option<Vec<f64>> = (0..rules.len())
            .map(|k| {
                let m = &self.models[k];
                if !applies[k] {
                    return Some(0.0);
                }
                if m.rows.len() < self.min_samples {
                    return None;
                }
                let prior = if self.prior_weighted {
                    rules[k].weight.max(0.0)
                } else {
                    1.0
                };
                m.probability(x).map(|p| prior * p)
            })
            .collect();
        match model {
            Some(p) if p.iter().sum::<f64>() > 0.0 => {
                let p = mask(p);
                default
                    .iter()
                    .zip(&p)
                    .map(|(d, m)| (1.0 - self.lambda) * d + self.lambda * m)
                    .collect()
            }
            _ => default,
        }
    }
}

impl MutationPolicy for Classifier {
    fn name(&self) -> &str {
        "classifier"
    }

    fn choose(&mut self, state: &State, rules: &[RuleInfo], rng: &mut TesselRng) -> usize {
        let x = state_features(state);
        let probs = self.probabilities_for(state, &x, rules);
        let rule = sample_weighted(&probs, rng);
        if self.unobserved.len() >= MAX_UNOBSERVED {
            self.unobserved.clear();
        }
        self.unobserved.push_back((rule, x));
        rule
    }

    fn observe(&mut self, state: &State, rule: usize, outcome: MutationOutcome) {
        if self.models.len() <= rule {
            self.models.resize_with(rule + 1, RuleModel::default);
        }
        // The features computed when the rule was chosen, when the call order is the
        // evolution's (see `unobserved`); otherwise computed again.
        let newest = outcome == MutationOutcome::Invalid;
        let waiting = if newest {
            self.unobserved.pop_back()
        } else {
            self.unobserved.pop_front()
        };
        let x = match waiting {
            Some((r, x)) if r == rule => x,
            _ => {
                self.unobserved.clear();
                state_features(state)
            }
        };
        let m = &mut self.models[rule];
        m.push(x, outcome == MutationOutcome::Improved, self.capacity);
        let due = match m.fitted {
            None => m.since_fit >= self.min_samples / 4,
            Some(_) => m.since_fit >= self.refit_every,
        };
        if m.rows.len() >= self.min_samples && due {
            m.fit();
        }
    }

    fn state_json(&self) -> serde_json::Value {
        let models: Vec<serde_json::Value> = self
            .models
            .iter()
            .map(|m| {
                json!({"observations": m.rows.len(), "improved": m.positives,
                       "weights": m.fitted.as_ref().map(|f| &f.0), "intercept": m.fitted.as_ref().map(|f| f.1)})
            })
            .collect();
        json!({"policy": "classifier", "lambda": self.lambda, "features": FEATURE_NAMES, "rules": models})
    }
}
