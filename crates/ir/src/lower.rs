//! Lowering: a concrete [`State`] becomes a [`LoopNest`].
//!
//! Lowering runs in two phases, as TVM does:
//!
//! 1. **Bound inference**, consumers first. A root stage covers its whole tensor. A stage
//!    computed at loop `v` of a consumer covers only the region the consumer reads while the
//!    loops down to `v` stand still: every read index is put in the form
//!    `point + Σ coeff·inner_var` (point = an expression of the fixed outer loops), and the
//!    region of each dimension is the hull of those forms; reads that are not affine in the
//!    inner loops fall back to the whole dimension. Each stage's loop extents then follow
//!    from its region through its splits (a split length larger than what remains is cut to
//!    it) and fuses.
//! 2. **Emission**, producers inside consumers: loops of extent 1 are dropped; stages
//!    computed at a loop are emitted at the start of its body (with an `alloc` of their
//!    region-sized local buffer); a reduction's init nest goes just before its first
//!    reduction loop; splits that do not divide get guards; inlined stages are substituted
//!    into their readers; `auto_unroll_max_step` marks small inner loop nests unrolled.
//!
//! Index arithmetic is simplified with [`crate::simplify`]: the e-graph on each stage's axis
//! values (where splits and fuses meet), then a cheap bounds pass over the whole nest.

use crate::dag::{OpKind, Reducer};
use crate::expr::{BinOp, Expr, OpId, UnOp};
use crate::loop_nest::{
    Buffer, BufferId, BufferScope, ExprId, Loop, LoopId, LoopKind, LoopNest, Node, Stmt, StmtId,
};
use crate::state::apply::{consumers_through_inline, root_values, IndexAlgebra};
use crate::state::{Annotation, ComputeAt, IterId, IterKind, Relation, Stage, State};
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a state could not be lowered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LowerError {
    /// Some split length is still a hole.
    #[error("the state is a sketch: stage {0} still has undecided split lengths")]
    NotConcrete(String),
    /// A stage's placement or structure cannot be lowered.
    #[error("cannot lower stage {stage}: {reason}")]
    Stage {
        /// The stage's name.
        stage: String,
        /// Why.
        reason: String,
    },
}

/// What bound inference found for one stage.
#[derive(Clone, Debug, Default)]
struct StageInfo {
    /// The buffer holding the stage's tensor (none for inlined stages).
    buf: Option<BufferId>,
    /// Per dimension: the first index held by the buffer (0 unless computed at a loop).
    region_min: Vec<ExprId>,
    /// Per dimension: how many indices the buffer holds.
    region_ext: Vec<i64>,
    /// Per iterator id: its inferred extent.
    extent: Vec<i64>,
    /// Per leaf position: the loop, or `None` when its extent is 1 (dropped).
    loops: Vec<Option<LoopId>>,
    /// Guards that the region needs (`min + local < shape`), per dimension.
    region_guard: Vec<bool>,
}

/// How many times [`lower`] has run in this process (every call, failed ones included).
static LOWERINGS: AtomicU64 = AtomicU64::new(0);

/// How many times [`lower`] has run in this process so far: a counter for tests and
/// benchmarks that check how often a search lowers its candidates (one relaxed atomic
/// increment per call).
pub fn lowerings() -> u64 {
    LOWERINGS.load(Ordering::Relaxed)
}

/// Lowers a concrete state to a loop nest.
pub fn lower(state: &State) -> Result<LoopNest, LowerError> {
    LOWERINGS.fetch_add(1, Ordering::Relaxed);
    if let Some(st) = state.stages().iter().find(|s| s.has_holes()) {
        return Err(LowerError::NotConcrete(st.name.clone()));
    }
    if !state.is_concrete() {
        let st = state
            .stages()
            .iter()
            .find(|s| s.iters.iter().any(|i| i.extent.is_none()))
            .map_or(String::new(), |s| s.name.clone());
        return Err(LowerError::NotConcrete(st));
    }
    let dag = state.dag();
    let name = dag
        .outputs()
        .iter()
        .map(|&o| dag.op(o).name.clone())
        .collect::<Vec<_>>()
        .join("_");
    let mut lw = Lowerer {
        state,
        nest: LoopNest::new(&name),
        info: vec![StageInfo::default(); state.stages().len()],
        simplified: Default::default(),
    };
    lw.declare_params();
    for k in (0..state.stages().len()).rev() {
        lw.infer_stage(k)?;
    }
    let mut body = Vec::new();
    for (k, st) in state.stages().iter().enumerate() {
        if st.is_compute && st.compute_at == ComputeAt::Root {
            body.extend(lw.emit_stage(k)?);
        }
    }
    lw.nest.body = body;
    let mut nest = lw.nest;
    crate::simplify::simplify_nest_light(&mut nest);
    Ok(nest)
}

