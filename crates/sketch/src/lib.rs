//! `tessel-sketch`: the search space, as Ansor defines it (ANSOR.md §3–§5.1).
//!
//! * [`generate_sketches`] enumerates the high-level structures of a DAG with the
//!   [`SketchRules`] (AlwaysInline, AddRfactor, AddCacheWrite, MultiLevelTilingTensorized,
//!   MultiLevelTilingWithFusion, MultiLevelTiling, AttachPaddingToTile, WindowReduction,
//!   SkipStage). A
//!   [`Sketch`] is a [`State`] whose split lengths are holes. MultiLevelTilingTensorized
//!   (Tessel's, on when [`HardwareParams::isa`] has micro-kernels) adds tensorized variants of the
//!   cache-write sketches whose register tile maps onto the code generator's AVX2
//!   micro-kernels (for NHWC convolutions also with the innermost `rw` and `rc` loops fused
//!   into the kernel's reduction); they come after the plain sketches in the list.
//!   AttachPaddingToTile (Tessel's) makes the placement of a padding stage that feeds a
//!   tensorized stage with a short reduction (a depthwise convolution) a sketch choice: in
//!   the tile, or at the root. WindowReduction (Tessel's, [`window`]) gives a pool a sketch
//!   that reads through its padding, vectorizes its channels and accumulates in registers.
//! * [`sample_initial`] turns a sketch into a complete, legal state with the [`InitRules`]
//!   (tile sizes, compute locations, parallel, unroll, vectorize); [`sample_population`]
//!   draws many distinct ones.
//! * The [`MutationRegistry`] lists the mutation rules (tile size, auto-unroll, compute
//!   location, parallel, and Tessel's tensorize shape) with their default weights; each rule is a plain function
//!   `(&State, &HardwareParams, &mut TesselRng) -> Option<State>` that only returns legal
//!   states. Which rule to apply is left to the caller's policy.
//!
//! Every sampled or mutated state carries the id of its sketch ([`State::sketch_id`]).
//!
//! ```
//! use std::sync::Arc;
//! use tessel_sketch::{generate_sketches, sample_population, HardwareParams, Isa, MutationRegistry};
//! let w = tessel_workloads::lookup("gmm:b=1,n=32,m=32,k=32").unwrap();
//! // Ansor's three sketches; with micro-kernels (AVX2, AVX-512) two tensorized ones follow.
//! let hw = HardwareParams { isa: Isa::Generic, ..HardwareParams::with_cores(4) };
//! let sketches = generate_sketches(&Arc::new(w.dag), &hw).unwrap();
//! assert_eq!(sketches.len(), 3);
//! let mut rng = tessel_ir::rng::seeded(7);
//! let population = sample_population(&sketches, 8, &hw, &mut rng);
//! assert_eq!(population.len(), 8);
//! let tile = MutationRegistry::cpu().get("MutateTileSize").copied().unwrap();
//! let child = (0..20).find_map(|_| tile.apply(&population[0], &hw, &mut rng)).unwrap();
//! assert_eq!(child.sketch_id(), population[0].sketch_id());
//! assert!(tessel_ir::lower::lower(&child).is_ok());
//! ```
#![warn(missing_docs)]

pub mod factor;
mod hardware;
pub mod init;
pub mod mutation;
pub mod rules;
mod util;
pub mod window;

pub use factor::FactorizationMemo;
pub use hardware::HardwareParams;
pub use init::{
    sample_initial, sample_initial_with, sample_population, sample_population_with, InitRule,
    InitRules,
};
pub use mutation::{MutationRegistry, MutationRule};
pub use rules::{
    generate_sketches, generate_sketches_with, Condition, Sketch, SketchRule, SketchRules,
};
pub use tessel_ir::target::{Isa, Target};
pub use tessel_ir::State;

/// Why sketch generation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SketchError {
    /// A rule produced a step the state refused (a bug in the rule, or a DAG it does not
    /// support).
    #[error("sketch rule {rule} made an illegal step: {error}")]
    Step {
        /// The rule.
        rule: String,
        /// The state's error.
        error: tessel_ir::StepError,
    },
    /// A multi-level tiling structure with letters other than `S` and `R`, or lacking a
    /// letter for a kind of loop the stage has.
    #[error("bad multi-level tiling structure `{0}`")]
    BadStructure(String),
    /// A rule met a stage shape it does not handle.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The rules kept producing states (a rule that never moves to a lower stage).
    #[error("sketch generation exceeded {0} intermediate states")]
    TooManyStates(usize),
}
