//! Static facts about a loop nest that code generation needs before it emits anything:
//! validation, which loop variables each expression uses, integer ranges (for bounds, with
//! [`tessel_ir::interval`]),
//! affine forms of indices (for strides and address arithmetic, with [`tessel_ir::affine`]), which vectorized loops can
//! become SIMD, which other innermost loops become SIMD anyway (auto-vectorization), which
//! parallel loops are outlined, and which local buffers live in registers.

use crate::CodegenError;
use std::collections::{HashMap, HashSet};
use tessel_ir::affine::{Affine, Term};
use tessel_ir::expr::{BinOp, ScalarType, UnOp};
use tessel_ir::interval::interval;
use tessel_ir::loop_nest::{BufferId, BufferScope, ExprId, LoopId, LoopKind, Node, Stmt, StmtId};
use tessel_ir::tensorize::{KernelKind, TensorizeMatch};
use tessel_ir::LoopNest;

/// Unrolled loops longer than this are emitted as ordinary loops (code size guard).
pub(crate) const MAX_UNROLL: i64 = 1024;
/// Vectorized loops up to this extent have their chunks (or lanes) fully unrolled, so that
/// their variable is a compile-time constant in each copy of the body.
pub(crate) const MAX_STATIC_VECTOR: i64 = 64;
/// Local buffers up to this many elements may be promoted to registers.
pub(crate) const MAX_PROMOTED: i64 = 256;

/// How a promoted local buffer is held in SSA variables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    /// One `f32` variable per element.
    Scalar,
    /// One `f32x4` variable per four elements (the buffer is accessed by SIMD lanes).
    Vector,
}

/// Everything code generation wants to know up front.
pub(crate) struct Analysis {
    /// Words per node in `var_bits`.
    words: usize,
    /// For each node, the set of loop variables it uses (bitset).
    var_bits: Vec<u64>,
    /// Nesting depth of each loop (outermost = 0).
    pub depth: Vec<u32>,
    /// Loops whose variable is a compile-time constant in every emitted copy of their body.
    static_loops: Vec<bool>,
    /// Vectorized loops whose body can be emitted as `f32x4` code.
    pub vector_ok: HashSet<LoopId>,
    /// Serial and unrolled innermost loops that are emitted as `f32x4` code although the
    /// schedule did not vectorize them (see [`Analysis::auto_vectorizable`]): copies,
    /// initialisations and element-wise loops such as a cache-write stage's write-back.
    pub auto_vector: HashSet<LoopId>,
    /// Parallel loops that are outlined into their own function and run on the pool.
    pub outlined: HashSet<LoopId>,
    /// Copy, fill and padding loops emitted as one call of the target's run routine, by the
    /// loop each replaces ([`crate::bulk`]).
    pub runs: HashMap<LoopId, crate::bulk::RunPlan>,
    /// Elementwise micro-kernel calls (by tensorized loop) that start from a zero tile, with
    /// the fill loop right before them that is therefore not emitted
    /// ([`crate::bulk::find_zero_inits`]).
    pub zero_init: HashMap<LoopId, LoopId>,
    /// Write-backs that run as one call of the target's epilogue routine
    /// ([`crate::epilogue`]), by the loop each replaces.
    pub epilogues: HashMap<LoopId, crate::epilogue::Plan>,
    /// Tensorized loops whose zero fill and write-back run inside fused kernel calls
    /// ([`crate::epilogue::find_kernel_fusions`]).
    pub kernel_epilogues: HashMap<LoopId, crate::epilogue::KernelPlan>,
    /// `Alloc` statements whose buffer lives in SSA variables, with the layout.
    pub promoted: HashMap<StmtId, Layout>,
    /// Tensorized loops that become one micro-kernel call (matched, kernel available on this
    /// CPU and allowed, every access provably in bounds); other tensorized loops are
    /// ordinary loops.
    pub tensorized: HashMap<LoopId, TensorizeMatch>,
    /// Layout rewrites ([`crate::LayoutRewrite`]): the `B` operands of micro-kernel calls
    /// that read a packed copy (`[cols/NR][rows][NR]` panels) instead of the input.
    pub packs: Vec<PackPlan>,
    /// For a tensorized loop whose `B` is packed: the index into `packs`.
    pub packed_b: HashMap<LoopId, usize>,
    /// Reduction loops folded into the micro-kernel call they enclose
    /// ([`TensorizeMatch::folded`]), with that call's tensorized loop: emitting the outer
    /// loop emits the one call.
    pub folded: HashMap<LoopId, LoopId>,
    /// The ISA level whose micro-kernels the tensorized loops call.
    pub isa: tessel_ir::target::Isa,
    /// Local copies that micro-kernel calls read through to their source on interior tiles
    /// ([`crate::through`]), by `Alloc` statement.
    pub through: HashMap<StmtId, crate::through::ThroughPlan>,
}

