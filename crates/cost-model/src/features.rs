//! Ansor's per-store features (ANSOR.md §6.1): 164 floats for every buffer a program writes,
//! plus 9 of Tessel's own that describe micro-kernel calls.
//!
//! [`FeatureExtractor::extract`] walks a [`LoopNest`] once, keeping the stack of enclosing
//! loops, the product of their extents and the current `auto_unroll_max_step`. Every
//! [`Stmt::Store`] produces a raw vector; stores into the same buffer share one entry (the
//! operation counts add up, every other field is overwritten by the later store, so the GEMM
//! update overwrites its init, as in Ansor). At the end every numeric feature goes through
//! `slog(x) = sign(x)·log2(1 + |x|)`; one-hots stay 0/1 and the arithmetic-intensity curve
//! (already a ratio of logarithms) stays as it is.
//!
//! The layout is [`FEATURE_LEN`] = 173 floats, named by [`feature_names`]:
//!
//! | range | group |
//! | --- | --- |
//! | 0..16 | operation counts × outer-loop product: float {mad, add/sub, mul, div/mod, cmp, math func, other func}, int {same 7}, bool ops, selects |
//! | 16..49 | vectorize / unroll / parallel loops (11 each): number, product of extents, innermost extent, position one-hot (8 kinds) |
//! | 49..57 | GPU fields (`is_gpu`, blockIdx x/y/z, threadIdx x/y/z, vthread): always 0 on a CPU |
//! | 57..147 | 5 buffer-access groups × 18 (see [`BUFFER_FEATURES`]) |
//! | 147..157 | arithmetic-intensity curve (10 samples) |
//! | 157..161 | allocation: size, prod, outer prod, inner prod |
//! | 161..164 | outer scope: product of outer extents, number of loops, `auto_unroll_max_step` |
//! | 164..173 | micro-kernel call (Tessel's; see [`TENSORIZE_FEATURES`]) |
//!
//! The last group exists because a store under a `Tensorize`d loop whose nest matches a
//! micro-kernel ([`tessel_ir::tensorize::check`]) runs an AVX2 kernel about 3× faster than the
//! plain code the other 164 features describe, and they cannot tell the two apart. Whether the
//! kernel really runs, and whether `B` is read packed, depends on the code generator's options
//! ([`CodegenFlags`], which the records carry in their key).
//!
//! Simplifications with respect to Ansor (TVM v0.16):
//! * Indices are flat (lowering flattens them), so access patterns are analysed on one affine
//!   form per access ([`tessel_ir::affine`], seen through its atoms): `e / c` scales the coefficients by `1/c` and `e % c` keeps them (exact
//!   while the dividend stays below `c`, an estimate otherwise). The region touched by the
//!   loops inside a level is `min(span, product of the moving loops' extents, buffer length)`
//!   where `span = 1 + Σ |coef|·(extent − 1)`; several accesses to one buffer take the largest.
//! * `float_mad`/`int_mad` count `a + b·c` (what Tessel's codegen contracts into an FMA);
//!   the add and the mul of such a pattern are not counted again.
//! * The loop position one-hot is "none" or "mixed", as in TVM v0.16.
//! * A serial-multiple-read-write reuse has a distance of 1 iteration and of the bytes that
//!   one innermost iteration of the statement accesses.
//! * `bytes` is `outer_prod × 4` (ANSOR.md) times the number of accesses of the buffer in the
//!   statement (a read-modify-write counts twice).

use std::fmt;
use tessel_ir::affine::{Affine, Term};
use tessel_ir::expr::{BinOp, UnOp};
use tessel_ir::loop_nest::{
    BufferId, BufferScope, ExprId, LoopId, LoopKind, LoopNest, Node, Stmt, StmtId,
};

/// Number of floats of one store's feature vector (Ansor's `DEFAULT_FEATURE_VEC_LEN` = 164,
/// plus the [`TENSORIZE_FEATURES`]).
pub const FEATURE_LEN: usize = TENSORIZE_OFFSET + TENSORIZE_FEATURES.len();
/// Number of buffer-access groups per store (Ansor's `DEFAULT_MAX_N_BUFS`).
pub const MAX_BUFFERS: usize = 5;
/// Floats per buffer-access group.
pub const BUFFER_FEATURE_LEN: usize = 18;
/// Cache line size assumed by the line counts.
pub const CACHE_LINE_BYTES: f64 = 64.0;
/// Bytes of one element (every Tessel buffer holds `f32`).
const ELEM_BYTES: f64 = 4.0;

/// First index of the buffer-access groups.
pub const BUFFER_OFFSET: usize = 57;
/// First index of the arithmetic-intensity curve.
pub const CURVE_OFFSET: usize = BUFFER_OFFSET + MAX_BUFFERS * BUFFER_FEATURE_LEN;
/// Number of samples of the arithmetic-intensity curve.
pub const CURVE_LEN: usize = 10;
/// First index of the allocation group.
pub const ALLOC_OFFSET: usize = CURVE_OFFSET + CURVE_LEN;
/// First index of the outer-scope group.
pub const OUTER_OFFSET: usize = ALLOC_OFFSET + 4;
/// First index of the micro-kernel group (Ansor's vector ends here).
pub const TENSORIZE_OFFSET: usize = OUTER_OFFSET + 3;