/// The extent of every iterator of every stage after bound inference (stage index →
/// iterator id → extent), or `None` when the state is not concrete or cannot be lowered.
/// Inside a `compute_at` the outer tile loops of the attached stage shrink to the region
/// its consumer reads, as Ansor prints them after InferBound.
pub fn inferred_extents(state: &State) -> Option<Vec<Vec<i64>>> {
    if !state.is_concrete() {
        return None;
    }
    let mut lw = Lowerer {
        state,
        nest: LoopNest::new("infer"),
        info: vec![StageInfo::default(); state.stages().len()],
        simplified: Default::default(),
    };
    lw.declare_params();
    for k in (0..state.stages().len()).rev() {
        lw.infer_stage(k).ok()?;
    }
    Some(lw.info.into_iter().map(|i| i.extent).collect())
}

struct Lowerer<'a> {
    state: &'a State,
    nest: LoopNest,
    info: Vec<StageInfo>,
    /// Axis values already simplified with the e-graph.
    simplified: std::collections::HashMap<ExprId, ExprId>,
}

fn err(st: &Stage, reason: impl Into<String>) -> LowerError {
    LowerError::Stage {
        stage: st.name.clone(),
        reason: reason.into(),
    }
}

impl Lowerer<'_> {
    fn declare_params(&mut self) {
        let dag = self.state.dag();
        for (ids, scope) in [
            (dag.inputs(), BufferScope::Input),
            (dag.outputs(), BufferScope::Output),
        ] {
            for id in ids {
                let op = dag.op(id);
                let buf = self.nest.add_buffer(Buffer {
                    name: op.name.clone(),
                    shape: op.shape.clone(),
                    scope,
                    constant: scope == BufferScope::Input && op.constant,
                });
                self.nest.params.push(buf);
                let zero = self.nest.int(0);
                let info = &mut self.info[id.index()];
                info.buf = Some(buf);
                info.region_min = vec![zero; op.shape.len()];
                info.region_ext = op.shape.clone();
                info.region_guard = vec![false; op.shape.len()];
            }
        }
    }

    /// Bound inference for stage `k` (all its consumers are done).
    fn infer_stage(&mut self, k: usize) -> Result<(), LowerError> {
        let st = &self.state.stages()[k];
        if !st.is_compute || st.compute_at == ComputeAt::Inline {
            return Ok(());
        }
        let op = self.state.dag().op(OpId(k as u32));
        let c = op.compute().ok_or_else(|| err(st, "not a compute op"))?;
        match st.compute_at {
            ComputeAt::At {
                stage: target,
                iter,
            } => {
                let consumers = consumers_through_inline(self.state, k);
                if consumers != [target] {
                    return Err(err(
                        st,
                        format!("computed at stage {target}, but its consumers are {consumers:?}"),
                    ));
                }
                let (mins, exts, guards) = self.region(k, target, iter)?;
                let buf = self.nest.add_buffer(Buffer {
                    name: st.name.clone(),
                    shape: exts.clone(),
                    scope: BufferScope::Local,
                    constant: false,
                });
                let info = &mut self.info[k];
                info.buf = Some(buf);
                info.region_min = mins;
                info.region_ext = exts;
                info.region_guard = guards;
            }
            ComputeAt::Root if self.info[k].buf.is_none() => {
                let buf = self.nest.add_buffer(Buffer {
                    name: st.name.clone(),
                    shape: op.shape.clone(),
                    scope: BufferScope::Global,
                    constant: false,
                });
                let zero = self.nest.int(0);
                let info = &mut self.info[k];
                info.buf = Some(buf);
                info.region_min = vec![zero; op.shape.len()];
                info.region_ext = op.shape.clone();
                info.region_guard = vec![false; op.shape.len()];
            }
            _ => {}
        }
        // Extents: root iterators from the region, the rest through the relations.
        let mut extent = vec![1i64; st.iters.len()];
        for (d, e) in self.info[k].region_ext.iter().enumerate() {
            extent[d] = *e;
        }
        for (r, a) in c.reduce_axes.iter().enumerate() {
            extent[c.axes.len() + r] = a.extent;
        }
        for rel in &st.relations {
            match rel {
                Relation::Split {
                    parent,
                    children,
                    lengths,
                } => {
                    let ext =
                        crate::state::apply::split_extents(Some(extent[parent.index()]), lengths);
                    for (child, e) in children.iter().zip(ext) {
                        extent[child.index()] = e.unwrap_or(1);
                    }
                }
                Relation::Fuse { parents, child } => {
                    extent[child.index()] = parents.iter().map(|p| extent[p.index()]).product();
                }
            }
        }
        let n_leaves = st.leaves.len();
        let mut loops = Vec::with_capacity(n_leaves);
        for (pos, &id) in st.leaves.iter().enumerate() {
            let it = st.iter(id);
            let e = extent[id.index()];
            if e <= 1 {
                loops.push(None);
                continue;
            }
            let innermost = st.leaves[pos + 1..].iter().all(|&l| extent[l.index()] <= 1);
            let attached = !self.state.attached_at(k, id).is_empty();
            let kind = match it.annotation {
                Annotation::None => LoopKind::Serial,
                Annotation::Parallel => LoopKind::Parallel,
                Annotation::Unroll => LoopKind::Unrolled,
                Annotation::Tensorize => LoopKind::Tensorized,
                // Vectorizing applies to the innermost loop only; elsewhere it is ignored.
                Annotation::Vectorize if innermost && !attached => LoopKind::Vectorized,
                Annotation::Vectorize => LoopKind::Serial,
            };
            loops.push(Some(self.nest.add_loop(Loop {
                name: it.name.clone(),
                extent: e,
                kind,
            })));
        }
        let info = &mut self.info[k];
        info.extent = extent;
        info.loops = loops;
        Ok(())
    }

    /// The region of stage `k` that stage `target` reads inside one iteration of its loop
    /// `iter`: per dimension its first index (an expression of the outer loops), its size,
    /// and whether a guard `min + local < shape` is needed.
    #[allow(clippy::type_complexity)]
    fn region(
        &mut self,
        k: usize,
        target: usize,
        iter: IterId,
    ) -> Result<(Vec<ExprId>, Vec<i64>, Vec<bool>), LowerError> {
        let st = &self.state.stages()[k];
        let tst = &self.state.stages()[target];
        let shape = self.state.dag().op(OpId(k as u32)).shape.clone();
        let pos = tst.position(iter).ok_or_else(|| {
            err(
                st,
                format!(
                    "the loop it is computed at no longer exists in {}",
                    tst.name
                ),
            )
        })?;
        let tinfo = self.info[target].clone();
        if tinfo.loops.is_empty() && !tst.leaves.is_empty() {
            return Err(err(st, format!("its consumer {} is not lowered", tst.name)));
        }
        // Linear forms of the target's root iterators.
        let mut alg = LinAlgebra {
            nest: &mut self.nest,
        };
        let ext = |id: IterId| tinfo.extent[id.index()];
        let mut leaf_value = |alg: &mut LinAlgebra, id: IterId| {
            let p = tst.position(id).unwrap_or(0);
            match tinfo.loops[p] {
                None => alg.int(0),
                Some(lp) if p <= pos => {
                    let v = alg.nest.var(lp);
                    Lin::point(v, alg.nest)
                }
                Some(lp) => Lin {
                    point: alg.nest.int(0),
                    offset: 0,
                    terms: vec![(lp, 1, ext(id))],
                    exact: true,
                },
            }
        };
        let (mut roots, _) = root_values(&mut alg, tst, &ext, &mut leaf_value);
        for (d, min) in tinfo.region_min.iter().enumerate() {
            let m = Lin::point(*min, alg.nest);
            roots[d] = alg.add(m, roots[d].clone());
        }
        // Every read of stage k by the target, looking through inlined stages.
        let tbody = match &self.state.dag().op(OpId(target as u32)).kind {
            OpKind::Compute(c) => expand_inlined(self.state, &c.body),
            OpKind::Placeholder => return Err(err(st, "computed at a placeholder")),
        };
        let mut per_dim: Vec<Vec<Lin>> = vec![Vec::new(); shape.len()];
        for (t, indices) in tbody.reads() {
            if t.index() != k {
                continue;
            }
            for (d, idx) in indices.iter().enumerate() {
                let lin = lin_of(&mut alg, idx, &roots);
                per_dim[d].push(lin);
            }
        }
        let mut mins = Vec::new();
        let mut exts = Vec::new();
        let mut guards = Vec::new();
        for (d, lins) in per_dim.iter().enumerate() {
            let same_point = lins.windows(2).all(|w| w[0].point == w[1].point);
            let exact = !lins.is_empty() && same_point && lins.iter().all(|l| l.exact);
            let hull = exact.then(|| {
                let lo = lins
                    .iter()
                    .map(|l| l.offset + l.spread().0)
                    .min()
                    .unwrap_or(0);
                let hi = lins
                    .iter()
                    .map(|l| l.offset + l.spread().1)
                    .max()
                    .unwrap_or(0);
                (lo, hi)
            });
            match hull {
                Some((lo, hi)) if hi - lo + 1 < shape[d] => {
                    let lo_e = alg.nest.int(lo);
                    mins.push(alg.nest.add(lins[0].point, lo_e));
                    exts.push(hi - lo + 1);
                    guards.push(true);
                }
                _ => {
                    mins.push(alg.nest.int(0));
                    exts.push(shape[d]);
                    guards.push(false);
                }
            }
        }
        let mins = mins.into_iter().map(|m| self.simplify_once(m)).collect();
        Ok((mins, exts, guards))
    }

    /// Simplifies an index with the e-graph, once per expression.
    fn simplify_once(&mut self, e: ExprId) -> ExprId {
        if let Some(&r) = self.simplified.get(&e) {
            return r;
        }
        let r = crate::simplify::simplify(&mut self.nest, e);
        self.simplified.insert(e, r);
        r
    }

    /// Values of a stage's root iterators for the given leaf values: spatial ones as
    /// absolute tensor indices (region min added) and as local offsets, reduction ones as is.
    fn root_exprs(
        &mut self,
        k: usize,
        leaf_value: &dyn Fn(&mut LoopNest, usize) -> ExprId,
    ) -> (Vec<ExprId>, Vec<ExprId>, Vec<ExprId>, Vec<ExprId>) {
        let st = &self.state.stages()[k];
        let info = self.info[k].clone();
        let ext = |id: IterId| info.extent[id.index()];
        let mut alg = NestAlgebra {
            nest: &mut self.nest,
        };
        let mut lv = |alg: &mut NestAlgebra, id: IterId| {
            let p = st.position(id).unwrap_or(0);
            leaf_value(alg.nest, p)
        };
        let (mut local, split_guards) = root_values(&mut alg, st, &ext, &mut lv);
        // Splits and fuses meet here (e.g. a fused loop split again): simplify each axis
        // value once with the e-graph; whole indices then need only the cheap pass.
        for v in local.iter_mut() {
            *v = self.simplify_once(*v);
        }
        let nest = &mut self.nest;
        let n_sp = info.region_ext.len();
        let mut absolute = local.clone();
        let mut spatial_guards = Vec::new();
        let mut reduce_guards = Vec::new();
        for d in 0..n_sp {
            absolute[d] = nest.add(info.region_min[d], local[d]);
            if info.region_guard[d] {
                // The region may stick out of the tensor at its borders: compute only what
                // exists (the consumer never reads the rest).
                let shape = self.state.dag().op(OpId(k as u32)).shape[d];
                let zero = nest.int(0);
                let lim = nest.int(shape);
                spatial_guards.push(nest.binary(BinOp::Le, zero, absolute[d]));
                spatial_guards.push(nest.binary(BinOp::Lt, absolute[d], lim));
            }
        }
        for g in split_guards {
            let lim = nest.int(g.extent);
            let cond = nest.binary(BinOp::Lt, g.value, lim);
            match g.kind {
                IterKind::Spatial => spatial_guards.push(cond),
                IterKind::Reduce => reduce_guards.push(cond),
            }
        }
        (
            absolute,
            local[..n_sp].to_vec(),
            spatial_guards,
            reduce_guards,
        )
    }

    /// Flat index into stage `k`'s buffer of the absolute tensor indices `idx`.
    fn flat_index(&mut self, k: usize, idx: &[ExprId]) -> ExprId {
        let info = &self.info[k];
        let mins = info.region_min.clone();
        let exts = info.region_ext.clone();
        let nest = &mut self.nest;
        let mut flat = nest.int(0);
        for d in 0..idx.len() {
            let local = nest.binary(BinOp::Sub, idx[d], mins[d]);
            let ext = nest.int(exts[d]);
            let scaled = nest.mul(flat, ext);
            flat = nest.add(scaled, local);
        }
        flat
    }

    /// Translates a tensor expression of stage `k`'s op with the given axis values.
    fn translate(&mut self, e: &Expr, axes: &[ExprId]) -> Result<ExprId, LowerError> {
        Ok(match e {
            Expr::Int(v) => self.nest.int(*v),
            Expr::Float(v) => self.nest.float(*v),
            Expr::Axis(n) => axes[*n as usize],
            Expr::Read { tensor, indices } => {
                let mut idx = Vec::with_capacity(indices.len());
                for i in indices {
                    idx.push(self.translate(i, axes)?);
                }
                let st = &self.state.stages()[tensor.index()];
                if st.compute_at == ComputeAt::Inline {
                    let body = match &self.state.dag().op(*tensor).kind {
                        OpKind::Compute(c) => c.body.clone(),
                        OpKind::Placeholder => return Err(err(st, "inlined placeholder")),
                    };
                    return self.translate(&body, &idx);
                }
                let buf = self.info[tensor.index()]
                    .buf
                    .ok_or_else(|| err(st, "read before it has a buffer"))?;
                let flat = self.flat_index(tensor.index(), &idx);
                self.nest.node(Node::Load(buf, flat))
            }
            Expr::Unary(op, a) => {
                let a = self.translate(a, axes)?;
                self.nest.node(Node::Unary(*op, a))
            }
            Expr::Binary(op, a, b) => {
                let a = self.translate(a, axes)?;
                let b = self.translate(b, axes)?;
                self.nest.binary(*op, a, b)
            }
            Expr::Select(c, a, b) => {
                let c = self.translate(c, axes)?;
                let a = self.translate(a, axes)?;
                let b = self.translate(b, axes)?;
                self.nest.node(Node::Select(c, a, b))
            }
        })
    }

    fn guarded(&mut self, guards: &[ExprId], stmt: StmtId) -> StmtId {
        match guards
            .iter()
            .copied()
            .reduce(|a, b| self.nest.binary(BinOp::And, a, b))
        {
            None => stmt,
            Some(cond) => self.nest.add_stmt(Stmt::If {
                cond,
                body: vec![stmt],
            }),
        }
    }

    /// Emits stage `k`'s loop nest (with the stages computed inside it).
    fn emit_stage(&mut self, k: usize) -> Result<Vec<StmtId>, LowerError> {
        let st = &self.state.stages()[k];
        let c = match &self.state.dag().op(OpId(k as u32)).kind {
            OpKind::Compute(c) => c.clone(),
            OpKind::Placeholder => return Ok(Vec::new()),
        };
        let info = self.info[k].clone();
        let buf = info.buf.ok_or_else(|| err(st, "no buffer"))?;
        let loops = info.loops.clone();
        let main_value = |nest: &mut LoopNest, p: usize| match loops[p] {
            Some(lp) => nest.var(lp),
            None => nest.int(0),
        };
        let (axes, local, sp_guards, red_guards) = self.root_exprs(k, &main_value);
        let body = self.translate(&c.body, &axes)?;
        let index = self.flat_local(k, &local);
        let value = match c.reducer {
            None => body,
            Some(r) => {
                let acc = self.nest.node(Node::Load(buf, index));
                let op = match r {
                    Reducer::Sum => BinOp::Add,
                    Reducer::Max => BinOp::Max,
                };
                self.nest.binary(op, acc, body)
            }
        };
        let store = self.nest.add_stmt(Stmt::Store { buf, index, value });
        let all_guards: Vec<ExprId> = sp_guards.iter().chain(&red_guards).copied().collect();
        let innermost = self.guarded(&all_guards, store);
        let first_reduce = c.reducer.and_then(|_| {
            st.leaves
                .iter()
                .position(|&l| st.iter(l).kind == IterKind::Reduce)
        });
        let mut stmts = self.emit_loops(k, 0, first_reduce, innermost)?;
        if let Some(max_step) = st.auto_unroll_max_step {
            apply_auto_unroll(&mut self.nest, &stmts, max_step);
            if let Some(&first) = stmts.first() {
                if let Stmt::For {
                    auto_unroll_max_step,
                    ..
                } = &mut self.nest.stmts[first.index()]
                {
                    *auto_unroll_max_step = Some(max_step);
                }
            }
        }
        stmts.shrink_to_fit();
        Ok(stmts)
    }

    fn flat_local(&mut self, k: usize, local: &[ExprId]) -> ExprId {
        let exts = self.info[k].region_ext.clone();
        let nest = &mut self.nest;
        let mut flat = nest.int(0);
        for (d, &l) in local.iter().enumerate() {
            let ext = nest.int(exts[d]);
            let scaled = nest.mul(flat, ext);
            flat = nest.add(scaled, l);
        }
        flat
    }

    /// The init nest of a reduction: loops over the spatial leaves from `from` inwards.
    fn emit_init(&mut self, k: usize, from: usize) -> Result<Vec<StmtId>, LowerError> {
        let st = &self.state.stages()[k];
        let info = self.info[k].clone();
        let init = match self.state.dag().op(OpId(k as u32)).compute() {
            Some(c) => c.reducer.map_or(0.0, |r| r.init()),
            None => 0.0,
        };
        let mut init_loops: Vec<Option<LoopId>> = info.loops.clone();
        for (p, slot) in init_loops.iter_mut().enumerate().skip(from) {
            let it = st.iter(st.leaves[p]);
            *slot = match (info.loops[p], it.kind) {
                (Some(lp), IterKind::Spatial) => {
                    let l = self.nest.lp(lp).clone();
                    Some(self.nest.add_loop(Loop {
                        name: format!("{}.init", l.name),
                        ..l
                    }))
                }
                _ => None,
            };
        }
        let il = init_loops.clone();
        let value_of = move |nest: &mut LoopNest, p: usize| match il[p] {
            Some(lp) => nest.var(lp),
            None => nest.int(0),
        };
        let (_, local, sp_guards, _) = self.root_exprs(k, &value_of);
        let buf = info.buf.ok_or_else(|| err(st, "no buffer"))?;
        let index = self.flat_local(k, &local);
        let value = self.nest.float(init);
        let store = self.nest.add_stmt(Stmt::Store { buf, index, value });
        let mut body = vec![self.guarded(&sp_guards, store)];
        for p in (from..st.leaves.len()).rev() {
            if let (Some(lp), IterKind::Spatial) = (init_loops[p], st.iter(st.leaves[p]).kind) {
                body = vec![self.nest.add_stmt(Stmt::For {
                    lp,
                    body,
                    auto_unroll_max_step: None,
                })];
            }
        }
        Ok(body)
    }

    fn emit_loops(
        &mut self,
        k: usize,
        pos: usize,
        first_reduce: Option<usize>,
        innermost: StmtId,
    ) -> Result<Vec<StmtId>, LowerError> {
        let st = &self.state.stages()[k];
        if pos == st.leaves.len() {
            return Ok(vec![innermost]);
        }
        let mut out = Vec::new();
        if first_reduce == Some(pos) {
            out.extend(self.emit_init(k, pos)?);
        }
        let id = st.leaves[pos];
        let attached = self.state.attached_at(k, id);
        let mut body = Vec::new();
        for &a in &attached {
            body.extend(self.emit_stage(a)?);
        }
        body.extend(self.emit_loops(k, pos + 1, first_reduce, innermost)?);
        for &a in attached.iter().rev() {
            if let Some(buf) = self.info[a].buf {
                if self.nest.buffer(buf).scope == BufferScope::Local {
                    body = vec![self.nest.add_stmt(Stmt::Alloc { buf, body })];
                }
            }
        }
        match self.info[k].loops[pos] {
            None => out.extend(body),
            Some(lp) => out.push(self.nest.add_stmt(Stmt::For {
                lp,
                body,
                auto_unroll_max_step: None,
            })),
        }
        Ok(out)
    }
}