/// One packed copy of an input matrix, made by `Kernel::run` (once for a constant weight,
/// on every call otherwise) and read by the micro-kernel calls: the input, viewed as a
/// row-major `rows`×`cols` matrix, stored as `cols/nr` panels of `rows`×`nr` (element
/// `(r, c)` at `((c/nr)·rows + r)·nr + c%nr`). Only rows `row_lo..row_hi` of panels
/// `panel_lo..panel_hi` are copied: the calls read nothing else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PackPlan {
    /// The input buffer.
    pub src: BufferId,
    /// Rows of the matrix view (the input's length / `cols`).
    pub rows: i64,
    /// Columns of the matrix view (the `B` operand's stride along `k`).
    pub cols: i64,
    /// Panel width (the tile's `NR`).
    pub nr: i64,
    /// Packed on every call (the input is not a constant weight).
    pub per_call: bool,
    /// Rows the calls may read.
    pub row_lo: i64,
    /// One past the last row the calls may read.
    pub row_hi: i64,
    /// Panels the calls may read.
    pub panel_lo: i64,
    /// One past the last panel the calls may read.
    pub panel_hi: i64,
}

impl PackPlan {
    /// The packed layout of `m`'s `B` operand, when `mode` packs that input, `m` reads it
    /// as row-major rows of `cols` = its `k` stride, `cols` is a multiple of `NR`, and every
    /// call's base offset is provably a multiple of `NR` (so each call reads whole panels).
    fn of(nest: &LoopNest, m: &TensorizeMatch, mode: crate::LayoutRewrite) -> Option<PackPlan> {
        let (src, index) = m.b;
        let buf = nest.buffer(src);
        let (cols, nr, len) = (m.b_k_stride, m.nr, buf.len());
        if buf.scope != BufferScope::Input
            || !mode.packs(buf.constant)
            || cols <= 0
            || cols % nr != 0
            || len % cols != 0
        {
            return None;
        }
        let lin = Affine::of_or_atom(nest, index);
        let aligned = lin.konst % nr == 0
            && lin.terms.iter().all(|&(t, c)| match t {
                Term::Var(l) if l == m.j_loop => c == 1,
                Term::Var(l) if l == m.k_loop => c == cols,
                _ => c % nr == 0,
            });
        if !aligned {
            return None;
        }
        // Every element any call reads (the index ranges over the tile's `j` and `k` too).
        let read = interval(nest, index, &HashMap::new());
        if !read.within(len) {
            return None;
        }
        let (row_lo, row_hi) = (read.lo / cols, read.hi / cols + 1);
        let (col_lo, col_hi) = if row_hi - row_lo == 1 {
            (read.lo % cols, read.hi % cols)
        } else {
            (0, cols - 1)
        };
        Some(PackPlan {
            src,
            rows: len / cols,
            cols,
            nr,
            per_call: !buf.constant,
            row_lo,
            row_hi,
            panel_lo: col_lo / nr,
            panel_hi: col_hi / nr + 1,
        })
    }

    /// True when `self` and `o` pack the same input into the same layout.
    fn same_copy(&self, o: &PackPlan) -> bool {
        (self.src, self.rows, self.cols, self.nr) == (o.src, o.rows, o.cols, o.nr)
    }

    /// Widens the copied ranges to cover `o`'s too.
    fn cover(&mut self, o: &PackPlan) {
        self.row_lo = self.row_lo.min(o.row_lo);
        self.row_hi = self.row_hi.max(o.row_hi);
        self.panel_lo = self.panel_lo.min(o.panel_lo);
        self.panel_hi = self.panel_hi.max(o.panel_hi);
    }
}

