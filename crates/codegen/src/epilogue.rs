//! Fused write-backs: the loop that applies an operator's epilogue (bias, residual add,
//! ReLU, ReLU6) to a cache-write tile and stores the result, run as one call of a routine at
//! the target's vector width instead of Cranelift's 128-bit code.
//!
//! A tuned convolution computes its register tiles into a local buffer; a write-back loop
//! then stores them into the output through the fused elementwise stages:
//!
//! ```text
//! for i in 0..R:                 // optional
//!   for j in 0..C:
//!     out[o0 + i*ldo + j] = f(...)
//! ```
//!
//! `f` must be a *chain*: it starts from one leaf, and every step combines the value so far
//! with one more leaf by `+`, `−`, `×`, `max` or `min` (either operand order). A leaf is a
//! constant or a load `r[r0 + i*ldr + j]` of another buffer, contiguous along `j` (`ldr`
//! may be 0: a per-column vector such as a bias). ResNet-50's
//! `max(((tile[i*64 + j] + bias[j]) + residual[...]), 0.0)` and MobileNet-V2's
//! `min(max((tile + bias), 0.0), 6.0)` are chains. Anything else (selects, casts, `exp`,
//! loads not contiguous along `j` or of the stored buffer, products feeding a sum, which
//! Cranelift contracts into an FMA) is declined and stays plain code. Every access must
//! provably lie in its buffer (the range analysis, as for every access).
//!
//! The routine ([`routine`]) takes the chain as a [`Program`] (built once at compile time,
//! owned by the kernel) and the addresses of the output's and each load's first element.
//! It evaluates a chunk of 64 columns of a row in registers (4 zmm or 8 ymm) step by step,
//! then 16 or 8, then a masked tail, in exactly the order and rounding of the loop:
//! `min(x, y) = x < y ? x : y` and `max(x, y) = y < x ? x : y` are what both Cranelift's
//! code and `vminps`/`vmaxps` compute, and no product is contracted.
//!
//! Write-backs are used only when the target has micro-kernels (so `--target generic`
//! stays plain Cranelift) and store at least [`MIN_ELEMENTS`] elements.
//!
//! **In the kernel.** When the write-back follows a broadcast micro-kernel call over the
//! whole reduction and a zero fill of its tile (`alloc T { fill T; kernel → T; write-back
//! from T }`), the target runs the three as one call per register
//! tile of a fused kernel ([`FusedKernelFn`]): the accumulators start from zero, and the
//! chain is applied to them in registers and stored straight into the output; `T` is never
//! touched. The kernel may sit in a reduction loop of its own, a convolution's window rows
//! (`for rh { kernel over rw·rc }`, the ResNet-50 3×3 and 7×7 tasks): the fused call folds
//! that loop in as its `k2` loop, so the tile stays in registers over the whole window.
//! Otherwise the routine runs after the kernel (the tile still in L1).
//!
//! Measured on the recorded best programs of ResNet-50 task 5 and MobileNet-V2 task 3
//! (Sapphire Rapids, 2 threads): the write-back loop took 28–31 % and 38–41 % of the time,
//! about half of it the first stores into the output (cache misses every form pays), the
//! rest the separate pass over the tile; with the zero fill (6 % / 11–17 %) that is what
//! the in-kernel form removes (fused/loop 0.87 and 0.73). The routine after the kernel
//! gains nothing measurable over Cranelift's 128-bit loop (0.97–1.04): the loop was not
//! instruction-bound.

use crate::analysis::Analysis;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tessel_ir::expr::BinOp;
use tessel_ir::interval::interval;
use tessel_ir::loop_nest::{BufferId, ExprId, LoopId, LoopKind, Node, Stmt, StmtId};
use tessel_ir::target::Isa;
use tessel_ir::tensorize::OuterReduction;
use tessel_ir::LoopNest;

/// Fewest elements a write-back must store to become a call (a smaller one stays inline).
pub const MIN_ELEMENTS: i64 = 128;

/// Most distinct loads of one write-back.
pub const MAX_OPERANDS: usize = 8;

/// Most steps of one write-back's chain.
pub const MAX_STEPS: usize = 16;

/// One leaf of a chain.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Src {
    /// A constant.
    Const(f32),
    /// Load number `k`: element `j` of row `i` is at `ptrs[1 + k] + i*lds[k] + j`.
    Operand(usize),
}

/// The operator of one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `x + y`
    Add,
    /// `x − y`
    Sub,
    /// `x × y`
    Mul,
    /// `x < y ? x : y`
    Min,
    /// `y < x ? x : y`
    Max,
}

/// One step of a chain: the value so far `v` and leaf `src` combined by `op`, as
/// `op(src, v)` when `leaf_first`, else `op(v, src)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    /// The operator.
    pub op: Op,
    /// The leaf.
    pub src: Src,
    /// The leaf is the left operand.
    pub leaf_first: bool,
}

/// A write-back: `out[i*ldo + j] = chain(i, j)` for `i < rows`, `j < cols`. The output
/// rows must not overlap (`|ldo| ≥ cols` when `rows > 1`).
#[derive(Clone, Debug, PartialEq)]
pub struct Program {
    /// Rows.
    pub rows: usize,
    /// Columns (contiguous elements per row).
    pub cols: usize,
    /// Elements between the output's rows.
    pub ldo: isize,
    /// Elements between the rows of each load (0: the same row for every `i`).
    pub lds: Vec<isize>,
    /// The first leaf.
    pub start: Src,
    /// The steps after it.
    pub steps: Vec<Step>,
}

impl Program {
    /// True when the routines may run it: operands and steps within [`MAX_OPERANDS`] and
    /// [`MAX_STEPS`], and every operand index names a load.
    pub fn is_valid(&self) -> bool {
        let ok = |s: Src| match s {
            Src::Const(_) => true,
            Src::Operand(k) => k < self.lds.len(),
        };
        self.lds.len() <= MAX_OPERANDS
            && (self.rows <= 1 || self.ldo.unsigned_abs() >= self.cols)
            && self.steps.len() <= MAX_STEPS
            && ok(self.start)
            && self.steps.iter().all(|s| ok(s.src))
    }

    /// The chain as text, loads named by `names` (e.g. `max(((t + bias) + res), 0)`).
    pub fn chain_text(&self, names: &[String]) -> String {
        let leaf = |s: Src| match s {
            Src::Const(c) => format!("{c}"),
            Src::Operand(k) => names.get(k).cloned().unwrap_or_else(|| format!("#{k}")),
        };
        let mut v = leaf(self.start);
        for s in &self.steps {
            let (a, b) = if s.leaf_first {
                (leaf(s.src), v)
            } else {
                (v, leaf(s.src))
            };
            v = match s.op {
                Op::Add => format!("({a} + {b})"),
                Op::Sub => format!("({a} - {b})"),
                Op::Mul => format!("({a} * {b})"),
                Op::Min => format!("min({a}, {b})"),
                Op::Max => format!("max({a}, {b})"),
            };
        }
        v
    }
}

