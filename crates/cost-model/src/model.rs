//! The [`CostModel`] trait and its implementations: [`GbdtModel`] (Ansor's learned model) and
//! [`RandomModel`] (ablations and warm-up).

use crate::features::{ProgramFeatures, FEATURE_LEN};
use crate::gbdt::{self, Booster, GbdtParams, Objective, TrainSet};
use crate::CostModelError;
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::path::Path;

/// Predicts how fast programs are from their features, and learns from measurements.
///
/// Scores are comparable only with each other: a higher score means a faster program.
/// Programs without features (lowering failed) score `-inf`.
pub trait CostModel: Send {
    /// A short name for reports (`"gbdt-packsum"`, `"random"`).
    fn name(&self) -> String;

    /// One score per program.
    fn predict(&self, programs: &[ProgramFeatures]) -> Vec<f32>;

    /// Adds measured programs with their labels (normalized throughput `min_cost / cost` of
    /// their workload, 0 for failures) and retrains.
    fn update(&mut self, programs: &[ProgramFeatures], throughputs: &[f32]);

    /// [`CostModel::update`] with the task of each program (a workload in one setting; any
    /// ids, equal for programs of one task): models that learn from comparisons
    /// ([`Objective::Pairwise`]) compare only programs of the same task. Plain `update` puts
    /// all programs in one task. The default ignores the tasks.
    fn update_tasks(&mut self, programs: &[ProgramFeatures], throughputs: &[f32], tasks: &[u32]) {
        let _ = tasks;
        self.update(programs, throughputs);
    }

    /// Forgets every sample: the search calls it before handing a model all its samples
    /// again (it retrains from scratch each round). The default does nothing, right for a
    /// model that keeps no samples.
    fn clear(&mut self) {}
}

impl<M: CostModel + ?Sized> CostModel for Box<M> {
    fn name(&self) -> String {
        (**self).name()
    }

    fn predict(&self, programs: &[ProgramFeatures]) -> Vec<f32> {
        (**self).predict(programs)
    }

    fn update(&mut self, programs: &[ProgramFeatures], throughputs: &[f32]) {
        (**self).update(programs, throughputs)
    }

    fn update_tasks(&mut self, programs: &[ProgramFeatures], throughputs: &[f32], tasks: &[u32]) {
        (**self).update_tasks(programs, throughputs, tasks)
    }

    fn clear(&mut self) {
        (**self).clear()
    }
}

/// How programs (bags of store vectors) become training rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Formulation {
    /// Ansor's: one row per store, a program's score is the sum of its rows' scores, loss
    /// `w·(Σ f(store) − y)²`.
    PackSum,
    /// One row per program: the elementwise sum and the elementwise max of its store
    /// vectors (2 × 173 features), loss `w·(f(program) − y)²`.
    Program,
    /// [`Formulation::Program`] followed by the vector of the program's main store, the one
    /// with the most floating-point operations (3 × [`FEATURE_LEN`] features): the sum and
    /// the max mix the compute statement with the padding, cache and write-back stores
    /// around it; the third part keeps its features together.
    ProgramMain,
}

impl Formulation {
    /// Number of features of one training row.
    pub fn row_len(self) -> usize {
        match self {
            Formulation::PackSum => FEATURE_LEN,
            Formulation::Program => 2 * FEATURE_LEN,
            Formulation::ProgramMain => 3 * FEATURE_LEN,
        }
    }

