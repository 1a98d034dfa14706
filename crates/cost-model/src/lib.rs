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
    extract, feature_names, CodegenFlags, FeatureExtractor, ProgramFeatures, FEATURE_LEN,
};
pub use gbdt::{GbdtParams, Objective};
pub use model::{CostModel, Formulation, GbdtModel, GbdtModelParams, LabelTransform, RandomModel};

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
}
