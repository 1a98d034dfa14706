//! What each step does to a state (ANSOR.md §2.3). Every function checks legality first and
//! returns the reason as an error string; `State::apply` wraps it into a `StepError`.
//!
//! Invariant: a step function returns `Err` only before it has changed the state, so a
//! failed step leaves the state as it was without copying it first (tests check this on
//! random states).

use super::{Annotation, ComputeAt, Iter, IterId, IterKind, Relation, Stage, State, Step};
use crate::dag::{Axis, ComputeDag, ComputeOp, Op, OpKind};
use crate::expr::{Expr, OpId};
use std::sync::Arc;

type StepResult<T> = Result<T, String>;

/// The stage of a fresh schedule for op `id`: its axes as loops, computed at the root.
pub(crate) fn fresh_stage(dag: &ComputeDag, id: OpId) -> Stage {
    let op = dag.op(id);
    let mut iters = Vec::new();
    if let Some(c) = op.compute() {
        for a in &c.axes {
            iters.push(root_iter(a, IterKind::Spatial));
        }
        for a in &c.reduce_axes {
            iters.push(root_iter(a, IterKind::Reduce));
        }
    }
    Stage {
        op: id,
        name: op.name.clone(),
        leaves: (0..iters.len() as u32).map(IterId).collect(),
        iters,
        relations: Vec::new(),
        compute_at: ComputeAt::Root,
        auto_unroll_max_step: None,
        is_compute: op.compute().is_some(),
    }
}

fn root_iter(a: &Axis, kind: IterKind) -> Iter {
    Iter {
        name: a.name.clone(),
        extent: Some(a.extent),
        kind,
        annotation: Annotation::None,
    }
}

/// Extents of the iterators a split makes, outer first. Splits apply from the innermost
/// length outwards, and a length larger than what remains is cut to it (TVM's InferBound
/// does the same), so the outer extent is the number of inner tiles.
pub fn split_extents(extent: Option<i64>, lengths: &[Option<i64>]) -> Vec<Option<i64>> {
    let mut out = vec![None; lengths.len() + 1];
    let mut remaining = extent;
    for (k, len) in lengths.iter().enumerate().rev() {
        match (remaining, len) {
            (Some(r), Some(l)) => {
                out[k + 1] = Some((*l).min(r));
                remaining = Some((r + l - 1) / l);
            }
            (_, Some(l)) => {
                out[k + 1] = Some(*l);
                remaining = None;
            }
            _ => remaining = None,
        }
    }
    out[0] = remaining;
    out
}

