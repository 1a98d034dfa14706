//! Random annotation (ANSOR.md §4): init rules that turn a sketch into a complete state by
//! filling tile sizes and choosing compute locations, parallel loops, unrolling and
//! vectorization.

use crate::factor::factorization_schemes;
use crate::hardware::HardwareParams;
use crate::rules::Sketch;
use crate::util;
use rand::RngExt;
use std::collections::HashSet;
use std::sync::Arc;
use tessel_ir::analysis::AccessAnalysis;
use tessel_ir::rng::TesselRng;
use tessel_ir::state::{Annotation, ComputeAt, IterKind, State, Step};
use tessel_ir::target::Isa;
use tessel_ir::OpId;

/// What an init rule may read besides the state: the sketch it came from (with its access
/// analysis and memoized tile vectors) and the hardware parameters.
pub struct InitContext<'a> {
    /// The sketch being sampled.
    pub sketch: &'a Sketch,
    /// The hardware parameters.
    pub hw: &'a HardwareParams,
}

/// A population-initialization rule (TVM's `PopulationGenerationRule` used by
/// `SampleInitPopulation`): takes a state, returns the annotated state or `None` if the
/// sample is invalid (Ansor discards it).
pub trait InitRule: Send + Sync {
    /// The rule's name (Ansor's class name).
    fn name(&self) -> &str;
    /// Applies the rule.
    fn apply(&self, ctx: &InitContext, state: State, rng: &mut TesselRng) -> Option<State>;
}

/// InitFillTileSize: every split with holes gets a tile vector drawn uniformly from all
/// exact factorizations of its extent with the innermost length at most
/// `max_innermost_split_factor` (memoized); the log is replayed with the chosen lengths.
#[derive(Clone, Debug, Default)]
pub struct InitFillTileSize;

impl InitRule for InitFillTileSize {
    fn name(&self) -> &str {
        "InitFillTileSize"
    }
    fn apply(&self, ctx: &InitContext, state: State, rng: &mut TesselRng) -> Option<State> {
        let max_inner = ctx.hw.max_innermost_split_factor;
        let mut steps = state.steps().to_vec();
        let mut changed = false;
        for (i, step) in steps.iter_mut().enumerate() {
            let Step::Split {
                extent, lengths, ..
            } = step
            else {
                continue;
            };
            if lengths.iter().all(|l| l.is_some()) {
                continue;
            }
            let extent = (*extent)?;
            let memo = ctx.sketch.holes.iter().find(|h| {
                h.step == i
                    && h.extent == Some(extent)
                    && h.n_lengths == lengths.len()
                    && ctx.sketch.max_innermost == max_inner
            });
            let schemes = match memo {
                Some(h) => h.schemes.clone(),
                None => Arc::new(factorization_schemes(extent, lengths.len(), max_inner)),
            };
            if schemes.is_empty() {
                return None;
            }
            let pick = &schemes[rng.random_range(0..schemes.len())];
            *lengths = pick.iter().map(|&l| Some(l)).collect();
            changed = true;
        }
        if !changed {
            return Some(state);
        }
        // Steps before the first hole are the sketch's: start from its cached prefix.
        let prefix = &ctx.sketch.prefix;
        let n = prefix.steps().len();
        let mut s = if state.steps().len() >= n && state.steps()[..n] == *prefix.steps() {
            prefix.clone()
        } else {
            State::new(state.original_dag().clone())
        };
        for step in &steps[s.steps().len()..] {
            s.apply(step.clone()).ok()?;
        }
        s.set_sketch_id(state.sketch_id());
        Some(s)
    }
}