    /// Appends the rows of a program to `out`; returns how many rows were added.
    pub fn rows_into(self, p: &ProgramFeatures, out: &mut Vec<f32>) -> usize {
        match self {
            Formulation::PackSum => {
                out.extend_from_slice(&p.data);
                p.n_stores()
            }
            Formulation::Program => {
                if p.is_empty() {
                    return 0;
                }
                let start = out.len();
                out.resize(start + 2 * FEATURE_LEN, 0.0);
                let (sum, max) = out[start..].split_at_mut(FEATURE_LEN);
                max.fill(f32::NEG_INFINITY);
                for row in p.rows() {
                    for k in 0..FEATURE_LEN {
                        sum[k] += row[k];
                        max[k] = max[k].max(row[k]);
                    }
                }
                1
            }
            Formulation::ProgramMain => {
                if p.is_empty() {
                    return 0;
                }
                // The main store: most floating-point operations (the first on ties).
                let flops = |r: &[f32]| r[..7].iter().sum::<f32>();
                let main = p
                    .rows()
                    .reduce(|best, r| if flops(r) > flops(best) { r } else { best })
                    .unwrap_or(&[]);
                Formulation::Program.rows_into(p, out);
                out.extend_from_slice(main);
                1
            }
        }
    }
}

/// What the trees fit: a monotone transform of the normalized throughput `y ∈ [0, 1]`
/// (ranking only needs the order).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum LabelTransform {
    /// `y` itself (Ansor).
    Identity,
    /// `√y`: spreads the many slow programs apart.
    Sqrt,
    /// `1 + log2(max(y, 2⁻¹⁰)) / 10` ∈ [0, 1]: relative differences weigh the same
    /// everywhere.
    Log,
}

impl LabelTransform {
    /// The transformed label.
    pub fn apply(self, y: f32) -> f32 {
        match self {
            LabelTransform::Identity => y,
            LabelTransform::Sqrt => y.max(0.0).sqrt(),
            LabelTransform::Log => 1.0 + y.max(1.0 / 1024.0).log2() / 10.0,
        }
    }
}

/// Settings of a [`GbdtModel`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GbdtModelParams {
    /// How programs become rows.
    pub formulation: Formulation,
    /// Tree hyper-parameters.
    pub trees: GbdtParams,
    /// A program's weight is `max(y, weight_floor)` (Ansor: `y`, i.e. a floor of 0). A small
    /// floor lets failed and very slow programs still pull their predictions down; a floor
    /// of 1 is the unweighted squared error.
    pub weight_floor: f32,
    /// What the trees fit (weights are computed from the untransformed `y`).
    pub label: LabelTransform,
    /// Below this many samples the model predicts uniformly at random (Ansor: 100).
    pub num_warmup_sample: usize,
    /// Seed of the random predictions during warm-up.
    pub seed: u64,
}

impl Default for GbdtModelParams {
    /// [`GbdtModelParams::rank`]: measured with `examples/sweep.rs` (3 split seeds, 20 % held
    /// out) on the gmm-3 and c2d-3 tune records and random samples (8,600 programs), the
    /// pairwise objective ranked held-out pairs about 0.035 (gmm-3) and 0.07 (c2d-3) better
    /// than [`GbdtModelParams::squared_error`].
    fn default() -> Self {
        GbdtModelParams::rank()
    }
}

impl GbdtModelParams {
    /// One row per program, squared error on the labels, Ansor's weights with a 0.05 floor
    /// (√y and log y labels and other floors were not better on the tune records; one row
    /// per program was 0.01–0.03 above pack-sum).
    pub fn squared_error() -> GbdtModelParams {
        GbdtModelParams {
            formulation: Formulation::Program,
            trees: GbdtParams::default(),
            weight_floor: 0.05,
            label: LabelTransform::Identity,
            num_warmup_sample: 100,
            seed: 43,
        }
    }

    /// Ansor's formulation: one row per buffer store, predictions summed over a program's
    /// stores ([`Formulation::PackSum`]), squared error as [`GbdtModelParams::squared_error`].
    pub fn packsum() -> GbdtModelParams {
        GbdtModelParams {
            formulation: Formulation::PackSum,
            ..GbdtModelParams::squared_error()
        }
    }

