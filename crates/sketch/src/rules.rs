//! Sketch generation (ANSOR.md §3): derivation rules applied stage by stage, from the last
//! stage to the first, to enumerate the high-level structures ("sketches") of a DAG.

use crate::factor::FactorizationMemo;
use crate::hardware::HardwareParams;
use crate::util::{self, AnalysisCache};
use crate::SketchError;
use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;
use tessel_ir::analysis::AccessAnalysis;
use tessel_ir::state::{IterKind, State, Step};
use tessel_ir::{ComputeDag, OpId};

/// What a rule's condition says about one `(state, stage)` item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    /// The rule does not apply; try the next one.
    Skip,
    /// Apply the rule, then also try the later rules on the same item (branching).
    Apply,
    /// Apply the rule and do not try the later rules.
    ApplyAndSkipRest,
}

/// One result of a rule: a new state and the stage to work on next (`None`: finished).
pub type Derived = (State, Option<usize>);

/// What rules may ask while generating sketches: the hardware parameters and the access
/// analysis of a state's current DAG (cached per DAG).
pub struct SketchContext<'a> {
    hw: &'a HardwareParams,
    analyses: RefCell<AnalysisCache>,
}

impl<'a> SketchContext<'a> {
    /// A context for generating sketches for `hw`.
    pub fn new(hw: &'a HardwareParams) -> SketchContext<'a> {
        SketchContext {
            hw,
            analyses: RefCell::new(AnalysisCache::default()),
        }
    }

    /// The hardware parameters.
    pub fn hw(&self) -> &HardwareParams {
        self.hw
    }

    /// The access analysis of `state.dag()` (the DAG after cache_write / rfactor steps).
    pub fn analysis(&self, state: &State) -> Arc<AccessAnalysis> {
        self.analyses.borrow_mut().get(state)
    }

    /// TVM's `NeedsMultilevelTiling` on the state's current DAG.
    pub fn needs_multi_level_tiling(&self, state: &State, stage: usize) -> bool {
        self.analysis(state)
            .needs_multi_level_tiling(OpId(stage as u32))
    }

    /// TVM's `HasSingleElementwiseMatchedConsumer`: the consumer (looking through inlined
    /// stages) if there is exactly one, it is element-wise matched, not both stages reduce,
    /// and its name does not end in `.shared`.
    pub fn single_elementwise_matched_consumer(
        &self,
        state: &State,
        stage: usize,
    ) -> Option<usize> {
        let an = self.analysis(state);
        let consumers = util::consumers(&an, state, stage);
        let [target] = consumers[..] else {
            return None;
        };
        let matched = an.element_wise_match(OpId(stage as u32), OpId(target as u32))
            && !(util::has_reduce_iter(state, stage) && util::has_reduce_iter(state, target))
            && !state.stage(target).name.ends_with(".shared");
        matched.then_some(target)
    }

    /// TVM's `NeedsRfactor` (CPU): with multi-level tiling, rfactor iff the spatial product
    /// is at most the reduction product and at most `num_cores * 16`; otherwise iff the
    /// stage reduces over more than `num_cores` points *and* (Tessel's refinement) the
    /// spatial loops do not already give ample parallel work: a stage whose spatial
    /// product exceeds both its reduction product and `num_cores * 16` is not rfactored,
    /// the same test as the multi-level-tiling branch. Ansor rfactors every such stage,
    /// which for a 3×3 max-pool over 112×112×64 outputs (9 points, padding computed inside
    /// the reduction) gave programs hundreds of times slower than the plain sketch: 19 of
    /// 64 candidates of ResNet-50's max-pool task hit the 10 s run timeout.
    pub fn needs_rfactor(&self, state: &State, stage: usize) -> bool {
        if !state.stage(stage).is_compute {
            return false;
        }
        let (space, reduce) = util::space_and_reduce_len(state, stage);
        let ample_space = space > reduce && space > self.hw.max_parallel_degree();
        if self.needs_multi_level_tiling(state, stage) {
            !ample_space
        } else if reduce > 1 {
            reduce > self.hw.num_cores && !ample_space
        } else {
            false
        }
    }
}

/// A sketch derivation rule (TVM's `SketchGenerationRule`): a condition on one
/// `(state, stage)` item and an action that yields one or more derived items.
///
/// Rules are values: [`SketchRules`] holds them in order and can be edited.
pub trait SketchRule: Send + Sync {
    /// The rule's name (Ansor's class name without `Rule`).
    fn name(&self) -> &str;
    /// Whether and how the rule applies to `stage` of `state`.
    fn condition(&self, ctx: &SketchContext, state: &State, stage: usize) -> Condition;
    /// The derived states, each with the stage to continue with.
    fn apply(
        &self,
        ctx: &SketchContext,
        state: &State,
        stage: usize,
    ) -> Result<Vec<Derived>, SketchError>;
}

/// Applies `step` to `state`; a failure names `rule`.
pub(crate) fn step(rule: &str, state: &mut State, step: Step) -> Result<(), SketchError> {
    state.apply(step).map_err(|e| SketchError::Step {
        rule: rule.to_string(),
        error: e,
    })
}

/// SkipStage: always applies, leaves the stage as it is (last rule).
#[derive(Clone, Debug, Default)]
pub struct SkipStage;

impl SketchRule for SkipStage {
    fn name(&self) -> &str {
        "SkipStage"
    }
    fn condition(&self, _: &SketchContext, _: &State, _: usize) -> Condition {
        Condition::Apply
    }
    fn apply(
        &self,
        _: &SketchContext,
        state: &State,
        stage: usize,
    ) -> Result<Vec<Derived>, SketchError> {
        Ok(vec![(state.clone(), stage.checked_sub(1))])
    }
}

/// AlwaysInline: a compute stage that is not an output, has no reduction loop and is
/// strictly inlineable is inlined (apply-and-skip-rest).
#[derive(Clone, Debug, Default)]
pub struct AlwaysInline;

impl SketchRule for AlwaysInline {
    fn name(&self) -> &str {
        "AlwaysInline"
    }
    fn condition(&self, ctx: &SketchContext, state: &State, stage: usize) -> Condition {
        let an = ctx.analysis(state);
        let op = OpId(stage as u32);
        if !state.stage(stage).is_compute || an.is_output(op) || util::has_reduce_iter(state, stage)
        {
            return Condition::Skip;
        }
        if an.is_strictly_inlineable(op) {
            Condition::ApplyAndSkipRest
        } else {
            Condition::Skip
        }
    }
    fn apply(
        &self,
        _: &SketchContext,
        state: &State,
        stage: usize,
    ) -> Result<Vec<Derived>, SketchError> {
        let mut s = state.clone();
        step(self.name(), &mut s, Step::ComputeInline { stage })?;
        Ok(vec![(s, stage.checked_sub(1))])
    }
}

/// Longest reduction (points per output) for which [`AttachPaddingToTile`] applies: with a
/// short reduction a separate pass over the padded tensor costs a sizeable share of the
/// consumer's work (a 3×3 depthwise window reads each padded element 9 times, a 3×3×256
/// convolution 2,304 times).
pub const SHORT_REDUCTION: i64 = 64;

/// Whether `stage` is a producer whose placement the sketch decides ([`AttachPaddingToTile`]):
/// a computed, non-inlined, non-output stage without reduction (a padding stage: not
/// strictly inlineable, or AlwaysInline would have taken it) whose single consumer is a
/// tensorized stage with a reduction of at most [`SHORT_REDUCTION`] points.
///
/// The random annotation keeps such a stage where its sketch put it (at the root, or
/// attached to the consumer's tile loops); only the loop it is attached at is drawn.
pub(crate) fn placement_fixed_by_sketch(an: &AccessAnalysis, state: &State, stage: usize) -> bool {
    let st = state.stage(stage);
    if !st.is_compute
        || util::is_inlined(state, stage)
        || an.is_output(OpId(stage as u32))
        || util::has_reduce_iter(state, stage)
        || an.is_strictly_inlineable(OpId(stage as u32))
    {
        return false;
    }
    let consumers = util::consumers(an, state, stage);
    let [consumer] = consumers[..] else {
        return false;
    };
    let consumer_stage = state.stage(consumer);
    let tensorized_consumer = consumer_stage
        .leaves
        .iter()
        .any(|&l| consumer_stage.iter(l).annotation == tessel_ir::state::Annotation::Tensorize);
    tensorized_consumer && has_short_reduction(state, consumer)
}

/// Whether `stage` reduces over more than one and at most [`SHORT_REDUCTION`] points per
/// output element.
fn has_short_reduction(state: &State, stage: usize) -> bool {
    let reduce = state
        .dag()
        .op(OpId(stage as u32))
        .compute()
        .map_or(1, |c| c.reduce_size());
    reduce > 1 && reduce <= SHORT_REDUCTION
}

/// AttachPaddingToTile (Tessel's): a padding stage feeding a tensorized stage with a short
/// reduction (`placement_fixed_by_sketch`) gets a variant computed inside the consumer's
/// tile loops (at its first compute-location candidate; the annotation draws the loop);
/// the rules after it keep the variant at the root (apply).
///
/// Ansor draws such a stage's placement per program (InitChangeComputeLocation), so an
/// evolution holds two populations that mutation never joins: programs with the padding at
/// the root, and programs with it in the tile. For a depthwise convolution the second holds
/// the fastest programs but starts slower, and which one a search ends in was decided by
/// chance. As two sketches, the choice is the sketch policy's.
///
/// A consumer tensorized in place (no cache-write stage: it accumulates in its output)
/// keeps only the variant in the tile (applies and skips the rest). Such a consumer exists
/// because its reduction is short, so that a pass over a whole tensor is a large share of
/// the work, and a padding stage at the root is one: it writes a padded copy of the input
/// that the consumer reads back. On dep-1 the root variant's programs reached 64–66
/// GFLOP/s against 72–78 for the tile's, and searches that settled in it, because its
/// random programs start more evenly, ended up to 14 % slower.
#[derive(Clone, Debug, Default)]
pub struct AttachPaddingToTile;

impl SketchRule for AttachPaddingToTile {
    fn name(&self) -> &str {
        "AttachPaddingToTile"
    }
    fn condition(&self, ctx: &SketchContext, state: &State, stage: usize) -> Condition {
        let an = ctx.analysis(state);
        // Without a compute-location candidate `apply` derives nothing and only the root
        // variant (the rules after this one) remains.
        if !placement_fixed_by_sketch(&an, state, stage)
            || state.stage(stage).compute_at != tessel_ir::state::ComputeAt::Root
        {
            return Condition::Skip;
        }
        let consumer_in_place = util::consumers(&an, state, stage)
            .first()
            .is_some_and(|&c| !util::has_cache_write_stage(state, c));
        if consumer_in_place {
            Condition::ApplyAndSkipRest
        } else {
            Condition::Apply
        }
    }
    fn apply(
        &self,
        ctx: &SketchContext,
        state: &State,
        stage: usize,
    ) -> Result<Vec<Derived>, SketchError> {
        let an = ctx.analysis(state);
        let Some(&(target_stage, target_iter)) =
            crate::init::compute_location_candidates(&an, state, stage).first()
        else {
            return Ok(Vec::new());
        };
        let mut s = state.clone();
        step(
            self.name(),
            &mut s,
            Step::ComputeAt {
                stage,
                target_stage,
                target_iter,
            },
        )?;
        Ok(vec![(s, stage.checked_sub(1))])
    }
}

/// AddRfactor: a stage that NeedsRfactor and has no cache-write stage gets its reduction
/// loops fused and split in two; one derived state factors out the outer part, the other
/// the inner part (then moved innermost for vectorization) (apply).
#[derive(Clone, Debug, Default)]
pub struct AddRfactor;

impl SketchRule for AddRfactor {
    fn name(&self) -> &str {
        "AddRfactor"
    }
    fn condition(&self, ctx: &SketchContext, state: &State, stage: usize) -> Condition {
        if ctx.needs_rfactor(state, stage) && !util::has_cache_write_stage(state, stage) {
            Condition::Apply
        } else {
            Condition::Skip
        }
    }
    fn apply(
        &self,
        _: &SketchContext,
        state: &State,
        stage: usize,
    ) -> Result<Vec<Derived>, SketchError> {
        let st = state.stage(stage);
        let reduce_pos: Vec<usize> = (0..st.leaves.len())
            .filter(|&p| st.leaf(p).is_some_and(|it| it.kind == IterKind::Reduce))
            .collect();
        let n_space = st.leaves.len() - reduce_pos.len();
        let Some(&fused) = reduce_pos.first() else {
            return Ok(Vec::new());
        };
        let mut base = state.clone();
        if reduce_pos.len() > 1 {
            step(
                self.name(),
                &mut base,
                Step::Fuse {
                    stage,
                    iters: reduce_pos.clone(),
                },
            )?;
        }
        // The length is a placeholder: the post-pass of `generate_sketches` turns it into a
        // hole once every rule has run (Ansor does the same).
        step(
            self.name(),
            &mut base,
            Step::Split {
                stage,
                iter: fused,
                extent: None,
                lengths: vec![Some(1)],
            },
        )?;
        let mut out = Vec::new();
        for part in 0..2 {
            let mut s = base.clone();
            step(
                self.name(),
                &mut s,
                Step::Rfactor {
                    stage,
                    iter: fused + part,
                    factor_iter: n_space,
                },
            )?;
            if part == 1 {
                let n = s.stage(stage).leaves.len();
                let mut order: Vec<usize> = (0..n).filter(|&i| i != n_space).collect();
                order.push(n_space);
                step(self.name(), &mut s, Step::Reorder { stage, order })?;
            }
            out.push((s, stage.checked_sub(1)));
        }
        Ok(out)
    }
}

/// AddCacheWrite: a stage that needs multi-level tiling but has no single element-wise
/// matched consumer gets a `.local` cache stage; work continues on the same index, now the
/// cache stage (apply, so the variant without cache also continues).
#[derive(Clone, Debug, Default)]
pub struct AddCacheWrite;

impl SketchRule for AddCacheWrite {
    fn name(&self) -> &str {
        "AddCacheWrite"
    }
    fn condition(&self, ctx: &SketchContext, state: &State, stage: usize) -> Condition {
        if ctx.needs_multi_level_tiling(state, stage)
            && ctx
                .single_elementwise_matched_consumer(state, stage)
                .is_none()
        {
            Condition::Apply
        } else {
            Condition::Skip
        }
    }
    fn apply(
        &self,
        _: &SketchContext,
        state: &State,
        stage: usize,
    ) -> Result<Vec<Derived>, SketchError> {
        let mut s = state.clone();
        step(
            self.name(),
            &mut s,
            Step::CacheWrite {
                stage,
                scope: "local".into(),
            },
        )?;
        Ok(vec![(s, Some(stage))])
    }
}

/// Number of spatial (`S`) and reduction (`R`) levels of a tiling structure such as
/// `SSRSRS`.
fn structure_levels(structure: &str) -> Result<(usize, usize), SketchError> {
    let mut n = (0, 0);
    for c in structure.chars() {
        match c.to_ascii_uppercase() {
            'S' => n.0 += 1,
            'R' => n.1 += 1,
            _ => return Err(SketchError::BadStructure(structure.to_string())),
        }
    }
    Ok(n)
}

/// TVM's `DoMultiLevelTiling`: splits every spatial loop into one part per `S` of
/// `structure` and every reduction loop into one part per `R` (lengths are holes), then
/// orders the loops level-major. Returns the state and the indices of the spatial split
/// steps (for [`follow_tiling`]).
pub fn multi_level_tiling(
    state: &State,
    stage: usize,
    structure: &str,
) -> Result<(State, Vec<usize>), SketchError> {
    const RULE: &str = "MultiLevelTiling";
    let (n_space, n_reduce) = structure_levels(structure)?;
    let mut s = state.clone();
    let kinds: Vec<IterKind> = {
        let st = state.stage(stage);
        st.leaves.iter().map(|&l| st.iter(l).kind).collect()
    };
    let mut space_levels = vec![Vec::new(); n_space];
    let mut reduce_levels = vec![Vec::new(); n_reduce];
    let mut split_ids = Vec::new();
    let mut pos = 0;
    for kind in kinds {
        let (levels, size) = match kind {
            IterKind::Spatial => (&mut space_levels, n_space),
            IterKind::Reduce => (&mut reduce_levels, n_reduce),
        };
        if size == 0 {
            return Err(SketchError::BadStructure(structure.to_string()));
        }
        if size == 1 {
            levels[0].push(pos);
        } else {
            step(
                RULE,
                &mut s,
                Step::Split {
                    stage,
                    iter: pos,
                    extent: None,
                    lengths: vec![None; size - 1],
                },
            )?;
            for (l, level) in levels.iter_mut().enumerate() {
                level.push(pos + l);
            }
            if kind == IterKind::Spatial {
                split_ids.push(s.steps().len() - 1);
            }
        }
        pos += size;
    }
    let (mut sc, mut rc) = (0, 0);
    let mut order = Vec::new();
    for c in structure.chars() {
        if c.eq_ignore_ascii_case(&'s') {
            order.extend(&space_levels[sc]);
            sc += 1;
        } else {
            order.extend(&reduce_levels[rc]);
            rc += 1;
        }
    }
    step(RULE, &mut s, Step::Reorder { stage, order })?;
    Ok((s, split_ids))
}

/// TVM's `FollowTiling`: tiles the (all-spatial) stage `stage` like a producer whose
/// spatial splits are `split_ids`, with `n_split` levels taken (each loop becomes
/// `n_split + 1` loops), then orders the loops level-major.
pub fn follow_tiling(
    state: &State,
    stage: usize,
    split_ids: &[usize],
    n_split: usize,
) -> Result<State, SketchError> {
    const RULE: &str = "FollowTiling";
    let st = state.stage(stage);
    let n = st.leaves.len();
    if n != split_ids.len()
        || st
            .leaves
            .iter()
            .any(|&l| st.iter(l).kind != IterKind::Spatial)
    {
        return Err(SketchError::Unsupported(format!(
            "follow tiling of stage {} ({}): {n} loops for {} producer splits, or a reduction loop",
            stage,
            st.name,
            split_ids.len()
        )));
    }
    let mut s = state.clone();
    let width = n_split + 1;
    for (k, &src) in split_ids.iter().enumerate() {
        step(
            RULE,
            &mut s,
            Step::FollowSplit {
                stage,
                iter: k * width,
                src_step: src,
                n_split,
            },
        )?;
    }
    let order = (0..width)
        .flat_map(|l| (0..n).map(move |k| k * width + l))
        .collect();
    step(RULE, &mut s, Step::Reorder { stage, order })?;
    Ok(s)
}

/// MultiLevelTiling: a stage that needs multi-level tiling is tiled with `structure`
/// (apply-and-skip-rest).
#[derive(Clone, Debug)]
pub struct MultiLevelTiling {
    /// The tiling structure (Ansor CPU: `SSRSRS`).
    pub structure: String,
}

impl Default for MultiLevelTiling {
    fn default() -> Self {
        MultiLevelTiling {
            structure: "SSRSRS".into(),
        }
    }
}

impl SketchRule for MultiLevelTiling {
    fn name(&self) -> &str {
        "MultiLevelTiling"
    }
    fn condition(&self, ctx: &SketchContext, state: &State, stage: usize) -> Condition {
        if ctx.needs_multi_level_tiling(state, stage) {
            Condition::ApplyAndSkipRest
        } else {
            Condition::Skip
        }
    }
    fn apply(
        &self,
        _: &SketchContext,
        state: &State,
        stage: usize,
    ) -> Result<Vec<Derived>, SketchError> {
        let (s, _) = multi_level_tiling(state, stage, &self.structure)?;
        Ok(vec![(s, stage.checked_sub(1))])
    }
}

/// MultiLevelTilingWithFusion: a stage that needs multi-level tiling and has a single
/// element-wise matched consumer is tiled, and for each follow level (Ansor CPU: 1 and 2)
/// whose structure letter is `S`, the consumer is tiled like it and the stage is computed
/// at the consumer's last loop of that level. Apply-and-skip-rest when the stage is a
/// cache-write stage, else apply (so plain tiling also happens).
#[derive(Clone, Debug)]
pub struct MultiLevelTilingWithFusion {
    /// The tiling structure (Ansor CPU: `SSRSRS`).
    pub structure: String,
    /// The levels to fuse at (Ansor CPU: 1 and 2).
    pub follow_levels: Vec<usize>,
}

impl Default for MultiLevelTilingWithFusion {
    fn default() -> Self {
        MultiLevelTilingWithFusion {
            structure: "SSRSRS".into(),
            follow_levels: vec![1, 2],
        }
    }
}

impl SketchRule for MultiLevelTilingWithFusion {
    fn name(&self) -> &str {
        "MultiLevelTilingWithFusion"
    }
    fn condition(&self, ctx: &SketchContext, state: &State, stage: usize) -> Condition {
        if ctx.needs_multi_level_tiling(state, stage)
            && ctx
                .single_elementwise_matched_consumer(state, stage)
                .is_some()
        {
            if util::has_cache_write_stage(state, stage) {
                Condition::ApplyAndSkipRest
            } else {
                Condition::Apply
            }
        } else {
            Condition::Skip
        }
    }
    fn apply(
        &self,
        ctx: &SketchContext,
        state: &State,
        stage: usize,
    ) -> Result<Vec<Derived>, SketchError> {
        let Some(target) = ctx.single_elementwise_matched_consumer(state, stage) else {
            return Ok(Vec::new());
        };
        let (base, split_ids) = multi_level_tiling(state, stage, &self.structure)?;
        let mut out = Vec::new();
        let letters: Vec<char> = self.structure.chars().collect();
        for &level in &self.follow_levels {
            if level == 0
                || !letters
                    .get(level - 1)
                    .is_some_and(|c| c.eq_ignore_ascii_case(&'s'))
            {
                continue;
            }
            if split_ids.is_empty() {
                continue;
            }
            let mut s = follow_tiling(&base, target, &split_ids, level)?;
            step(
                self.name(),
                &mut s,
                Step::ComputeAt {
                    stage,
                    target_stage: target,
                    target_iter: level * split_ids.len() - 1,
                },
            )?;
            out.push((s, stage.checked_sub(1)));
        }
        Ok(out)
    }
}

/// MultiLevelTilingTensorized: the tensorized variants of MultiLevelTilingWithFusion for a
/// matmul/conv-like stage whose last spatial axis is a multiple of the family's narrowest
/// tile (8 columns, for AVX-512 with a masked half vector) and is read
/// contiguously by its operands (not `dense`'s transposed weight), either a cache-write
/// stage or a stage with a fusible element-wise consumer (a conv + bias + ReLU task): the
/// same tiling and fusion levels, plus a `Tensorize` annotation on the innermost reduction
/// loop of the structure's last `R` level, the loop right outside the innermost spatial
/// tiles.
/// [`crate::init::InitTensorizeTileSize`] then fills the tile sizes so that the region under
/// it is a micro-kernel tile (MR rows on the second-last spatial axis, NR one of
/// [`tessel_ir::tensorize::kernel_nr`]`(isa)` columns on the last one, the whole reduction inside).
///
/// For an NHWC convolution whose operands read its last two reduction axes (`rw`, `rc`)
/// contiguously (`rw` with stride `ci`, `rc` with stride 1), each variant comes twice: as
/// above, and with the innermost `rw` and `rc` tiles fused into one tensorized loop (both
/// whole, so the kernel reduces over `kernel_w * ci` steps per call instead of `ci`); the
/// search chooses by measurement.
///
/// A stage with a short reduction and neither a cache-write stage nor a fusible consumer
/// (`tensorizes_in_place`, a depthwise convolution) gets the tensorized variant of plain
/// MultiLevelTiling instead: the kernel accumulates in the output itself. When that stage is
/// an elementwise product (a depthwise convolution, `util::is_elementwise_product`), its
/// cache-write stage (AddCacheWrite's `.local`) is not tensorized: with a 3×3 window the local tile's
/// zeroing and write-back are a sizeable share of the work, and those sketches (four of the
/// five tensorized ones of dep-1) took most of the search's samples; dep-1's 200-trial
/// searches ended in them for two seeds of three (0.056 ms against the in-place 0.046).
/// The local stage keeps its plain sketches. A short matmul (`k` ≤ 64) keeps its tensorized
/// local stage: its in-place and local sketches were never measured against each other.
///
/// Applies (never skips the rest), so MultiLevelTilingWithFusion still adds the plain
/// sketches; off when [`HardwareParams::isa`] is [`tessel_ir::target::Isa::Generic`]. Remove it by name
/// (`"MultiLevelTilingTensorized"`) to search plain code only.
#[derive(Clone, Debug, Default)]
pub struct MultiLevelTilingTensorized {
    /// The tiling and fusion levels (the same as MultiLevelTilingWithFusion's).
    pub inner: MultiLevelTilingWithFusion,
}

/// Whether `stage` gets tensorized sketches that accumulate in the output itself: a stage
/// that needs multi-level tiling, with neither a cache-write stage nor a fusible consumer
/// (MultiLevelTiling's case), and a reduction of at most [`SHORT_REDUCTION`] points.
///
/// A tensorized tile holds its whole reduction, so a local copy of it only adds a pass that
/// zeroes it and one that copies it out. With a long reduction that pass is noise (a 3×3×256
/// convolution does 2,304 multiply-adds per output element); with a short one it is a
/// sizeable share of the work (a 3×3 depthwise window does 9), and the in-place sketches are
/// 10–15 % faster on dep-1.
fn tensorizes_in_place(ctx: &SketchContext, state: &State, stage: usize) -> bool {
    has_short_reduction(state, stage)
        && ctx.needs_multi_level_tiling(state, stage)
        && !util::has_cache_write_stage(state, stage)
        && ctx
            .single_elementwise_matched_consumer(state, stage)
            .is_none()
}

/// The position of the tensorized loop in a stage tiled with `structure` (the last loop of
/// the last `R` level), given its numbers of spatial and reduction axes.
pub(crate) fn tensorized_loop_position(
    structure: &str,
    n_space: usize,
    n_reduce: usize,
) -> Option<usize> {
    let mut pos = 0;
    let mut last = None;
    for c in structure.chars() {
        if c.eq_ignore_ascii_case(&'s') {
            pos += n_space;
        } else {
            pos += n_reduce;
            last = Some(pos.checked_sub(1)?);
        }
    }
    last
}

impl SketchRule for MultiLevelTilingTensorized {
    fn name(&self) -> &str {
        "MultiLevelTilingTensorized"
    }
    fn condition(&self, ctx: &SketchContext, state: &State, stage: usize) -> Condition {
        let Some(&narrowest) = tessel_ir::tensorize::kernel_nr(ctx.hw().isa).first() else {
            return Condition::Skip;
        };
        let fused = self.inner.condition(ctx, state, stage) != Condition::Skip;
        if !fused && !tensorizes_in_place(ctx, state, stage) {
            return Condition::Skip;
        }
        let Some(c) = state.dag().op(OpId(stage as u32)).compute() else {
            return Condition::Skip;
        };
        if fused
            && has_short_reduction(state, stage)
            && util::has_cache_write_stage(state, stage)
            && util::is_elementwise_product(c)
        {
            // The local stage of a short elementwise reduction: the in-place sketch covers it.
            return Condition::Skip;
        }
        let last_ok = c.axes.last().is_some_and(|a| a.extent % narrowest == 0);
        if last_ok
            && c.axes.len() >= 2
            && !c.reduce_axes.is_empty()
            && util::columns_are_contiguous(c)
        {
            Condition::Apply
        } else {
            Condition::Skip
        }
    }
    fn apply(
        &self,
        ctx: &SketchContext,
        state: &State,
        stage: usize,
    ) -> Result<Vec<Derived>, SketchError> {
        let (n_space, n_reduce) = {
            let st = state.stage(stage);
            let n_reduce = st
                .leaves
                .iter()
                .filter(|&&l| st.iter(l).kind == IterKind::Reduce)
                .count();
            (st.leaves.len() - n_reduce, n_reduce)
        };
        let Some(iter) = tensorized_loop_position(&self.inner.structure, n_space, n_reduce) else {
            return Ok(Vec::new());
        };
        let base = if self.inner.condition(ctx, state, stage) == Condition::Skip {
            // In place (`tensorizes_in_place`): the stage's own tiles, no consumer.
            let (s, _) = multi_level_tiling(state, stage, &self.inner.structure)?;
            vec![(s, stage.checked_sub(1))]
        } else {
            self.inner.apply(ctx, state, stage)?
        };
        let fusible = state
            .dag()
            .op(OpId(stage as u32))
            .compute()
            .is_some_and(|c| util::reduction_pair_is_contiguous(state.dag(), c));
        let mut out = Vec::with_capacity(base.len() * 2);
        for (s, next) in base {
            let mut plain = s.clone();
            step(
                self.name(),
                &mut plain,
                Step::Annotate {
                    stage,
                    iter,
                    annotation: tessel_ir::state::Annotation::Tensorize,
                },
            )?;
            out.push((plain, next));
            if fusible && n_reduce >= 2 {
                // The fused-reduction variant: the innermost rw and rc tiles (both whole,
                // see InitTensorizeTileSize) become one loop, a longer kernel reduction.
                let mut fused = s;
                step(
                    self.name(),
                    &mut fused,
                    Step::Fuse {
                        stage,
                        iters: vec![iter - 1, iter],
                    },
                )?;
                step(
                    self.name(),
                    &mut fused,
                    Step::Annotate {
                        stage,
                        iter: iter - 1,
                        annotation: tessel_ir::state::Annotation::Tensorize,
                    },
                )?;
                out.push((fused, next));
            }
        }
        Ok(out)
    }
}

/// An ordered, editable list of sketch rules.
///
/// ```
/// use tessel_sketch::{SketchRules, rules::SkipStage};
/// let mut rules = SketchRules::cpu();
/// assert_eq!(rules.names()[0], "AlwaysInline");
/// rules.remove("AddRfactor");
/// rules.insert_before("SkipStage", Box::new(SkipStage)); // any SketchRule value
/// assert_eq!(rules.names().len(), 9);
/// ```
pub struct SketchRules {
    /// The rules, tried in order.
    pub rules: Vec<Box<dyn SketchRule>>,
}

impl SketchRules {
    /// Ansor's CPU rules in order: AlwaysInline, AddRfactor, AddCacheWrite,
    /// MultiLevelTilingTensorized (Tessel's; only when [`HardwareParams::micro_kernels`]),
    /// MultiLevelTilingWithFusion, MultiLevelTiling, AttachPaddingToTile (Tessel's),
    /// WindowReduction (Tessel's, [`crate::window`]), SkipStage.
    /// (SimplifyComputeWithConstTensor is left out: no Tessel operator carries the
    /// const-tensor-indices attribute it reacts to.)
    pub fn cpu() -> SketchRules {
        SketchRules {
            rules: vec![
                Box::new(AlwaysInline),
                Box::new(AddRfactor),
                Box::new(AddCacheWrite),
                Box::new(MultiLevelTilingTensorized::default()),
                Box::new(MultiLevelTilingWithFusion::default()),
                Box::new(MultiLevelTiling::default()),
                Box::new(AttachPaddingToTile),
                Box::new(crate::window::WindowReduction),
                Box::new(SkipStage),
            ],
        }
    }