/// The split steps of the stage whose loop a tensorized sketch (or a state sampled from
/// one) annotates `Tensorize`: `(stage, [(step index, extent)])`, one split per axis of the
/// stage's op (spatial axes first, then reduction axes, as MultiLevelTiling splits them);
/// `None` when the state is not tensorized or its splits do not have that shape.
pub(crate) fn tensorized_splits(state: &State) -> Option<(usize, Vec<(usize, i64)>)> {
    let steps = state.steps();
    let stage = steps.iter().find_map(|s| match s {
        Step::Annotate {
            stage,
            annotation: Annotation::Tensorize,
            ..
        } => Some(*stage),
        _ => None,
    })?;
    let c = state.dag().op(OpId(stage as u32)).compute()?;
    let splits: Vec<(usize, i64)> = steps
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match s {
            Step::Split {
                stage: k,
                extent: Some(e),
                ..
            } if *k == stage => Some((i, *e)),
            _ => None,
        })
        .collect();
    (splits.len() == c.axes.len() + c.reduce_axes.len() && c.axes.len() >= 2)
        .then_some((stage, splits))
}

/// Whether the tensorized state fuses loops of the tensorized stage before annotating
/// (the fused-reduction variant of MultiLevelTilingTensorized: the innermost tiles of the
/// last two reduction axes fused into the tensorized loop).
pub(crate) fn fuses_reduction(state: &State, stage: usize) -> bool {
    state
        .steps()
        .iter()
        .take_while(|s| {
            !matches!(
                s,
                Step::Annotate {
                    annotation: Annotation::Tensorize,
                    ..
                }
            )
        })
        .any(|s| matches!(s, Step::Fuse { stage: k, .. } if *k == stage))
}

/// The tile shapes `(MR, NR)` of `isa`'s micro-kernel family that fit a row axis of `rows`
/// and a column axis of `cols` iterations (both dividing them): register tiles and strips
/// of them (up to
/// [`tessel_ir::tensorize::MAX_STRIP_MR`] rows). Tiles with at least 4 accumulator
/// registers are preferred when there are any (smaller tiles are latency-bound).
pub fn kernel_shapes(isa: Isa, rows: i64, cols: i64) -> Vec<(i64, i64)> {
    let mut all = Vec::new();
    for &nr in tessel_ir::tensorize::kernel_nr(isa) {
        for mr in 1..=tessel_ir::tensorize::MAX_STRIP_MR {
            if cols % nr == 0
                && rows % mr == 0
                && tessel_ir::tensorize::kernel_supported(isa, mr, nr)
            {
                all.push((mr, nr));
            }
        }
    }
    let big: Vec<(i64, i64)> = all
        .iter()
        .copied()
        .filter(|&(m, n)| m * tessel_ir::tensorize::row_vectors(isa, n) >= 4)
        .collect();
    if big.is_empty() {
        all
    } else {
        big
    }
}

/// InitTensorizeTileSize (Tessel's; runs before InitFillTileSize): in a tensorized state,
/// fills the tile sizes of the tensorized stage so that the loops under the tensorized loop
/// form a micro-kernel tile: the innermost tile of the second-last spatial axis is MR, of
/// the last (unit-stride) spatial axis NR, of every other spatial axis 1, with `(MR, NR)`
/// drawn from [`kernel_shapes`]; the innermost tile of the last reduction axis is its whole
/// extent (so the kernel runs over the full reduction; `max_innermost_split_factor` does not
/// apply), and so is the second-last one's when the sketch fuses the two into the tensorized
/// loop. The other tile levels are drawn like InitFillTileSize's. Other states pass
/// unchanged.
#[derive(Clone, Debug, Default)]
pub struct InitTensorizeTileSize;