    /// One row per program with the main store's vector ([`Formulation::ProgramMain`]),
    /// pairwise ranking loss ([`Objective::Pairwise`], 8 partners per program and round,
    /// unweighted pairs) within each task, 100 rounds, each tree on a random 20 % of the
    /// features, no early stopping (the loss of freshly sampled pairs never triggered it).
    ///
    /// In `examples/sweep.rs` (9,752 gmm-3 and c2d-3 records, 20 % held out, split seeds
    /// 0–2 / 3–5) this ranks c2d-3 pairs at 0.843 / 0.844 against 0.836 / 0.836 for
    /// [`Formulation::Program`] with all features and 50 rounds (gmm-3 0.851 / 0.848 against
    /// 0.851 / 0.847), and retrains on 5,000 programs in about 0.25 s (`examples/perf.rs`).
    pub fn rank() -> GbdtModelParams {
        let mut p = GbdtModelParams::squared_error();
        p.trees.n_rounds = 100;
        p.formulation = Formulation::ProgramMain;
        p.trees.colsample = 0.2;
        // The loss of freshly sampled pairs never stopped training early; without early
        // stopping it need not be computed.
        p.trees.early_stopping_rounds = 0;
        p.trees.objective = Objective::Pairwise {
            pairs_per_row: 8,
            gap_weighted: false,
            min_gap: 0.0,
        };
        p.weight_floor = 1.0;
        p
    }
}

/// A named set of [`GbdtModelParams`]: the one list of GBDT variants that the search's
/// cost-model registry and `tessel cost-model eval` both offer by name.
#[derive(Clone, Copy, Debug)]
pub struct GbdtPreset {
    /// The name users pass (`--cost-model`, `tessel cost-model eval --model`).
    pub name: &'static str,
    /// One line on what it is.
    pub about: &'static str,
    /// Its parameters (the seed is the caller's to set).
    pub params: fn() -> GbdtModelParams,
}

/// The GBDT variants: `gbdt` ([`GbdtModelParams::squared_error`], the search's model: every
/// tuning figure so far was measured with it), `gbdt-rank` ([`GbdtModelParams::rank`],
/// pairwise ranking) and `gbdt-packsum` (Ansor's formulation: one row per buffer store,
/// summed; squared error).
pub const GBDT_PRESETS: [GbdtPreset; 3] = [
    GbdtPreset {
        name: "gbdt",
        about: "gradient-boosted trees, squared error, one row per program",
        params: GbdtModelParams::squared_error,
    },
    GbdtPreset {
        name: "gbdt-rank",
        about: "gradient-boosted trees, pairwise ranking, one row per program",
        params: GbdtModelParams::rank,
    },
    GbdtPreset {
        name: "gbdt-packsum",
        about: "gradient-boosted trees, squared error, Ansor's sum over buffer stores",
        params: GbdtModelParams::packsum,
    },
];

/// What [`GbdtModel::save`] writes.
#[derive(Serialize, Deserialize)]
struct Saved {
    format: String,
    params: GbdtModelParams,
    booster: Option<Booster>,
    #[serde(default)]
    calibration: Option<(f32, f32)>,
    n_samples: usize,
    /// [`crate::feature_set_id`] of the features it was trained on (absent before v3).
    #[serde(default)]
    feature_set: Option<String>,
    /// The target (ISA level) its training programs ran on, when known.
    #[serde(default)]
    target: Option<String>,
}

/// A trained model read from a file, checked against the search that will use it: it
/// becomes the prior of new [`GbdtModel`]s ([`Pretrained::model`]), which predict with it
/// until they have trained on enough of their own samples (the warm-up), instead of at
/// random.
#[derive(Clone, Debug)]
pub struct Pretrained {
    params: GbdtModelParams,
    booster: Booster,
    calibration: Option<(f32, f32)>,
    n_samples: usize,
    target: String,
}