/// Substitutes inlined stages into `e` (at the tensor-expression level).
fn expand_inlined(state: &State, e: &Expr) -> Expr {
    e.rewrite(&mut |n| match n {
        Expr::Read { tensor, indices }
            if state.stages()[tensor.index()].compute_at == ComputeAt::Inline =>
        {
            let body = state
                .dag()
                .op(*tensor)
                .compute()?
                .body
                .substitute_axes(indices);
            Some(expand_inlined(state, &body))
        }
        _ => None,
    })
}

/// Marks serial loops unrolled when the number of statement instances below them (TVM's
/// step count) is at most `max_step`; inner loops first.
fn apply_auto_unroll(nest: &mut LoopNest, stmts: &[StmtId], max_step: u32) -> i64 {
    let mut total = 0i64;
    for &s in stmts {
        total = total.saturating_add(match nest.stmt(s).clone() {
            Stmt::Store { .. } => 1,
            Stmt::If { body, .. } | Stmt::Alloc { body, .. } => {
                apply_auto_unroll(nest, &body, max_step)
            }
            Stmt::For { lp, body, .. } => {
                let inner = apply_auto_unroll(nest, &body, max_step);
                let l = &mut nest.loops[lp.index()];
                let steps = inner.saturating_mul(l.extent);
                if l.kind == LoopKind::Serial && steps <= max_step as i64 {
                    l.kind = LoopKind::Unrolled;
                }
                steps
            }
        });
    }
    total
}

