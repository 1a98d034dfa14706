//! `tessel-cost-model`: predicting a schedule's speed without running it.
//!
//! * [`features`]: Ansor's 164 features of every store statement of a lowered
//!   [`tessel_ir::LoopNest`] ([`FeatureExtractor`], [`feature_names`]); a program is the bag
//!   of its store vectors ([`ProgramFeatures`]).
//! * [`model`]: the [`CostModel`] trait; [`GbdtModel`], gradient-boosted trees on one row per
//!   program ([`Formulation::Program`], [`Formulation::ProgramMain`]) or Ansor's pack-sum,
//!   trained with a pairwise ranking loss within each task (the default,
//!   [`GbdtModelParams::rank`]) or the squared error ([`GbdtModelParams::squared_error`],
//!   [`Objective`]), and [`RandomModel`]. Models save and load as JSON.
//! * [`gbdt`]: the histogram GBDT trainer behind [`GbdtModel`].
//! * [`dataset`]: measured schedules ([`dataset::Sample`]) → features and normalized-throughput
//!   labels, and train/test splits; [`eval`]: pairwise accuracy, recall@k, RMSE.
//!
//! This crate depends only on `tessel-ir`: reading record files is the caller's job
//! (`tessel cost-model eval` reads `tessel-measure` records into [`dataset::Sample`]s).
//!
//! ```
//! use std::sync::Arc;
//! use tessel_cost_model::{CostModel, FeatureExtractor, GbdtModel, GbdtModelParams};
//! use tessel_ir::{lower::lower, State};
//!
//! let w = tessel_workloads::lookup("gmm:b=1,n=16,m=16,k=16").unwrap();
//! let nest = lower(&State::new(Arc::new(w.dag))).unwrap();
//! let mut fx = FeatureExtractor::new();
//! let program = fx.extract(&nest);
//! assert_eq!(program.n_stores(), 1); // Z (init and update share one entry)
//! assert_eq!(program.get(0, "float_mad"), Some((1.0f32 + 4096.0).log2()));
//!
//! let mut model = GbdtModel::new(GbdtModelParams { num_warmup_sample: 0, ..Default::default() });
//! model.update(&[program.clone()], &[1.0]);
//! assert_eq!(model.predict(&[program]).len(), 1);
//! ```
#![warn(missing_docs)]

pub mod dataset;
pub mod eval;
pub mod features;
pub mod gbdt;
pub mod model;

pub use features::{
    extract, feature_names, feature_set_id, CodegenFlags, FeatureExtractor, ProgramFeatures,
    FEATURES_REVISION, FEATURE_LEN,
};
pub use gbdt::{GbdtParams, Objective};
pub use model::{
    CostModel, Formulation, GbdtModel, GbdtModelParams, GbdtPreset, LabelTransform, Pretrained,
    RandomModel, GBDT_PRESETS,
};

/// Errors of this crate (saving and loading models).
#[derive(Debug, thiserror::Error)]
pub enum CostModelError {
    /// A file could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The system's error.
        source: std::io::Error,
    },
    /// A model file is not a model this crate wrote.
    #[error("{path} is not a Tessel cost model: {reason}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A pre-trained model was made for other features or another target than the search's.
    #[error("{path} was trained {found} but the search needs {expected}")]
    Mismatch {
        /// The file.
        path: String,
        /// What the file says (`"for target avx2"`, `"on feature set r1-…"`).
        found: String,
        /// What the search needs.
        expected: String,
    },
}

/// The pre-trained model shipped with Tessel for `target` (an ISA level name, `"avx512"`),
/// as the text [`Pretrained::parse`] reads; `None` where there is none. How it was made and
/// how to make one for your machine: `docs/cost-model.md`.
pub fn builtin_pretrained(target: &str) -> Option<&'static str> {
    match target {
        "avx512" => Some(include_str!("../pretrained/avx512.json")),
        _ => None,
    }
}