impl Pretrained {
    /// Reads a model saved by [`GbdtModel::save_for`] and checks that it was trained on
    /// this feature set and for `target`. `origin` names it in errors (a path, or
    /// `"the built-in model"`).
    pub fn parse(text: &str, origin: &str, target: &str) -> Result<Pretrained, CostModelError> {
        let saved = read_saved(text, origin)?;
        let mismatch = |found: String, expected: String| CostModelError::Mismatch {
            path: origin.to_string(),
            found,
            expected,
        };
        let features = crate::feature_set_id();
        match &saved.feature_set {
            Some(f) if *f == features => {}
            Some(f) => {
                return Err(mismatch(
                    format!("on feature set {f}"),
                    format!("feature set {features}"),
                ))
            }
            None => {
                return Err(mismatch(
                    "on an unnamed (older) feature set".to_string(),
                    format!("feature set {features}"),
                ))
            }
        }
        match &saved.target {
            Some(t) if t == target => {}
            Some(t) => {
                return Err(mismatch(
                    format!("for target {t}"),
                    format!("target {target}"),
                ))
            }
            None => {
                return Err(mismatch(
                    "for no named target".to_string(),
                    format!("target {target}"),
                ))
            }
        }
        let Some(booster) = saved.booster else {
            return Err(CostModelError::Format {
                path: origin.to_string(),
                reason: "it holds no trained trees".to_string(),
            });
        };
        Ok(Pretrained {
            params: saved.params,
            booster,
            calibration: saved.calibration,
            n_samples: saved.n_samples,
            target: target.to_string(),
        })
    }

    /// [`Pretrained::parse`] of the file at `path`.
    pub fn load(path: impl AsRef<Path>, target: &str) -> Result<Pretrained, CostModelError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| CostModelError::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        Pretrained::parse(&text, &path.display().to_string(), target)
    }

    /// The programs it was trained on.
    pub fn n_samples(&self) -> usize {
        self.n_samples
    }

    /// The target it was trained for.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The parameters it was trained with.
    pub fn params(&self) -> &GbdtModelParams {
        &self.params
    }

    /// A new model with this one's parameters, seeded with `seed`, whose prior is this one:
    /// it predicts with the pre-trained trees until it has `num_warmup_sample` samples of its
    /// own, then trains on those (the search's usual warm-up is 100).
    pub fn model(&self, seed: u64, num_warmup_sample: usize) -> GbdtModel {
        let mut m = GbdtModel::new(GbdtModelParams {
            seed,
            num_warmup_sample,
            ..self.params.clone()
        });
        m.prior = Some((self.booster.clone(), self.calibration));
        m
    }
}

/// Reads and validates a saved model's text.
fn read_saved(text: &str, origin: &str) -> Result<Saved, CostModelError> {
    let bad = |reason: String| CostModelError::Format {
        path: origin.to_string(),
        reason,
    };
    let saved: Saved = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    if saved.format != "tessel-gbdt-v2" && saved.format != SAVED_FORMAT {
        return Err(bad(format!("unknown format `{}`", saved.format)));
    }
    if let Some(b) = &saved.booster {
        let n = saved.params.formulation.row_len();
        if b.n_features != n || b.trees.iter().any(|t| !tree_is_valid(t, n)) {
            return Err(bad("trees do not match the feature layout".to_string()));
        }
    }
    Ok(saved)
}

/// The format [`GbdtModel::save`] writes (v2 files, without feature set and target, are
/// still read).
const SAVED_FORMAT: &str = "tessel-gbdt-v3";

/// Ansor's learned cost model: gradient-boosted trees on the store features, retrained from
/// scratch on all samples seen so far at every [`CostModel::update`].
#[derive(Debug)]
pub struct GbdtModel {
    params: GbdtModelParams,
    booster: Option<Booster>,
    /// `(a, b)`: a prediction is `a·score + b` (see [`GbdtModel::retrain`]).
    calibration: Option<(f32, f32)>,
    /// Training rows of every sample seen (in the formulation's layout).
    x: Vec<f32>,
    offsets: Vec<usize>,
    y: Vec<f32>,
    /// Task of every sample seen.
    tasks: Vec<u32>,
    warmup: RandomModel,
    /// Pre-trained trees (and calibration) to predict with while the model has none of its
    /// own ([`Pretrained::model`]); kept by [`GbdtModel::clear`].
    prior: Option<(Booster, Option<(f32, f32)>)>,
}