/// Loop-nest expressions as an index algebra.
struct NestAlgebra<'a> {
    nest: &'a mut LoopNest,
}

impl IndexAlgebra for NestAlgebra<'_> {
    type E = ExprId;
    fn int(&mut self, v: i64) -> ExprId {
        self.nest.int(v)
    }
    fn add(&mut self, a: ExprId, b: ExprId) -> ExprId {
        self.nest.add(a, b)
    }
    fn mul_const(&mut self, a: ExprId, c: i64) -> ExprId {
        let c = self.nest.int(c);
        self.nest.mul(a, c)
    }
    fn div_const(&mut self, a: ExprId, c: i64) -> ExprId {
        let c = self.nest.int(c);
        self.nest.binary(BinOp::Div, a, c)
    }
    fn mod_const(&mut self, a: ExprId, c: i64) -> ExprId {
        let c = self.nest.int(c);
        self.nest.binary(BinOp::Mod, a, c)
    }
}

/// An index as `point + offset + Σ coeff·var`, where `point` depends only on loops that stand
/// still and the vars are inner loops `(loop, coeff, extent)`. `exact` is false when the
/// index is not of this form.
#[derive(Clone, Debug)]
struct Lin {
    point: ExprId,
    offset: i64,
    terms: Vec<(LoopId, i64, i64)>,
    exact: bool,
}