/// Applies `step` to `s` (a scratch copy) and returns the step as it should be recorded.
pub(crate) fn apply_step(s: &mut State, step: &Step) -> StepResult<Step> {
    match step {
        Step::Split {
            stage,
            iter,
            lengths,
            ..
        } => {
            let extent = split(s, *stage, *iter, lengths)?;
            Ok(Step::Split {
                stage: *stage,
                iter: *iter,
                extent,
                lengths: lengths.clone(),
            })
        }
        Step::FollowSplit {
            stage,
            iter,
            src_step,
            n_split,
        } => {
            let src = split_lengths_of(s, *src_step)?;
            if *n_split == 0 || *n_split > src.len() {
                return Err(format!(
                    "n_split {n_split} must be between 1 and {} (the source split's lengths)",
                    src.len()
                ));
            }
            let mut lengths: Vec<Option<i64>> = src[..n_split - 1].to_vec();
            lengths.push(product(&src[n_split - 1..]));
            split(s, *stage, *iter, &lengths)?;
            Ok(step.clone())
        }
        Step::FollowFusedSplit {
            stage,
            iter,
            src_steps,
            level,
            factor_or_nparts,
        } => {
            if src_steps.is_empty() {
                return Err("no source split steps".into());
            }
            let mut picked = Vec::new();
            for &src in src_steps {
                let lengths = split_lengths_of(s, src)?;
                let l = lengths
                    .get(*level)
                    .ok_or_else(|| format!("source step #{src} has no length at level {level}"))?;
                picked.push(*l);
            }
            let factor = product(&picked);
            let length = if *factor_or_nparts {
                factor
            } else {
                let extent = leaf(s, *stage, *iter)?.1.extent;
                match (extent, factor) {
                    (Some(e), Some(parts)) => Some((e + parts - 1) / parts),
                    _ => None,
                }
            };
            split(s, *stage, *iter, &[length])?;
            Ok(step.clone())
        }
        Step::Fuse { stage, iters } => {
            fuse(s, *stage, iters)?;
            Ok(step.clone())
        }
        Step::Reorder { stage, order } => {
            let st = compute_stage_mut(s, *stage)?;
            let n = st.leaves.len();
            let mut seen = vec![false; n];
            if order.len() != n {
                return Err(format!(
                    "the order has {} entries but the stage has {n} loops",
                    order.len()
                ));
            }
            for &p in order {
                if p >= n || seen[p] {
                    return Err(format!("{order:?} is not a permutation of 0..{n}"));
                }
                seen[p] = true;
            }
            st.leaves = order.iter().map(|&p| st.leaves[p]).collect();
            Ok(step.clone())
        }
        Step::ComputeAt {
            stage,
            target_stage,
            target_iter,
        } => {
            compute_at(s, *stage, *target_stage, *target_iter)?;
            Ok(step.clone())
        }
        Step::ComputeInline { stage } => {
            compute_inline(s, *stage)?;
            Ok(step.clone())
        }
        Step::ComputeRoot { stage } => {
            compute_stage_mut(s, *stage)?.compute_at = ComputeAt::Root;
            Ok(step.clone())
        }
        Step::CacheWrite { stage, scope } => {
            cache_write(s, *stage, scope)?;
            Ok(step.clone())
        }
        Step::CacheRead {
            stage,
            scope,
            readers,
        } => {
            cache_read(s, *stage, scope, readers)?;
            Ok(step.clone())
        }
        Step::Rfactor {
            stage,
            iter,
            factor_iter,
        } => {
            rfactor(s, *stage, *iter, *factor_iter)?;
            Ok(step.clone())
        }
        Step::Annotate {
            stage,
            iter,
            annotation,
        } => {
            annotate(s, *stage, *iter, *annotation)?;
            Ok(step.clone())
        }
        Step::Pragma {
            stage,
            iter,
            auto_unroll_max_step,
        } => {
            leaf(s, *stage, *iter)?;
            compute_stage_mut(s, *stage)?.auto_unroll_max_step = Some(*auto_unroll_max_step);
            Ok(step.clone())
        }
    }
}

fn product(lengths: &[Option<i64>]) -> Option<i64> {
    lengths.iter().try_fold(1i64, |acc, l| l.map(|l| acc * l))
}

fn split_lengths_of(s: &State, src: usize) -> StepResult<Vec<Option<i64>>> {
    match s.steps.get(src) {
        Some(Step::Split { lengths, .. }) => Ok(lengths.clone()),
        Some(other) => Err(format!(
            "source step #{src} is a {}, not a split",
            other.name()
        )),
        None => Err(format!(
            "source step #{src} does not exist (the log has {} steps)",
            s.steps.len()
        )),
    }
}

fn compute_stage_mut(s: &mut State, stage: usize) -> StepResult<&mut Stage> {
    let n = s.stages.len();
    let st = s
        .stages
        .get_mut(stage)
        .ok_or_else(|| format!("stage {stage} does not exist (there are {n})"))?;
    if !st.is_compute {
        return Err(format!("stage {stage} ({}) is a placeholder", st.name));
    }
    Ok(st)
}

fn leaf(s: &State, stage: usize, pos: usize) -> StepResult<(IterId, &Iter)> {
    let st = s.stages.get(stage).ok_or_else(|| {
        format!(
            "stage {stage} does not exist (there are {})",
            s.stages.len()
        )
    })?;
    if !st.is_compute {
        return Err(format!("stage {stage} ({}) is a placeholder", st.name));
    }
    let id = *st.leaves.get(pos).ok_or_else(|| {
        format!(
            "stage {stage} ({}) has no iterator at position {pos} (it has {})",
            st.name,
            st.leaves.len()
        )
    })?;
    Ok((id, st.iter(id)))
}

fn is_output(s: &State, stage: usize) -> bool {
    s.dag.consumers(OpId(stage as u32)).is_empty()
}