/// Names of the micro-kernel features of a store under a `Tensorize`d loop (all 0 elsewhere):
/// * `tensorize.kernel`: 1 when the nest matches a kernel and micro-kernels are on, so the
///   store runs inside an AVX2 kernel call;
/// * `tensorize.plain`: 1 when it does not match (or kernels are off): ordinary code;
/// * `tensorize.mr`, `tensorize.nr`, `tensorize.k`: the matched register tile and reduction
///   length (`slog`);
/// * `tensorize.calls`: kernel calls, the product of the extents of the loops around the
///   tensorized loop, less the folded one (`slog`);
/// * `tensorize.packed_b`: 1 when the kernel reads `B` packed (layout rewrite on);
/// * `tensorize.elementwise`: 1 for the elementwise family (`A` read per column, as in a
///   depthwise convolution), 0 for the broadcast one;
/// * `tensorize.k2`: the extent of the reduction loop folded into each call (1 without;
///   `slog`): a folded call keeps its `C` tile in registers over `k2 × k` steps.
pub const TENSORIZE_FEATURES: [&str; 9] = [
    "tensorize.kernel",
    "tensorize.plain",
    "tensorize.mr",
    "tensorize.nr",
    "tensorize.k",
    "tensorize.calls",
    "tensorize.packed_b",
    "tensorize.elementwise",
    "tensorize.k2",
];

/// What a tensorized loop runs as: `None` ordinary code, or the matched kernel.
#[derive(Clone, Copy, Debug)]
struct KernelCall {
    mr: i64,
    nr: i64,
    k: i64,
    elementwise: bool,
    /// Extent of the folded outer reduction loop (1: none).
    k2: i64,
}

/// The code generator's options that change what a loop nest runs as (records carry them in
/// their key as `codegen`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CodegenFlags {
    /// Tensorized loops that match a kernel call the AVX2 micro-kernels.
    pub micro_kernels: bool,
    /// Micro-kernels read `B` from a packed copy (Ansor's layout rewrite).
    pub layout_rewrite: bool,
}

impl Default for CodegenFlags {
    /// The measurement harness's default: both on.
    fn default() -> Self {
        CodegenFlags {
            micro_kernels: true,
            layout_rewrite: true,
        }
    }
}

/// Names of the operation counts (indices 0..16).
pub const OP_FEATURES: [&str; 16] = [
    "float_mad",
    "float_addsub",
    "float_mul",
    "float_divmod",
    "float_cmp",
    "float_math_func",
    "float_other_func",
    "int_mad",
    "int_addsub",
    "int_mul",
    "int_divmod",
    "int_cmp",
    "int_math_func",
    "int_other_func",
    "bool_op",
    "select_op",
];

/// Names of the 8 loop-position kinds of the annotation one-hots.
pub const POSITION_KINDS: [&str; 8] = [
    "none",
    "inner_spatial",
    "middle_spatial",
    "outer_spatial",
    "inner_reduce",
    "middle_reduce",
    "outer_reduce",
    "mixed",
];

/// Names of the 18 fields of one buffer-access group (prefixed `B0.` … `B4.`).
pub const BUFFER_FEATURES: [&str; BUFFER_FEATURE_LEN] = [
    "acc_type.read",
    "acc_type.write",
    "acc_type.read_write",
    "bytes",
    "unique_bytes",
    "lines",
    "unique_lines",
    "reuse_type.loop_multiple_read",
    "reuse_type.serial_multiple_read_write",
    "reuse_type.no_reuse",
    "reuse_dis_iter",
    "reuse_dis_bytes",
    "reuse_ct",
    "bytes_d_reuse_ct",
    "unique_bytes_d_reuse_ct",
    "lines_d_reuse_ct",
    "unique_lines_d_reuse_ct",
    "stride",
];

/// The meaning of the features: bump it when a feature changes what it measures without
/// changing its name (a renamed, added or removed feature changes [`feature_set_id`] alone).
pub const FEATURES_REVISION: u32 = 1;

/// Names the feature set a model was trained on: [`FEATURES_REVISION`] and a hash of
/// [`feature_names`]. A saved model is used only with the same id.
pub fn feature_set_id() -> String {
    let h = tessel_ir::dag::fnv1a(feature_names().join(",").as_bytes());
    format!("r{FEATURES_REVISION}-{h:016x}")
}