impl Analysis {
    /// The outer reduction folded into tensorized loop `k`'s call, if any: an elementwise
    /// kernel's `k2` ([`TensorizeMatch::folded`]) or a fused broadcast kernel's
    /// ([`crate::epilogue::KernelPlan::outer`]).
    pub fn folded_outer(&self, k: LoopId) -> Option<&tessel_ir::tensorize::OuterReduction> {
        let m = self.tensorized.get(&k)?;
        m.outer
            .as_ref()
            .filter(|o| self.folded.get(&o.lp) == Some(&k))
    }

    /// Validates `nest` and computes the analysis (`threads` decides which parallel loops are
    /// outlined, `isa` whose micro-kernels tensorized loops may call,
    /// `auto_vectorize` whether plain innermost loops may become SIMD code, `read_through`
    /// whether micro-kernel calls may read a padding's source on interior tiles,
    /// `fuse_epilogues` whether write-backs may become epilogue routine calls).
    pub fn new(
        nest: &LoopNest,
        threads: usize,
        isa: tessel_ir::target::Isa,
        layout_rewrite: crate::LayoutRewrite,
        auto_vectorize: bool,
        read_through: bool,
        fuse_epilogues: bool,
    ) -> Result<Analysis, CodegenError> {
        validate(nest)?;
        let words = nest.loops.len().div_ceil(64).max(1);
        let mut var_bits = vec![0u64; nest.nodes().len() * words];
        for (k, node) in nest.nodes().iter().enumerate() {
            let set = |child: ExprId, bits: &mut Vec<u64>| {
                for w in 0..words {
                    bits[k * words + w] |= bits[child.index() * words + w];
                }
            };
            match *node {
                Node::Int(_) | Node::Float(_) => {}
                Node::Var(l) => var_bits[k * words + l.index() / 64] |= 1 << (l.index() % 64),
                Node::Load(_, a) | Node::Unary(_, a) => set(a, &mut var_bits),
                Node::Binary(_, a, b) => {
                    set(a, &mut var_bits);
                    set(b, &mut var_bits);
                }
                Node::Select(c, a, b) => {
                    set(c, &mut var_bits);
                    set(a, &mut var_bits);
                    set(b, &mut var_bits);
                }
            }
        }
        let static_loops = nest
            .loops
            .iter()
            .map(|l| match l.kind {
                LoopKind::Unrolled => l.extent <= MAX_UNROLL,
                LoopKind::Vectorized => l.extent <= MAX_STATIC_VECTOR,
                _ => false,
            })
            .collect();
        let mut an = Analysis {
            words,
            var_bits,
            depth: vec![0; nest.loops.len()],
            static_loops,
            vector_ok: HashSet::new(),
            auto_vector: HashSet::new(),
            outlined: HashSet::new(),
            runs: HashMap::new(),
            zero_init: HashMap::new(),
            epilogues: HashMap::new(),
            kernel_epilogues: HashMap::new(),
            promoted: HashMap::new(),
            tensorized: HashMap::new(),
            packs: Vec::new(),
            packed_b: HashMap::new(),
            folded: HashMap::new(),
            isa: tessel_ir::target::Isa::Generic,
            through: HashMap::new(),
        };
        an.walk(nest, &nest.body, 0, threads > 1);
        an.isa = isa;
        if isa.has_micro_kernels() {
            for (_, m) in tessel_ir::tensorize::find(nest) {
                let Ok(m) = m else { continue };
                let in_bounds = [m.a, m.b, m.c]
                    .iter()
                    .all(|&(b, i)| interval(nest, i, &HashMap::new()).within(nest.buffer(b).len()));
                if in_bounds && crate::ukernel::strip_kernels(isa, m.kind, m.mr, m.nr).is_some() {
                    // An elementwise kernel's `B` rows are already contiguous along the
                    // tile columns (a depthwise weight's channels): nothing to pack.
                    let plan = match m.kind {
                        KernelKind::Broadcast => PackPlan::of(nest, &m, layout_rewrite),
                        KernelKind::Elementwise => None,
                    };
                    if let Some(plan) = plan {
                        let k = match an.packs.iter().position(|p| p.same_copy(&plan)) {
                            Some(k) => {
                                an.packs[k].cover(&plan);
                                k
                            }
                            None => {
                                an.packs.push(plan);
                                an.packs.len() - 1
                            }
                        };
                        an.packed_b.insert(m.k_loop, k);
                    }
                    if let Some(o) = m.folded() {
                        an.folded.insert(o.lp, m.k_loop);
                    }
                    an.tensorized.insert(m.k_loop, m);
                }
            }
        }
        let allocs: Vec<StmtId> = (0..nest.stmts.len() as u32)
            .map(StmtId)
            .filter(|&s| matches!(nest.stmt(s), Stmt::Alloc { .. }))
            .collect();
        for s in allocs {
            if let Some(layout) = an.promotion(nest, s) {
                an.promoted.insert(s, layout);
            }
        }
        // After promotion, which it must not change: its layouts follow `vector_ok`.
        let promoted: HashSet<BufferId> = an
            .promoted
            .keys()
            .filter_map(|&s| match nest.stmt(s) {
                Stmt::Alloc { buf, .. } => Some(*buf),
                _ => None,
            })
            .collect();
        let mut all_runs = HashMap::new();
        if auto_vectorize && crate::bulk::routine(isa).is_some() {
            an.runs = crate::bulk::find_runs(nest, &an, &promoted);
            all_runs = an.runs.clone();
            an.zero_init = crate::bulk::find_zero_inits(nest, &an, isa);
            let fused: HashSet<LoopId> = an.zero_init.values().copied().collect();
            an.runs.retain(|lp, p| {
                fused.contains(lp) || crate::bulk::run_len(nest, p) >= crate::bulk::MIN_RUN
            });
        }
        if auto_vectorize && fuse_epilogues && crate::epilogue::routine(isa).is_some() {
            an.epilogues = crate::epilogue::find(nest, &an, &promoted, &an.runs);
            an.kernel_epilogues = crate::epilogue::find_kernel_fusions(nest, &an, &all_runs, isa);
            // A fused call folds the window loop around it in (`k2`).
            for (&k, p) in &an.kernel_epilogues {
                if let Some(o) = &p.outer {
                    an.folded.insert(o.lp, k);
                }
            }
        }
        if read_through && !an.tensorized.is_empty() {
            an.through = crate::through::find(nest, &an, &promoted);
        }
        if auto_vectorize {
            for s in &nest.stmts {
                let Stmt::For { lp, body, .. } = s else {
                    continue;
                };
                if matches!(nest.lp(*lp).kind, LoopKind::Serial | LoopKind::Unrolled)
                    && an.auto_vectorizable(nest, *lp, body, &promoted)
                {
                    an.auto_vector.insert(*lp);
                }
            }
        }
        Ok(an)
    }

