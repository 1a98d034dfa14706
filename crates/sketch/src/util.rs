//! Questions the rules ask about a state (TVM's `search_policy/utils.h`), over the IR's
//! public state API.

use std::sync::Arc;
use tessel_ir::analysis::AccessAnalysis;
use tessel_ir::dag::ComputeOp;
use tessel_ir::expr::Expr;
use tessel_ir::state::{Annotation, ComputeAt, IterKind, State, Step};
use tessel_ir::{ComputeDag, OpId};

/// The access analysis of a state's current DAG, computed once per distinct DAG.
///
/// Sketch generation walks many states that share one DAG (`Arc`) until a cache_write or
/// rfactor makes a new one; this cache keys analyses by DAG pointer.
#[derive(Default)]
pub(crate) struct AnalysisCache {
    entries: Vec<(Arc<ComputeDag>, Arc<AccessAnalysis>)>,
}

impl AnalysisCache {
    /// The analysis of `state.dag()`.
    pub(crate) fn get(&mut self, state: &State) -> Arc<AccessAnalysis> {
        let dag = state.dag();
        if let Some((_, a)) = self.entries.iter().find(|(d, _)| Arc::ptr_eq(d, dag)) {
            return a.clone();
        }
        let a = Arc::new(AccessAnalysis::new(dag));
        self.entries.push((dag.clone(), a.clone()));
        a
    }
}

/// Number of axes (spatial + reduction) of the stage's op; 0 for placeholders.
pub(crate) fn num_op_axes(state: &State, stage: usize) -> usize {
    state
        .dag()
        .op(OpId(stage as u32))
        .compute()
        .map_or(0, |c| c.axes.len() + c.reduce_axes.len())
}

/// TVM's `IsTiled`: the stage's loop count differs from its op's axis count.
pub(crate) fn is_tiled(state: &State, stage: usize) -> bool {
    state.stage(stage).leaves.len() != num_op_axes(state, stage)
}

/// TVM's `HasReduceIter`: some loop of the stage is a reduction loop.
pub(crate) fn has_reduce_iter(state: &State, stage: usize) -> bool {
    let st = state.stage(stage);
    st.leaves
        .iter()
        .any(|&l| st.iter(l).kind == IterKind::Reduce)
}

/// Whether a stage is inlined.
pub(crate) fn is_inlined(state: &State, stage: usize) -> bool {
    state.stage(stage).compute_at == ComputeAt::Inline
}

/// Consumers of `stage`, looking through inlined stages, sorted.
pub(crate) fn consumers(an: &AccessAnalysis, state: &State, stage: usize) -> Vec<usize> {
    an.consumers(OpId(stage as u32), |o| is_inlined(state, o.index()))
        .into_iter()
        .map(|o| o.index())
        .collect()
}

/// Stages computed at the loop at position `pos` of `stage`.
pub(crate) fn attached_at_pos(state: &State, stage: usize, pos: usize) -> bool {
    let st = state.stage(stage);
    match st.leaves.get(pos) {
        Some(&id) => state
            .stages()
            .iter()
            .any(|s| s.compute_at == ComputeAt::At { stage, iter: id }),
        None => false,
    }
}

/// Stage indices attached at the loop at position `pos` of `stage`.
pub(crate) fn attached_list(state: &State, stage: usize, pos: usize) -> Vec<usize> {
    let st = state.stage(stage);
    match st.leaves.get(pos) {
        Some(&id) => state.attached_at(stage, id),
        None => Vec::new(),
    }
}

/// Products of the extents of the spatial and of the reduction loops (unknown extents count
/// as `-1`, as in TVM).
pub(crate) fn space_and_reduce_len(state: &State, stage: usize) -> (i64, i64) {
    let st = state.stage(stage);
    let (mut space, mut reduce) = (1i64, 1i64);
    for &l in &st.leaves {
        let it = st.iter(l);
        let e = it.extent.unwrap_or(-1);
        match it.kind {
            IterKind::Spatial => space = space.saturating_mul(e),
            IterKind::Reduce => reduce = reduce.saturating_mul(e),
        }
    }
    (space, reduce)
}

/// The stage a step of the log names, renumbered into the state's current numbering
/// (TVM's `GetTargetStageIDInState`): every later cache_write / rfactor inserted at or
/// before it, and every later cache_read inserted before it, shifts it by one.
pub(crate) fn stage_in_state(steps: &[Step], step_index: usize, stage: usize) -> usize {
    let mut id = stage;
    for s in &steps[step_index + 1..] {
        match s {
            Step::CacheWrite { stage: k, .. } | Step::Rfactor { stage: k, .. } if *k <= id => {
                id += 1
            }
            Step::CacheRead { stage: k, .. } if *k < id => id += 1,
            _ => {}
        }
    }
    id
}

/// TVM's `HasCacheWriteStage`: some cache_write step made stage `stage` (walking the log
/// backwards and renumbering through stage-changing steps).
pub(crate) fn has_cache_write_stage(state: &State, stage: usize) -> bool {
    let mut id = stage;
    for s in state.steps().iter().rev() {
        if let Step::CacheWrite { stage: k, .. } = s {
            if *k == id {
                return true;
            }
        }
        if s.changes_stages() && id > s.stage() {
            id -= 1;
        }
    }
    false
}

/// TVM's `HasNestedParallel`: some root stage has two parallel loops on one path (its own
/// or those of stages computed inside it). Nested parallelism is invalid on CPUs.
pub(crate) fn has_nested_parallel(state: &State) -> bool {
    fn count(state: &State, stage: usize, n: &mut usize) {
        let st = state.stage(stage);
        if st.compute_at == ComputeAt::Inline {
            return;
        }
        for &id in &st.leaves {
            if st.iter(id).annotation == Annotation::Parallel {
                *n += 1;
            }
            for a in state.attached_at(stage, id) {
                count(state, a, n);
            }
        }
    }
    (0..state.stages().len()).any(|k| {
        let st = state.stage(k);
        if !st.is_compute || st.compute_at != ComputeAt::Root {
            return false;
        }
        let mut n = 0;
        count(state, k, &mut n);
        n >= 2
    })
}