impl InitRule for InitTensorizeTileSize {
    fn name(&self) -> &str {
        "InitTensorizeTileSize"
    }
    fn apply(&self, ctx: &InitContext, state: State, rng: &mut TesselRng) -> Option<State> {
        let Some((stage, splits)) = tensorized_splits(&state) else {
            return Some(state);
        };
        let n_space = state.dag().op(OpId(stage as u32)).compute()?.axes.len();
        let n = splits.len();
        let (rows, cols) = (splits[n_space - 2].1, splits[n_space - 1].1);
        let shapes = kernel_shapes(ctx.hw.isa, rows, cols);
        if shapes.is_empty() {
            return Some(state);
        }
        let (mr, nr) = shapes[rng.random_range(0..shapes.len())];
        let fused = fuses_reduction(&state, stage);
        let mut steps = state.steps().to_vec();
        for (axis, &(i, extent)) in splits.iter().enumerate() {
            let Step::Split { lengths, .. } = &mut steps[i] else {
                return None;
            };
            if lengths.is_empty() || lengths.iter().all(|l| l.is_some()) {
                continue;
            }
            let inner = if axis == n_space - 2 {
                mr
            } else if axis == n_space - 1 {
                nr
            } else if axis == n - 1 || (fused && axis == n - 2) {
                extent
            } else if axis < n_space {
                1
            } else {
                // Other reduction axes: outside the kernel; any tiles.
                let schemes =
                    factorization_schemes(extent, lengths.len(), ctx.hw.max_innermost_split_factor);
                let pick = schemes.get(rng.random_range(0..schemes.len().max(1)))?;
                *lengths = pick.iter().map(|&l| Some(l)).collect();
                continue;
            };
            let schemes = factorization_schemes(extent / inner, lengths.len() - 1, i64::MAX);
            let pick = schemes.get(rng.random_range(0..schemes.len().max(1)))?;
            *lengths = pick.iter().chain([&inner]).map(|&l| Some(l)).collect();
        }
        util::replay_like(&state, &steps)
    }
}

/// TVM's `GetComputeLocationCandidates`: `(stage, loop position)` pairs of the single
/// consumer where `stage` may be computed. Walking the consumer's loops from the outermost:
/// stop at a reduction loop if the consumer is not tiled, at a spatial loop after a
/// reduction loop, at an unrolled loop; skip loops of extent 1 and, if the consumer is
/// itself attached, its `.0` loops; stop after a loop that already has stages attached.
///
/// Tessel's `compute_at` only attaches a stage to its (single) consumer, so Ansor's extra
/// candidates in the stage the consumer is attached to, and the common root of several
/// consumers, are not offered.
pub(crate) fn compute_location_candidates(
    an: &AccessAnalysis,
    state: &State,
    stage: usize,
) -> Vec<(usize, usize)> {
    let consumers = util::consumers(an, state, stage);
    let [target] = consumers[..] else {
        return Vec::new();
    };
    let st = state.stage(target);
    let attached_other = matches!(st.compute_at, ComputeAt::At { .. });
    let tiled = util::is_tiled(state, target);
    let mut out = Vec::new();
    let mut visited_reduce = false;
    for pos in 0..st.leaves.len() {
        let Some(it) = st.leaf(pos) else { break };
        match it.kind {
            IterKind::Reduce => {
                visited_reduce = true;
                if !tiled {
                    break;
                }
            }
            IterKind::Spatial => {
                if visited_reduce {
                    break;
                }
            }
        }
        if it.annotation == Annotation::Unroll {
            break;
        }
        if it.extent == Some(1) {
            continue;
        }
        if attached_other && it.kind == IterKind::Spatial && it.name.ends_with(".0") {
            continue;
        }
        out.push((target, pos));
        if util::attached_at_pos(state, target, pos) {
            break;
        }
    }
    out
}

/// The compute-location candidates in the outermost tile level they reach: those whose
/// loop carries the first candidate's split suffix (`h.0`, `w.0`, … or, under an attached
/// consumer, `h.1`, `w.1`, …).
///
/// A stage attached there is computed once per outer tile. One level deeper it is computed
/// again for every inner tile, and a padding stage copies its halo each time: dep-1's
/// random programs with the padding in the tile ran at a median of 31 GFLOP/s against 37
/// with it at the root, while the fastest programs of both kinds (73 against 66) all had it
/// in the outer level.
fn outer_tile_level(state: &State, candidates: &[(usize, usize)]) -> Vec<(usize, usize)> {
    let suffix = |&(stage, pos): &(usize, usize)| {
        let name = state.stage(stage).leaf(pos)?.name.as_str();
        name.rfind('.').map(|i| &name[i..])
    };
    let Some(first) = candidates.first().and_then(suffix) else {
        return candidates.to_vec();
    };
    candidates
        .iter()
        .filter(|c| suffix(c) == Some(first))
        .copied()
        .collect()
}