    /// The rule names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.rules.iter().map(|r| r.name()).collect()
    }

    /// Removes the rule called `name`; true if there was one.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.rules.len();
        self.rules.retain(|r| r.name() != name);
        self.rules.len() != before
    }

    /// Inserts `rule` before the rule called `name` (at the end if there is none).
    pub fn insert_before(&mut self, name: &str, rule: Box<dyn SketchRule>) {
        let at = self
            .rules
            .iter()
            .position(|r| r.name() == name)
            .unwrap_or(self.rules.len());
        self.rules.insert(at, rule);
    }
}

impl Default for SketchRules {
    fn default() -> Self {
        SketchRules::cpu()
    }
}

/// A split step of a sketch whose lengths are holes, with the tile vectors to draw from.
#[derive(Clone, Debug)]
pub(crate) struct Hole {
    /// Index of the split step.
    pub step: usize,
    /// Extent of the split loop (`None`: cannot be filled).
    pub extent: Option<i64>,
    /// Number of lengths.
    pub n_lengths: usize,
    /// The candidate length vectors (memoized at generation).
    pub schemes: Arc<Vec<Vec<i64>>>,
}

/// A sketch: a state whose split lengths may still be holes, and its index in the list
/// [`generate_sketches`] returned.
#[derive(Clone, Debug)]
pub struct Sketch {
    /// Index in the generated list; sampled and mutated states carry it as `sketch_id`.
    pub id: u32,
    /// The sketch's state (its `sketch_id` is `id`).
    pub state: State,
    pub(crate) analysis: Arc<AccessAnalysis>,
    pub(crate) holes: Vec<Hole>,
    pub(crate) max_innermost: i64,
    /// The state after the steps before the first split with holes (shared by all samples,
    /// so that filling tile sizes replays only the rest of the log).
    pub(crate) prefix: State,
}