    /// Can serial or unrolled loop `v` run as `f32x4` chunks (plus a scalar tail) with
    /// nothing but contiguous vector loads and stores? Its body must pass [`vectorizable`]
    /// (stores only, lanes independent, so the chunked order computes exactly what the loop
    /// does, rounding included), store with stride 1 in `v`, and evaluate every value
    /// lane-wise: loads of stride 0 (a splat) or 1, arithmetic, and selects whose condition
    /// does not depend on `v`. Anything that would fall back to per-lane code (gathers,
    /// scatters, `exp`) keeps the loop scalar, as do accesses to buffers promoted to
    /// registers (their layout was chosen from the loops the schedule vectorized).
    ///
    /// [`vectorizable`]: Analysis::vectorizable
    fn auto_vectorizable(
        &self,
        nest: &LoopNest,
        v: LoopId,
        body: &[StmtId],
        promoted: &HashSet<BufferId>,
    ) -> bool {
        if !self.vectorizable(nest, v, body) {
            return false;
        }
        let mut stack: Vec<StmtId> = body.to_vec();
        while let Some(s) = stack.pop() {
            match nest.stmt(s) {
                Stmt::Store { buf, index, value } => {
                    if promoted.contains(buf)
                        || nest.buffer(*buf).len() < 4
                        || self.stride(nest, *index, v) != Some(1)
                        || !self.lane_wise(nest, *value, v, promoted)
                    {
                        return false;
                    }
                }
                Stmt::If { body, .. } => stack.extend(body.iter().copied()),
                _ => return false,
            }
        }
        true
    }