/// InitChangeComputeLocation: for stages from last to first that are computed, not
/// inlined, not tiled and do not need multi-level tiling, draw uniformly among
/// `candidates + 2` choices: inline (only if it has no reduction loop and is currently
/// attached), compute at the root, or one of the compute-location candidates.
/// A stage whose placement its sketch decided (`AttachPaddingToTile`) stays at the root,
/// or stays attached at a loop drawn uniformly among the candidates of the outermost tile
/// level (`outer_tile_level`).
#[derive(Clone, Debug, Default)]
pub struct InitChangeComputeLocation;

impl InitRule for InitChangeComputeLocation {
    fn name(&self) -> &str {
        "InitChangeComputeLocation"
    }
    fn apply(&self, ctx: &InitContext, mut state: State, rng: &mut TesselRng) -> Option<State> {
        if ctx.hw.disable_change_compute_location {
            return Some(state);
        }
        let an = &ctx.sketch.analysis;
        for stage in (0..state.stages().len()).rev() {
            let st = state.stage(stage);
            if !st.is_compute || st.compute_at == ComputeAt::Inline {
                continue;
            }
            if util::is_tiled(&state, stage) || an.needs_multi_level_tiling(OpId(stage as u32)) {
                continue;
            }
            let candidates = compute_location_candidates(an, &state, stage);
            if crate::rules::placement_fixed_by_sketch(an, &state, stage) {
                // The sketch chose root or tile (AttachPaddingToTile); draw only the loop,
                // among the outermost tile level's.
                let outer = outer_tile_level(&state, &candidates);
                if matches!(state.stage(stage).compute_at, ComputeAt::At { .. })
                    && !outer.is_empty()
                {
                    let (target_stage, target_iter) = outer[rng.random_range(0..outer.len())];
                    state
                        .apply(Step::ComputeAt {
                            stage,
                            target_stage,
                            target_iter,
                        })
                        .ok()?;
                }
                continue;
            }
            let choice = rng.random_range(0..candidates.len() + 2);
            let step = match choice {
                0 => {
                    let attached = matches!(state.stage(stage).compute_at, ComputeAt::At { .. });
                    if util::has_reduce_iter(&state, stage) || !attached {
                        continue;
                    }
                    Step::ComputeInline { stage }
                }
                1 => {
                    // Ansor records a compute_root even for a stage already at the root;
                    // Tessel leaves such no-op steps out of the log.
                    if state.stage(stage).compute_at == ComputeAt::Root {
                        continue;
                    }
                    Step::ComputeRoot { stage }
                }
                c => {
                    let (target, pos) = candidates[c - 2];
                    Step::ComputeAt {
                        stage,
                        target_stage: target,
                        target_iter: pos,
                    }
                }
            };
            state.apply(step).ok()?;
        }
        Some(state)
    }
}

/// Fuses and parallelizes the outer loops of `stage` from position `offset` (TVM's
/// `annotate_parallel` of InitParallel).
fn annotate_parallel(
    state: &mut State,
    hw: &HardwareParams,
    stage: usize,
    offset: usize,
) -> Option<()> {
    let mut to_fuse = Vec::new();
    let mut degree = 1i64;
    let n = state.stage(stage).leaves.len();
    let mut pos = offset;
    while pos < n {
        let it = state.stage(stage).leaf(pos)?;
        if it.kind == IterKind::Reduce || it.annotation != Annotation::None {
            break;
        }
        to_fuse.push(pos);
        degree = degree.saturating_mul(it.extent.unwrap_or(-1));
        if degree > hw.max_parallel_degree() {
            break;
        }
        if util::attached_at_pos(state, stage, pos) {
            break;
        }
        pos += 1;
    }
    if degree == 1 {
        let attached = util::attached_list(state, stage, pos);
        if !attached.is_empty() {
            for a in attached {
                annotate_parallel(state, hw, a, 0)?;
            }
            annotate_parallel(state, hw, stage, pos + 1)?;
        }
    }
    if let Some(&first) = to_fuse.first() {
        if to_fuse.len() > 1 {
            state
                .apply(Step::Fuse {
                    stage,
                    iters: to_fuse.clone(),
                })
                .ok()?;
        }
        state
            .apply(Step::Annotate {
                stage,
                iter: first,
                annotation: Annotation::Parallel,
            })
            .ok()?;
    }
    Some(())
}