impl GbdtModel {
    /// An untrained model.
    pub fn new(params: GbdtModelParams) -> GbdtModel {
        let warmup = RandomModel::new(params.seed);
        GbdtModel {
            params,
            booster: None,
            calibration: None,
            x: Vec::new(),
            offsets: vec![0],
            y: Vec::new(),
            tasks: Vec::new(),
            warmup,
            prior: None,
        }
    }

    /// The settings.
    pub fn params(&self) -> &GbdtModelParams {
        &self.params
    }

    /// The trained trees, if any.
    pub fn booster(&self) -> Option<&Booster> {
        self.booster.as_ref()
    }

    /// Number of samples the model has been given.
    pub fn n_samples(&self) -> usize {
        self.y.len()
    }

    /// Total split gain per feature, with names (empty when untrained). For
    /// [`Formulation::Program`] the names get a `sum.` / `max.` prefix.
    pub fn importances(&self) -> Vec<(String, f64)> {
        let Some(b) = &self.booster else {
            return Vec::new();
        };
        let names = crate::feature_names();
        let named: Vec<String> = match self.params.formulation {
            Formulation::PackSum => names,
            Formulation::Program => names
                .iter()
                .map(|n| format!("sum.{n}"))
                .chain(names.iter().map(|n| format!("max.{n}")))
                .collect(),
            Formulation::ProgramMain => names
                .iter()
                .map(|n| format!("sum.{n}"))
                .chain(names.iter().map(|n| format!("max.{n}")))
                .chain(names.iter().map(|n| format!("main.{n}")))
                .collect(),
        };
        named.into_iter().zip(b.gain.iter().copied()).collect()
    }

    /// Forgets every sample and the trees.
    pub fn clear(&mut self) {
        self.booster = None;
        self.calibration = None;
        self.x.clear();
        self.offsets.clear();
        self.offsets.push(0);
        self.y.clear();
        self.tasks.clear();
    }

    /// Retrains from scratch on the samples held.
    ///
    /// The scores of [`Objective::Pairwise`] have no scale, so they are mapped affinely onto
    /// the labels (least squares over the training programs, increasing): predictions then
    /// live on the normalized-throughput scale like those of the squared error, which the
    /// search's fitness-proportional selection expects.
    pub fn retrain(&mut self) {
        self.calibration = None;
        if self.y.len() < self.params.num_warmup_sample.max(1) {
            self.booster = None;
            return;
        }
        let w: Vec<f32> = self
            .y
            .iter()
            .map(|&y| y.max(self.params.weight_floor))
            .collect();
        let y: Vec<f32> = self.y.iter().map(|&y| self.params.label.apply(y)).collect();
        let set = TrainSet {
            x: &self.x,
            n_features: self.params.formulation.row_len(),
            offsets: &self.offsets,
            y: &y,
            w: &w,
            group: &self.tasks,
        };
        let (booster, scores) = gbdt::train_scored(&set, &self.params.trees);
        if matches!(self.params.trees.objective, Objective::Pairwise { .. }) {
            self.calibration = Some(fit_increasing_line(&scores, &self.y));
        }
        self.booster = Some(booster);
    }

    /// Score of one program (no warm-up randomness).
    pub fn predict_one(
        &self,
        booster: &Booster,
        p: &ProgramFeatures,
        scratch: &mut Vec<f32>,
    ) -> f32 {
        calibrate(self.score(booster, p, scratch), self.calibration)
    }