/// The names of all [`FEATURE_LEN`] features, in vector order (for inspecting importances).
pub fn feature_names() -> Vec<String> {
    let mut v: Vec<String> = OP_FEATURES.iter().map(|s| s.to_string()).collect();
    for ann in ["vec", "unroll", "parallel"] {
        v.push(format!("{ann}_num"));
        v.push(format!("{ann}_prod"));
        v.push(format!("{ann}_len"));
        for p in POSITION_KINDS {
            v.push(format!("{ann}_type.{p}"));
        }
    }
    for g in [
        "is_gpu",
        "blockIdx_x_len",
        "blockIdx_y_len",
        "blockIdx_z_len",
        "threadIdx_x_len",
        "threadIdx_y_len",
        "threadIdx_z_len",
        "vthread_len",
    ] {
        v.push(g.to_string());
    }
    for b in 0..MAX_BUFFERS {
        for f in BUFFER_FEATURES {
            v.push(format!("B{b}.{f}"));
        }
    }
    for k in 0..CURVE_LEN {
        v.push(format!("arith_intensity_curve_{k}"));
    }
    for a in [
        "alloc_size",
        "alloc_prod",
        "alloc_outer_prod",
        "alloc_inner_prod",
    ] {
        v.push(a.to_string());
    }
    for o in ["outer_prod", "num_loops", "auto_unroll_max_step"] {
        v.push(o.to_string());
    }
    v.extend(TENSORIZE_FEATURES.iter().map(|s| s.to_string()));
    debug_assert_eq!(v.len(), FEATURE_LEN);
    v
}

/// True for features that are not passed through `slog` (one-hots and the curve).
const fn is_raw(k: usize) -> bool {
    let ann_onehot = k >= 16 && k < 49 && (k - 16) % 11 >= 3;
    let buf_onehot = k >= BUFFER_OFFSET && k < CURVE_OFFSET && {
        let f = (k - BUFFER_OFFSET) % BUFFER_FEATURE_LEN;
        f < 3 || (f >= 7 && f < 10)
    };
    let curve = k >= CURVE_OFFSET && k < ALLOC_OFFSET;
    let kernel_onehot = k == TENSORIZE_OFFSET
        || k == TENSORIZE_OFFSET + 1
        || k == TENSORIZE_OFFSET + 6
        || k == TENSORIZE_OFFSET + 7;
    ann_onehot || buf_onehot || curve || kernel_onehot || k == 49
}

/// [`is_raw`] for every feature index.
static RAW_MASK: [bool; FEATURE_LEN] = {
    let mut m = [false; FEATURE_LEN];
    let mut k = 0;
    while k < FEATURE_LEN {
        m[k] = is_raw(k);
        k += 1;
    }
    m
};

/// `sign(x) · log2(1 + |x|)`, Ansor's feature scaling.
pub fn slog(x: f32) -> f32 {
    if x < 0.0 {
        -(-x).ln_1p() / std::f32::consts::LN_2
    } else {
        x.ln_1p() / std::f32::consts::LN_2
    }
}

/// The features of one program: a bag of per-store vectors (row-major, `n_stores ×`
/// [`FEATURE_LEN`]). A program whose lowering failed has no store ([`Self::is_empty`]).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProgramFeatures {
    /// `n_stores × FEATURE_LEN` floats.
    pub data: Vec<f32>,
}

impl ProgramFeatures {
    /// Number of store vectors.
    pub fn n_stores(&self) -> usize {
        self.data.len() / FEATURE_LEN
    }

    /// True when the program has no store vector (e.g. lowering failed).
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The store vectors.
    pub fn rows(&self) -> impl Iterator<Item = &[f32]> {
        self.data.chunks_exact(FEATURE_LEN)
    }

    /// The value of feature `name` in store `row`, if both exist.
    pub fn get(&self, row: usize, name: &str) -> Option<f32> {
        let k = feature_names().iter().position(|n| n == name)?;
        self.rows().nth(row).map(|r| r[k])
    }
}