/// Whether every tensor the op reads uses its last spatial axis (the columns): an
/// elementwise product such as a depthwise convolution's `input[.., c] * weight[.., c]`,
/// tensorized by the elementwise kernel family. False when an operand is broadcast across the
/// columns (matmul's `A[i, k]`, a convolution's input over its input channels).
pub(crate) fn is_elementwise_product(c: &ComputeOp) -> bool {
    let Some(col) = column_axis(c) else {
        return false;
    };
    let reads = c.body.reads();
    !reads.is_empty()
        && reads
            .iter()
            .all(|(_, indices)| indices.iter().any(|e| uses_axis(e, &col)))
}

/// The op's last spatial axis (its columns) as an expression, `None` when it has no axes.
fn column_axis(c: &ComputeOp) -> Option<Expr> {
    let col = c.axes.len().checked_sub(1)?;
    Some(Expr::Axis(col as u32))
}

/// Whether `e` reads `axis` anywhere.
fn uses_axis(e: &Expr, axis: &Expr) -> bool {
    let mut found = false;
    e.visit(&mut |x| found |= x == axis);
    found
}

/// Whether every tensor the op reads along its last spatial axis reads it as its own last
/// index and nowhere else, so that a tile of consecutive columns reads consecutive elements
/// (what the micro-kernels need of `B`). False for `dense`'s `weight[j, k]` or a grouped
/// convolution's input channel `co / g`.
pub(crate) fn columns_are_contiguous(c: &ComputeOp) -> bool {
    let Some(col) = column_axis(c) else {
        return false;
    };
    let uses = |e: &Expr| uses_axis(e, &col);
    c.body
        .reads()
        .iter()
        .all(|(_, indices)| match indices.split_last() {
            Some((last, rest)) => !rest.iter().any(uses) && (*last == col || !uses(last)),
            None => true,
        })
}

/// The coefficient of `axis` in `e` when `e` is affine in it (sums, differences and
/// products by constants of terms; other terms must not use `axis`), else `None`.
fn axis_coef(e: &Expr, axis: &Expr) -> Option<i64> {
    use tessel_ir::expr::BinOp;
    let uses = |x: &Expr| uses_axis(x, axis);
    match e {
        _ if e == axis => Some(1),
        Expr::Binary(BinOp::Add, a, b) => axis_coef(a, axis)?.checked_add(axis_coef(b, axis)?),
        Expr::Binary(BinOp::Sub, a, b) => axis_coef(a, axis)?.checked_sub(axis_coef(b, axis)?),
        Expr::Binary(BinOp::Mul, a, b) => match (a.as_ref(), b.as_ref()) {
            (x, Expr::Int(c)) | (Expr::Int(c), x) => axis_coef(x, axis)?.checked_mul(*c),
            _ if uses(e) => None,
            _ => Some(0),
        },
        _ if uses(e) => None,
        _ => Some(0),
    }
}

/// Whether the op's last two reduction axes (an NHWC convolution's `rw, rc`) can be fused
/// into one reduction loop `f` that every operand reads at one stride: each tensor read
/// that uses them reads `rc` with coefficient 1 in exactly one dimension `d`, whose size is
/// the extent of `rc`, and `rw` with coefficient 1 in dimension `d - 1` only, so that
/// `(.. + rw) * size_d + rc` is `.. + f` with `f = rw * size_d + rc`. False when `rw` has
/// extent 1 (nothing to gain), with dilation (`rw * d`) or groups (`rc` offset into a wider
/// channel dimension).
pub(crate) fn reduction_pair_is_contiguous(dag: &ComputeDag, c: &ComputeOp) -> bool {
    let (n_sp, n_red) = (c.axes.len(), c.reduce_axes.len());
    if n_red < 2 || c.reduce_axes[n_red - 2].extent <= 1 {
        return false;
    }
    let rw = Expr::Axis((n_sp + n_red - 2) as u32);
    let rc = Expr::Axis((n_sp + n_red - 1) as u32);
    let rc_extent = c.reduce_axes[n_red - 1].extent;
    let mut any = false;
    for (tensor, indices) in c.body.reads() {
        let coefs: Option<Vec<(i64, i64)>> = indices
            .iter()
            .map(|i| Some((axis_coef(i, &rw)?, axis_coef(i, &rc)?)))
            .collect();
        let Some(coefs) = coefs else {
            return false;
        };
        let rw_dims: Vec<usize> = (0..coefs.len()).filter(|&d| coefs[d].0 != 0).collect();
        let rc_dims: Vec<usize> = (0..coefs.len()).filter(|&d| coefs[d].1 != 0).collect();
        match (&rw_dims[..], &rc_dims[..]) {
            ([], []) => continue,
            (&[w], &[r]) => {
                let size = dag.op(tensor).shape.get(r).copied();
                if w + 1 != r || coefs[w].0 != 1 || coefs[r].1 != 1 || size != Some(rc_extent) {
                    return false;
                }
                any = true;
            }
            _ => return false,
        }
    }
    any
}

/// Replays `steps` on the state's workload DAG and keeps its sketch id.
pub(crate) fn replay_like(state: &State, steps: &[Step]) -> Option<State> {
    let mut s = State::replay(state.original_dag().clone(), steps).ok()?;
    s.set_sketch_id(state.sketch_id());
    Some(s)
}