fn move_attachments(s: &mut State, stage: usize, from: IterId, to: IterId) {
    for st in &mut s.stages {
        if st.compute_at == (ComputeAt::At { stage, iter: from }) {
            st.compute_at = ComputeAt::At { stage, iter: to };
        }
    }
}

fn split(
    s: &mut State,
    stage: usize,
    pos: usize,
    lengths: &[Option<i64>],
) -> StepResult<Option<i64>> {
    let (parent, it) = leaf(s, stage, pos)?;
    let it = it.clone();
    if lengths.is_empty() {
        return Err("a split needs at least one length".into());
    }
    if let Some(bad) = lengths.iter().flatten().find(|&&l| l < 1) {
        return Err(format!("split length {bad} is not positive"));
    }
    let extents = split_extents(it.extent, lengths);
    let st = compute_stage_mut(s, stage)?;
    let mut children = Vec::new();
    for (k, e) in extents.iter().enumerate() {
        st.iters.push(Iter {
            name: format!("{}.{k}", it.name),
            extent: *e,
            kind: it.kind,
            annotation: Annotation::None,
        });
        children.push(IterId(st.iters.len() as u32 - 1));
    }
    st.leaves.splice(pos..=pos, children.iter().copied());
    let innermost = *children
        .last()
        .expect("a split makes at least two iterators");
    st.relations.push(Relation::Split {
        parent,
        children,
        lengths: lengths.to_vec(),
    });
    move_attachments(s, stage, parent, innermost);
    Ok(it.extent)
}

fn fuse(s: &mut State, stage: usize, positions: &[usize]) -> StepResult<()> {
    if positions.is_empty() {
        return Err("nothing to fuse".into());
    }
    if positions.windows(2).any(|w| w[1] != w[0] + 1) {
        return Err(format!("iterators {positions:?} are not consecutive"));
    }
    let mut parents = Vec::new();
    for &p in positions {
        parents.push(leaf(s, stage, p)?.0);
    }
    let st = &s.stages[stage];
    let kind = st.iter(parents[0]).kind;
    if parents.iter().any(|&p| st.iter(p).kind != kind) {
        return Err("cannot fuse spatial and reduction iterators".into());
    }
    for &p in &parents[..parents.len() - 1] {
        if !s.attached_at(stage, p).is_empty() {
            return Err(format!(
                "iterator {} has stages computed at it and is not the last one fused",
                st.iter(p).name
            ));
        }
    }
    let name: String = parents
        .iter()
        .map(|&p| format!("{}@", st.iter(p).name))
        .collect();
    let extent = parents
        .iter()
        .try_fold(1i64, |acc, &p| st.iter(p).extent.map(|e| acc * e));
    let st = compute_stage_mut(s, stage)?;
    st.iters.push(Iter {
        name,
        extent,
        kind,
        annotation: Annotation::None,
    });
    let child = IterId(st.iters.len() as u32 - 1);
    let first = positions[0];
    st.leaves.splice(first..first + positions.len(), [child]);
    let last = *parents.last().expect("checked non-empty");
    st.relations.push(Relation::Fuse { parents, child });
    move_attachments(s, stage, last, child);
    Ok(())
}