/// `op(x, y)` in scalar code, as the routines compute it lane by lane.
fn apply(op: Op, x: f32, y: f32) -> f32 {
    match op {
        Op::Add => x + y,
        Op::Sub => x - y,
        Op::Mul => x * y,
        Op::Min => {
            if x < y {
                x
            } else {
                y
            }
        }
        Op::Max => {
            if y < x {
                x
            } else {
                y
            }
        }
    }
}

/// `(program, ptrs)`: `program` points to a valid [`Program`], `ptrs[0]` to the output's
/// first element and `ptrs[1 + k]` to load `k`'s.
pub type EpilogueFn = unsafe extern "C" fn(*const u8, *const *mut f32);

/// What every routine computes, in plain Rust.
///
/// # Safety
/// `program` must point to a [`Program`] for which [`Program::is_valid`] holds; every
/// element `ptrs[0] + i*ldo + j` must be valid for writes and `ptrs[1 + k] + i*lds[k] + j`
/// for reads (`i < rows`, `j < cols`), and no load may overlap the output.
pub unsafe extern "C" fn epilogue_reference(program: *const u8, ptrs: *const *mut f32) {
    // SAFETY: as the caller guarantees.
    unsafe {
        let p = &*(program as *const Program);
        let out = *ptrs;
        for i in 0..p.rows {
            let leaf = |s: Src, j: usize| match s {
                Src::Const(c) => c,
                Src::Operand(k) => *(*ptrs.add(1 + k)).offset(i as isize * p.lds[k] + j as isize),
            };
            for j in 0..p.cols {
                let mut v = leaf(p.start, j);
                for s in &p.steps {
                    let l = leaf(s.src, j);
                    v = if s.leaf_first {
                        apply(s.op, l, v)
                    } else {
                        apply(s.op, v, l)
                    };
                }
                *out.offset(i as isize * p.ldo + j as isize) = v;
            }
        }
    }
}

/// The routine symbol of `isa`.
pub(crate) fn symbol(isa: Isa) -> String {
    format!("tessel_epilogue_{isa}")
}

/// The routine of `isa`, when this CPU runs it (none for [`Isa::Generic`]).
pub fn routine(isa: Isa) -> Option<EpilogueFn> {
    if !crate::ukernel::available(isa) {
        return None;
    }
    imp::routine(isa)
}

/// A write-back that runs as one routine call, keyed in [`Analysis::epilogues`] by the loop
/// it replaces (`outer` when present).
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    /// The contiguous innermost loop (`j`).
    pub inner: LoopId,
    /// The loop around it (`i`), if any.
    pub outer: Option<LoopId>,
    /// The stored buffer and index.
    pub dst: (BufferId, ExprId),
    /// The loads, in operand order.
    pub operands: Vec<(BufferId, ExprId)>,
    /// The program; the kernel keeps it alive, the code holds its address.
    pub program: Arc<Program>,
}

/// What [`crate::Kernel::fused_write_backs`] reports of one fused write-back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FusedWriteBack {
    /// Name of the loop the call replaces.
    pub loop_name: String,
    /// Rows and columns of the write-back.
    pub rows: usize,
    /// Columns (contiguous elements per row).
    pub cols: usize,
    /// The stored buffer.
    pub out: String,
    /// The chain, loads named by their buffers.
    pub chain: String,
    /// Applied inside the micro-kernel call to its register tile ([`FusedKernelFn`]);
    /// otherwise one call of the epilogue routine after the kernel.
    pub in_kernel: bool,
}

impl Plan {
    /// The report of this write-back.
    pub(crate) fn report(&self, nest: &LoopNest, lp: LoopId, in_kernel: bool) -> FusedWriteBack {
        let names: Vec<String> = self
            .operands
            .iter()
            .map(|&(b, _)| nest.buffer(b).name.clone())
            .collect();
        FusedWriteBack {
            loop_name: nest.lp(lp).name.clone(),
            rows: self.program.rows,
            cols: self.program.cols,
            out: nest.buffer(self.dst.0).name.clone(),
            chain: self.program.chain_text(&names),
            in_kernel,
        }
    }
}

impl std::fmt::Display for FusedWriteBack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "loop {}: {}x{} into {} = {}{}",
            self.loop_name,
            self.rows,
            self.cols,
            self.out,
            self.chain,
            if self.in_kernel {
                " (in the kernel)"
            } else {
                ""
            }
        )
    }
}

/// The write-backs of `nest` that run as routine calls, by the loop each replaces. Loops
/// that are bulk runs (`runs`) and promoted buffers are left alone.
pub(crate) fn find(
    nest: &LoopNest,
    an: &Analysis,
    promoted: &HashSet<BufferId>,
    runs: &HashMap<LoopId, crate::bulk::RunPlan>,
) -> HashMap<LoopId, Plan> {
    let mut out = HashMap::new();
    let cx = Cx {
        nest,
        an,
        promoted,
        runs,
    };
    cx.visit(&nest.body, &mut out);
    out
}

struct Cx<'a> {
    nest: &'a LoopNest,
    an: &'a Analysis,
    promoted: &'a HashSet<BufferId>,
    runs: &'a HashMap<LoopId, crate::bulk::RunPlan>,
}