    /// The raw (uncalibrated) score of `p` under `booster`.
    fn score(&self, booster: &Booster, p: &ProgramFeatures, scratch: &mut Vec<f32>) -> f32 {
        if p.is_empty() {
            return f32::NEG_INFINITY;
        }
        match self.params.formulation {
            Formulation::PackSum => p.rows().map(|r| booster.predict_row(r)).sum(),
            f => {
                scratch.clear();
                f.rows_into(p, scratch);
                booster.predict_row(scratch)
            }
        }
    }

    /// Writes the settings and trees as JSON (not the training samples), with the feature
    /// set and no target.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), CostModelError> {
        self.write(path.as_ref(), None)
    }

    /// [`GbdtModel::save`] for `target` (the ISA level its training programs ran on): the
    /// file a search can load as its [`Pretrained`] prior.
    pub fn save_for(&self, path: impl AsRef<Path>, target: &str) -> Result<(), CostModelError> {
        self.write(path.as_ref(), Some(target))
    }

    fn write(&self, path: &Path, target: Option<&str>) -> Result<(), CostModelError> {
        let saved = Saved {
            format: SAVED_FORMAT.to_string(),
            params: self.params.clone(),
            booster: self.booster.clone(),
            calibration: self.calibration,
            n_samples: self.y.len(),
            feature_set: Some(crate::feature_set_id()),
            target: target.map(str::to_string),
        };
        let text = serde_json::to_string(&saved).map_err(|e| CostModelError::Format {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        std::fs::write(path, text).map_err(|e| CostModelError::Io {
            path: path.display().to_string(),
            source: e,
        })
    }

    /// Reads a model written by [`GbdtModel::save`]. It predicts like the saved one; its
    /// next [`CostModel::update`] trains on the new samples only.
    pub fn load(path: impl AsRef<Path>) -> Result<GbdtModel, CostModelError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| CostModelError::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        let saved = read_saved(&text, &path.display().to_string())?;
        let mut m = GbdtModel::new(saved.params);
        m.booster = saved.booster;
        m.calibration = saved.calibration;
        Ok(m)
    }
}

/// `score` mapped by a calibration `(a, b)` to `a·score + b` (see [`GbdtModel::retrain`]).
fn calibrate(score: f32, calibration: Option<(f32, f32)>) -> f32 {
    match calibration {
        Some((a, b)) => a * score + b,
        None => score,
    }
}

/// `(a, b)` minimising `Σ (a·x + b − y)²` with `a` at least a small positive slope (so the
/// map keeps the order of `x`).
fn fit_increasing_line(x: &[f64], y: &[f32]) -> (f32, f32) {
    let n = x.len().max(1) as f64;
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().map(|&v| v as f64).sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (&xi, &yi) in x.iter().zip(y) {
        sxy += (xi - mx) * (yi as f64 - my);
        sxx += (xi - mx) * (xi - mx);
    }
    let a = if sxx > 0.0 {
        (sxy / sxx).max(1e-6)
    } else {
        1.0
    };
    (a as f32, (my - a * mx) as f32)
}

/// Every child index in range and every split feature below `n` (so prediction cannot
/// panic or loop on a loaded model).
fn tree_is_valid(t: &gbdt::Tree, n: usize) -> bool {
    !t.nodes.is_empty()
        && t.nodes.iter().enumerate().all(|(k, node)| {
            node.feature == u32::MAX
                || ((node.feature as usize) < n
                    && (node.left as usize) > k
                    && (node.right as usize) > k
                    && (node.left as usize) < t.nodes.len()
                    && (node.right as usize) < t.nodes.len())
        })
}

impl CostModel for GbdtModel {
    fn name(&self) -> String {
        let f = match self.params.formulation {
            Formulation::PackSum => "gbdt-packsum",
            // Both are one row per program (and reports and the CLI test know the default
            // model as `gbdt-program-rank`).
            Formulation::Program | Formulation::ProgramMain => "gbdt-program",
        };
        match self.params.trees.objective {
            Objective::SquaredError => f.to_string(),
            Objective::Pairwise { .. } => format!("{f}-rank"),
        }
    }