impl Sketch {
    /// The access analysis of the sketch's DAG (what the init rules ask).
    pub fn analysis(&self) -> &AccessAnalysis {
        &self.analysis
    }

    /// Text form: the loop structure (`?` for extents that depend on holes), then the steps.
    pub fn text(&self) -> String {
        format!(
            "sketch #{}\n{}steps:\n{}",
            self.id,
            self.state,
            self.state.steps_text()
        )
    }
}

impl fmt::Display for Sketch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

/// Largest number of items the work list may hold (a guard against rules that loop).
const MAX_ITEMS: usize = 100_000;

/// Generates the sketches of `dag` with Ansor's CPU rules ([`SketchRules::cpu`]).
///
/// ```
/// use std::sync::Arc;
/// use tessel_sketch::{generate_sketches, HardwareParams};
/// let w = tessel_workloads::lookup("gmm:b=1,n=64,m=64,k=128").unwrap();
/// let hw = HardwareParams { isa: tessel_sketch::Isa::Avx2, ..HardwareParams::with_cores(4) };
/// let sketches = generate_sketches(&Arc::new(w.dag), &hw).unwrap();
/// // Ansor's three, then two tensorized (cache write fused at level 1 or 2); a reduction of
/// // at most 64 points would add a third, in place.
/// assert_eq!(sketches.len(), 5);
/// assert!(tessel_sketch::rules::is_tensorized(&sketches[4].state));
/// ```
pub fn generate_sketches(
    dag: &Arc<ComputeDag>,
    hw: &HardwareParams,
) -> Result<Vec<Sketch>, SketchError> {
    generate_sketches_with(dag, hw, &SketchRules::cpu())
}