impl Lin {
    fn point(e: ExprId, nest: &mut LoopNest) -> Lin {
        match nest.get(e) {
            Node::Int(v) => Lin {
                point: nest.int(0),
                offset: v,
                terms: Vec::new(),
                exact: true,
            },
            _ => Lin {
                point: e,
                offset: 0,
                terms: Vec::new(),
                exact: true,
            },
        }
    }

    fn inexact(nest: &mut LoopNest) -> Lin {
        Lin {
            point: nest.int(0),
            offset: 0,
            terms: Vec::new(),
            exact: false,
        }
    }

    /// Lowest and highest value of `Σ coeff·var` over the inner loops.
    fn spread(&self) -> (i64, i64) {
        self.terms.iter().fold((0, 0), |(lo, hi), &(_, c, e)| {
            let span = c * (e - 1);
            (lo + span.min(0), hi + span.max(0))
        })
    }

    /// The whole index as one expression (only when it has no inner terms).
    fn as_point(&self, nest: &mut LoopNest) -> Option<ExprId> {
        if !self.exact || !self.terms.is_empty() {
            return None;
        }
        let off = nest.int(self.offset);
        Some(nest.add(self.point, off))
    }
}

struct LinAlgebra<'a> {
    nest: &'a mut LoopNest,
}