/// Stages that read `stage`'s tensor, looking through inlined stages.
pub(crate) fn consumers_through_inline(s: &State, stage: usize) -> Vec<usize> {
    let mut out = Vec::new();
    for &c in s.dag.consumers(OpId(stage as u32)) {
        let c = c.index();
        if s.stages[c].compute_at == ComputeAt::Inline {
            for cc in consumers_through_inline(s, c) {
                if !out.contains(&cc) {
                    out.push(cc);
                }
            }
        } else if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

fn compute_at(s: &mut State, stage: usize, target: usize, pos: usize) -> StepResult<()> {
    compute_stage_mut(s, stage)?;
    if is_output(s, stage) {
        return Err(format!(
            "stage {stage} is an output and must stay at the root"
        ));
    }
    let (iter, _) = leaf(s, target, pos)?;
    let consumers = consumers_through_inline(s, stage);
    if consumers != [target] {
        return Err(format!(
            "stage {target} is not the only consumer of stage {stage} (consumers: {consumers:?})"
        ));
    }
    compute_stage_mut(s, stage)?.compute_at = ComputeAt::At {
        stage: target,
        iter,
    };
    Ok(())
}

fn has_attached(s: &State, stage: usize) -> bool {
    s.stages
        .iter()
        .any(|st| matches!(st.compute_at, ComputeAt::At { stage: t, .. } if t == stage))
}

fn compute_inline(s: &mut State, stage: usize) -> StepResult<()> {
    compute_stage_mut(s, stage)?;
    if is_output(s, stage) {
        return Err(format!("stage {stage} is an output and cannot be inlined"));
    }
    if s.dag
        .op(OpId(stage as u32))
        .compute()
        .is_some_and(|c| c.reducer.is_some())
    {
        return Err(format!(
            "stage {stage} has a reduction and cannot be inlined"
        ));
    }
    if has_attached(s, stage) {
        return Err(format!("stage {stage} has stages computed at it"));
    }
    compute_stage_mut(s, stage)?.compute_at = ComputeAt::Inline;
    Ok(())
}

fn annotate(s: &mut State, stage: usize, pos: usize, ann: Annotation) -> StepResult<()> {
    let (id, it) = leaf(s, stage, pos)?;
    let n_leaves = s.stages[stage].leaves.len();
    match ann {
        Annotation::Parallel if it.kind == IterKind::Reduce => {
            return Err(format!("cannot parallelize reduction iterator {}", it.name))
        }
        Annotation::Tensorize if it.kind != IterKind::Reduce => {
            return Err(format!(
                "only reduction iterators can be tensorized, and {} is not",
                it.name
            ))
        }
        Annotation::Vectorize => {
            if it.kind == IterKind::Reduce {
                return Err(format!("cannot vectorize reduction iterator {}", it.name));
            }
            if pos + 1 != n_leaves {
                return Err(format!(
                    "only the innermost loop can be vectorized, and {} is not",
                    it.name
                ));
            }
            if !s.attached_at(stage, id).is_empty() {
                return Err(format!("iterator {} has stages computed at it", it.name));
            }
        }
        _ => {}
    }
    compute_stage_mut(s, stage)?.iters[id.index()].annotation = ann;
    Ok(())
}

/// Rebuilds reads of tensors: every `Read` of tensor `t` gets tensor `f(t)`.
fn remap_reads(e: &Expr, f: &impl Fn(OpId) -> OpId) -> Expr {
    e.rewrite(&mut |n| match n {
        Expr::Read { tensor, indices } => Some(Expr::Read {
            tensor: f(*tensor),
            indices: indices.clone(),
        }),
        _ => None,
    })
}

/// Inserts `new_op` at index `at` of the DAG, renumbering later ops, then lets `edit` change
/// ops (by new index). Stages are renumbered alike: the new stage is fresh.
fn insert_stage(
    s: &mut State,
    at: usize,
    new_op: Op,
    edit: impl Fn(usize, &mut Op),
) -> StepResult<()> {
    if s.dag.find(&new_op.name).is_some() {
        return Err(format!("a tensor named {} exists already", new_op.name));
    }
    let shift = |t: OpId| {
        if t.index() >= at {
            OpId(t.0 + 1)
        } else {
            t
        }
    };
    let mut ops: Vec<Op> = Vec::with_capacity(s.dag.ops().len() + 1);
    for (k, op) in s.dag.ops().iter().enumerate() {
        if k == at {
            ops.push(new_op.clone());
        }
        let mut op = op.clone();
        if let OpKind::Compute(c) = &mut op.kind {
            c.body = remap_reads(&c.body, &shift);
        }
        ops.push(op);
    }
    if at == s.dag.ops().len() {
        ops.push(new_op);
    }
    for (k, op) in ops.iter_mut().enumerate() {
        edit(k, op);
    }
    let dag = ComputeDag::from_ops(ops).map_err(|e| e.to_string())?;
    for st in &mut s.stages {
        if let ComputeAt::At { stage, .. } = &mut st.compute_at {
            if *stage >= at {
                *stage += 1;
            }
        }
    }
    let fresh = fresh_stage(&dag, OpId(at as u32));
    s.stages.insert(at, fresh);
    for (k, st) in s.stages.iter_mut().enumerate() {
        st.op = OpId(k as u32);
    }
    s.dag = Arc::new(dag);
    Ok(())
}

fn require_untransformed(s: &State, stage: usize, what: &str) -> StepResult<()> {
    let st = &s.stages[stage];
    if !st.relations.is_empty() || st.leaves.iter().enumerate().any(|(k, l)| l.index() != k) {
        return Err(format!(
            "{what} must come before loop transforms of stage {stage} ({})",
            st.name
        ));
    }
    if has_attached(s, stage) {
        return Err(format!("stage {stage} has stages computed at it"));
    }
    Ok(())
}

fn cache_write(s: &mut State, stage: usize, scope: &str) -> StepResult<()> {
    compute_stage_mut(s, stage)?;
    if s.stages[stage].compute_at == ComputeAt::Inline {
        return Err(format!("stage {stage} is inlined"));
    }
    require_untransformed(s, stage, "cache_write")?;
    let op = s.dag.op(OpId(stage as u32)).clone();
    let c = op.compute().cloned().ok_or("not a compute op")?;
    let cache = Op {
        name: format!("{}.{scope}", op.name),
        ..op.clone()
    };
    let cache_id = OpId(stage as u32);
    let kept_at = s.stages[stage].compute_at;
    insert_stage(s, stage, cache, |k, o| {
        if k == stage + 1 {
            let axes: Vec<Expr> = (0..c.axes.len() as u32).map(Expr::axis).collect();
            o.kind = OpKind::Compute(ComputeOp {
                axes: c.axes.clone(),
                reduce_axes: Vec::new(),
                reducer: None,
                body: Expr::Read {
                    tensor: cache_id,
                    indices: axes,
                },
            });
        }
    })?;
    let mut copy = fresh_stage(&s.dag, OpId(stage as u32 + 1));
    copy.compute_at = kept_at;
    s.stages[stage + 1] = copy;
    Ok(())
}

fn cache_read(s: &mut State, stage: usize, scope: &str, readers: &[usize]) -> StepResult<()> {
    if stage >= s.stages.len() {
        return Err(format!("stage {stage} does not exist"));
    }
    if readers.is_empty() {
        return Err("cache_read needs at least one reader".into());
    }
    let consumers = s.dag.consumers(OpId(stage as u32)).to_vec();
    for r in readers {
        if !consumers.contains(&OpId(*r as u32)) {
            return Err(format!("stage {r} does not read stage {stage}"));
        }
    }
    let op = s.dag.op(OpId(stage as u32)).clone();
    let axes: Vec<Axis> = match op.compute() {
        Some(c) => c.axes.clone(),
        None => op
            .shape
            .iter()
            .enumerate()
            .map(|(d, &e)| Axis {
                name: format!("ax{d}"),
                extent: e,
            })
            .collect(),
    };
    let vars: Vec<Expr> = (0..axes.len() as u32).map(Expr::axis).collect();
    let copy = Op {
        name: format!("{}.{scope}", op.name),
        shape: op.shape.clone(),
        constant: false,
        kind: OpKind::Compute(ComputeOp {
            axes,
            reduce_axes: Vec::new(),
            reducer: None,
            body: Expr::Read {
                tensor: OpId(stage as u32),
                indices: vars,
            },
        }),
    };
    let new_readers: Vec<usize> = readers.iter().map(|r| r + 1).collect();
    let src = OpId(stage as u32);
    let dst = OpId(stage as u32 + 1);
    insert_stage(s, stage + 1, copy, |k, o| {
        if new_readers.contains(&k) {
            if let OpKind::Compute(c) = &mut o.kind {
                c.body = remap_reads(&c.body, &|t| if t == src { dst } else { t });
            }
        }
    })
}

/// The arithmetic that [`root_values`] needs, so that one walk over a stage's relations
/// serves tensor expressions, loop-nest expressions and lowering's region analysis.
pub(crate) trait IndexAlgebra {
    /// An index expression.
    type E: Clone;
    /// A constant.
    fn int(&mut self, v: i64) -> Self::E;
    /// `a + b`
    fn add(&mut self, a: Self::E, b: Self::E) -> Self::E;
    /// `a * c`
    fn mul_const(&mut self, a: Self::E, c: i64) -> Self::E;
    /// `a / c` (floor)
    fn div_const(&mut self, a: Self::E, c: i64) -> Self::E;
    /// `a % c` (floor)
    fn mod_const(&mut self, a: Self::E, c: i64) -> Self::E;
}

/// Tensor expressions as an [`IndexAlgebra`].
pub(crate) struct TeAlgebra;

impl IndexAlgebra for TeAlgebra {
    type E = Expr;
    fn int(&mut self, v: i64) -> Expr {
        Expr::Int(v)
    }
    fn add(&mut self, a: Expr, b: Expr) -> Expr {
        a + b
    }
    fn mul_const(&mut self, a: Expr, c: i64) -> Expr {
        a * c
    }
    fn div_const(&mut self, a: Expr, c: i64) -> Expr {
        a.floor_div(c)
    }
    fn mod_const(&mut self, a: Expr, c: i64) -> Expr {
        a.floor_mod(c)
    }
}

/// A guard that a split which does not divide needs: `value < extent`.
pub(crate) struct SplitGuard<E> {
    /// The split iterator's value.
    pub value: E,
    /// Its extent.
    pub extent: i64,
    /// Spatial or reduction.
    pub kind: IterKind,
}

/// Values of a stage's root iterators (its op's axes, spatial then reduction) in terms of
/// its leaves, walking the split/fuse relations backwards, plus the guards of splits whose
/// tiles overshoot. `extent` gives each iterator's extent (holes count as 1).
pub(crate) fn root_values<A: IndexAlgebra>(
    alg: &mut A,
    st: &Stage,
    extent: &dyn Fn(IterId) -> i64,
    leaf_value: &mut dyn FnMut(&mut A, IterId) -> A::E,
) -> (Vec<A::E>, Vec<SplitGuard<A::E>>) {
    let mut value: Vec<Option<A::E>> = vec![None; st.iters.len()];
    for &l in &st.leaves {
        value[l.index()] = Some(leaf_value(alg, l));
    }
    let mut guards = Vec::new();
    for rel in st.relations.iter().rev() {
        match rel {
            Relation::Split {
                parent, children, ..
            } => {
                let mut acc: Option<A::E> = None;
                let mut covered = 1i64;
                for &c in children {
                    let v = match value[c.index()].clone() {
                        Some(v) => v,
                        None => alg.int(0),
                    };
                    acc = Some(match acc {
                        None => v,
                        Some(a) => {
                            let scaled = alg.mul_const(a, extent(c));
                            alg.add(scaled, v)
                        }
                    });
                    covered *= extent(c);
                }
                let acc = match acc {
                    Some(a) => a,
                    None => alg.int(0),
                };
                if covered > extent(*parent) {
                    guards.push(SplitGuard {
                        value: acc.clone(),
                        extent: extent(*parent),
                        kind: st.iter(*parent).kind,
                    });
                }
                value[parent.index()] = Some(acc);
            }
            Relation::Fuse { parents, child } => {
                let v = match value[child.index()].clone() {
                    Some(v) => v,
                    None => alg.int(0),
                };
                let mut stride = 1i64;
                for (k, &p) in parents.iter().enumerate().rev() {
                    let mut e = alg.div_const(v.clone(), stride);
                    if k > 0 {
                        e = alg.mod_const(e, extent(p));
                    }
                    value[p.index()] = Some(e);
                    stride *= extent(p);
                }
            }
        }
    }
    let roots = st.num_root_iters();
    let out = value[..roots]
        .iter()
        .map(|v| match v.clone() {
            Some(v) => v,
            None => alg.int(0),
        })
        .collect();
    (out, guards)
}

fn rfactor(s: &mut State, stage: usize, pos: usize, factor_iter: usize) -> StepResult<()> {
    let (factor, it) = leaf(s, stage, pos)?;
    let it = it.clone();
    if it.kind != IterKind::Reduce {
        return Err(format!("iterator {} is not a reduction iterator", it.name));
    }
    let op = s.dag.op(OpId(stage as u32)).clone();
    let c = op.compute().cloned().ok_or("not a compute op")?;
    let reducer = c.reducer.ok_or("the stage has no reduction")?;
    let st = s.stages[stage].clone();
    if st.compute_at == ComputeAt::Inline {
        return Err(format!("stage {stage} is inlined"));
    }
    let n_sp = c.axes.len();
    if factor_iter > n_sp {
        return Err(format!(
            "factor_iter {factor_iter} is past the {n_sp} spatial axes"
        ));
    }
    let spatial_touched = st.relations.iter().any(|r| match r {
        Relation::Split { parent, .. } => st.iter(*parent).kind == IterKind::Spatial,
        Relation::Fuse { parents, .. } => st.iter(parents[0]).kind == IterKind::Spatial,
    });
    if spatial_touched || has_attached(s, stage) {
        return Err(format!(
            "rfactor must come before loop transforms of the spatial iterators of stage {stage}"
        ));
    }
    let rest: Vec<IterId> = st
        .leaves
        .iter()
        .copied()
        .filter(|&l| l != factor && st.iter(l).kind == IterKind::Reduce)
        .collect();
    // Axis numbering of the new `X.rf` op: spatial axes with the factor inserted, then `rest`.
    let rf_axis_of_spatial = |i: usize| if i < factor_iter { i } else { i + 1 } as u32;
    let leaf_value = |l: IterId| {
        if l == factor {
            Expr::axis(factor_iter as u32)
        } else {
            let k = rest.iter().position(|&r| r == l).unwrap_or(0);
            Expr::axis((n_sp + 1 + k) as u32)
        }
    };
    let ext = |id: IterId| st.iter(id).extent.unwrap_or(1);
    let (roots, guards) = root_values(&mut TeAlgebra, &st, &ext, &mut |_, l| leaf_value(l));
    let guards: Vec<Expr> = guards
        .into_iter()
        .map(|g| g.value.lt(Expr::Int(g.extent)))
        .collect();
    let mut subst: Vec<Expr> = (0..n_sp)
        .map(|i| Expr::axis(rf_axis_of_spatial(i)))
        .collect();
    subst.extend(roots[n_sp..].iter().cloned());
    let mut body = c.body.substitute_axes(&subst);
    if let Some(g) = guards.into_iter().reduce(|a, b| a.and(b)) {
        body = Expr::select(g, body, Expr::Float(reducer.init()));
    }
    let factor_axis = Axis {
        name: it.name.clone(),
        extent: it.extent.unwrap_or(1),
    };
    let mut rf_axes = c.axes.clone();
    rf_axes.insert(factor_iter, factor_axis.clone());
    let rf_reduce: Vec<Axis> = rest
        .iter()
        .map(|&r| Axis {
            name: st.iter(r).name.clone(),
            extent: st.iter(r).extent.unwrap_or(1),
        })
        .collect();
    let rf = Op {
        name: format!("{}.rf", op.name),
        constant: false,
        shape: rf_axes.iter().map(|a| a.extent).collect(),
        kind: OpKind::Compute(ComputeOp {
            axes: rf_axes,
            reducer: if rf_reduce.is_empty() {
                None
            } else {
                Some(reducer)
            },
            reduce_axes: rf_reduce,
            body,
        }),
    };
    let rf_id = OpId(stage as u32);
    let kept_at = st.compute_at;
    insert_stage(s, stage, rf, |k, o| {
        if k == stage + 1 {
            let mut idx: Vec<Expr> = (0..n_sp as u32).map(Expr::axis).collect();
            idx.insert(factor_iter, Expr::axis(n_sp as u32));
            o.kind = OpKind::Compute(ComputeOp {
                axes: c.axes.clone(),
                reduce_axes: vec![factor_axis.clone()],
                reducer: Some(reducer),
                body: Expr::Read {
                    tensor: rf_id,
                    indices: idx,
                },
            });
        }
    })?;
    let mut orig = fresh_stage(&s.dag, OpId(stage as u32 + 1));
    orig.compute_at = kept_at;
    s.stages[stage + 1] = orig;
    // Holes stay holes in the new stages' iterators.
    if it.extent.is_none() {
        s.stages[stage].iters[factor_iter].extent = None;
        s.stages[stage + 1].iters[n_sp].extent = None;
    }
    for (k, &r) in rest.iter().enumerate() {
        if st.iter(r).extent.is_none() {
            s.stages[stage].iters[n_sp + 1 + k].extent = None;
        }
    }
    Ok(())
}
