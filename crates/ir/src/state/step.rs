//! Schedule steps: the replayable, serializable genome of a program.
//!
//! Every step names its stage by index (stage `i` computes op `i` of the state's current
//! DAG) and its iterators by position in that stage's current loop order, exactly as Ansor's
//! transform steps do (ANSOR.md §2.3). Steps serialize as JSON objects tagged by `"step"`:
//!
//! | step | JSON |
//! | --- | --- |
//! | split | `{"step":"split","stage":2,"iter":0,"extent":512,"lengths":[8,4,2]}` (`null` = not chosen yet) |
//! | follow_split | `{"step":"follow_split","stage":3,"iter":0,"src_step":1,"n_split":2}` |
//! | follow_fused_split | `{"step":"follow_fused_split","stage":3,"iter":0,"src_steps":[1,2],"level":1,"factor_or_nparts":true}` |
//! | fuse | `{"step":"fuse","stage":2,"iters":[0,1]}` |
//! | reorder | `{"step":"reorder","stage":2,"order":[0,2,1]}` |
//! | compute_at | `{"step":"compute_at","stage":2,"target_stage":3,"target_iter":1}` |
//! | compute_inline | `{"step":"compute_inline","stage":1}` |
//! | compute_root | `{"step":"compute_root","stage":1}` |
//! | cache_write | `{"step":"cache_write","stage":2,"scope":"local"}` |
//! | cache_read | `{"step":"cache_read","stage":0,"scope":"local","readers":[2]}` |
//! | rfactor | `{"step":"rfactor","stage":1,"iter":1,"factor_iter":1}` |
//! | annotate | `{"step":"annotate","stage":2,"iter":0,"annotation":"parallel"}` (or `"vectorize"`, `"unroll"`, `"tensorize"`) |
//! | pragma | `{"step":"pragma","stage":2,"iter":0,"auto_unroll_max_step":64}` |
//!
//! This format is what records store: change it only with a schema version bump.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A loop annotation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Annotation {
    /// An ordinary loop.
    #[default]
    None,
    /// Run iterations in parallel.
    Parallel,
    /// Turn iterations into SIMD lanes (innermost loop of a stage only).
    Vectorize,
    /// Unroll the loop fully.
    Unroll,
    /// Map the register tile this reduction loop encloses onto a micro-kernel call
    /// ([`crate::tensorize`]); codegen falls back to ordinary code when it does not match.
    Tensorize,
}

impl Annotation {
    /// Keyword printed before `for` in a state.
    pub fn keyword(self) -> &'static str {
        match self {
            Annotation::None => "",
            Annotation::Parallel => "parallel ",
            Annotation::Vectorize => "vectorize ",
            Annotation::Unroll => "unroll ",
            Annotation::Tensorize => "tensorize ",
        }
    }
}