/// InitParallel: for every root compute stage, fuse the outermost spatial, un-annotated
/// loops until the product exceeds `num_cores * 16` or a loop with attached stages is
/// reached (included), and parallelize the result; if that product is 1 and the loop has
/// attached stages, recurse into them and continue after it.
#[derive(Clone, Debug, Default)]
pub struct InitParallel;

impl InitRule for InitParallel {
    fn name(&self) -> &str {
        "InitParallel"
    }
    fn apply(&self, ctx: &InitContext, mut state: State, _: &mut TesselRng) -> Option<State> {
        for stage in 0..state.stages().len() {
            let st = state.stage(stage);
            if !st.is_compute || st.compute_at != ComputeAt::Root {
                continue;
            }
            annotate_parallel(&mut state, ctx.hw, stage, 0)?;
        }
        Some(state)
    }
}

/// InitUnroll: every computed, non-inlined stage with a reduction loop gets the pragma
/// `auto_unroll_max_step` on its outermost loop, drawn uniformly from
/// `auto_unroll_configs` (Tessel's operators carry no `always_unroll_inner` hints).
#[derive(Clone, Debug, Default)]
pub struct InitUnroll;

impl InitRule for InitUnroll {
    fn name(&self) -> &str {
        "InitUnroll"
    }
    fn apply(&self, ctx: &InitContext, mut state: State, rng: &mut TesselRng) -> Option<State> {
        let configs = &ctx.hw.auto_unroll_configs;
        if configs.is_empty() {
            return Some(state);
        }
        for stage in 0..state.stages().len() {
            let st = state.stage(stage);
            if !st.is_compute
                || st.compute_at == ComputeAt::Inline
                || !util::has_reduce_iter(&state, stage)
            {
                continue;
            }
            let value = configs[rng.random_range(0..configs.len())];
            state
                .apply(Step::Pragma {
                    stage,
                    iter: 0,
                    auto_unroll_max_step: value,
                })
                .ok()?;
        }
        Some(state)
    }
}

/// InitVectorization: for every computed, non-inlined stage, count the innermost fusible
/// loops (stop at an attached loop, a reduction or annotated loop, after the first one if
/// the stage is tiled, or when the extent product would exceed `max_vectorize_size`); if
/// more than one qualifies take a uniform count in `[1, n-1]` (Ansor's quirk), fuse them and
/// vectorize.
#[derive(Clone, Debug, Default)]
pub struct InitVectorization;

impl InitRule for InitVectorization {
    fn name(&self) -> &str {
        "InitVectorization"
    }
    fn apply(&self, ctx: &InitContext, mut state: State, rng: &mut TesselRng) -> Option<State> {
        for stage in 0..state.stages().len() {
            let st = state.stage(stage);
            if !st.is_compute || st.compute_at == ComputeAt::Inline {
                continue;
            }
            let n = st.leaves.len();
            let tiled = util::is_tiled(&state, stage);
            let mut product = 1i64;
            let mut fusible = 0;
            while fusible < n {
                let pos = n - 1 - fusible;
                if util::attached_at_pos(&state, stage, pos) {
                    break;
                }
                let Some(it) = st.leaf(pos) else { break };
                if it.kind == IterKind::Reduce || it.annotation != Annotation::None {
                    break;
                }
                if tiled && fusible != 0 {
                    break;
                }
                product = product.saturating_mul(it.extent.unwrap_or(-1));
                if product > ctx.hw.max_vectorize_size {
                    break;
                }
                fusible += 1;
            }
            if fusible > 1 {
                fusible = 1 + rng.random_range(0..fusible - 1);
            }
            if fusible == 0 {
                continue;
            }
            if fusible > 1 {
                state
                    .apply(Step::Fuse {
                        stage,
                        iters: (n - fusible..n).collect(),
                    })
                    .ok()?;
            }
            state
                .apply(Step::Annotate {
                    stage,
                    iter: n - fusible,
                    annotation: Annotation::Vectorize,
                })
                .ok()?;
        }
        Some(state)
    }
}