/// Generates the sketches of `dag` with `rules` (ANSOR.md §3.1): a breadth-first work list
/// of `(state, stage)` items starting at the last stage; each item tries the rules in
/// order; items whose stage falls below 0 are sketches. Then, for every rfactor step, the
/// split just before it gets a hole as its length. The order is deterministic.
pub fn generate_sketches_with(
    dag: &Arc<ComputeDag>,
    hw: &HardwareParams,
    rules: &SketchRules,
) -> Result<Vec<Sketch>, SketchError> {
    let ctx = SketchContext::new(hw);
    let n = dag.ops().len();
    let mut now: Vec<Derived> = vec![(State::new(dag.clone()), n.checked_sub(1))];
    let mut done = Vec::new();
    let mut seen = 0usize;
    while !now.is_empty() {
        let mut next = Vec::new();
        for (state, stage) in now {
            let Some(stage) = stage else {
                done.push(state);
                continue;
            };
            for rule in &rules.rules {
                let cond = rule.condition(&ctx, &state, stage);
                if cond == Condition::Skip {
                    continue;
                }
                next.extend(rule.apply(&ctx, &state, stage)?);
                if cond == Condition::ApplyAndSkipRest {
                    break;
                }
            }
        }
        seen += next.len();
        if seen > MAX_ITEMS {
            return Err(SketchError::TooManyStates(MAX_ITEMS));
        }
        now = next;
    }
    // Plain sketches first, tensorized ones after (a stable partition), so that the plain
    // sketches keep the ids they have without the tensorized rule.
    let (mut done, tensorized): (Vec<State>, Vec<State>) =
        done.into_iter().partition(|s| !is_tensorized(s));
    done.extend(tensorized);
    let mut memo = FactorizationMemo::default();
    let mut out = Vec::with_capacity(done.len());
    for (k, state) in done.into_iter().enumerate() {
        let mut steps = state.steps().to_vec();
        let mut changed = false;
        for i in 1..steps.len() {
            if matches!(steps[i], Step::Rfactor { .. }) {
                if let Step::Split { lengths, .. } = &mut steps[i - 1] {
                    lengths.iter_mut().for_each(|l| *l = None);
                    changed = true;
                }
            }
        }
        let mut state = if changed {
            State::replay(dag.clone(), &steps).map_err(|e| SketchError::Step {
                rule: "rfactor post-pass".into(),
                error: e,
            })?
        } else {
            state
        };
        state.set_sketch_id(Some(k as u32));
        out.push(make_sketch(k as u32, state, hw, &mut memo));
    }
    Ok(out)
}