/// One schedule transformation. See the module docs for the JSON form.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Split iterator `iter` into `lengths.len() + 1` iterators `x.0` (outermost) … `x.n`;
    /// `lengths` are the inner extents (the outer one is implied). `None` lengths are holes
    /// of a sketch. `extent` is the iterator's extent, filled in when the step is applied.
    Split {
        /// Stage index.
        stage: usize,
        /// Iterator position.
        iter: usize,
        /// Extent of the iterator that is split (informational; recomputed on replay).
        extent: Option<i64>,
        /// Inner lengths, outer to inner.
        lengths: Vec<Option<i64>>,
    },
    /// Split like step `src_step` (a split): its first `n_split - 1` lengths, then the
    /// product of the rest, giving `n_split + 1` iterators.
    FollowSplit {
        /// Stage index.
        stage: usize,
        /// Iterator position.
        iter: usize,
        /// Index of the split step to follow.
        src_step: usize,
        /// Number of lengths taken.
        n_split: usize,
    },
    /// Split in two by the product, over `src_steps`, of their `lengths[level]`: as the
    /// inner factor if `factor_or_nparts`, else as the number of outer parts.
    FollowFusedSplit {
        /// Stage index.
        stage: usize,
        /// Iterator position.
        iter: usize,
        /// Split steps whose lengths are multiplied.
        src_steps: Vec<usize>,
        /// Which length of each.
        level: usize,
        /// Factor (inner extent) if true, number of parts (outer extent) if false.
        factor_or_nparts: bool,
    },
    /// Fuse consecutive iterators into one named `a@b@`.
    Fuse {
        /// Stage index.
        stage: usize,
        /// Consecutive iterator positions, outer first.
        iters: Vec<usize>,
    },
    /// Permute the stage's loops: new position `k` holds old iterator `order[k]`.
    Reorder {
        /// Stage index.
        stage: usize,
        /// A permutation of the iterator positions.
        order: Vec<usize>,
    },
    /// Compute the stage inside loop `target_iter` of its consumer `target_stage`.
    ComputeAt {
        /// Stage index.
        stage: usize,
        /// The consumer stage.
        target_stage: usize,
        /// Iterator position in the consumer.
        target_iter: usize,
    },
    /// Substitute the stage into its consumers (element-wise / injective stages only).
    ComputeInline {
        /// Stage index.
        stage: usize,
    },
    /// Compute the stage at the top level, into its own buffer.
    ComputeRoot {
        /// Stage index.
        stage: usize,
    },
    /// Add a stage `X.<scope>` that computes what stage `X` computed; `X` becomes a copy of
    /// it. The new stage takes index `stage`, `X` moves to `stage + 1`.
    CacheWrite {
        /// Stage index.
        stage: usize,
        /// Storage scope name (`local`).
        scope: String,
    },
    /// Add a copy `X.<scope>` of tensor `X` read by `readers` instead of `X`; it takes
    /// index `stage + 1`.
    CacheRead {
        /// Stage index of the tensor that is copied.
        stage: usize,
        /// Storage scope name.
        scope: String,
        /// Stages (indices before the step) that read the copy.
        readers: Vec<usize>,
    },
    /// Factor the reduction iterator `iter` out into a new stage `X.rf` where it is a
    /// spatial axis at position `factor_iter`; `X` then reduces over it. `X.rf` takes index
    /// `stage`, `X` moves to `stage + 1`.
    Rfactor {
        /// Stage index.
        stage: usize,
        /// Position of a reduction iterator.
        iter: usize,
        /// Position of the new axis among `X.rf`'s spatial axes.
        factor_iter: usize,
    },
    /// Annotate one loop.
    Annotate {
        /// Stage index.
        stage: usize,
        /// Iterator position.
        iter: usize,
        /// The annotation.
        annotation: Annotation,
    },
    /// TVM's `auto_unroll_max_step` pragma: inner loop nests of at most this many steps are
    /// unrolled.
    Pragma {
        /// Stage index.
        stage: usize,
        /// Iterator position (Ansor uses the outermost).
        iter: usize,
        /// The maximum number of steps to unroll.
        auto_unroll_max_step: u32,
    },
}

impl Step {
    /// The stage this step applies to.
    pub fn stage(&self) -> usize {
        match self {
            Step::Split { stage, .. }
            | Step::FollowSplit { stage, .. }
            | Step::FollowFusedSplit { stage, .. }
            | Step::Fuse { stage, .. }
            | Step::Reorder { stage, .. }
            | Step::ComputeAt { stage, .. }
            | Step::ComputeInline { stage }
            | Step::ComputeRoot { stage }
            | Step::CacheWrite { stage, .. }
            | Step::CacheRead { stage, .. }
            | Step::Rfactor { stage, .. }
            | Step::Annotate { stage, .. }
            | Step::Pragma { stage, .. } => *stage,
        }
    }

    /// The step's name as in its JSON tag (`split`, `compute_at`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Step::Split { .. } => "split",
            Step::FollowSplit { .. } => "follow_split",
            Step::FollowFusedSplit { .. } => "follow_fused_split",
            Step::Fuse { .. } => "fuse",
            Step::Reorder { .. } => "reorder",
            Step::ComputeAt { .. } => "compute_at",
            Step::ComputeInline { .. } => "compute_inline",
            Step::ComputeRoot { .. } => "compute_root",
            Step::CacheWrite { .. } => "cache_write",
            Step::CacheRead { .. } => "cache_read",
            Step::Rfactor { .. } => "rfactor",
            Step::Annotate { .. } => "annotate",
            Step::Pragma { .. } => "pragma",
        }
    }

    /// True for steps that add stages (and so renumber later ones).
    pub fn changes_stages(&self) -> bool {
        matches!(
            self,
            Step::CacheWrite { .. } | Step::CacheRead { .. } | Step::Rfactor { .. }
        )
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match serde_json::to_string(self) {
            Ok(s) => f.write_str(&s),
            Err(_) => write!(f, "{self:?}"),
        }
    }
}