    /// True when float expression `e` evaluates as `f32x4` lanes of loop `v` without per-lane
    /// code (see [`Analysis::auto_vectorizable`]).
    fn lane_wise(
        &self,
        nest: &LoopNest,
        e: ExprId,
        v: LoopId,
        promoted: &HashSet<BufferId>,
    ) -> bool {
        if !self.depends(e, v) {
            // A splat; a promoted buffer read this way is one scalar variable.
            return true;
        }
        match nest.get(e) {
            Node::Load(buf, index) => {
                !promoted.contains(&buf)
                    && nest.buffer(buf).len() >= 4
                    && matches!(self.stride(nest, index, v), Some(0 | 1))
            }
            Node::Unary(UnOp::Neg | UnOp::Sqrt, a) => self.lane_wise(nest, a, v, promoted),
            Node::Binary(
                BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Min | BinOp::Max,
                a,
                b,
            ) => self.lane_wise(nest, a, v, promoted) && self.lane_wise(nest, b, v, promoted),
            Node::Select(c, a, b) => {
                !self.depends(c, v)
                    && self.lane_wise(nest, a, v, promoted)
                    && self.lane_wise(nest, b, v, promoted)
            }
            _ => false,
        }
    }

    fn walk(&mut self, nest: &LoopNest, body: &[StmtId], depth: u32, may_outline: bool) {
        for &s in body {
            match nest.stmt(s) {
                Stmt::For { lp, body, .. } => {
                    self.depth[lp.index()] = depth;
                    let l = nest.lp(*lp);
                    let outline = may_outline && l.kind == LoopKind::Parallel;
                    if outline {
                        self.outlined.insert(*lp);
                    }
                    if l.kind == LoopKind::Vectorized && self.vectorizable(nest, *lp, body) {
                        self.vector_ok.insert(*lp);
                    }
                    self.walk(nest, body, depth + 1, may_outline && !outline);
                }
                Stmt::If { body, .. } | Stmt::Alloc { body, .. } => {
                    self.walk(nest, body, depth, may_outline)
                }
                Stmt::Store { .. } => {}
            }
        }
    }

    /// True when expression `e` uses loop variable `l`.
    pub fn depends(&self, e: ExprId, l: LoopId) -> bool {
        self.var_bits[e.index() * self.words + l.index() / 64] & (1 << (l.index() % 64)) != 0
    }