/// Whether the state's log annotates a loop `Tensorize` (a tensorized sketch or a state
/// sampled from one).
pub fn is_tensorized(state: &State) -> bool {
    state.steps().iter().any(|s| {
        matches!(
            s,
            Step::Annotate {
                annotation: tessel_ir::state::Annotation::Tensorize,
                ..
            }
        )
    })
}

/// Wraps a sketch state: its analysis and the tile vectors of its holes.
pub(crate) fn make_sketch(
    id: u32,
    state: State,
    hw: &HardwareParams,
    memo: &mut FactorizationMemo,
) -> Sketch {
    let holes: Vec<Hole> = state
        .steps()
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match s {
            Step::Split {
                extent, lengths, ..
            } if lengths.iter().any(|l| l.is_none()) => Some(Hole {
                step: i,
                extent: *extent,
                n_lengths: lengths.len(),
                schemes: match extent {
                    Some(e) => memo.schemes(*e, lengths.len(), hw.max_innermost_split_factor),
                    None => Arc::new(Vec::new()),
                },
            }),
            _ => None,
        })
        .collect();
    let first_hole = holes.first().map_or(state.steps().len(), |h: &Hole| h.step);
    let mut prefix = State::new(state.original_dag().clone());
    for s in &state.steps()[..first_hole] {
        // Replaying a prefix of a log that replays cannot fail.
        if prefix.apply(s.clone()).is_err() {
            prefix = State::new(state.original_dag().clone());
            break;
        }
    }
    Sketch {
        id,
        prefix,
        analysis: Arc::new(AccessAnalysis::new(state.dag())),
        state,
        holes,
        max_innermost: hw.max_innermost_split_factor,
    }
}