impl Cx<'_> {
    fn visit(&self, body: &[StmtId], out: &mut HashMap<LoopId, Plan>) {
        for &s in body {
            match self.nest.stmt(s) {
                Stmt::For { lp, body, .. } => {
                    if self.runs.contains_key(lp) {
                        continue;
                    }
                    match self
                        .outer_form(*lp, body)
                        .or_else(|| self.plan(None, *lp, body))
                    {
                        Some(p) => {
                            out.insert(*lp, p);
                        }
                        None => self.visit(body, out),
                    }
                }
                Stmt::If { body, .. } | Stmt::Alloc { body, .. } => self.visit(body, out),
                Stmt::Store { .. } => {}
            }
        }
    }

    fn plain(&self, lp: LoopId) -> bool {
        matches!(
            self.nest.lp(lp).kind,
            LoopKind::Serial | LoopKind::Unrolled | LoopKind::Vectorized
        ) && !self.runs.contains_key(&lp)
    }

    /// Loop `o` whose body is one loop `x` whose body is one store.
    fn outer_form(&self, o: LoopId, body: &[StmtId]) -> Option<Plan> {
        let [only] = body else { return None };
        let Stmt::For {
            lp: x, body: xb, ..
        } = self.nest.stmt(*only)
        else {
            return None;
        };
        self.plan(Some(o), *x, xb)
    }

    /// The plan of loop `x` (inside `o`, when given) whose body is one store.
    fn plan(&self, o: Option<LoopId>, x: LoopId, body: &[StmtId]) -> Option<Plan> {
        let nest = self.nest;
        if !self.plain(x) || o.is_some_and(|o| !self.plain(o)) {
            return None;
        }
        let [only] = body else { return None };
        let Stmt::Store { buf, index, value } = nest.stmt(*only) else {
            return None;
        };
        let rows = o.map_or(1, |o| nest.lp(o).extent);
        let cols = nest.lp(x).extent;
        if rows < 1 || cols < 1 || rows * cols < MIN_ELEMENTS {
            return None;
        }
        let ldo = self.row_stride(*buf, *index, o, x)?;
        // The routine stores a block of rows column chunk by column chunk: rows must not
        // overlap.
        if rows > 1 && (ldo.unsigned_abs() as i64) < cols {
            return None;
        }
        let mut b = Builder {
            cx: self,
            dst: *buf,
            o,
            x,
            operands: Vec::new(),
            lds: Vec::new(),
            steps: Vec::new(),
        };
        let start = b.chain(*value)?;
        if b.steps.is_empty() || b.steps.len() > MAX_STEPS || b.operands.len() > MAX_OPERANDS {
            return None;
        }
        let program = Program {
            rows: rows as usize,
            cols: cols as usize,
            ldo,
            lds: b.lds,
            start,
            steps: b.steps,
        };
        debug_assert!(program.is_valid());
        Some(Plan {
            inner: x,
            outer: o,
            dst: (*buf, *index),
            operands: b.operands,
            program: Arc::new(program),
        })
    }

    /// The row stride of access `buf[index]`: stride 1 along `x`, a constant stride along
    /// `o`, inside the buffer, and the buffer not promoted to registers.
    fn row_stride(
        &self,
        buf: BufferId,
        index: ExprId,
        o: Option<LoopId>,
        x: LoopId,
    ) -> Option<isize> {
        let nest = self.nest;
        if self.promoted.contains(&buf)
            || self.an.stride(nest, index, x) != Some(1)
            || !interval(nest, index, &HashMap::new()).within(nest.buffer(buf).len())
        {
            return None;
        }
        let ld = match o {
            Some(o) => self.an.stride(nest, index, o)?,
            None => 0,
        };
        isize::try_from(ld).ok()
    }
}

/// Collects the loads and steps of a chain.
struct Builder<'c, 'a> {
    cx: &'c Cx<'a>,
    dst: BufferId,
    o: Option<LoopId>,
    x: LoopId,
    operands: Vec<(BufferId, ExprId)>,
    lds: Vec<isize>,
    steps: Vec<Step>,
}

impl Builder<'_, '_> {
    /// `e` as a leaf, if it is one.
    fn leaf(&mut self, e: ExprId) -> Option<Src> {
        match self.cx.nest.get(e) {
            Node::Float(bits) => Some(Src::Const(f32::from_bits(bits))),
            Node::Load(b, i) => {
                if b == self.dst {
                    return None;
                }
                if let Some(k) = self.operands.iter().position(|&op| op == (b, i)) {
                    return Some(Src::Operand(k));
                }
                let ld = self.cx.row_stride(b, i, self.o, self.x)?;
                self.operands.push((b, i));
                self.lds.push(ld);
                Some(Src::Operand(self.operands.len() - 1))
            }
            _ => None,
        }
    }

    fn is_leaf(&self, e: ExprId) -> bool {
        matches!(self.cx.nest.get(e), Node::Float(_) | Node::Load(..))
    }