impl LinAlgebra<'_> {
    fn combine(&mut self, a: Lin, b: Lin, sign: i64) -> Lin {
        let op = if sign > 0 { BinOp::Add } else { BinOp::Sub };
        let point = self.nest.binary(op, a.point, b.point);
        let mut terms = a.terms;
        for (lp, c, e) in b.terms {
            match terms.iter_mut().find(|t| t.0 == lp) {
                Some(t) => t.1 += sign * c,
                None => terms.push((lp, sign * c, e)),
            }
        }
        terms.retain(|t| t.1 != 0);
        Lin {
            point,
            offset: a.offset + sign * b.offset,
            terms,
            exact: a.exact && b.exact,
        }
    }

    fn opaque(&mut self, op: BinOp, a: Lin, b: Lin) -> Lin {
        match (a.as_point(self.nest), b.as_point(self.nest)) {
            (Some(x), Some(y)) => {
                let e = self.nest.binary(op, x, y);
                Lin::point(e, self.nest)
            }
            _ => Lin::inexact(self.nest),
        }
    }

    fn constant(&self, l: &Lin) -> Option<i64> {
        (l.exact && l.terms.is_empty() && self.nest.get(l.point) == Node::Int(0))
            .then_some(l.offset)
    }
}

impl IndexAlgebra for LinAlgebra<'_> {
    type E = Lin;
    fn int(&mut self, v: i64) -> Lin {
        let e = self.nest.int(v);
        Lin::point(e, self.nest)
    }
    fn add(&mut self, a: Lin, b: Lin) -> Lin {
        self.combine(a, b, 1)
    }
    fn mul_const(&mut self, a: Lin, c: i64) -> Lin {
        let cc = self.nest.int(c);
        Lin {
            point: self.nest.mul(a.point, cc),
            offset: a.offset * c,
            terms: a.terms.iter().map(|&(l, k, e)| (l, k * c, e)).collect(),
            exact: a.exact,
        }
    }
    fn div_const(&mut self, a: Lin, c: i64) -> Lin {
        let b = self.int(c);
        if c == 1 {
            return a;
        }
        self.opaque(BinOp::Div, a, b)
    }
    fn mod_const(&mut self, a: Lin, c: i64) -> Lin {
        let b = self.int(c);
        self.opaque(BinOp::Mod, a, b)
    }
}