    /// The loop variables `e` uses.
    pub fn vars_of(&self, e: ExprId) -> impl Iterator<Item = LoopId> + '_ {
        let words = &self.var_bits[e.index() * self.words..(e.index() + 1) * self.words];
        words.iter().enumerate().flat_map(|(w, &bits)| {
            (0..64)
                .filter(move |b| bits & (1u64 << b) != 0)
                .map(move |b| LoopId((w * 64 + b) as u32))
        })
    }

    /// Deepest nesting depth among the loop variables `e` uses (0 if none).
    pub fn max_depth(&self, e: ExprId) -> u32 {
        self.vars_of(e)
            .map(|l| self.depth[l.index()])
            .max()
            .unwrap_or(0)
    }

    /// True when every variable of `e` is constant in each emitted copy of the code.
    fn is_static(&self, e: ExprId) -> bool {
        self.vars_of(e).all(|l| self.static_loops[l.index()])
    }

    /// The stride of index `e` in loop variable `v`: `Some(c)` when `e` is affine in `v` with
    /// coefficient `c` (0 when independent), `None` when it is not affine in `v`.
    pub fn stride(&self, nest: &LoopNest, e: ExprId, v: LoopId) -> Option<i64> {
        if !self.depends(e, v) {
            return Some(0);
        }
        Affine::of_or_atom(nest, e).stride_with(v, |a| self.depends(a, v))
    }

    /// Can the body of vectorized loop `v` run as SIMD lanes? Its statements must be stores
    /// (possibly under guards that do not depend on `v`), and the lanes must be independent:
    /// every buffer written is accessed through one single index that is affine in `v` with
    /// a non-zero stride.
    fn vectorizable(&self, nest: &LoopNest, v: LoopId, body: &[StmtId]) -> bool {
        if nest.lp(v).extent < 4 {
            return false;
        }
        let mut stores: HashMap<BufferId, ExprId> = HashMap::new();
        let mut roots = Vec::new();
        let mut stack: Vec<StmtId> = body.to_vec();
        while let Some(s) = stack.pop() {
            match nest.stmt(s) {
                Stmt::Store { buf, index, value } => {
                    if *stores.entry(*buf).or_insert(*index) != *index {
                        return false;
                    }
                    roots.push(*value);
                }
                Stmt::If { cond, body } => {
                    if self.depends(*cond, v) {
                        return false;
                    }
                    roots.push(*cond);
                    stack.extend(body.iter().copied());
                }
                _ => return false,
            }
        }
        for (_, &index) in stores.iter() {
            match self.stride(nest, index, v) {
                Some(c) if c != 0 => {}
                _ => return false,
            }
        }
        let mut ok = true;
        visit_loads(nest, &roots, |b, i| {
            if let Some(&si) = stores.get(&b) {
                ok &= si == i;
            }
        });
        ok
    }

    /// Decides whether the buffer of `Alloc` statement `s` can live in SSA variables.
    fn promotion(&self, nest: &LoopNest, s: StmtId) -> Option<Layout> {
        let Stmt::Alloc { buf, body } = nest.stmt(s) else {
            return None;
        };
        let b = nest.buffer(*buf);
        let len = b.len();
        if b.scope != BufferScope::Local || !(1..=MAX_PROMOTED).contains(&len) {
            return None;
        }
        // Micro-kernels read and write their operands in memory.
        if self
            .tensorized
            .values()
            .any(|m| [m.a.0, m.b.0, m.c.0].contains(buf))
        {
            return None;
        }
        let mut ok = true;
        let mut vector_hint = false;
        // (statement, innermost enclosing vectorized SIMD loop, crossed an outlined loop)
        let mut stack: Vec<(StmtId, Option<LoopId>, bool)> =
            body.iter().map(|&s| (s, None, false)).collect();
        while let Some((s, vec, crossed)) = stack.pop() {
            let check = |index: ExprId, ok: &mut bool, hint: &mut bool| {
                if crossed || !self.is_static(index) {
                    *ok = false;
                }
                if let Some(v) = vec {
                    if self.stride(nest, index, v) == Some(1) {
                        *hint = true;
                    }
                }
            };
            let mut exprs = Vec::new();
            match nest.stmt(s) {
                Stmt::For { lp, body, .. } => {
                    let v = if self.vector_ok.contains(lp) {
                        Some(*lp)
                    } else {
                        vec
                    };
                    let c = crossed || self.outlined.contains(lp);
                    stack.extend(body.iter().map(|&s| (s, v, c)));
                }
                Stmt::If { cond, body } => {
                    exprs.push(*cond);
                    stack.extend(body.iter().map(|&s| (s, vec, crossed)));
                }
                Stmt::Alloc { body, .. } => stack.extend(body.iter().map(|&s| (s, vec, crossed))),
                Stmt::Store {
                    buf: sb,
                    index,
                    value,
                } => {
                    if sb == buf {
                        check(*index, &mut ok, &mut vector_hint);
                    }
                    exprs.push(*value);
                }
            }
            visit_loads(nest, &exprs, |lb, li| {
                if lb == *buf {
                    check(li, &mut ok, &mut vector_hint);
                }
            });
            if !ok {
                return None;
            }
        }
        Some(if vector_hint && len % 4 == 0 {
            Layout::Vector
        } else {
            Layout::Scalar
        })
    }
}

/// Calls `f(buffer, index)` for every load reachable from `roots` (each node once).
pub(crate) fn visit_loads(nest: &LoopNest, roots: &[ExprId], mut f: impl FnMut(BufferId, ExprId)) {
    let mut seen = HashSet::new();
    let mut stack: Vec<ExprId> = roots.to_vec();
    while let Some(e) = stack.pop() {
        if !seen.insert(e) {
            continue;
        }
        match nest.get(e) {
            Node::Int(_) | Node::Float(_) | Node::Var(_) => {}
            Node::Load(b, i) => {
                f(b, i);
                stack.push(i);
            }
            Node::Unary(_, a) => stack.push(a),
            Node::Binary(_, a, b) => stack.extend([a, b]),
            Node::Select(c, a, b) => stack.extend([c, a, b]),
        }
    }
}