    /// Walks chain `e`, pushing its steps; returns its first leaf.
    fn chain(&mut self, e: ExprId) -> Option<Src> {
        let nest = self.cx.nest;
        match nest.get(e) {
            Node::Float(_) | Node::Load(..) => self.leaf(e),
            Node::Binary(op, a, b) => {
                let op = match op {
                    BinOp::Add => Op::Add,
                    BinOp::Sub => Op::Sub,
                    BinOp::Mul => Op::Mul,
                    BinOp::Min => Op::Min,
                    BinOp::Max => Op::Max,
                    _ => return None,
                };
                // Cranelift turns `x*y + z` into an FMA (one rounding): not a chain step.
                let is_mul = |e: ExprId| matches!(nest.get(e), Node::Binary(BinOp::Mul, ..));
                if op == Op::Add && (is_mul(a) || is_mul(b)) {
                    return None;
                }
                // The chain continues on the side that is not a leaf (the left when both are).
                let (inner, leaf, leaf_first) = if self.is_leaf(b) {
                    (a, b, false)
                } else if self.is_leaf(a) {
                    (b, a, true)
                } else {
                    return None;
                };
                let start = self.chain(inner)?;
                let src = self.leaf(leaf)?;
                self.steps.push(Step {
                    op,
                    src,
                    leaf_first,
                });
                Some(start)
            }
            _ => None,
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod imp {
    //! One routine per ISA, from one macro: a tile of `rows × cols` is cut into blocks of
    //! `R` rows × `W` vectors (`R·W` accumulators: 16 zmm or 8 ymm), the last vector of a
    //! row masked when the width is not a multiple of the lanes. A block's values stay in
    //! registers through all the steps, so each step is dispatched once per block (not per
    //! vector): with 48-float rows, a per-row dispatch made the routine slower than
    //! Cranelift's inline code.
    use super::{EpilogueFn, Op, Program, Src, MAX_OPERANDS};
    use std::arch::x86_64::*;
    use tessel_ir::target::Isa;

    pub(super) fn routine(isa: Isa) -> Option<EpilogueFn> {
        match isa {
            Isa::Avx512 => Some(avx512::run),
            Isa::Avx2 => Some(avx2::run),
            Isa::Generic => None,
        }
    }

    /// The first element of every load of `p` at row `i`.
    ///
    /// # Safety
    /// `ptrs[1 + k]` valid for every load `k` of `p` and row `i` in bounds.
    #[inline(always)]
    unsafe fn rows_of(p: &Program, ptrs: *const *mut f32, i: usize) -> [*const f32; MAX_OPERANDS] {
        let mut r = [std::ptr::null::<f32>(); MAX_OPERANDS];
        for (k, &ld) in p.lds.iter().enumerate() {
            // SAFETY: as the caller guarantees.
            r[k] = unsafe { (*ptrs.add(1 + k)).offset(i as isize * ld) as *const f32 };
        }
        r
    }

    macro_rules! family {
        (
            $name:ident, $feature:literal, $v:ty, $mask:ty, lanes = $l:expr, accs = $accs:expr,
            full = $full:expr, tail = $tail:expr, splat = $splat:path,
            loadu = $loadu:path, storeu = $storeu:path,
            mload = |$mm:ident, $mp:ident| $mload:expr, mstore = |$sp:ident, $sm:ident, $sv:ident| $mstore:expr,
            add = $add:path, sub = $sub:path, mul = $mul:path, min = $min:path, max = $max:path $(,)?
        ) => {
            pub(super) mod $name {
                use super::*;

                /// Lanes of a vector.
                const L: usize = $l;

                /// Vector `v` of a block's row at `q + j` (masked by `m` when it is the last
                /// one and `MASKED`).
                ///
                /// # Safety
                /// The feature; the selected lanes in bounds.
                #[target_feature(enable = $feature)]
                #[inline]
                unsafe fn load<const W: usize, const MASKED: bool>(
                    q: *const f32,
                    j: usize,
                    v: usize,
                    m: $mask,
                ) -> $v {
                    // SAFETY: as the caller guarantees.
                    unsafe {
                        let $mp = q.add(j + L * v);
                        if MASKED && v + 1 == W {
                            let $mm = m;
                            $mload
                        } else {
                            $loadu($mp)
                        }
                    }
                }

                /// The leaf `s` for every accumulator of a block.
                ///
                /// # Safety
                /// As [`load`].
                #[target_feature(enable = $feature)]
                #[inline]
                unsafe fn leaf<const R: usize, const W: usize, const MASKED: bool>(
                    s: Src,
                    rows: &[[*const f32; MAX_OPERANDS]; R],
                    j: usize,
                    m: $mask,
                ) -> [[$v; W]; R] {
                    // SAFETY: as the caller guarantees.
                    unsafe {
                        let mut out = [[$splat(0.0); W]; R];
                        match s {
                            Src::Const(c) => {
                                let c = $splat(c);
                                for row in out.iter_mut() {
                                    for x in row.iter_mut() {
                                        *x = c;
                                    }
                                }
                            }
                            Src::Operand(k) => {
                                for (r, row) in out.iter_mut().enumerate() {
                                    for (v, x) in row.iter_mut().enumerate() {
                                        *x = load::<W, MASKED>(rows[r][k], j, v, m);
                                    }
                                }
                            }
                        }
                        out
                    }
                }

                /// One step on a block: `acc = op(acc, l)` (or `op(l, acc)`), its operator
                /// and operand order dispatched once.
                #[target_feature(enable = $feature)]
                #[inline]
                fn step<const R: usize, const W: usize>(
                    acc: &mut [[$v; W]; R],
                    op: Op,
                    leaf_first: bool,
                    l: &[[$v; W]; R],
                ) {
                    macro_rules! each {
                        ($f:path, $swap:expr) => {
                            for r in 0..R {
                                for v in 0..W {
                                    let (a, b) = (acc[r][v], l[r][v]);
                                    acc[r][v] = if $swap { $f(b, a) } else { $f(a, b) };
                                }
                            }
                        };
                    }
                    match (op, leaf_first) {
                        (Op::Add, _) => each!($add, false),
                        (Op::Mul, _) => each!($mul, false),
                        (Op::Sub, false) => each!($sub, false),
                        (Op::Sub, true) => each!($sub, true),
                        // vminps/vmaxps return the second operand unless the first is
                        // strictly smaller/larger: `x < y ? x : y`, `y < x ? x : y`.
                        (Op::Min, false) => each!($min, false),
                        (Op::Min, true) => each!($min, true),
                        (Op::Max, false) => each!($max, false),
                        (Op::Max, true) => each!($max, true),
                    }
                }

                /// Rows `i0..i0+R`, columns `j..j + W·L` (the last vector masked by `m`
                /// when `MASKED`).
                ///
                /// # Safety
                /// The feature; every selected element in bounds (the routine's contract).
                #[target_feature(enable = $feature)]
                #[inline]
                unsafe fn block<const R: usize, const W: usize, const MASKED: bool>(
                    p: &Program,
                    ptrs: *const *mut f32,
                    i0: usize,
                    j: usize,
                    m: $mask,
                ) {
                    // SAFETY: as the caller guarantees; masked lanes are not accessed.
                    unsafe {
                        let mut rows = [[std::ptr::null::<f32>(); MAX_OPERANDS]; R];
                        for (r, row) in rows.iter_mut().enumerate() {
                            *row = rows_of(p, ptrs, i0 + r);
                        }
                        let mut acc = leaf::<R, W, MASKED>(p.start, &rows, j, m);
                        for s in &p.steps {
                            let l = leaf::<R, W, MASKED>(s.src, &rows, j, m);
                            step(&mut acc, s.op, s.leaf_first, &l);
                        }
                        let out = *ptrs;
                        for (r, row) in acc.iter().enumerate() {
                            let o = out.offset((i0 + r) as isize * p.ldo);
                            for (v, a) in row.iter().enumerate() {
                                let $sp = o.add(j + L * v);
                                let $sv = *a;
                                if MASKED && v + 1 == W {
                                    let $sm = m;
                                    $mstore
                                } else {
                                    $storeu($sp, $sv)
                                }
                            }
                        }
                    }
                }

                /// All rows at columns `j..j + W·L`: blocks of `R` rows, then single rows.
                ///
                /// # Safety
                /// As [`block`].
                #[target_feature(enable = $feature)]
                #[inline]
                unsafe fn columns<const R: usize, const W: usize, const MASKED: bool>(
                    p: &Program,
                    ptrs: *const *mut f32,
                    j: usize,
                    m: $mask,
                ) {
                    // SAFETY: as the caller guarantees.
                    unsafe {
                        let mut i = 0;
                        while i + R <= p.rows {
                            block::<R, W, MASKED>(p, ptrs, i, j, m);
                            i += R;
                        }
                        while i < p.rows {
                            block::<1, W, MASKED>(p, ptrs, i, j, m);
                            i += 1;
                        }
                    }
                }

                /// The columns from `j` to the end of the rows (`n = cols - j`, at most
                /// four vectors), the last vector masked when `n` is not a multiple of `L`.
                ///
                /// # Safety
                /// As [`block`].
                #[target_feature(enable = $feature)]
                unsafe fn rest(p: &Program, ptrs: *const *mut f32, j: usize, n: usize) {
                    const A: usize = $accs;
                    let w = n.div_ceil(L);
                    let m: $mask = $tail(n - (w - 1) * L);
                    // SAFETY: as the caller guarantees.
                    unsafe {
                        match (w, n % L == 0) {
                            (1, true) => columns::<{ A }, 1, false>(p, ptrs, j, m),
                            (1, false) => columns::<{ A }, 1, true>(p, ptrs, j, m),
                            (2, true) => columns::<{ A / 2 }, 2, false>(p, ptrs, j, m),
                            (2, false) => columns::<{ A / 2 }, 2, true>(p, ptrs, j, m),
                            (3, true) => columns::<{ A / 3 }, 3, false>(p, ptrs, j, m),
                            (3, false) => columns::<{ A / 3 }, 3, true>(p, ptrs, j, m),
                            (4, true) => columns::<{ A / 4 }, 4, false>(p, ptrs, j, m),
                            _ => columns::<{ A / 4 }, 4, true>(p, ptrs, j, m),
                        }
                    }
                }

                /// The routine (see [`super::super::epilogue_reference`]).
                ///
                /// # Safety
                /// As [`super::super::epilogue_reference`], on a CPU with the feature.
                pub(in super::super) unsafe extern "C" fn run(
                    program: *const u8,
                    ptrs: *const *mut f32,
                ) {
                    // SAFETY: handed out only when the CPU has the feature
                    // (`super::super::routine`); the rest as the caller guarantees.
                    unsafe { body(&*(program as *const Program), ptrs) }
                }

                #[target_feature(enable = $feature)]
                unsafe fn body(p: &Program, ptrs: *const *mut f32) {
                    // SAFETY: as `run`'s caller guarantees.
                    unsafe {
                        // Full chunks of four vectors while more than four remain, then
                        // the rest (1 to 4 vectors, the last one masked if partial).
                        let mut j = 0;
                        while p.cols - j > 4 * L {
                            columns::<{ $accs / 4 }, 4, false>(p, ptrs, j, $full);
                            j += 4 * L;
                        }
                        if j < p.cols {
                            rest(p, ptrs, j, p.cols - j);
                        }
                    }
                }
            }
        };
    }

    family!(
        avx512,
        "avx512f",
        __m512,
        u16,
        lanes = 16,
        accs = 16,
        full = 0xffff,
        tail = |n: usize| ((1u32 << n) - 1) as u16,
        splat = _mm512_set1_ps,
        loadu = _mm512_loadu_ps,
        storeu = _mm512_storeu_ps,
        mload = |m, q| _mm512_maskz_loadu_ps(m, q),
        mstore = |q, m, v| _mm512_mask_storeu_ps(q, m, v),
        add = _mm512_add_ps,
        sub = _mm512_sub_ps,
        mul = _mm512_mul_ps,
        min = _mm512_min_ps,
        max = _mm512_max_ps,
    );

    family!(
        avx2,
        "avx2",
        __m256,
        __m256i,
        lanes = 8,
        accs = 8,
        full = _mm256_set1_epi32(-1),
        tail = |n: usize| {
            // SAFETY (of the intrinsics): called from AVX2 code only.
            _mm256_cmpgt_epi32(
                _mm256_set1_epi32(n as i32),
                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
            )
        },
        splat = _mm256_set1_ps,
        loadu = _mm256_loadu_ps,
        storeu = _mm256_storeu_ps,
        mload = |m, q| _mm256_maskload_ps(q, m),
        mstore = |q, m, v| _mm256_maskstore_ps(q, m, v),
        add = _mm256_add_ps,
        sub = _mm256_sub_ps,
        mul = _mm256_mul_ps,
        min = _mm256_min_ps,
        max = _mm256_max_ps,
    );
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    use super::EpilogueFn;
    use tessel_ir::target::Isa;

    pub(super) fn routine(_isa: Isa) -> Option<EpilogueFn> {
        None
    }
}

// ------------------------------------------------------------------ the in-kernel form

/// A broadcast micro-kernel with the write-back fused in: `(k2, a_k2s, b_k2s, k, a, a_rs,
/// a_ks, b, b_ks, program, ptrs, row0)`. It computes the `MR`×`L·NV` tile (`L` lanes)
/// `acc[i][j] = Σ_q Σ_p a[q*a_k2s + i*a_rs + p*a_ks] · b[q*b_k2s + p*b_ks + j]` from zero
/// (FMAs in `q`, then `p` order, as the zero fill and the plain kernel in its loops do;
/// `k2 = 1` when no outer reduction is folded in, e.g. a 1×1 convolution, and a window's
/// rows otherwise), applies `program`'s steps to it in registers (its start is the tile,
/// which no step reads) for the program's rows `row0 + i`, and stores it to
/// `ptrs[0] + (row0 + i)*ldo + j`.
pub type FusedKernelFn = unsafe extern "C" fn(
    i64,
    i64,
    i64,
    i64,
    *const f32,
    i64,
    i64,
    *const f32,
    i64,
    *const u8,
    *const *mut f32,
    i64,
);

/// The fused kernel of an `mr`×`nr` register tile under `isa`, when there is one (the
/// shapes of the ISA's broadcast family) and this CPU runs it.
pub fn fused_kernel(isa: Isa, mr: i64, nr: i64) -> Option<FusedKernelFn> {
    if !crate::ukernel::available(isa) {
        return None;
    }
    imp_fused::lookup(isa, mr, nr)
}

/// The symbol of the fused kernel of an `mr`×`nr` tile.
pub(crate) fn fused_symbol(isa: Isa, mr: i64, nr: i64) -> String {
    format!("tessel_fused_{isa}_{mr}x{nr}")
}

/// A tile whose zero fill, micro-kernel call and write-back run as fused kernel calls
/// ([`FusedKernelFn`]), keyed in [`Analysis::kernel_epilogues`] by the tensorized loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KernelPlan {
    /// The zero fill loop (not emitted).
    pub fill: LoopId,
    /// The write-back loop (not emitted; its plan is in [`Analysis::epilogues`]).
    pub write_back: LoopId,
    /// The reduction loop around the tensorized loop folded into the call (`k2`: a
    /// window's rows), when the call is not directly in the tile's allocation.
    pub outer: Option<OuterReduction>,
}

/// True when `a` (with `a_loops` at 0) and `b` (with `b_loops` at 0) are the same index.
fn same_origin(
    nest: &LoopNest,
    an: &Analysis,
    a: ExprId,
    a_loops: &[Option<LoopId>],
    b: ExprId,
    b_loops: &[Option<LoopId>],
) -> bool {
    use tessel_ir::affine::{Affine, Term};
    let keep = |lin: &Affine, skip: &[Option<LoopId>]| {
        let mut v = Vec::new();
        for &(t, c) in &lin.terms {
            match t {
                Term::Var(l) if skip.contains(&Some(l)) => {}
                Term::Atom(e) if skip.iter().flatten().any(|&l| an.depends(e, l)) => return None,
                _ => v.push((t, c)),
            }
        }
        Some(v)
    };
    let (la, lb) = (Affine::of_or_atom(nest, a), Affine::of_or_atom(nest, b));
    match (keep(&la, a_loops), keep(&lb, b_loops)) {
        (Some(x), Some(y)) => {
            la.konst == lb.konst && x.len() == y.len() && x.iter().all(|p| y.contains(p))
        }
        _ => false,
    }
}

/// The tiles whose write-back runs inside the kernel: `alloc T { fill; kernel; write-back }`
/// where `fill` zeroes exactly the kernel's `C` tile `T` (a bulk run of `all_runs`),
/// `kernel` is a broadcast micro-kernel call over the whole reduction (the tensorized loop,
/// or a reduction loop around it alone, a convolution window's rows, which the call folds
/// in as its `k2` loop: [`tessel_ir::tensorize::OuterReduction`]; with a packed `B`, its
/// stride must be whole rows of the panel), and `write-back` is
/// a fused write-back (`an.epilogues`) of the same `mr`×`nr` tile that starts from `T`'s
/// element `(i, j)` and reads `T` nowhere else; every register tile of the strip has a
/// fused kernel.
pub(crate) fn find_kernel_fusions(
    nest: &LoopNest,
    an: &Analysis,
    all_runs: &HashMap<LoopId, crate::bulk::RunPlan>,
    isa: Isa,
) -> HashMap<LoopId, KernelPlan> {
    let mut out = HashMap::new();
    for s in &nest.stmts {
        let Stmt::Alloc { buf, body } = s else {
            continue;
        };
        let [f, k, w] = body[..] else { continue };
        let lp = |s: StmtId| match nest.stmt(s) {
            Stmt::For { lp, .. } => Some(*lp),
            _ => None,
        };
        let (Some(f), Some(k), Some(w)) = (lp(f), lp(k), lp(w)) else {
            continue;
        };
        // The call: the tensorized loop, or the outer reduction loop it alone is in.
        let (k, outer) = if an.tensorized.contains_key(&k) {
            (k, None)
        } else {
            let Stmt::For { body: kb, .. } = nest.stmt(body[1]) else {
                continue;
            };
            let Some(inner) = (match kb[..] {
                [only] => lp(only),
                _ => None,
            }) else {
                continue;
            };
            let Some(o) = an.tensorized.get(&inner).and_then(|m| m.outer.clone()) else {
                continue;
            };
            if o.lp != k {
                continue;
            }
            (inner, Some(o))
        };
        let (Some(run), Some(m), Some(e)) = (
            all_runs.get(&f),
            an.tensorized.get(&k),
            an.epilogues.get(&w),
        ) else {
            continue;
        };
        // A packed `B` ([`crate::analysis::PackPlan`]) is read in whole rows of its panels.
        let outer_ok = match &outer {
            None => true,
            Some(o) => {
                o.extent > 1
                    && (!an.packed_b.contains_key(&k) || o.b_stride % m.b_k_stride == 0)
                    && !an.folded.contains_key(&o.lp)
            }
        };
        let p = &e.program;
        let tile_ok = m.kind == tessel_ir::tensorize::KernelKind::Broadcast
            && m.folded().is_none()
            && !an.folded.contains_key(&k)
            && m.c.0 == *buf
            && (m.mr == 1 || m.c_row_stride == m.nr);
        let fill_ok = run.src.is_none()
            && run.fill.to_bits() == 0
            && run.dst.0 == *buf
            && crate::bulk::run_len(nest, run) == m.mr * m.nr
            && same_origin(
                nest,
                an,
                run.dst.1,
                &[Some(run.inner), run.outer],
                m.c.1,
                &[Some(m.j_loop), m.i_loop],
            );
        let Src::Operand(t) = p.start else { continue };
        let reads_t = |s: &Step| s.src == Src::Operand(t);
        let wb_ok = p.rows as i64 == m.mr
            && p.cols as i64 == m.nr
            && e.operands[t].0 == *buf
            && e.operands.iter().filter(|o| o.0 == *buf).count() == 1
            && !p.steps.iter().any(reads_t)
            && (p.rows == 1 || p.lds[t] == m.c_row_stride as isize)
            && e.dst.0 != *buf
            && same_origin(
                nest,
                an,
                e.operands[t].1,
                &[Some(e.inner), e.outer],
                m.c.1,
                &[Some(m.j_loop), m.i_loop],
            );
        let blocks = tessel_ir::tensorize::strip_blocks(isa, m.mr, m.nr);
        let kernels_ok =
            !blocks.is_empty() && blocks.iter().all(|&r| fused_kernel(isa, r, m.nr).is_some());
        if tile_ok && outer_ok && fill_ok && wb_ok && kernels_ok {
            out.insert(
                k,
                KernelPlan {
                    fill: f,
                    write_back: w,
                    outer,
                },
            );
        }
    }
    out
}

#[cfg(target_arch = "x86_64")]
mod imp_fused {
    use super::{FusedKernelFn, Op, Program, Src};
    use std::arch::x86_64::*;
    use tessel_ir::target::Isa;

    pub(super) fn lookup(isa: Isa, mr: i64, nr: i64) -> Option<FusedKernelFn> {
        match isa {
            Isa::Avx512 => avx512::lookup(mr, nr),
            Isa::Avx2 => avx2::lookup(mr, nr),
            Isa::Generic => None,
        }
    }

    macro_rules! family {
        (
            $name:ident, $feature:literal, $v:ty, lanes = $l:expr, zero = $zero:path,
            splat = $splat:path, loadu = $loadu:path, storeu = $storeu:path, fma = $fma:path,
            add = $add:path, sub = $sub:path, mul = $mul:path, min = $min:path, max = $max:path,
            shapes = [$( ($nv:literal, $u:literal, [$($m:literal)*]) )*] $(,)?
        ) => {
            pub(super) mod $name {
                use super::*;

                /// Lanes of a vector.
                const L: usize = $l;

                /// The fused kernel of each shape of the family's broadcast kernels
                /// (`ukernel`), its `k` loop unrolled as the chosen plain form is.
                pub(in super::super) fn lookup(mr: i64, nr: i64) -> Option<FusedKernelFn> {
                    if nr % L as i64 != 0 {
                        return None;
                    }
                    let nv = nr / L as i64;
                    $( $( if mr == $m && nv == $nv { return Some(fused::<$m, $nv, $u>); } )* )*
                    None
                }

                /// One reduction step of the tile.
                ///
                /// # Safety
                /// The feature; `bp[0..L·NV]` and every `rows[i] + off` valid.
                #[target_feature(enable = $feature)]
                #[inline]
                unsafe fn fma_step<const MR: usize, const NV: usize>(
                    acc: &mut [[$v; NV]; MR],
                    bp: *const f32,
                    rows: &[*const f32; MR],
                    off: isize,
                ) {
                    // SAFETY: as the caller guarantees.
                    unsafe {
                        let mut bv = [$zero(); NV];
                        for (v, x) in bv.iter_mut().enumerate() {
                            *x = $loadu(bp.add(L * v));
                        }
                        for (i, r) in acc.iter_mut().enumerate() {
                            let ai = $splat(*rows[i].offset(off));
                            for (x, &y) in r.iter_mut().zip(bv.iter()) {
                                *x = $fma(ai, y, *x);
                            }
                        }
                    }
                }

                /// The fused kernel (see [`FusedKernelFn`]).
                ///
                /// # Safety
                /// The feature; the micro-kernel's `a` and `b` accesses valid (as for the
                /// plain kernel), `program` a valid [`Program`] whose start is an operand
                /// no step reads, and every output and operand element of rows
                /// `row0..row0 + MR` valid.
                #[target_feature(enable = $feature)]
                #[allow(clippy::too_many_arguments)]
                unsafe extern "C" fn fused<const MR: usize, const NV: usize, const U: usize>(
                    k2: i64,
                    a_k2s: i64,
                    b_k2s: i64,
                    k: i64,
                    a: *const f32,
                    a_rs: i64,
                    a_ks: i64,
                    b: *const f32,
                    b_ks: i64,
                    program: *const u8,
                    ptrs: *const *mut f32,
                    row0: i64,
                ) {
                    // SAFETY (whole body): as the caller guarantees; unaligned accesses.
                    unsafe {
                        let p = &*(program as *const Program);
                        let mut rows = [a; MR];
                        for (i, r) in rows.iter_mut().enumerate() {
                            *r = a.offset(i as isize * a_rs as isize);
                        }
                        let mut acc = [[$zero(); NV]; MR];
                        let (a_ks, b_ks) = (a_ks as isize, b_ks as isize);
                        // The folded outer reduction (a window's rows), then `k`.
                        for q2 in 0..k2 as isize {
                            let mut off = q2 * a_k2s as isize;
                            let mut bp = b.offset(q2 * b_k2s as isize);
                            let mut q = 0i64;
                            while q + U as i64 <= k {
                                for u in 0..U as isize {
                                    fma_step(&mut acc, bp.offset(u * b_ks), &rows, off + u * a_ks);
                                }
                                off += U as isize * a_ks;
                                bp = bp.offset(U as isize * b_ks);
                                q += U as i64;
                            }
                            while q < k {
                                fma_step(&mut acc, bp, &rows, off);
                                off += a_ks;
                                bp = bp.offset(b_ks);
                                q += 1;
                            }
                        }
                        let row0 = row0 as isize;
                        macro_rules! each {
                            ($f:path, $swap:expr, |$i:ident, $w:ident| $leaf:expr) => {
                                for $i in 0..MR {
                                    for $w in 0..NV {
                                        let (x, l) = (acc[$i][$w], $leaf);
                                        acc[$i][$w] = if $swap { $f(l, x) } else { $f(x, l) };
                                    }
                                }
                            };
                        }
                        // vminps/vmaxps return the second operand unless the first is
                        // strictly smaller/larger: `x < y ? x : y`, `y < x ? x : y`.
                        macro_rules! apply {
                            ($op:expr, $lf:expr, |$i:ident, $w:ident| $leaf:expr) => {
                                match ($op, $lf) {
                                    (Op::Add, _) => each!($add, false, |$i, $w| $leaf),
                                    (Op::Mul, _) => each!($mul, false, |$i, $w| $leaf),
                                    (Op::Sub, false) => each!($sub, false, |$i, $w| $leaf),
                                    (Op::Sub, true) => each!($sub, true, |$i, $w| $leaf),
                                    (Op::Min, false) => each!($min, false, |$i, $w| $leaf),
                                    (Op::Min, true) => each!($min, true, |$i, $w| $leaf),
                                    (Op::Max, false) => each!($max, false, |$i, $w| $leaf),
                                    (Op::Max, true) => each!($max, true, |$i, $w| $leaf),
                                }
                            };
                        }
                        for s in &p.steps {
                            match s.src {
                                Src::Const(c) => {
                                    let c = $splat(c);
                                    apply!(s.op, s.leaf_first, |_i, _w| c)
                                }
                                Src::Operand(o) => {
                                    let base = *ptrs.add(1 + o) as *const f32;
                                    let ld = p.lds[o];
                                    let mut lrows = [base; MR];
                                    for (i, r) in lrows.iter_mut().enumerate() {
                                        *r = base.offset((row0 + i as isize) * ld);
                                    }
                                    apply!(s.op, s.leaf_first, |i, w| $loadu(lrows[i].add(L * w)))
                                }
                            }
                        }
                        let out = *ptrs;
                        for (i, r) in acc.iter().enumerate() {
                            let o = out.offset((row0 + i as isize) * p.ldo);
                            for (w, x) in r.iter().enumerate() {
                                $storeu(o.add(L * w), *x);
                            }
                        }
                    }
                }
            }
        };
    }

    family!(
        avx512, "avx512f", __m512, lanes = 16, zero = _mm512_setzero_ps,
        splat = _mm512_set1_ps, loadu = _mm512_loadu_ps, storeu = _mm512_storeu_ps,
        fma = _mm512_fmadd_ps,
        add = _mm512_add_ps, sub = _mm512_sub_ps, mul = _mm512_mul_ps,
        min = _mm512_min_ps, max = _mm512_max_ps,
        shapes = [
            (1, 2, [1 2 3 4 5 6 7 8 9 10 11 12 13 14])
            (2, 1, [1 2 3 4 5 6 7 8 9 10 11 12 13 14])
            (3, 2, [1 2 3 4 5 6 7 8 9])
            (4, 2, [1 2 3 4 5 6])
        ],
    );

    family!(
        avx2, "avx2,fma", __m256, lanes = 8, zero = _mm256_setzero_ps,
        splat = _mm256_set1_ps, loadu = _mm256_loadu_ps, storeu = _mm256_storeu_ps,
        fma = _mm256_fmadd_ps,
        add = _mm256_add_ps, sub = _mm256_sub_ps, mul = _mm256_mul_ps,
        min = _mm256_min_ps, max = _mm256_max_ps,
        shapes = [
            (1, 1, [1 2 3 4 5 6 8])
            (1, 2, [7])
            (2, 1, [1 2 3 4 5 6])
            (3, 1, [1 2 3])
            (3, 2, [4])
            (4, 1, [1 2])
        ],
    );
}

#[cfg(not(target_arch = "x86_64"))]
mod imp_fused {
    use super::FusedKernelFn;
    use tessel_ir::target::Isa;

    pub(super) fn lookup(_isa: Isa, _mr: i64, _nr: i64) -> Option<FusedKernelFn> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_rng::Rng;

    fn random_program(rng: &mut Rng) -> Program {
        let rows = 1 + rng.below(20) as usize;
        let cols = 1 + rng.below(150) as usize;
        let n_ops = 1 + rng.below(4) as usize;
        let lds: Vec<isize> = (0..n_ops)
            .map(|_| match rng.below(3) {
                0 => 0,
                1 => cols as isize,
                _ => cols as isize + rng.below(9) as isize,
            })
            .collect();
        let src = |rng: &mut Rng| {
            if rng.below(3) == 0 {
                Src::Const(rng.below(9) as f32 - 4.0)
            } else {
                Src::Operand(rng.below(n_ops as u64) as usize)
            }
        };
        let ops = [Op::Add, Op::Sub, Op::Mul, Op::Min, Op::Max];
        let steps = (0..1 + rng.below(5))
            .map(|_| Step {
                op: ops[rng.below(5) as usize],
                src: src(rng),
                leaf_first: rng.below(2) == 0,
            })
            .collect();
        Program {
            rows,
            cols,
            ldo: cols as isize + rng.below(5) as isize,
            lds,
            start: Src::Operand(0),
            steps,
        }
    }

    #[test]
    fn every_routine_matches_the_reference_on_random_programs() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for isa in Isa::ALL {
            let Some(f) = routine(isa) else {
                eprintln!("skipping {isa}: no epilogue routine on this CPU");
                continue;
            };
            for _ in 0..300 {
                let p = random_program(&mut rng);
                assert!(p.is_valid());
                let span = |ld: isize| (p.rows - 1) * ld.max(0) as usize + p.cols;
                // Values with negatives, zeros and ties, so that min/max order matters.
                let inputs: Vec<Vec<f32>> = p
                    .lds
                    .iter()
                    .map(|&ld| {
                        (0..span(ld))
                            .map(|_| (rng.below(13) as f32 - 6.0) * 0.5)
                            .collect()
                    })
                    .collect();
                let len = span(p.ldo) + 3;
                let mut want = vec![f32::NAN; len];
                let mut got = want.clone();
                let run = |g: EpilogueFn, out: &mut Vec<f32>| {
                    let mut ptrs: Vec<*mut f32> = vec![out.as_mut_ptr()];
                    ptrs.extend(inputs.iter().map(|v| v.as_ptr() as *mut f32));
                    // SAFETY: every row of every buffer is in bounds (`span`), the program
                    // is valid and the loads do not overlap the output.
                    unsafe { g(&p as *const Program as *const u8, ptrs.as_ptr()) }
                };
                run(epilogue_reference, &mut want);
                run(f, &mut got);
                let same = want
                    .iter()
                    .zip(&got)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{isa}: {p:?}");
                // Nothing past the last row's last column is written.
                assert!(got[span(p.ldo)..].iter().all(|v| v.is_nan()));
            }
        }
    }

    #[test]
    fn fused_kernels_compute_the_tile_then_the_chain() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let shapes = [
            (
                Isa::Avx512,
                [
                    (1, 16),
                    (14, 16),
                    (8, 32),
                    (9, 48),
                    (6, 64),
                    (5, 64),
                    (3, 48),
                ],
            ),
            (
                Isa::Avx2,
                [(1, 8), (8, 8), (7, 8), (6, 16), (4, 24), (3, 24), (2, 32)],
            ),
        ];
        for (isa, mr, nr) in shapes
            .into_iter()
            .flat_map(|(isa, v)| v.into_iter().map(move |(m, n)| (isa, m, n)))
        {
            let Some(f) = fused_kernel(isa, mr, nr) else {
                assert!(!crate::ukernel::available(isa), "{isa} {mr}x{nr}");
                eprintln!("skipping {isa}: no fused kernels on this CPU");
                continue;
            };
            assert!(fused_kernel(isa, mr, nr + 4).is_none());
            for _ in 0..20 {
                let (m, n) = (mr as usize, nr as usize);
                let k = 1 + rng.below(9) as usize;
                let (a_rs, a_ks, b_ks) = (k + rng.below(3) as usize, 1, n + rng.below(5) as usize);
                // A folded outer reduction (a window's rows) half of the time.
                let k2 = 1 + rng.below(2) as usize * (1 + rng.below(3) as usize);
                let (a_k2s, b_k2s) = (m * a_rs + rng.below(4) as usize, k * b_ks + n);
                let small = |rng: &mut Rng| (rng.below(13) as f32 - 6.0) * 0.25;
                let a: Vec<f32> = (0..k2 * a_k2s + m * a_rs + k)
                    .map(|_| small(&mut rng))
                    .collect();
                let b: Vec<f32> = (0..k2 * b_k2s).map(|_| small(&mut rng)).collect();
                // The tile as the zero fill and the plain kernel in its window loop compute it.
                let mut tile = vec![0f32; m * n];
                for (i, row) in tile.chunks_mut(n).enumerate() {
                    for (j, t) in row.iter_mut().enumerate() {
                        for q in 0..k2 {
                            for p in 0..k {
                                let x = a[q * a_k2s + i * a_rs + p * a_ks];
                                *t = x.mul_add(b[q * b_k2s + p * b_ks + j], *t);
                            }
                        }
                    }
                }
                // A chain on the tile (operand 0), two rows of offset `row0` into bigger
                // operands and output.
                let mut p = random_program(&mut rng);
                let row0 = rng.below(3) as usize;
                p.rows = m + row0;
                p.cols = n;
                p.ldo = n as isize + rng.below(3) as isize;
                p.lds[0] = n as isize;
                p.start = Src::Operand(0);
                for s in p.steps.iter_mut() {
                    if s.src == Src::Operand(0) {
                        s.src = Src::Const(1.5);
                    }
                }
                assert!(p.is_valid());
                let span = |ld: isize| (p.rows - 1) * ld.max(0) as usize + p.cols;
                let mut inputs: Vec<Vec<f32>> = p
                    .lds
                    .iter()
                    .map(|&ld| (0..span(ld)).map(|_| small(&mut rng)).collect())
                    .collect();
                // Rows `row0..` of operand 0 are the tile (for the reference only).
                inputs[0][row0 * n..].copy_from_slice(&tile);
                let mut want = vec![f32::NAN; span(p.ldo)];
                let mut got = want.clone();
                let mut ptrs: Vec<*mut f32> = vec![want.as_mut_ptr()];
                ptrs.extend(inputs.iter().map(|v| v.as_ptr() as *mut f32));
                // SAFETY: every row in bounds (`span`), the program valid.
                unsafe { epilogue_reference(&p as *const Program as *const u8, ptrs.as_ptr()) };
                ptrs[0] = got.as_mut_ptr();
                ptrs[1] = std::ptr::null_mut();
                // SAFETY: `a`, `b` hold the tile's operands; rows `row0..row0 + mr` of the
                // output and of every operand but the (unread) tile are in bounds.
                unsafe {
                    f(
                        k2 as i64,
                        a_k2s as i64,
                        b_k2s as i64,
                        k as i64,
                        a.as_ptr(),
                        a_rs as i64,
                        a_ks as i64,
                        b.as_ptr(),
                        b_ks as i64,
                        &p as *const Program as *const u8,
                        ptrs.as_ptr(),
                        row0 as i64,
                    )
                };
                let rows = |v: &[f32]| -> Vec<u32> {
                    (row0..p.rows)
                        .flat_map(|i| (0..n).map(move |j| (i, j)))
                        .map(|(i, j)| v[i * p.ldo as usize + j].to_bits())
                        .collect()
                };
                assert_eq!(rows(&got), rows(&want), "{isa} {mr}x{nr} k {k}x{k2} {p:?}");
                // Rows before `row0` untouched.
                assert!(got[..row0 * p.ldo as usize].iter().all(|v| v.is_nan()));
            }
        }
    }

    #[test]
    fn chain_text_names_the_loads() {
        let p = Program {
            rows: 1,
            cols: 16,
            ldo: 16,
            lds: vec![16, 0],
            start: Src::Operand(0),
            steps: vec![
                Step {
                    op: Op::Add,
                    src: Src::Operand(1),
                    leaf_first: false,
                },
                Step {
                    op: Op::Max,
                    src: Src::Const(0.0),
                    leaf_first: false,
                },
                Step {
                    op: Op::Sub,
                    src: Src::Const(6.0),
                    leaf_first: true,
                },
            ],
        };
        assert_eq!(
            p.chain_text(&["t".into(), "bias".into()]),
            "(6 - max((t + bias), 0))"
        );
        let bad = Program {
            start: Src::Operand(2),
            ..p
        };
        assert!(!bad.is_valid());
    }
}