/// The linear form of a tensor index expression over the target's root iterators.
fn lin_of(alg: &mut LinAlgebra, e: &Expr, roots: &[Lin]) -> Lin {
    match e {
        Expr::Int(v) => alg.int(*v),
        Expr::Axis(n) => roots
            .get(*n as usize)
            .cloned()
            .unwrap_or_else(|| Lin::inexact(alg.nest)),
        Expr::Binary(BinOp::Add, a, b) => {
            let (a, b) = (lin_of(alg, a, roots), lin_of(alg, b, roots));
            alg.combine(a, b, 1)
        }
        Expr::Binary(BinOp::Sub, a, b) => {
            let (a, b) = (lin_of(alg, a, roots), lin_of(alg, b, roots));
            alg.combine(a, b, -1)
        }
        Expr::Binary(BinOp::Mul, a, b) => {
            let (a, b) = (lin_of(alg, a, roots), lin_of(alg, b, roots));
            match (alg.constant(&a), alg.constant(&b)) {
                (_, Some(c)) => alg.mul_const(a, c),
                (Some(c), _) => alg.mul_const(b, c),
                _ => alg.opaque(BinOp::Mul, a, b),
            }
        }
        Expr::Binary(op @ (BinOp::Div | BinOp::Mod | BinOp::Min | BinOp::Max), a, b) => {
            let (a, b) = (lin_of(alg, a, roots), lin_of(alg, b, roots));
            alg.opaque(*op, a, b)
        }
        Expr::Unary(UnOp::Neg, a) => {
            let a = lin_of(alg, a, roots);
            alg.mul_const(a, -1)
        }
        _ => Lin::inexact(alg.nest),
    }
}