impl fmt::Display for ProgramFeatures {
    /// One line per store: the non-zero features as `name=value`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = feature_names();
        for (i, row) in self.rows().enumerate() {
            write!(f, "store {i}:")?;
            for (k, v) in row.iter().enumerate() {
                if *v != 0.0 {
                    write!(f, " {}={v:.3}", names[k])?;
                }
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// One enclosing loop while walking.
#[derive(Clone, Copy, Debug)]
struct Frame {
    lp: LoopId,
    extent: f64,
    kind: LoopKind,
}

/// One access of a buffer by the current store.
#[derive(Clone, Copy, Debug)]
struct Access {
    buf: BufferId,
    index: ExprId,
    write: bool,
}

/// Per-buffer analysis of the current store.
#[derive(Clone, Copy, Debug, Default)]
struct BufInfo {
    buf: u32,
    read: bool,
    write: bool,
    n_access: u32,
    /// First slot in `Scratch::coefs` (one row of `n_loops` per access).
    first_access: u32,
}

/// Reusable buffers, so that extracting features allocates only the output.
#[derive(Debug, Default)]
struct Scratch {
    stack: Vec<Frame>,
    accesses: Vec<Access>,
    bufs: Vec<BufInfo>,
    /// Affine coefficients: one row of `nest.loops.len()` per access (in `bufs` order).
    coefs: Vec<f64>,
    /// Per loop level (index into `stack`, innermost last): unique elements per buffer.
    level_unique: Vec<f64>,
    /// Per level: bytes touched by all buffers in the loops from that level inwards.
    mem_bytes: Vec<f64>,
    /// Raw (not yet log-scaled) rows of the program, one per written buffer.
    raw: Vec<f32>,
    /// Buffer index → row in `raw` (+1; 0 = none).
    row_of: Vec<u32>,
    /// Buffer index → outer product where it was allocated (+ whether it is allocated).
    alloc_outer: Vec<f64>,
    /// Buffer-feature rows before sorting: `(lines, bytes, 18 values)`.
    buf_rows: Vec<[f32; BUFFER_FEATURE_LEN]>,
    order: Vec<usize>,
    /// Per loop id: the micro-kernel match of a tensorized loop (`None`: not tensorized).
    kernels: Vec<Option<Option<KernelCall>>>,
    flags: CodegenFlags,
    /// Per expression node: 0 = int, 1 = float/bool (computed once per nest).
    is_int: Vec<bool>,
    /// Per expression node: its subtree's operation counts, valid when `ops_stamp` matches.
    ops_memo: Vec<OpCounts>,
    ops_stamp: Vec<u32>,
    stamp: u32,
    grouped: Vec<Access>,
}

/// Extracts [`ProgramFeatures`] from loop nests, reusing its working memory between calls
/// (keep one per thread).
#[derive(Debug, Default)]
pub struct FeatureExtractor {
    s: Scratch,
}

/// Operation counts of one statement (indices as in [`OP_FEATURES`]).
type OpCounts = [f32; 16];

impl FeatureExtractor {
    /// A new extractor.
    pub fn new() -> FeatureExtractor {
        FeatureExtractor::default()
    }

    /// The features of `nest` under the default [`CodegenFlags`]: one vector per written
    /// buffer, in order of first store.
    pub fn extract(&mut self, nest: &LoopNest) -> ProgramFeatures {
        self.extract_with(nest, CodegenFlags::default())
    }

    /// The features of `nest` compiled with `flags`.
    pub fn extract_with(&mut self, nest: &LoopNest, flags: CodegenFlags) -> ProgramFeatures {
        let s = &mut self.s;
        s.flags = flags;
        s.kernels.clear();
        if nest.loops.iter().any(|l| l.kind == LoopKind::Tensorized) {
            s.kernels.resize(nest.loops.len(), None);
            for (_, m) in tessel_ir::tensorize::find(nest) {
                if let Ok(m) = m {
                    let elementwise = m.kind == tessel_ir::tensorize::KernelKind::Elementwise;
                    let k2 = m.folded().map_or(1, |o| o.extent);
                    s.kernels[m.k_loop.index()] = Some(Some(KernelCall {
                        mr: m.mr,
                        nr: m.nr,
                        k: m.k,
                        elementwise,
                        k2,
                    }));
                }
            }
            for (k, l) in nest.loops.iter().enumerate() {
                if l.kind == LoopKind::Tensorized && s.kernels[k].is_none() {
                    s.kernels[k] = Some(None);
                }
            }
        }
        s.stack.clear();
        s.raw.clear();
        s.row_of.clear();
        s.row_of.resize(nest.buffers.len(), 0);
        s.alloc_outer.clear();
        s.alloc_outer.resize(nest.buffers.len(), 0.0);
        for (k, b) in nest.buffers.iter().enumerate() {
            if b.scope == BufferScope::Global {
                s.alloc_outer[k] = 1.0;
            }
        }
        s.is_int.clear();
        s.is_int.extend(nest.nodes().iter().map(|_| false));
        for (k, node) in nest.nodes().iter().enumerate() {
            s.is_int[k] = match *node {
                Node::Int(_) | Node::Var(_) => true,
                Node::Float(_) | Node::Load(..) => false,
                Node::Unary(UnOp::Neg, a) => s.is_int[a.index()],
                Node::Unary(..) => false,
                Node::Binary(op, a, _) => {
                    !(op.is_comparison() || matches!(op, BinOp::And | BinOp::Or))
                        && s.is_int[a.index()]
                }
                Node::Select(_, a, _) => s.is_int[a.index()],
            };
        }
        s.stamp = s.stamp.wrapping_add(1);
        if s.stamp == 0 {
            s.ops_stamp.iter_mut().for_each(|x| *x = 0);
            s.stamp = 1;
        }
        if s.ops_memo.len() < nest.nodes().len() {
            s.ops_memo.resize(nest.nodes().len(), [0.0; 16]);
            s.ops_stamp.resize(nest.nodes().len(), 0);
        }
        let mut w = Walker { nest, s };
        w.block(&nest.body, 1.0, None);
        let mut data = Vec::with_capacity(self.s.raw.len());
        for row in self.s.raw.chunks_exact(FEATURE_LEN) {
            data.extend(
                row.iter()
                    .zip(RAW_MASK.iter())
                    .map(|(&v, &raw)| if raw { v } else { slog(v) }),
            );
        }
        ProgramFeatures { data }
    }
}

/// Features of one loop nest (a fresh [`FeatureExtractor`]; keep one to extract many).
pub fn extract(nest: &LoopNest) -> ProgramFeatures {
    FeatureExtractor::new().extract(nest)
}

struct Walker<'a> {
    nest: &'a LoopNest,
    s: &'a mut Scratch,
}

impl Walker<'_> {
    fn block(&mut self, body: &[StmtId], outer: f64, unroll: Option<u32>) {
        for &id in body {
            self.stmt(id, outer, unroll);
        }
    }

    fn stmt(&mut self, id: StmtId, outer: f64, unroll: Option<u32>) {
        let nest = self.nest;
        match nest.stmt(id) {
            Stmt::For {
                lp,
                body,
                auto_unroll_max_step,
            } => {
                let l = nest.lp(*lp);
                let extent = l.extent.max(1) as f64;
                self.s.stack.push(Frame {
                    lp: *lp,
                    extent,
                    kind: l.kind,
                });
                self.block(body, outer * extent, auto_unroll_max_step.or(unroll));
                self.s.stack.pop();
            }
            Stmt::If { body, .. } => self.block(body, outer, unroll),
            Stmt::Alloc { buf, body } => {
                if let Some(a) = self.s.alloc_outer.get_mut(buf.index()) {
                    *a = outer;
                }
                self.block(body, outer, unroll)
            }
            Stmt::Store { buf, index, value } => {
                self.store(*buf, *index, *value, outer, unroll.unwrap_or(0))
            }
        }
    }

    /// Adds the operation counts of an expression tree to `c` (shared nodes count once per
    /// use; each node's subtree counts are memoized per nest).
    fn count_ops(&mut self, e: ExprId, c: &mut OpCounts) {
        let sub = self.subtree_ops(e);
        for k in 0..16 {
            c[k] += sub[k];
        }
    }

    fn subtree_ops(&mut self, e: ExprId) -> OpCounts {
        let i = e.index();
        if self.s.ops_stamp[i] == self.s.stamp {
            return self.s.ops_memo[i];
        }
        let nest = self.nest;
        let mut c: OpCounts = [0.0; 16];
        let base = |s: &Scratch, id: ExprId| if s.is_int[id.index()] { 7 } else { 0 };
        match nest.get(e) {
            Node::Int(_) | Node::Float(_) | Node::Var(_) => {}
            Node::Load(_, i) => self.count_ops(i, &mut c),
            Node::Unary(op, a) => {
                match op {
                    UnOp::Neg => c[base(self.s, a) + 1] += 1.0,
                    UnOp::Not => c[14] += 1.0,
                    UnOp::Sqrt | UnOp::Exp => c[5] += 1.0,
                    UnOp::ToFloat => c[6] += 1.0,
                }
                self.count_ops(a, &mut c)
            }
            Node::Binary(op, a, b) => {
                let t = base(self.s, a);
                let mul_child = |x: ExprId| matches!(nest.get(x), Node::Binary(BinOp::Mul, ..));
                match op {
                    BinOp::Add if mul_child(b) || mul_child(a) => {
                        // a + b*c: one mad; the mul is not counted again.
                        c[t] += 1.0;
                        let (m, other) = if mul_child(b) { (b, a) } else { (a, b) };
                        if let Node::Binary(_, p, q) = nest.get(m) {
                            self.count_ops(p, &mut c);
                            self.count_ops(q, &mut c);
                        }
                        self.count_ops(other, &mut c);
                    }
                    _ => {
                        match op {
                            BinOp::Add | BinOp::Sub => c[t + 1] += 1.0,
                            BinOp::Mul => c[t + 2] += 1.0,
                            BinOp::Div | BinOp::Mod => c[t + 3] += 1.0,
                            BinOp::Min
                            | BinOp::Max
                            | BinOp::Lt
                            | BinOp::Le
                            | BinOp::Eq
                            | BinOp::Ne => c[t + 4] += 1.0,
                            BinOp::And | BinOp::Or => c[14] += 1.0,
                        }
                        self.count_ops(a, &mut c);
                        self.count_ops(b, &mut c)
                    }
                }
            }
            Node::Select(p, a, b) => {
                c[15] += 1.0;
                self.count_ops(p, &mut c);
                self.count_ops(a, &mut c);
                self.count_ops(b, &mut c)
            }
        }
        self.s.ops_memo[i] = c;
        self.s.ops_stamp[i] = self.s.stamp;
        c
    }

    /// Collects the loads of a value expression.
    fn collect_loads(&mut self, e: ExprId) {
        match self.nest.get(e) {
            Node::Int(_) | Node::Float(_) | Node::Var(_) => {}
            Node::Load(buf, index) => {
                self.s.accesses.push(Access {
                    buf,
                    index,
                    write: false,
                });
                self.collect_loads(index)
            }
            Node::Unary(_, a) => self.collect_loads(a),
            Node::Binary(_, a, b) => {
                self.collect_loads(a);
                self.collect_loads(b)
            }
            Node::Select(p, a, b) => {
                self.collect_loads(p);
                self.collect_loads(a);
                self.collect_loads(b)
            }
        }
    }

    /// Adds `scale ×` the access strides of `e` into `out` (indexed by loop id): the
    /// coefficients of its affine form ([`tessel_ir::affine`]), and through its atoms the
    /// estimate of [`Self::atom_strides`].
    fn affine(&self, e: ExprId, scale: f64, out: &mut [f64]) {
        for (t, c) in Affine::of_or_atom(self.nest, e).terms {
            let scale = scale * c as f64;
            match t {
                Term::Var(l) => {
                    if let Some(o) = out.get_mut(l.index()) {
                        *o += scale
                    }
                }
                Term::Atom(a) => self.atom_strides(a, scale, out),
            }
        }
    }

    /// The strides estimated through a non-affine sub-expression: `x / c` scales `x`'s by
    /// `1/c`; `x % c`, `min(x, y)` and `max(x, y)` keep `x`'s; a product of two non-constants
    /// and a select add both sides'; anything else (a load, a comparison) has none.
    fn atom_strides(&self, a: ExprId, scale: f64, out: &mut [f64]) {
        let nest = self.nest;
        match nest.get(a) {
            Node::Binary(BinOp::Mul, x, y) | Node::Select(_, x, y) => {
                self.affine(x, scale, out);
                self.affine(y, scale, out)
            }
            Node::Binary(BinOp::Div, x, y) => match nest.get(y) {
                Node::Int(k) if k != 0 => self.affine(x, scale / k as f64, out),
                _ => self.affine(x, scale, out),
            },
            Node::Binary(BinOp::Mod | BinOp::Min | BinOp::Max, x, _) => self.affine(x, scale, out),
            _ => {}
        }
    }

    fn store(&mut self, buf: BufferId, index: ExprId, value: ExprId, outer: f64, unroll: u32) {
        let nest = self.nest;
        let n_loops = nest.loops.len();
        let depth = self.s.stack.len();

        // 1. Operation counts (per iteration).
        let mut ops: OpCounts = [0.0; 16];
        self.count_ops(value, &mut ops);
        self.count_ops(index, &mut ops);
        let flops_per_iter: f64 = ops[..7].iter().map(|&x| x as f64).sum();

        // 2. Accesses, grouped by buffer (the written one first).
        self.s.accesses.clear();
        self.s.accesses.push(Access {
            buf,
            index,
            write: true,
        });
        self.collect_loads(value);
        self.s.bufs.clear();
        let mut sorted = std::mem::take(&mut self.s.accesses);
        // Stable grouping: buffers in order of first access.
        let mut grouped = std::mem::take(&mut self.s.grouped);
        grouped.clear();
        for k in 0..sorted.len() {
            let b = sorted[k].buf;
            if grouped.iter().any(|a| a.buf == b) {
                continue;
            }
            let first = grouped.len() as u32;
            let (mut read, mut write, mut n) = (false, false, 0);
            for a in sorted.iter().filter(|a| a.buf == b) {
                read |= !a.write;
                write |= a.write;
                n += 1;
                grouped.push(*a);
            }
            self.s.bufs.push(BufInfo {
                buf: b.0,
                read,
                write,
                n_access: n,
                first_access: first,
            });
        }
        sorted.clear();
        self.s.accesses = sorted;
        let n_acc = grouped.len();
        let mut coefs = std::mem::take(&mut self.s.coefs);
        coefs.clear();
        coefs.resize(n_acc * n_loops, 0.0);
        for (k, a) in grouped.iter().enumerate() {
            self.affine(a.index, 1.0, &mut coefs[k * n_loops..(k + 1) * n_loops]);
        }

        // 3. Unique elements per buffer and level, and bytes per level (inner → outer).
        let n_bufs = self.s.bufs.len();
        let mut level_unique = std::mem::take(&mut self.s.level_unique);
        level_unique.clear();
        level_unique.resize((depth + 1) * n_bufs, 0.0);
        let mut mem_bytes = std::mem::take(&mut self.s.mem_bytes);
        mem_bytes.clear();
        mem_bytes.resize(depth + 1, 0.0);
        // Level `depth` = inside all loops (one iteration); level `i` = loops i.. inwards.
        for (bi, info) in self.s.bufs.iter().enumerate() {
            let len = nest.buffer(BufferId(info.buf)).len().max(1) as f64;
            for acc in 0..info.n_access as usize {
                let row = &coefs[(info.first_access as usize + acc) * n_loops..][..n_loops];
                let (mut span, mut prod) = (1.0f64, 1.0f64);
                for lvl in (0..=depth).rev() {
                    if lvl < depth {
                        let fr = self.s.stack[lvl];
                        let c = row[fr.lp.index()].abs();
                        if c != 0.0 {
                            span += c * (fr.extent - 1.0);
                            prod *= fr.extent;
                        }
                    }
                    let u = span.min(prod).min(len);
                    let slot = &mut level_unique[lvl * n_bufs + bi];
                    *slot = slot.max(u);
                }
            }
        }
        for lvl in 0..=depth {
            mem_bytes[lvl] = level_unique[lvl * n_bufs..(lvl + 1) * n_bufs]
                .iter()
                .sum::<f64>()
                * ELEM_BYTES;
        }

        // 4. Buffer-access groups.
        self.s.buf_rows.clear();
        for (bi, info) in self.s.bufs.iter().enumerate() {
            let mut f = [0.0f32; BUFFER_FEATURE_LEN];
            let ty = match (info.read, info.write) {
                (true, true) => 2,
                (false, true) => 1,
                _ => 0,
            };
            f[ty] = 1.0;
            let bytes = outer * ELEM_BYTES * info.n_access as f64;
            let unique_elems = level_unique[bi];
            let unique_bytes = unique_elems * ELEM_BYTES;
            // Stride, lines and contiguous run: the largest over the buffer's accesses.
            let (mut stride, mut lines, mut run) = (0.0f64, 1.0f64, 1.0f64);
            for acc in 0..info.n_access as usize {
                let row = &coefs[(info.first_access as usize + acc) * n_loops..][..n_loops];
                let mut st = 0.0;
                let mut reduce_ratio = 1.0;
                for fr in self.s.stack.iter().rev() {
                    let c = row[fr.lp.index()].abs();
                    if c != 0.0 {
                        st = c;
                        break;
                    }
                    reduce_ratio *= fr.extent;
                }
                let l =
                    (outer / reduce_ratio * (st * ELEM_BYTES / CACHE_LINE_BYTES).min(1.0)).max(1.0);
                if l >= lines {
                    lines = l;
                    stride = st;
                }
                // Contiguous run: grow through loops in order of increasing coefficient.
                let mut r = 1.0f64;
                let mut moving: [(f64, f64); 32] = [(0.0, 0.0); 32];
                let mut nm = 0;
                for fr in &self.s.stack {
                    let c = row[fr.lp.index()].abs();
                    if c != 0.0 && nm < moving.len() {
                        moving[nm] = (c, fr.extent);
                        nm += 1;
                    }
                }
                moving[..nm].sort_by(|a, b| a.0.total_cmp(&b.0));
                for &(c, e) in &moving[..nm] {
                    if c <= r {
                        r = r.max(c * (e - 1.0) + r);
                    } else {
                        break;
                    }
                }
                run = run.max(r.min(unique_elems));
            }
            let unique_lines = (unique_bytes / (run * ELEM_BYTES).min(CACHE_LINE_BYTES)).max(1.0);
            // Reuse: the innermost loop (of extent > 1) that moves no access of the buffer.
            let (mut reuse_type, mut dis_iter, mut dis_bytes, mut reuse_ct) = (2, 0.0, 0.0, 0.0);
            let mut inner_prod = 1.0;
            for lvl in (0..depth).rev() {
                let fr = self.s.stack[lvl];
                if fr.extent <= 1.0 {
                    continue;
                }
                let moves = (0..info.n_access as usize).any(|acc| {
                    coefs[(info.first_access as usize + acc) * n_loops + fr.lp.index()] != 0.0
                });
                if !moves {
                    reuse_type = 0;
                    reuse_ct = fr.extent;
                    dis_iter = inner_prod;
                    dis_bytes = mem_bytes[lvl + 1];
                    break;
                }
                inner_prod *= fr.extent;
            }
            if reuse_type == 2 && info.n_access > 1 {
                reuse_type = 1;
                reuse_ct = (info.n_access - 1) as f64;
                dis_iter = 1.0;
                dis_bytes = n_acc as f64 * ELEM_BYTES;
            }
            f[7 + reuse_type] = 1.0;
            f[3] = bytes as f32;
            f[4] = unique_bytes as f32;
            f[5] = lines as f32;
            f[6] = unique_lines as f32;
            f[10] = dis_iter as f32;
            f[11] = dis_bytes as f32;
            f[12] = reuse_ct as f32;
            let per = |x: f64| {
                if reuse_ct > 0.5 {
                    (x / reuse_ct) as f32
                } else {
                    (x * 2.0) as f32
                }
            };
            f[13] = per(bytes);
            f[14] = per(unique_bytes);
            f[15] = per(lines);
            f[16] = per(unique_lines);
            f[17] = stride as f32;
            self.s.buf_rows.push(f);
        }
        self.s.order.clear();
        self.s.order.extend(0..n_bufs);
        let rows = &self.s.buf_rows;
        self.s.order.sort_by(|&a, &b| {
            rows[b][5]
                .total_cmp(&rows[a][5])
                .then(rows[b][3].total_cmp(&rows[a][3]))
        });

        // 5. Assemble the raw row.
        let mut row = [0.0f32; FEATURE_LEN];
        for k in 0..16 {
            row[k] = (ops[k] as f64 * outer) as f32;
        }
        for (a, kind) in [LoopKind::Vectorized, LoopKind::Unrolled, LoopKind::Parallel]
            .into_iter()
            .enumerate()
        {
            let base = 16 + 11 * a;
            let (mut num, mut prod, mut len) = (0.0f64, 1.0f64, 0.0f64);
            for fr in self.s.stack.iter().filter(|f| f.kind == kind) {
                num += 1.0;
                prod *= fr.extent;
                len = fr.extent;
            }
            if num > 0.0 {
                row[base] = num as f32;
                row[base + 1] = prod as f32;
                row[base + 2] = len as f32;
                row[base + 3 + 7] = 1.0;
            } else {
                row[base + 3] = 1.0;
            }
        }
        for (slot, &bi) in self.s.order.iter().take(MAX_BUFFERS).enumerate() {
            let off = BUFFER_OFFSET + slot * BUFFER_FEATURE_LEN;
            row[off..off + BUFFER_FEATURE_LEN].copy_from_slice(&self.s.buf_rows[bi]);
        }
        // Arithmetic-intensity curve over loop levels, innermost outwards (log2 values).
        if depth > 0 && flops_per_iter > 0.0 {
            let mut comp = [0.0f64; 64];
            let mut mem = [0.0f64; 64];
            let n = depth.min(64);
            let mut ops_acc = flops_per_iter;
            for (k, lvl) in (depth - n..depth).rev().enumerate() {
                ops_acc *= self.s.stack[lvl].extent;
                comp[k] = ops_acc.log2();
                mem[k] = mem_bytes[lvl].max(1.0).log2();
            }
            let total = comp[n - 1];
            let mut pt = 0;
            for i in 0..CURVE_LEN {
                let x = total * (i + 1) as f64 / CURVE_LEN as f64;
                while pt + 1 < n && comp[pt] < x - 1e-4 {
                    pt += 1;
                }
                let ratio = |k: usize| comp[k] / mem[k].max(1e-9);
                let v = if pt == 0 || comp[pt] == comp[pt - 1] {
                    ratio(pt)
                } else {
                    let slope = (ratio(pt) - ratio(pt - 1)) / (comp[pt] - comp[pt - 1]);
                    ratio(pt - 1) + slope * (x - comp[pt - 1])
                };
                row[CURVE_OFFSET + i] = v as f32;
            }
        }
        let b = nest.buffer(buf);
        let alloc_outer = self.s.alloc_outer[buf.index()];
        if matches!(b.scope, BufferScope::Local | BufferScope::Global) && alloc_outer > 0.0 {
            let size = b.len() as f64 * ELEM_BYTES;
            row[ALLOC_OFFSET] = size as f32;
            row[ALLOC_OFFSET + 1] = (size * alloc_outer) as f32;
            row[ALLOC_OFFSET + 2] = alloc_outer as f32;
            row[ALLOC_OFFSET + 3] = (outer / alloc_outer) as f32;
        }
        row[OUTER_OFFSET] = outer as f32;
        row[OUTER_OFFSET + 1] = depth as f32;
        row[OUTER_OFFSET + 2] = unroll as f32;
        if !self.s.kernels.is_empty() {
            let mut calls = 1.0f64;
            for fr in &self.s.stack {
                if let Some(m) = self.s.kernels[fr.lp.index()] {
                    let t = TENSORIZE_OFFSET;
                    match m.filter(|_| self.s.flags.micro_kernels) {
                        Some(call) => {
                            row[t] = 1.0;
                            row[t + 2] = call.mr as f32;
                            row[t + 3] = call.nr as f32;
                            row[t + 4] = call.k as f32;
                            row[t + 5] = (calls / call.k2 as f64) as f32;
                            row[t + 6] = if self.s.flags.layout_rewrite {
                                1.0
                            } else {
                                0.0
                            };
                            row[t + 7] = if call.elementwise { 1.0 } else { 0.0 };
                            row[t + 8] = call.k2 as f32;
                        }
                        None => row[t + 1] = 1.0,
                    }
                    break;
                }
                calls *= fr.extent;
            }
        }

        // 6. Merge with an earlier store into the same buffer.
        let slot = self.s.row_of[buf.index()];
        if slot == 0 {
            self.s.raw.extend_from_slice(&row);
            self.s.row_of[buf.index()] = (self.s.raw.len() / FEATURE_LEN) as u32;
        } else {
            let start = (slot as usize - 1) * FEATURE_LEN;
            let dst = &mut self.s.raw[start..start + FEATURE_LEN];
            for k in 0..16 {
                row[k] += dst[k];
            }
            dst.copy_from_slice(&row);
        }
        self.s.coefs = coefs;
        self.s.level_unique = level_unique;
        self.s.mem_bytes = mem_bytes;
        self.s.grouped = grouped;
    }
}