/// An ordered, editable list of init rules.
pub struct InitRules {
    /// The rules, applied in order.
    pub rules: Vec<Box<dyn InitRule>>,
}

impl InitRules {
    /// Ansor's CPU init rules: InitFillTileSize, InitChangeComputeLocation, InitParallel,
    /// InitUnroll, InitVectorization; preceded by Tessel's InitTensorizeTileSize (a no-op on
    /// states that are not tensorized).
    pub fn cpu() -> InitRules {
        InitRules {
            rules: vec![
                Box::new(InitTensorizeTileSize),
                Box::new(InitFillTileSize),
                Box::new(InitChangeComputeLocation),
                Box::new(InitParallel),
                Box::new(InitUnroll),
                Box::new(InitVectorization),
            ],
        }
    }

    /// The rule names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.rules.iter().map(|r| r.name()).collect()
    }
}

impl Default for InitRules {
    fn default() -> Self {
        InitRules::cpu()
    }
}

/// One random complete state of `sketch` with Ansor's CPU init rules, or `None` if a rule
/// failed or the result has nested parallel loops (Ansor discards both).
///
/// ```
/// use std::sync::Arc;
/// use tessel_sketch::{generate_sketches, sample_initial, HardwareParams};
/// let w = tessel_workloads::lookup("gmm:b=1,n=32,m=32,k=32").unwrap();
/// let hw = HardwareParams::with_cores(4);
/// let sketches = generate_sketches(&Arc::new(w.dag), &hw).unwrap();
/// let mut rng = tessel_ir::rng::seeded(1);
/// let s = (0..10).find_map(|_| sample_initial(&sketches[0], &hw, &mut rng)).unwrap();
/// assert!(s.is_concrete());
/// assert_eq!(s.sketch_id(), Some(0));
/// ```
pub fn sample_initial(sketch: &Sketch, hw: &HardwareParams, rng: &mut TesselRng) -> Option<State> {
    sample_initial_with(sketch, &InitRules::cpu(), hw, rng)
}

/// [`sample_initial`] with a given rule list.
pub fn sample_initial_with(
    sketch: &Sketch,
    rules: &InitRules,
    hw: &HardwareParams,
    rng: &mut TesselRng,
) -> Option<State> {
    let ctx = InitContext { sketch, hw };
    let mut state = sketch.state.clone();
    for rule in &rules.rules {
        state = rule.apply(&ctx, state, rng)?;
    }
    if !state.is_concrete() || util::has_nested_parallel(&state) {
        return None;
    }
    state.set_sketch_id(Some(sketch.id));
    Some(state)
}

/// Up to `n` distinct (by printed loop structure, Ansor's dedup key) complete states, each
/// from a sketch drawn uniformly at random. Sampling stops early when 5 consecutive
/// batches of `n` attempts add nothing new.
pub fn sample_population(
    sketches: &[Sketch],
    n: usize,
    hw: &HardwareParams,
    rng: &mut TesselRng,
) -> Vec<State> {
    sample_population_with(sketches, n, &InitRules::cpu(), hw, rng)
}

/// [`sample_population`] with a given rule list.
pub fn sample_population_with(
    sketches: &[Sketch],
    n: usize,
    rules: &InitRules,
    hw: &HardwareParams,
    rng: &mut TesselRng,
) -> Vec<State> {
    let mut out = Vec::new();
    if sketches.is_empty() || n == 0 {
        return out;
    }
    let mut seen = HashSet::new();
    let mut fruitless = 0;
    while out.len() < n && fruitless < 5 {
        let before = out.len();
        for _ in 0..n {
            let sketch = &sketches[rng.random_range(0..sketches.len())];
            if let Some(s) = sample_initial_with(sketch, rules, hw, rng) {
                if seen.insert(s.to_string()) {
                    out.push(s);
                    if out.len() == n {
                        break;
                    }
                }
            }
        }
        fruitless = if out.len() == before {
            fruitless + 1
        } else {
            0
        };
    }
    out
}