/// Checks that all ids are in range, statements form a tree, and types fit.
fn validate(nest: &LoopNest) -> Result<(), CodegenError> {
    let bad = |m: String| Err(CodegenError::InvalidNest(m));
    let n_nodes = nest.nodes().len();
    let expr_ok = |e: ExprId| e.index() < n_nodes;
    for (k, node) in nest.nodes().iter().enumerate() {
        let kids: Vec<ExprId> = match *node {
            Node::Int(_) | Node::Float(_) => vec![],
            Node::Var(l) => {
                if l.index() >= nest.loops.len() {
                    return bad(format!("expression {k} uses unknown loop {}", l.0));
                }
                vec![]
            }
            Node::Load(b, i) => {
                if b.index() >= nest.buffers.len() {
                    return bad(format!("expression {k} loads unknown buffer {}", b.0));
                }
                vec![i]
            }
            Node::Unary(_, a) => vec![a],
            Node::Binary(_, a, b) => vec![a, b],
            Node::Select(c, a, b) => vec![c, a, b],
        };
        if kids.iter().any(|c| c.index() >= k) {
            return bad(format!("expression {k} has a child that is not older"));
        }
    }
    // Types (children are already valid).
    for (k, node) in nest.nodes().iter().enumerate() {
        use ScalarType::*;
        let ty = |e: ExprId| nest.ty(e);
        let ok = match *node {
            Node::Load(_, i) => ty(i) == Int,
            Node::Unary(UnOp::Neg, a) => ty(a) != Bool,
            Node::Unary(UnOp::Not, a) => ty(a) == Bool,
            Node::Unary(UnOp::ToFloat, a) => ty(a) == Int,
            Node::Unary(_, a) => ty(a) == Float,
            Node::Binary(op, a, b) => {
                let (x, y) = (ty(a), ty(b));
                match op {
                    BinOp::And | BinOp::Or => x == Bool && y == Bool,
                    BinOp::Mod => x == Int && y == Int,
                    _ => x == y && x != Bool,
                }
            }
            Node::Select(c, a, b) => ty(c) == Bool && ty(a) == ty(b),
            _ => true,
        };
        if !ok {
            return bad(format!("expression {k} is ill-typed"));
        }
    }
    let mut seen = vec![false; nest.stmts.len()];
    let mut stack: Vec<StmtId> = nest.body.clone();
    let mut loop_seen = vec![false; nest.loops.len()];
    while let Some(s) = stack.pop() {
        if s.index() >= nest.stmts.len() {
            return bad(format!("unknown statement {}", s.0));
        }
        if std::mem::replace(&mut seen[s.index()], true) {
            return bad(format!("statement {} is reachable twice", s.0));
        }
        match nest.stmt(s) {
            Stmt::For { lp, body, .. } => {
                if lp.index() >= nest.loops.len() {
                    return bad(format!("statement {} uses unknown loop {}", s.0, lp.0));
                }
                if std::mem::replace(&mut loop_seen[lp.index()], true) {
                    return bad(format!("loop {} is used by two for statements", lp.0));
                }
                stack.extend(body.iter().copied());
            }
            Stmt::If { cond, body } => {
                if !expr_ok(*cond) || nest.ty(*cond) != ScalarType::Bool {
                    return bad(format!("statement {}: bad condition", s.0));
                }
                stack.extend(body.iter().copied());
            }
            Stmt::Alloc { buf, body } => {
                if buf.index() >= nest.buffers.len()
                    || nest.buffer(*buf).scope != BufferScope::Local
                {
                    return bad(format!("statement {}: alloc of a non-local buffer", s.0));
                }
                stack.extend(body.iter().copied());
            }
            Stmt::Store { buf, index, value } => {
                if buf.index() >= nest.buffers.len() || !expr_ok(*index) || !expr_ok(*value) {
                    return bad(format!("statement {}: unknown buffer or expression", s.0));
                }
                if nest.ty(*index) != ScalarType::Int || nest.ty(*value) != ScalarType::Float {
                    return bad(format!("statement {}: store types", s.0));
                }
                if nest.buffer(*buf).scope == BufferScope::Input {
                    return bad(format!("statement {}: store to an input buffer", s.0));
                }
            }
        }
    }
    for (k, &p) in nest.params.iter().enumerate() {
        if p.index() >= nest.buffers.len() {
            return bad(format!("param {k} is an unknown buffer"));
        }
        let scope = nest.buffer(p).scope;
        if scope != BufferScope::Input && scope != BufferScope::Output {
            return bad(format!("param {k} is neither an input nor an output"));
        }
    }
    for b in &nest.buffers {
        if b.shape.iter().any(|&d| d < 0)
            || b.shape
                .iter()
                .try_fold(1i64, |a, &d| a.checked_mul(d))
                .is_none()
        {
            return bad(format!("buffer `{}` has a bad shape", b.name));
        }
    }
    Ok(())
}