    fn predict(&self, programs: &[ProgramFeatures]) -> Vec<f32> {
        // Its own trees once trained, else the pre-trained prior, else random (warm-up).
        let (booster, calibration) = match (&self.booster, &self.prior) {
            (Some(b), _) => (b, self.calibration),
            (None, Some((b, c))) => (b, *c),
            (None, None) => return self.warmup.predict(programs),
        };
        let mut scratch = Vec::new();
        programs
            .iter()
            .map(|p| calibrate(self.score(booster, p, &mut scratch), calibration))
            .collect()
    }

    fn update(&mut self, programs: &[ProgramFeatures], throughputs: &[f32]) {
        self.update_tasks(programs, throughputs, &[]);
    }

    fn update_tasks(&mut self, programs: &[ProgramFeatures], throughputs: &[f32], tasks: &[u32]) {
        for (k, (p, &y)) in programs.iter().zip(throughputs).enumerate() {
            self.params.formulation.rows_into(p, &mut self.x);
            self.offsets
                .push(self.x.len() / self.params.formulation.row_len());
            self.y.push(if y.is_finite() { y.max(0.0) } else { 0.0 });
            self.tasks.push(tasks.get(k).copied().unwrap_or(0));
        }
        self.retrain();
    }

    fn clear(&mut self) {
        GbdtModel::clear(self);
    }
}

/// Predicts uniformly at random in `[0, 1)` (programs without features: `-inf`); learns
/// nothing. Ansor's warm-up model and the ablation baseline.
#[derive(Debug)]
pub struct RandomModel {
    state: Cell<u64>,
}

impl RandomModel {
    /// A model whose predictions are determined by `seed`.
    pub fn new(seed: u64) -> RandomModel {
        RandomModel {
            state: Cell::new(seed),
        }
    }

    fn next(&self) -> f32 {
        // splitmix64
        let mut z = self.state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        self.state.set(z);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 24) as f32
    }
}

impl CostModel for RandomModel {
    fn name(&self) -> String {
        "random".to_string()
    }

    fn predict(&self, programs: &[ProgramFeatures]) -> Vec<f32> {
        programs
            .iter()
            .map(|p| {
                if p.is_empty() {
                    f32::NEG_INFINITY
                } else {
                    self.next()
                }
            })
            .collect()
    }

    fn update(&mut self, _: &[ProgramFeatures], _: &[f32]) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A program of two stores: a write-back (no flops) and a compute statement.
    fn two_stores() -> ProgramFeatures {
        let mut data = vec![0.0; 2 * FEATURE_LEN];
        data[20] = 3.0; // store 0: no float op
        data[FEATURE_LEN] = 5.0; // store 1: float_mad
        data[FEATURE_LEN + 20] = 1.0;
        data[FEATURE_LEN + 30] = 2.0;
        ProgramFeatures { data }
    }

    #[test]
    fn program_main_rows_are_sum_max_and_the_compute_store() {
        let p = two_stores();
        let mut row = Vec::new();
        assert_eq!(Formulation::ProgramMain.rows_into(&p, &mut row), 1);
        assert_eq!(row.len(), 3 * FEATURE_LEN);
        let (sum, rest) = row.split_at(FEATURE_LEN);
        let (max, main) = rest.split_at(FEATURE_LEN);
        assert_eq!((sum[0], sum[20], sum[30]), (5.0, 4.0, 2.0));
        assert_eq!((max[0], max[20], max[30]), (5.0, 3.0, 2.0));
        assert_eq!(main, &p.data[FEATURE_LEN..]);
        // The first two thirds are the program formulation.
        let mut program = Vec::new();
        Formulation::Program.rows_into(&p, &mut program);
        assert_eq!(&row[..2 * FEATURE_LEN], &program[..]);
        // No store, no row.
        assert_eq!(
            Formulation::ProgramMain.rows_into(&ProgramFeatures::default(), &mut row),
            0
        );
    }
}
