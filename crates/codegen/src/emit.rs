//! Translation of a loop nest into Cranelift IR.
//!
//! One [`Emitter`] builds one Cranelift function: the kernel entry `(bufs, rt)` or an outlined
//! parallel body `(ctx, start, end)`. It walks the statement tree with an environment mapping
//! loop variables to compile-time constants (unrolled loops, SIMD chunks) or SSA values
//! (serial loops), so that integer index arithmetic folds wherever it can. In SIMD mode
//! (`vec` is set) the environment holds lane 0 of the vectorized variable and expressions
//! evaluate to `f32x4` values.

use crate::analysis::{visit_loads, Analysis, Layout};
use crate::analysis::{MAX_STATIC_VECTOR, MAX_UNROLL};
use crate::ukernel::{KernelKind, KernelShape};
use crate::{CodegenError, CompileOptions};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::immediates::Ieee32;
use cranelift_codegen::ir::types::{F32, F32X4, I64, I8};
use cranelift_codegen::ir::{
    AbiParam, Endianness, FuncRef, Function, InstBuilder, MemFlagsData, Signature, StackSlotData,
    StackSlotKind, UserFuncName, Value,
};
use cranelift_codegen::Context;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use cranelift_jit::JITModule;
use cranelift_module::{FuncId, Linkage, Module};
use std::collections::{HashMap, HashSet};
use tessel_ir::affine::{Affine, Term};
use tessel_ir::expr::{BinOp, ScalarType, UnOp};
use tessel_ir::interval::{interval, refine, Interval};
use tessel_ir::loop_nest::{BufferId, BufferScope, ExprId, LoopId, LoopKind, Node, Stmt, StmtId};
use tessel_ir::LoopNest;

type R<T> = Result<T, CodegenError>;

/// Largest local buffer placed in a stack slot, in bytes.
const MAX_STACK_BYTES: i64 = 8 << 20;
/// Most `Select` conditions one vectorized loop is unswitched on ([`Emitter::invariant_guard`]).
const MAX_UNSWITCHED: usize = 2;

/// State shared by all functions of one kernel.
pub(crate) struct Compiler<'n> {
    pub nest: &'n LoopNest,
    pub an: Analysis,
    pub module: JITModule,
    pub opts: CompileOptions,
    pub ctx: Context,
    pub exp_fn: FuncId,
    pub par_fn: FuncId,
    /// Imported micro-kernels by family and register tile `(kind, mr, nr)`.
    pub ukernels: HashMap<KernelShape, FuncId>,
    /// The imported run routine ([`crate::bulk`]), when the nest has runs.
    pub run_fn: Option<FuncId>,
    /// The imported epilogue routine ([`crate::epilogue`]), when the nest has fused
    /// write-backs.
    pub epilogue_fn: Option<FuncId>,
    /// Imported fused kernels ([`crate::epilogue::FusedKernelFn`]) by register tile.
    pub fused_kernels: HashMap<(i64, i64), FuncId>,
    /// Imported zero-start elementwise kernels by register tile `(mr, nr)`.
    pub zero_kernels: HashMap<(i64, i64), FuncId>,
    pub n_funcs: u32,
    pub ir_text: String,
    pub disasm: String,
}

/// The pseudo buffer id of packed weight copy `k` (ids past the nest's buffers; they only
/// ever index `bases`).
pub(crate) fn packed_id(nest: &LoopNest, k: usize) -> BufferId {
    BufferId((nest.buffers.len() + k) as u32)
}

/// The order of the entries of the buffer pointer array the kernel entry receives: the
/// parameters, then the global temporaries (then the packed weight copies).
pub(crate) fn buffer_order(nest: &LoopNest) -> Vec<BufferId> {
    let mut v = nest.params.clone();
    v.extend(
        (0..nest.buffers.len() as u32)
            .map(BufferId)
            .filter(|&b| nest.buffer(b).scope == BufferScope::Global),
    );
    v
}

impl<'n> Compiler<'n> {
    fn new_func(&mut self, params: usize) -> R<(FuncId, Function)> {
        let mut sig = self.module.make_signature();
        for _ in 0..params {
            sig.params.push(AbiParam::new(I64));
        }
        self.n_funcs += 1;
        let name = format!("{}_f{}", sanitize(&self.nest.name), self.n_funcs);
        let id = self
            .module
            .declare_function(&name, Linkage::Local, &sig)
            .map_err(|e| CodegenError::Cranelift(format!("{e:?}")))?;
        let func = Function::with_name_signature(UserFuncName::user(0, id.as_u32()), sig);
        Ok((id, func))
    }

    fn define(&mut self, id: FuncId, func: Function) -> R<()> {
        self.ctx.clear();
        self.ctx.func = func;
        self.ctx.set_disasm(self.opts.disasm);
        self.module
            .define_function(id, &mut self.ctx)
            .map_err(|e| CodegenError::Cranelift(format!("{e:?}")))?;
        if self.opts.keep_ir {
            self.ir_text.push_str(&self.ctx.func.display().to_string());
            self.ir_text.push('\n');
        }
        if self.opts.disasm {
            if let Some(v) = self.ctx.compiled_code().and_then(|c| c.vcode.as_ref()) {
                self.disasm.push_str(v);
                self.disasm.push('\n');
            }
        }
        self.ctx.clear();
        Ok(())
    }

    /// Builds the kernel entry `fn(bufs: *const *mut f32, rt: *const Runtime)`.
    pub fn build_main(&mut self) -> R<FuncId> {
        let (id, mut func) = self.new_func(2)?;
        let mut fctx = FunctionBuilderContext::new();
        let mut b = FunctionBuilder::new(&mut func, &mut fctx);
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let (bufs, rt) = (b.block_params(entry)[0], b.block_params(entry)[1]);
        let mut bases = HashMap::new();
        let flags = MemFlagsData::trusted().with_readonly().with_can_move();
        let packed = (0..self.an.packs.len()).map(|k| packed_id(self.nest, k));
        for (k, buf) in buffer_order(self.nest)
            .into_iter()
            .chain(packed)
            .enumerate()
        {
            let p = b.ins().load(I64, flags, bufs, (8 * k) as i32);
            bases.insert(buf, p);
        }
        let nest = self.nest;
        let mut e = Emitter::new(self, b, bases, HashMap::new(), HashMap::new(), Some(rt));
        e.emit_block(&nest.body)?;
        e.b.ins().return_(&[]);
        e.finish();
        self.define(id, func)?;
        Ok(id)
    }

    /// Builds the outlined body of parallel loop `lp`: `fn(ctx, start, end)` that loads the
    /// buffer pointers and loop variables listed from `ctx` and runs iterations `start..end`.
    #[allow(clippy::too_many_arguments)]
    fn build_body(
        &mut self,
        lp: LoopId,
        body: &[StmtId],
        bufs: &[BufferId],
        vars: &[LoopId],
        consts: &HashMap<LoopId, i64>,
        known: &HashMap<ExprId, Interval>,
    ) -> R<FuncId> {
        let (id, mut func) = self.new_func(3)?;
        let mut fctx = FunctionBuilderContext::new();
        let mut b = FunctionBuilder::new(&mut func, &mut fctx);
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let p = b.block_params(entry).to_vec();
        let (ctx, start, end) = (p[0], p[1], p[2]);
        let flags = MemFlagsData::trusted().with_readonly().with_can_move();
        let mut bases = HashMap::new();
        for (k, &buf) in bufs.iter().enumerate() {
            bases.insert(buf, b.ins().load(I64, flags, ctx, (8 * k) as i32));
        }
        let mut env: HashMap<LoopId, IVal> =
            consts.iter().map(|(&l, &c)| (l, IVal::Const(c))).collect();
        for (k, &l) in vars.iter().enumerate() {
            let v = b.ins().load(I64, flags, ctx, (8 * (bufs.len() + k)) as i32);
            env.insert(l, IVal::Dyn(v));
        }
        let mut e = Emitter::new(self, b, bases, env, known.clone(), None);
        e.counted_loop(lp, start, IVal::Dyn(end), 1, &mut |e| e.emit_block(body))?;
        e.b.ins().return_(&[]);
        e.finish();
        self.define(id, func)?;
        Ok(id)
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// An integer: known at compile time, or an SSA value.
#[derive(Clone, Copy, Debug)]
enum IVal {
    Const(i64),
    Dyn(Value),
}

/// A boolean: known at compile time, or an `i8` SSA value (0 or 1).
#[derive(Clone, Copy, Debug)]
enum BVal {
    Const(bool),
    Dyn(Value),
}

/// A local buffer held in SSA variables.
#[derive(Clone)]
struct Promo {
    layout: Layout,
    vars: Vec<Variable>,
    len: i64,
}

struct Emitter<'c, 'n, 'f> {
    c: &'c mut Compiler<'n>,
    nest: &'n LoopNest,
    b: FunctionBuilder<'f>,
    env: HashMap<LoopId, IVal>,
    bases: HashMap<BufferId, Value>,
    promoted: HashMap<BufferId, Promo>,
    known: HashMap<ExprId, Interval>,
    rt: Option<Value>,
    vec: Option<LoopId>,
    exp_ref: Option<FuncRef>,
    par_ref: Option<FuncRef>,
    uk_refs: HashMap<KernelShape, FuncRef>,
    zero_refs: HashMap<(i64, i64), FuncRef>,
    run_ref: Option<FuncRef>,
    epi_ref: Option<FuncRef>,
    fused_refs: HashMap<(i64, i64), FuncRef>,
    /// Live read-through copies ([`crate::through`]): the interior flag (`None` when known
    /// to hold) and the source address of the copy's first element.
    through: HashMap<BufferId, (Option<Value>, Value)>,
    /// The live read-through copies that are never filled: their calls read the source on
    /// edge tiles too, through the guarded kernels ([`crate::through::EdgeGuard`]).
    guarded: std::collections::HashSet<BufferId>,
    /// Select conditions decided by an enclosing unswitched branch
    /// ([`Emitter::invariant_guard`]).
    forced: HashMap<ExprId, bool>,
}

fn scalar_flags() -> MemFlagsData {
    MemFlagsData::trusted()
}

fn vector_flags() -> MemFlagsData {
    // Not `aligned`: a vector access is only 4-byte aligned.
    MemFlagsData::new().with_notrap()
}

impl<'c, 'n, 'f> Emitter<'c, 'n, 'f> {
    fn new(
        c: &'c mut Compiler<'n>,
        b: FunctionBuilder<'f>,
        bases: HashMap<BufferId, Value>,
        env: HashMap<LoopId, IVal>,
        known: HashMap<ExprId, Interval>,
        rt: Option<Value>,
    ) -> Self {
        let nest = c.nest;
        Emitter {
            c,
            nest,
            b,
            env,
            bases,
            promoted: HashMap::new(),
            known,
            rt,
            vec: None,
            exp_ref: None,
            par_ref: None,
            uk_refs: HashMap::new(),
            zero_refs: HashMap::new(),
            run_ref: None,
            epi_ref: None,
            fused_refs: HashMap::new(),
            through: HashMap::new(),
            guarded: std::collections::HashSet::new(),
            forced: HashMap::new(),
        }
    }

    fn finish(mut self) {
        self.b.seal_all_blocks();
        let cfg = self.c.module.isa().frontend_config();
        self.b.finalize(cfg);
    }

    fn internal(msg: &str) -> CodegenError {
        CodegenError::InvalidNest(msg.to_string())
    }

    // ---------------------------------------------------------------- statements

    fn emit_block(&mut self, body: &[StmtId]) -> R<()> {
        for &s in body {
            self.emit_stmt(s)?;
        }
        Ok(())
    }

    fn emit_stmt(&mut self, s: StmtId) -> R<()> {
        let nest = self.nest;
        match nest.stmt(s) {
            Stmt::For { lp, body, .. } => self.emit_for(*lp, body),
            Stmt::If { cond, body } => self.emit_if(*cond, body),
            Stmt::Alloc { buf, body } => self.emit_alloc(s, *buf, body),
            Stmt::Store { buf, index, value } => {
                if self.vec.is_some() {
                    self.store_vector(*buf, *index, *value)
                } else {
                    let v = self.eval_f(*value)?;
                    self.store_scalar(*buf, *index, v)
                }
            }
        }
    }

    fn emit_for(&mut self, lp: LoopId, body: &[StmtId]) -> R<()> {
        let l = self.nest.lp(lp);
        let extent = l.extent;
        if extent <= 0 {
            return Ok(());
        }
        let prev = self.env.get(&lp).copied();
        match l.kind {
            LoopKind::Parallel if self.c.an.outlined.contains(&lp) && self.vec.is_none() => {
                self.emit_parallel(lp, body)?
            }
            _ if self.vec.is_none() && self.c.an.zero_init.values().any(|&f| f == lp) => {
                // A zero fill fused into the micro-kernel call that follows it.
            }
            _ if self.vec.is_none()
                && self
                    .c
                    .an
                    .kernel_epilogues
                    .values()
                    .any(|p| p.fill == lp || p.write_back == lp) =>
            {
                // The zero fill and the write-back of a fused kernel call.
            }
            _ if self.vec.is_none()
                && self.c.run_fn.is_some()
                && self.c.an.runs.contains_key(&lp) =>
            {
                self.emit_run(lp)?
            }
            _ if self.vec.is_none()
                && self.c.epilogue_fn.is_some()
                && self.c.an.epilogues.contains_key(&lp) =>
            {
                self.emit_epilogue(lp)?
            }
            LoopKind::Vectorized if self.vec.is_none() => self.emit_vectorized(lp, body)?,
            _ if self.vec.is_none() && self.c.an.folded.contains_key(&lp) => {
                // A reduction loop folded into the micro-kernel call it encloses.
                let inner = self.c.an.folded[&lp];
                self.emit_tensorized(inner)?
            }
            LoopKind::Tensorized
                if self.vec.is_none() && self.c.an.tensorized.contains_key(&lp) =>
            {
                self.emit_tensorized(lp)?
            }
            LoopKind::Serial | LoopKind::Unrolled
                if self.vec.is_none() && self.c.an.auto_vector.contains(&lp) =>
            {
                // Unrolled loops keep their constant variable: chunks unrolled too.
                let unroll = l.kind == LoopKind::Unrolled && extent <= MAX_UNROLL;
                self.simd_chunks(lp, body, unroll || extent < 8)?
            }
            LoopKind::Unrolled | LoopKind::Vectorized if extent <= MAX_UNROLL => {
                for t in 0..extent {
                    self.env.insert(lp, IVal::Const(t));
                    self.emit_block(body)?;
                }
            }
            _ => self.serial(lp, extent, body)?,
        }
        match prev {
            Some(v) => self.env.insert(lp, v),
            None => self.env.remove(&lp),
        };
        Ok(())
    }

    fn serial(&mut self, lp: LoopId, extent: i64, body: &[StmtId]) -> R<()> {
        if extent == 1 {
            self.env.insert(lp, IVal::Const(0));
            return self.emit_block(body);
        }
        let zero = self.b.ins().iconst(I64, 0);
        self.counted_loop(lp, zero, IVal::Const(extent), 1, &mut |e| {
            e.emit_block(body)
        })
    }

    /// `for lp in (start..end).step_by(step) { f }`, as a do-while loop (the caller
    /// guarantees at least one iteration).
    fn counted_loop(
        &mut self,
        lp: LoopId,
        start: Value,
        end: IVal,
        step: i64,
        f: &mut dyn FnMut(&mut Self) -> R<()>,
    ) -> R<()> {
        let header = self.b.create_block();
        let exit = self.b.create_block();
        let i = self.b.append_block_param(header, I64);
        self.b.ins().jump(header, &[start.into()]);
        self.b.switch_to_block(header);
        self.env.insert(lp, IVal::Dyn(i));
        f(self)?;
        let next = self.b.ins().iadd_imm_s(i, step);
        let c = match end {
            IVal::Const(n) => self.b.ins().icmp_imm_s(IntCC::SignedLessThan, next, n),
            IVal::Dyn(n) => self.b.ins().icmp(IntCC::SignedLessThan, next, n),
        };
        self.b.ins().brif(c, header, &[next.into()], exit, &[]);
        self.b.switch_to_block(exit);
        Ok(())
    }

    fn emit_vectorized(&mut self, lp: LoopId, body: &[StmtId]) -> R<()> {
        let extent = self.nest.lp(lp).extent;
        if !self.c.an.vector_ok.contains(&lp) {
            // Per-lane scalar code.
            if extent <= MAX_STATIC_VECTOR {
                for t in 0..extent {
                    self.env.insert(lp, IVal::Const(t));
                    self.emit_block(body)?;
                }
                return Ok(());
            }
            return self.serial(lp, extent, body);
        }
        if let Some(c) = self.invariant_guard(lp, body) {
            if let BVal::Dyn(cv) = self.eval_bool(c)? {
                // Unswitched: one branch for the whole vector loop instead of one per chunk,
                // and the taken side's loads proven in bounds.
                let then = self.b.create_block();
                let els = self.b.create_block();
                let merge = self.b.create_block();
                self.b.ins().brif(cv, then, &[], els, &[]);
                for (block, holds) in [(then, true), (els, false)] {
                    self.b.switch_to_block(block);
                    self.forced.insert(c, holds);
                    let r = if holds {
                        self.refined(c, |e| e.emit_vectorized(lp, body))
                    } else {
                        self.emit_vectorized(lp, body)
                    };
                    self.forced.remove(&c);
                    r?;
                    self.b.ins().jump(merge, &[]);
                }
                self.b.switch_to_block(merge);
                return Ok(());
            }
        }
        self.simd_chunks(lp, body, extent <= MAX_STATIC_VECTOR)
    }

    /// The condition of a `Select` in vectorized loop `lp`'s body that the loop's variable
    /// does not change and whose chosen value loads out of the proven range (a padding guard
    /// read through: `select(1 <= h && h < H + 1, X[..], fill)`): emitting the loop once
    /// per outcome replaces a branch per `f32x4` chunk by one per loop. At most
    /// [`MAX_UNSWITCHED`] conditions per loop (the code doubles with each).
    fn invariant_guard(&self, lp: LoopId, body: &[StmtId]) -> Option<ExprId> {
        if self.forced.len() >= MAX_UNSWITCHED {
            return None;
        }
        let mut roots = Vec::new();
        for &s in body {
            match self.nest.stmt(s) {
                Stmt::Store { index, value, .. } => roots.extend([*index, *value]),
                _ => return None,
            }
        }
        let mut found = None;
        let mut seen = HashSet::new();
        let mut stack = roots;
        while let Some(e) = stack.pop() {
            if found.is_some() || !seen.insert(e) {
                continue;
            }
            match self.nest.get(e) {
                Node::Select(c, a, b) => {
                    let bound = self.c.an.vars_of(c).all(|l| self.env.contains_key(&l));
                    if !self.c.an.depends(c, lp)
                        && bound
                        && !self.forced.contains_key(&c)
                        && self.nest.ty(e) == ScalarType::Float
                        && (self.risky(a) || self.risky(b))
                    {
                        found = Some(c);
                    }
                    stack.extend([a, b]);
                }
                Node::Load(_, i) => stack.push(i),
                Node::Unary(_, a) => stack.push(a),
                Node::Binary(_, a, b) => stack.extend([a, b]),
                Node::Int(_) | Node::Float(_) | Node::Var(_) => {}
            }
        }
        found
    }

    /// Loop `lp` (its body SIMD-safe, see `Analysis::vectorizable`) as `f32x4` chunks, all
    /// unrolled when `unroll` or else a counted loop of them, then a scalar tail for the
    /// last `extent % 4` iterations.
    fn simd_chunks(&mut self, lp: LoopId, body: &[StmtId], unroll: bool) -> R<()> {
        let extent = self.nest.lp(lp).extent;
        let n4 = extent / 4;
        if unroll {
            for c in 0..n4 {
                self.env.insert(lp, IVal::Const(4 * c));
                self.vec = Some(lp);
                let r = self.emit_block(body);
                self.vec = None;
                r?;
            }
        } else {
            let zero = self.b.ins().iconst(I64, 0);
            self.counted_loop(lp, zero, IVal::Const(4 * n4), 4, &mut |e| {
                e.vec = Some(lp);
                let r = e.emit_block(body);
                e.vec = None;
                r
            })?;
        }
        for t in 4 * n4..extent {
            self.env.insert(lp, IVal::Const(t));
            self.emit_block(body)?;
        }
        Ok(())
    }

    fn emit_if(&mut self, cond: ExprId, body: &[StmtId]) -> R<()> {
        match self.eval_bool(cond)? {
            BVal::Const(false) => Ok(()),
            BVal::Const(true) => self.refined(cond, |e| e.emit_block(body)),
            BVal::Dyn(c) => {
                let then = self.b.create_block();
                let merge = self.b.create_block();
                self.b.ins().brif(c, then, &[], merge, &[]);
                self.b.switch_to_block(then);
                self.refined(cond, |e| e.emit_block(body))?;
                self.b.ins().jump(merge, &[]);
                self.b.switch_to_block(merge);
                Ok(())
            }
        }
    }

    /// Runs `f` knowing that `cond` holds (for bounds proofs).
    fn refined<T>(&mut self, cond: ExprId, f: impl FnOnce(&mut Self) -> R<T>) -> R<T> {
        let saved = self.known.clone();
        refine(self.nest, cond, &mut self.known);
        let r = f(self);
        self.known = saved;
        r
    }

    fn emit_alloc(&mut self, s: StmtId, buf: BufferId, body: &[StmtId]) -> R<()> {
        let len = self.nest.buffer(buf).len();
        if let Some(&layout) = self.c.an.promoted.get(&s) {
            let (ty, n) = match layout {
                Layout::Scalar => (F32, len),
                Layout::Vector => (F32X4, len / 4),
            };
            let zero = self.b.ins().f32const(0.0);
            let zero = if ty == F32X4 {
                self.b.ins().splat(F32X4, zero)
            } else {
                zero
            };
            let vars: Vec<Variable> = (0..n)
                .map(|_| {
                    let v = self.b.declare_var(ty);
                    self.b.def_var(v, zero);
                    v
                })
                .collect();
            let prev = self.promoted.insert(buf, Promo { layout, vars, len });
            let r = self.emit_block(body);
            match prev {
                Some(p) => self.promoted.insert(buf, p),
                None => self.promoted.remove(&buf),
            };
            return r;
        }
        let bytes = len * 4;
        if bytes > MAX_STACK_BYTES {
            return Err(CodegenError::Unsupported(format!(
                "local buffer `{}` of {bytes} bytes is too large for the stack",
                self.nest.buffer(buf).name
            )));
        }
        let ss = self.b.create_sized_stack_slot(StackSlotData::new(
            StackSlotKind::ExplicitSlot,
            bytes.max(4) as u32,
            4,
        ));
        let base = self.b.ins().stack_addr(I64, ss, 0);
        let prev_p = self.promoted.remove(&buf);
        let prev = self.bases.insert(buf, base);
        let r = match self.c.an.through.get(&s).cloned() {
            Some(plan) if self.vec.is_none() => self.emit_read_through(&plan, body),
            _ => self.emit_block(body),
        };
        match prev {
            Some(p) => self.bases.insert(buf, p),
            None => self.bases.remove(&buf),
        };
        if let Some(p) = prev_p {
            self.promoted.insert(buf, p);
        }
        r
    }

    /// The body of an `Alloc` with a read-through plan: the interior test, the fill only
    /// when it fails, then the rest (whose micro-kernel calls pick their `A` by the test).
    fn emit_read_through(&mut self, plan: &crate::through::ThroughPlan, body: &[StmtId]) -> R<()> {
        let (interior, origin) = self.interior_test(plan)?;
        let guarded = matches!(interior, BVal::Dyn(_)) && self.edges_guardable(plan);
        match interior {
            BVal::Const(false) => return self.emit_block(body),
            BVal::Const(true) => {}
            // Edge tiles read the source through the guarded kernels: no copy at all.
            BVal::Dyn(_) if guarded => {}
            BVal::Dyn(c) => {
                let fill = self.b.create_block();
                let merge = self.b.create_block();
                self.b.ins().brif(c, merge, &[], fill, &[]);
                self.b.switch_to_block(fill);
                self.emit_stmt(plan.fill)?;
                self.b.ins().jump(merge, &[]);
                self.b.switch_to_block(merge);
            }
        }
        let flag = match interior {
            BVal::Dyn(c) => Some(c),
            _ => None,
        };
        let prev = self.through.insert(plan.buf, (flag, origin));
        let was_guarded = if guarded {
            !self.guarded.insert(plan.buf)
        } else {
            self.guarded.remove(&plan.buf)
        };
        let r = self.emit_block(&body[1..]);
        match prev {
            Some(p) => self.through.insert(plan.buf, p),
            None => self.through.remove(&plan.buf),
        };
        if was_guarded {
            self.guarded.insert(plan.buf);
        } else {
            self.guarded.remove(&plan.buf);
        }
        r
    }

    /// Whether every call reading `plan`'s copy reads the source at edge tiles too (its
    /// edge plan survived [`crate::through::keep_guardable_edges`]).
    fn edges_guardable(&self, plan: &crate::through::ThroughPlan) -> bool {
        plan.edges.is_some()
    }

    /// The guard conjuncts `conds` at the call's element `(q, i = row, p = t, j = 0)`: the
    /// call's tile loops and the fill loops (from the call's copy coordinates) bound in
    /// `env` for the evaluation, restored after.
    fn guard_at(
        &mut self,
        plan: &crate::through::ThroughPlan,
        m: &tessel_ir::tensorize::TensorizeMatch,
        si: &crate::through::SourceIndex,
        (q, row, t): (i64, i64, i64),
        conds: &[ExprId],
    ) -> R<BVal> {
        let mut tile: Vec<(LoopId, i64)> = vec![(m.k_loop, t), (m.j_loop, 0)];
        if let Some(i) = m.i_loop {
            tile.push((i, row));
        }
        if let Some(o) = m.folded() {
            tile.push((o.lp, q));
        }
        let mut saved: Vec<(LoopId, Option<IVal>)> = Vec::new();
        for &(l, v) in &tile {
            saved.push((l, self.env.insert(l, IVal::Const(v))));
        }
        let mut coords = Vec::with_capacity(plan.loops.len());
        for (lo, steps) in &si.coords {
            let mut x = IVal::Const(*lo);
            for &(l, c) in steps {
                let v = self.var(l)?;
                let cv = self.int_binary(BinOp::Mul, v, IVal::Const(c))?;
                x = self.int_binary(BinOp::Add, x, cv)?;
            }
            coords.push(x);
        }
        for (&(l, _, _), x) in plan.loops.iter().zip(coords) {
            saved.push((l, self.env.insert(l, x)));
        }
        let mut ok = BVal::Const(true);
        for &c in conds {
            let x = self.eval_bool(c)?;
            ok = self.and_bv(x, ok);
        }
        for (l, v) in saved.into_iter().rev() {
            match v {
                Some(v) => self.env.insert(l, v),
                None => self.env.remove(&l),
            };
        }
        Ok(ok)
    }

    /// The mask with bit `b` set where `bits[b]` holds.
    fn mask_of(&mut self, bits: &[BVal]) -> Value {
        let konst = bits.iter().enumerate().fold(0u64, |m, (b, x)| match x {
            BVal::Const(true) => m | 1 << b,
            _ => m,
        });
        let mut v = self.b.ins().iconst(I64, konst as i64);
        for (b, x) in bits.iter().enumerate() {
            if let BVal::Dyn(x) = *x {
                let w = self.b.ins().uextend(I64, x);
                let w = self.b.ins().ishl_imm_s(w, b as i64);
                v = self.b.ins().bor(v, w);
            }
        }
        v
    }

    /// One block of a call whose copy is guarded (`args`: the call's arguments, `A` on the
    /// source): on interior tiles (`flag`) the kernel, on edge tiles the guarded kernel with
    /// the masks of the window rows and input positions where the guard holds.
    fn emit_guarded_block(
        &mut self,
        m: &tessel_ir::tensorize::TensorizeMatch,
        (flag, si): (Value, &crate::through::SourceIndex),
        (row, rows): (i64, i64),
        interior: FuncRef,
        mut args: Vec<Value>,
    ) -> R<()> {
        let an = &self.c.an;
        let zero = an.zero_init.contains_key(&m.k_loop);
        let f = crate::ukernel::guarded_kernel(an.isa, rows, m.nr, zero)
            .ok_or_else(|| Self::internal("guarded micro-kernel missing"))?;
        let plan = an
            .through
            .values()
            .find(|p| p.buf == m.a.0)
            .cloned()
            .ok_or_else(|| Self::internal("guarded call without its plan"))?;
        let edges = plan
            .edges
            .clone()
            .ok_or_else(|| Self::internal("guarded call without an edge plan"))?;
        let inner = self.b.create_block();
        let edge = self.b.create_block();
        let merge = self.b.create_block();
        self.b.ins().brif(flag, inner, &[], edge, &[]);
        self.b.switch_to_block(inner);
        self.b.ins().call(interior, &args);
        self.b.ins().jump(merge, &[]);
        self.b.switch_to_block(edge);
        let k2 = m.folded().map_or(1, |o| o.extent);
        let s = match m.i_loop {
            Some(i) => si.coef(i) / si.coef(m.k_loop).max(1),
            None => 0,
        };
        let positions = s * (rows - 1) + m.k;
        let row_bits = (0..k2)
            .map(|q| self.guard_at(&plan, m, si, (q, row, 0), &edges.row_conds))
            .collect::<R<Vec<BVal>>>()?;
        let col_bits = (0..positions)
            .map(|t| self.guard_at(&plan, m, si, (0, row, t), &edges.col_conds))
            .collect::<R<Vec<BVal>>>()?;
        let rmask = self.mask_of(&row_bits);
        let cmask = self.mask_of(&col_bits);
        let mut sig = self.c.module.make_signature();
        for _ in 0..13 {
            sig.params.push(AbiParam::new(I64));
        }
        let sref = self.b.import_signature(sig);
        let addr = self.b.ins().iconst(I64, f as usize as i64);
        args.push(rmask);
        args.push(cmask);
        self.b.ins().call_indirect(sref, addr, &args);
        self.b.ins().jump(merge, &[]);
        self.b.switch_to_block(merge);
        Ok(())
    }

    /// Whether the fill's guard holds at every corner of its loops' box (so everywhere in
    /// it: the guard is convex) and its source range lies inside the source, and the source
    /// address of the fill's first element.
    fn interior_test(&mut self, plan: &crate::through::ThroughPlan) -> R<(BVal, Value)> {
        let free: Vec<usize> = (0..plan.loops.len())
            .filter(|&d| plan.loops[d].1 > 1)
            .collect();
        let saved: Vec<Option<IVal>> = plan
            .loops
            .iter()
            .map(|&(l, _, _)| self.env.insert(l, IVal::Const(0)))
            .collect();
        let r = self.interior_at_corners(plan, &free);
        for (&(l, _, _), v) in plan.loops.iter().zip(saved) {
            match v {
                Some(v) => self.env.insert(l, v),
                None => self.env.remove(&l),
            };
        }
        r
    }

    /// [`Self::interior_test`] with the fill loops bound in `env` (overwritten).
    fn interior_at_corners(
        &mut self,
        plan: &crate::through::ThroughPlan,
        free: &[usize],
    ) -> R<(BVal, Value)> {
        let mut ok = BVal::Const(true);
        if let Some(g) = plan.guard {
            for corner in 0..1usize << free.len() {
                for (bit, &d) in free.iter().enumerate() {
                    let (l, e, _) = plan.loops[d];
                    let v = if corner >> bit & 1 == 1 { e - 1 } else { 0 };
                    self.env.insert(l, IVal::Const(v));
                }
                let x = self.eval_bool(g)?;
                ok = self.and_bv(x, ok);
            }
        }
        // The source range: the index at its lowest and highest corners.
        let len = self.nest.buffer(plan.src).len();
        for high in [false, true] {
            for &(l, e, c) in &plan.loops {
                let v = if (c > 0) == high { e - 1 } else { 0 };
                self.env.insert(l, IVal::Const(v));
            }
            let x = match self.eval_int(plan.src_index)? {
                IVal::Const(i) => BVal::Const(if high { i < len } else { i >= 0 }),
                IVal::Dyn(v) => BVal::Dyn(if high {
                    self.b.ins().icmp_imm_s(IntCC::SignedLessThan, v, len)
                } else {
                    self.b
                        .ins()
                        .icmp_imm_s(IntCC::SignedGreaterThanOrEqual, v, 0)
                }),
            };
            ok = self.and_bv(x, ok);
        }
        for &(l, _, _) in &plan.loops {
            self.env.insert(l, IVal::Const(0));
        }
        let base = *self
            .bases
            .get(&plan.src)
            .ok_or_else(|| Self::internal("read-through source without memory"))?;
        let origin = match self.eval_int(plan.src_index)? {
            IVal::Const(i) => self.advance_f32s(base, i),
            IVal::Dyn(v) => {
                let off = self.b.ins().ishl_imm_s(v, 2);
                self.b.ins().iadd(base, off)
            }
        };
        Ok((ok, origin))
    }

    /// `x && y`.
    fn and_bv(&mut self, x: BVal, y: BVal) -> BVal {
        match (x, y) {
            (BVal::Const(false), _) | (_, BVal::Const(false)) => BVal::Const(false),
            (BVal::Const(true), o) | (o, BVal::Const(true)) => o,
            (BVal::Dyn(a), BVal::Dyn(b)) => BVal::Dyn(self.b.ins().band(a, b)),
        }
    }

    fn emit_parallel(&mut self, lp: LoopId, body: &[StmtId]) -> R<()> {
        let rt = self
            .rt
            .ok_or_else(|| Self::internal("parallel loop outlined inside an outlined loop"))?;
        let mut bufs: Vec<(BufferId, Value)> = self.bases.iter().map(|(&b, &v)| (b, v)).collect();
        bufs.sort_by_key(|x| x.0);
        let mut vars = Vec::new();
        let mut consts = HashMap::new();
        let mut env: Vec<(LoopId, IVal)> = self.env.iter().map(|(&l, &v)| (l, v)).collect();
        env.sort_by_key(|x| x.0);
        for (l, v) in env {
            match v {
                IVal::Const(c) => {
                    consts.insert(l, c);
                }
                IVal::Dyn(v) => vars.push((l, v)),
            }
        }
        let buf_ids: Vec<BufferId> = bufs.iter().map(|x| x.0).collect();
        let var_ids: Vec<LoopId> = vars.iter().map(|x| x.0).collect();
        let known = self.known.clone();
        let id = self
            .c
            .build_body(lp, body, &buf_ids, &var_ids, &consts, &known)?;
        let n = bufs.len() + vars.len();
        let ss = self.b.create_sized_stack_slot(StackSlotData::new(
            StackSlotKind::ExplicitSlot,
            (8 * n.max(1)) as u32,
            3,
        ));
        for (k, v) in bufs
            .iter()
            .map(|x| x.1)
            .chain(vars.iter().map(|x| x.1))
            .enumerate()
        {
            self.b.ins().stack_store(I64, v, ss, (8 * k) as i32);
        }
        let ctx = self.b.ins().stack_addr(I64, ss, 0);
        let fref = self.c.module.declare_func_in_func(id, self.b.func);
        let fptr = self.b.ins().func_addr(I64, fref);
        let par = match self.par_ref {
            Some(f) => f,
            None => {
                let f = self
                    .c
                    .module
                    .declare_func_in_func(self.c.par_fn, self.b.func);
                self.par_ref = Some(f);
                f
            }
        };
        let extent = self.b.ins().iconst(I64, self.nest.lp(lp).extent);
        self.b.ins().call(par, &[rt, fptr, ctx, extent]);
        Ok(())
    }

    /// One micro-kernel call for tensorized loop `lp` (matched by the analysis): base
    /// addresses are the operands' addresses at `i = j = k = 0`, strides are constants.
    fn emit_tensorized(&mut self, lp: LoopId) -> R<()> {
        let m = self.c.an.tensorized[&lp].clone();
        let outer = self.c.an.folded_outer(lp).cloned();
        let outer_loop = outer.as_ref().map(|o| o.lp);
        let tile_loops: Vec<LoopId> = [outer_loop, Some(m.k_loop), m.i_loop, Some(m.j_loop)]
            .into_iter()
            .flatten()
            .collect();
        let saved: Vec<Option<IVal>> = tile_loops
            .iter()
            .map(|l| self.env.insert(*l, IVal::Const(0)))
            .collect();
        let ptrs = [m.a, m.b, m.c].map(|(buf, index)| self.elem_addr(buf, index));
        // A read-through copy ([`crate::through`]): the source address on interior tiles.
        let through = match self.read_through(lp, m.a.0) {
            Some((flag, origin, si)) => Some((flag, self.source_addr(origin, &si)?, si)),
            None => None,
        };
        let packed = self
            .c
            .an
            .packed_b
            .get(&lp)
            .copied()
            .map(|k| self.packed_addr(k, m.b.1));
        for (l, v) in tile_loops.iter().zip(saved) {
            match v {
                Some(v) => self.env.insert(*l, v),
                None => self.env.remove(l),
            };
        }
        let [pa, pb, pc] = ptrs;
        let (pa, mut pb, pc) = (pa?, pb?, pc?);
        let mut b_ks = m.b_k_stride;
        // `B`'s stride along a folded outer loop (whole packed rows: the analysis checked).
        let mut b_k2s = outer.as_ref().map_or(0, |o| o.b_stride);
        if let Some(p) = packed {
            pb = p?;
            b_ks = m.nr;
            b_k2s = b_k2s / m.b_k_stride * m.nr;
        }
        // A fused kernel: the write-back's program and pointers (the tile's slot null).
        let fused = match self.c.an.kernel_epilogues.get(&lp) {
            Some(kp) => Some(self.epilogue_ptrs(kp.write_back, true)?),
            None => None,
        };
        // One call per register tile of the strip, each over the whole reduction.
        let mut row = 0;
        for rows in tessel_ir::tensorize::strip_blocks(self.c.an.isa, m.mr, m.nr) {
            if let Some((program, ptrs)) = fused {
                let f = self.fused_ref((rows, m.nr))?;
                let mut a_row = self.advance_f32s(pa, row * m.a_row_stride);
                let a_k2 = outer.as_ref().map_or(0, |o| o.a_stride);
                let mut a_strides =
                    [m.a_row_stride, m.a_k_stride, a_k2].map(|v| self.b.ins().iconst(I64, v));
                if let Some((flag, x, si)) = &through {
                    let xs = [
                        m.i_loop.map_or(0, |l| si.coef(l)),
                        si.coef(m.k_loop),
                        outer.as_ref().map_or(0, |o| si.coef(o.lp)),
                    ];
                    let x_row = self.advance_f32s(*x, row * xs[0]);
                    a_row = self.pick(*flag, x_row, a_row);
                    for (p, x) in a_strides.iter_mut().zip(xs) {
                        let x = self.b.ins().iconst(I64, x);
                        *p = self.pick(*flag, x, *p);
                    }
                }
                let k2 = self
                    .b
                    .ins()
                    .iconst(I64, outer.as_ref().map_or(1, |o| o.extent));
                let b_k2s = self.b.ins().iconst(I64, b_k2s);
                let k = self.b.ins().iconst(I64, m.k);
                let b_ks = self.b.ins().iconst(I64, b_ks);
                let r0 = self.b.ins().iconst(I64, row);
                let args = [
                    k2,
                    a_strides[2],
                    b_k2s,
                    k,
                    a_row,
                    a_strides[0],
                    a_strides[1],
                    pb,
                    b_ks,
                    program,
                    ptrs,
                    r0,
                ];
                self.b.ins().call(f, &args);
                row += rows;
                continue;
            }
            let f = if self.c.an.zero_init.contains_key(&lp) {
                self.zero_ukernel_ref((rows, m.nr))?
            } else {
                self.ukernel_ref((m.kind, rows, m.nr))?
            };
            let mut a_row = self.advance_f32s(pa, row * m.a_row_stride);
            let c_row = self.advance_f32s(pc, row * m.c_row_stride);
            // `A`'s strides (row, k, folded k2): the copy's, or the source's on interior tiles.
            let a_k2 = outer.as_ref().map_or(0, |o| o.a_stride);
            let mut a_strides =
                [m.a_row_stride, m.a_k_stride, a_k2].map(|v| self.b.ins().iconst(I64, v));
            // A guarded copy is never filled: every tile reads the source.
            let guarded = self.guarded.contains(&m.a.0);
            if let Some((flag, x, si)) = &through {
                let flag = if guarded { None } else { *flag };
                let xs = [
                    m.i_loop.map_or(0, |l| si.coef(l)),
                    si.coef(m.k_loop),
                    outer.as_ref().map_or(0, |o| si.coef(o.lp)),
                ];
                let x_row = self.advance_f32s(*x, row * xs[0]);
                a_row = self.pick(flag, x_row, a_row);
                for (p, x) in a_strides.iter_mut().zip(xs) {
                    let x = self.b.ins().iconst(I64, x);
                    *p = self.pick(flag, x, *p);
                }
            }
            let mut args = Vec::with_capacity(11);
            if m.kind == KernelKind::Elementwise {
                let (k2, b_k2s) = outer.as_ref().map_or((1, 0), |o| (o.extent, o.b_stride));
                args.push(self.b.ins().iconst(I64, k2));
                args.push(a_strides[2]);
                args.push(self.b.ins().iconst(I64, b_k2s));
            }
            for (v, ptr) in [
                (m.k, None),
                (0, Some(a_row)),
                (0, Some(a_strides[0])),
                (0, Some(a_strides[1])),
                (0, Some(pb)),
                (b_ks, None),
                (0, Some(c_row)),
                (m.c_row_stride, None),
            ] {
                args.push(ptr.unwrap_or_else(|| self.b.ins().iconst(I64, v)));
            }
            match &through {
                Some((Some(flag), _, si)) if guarded => {
                    // Edge tiles take the guarded kernel.
                    self.emit_guarded_block(&m, (*flag, si), (row, rows), f, args)?;
                }
                _ => {
                    self.b.ins().call(f, &args);
                }
            }
            row += rows;
        }
        Ok(())
    }

    /// The read-through state of tensorized loop `lp`'s `A` operand `buf`, when it reads a
    /// live read-through copy: `(interior flag, source origin, A's index in the source)`.
    fn read_through(
        &self,
        lp: LoopId,
        buf: BufferId,
    ) -> Option<(Option<Value>, Value, crate::through::SourceIndex)> {
        let &(flag, origin) = self.through.get(&buf)?;
        let si = self
            .c
            .an
            .through
            .values()
            .find(|p| p.buf == buf)?
            .calls
            .get(&lp)?
            .clone();
        Some((flag, origin, si))
    }

    /// `origin + 4·(konst + Σ coef·loop)` (the loops' current values).
    fn source_addr(&mut self, origin: Value, si: &crate::through::SourceIndex) -> R<Value> {
        let mut p = self.advance_f32s(origin, si.konst);
        for &(l, c) in &si.terms {
            match self.var(l)? {
                IVal::Const(v) => p = self.advance_f32s(p, v * c),
                IVal::Dyn(v) => {
                    let s = self.b.ins().imul_imm_s(v, c * 4);
                    p = self.b.ins().iadd(p, s);
                }
            }
        }
        Ok(p)
    }

    /// `flag ? x : p` (`x` when the flag is known to hold).
    fn pick(&mut self, flag: Option<Value>, x: Value, p: Value) -> Value {
        match flag {
            Some(c) => self.b.ins().select(c, x, p),
            None => x,
        }
    }

    /// A run ([`crate::bulk`]): the copy range from the guard, then one routine call.
    fn emit_run(&mut self, lp: LoopId) -> R<()> {
        let p = self.c.an.runs[&lp].clone();
        let n = self.nest.lp(p.inner).extent;
        let (e_outer, outer) = match p.outer {
            Some(o) => (self.nest.lp(o).extent, Some(o)),
            None => (1, None),
        };
        let total = e_outer * n;
        // Offsets at the run's first element.
        let tile: Vec<LoopId> = [Some(p.inner), outer].into_iter().flatten().collect();
        let saved: Vec<Option<IVal>> = tile
            .iter()
            .map(|l| self.env.insert(*l, IVal::Const(0)))
            .collect();
        let r = self.run_args(&p, outer, e_outer, n);
        for (l, v) in tile.iter().zip(saved) {
            match v {
                Some(v) => self.env.insert(*l, v),
                None => self.env.remove(l),
            };
        }
        let (dst, src, s0, src_len, lo, hi) = r?;
        let f = match self.run_ref {
            Some(f) => f,
            None => {
                let id = self
                    .c
                    .run_fn
                    .ok_or_else(|| Self::internal("run routine not imported"))?;
                let f = self.c.module.declare_func_in_func(id, self.b.func);
                self.run_ref = Some(f);
                f
            }
        };
        let total = self.b.ins().iconst(I64, total);
        let fill = self.b.ins().f32const(p.fill);
        self.b
            .ins()
            .call(f, &[dst, total, src, s0, src_len, lo, hi, fill]);
        Ok(())
    }

    /// A fused write-back ([`crate::epilogue`]): the addresses of the output's and every
    /// load's first element (the write-back's loops at 0) in a stack array, then one call.
    fn emit_epilogue(&mut self, lp: LoopId) -> R<()> {
        let (program, ptrs) = self.epilogue_ptrs(lp, false)?;
        let f = match self.epi_ref {
            Some(f) => f,
            None => {
                let id = self
                    .c
                    .epilogue_fn
                    .ok_or_else(|| Self::internal("epilogue routine not imported"))?;
                let f = self.c.module.declare_func_in_func(id, self.b.func);
                self.epi_ref = Some(f);
                f
            }
        };
        self.b.ins().call(f, &[program, ptrs]);
        Ok(())
    }

    /// The fused kernel of register tile `shape` in this function.
    fn fused_ref(&mut self, shape: (i64, i64)) -> R<FuncRef> {
        if let Some(&f) = self.fused_refs.get(&shape) {
            return Ok(f);
        }
        let id = *self
            .c
            .fused_kernels
            .get(&shape)
            .ok_or_else(|| Self::internal("fused kernel not imported"))?;
        let f = self.c.module.declare_func_in_func(id, self.b.func);
        self.fused_refs.insert(shape, f);
        Ok(f)
    }

    /// Write-back `lp`'s program address and its pointer array (the output's and every
    /// load's first element, the write-back's loops at 0) in a stack slot; with
    /// `skip_local`, local buffers (a fused kernel's tile) get null.
    fn epilogue_ptrs(&mut self, lp: LoopId, skip_local: bool) -> R<(Value, Value)> {
        let p = &self.c.an.epilogues[&lp];
        // The kernel keeps the program alive (`Kernel::programs`): its address is a constant.
        let program = std::sync::Arc::as_ptr(&p.program) as i64;
        let (inner, outer, dst, operands) = (p.inner, p.outer, p.dst, p.operands.clone());
        let tile: Vec<LoopId> = [Some(inner), outer].into_iter().flatten().collect();
        let saved: Vec<Option<IVal>> = tile
            .iter()
            .map(|l| self.env.insert(*l, IVal::Const(0)))
            .collect();
        let addrs: R<Vec<Value>> = std::iter::once(dst)
            .chain(operands)
            .map(|(b, i)| {
                if skip_local && self.nest.buffer(b).scope == BufferScope::Local {
                    Ok(self.b.ins().iconst(I64, 0))
                } else {
                    self.elem_addr(b, i)
                }
            })
            .collect();
        for (l, v) in tile.iter().zip(saved) {
            match v {
                Some(v) => self.env.insert(*l, v),
                None => self.env.remove(l),
            };
        }
        let addrs = addrs?;
        let ss = self.b.create_sized_stack_slot(StackSlotData::new(
            StackSlotKind::ExplicitSlot,
            8 * addrs.len() as u32,
            3,
        ));
        for (k, &a) in addrs.iter().enumerate() {
            self.b.ins().stack_store(I64, a, ss, 8 * k as i32);
        }
        let ptrs = self.b.ins().stack_addr(I64, ss, 0);
        let program = self.b.ins().iconst(I64, program);
        Ok((program, ptrs))
    }

    /// The arguments of a run's call but `total` and `fill`, with the run's loops at 0:
    /// `(dst, src, s0, src_len, lo, hi)` (see [`crate::bulk::run_reference`]).
    #[allow(clippy::type_complexity)]
    fn run_args(
        &mut self,
        p: &crate::bulk::RunPlan,
        outer: Option<LoopId>,
        e_outer: i64,
        n: i64,
    ) -> R<(Value, Value, Value, Value, Value, Value)> {
        let dst = self.elem_addr(p.dst.0, p.dst.1)?;
        let Some((sbuf, sidx)) = p.src else {
            let z = self.b.ins().iconst(I64, 0);
            return Ok((dst, z, z, z, z, z));
        };
        let src = *self
            .bases
            .get(&sbuf)
            .ok_or_else(|| Self::internal("run source without memory"))?;
        let s0 = self.eval_int(sidx)?;
        let s0 = self.iv(s0);
        let src_len = self.b.ins().iconst(I64, self.nest.buffer(sbuf).len());
        let mut lo = self.b.ins().iconst(I64, 0);
        let mut hi = self.b.ins().iconst(I64, e_outer);
        if let Some(c) = p.cond {
            let mut inv = Vec::new();
            self.run_bounds(c, outer, &mut lo, &mut hi, &mut inv)?;
            for b in inv {
                let b = self.bv(b);
                hi = self.b.ins().select(b, hi, lo);
            }
        }
        let (lo, hi) = (
            self.b.ins().imul_imm_s(lo, n),
            self.b.ins().imul_imm_s(hi, n),
        );
        Ok((dst, src, s0, src_len, lo, hi))
    }

    /// Narrows `lo..hi` (values of the run's outer loop) by guard `c`; parts that do not
    /// depend on it go to `inv` (the analysis checked the form, `bulk::cond_ok`).
    fn run_bounds(
        &mut self,
        c: ExprId,
        outer: Option<LoopId>,
        lo: &mut Value,
        hi: &mut Value,
        inv: &mut Vec<BVal>,
    ) -> R<()> {
        let depends = outer.is_some_and(|o| self.c.an.depends(c, o));
        if !depends {
            let b = self.eval_bool(c)?;
            inv.push(b);
            return Ok(());
        }
        let o = outer.ok_or_else(|| Self::internal("run guard"))?;
        match self.nest.get(c) {
            Node::Binary(BinOp::And, a, b) => {
                self.run_bounds(a, outer, lo, hi, inv)?;
                self.run_bounds(b, outer, lo, hi, inv)
            }
            Node::Binary(op @ (BinOp::Lt | BinOp::Le), a, b) => {
                let k = crate::bulk::o_coef(self.nest, &self.c.an, a, b, o)
                    .ok_or_else(|| Self::internal("run guard not affine"))?;
                // a - b = k*o + rest, with o at 0 in the environment.
                let (x, y) = (self.eval_int(a)?, self.eval_int(b)?);
                let (x, y) = (self.iv(x), self.iv(y));
                let rest = self.b.ins().isub(x, y);
                let strict = op == BinOp::Lt;
                if k == 1 {
                    // o < -rest, or o <= -rest.
                    let neg = self.b.ins().ineg(rest);
                    let bound = if strict {
                        neg
                    } else {
                        self.b.ins().iadd_imm_s(neg, 1)
                    };
                    *hi = self.b.ins().smin(*hi, bound);
                } else if k == -1 {
                    // o > rest, or o >= rest.
                    let bound = if strict {
                        self.b.ins().iadd_imm_s(rest, 1)
                    } else {
                        rest
                    };
                    *lo = self.b.ins().smax(*lo, bound);
                } else {
                    return Err(Self::internal("run guard coefficient"));
                }
                Ok(())
            }
            _ => Err(Self::internal("run guard form")),
        }
    }

    /// `base` advanced by `elements` `f32`s.
    fn advance_f32s(&mut self, base: Value, elements: i64) -> Value {
        if elements == 0 {
            base
        } else {
            self.b.ins().iadd_imm_s(base, elements * 4)
        }
    }

    /// The function reference of the `shape` register-tile kernel in this function.
    fn ukernel_ref(&mut self, shape: KernelShape) -> R<FuncRef> {
        if let Some(&f) = self.uk_refs.get(&shape) {
            return Ok(f);
        }
        let id = *self
            .c
            .ukernels
            .get(&shape)
            .ok_or_else(|| Self::internal("micro-kernel not imported"))?;
        let f = self.c.module.declare_func_in_func(id, self.b.func);
        self.uk_refs.insert(shape, f);
        Ok(f)
    }

    /// The function reference of the zero-start elementwise `(mr, nr)` kernel.
    fn zero_ukernel_ref(&mut self, shape: (i64, i64)) -> R<FuncRef> {
        if let Some(&f) = self.zero_refs.get(&shape) {
            return Ok(f);
        }
        let id = *self
            .c
            .zero_kernels
            .get(&shape)
            .ok_or_else(|| Self::internal("zero-start micro-kernel not imported"))?;
        let f = self.c.module.declare_func_in_func(id, self.b.func);
        self.zero_refs.insert(shape, f);
        Ok(f)
    }

    /// The address in packed copy `k` of the panel that starts at element `index` of the
    /// original matrix (row `index / cols`, column `index % cols`, a multiple of `nr`).
    fn packed_addr(&mut self, k: usize, index: ExprId) -> R<Value> {
        let plan = self.c.an.packs[k];
        let base = *self
            .bases
            .get(&packed_id(self.nest, k))
            .ok_or_else(|| Self::internal("packed weights without memory"))?;
        let o = self.eval_int(index)?;
        let cols = IVal::Const(plan.cols);
        let r0 = self.int_binary(BinOp::Div, o, cols)?;
        let c0 = self.int_binary(BinOp::Mod, o, cols)?;
        let panel = self.int_binary(BinOp::Div, c0, IVal::Const(plan.nr))?;
        let p1 = self.int_binary(BinOp::Mul, panel, IVal::Const(plan.rows * plan.nr))?;
        let p2 = self.int_binary(BinOp::Mul, r0, IVal::Const(plan.nr))?;
        let off = self.int_binary(BinOp::Add, p1, p2)?;
        let off = self.int_binary(BinOp::Mul, off, IVal::Const(4))?;
        Ok(match off {
            IVal::Const(0) => base,
            IVal::Const(c) => self.b.ins().iadd_imm_s(base, c),
            IVal::Dyn(v) => self.b.ins().iadd(base, v),
        })
    }

    /// The address of `buf[index]` (the analysis proved the index in bounds).
    fn elem_addr(&mut self, buf: BufferId, index: ExprId) -> R<Value> {
        let base = *self
            .bases
            .get(&buf)
            .ok_or_else(|| Self::internal("micro-kernel operand without memory"))?;
        let (p, off) = self.linear_addr(base, index)?;
        Ok(if off == 0 {
            p
        } else {
            self.b.ins().iadd_imm_s(p, off as i64)
        })
    }

    // ---------------------------------------------------------------- memory

    /// The address of `buf[index]` for an access of `lanes` consecutive elements, as
    /// (pointer, byte offset, may the load move). Indices the range analysis cannot prove in
    /// bounds are clamped, so that no access leaves its buffer.
    fn addr(&mut self, buf: BufferId, index: ExprId, lanes: i64) -> R<(Value, i32, bool)> {
        let len = self.nest.buffer(buf).len();
        let base = *self.bases.get(&buf).ok_or_else(|| {
            CodegenError::InvalidNest(format!(
                "buffer `{}` is used where it has no memory (not a parameter, global, or live local)",
                self.nest.buffer(buf).name
            ))
        })?;
        let global = interval(self.nest, index, &HashMap::new());
        let here = if self.known.is_empty() {
            global
        } else {
            interval(self.nest, index, &self.known)
        };
        if here.within(len) {
            let (p, off) = self.linear_addr(base, index)?;
            return Ok((p, off, global.within(len)));
        }
        let i = self.eval_int(index)?;
        let i = self.iv(i);
        let lim = self.b.ins().iconst(I64, len - lanes);
        let i = self.b.ins().umin(i, lim);
        let off = self.b.ins().ishl_imm_s(i, 2);
        Ok((self.b.ins().iadd(base, off), 0, true))
    }

    /// `base + 4·index` with the index split into its affine terms, added outermost loop
    /// first (so that partial sums are loop-invariant for the inner loops and get hoisted),
    /// and the constant part as the immediate offset.
    fn linear_addr(&mut self, base: Value, index: ExprId) -> R<(Value, i32)> {
        let lin = Affine::of_or_atom(self.nest, index);
        let mut konst = lin.konst as i128;
        let mut dyns: Vec<(u32, Value, i64)> = Vec::new();
        for (t, c) in lin.terms {
            let (v, depth) = match t {
                Term::Var(l) => (self.var(l)?, self.c.an.depth[l.index()]),
                Term::Atom(e) => (self.eval_int(e)?, self.c.an.max_depth(e)),
            };
            match v {
                IVal::Const(x) => konst += x as i128 * c as i128,
                IVal::Dyn(v) => dyns.push((depth, v, c)),
            }
        }
        dyns.sort_by_key(|d| d.0);
        let mut p = base;
        for (_, v, c) in dyns {
            let s = self.b.ins().imul_imm_s(v, c.wrapping_mul(4));
            p = self.b.ins().iadd(p, s);
        }
        let off = konst * 4;
        if let Ok(off) = i32::try_from(off) {
            Ok((p, off))
        } else {
            Ok((self.b.ins().iadd_imm_s(p, off as i64), 0))
        }
    }

    fn load_flags(&self, buf: BufferId, vector: bool, movable: bool) -> MemFlagsData {
        let f = if vector {
            vector_flags()
        } else {
            scalar_flags()
        };
        if self.nest.buffer(buf).scope == BufferScope::Input {
            let f = f.with_readonly();
            if movable {
                f.with_can_move()
            } else {
                f
            }
        } else {
            f
        }
    }

    fn load_scalar(&mut self, buf: BufferId, index: ExprId) -> R<Value> {
        if self.promoted.contains_key(&buf) {
            return self.read_promoted(buf, index);
        }
        if self.nest.buffer(buf).is_empty() {
            return Ok(self.b.ins().f32const(0.0));
        }
        let (p, off, movable) = self.addr(buf, index, 1)?;
        let flags = self.load_flags(buf, false, movable);
        Ok(self.b.ins().load(F32, flags, p, off))
    }

    fn store_scalar(&mut self, buf: BufferId, index: ExprId, v: Value) -> R<()> {
        if self.promoted.contains_key(&buf) {
            return self.write_promoted(buf, index, v);
        }
        if self.nest.buffer(buf).is_empty() {
            return Ok(());
        }
        let (p, off, _) = self.addr(buf, index, 1)?;
        self.b.ins().store(scalar_flags(), v, p, off);
        Ok(())
    }

    /// The constant element index of a promoted buffer access (`None`: out of bounds).
    fn promoted_index(&mut self, buf: BufferId, index: ExprId) -> R<Option<(Promo, usize)>> {
        let p = self.promoted[&buf].clone();
        match self.eval_int(index)? {
            IVal::Const(k) if (0..p.len).contains(&k) => Ok(Some((p, k as usize))),
            IVal::Const(_) => Ok(None),
            IVal::Dyn(_) => Err(Self::internal("promoted buffer indexed by a variable")),
        }
    }

    fn read_promoted(&mut self, buf: BufferId, index: ExprId) -> R<Value> {
        Ok(match self.promoted_index(buf, index)? {
            None => self.b.ins().f32const(0.0),
            Some((p, k)) => match p.layout {
                Layout::Scalar => self.b.use_var(p.vars[k]),
                Layout::Vector => {
                    let v = self.b.use_var(p.vars[k / 4]);
                    self.b.ins().extractlane(v, (k % 4) as u8)
                }
            },
        })
    }

    fn write_promoted(&mut self, buf: BufferId, index: ExprId, v: Value) -> R<()> {
        if let Some((p, k)) = self.promoted_index(buf, index)? {
            match p.layout {
                Layout::Scalar => self.b.def_var(p.vars[k], v),
                Layout::Vector => {
                    let old = self.b.use_var(p.vars[k / 4]);
                    let new = self.b.ins().insertlane(old, v, (k % 4) as u8);
                    self.b.def_var(p.vars[k / 4], new);
                }
            }
        }
        Ok(())
    }

    /// For a stride-1 access of a promoted `Vector`-layout buffer at an aligned constant
    /// base: the variable holding the four lanes.
    fn promoted_vector_var(
        &mut self,
        buf: BufferId,
        index: ExprId,
        v: LoopId,
    ) -> R<Option<Variable>> {
        let p = self.promoted[&buf].clone();
        if p.layout != Layout::Vector || self.c.an.stride(self.nest, index, v) != Some(1) {
            return Ok(None);
        }
        Ok(match self.eval_int(index)? {
            IVal::Const(k) if k % 4 == 0 && k >= 0 && k + 4 <= p.len => {
                Some(p.vars[k as usize / 4])
            }
            _ => None,
        })
    }

    // ---------------------------------------------------------------- SIMD

    fn vec_var(&self) -> R<LoopId> {
        self.vec
            .ok_or_else(|| Self::internal("SIMD code outside a vectorized loop"))
    }

    /// Evaluates scalar code once per lane (with the vector variable set to each lane's value)
    /// and calls `f(self, lane)` for each.
    fn per_lane(&mut self, mut f: impl FnMut(&mut Self, u8) -> R<()>) -> R<()> {
        let v = self.vec_var()?;
        let base = self.var(v)?;
        self.vec = None;
        let mut r = Ok(());
        for lane in 0..4u8 {
            let lv = match base {
                IVal::Const(c) => IVal::Const(c + lane as i64),
                IVal::Dyn(x) => IVal::Dyn(self.b.ins().iadd_imm_s(x, lane as i64)),
            };
            self.env.insert(v, lv);
            r = f(self, lane);
            if r.is_err() {
                break;
            }
        }
        self.env.insert(v, base);
        self.vec = Some(v);
        r
    }

    fn gather(&mut self, e: ExprId) -> R<Value> {
        let zero = self.b.ins().f32const(0.0);
        let mut acc = self.b.ins().splat(F32X4, zero);
        self.per_lane(|s, lane| {
            let x = s.eval_f(e)?;
            acc = s.b.ins().insertlane(acc, x, lane);
            Ok(())
        })?;
        Ok(acc)
    }

    fn eval_v(&mut self, e: ExprId) -> R<Value> {
        let v = self.vec_var()?;
        if !self.c.an.depends(e, v) {
            let x = self.eval_f(e)?;
            return Ok(self.b.ins().splat(F32X4, x));
        }
        match self.nest.get(e) {
            Node::Load(buf, index) => self.load_vector(e, buf, index, v),
            Node::Unary(UnOp::Neg, a) => {
                let a = self.eval_v(a)?;
                Ok(self.b.ins().fneg(a))
            }
            Node::Unary(UnOp::Sqrt, a) => {
                let a = self.eval_v(a)?;
                Ok(self.b.ins().sqrt(a))
            }
            Node::Binary(op, a, b) => self.binary_f(op, a, b, true),
            Node::Select(c, a, b) if !self.c.an.depends(c, v) => self.select_f(c, a, b, true),
            _ => self.gather(e),
        }
    }

    fn load_vector(&mut self, e: ExprId, buf: BufferId, index: ExprId, v: LoopId) -> R<Value> {
        if self.promoted.contains_key(&buf) {
            if let Some(var) = self.promoted_vector_var(buf, index, v)? {
                return Ok(self.b.use_var(var));
            }
            return self.gather(e);
        }
        let len = self.nest.buffer(buf).len();
        if self.c.an.stride(self.nest, index, v) == Some(1) && len >= 4 {
            let (p, off, movable) = self.addr(buf, index, 4)?;
            let flags = self.load_flags(buf, true, movable);
            return Ok(self.b.ins().load(F32X4, flags, p, off));
        }
        self.gather(e)
    }

    fn store_vector(&mut self, buf: BufferId, index: ExprId, value: ExprId) -> R<()> {
        let v = self.vec_var()?;
        let val = self.eval_v(value)?;
        if self.promoted.contains_key(&buf) {
            if let Some(var) = self.promoted_vector_var(buf, index, v)? {
                self.b.def_var(var, val);
                return Ok(());
            }
        } else if self.c.an.stride(self.nest, index, v) == Some(1)
            && self.nest.buffer(buf).len() >= 4
        {
            let (p, off, _) = self.addr(buf, index, 4)?;
            self.b.ins().store(vector_flags(), val, p, off);
            return Ok(());
        }
        self.per_lane(|s, lane| {
            let x = s.b.ins().extractlane(val, lane);
            s.store_scalar(buf, index, x)
        })
    }

    // ---------------------------------------------------------------- expressions

    fn var(&self, l: LoopId) -> R<IVal> {
        self.env.get(&l).copied().ok_or_else(|| {
            CodegenError::InvalidNest(format!(
                "loop variable `{}` used outside its loop",
                self.nest.lp(l).name
            ))
        })
    }

    fn iv(&mut self, v: IVal) -> Value {
        match v {
            IVal::Const(c) => self.b.ins().iconst(I64, c),
            IVal::Dyn(v) => v,
        }
    }

    fn eval_int(&mut self, e: ExprId) -> R<IVal> {
        Ok(match self.nest.get(e) {
            Node::Int(c) => IVal::Const(c),
            Node::Var(l) => self.var(l)?,
            Node::Unary(UnOp::Neg, a) => match self.eval_int(a)? {
                IVal::Const(c) => IVal::Const(c.wrapping_neg()),
                IVal::Dyn(v) => IVal::Dyn(self.b.ins().ineg(v)),
            },
            Node::Binary(op, a, b) => {
                let x = self.eval_int(a)?;
                let y = self.eval_int(b)?;
                self.int_binary(op, x, y)?
            }
            Node::Select(c, a, b) => match self.eval_bool(c)? {
                BVal::Const(t) => self.eval_int(if t { a } else { b })?,
                BVal::Dyn(c) => {
                    let x = self.eval_int(a)?;
                    let y = self.eval_int(b)?;
                    let (x, y) = (self.iv(x), self.iv(y));
                    IVal::Dyn(self.b.ins().select(c, x, y))
                }
            },
            _ => return Err(Self::internal("integer expected")),
        })
    }

    fn int_binary(&mut self, op: BinOp, x: IVal, y: IVal) -> R<IVal> {
        use IVal::*;
        if let (Const(a), Const(b)) = (x, y) {
            let v = tessel_ir::loop_nest::fold_int(op, a, b).unwrap_or(match op {
                BinOp::Add => a.wrapping_add(b),
                BinOp::Sub => a.wrapping_sub(b),
                BinOp::Mul => a.wrapping_mul(b),
                BinOp::Div if b == -1 => a.wrapping_neg(),
                _ => 0,
            });
            return Ok(Const(v));
        }
        Ok(Dyn(match (op, x, y) {
            (BinOp::Add, Dyn(a), Const(c)) | (BinOp::Add, Const(c), Dyn(a)) => {
                if c == 0 {
                    return Ok(Dyn(a));
                }
                self.b.ins().iadd_imm_s(a, c)
            }
            (BinOp::Sub, Dyn(a), Const(c)) => self.b.ins().iadd_imm_s(a, c.wrapping_neg()),
            (BinOp::Mul, Dyn(a), Const(c)) | (BinOp::Mul, Const(c), Dyn(a)) => match c {
                0 => return Ok(Const(0)),
                1 => return Ok(Dyn(a)),
                _ => self.b.ins().imul_imm_s(a, c),
            },
            (BinOp::Div | BinOp::Mod, Dyn(a), Const(c)) => return Ok(self.div_const(op, a, c)),
            (BinOp::Div | BinOp::Mod, _, _) => {
                let (a, b) = (self.iv(x), self.iv(y));
                self.div_dyn(op, a, b)
            }
            _ => {
                let (a, b) = (self.iv(x), self.iv(y));
                let i = self.b.ins();
                match op {
                    BinOp::Add => i.iadd(a, b),
                    BinOp::Sub => i.isub(a, b),
                    BinOp::Mul => i.imul(a, b),
                    BinOp::Min => i.smin(a, b),
                    BinOp::Max => i.smax(a, b),
                    _ => return Err(Self::internal("bad integer operator")),
                }
            }
        }))
    }

    /// Floor division / modulo by a constant.
    fn div_const(&mut self, op: BinOp, a: Value, c: i64) -> IVal {
        let div = op == BinOp::Div;
        match c {
            0 => IVal::Const(0),
            1 => {
                if div {
                    IVal::Dyn(a)
                } else {
                    IVal::Const(0)
                }
            }
            -1 => {
                if div {
                    IVal::Dyn(self.b.ins().ineg(a))
                } else {
                    IVal::Const(0)
                }
            }
            c if c > 0 && c.count_ones() == 1 => IVal::Dyn(if div {
                self.b.ins().sshr_imm_s(a, c.trailing_zeros() as i64)
            } else {
                self.b.ins().band_imm_s(a, c - 1)
            }),
            c => {
                let cv = self.b.ins().iconst(I64, c);
                IVal::Dyn(self.floor_fixup(op, a, cv))
            }
        }
    }

    /// Floor division / modulo by a value that is neither 0 nor -1.
    fn floor_fixup(&mut self, op: BinOp, a: Value, b: Value) -> Value {
        let q = self.b.ins().sdiv(a, b);
        let qb = self.b.ins().imul(q, b);
        let r = self.b.ins().isub(a, qb);
        // Adjust when the remainder is non-zero and its sign differs from the divisor's.
        let x = self.b.ins().bxor(r, b);
        let neg = self.b.ins().icmp_imm_s(IntCC::SignedLessThan, x, 0);
        let nz = self.b.ins().icmp_imm_s(IntCC::NotEqual, r, 0);
        let adj = self.b.ins().band(neg, nz);
        if op == BinOp::Div {
            let q1 = self.b.ins().iadd_imm_s(q, -1);
            self.b.ins().select(adj, q1, q)
        } else {
            let r1 = self.b.ins().iadd(r, b);
            self.b.ins().select(adj, r1, r)
        }
    }

    /// Floor division / modulo by a run-time value; `x / 0` and `x % 0` are 0.
    fn div_dyn(&mut self, op: BinOp, a: Value, b: Value) -> Value {
        let is0 = self.b.ins().icmp_imm_s(IntCC::Equal, b, 0);
        let ism1 = self.b.ins().icmp_imm_s(IntCC::Equal, b, -1);
        let bad = self.b.ins().bor(is0, ism1);
        let one = self.b.ins().iconst(I64, 1);
        let safe = self.b.ins().select(bad, one, b);
        let r = self.floor_fixup(op, a, safe);
        let zero = self.b.ins().iconst(I64, 0);
        let special = if op == BinOp::Div {
            let n = self.b.ins().ineg(a);
            self.b.ins().select(is0, zero, n)
        } else {
            zero
        };
        self.b.ins().select(bad, special, r)
    }

    fn eval_bool(&mut self, e: ExprId) -> R<BVal> {
        if let Some(&holds) = self.forced.get(&e) {
            return Ok(BVal::Const(holds));
        }
        Ok(match self.nest.get(e) {
            Node::Unary(UnOp::Not, a) => match self.eval_bool(a)? {
                BVal::Const(t) => BVal::Const(!t),
                BVal::Dyn(v) => BVal::Dyn(self.b.ins().bxor_imm_s(v, 1)),
            },
            Node::Binary(op @ (BinOp::And | BinOp::Or), a, b) => {
                let x = self.eval_bool(a)?;
                let and = op == BinOp::And;
                match x {
                    BVal::Const(t) if t != and => BVal::Const(t),
                    BVal::Const(_) => self.eval_bool(b)?,
                    BVal::Dyn(x) => match self.eval_bool(b)? {
                        BVal::Const(t) if t != and => BVal::Const(t),
                        BVal::Const(_) => BVal::Dyn(x),
                        BVal::Dyn(y) => BVal::Dyn(if and {
                            self.b.ins().band(x, y)
                        } else {
                            self.b.ins().bor(x, y)
                        }),
                    },
                }
            }
            Node::Binary(op, a, b) if op.is_comparison() => {
                if self.nest.ty(a) == ScalarType::Int {
                    let x = self.eval_int(a)?;
                    let y = self.eval_int(b)?;
                    if let (IVal::Const(x), IVal::Const(y)) = (x, y) {
                        return Ok(BVal::Const(match op {
                            BinOp::Lt => x < y,
                            BinOp::Le => x <= y,
                            BinOp::Eq => x == y,
                            _ => x != y,
                        }));
                    }
                    let cc = match op {
                        BinOp::Lt => IntCC::SignedLessThan,
                        BinOp::Le => IntCC::SignedLessThanOrEqual,
                        BinOp::Eq => IntCC::Equal,
                        _ => IntCC::NotEqual,
                    };
                    let (x, y) = (self.iv(x), self.iv(y));
                    BVal::Dyn(self.b.ins().icmp(cc, x, y))
                } else {
                    let x = self.eval_f(a)?;
                    let y = self.eval_f(b)?;
                    let cc = match op {
                        BinOp::Lt => FloatCC::LessThan,
                        BinOp::Le => FloatCC::LessThanOrEqual,
                        BinOp::Eq => FloatCC::Equal,
                        _ => FloatCC::NotEqual,
                    };
                    BVal::Dyn(self.b.ins().fcmp(cc, x, y))
                }
            }
            Node::Select(c, a, b) => match self.eval_bool(c)? {
                BVal::Const(t) => self.eval_bool(if t { a } else { b })?,
                BVal::Dyn(c) => {
                    let x = self.eval_bool(a)?;
                    let y = self.eval_bool(b)?;
                    let x = self.bv(x);
                    let y = self.bv(y);
                    BVal::Dyn(self.b.ins().select(c, x, y))
                }
            },
            _ => return Err(Self::internal("boolean expected")),
        })
    }

    fn bv(&mut self, v: BVal) -> Value {
        match v {
            BVal::Const(t) => self.b.ins().iconst(I8, i64::from(t)),
            BVal::Dyn(v) => v,
        }
    }

    /// Evaluates a float expression as a scalar `f32`.
    fn eval_f(&mut self, e: ExprId) -> R<Value> {
        match self.nest.get(e) {
            Node::Float(bits) => Ok(self.b.ins().f32const(Ieee32::with_bits(bits))),
            Node::Load(buf, index) => self.load_scalar(buf, index),
            Node::Unary(UnOp::Neg, a) => {
                let a = self.eval_f(a)?;
                Ok(self.b.ins().fneg(a))
            }
            Node::Unary(UnOp::Sqrt, a) => {
                let a = self.eval_f(a)?;
                Ok(self.b.ins().sqrt(a))
            }
            Node::Unary(UnOp::Exp, a) => {
                let a = self.eval_f(a)?;
                Ok(self.call_exp(a))
            }
            Node::Unary(UnOp::ToFloat, a) => Ok(match self.eval_int(a)? {
                IVal::Const(c) => self.b.ins().f32const(c as f32),
                IVal::Dyn(v) => self.b.ins().fcvt_from_sint(F32, v),
            }),
            Node::Binary(op, a, b) => self.binary_f(op, a, b, false),
            Node::Select(c, a, b) => self.select_f(c, a, b, false),
            _ => Err(Self::internal("float expected")),
        }
    }

    fn eval_fv(&mut self, e: ExprId, vector: bool) -> R<Value> {
        if vector {
            self.eval_v(e)
        } else {
            self.eval_f(e)
        }
    }

    fn binary_f(&mut self, op: BinOp, a: ExprId, b: ExprId, vector: bool) -> R<Value> {
        if op == BinOp::Add && self.c.opts.fma {
            let mul = |e: ExprId| match self.nest.get(e) {
                Node::Binary(BinOp::Mul, x, y) => Some((x, y)),
                _ => None,
            };
            // `a*b + c` → fma(a, b, c); prefer the product on the right (`acc + x*y`).
            let pick = mul(b).map(|m| (m, a)).or_else(|| mul(a).map(|m| (m, b)));
            if let Some(((x, y), acc)) = pick {
                let acc = self.eval_fv(acc, vector)?;
                let x = self.eval_fv(x, vector)?;
                let y = self.eval_fv(y, vector)?;
                return Ok(self.b.ins().fma(x, y, acc));
            }
        }
        let x = self.eval_fv(a, vector)?;
        let y = self.eval_fv(b, vector)?;
        let i = self.b.ins();
        Ok(match op {
            BinOp::Add => i.fadd(x, y),
            BinOp::Sub => i.fsub(x, y),
            BinOp::Mul => i.fmul(x, y),
            BinOp::Div => i.fdiv(x, y),
            BinOp::Min | BinOp::Max => {
                // min(x, y) = x < y ? x : y ; max(x, y) = y < x ? x : y
                let (l, r) = if op == BinOp::Min { (x, y) } else { (y, x) };
                let c = self.b.ins().fcmp(FloatCC::LessThan, l, r);
                if vector {
                    let mask = self.b.ins().bitcast(
                        F32X4,
                        MemFlagsData::new().with_endianness(Endianness::Little),
                        c,
                    );
                    self.b.ins().bitselect(mask, x, y)
                } else {
                    self.b.ins().select(c, x, y)
                }
            }
            _ => return Err(Self::internal("bad float operator")),
        })
    }

    /// True when evaluating `e` would load from memory the bounds analysis cannot prove in
    /// range here.
    fn risky(&self, e: ExprId) -> bool {
        let mut risky = false;
        visit_loads(self.nest, &[e], |b, i| {
            if !self.promoted.contains_key(&b) {
                let len = self.nest.buffer(b).len();
                risky |= !interval(self.nest, i, &self.known).within(len);
            }
        });
        risky
    }

    /// `c ? a : b`, evaluating only the chosen branch when a branch loads out of the proven
    /// range (padding).
    fn select_f(&mut self, c: ExprId, a: ExprId, b: ExprId, vector: bool) -> R<Value> {
        match self.eval_bool(c)? {
            BVal::Const(true) => self.refined(c, |s| s.eval_fv(a, vector)),
            BVal::Const(false) => self.eval_fv(b, vector),
            BVal::Dyn(cv) => {
                if !self.risky(a) && !self.risky(b) {
                    let x = self.eval_fv(a, vector)?;
                    let y = self.eval_fv(b, vector)?;
                    return Ok(self.b.ins().select(cv, x, y));
                }
                let ty = if vector { F32X4 } else { F32 };
                let then = self.b.create_block();
                let els = self.b.create_block();
                let merge = self.b.create_block();
                let res = self.b.append_block_param(merge, ty);
                self.b.ins().brif(cv, then, &[], els, &[]);
                self.b.switch_to_block(then);
                let x = self.refined(c, |s| s.eval_fv(a, vector))?;
                self.b.ins().jump(merge, &[x.into()]);
                self.b.switch_to_block(els);
                let y = self.eval_fv(b, vector)?;
                self.b.ins().jump(merge, &[y.into()]);
                self.b.switch_to_block(merge);
                Ok(res)
            }
        }
    }

    fn call_exp(&mut self, x: Value) -> Value {
        let f = match self.exp_ref {
            Some(f) => f,
            None => {
                let f = self
                    .c
                    .module
                    .declare_func_in_func(self.c.exp_fn, self.b.func);
                self.exp_ref = Some(f);
                f
            }
        };
        let inst = self.b.ins().call(f, &[x]);
        self.b.inst_results(inst)[0]
    }
}

/// Signature helpers for the imported runtime functions.
pub(crate) fn exp_signature(module: &JITModule) -> Signature {
    let mut sig = module.make_signature();
    sig.params.push(AbiParam::new(F32));
    sig.returns.push(AbiParam::new(F32));
    sig
}

/// A micro-kernel of family `kind`: `(k, a, a_rs, a_ks, b, b_ks, c, c_rs)`, all 64-bit,
/// preceded by `(k2, a_k2s, b_k2s)` for an elementwise one.
pub(crate) fn ukernel_signature(module: &JITModule, kind: KernelKind) -> Signature {
    let mut sig = module.make_signature();
    let params = match kind {
        KernelKind::Broadcast => 8,
        KernelKind::Elementwise => 11,
    };
    for _ in 0..params {
        sig.params.push(AbiParam::new(I64));
    }
    sig
}

/// A run routine ([`crate::bulk::RunFn`]): seven 64-bit arguments and the fill value.
pub(crate) fn run_signature(module: &JITModule) -> Signature {
    let mut sig = module.make_signature();
    for _ in 0..7 {
        sig.params.push(AbiParam::new(I64));
    }
    sig.params.push(AbiParam::new(F32));
    sig
}

/// An epilogue routine ([`crate::epilogue::EpilogueFn`]): the program and the pointer array.
pub(crate) fn epilogue_signature(module: &JITModule) -> Signature {
    let mut sig = module.make_signature();
    for _ in 0..2 {
        sig.params.push(AbiParam::new(I64));
    }
    sig
}

/// A fused kernel ([`crate::epilogue::FusedKernelFn`]): twelve 64-bit arguments.
pub(crate) fn fused_signature(module: &JITModule) -> Signature {
    let mut sig = module.make_signature();
    for _ in 0..12 {
        sig.params.push(AbiParam::new(I64));
    }
    sig
}

/// `tessel_parallel_for(rt, body, ctx, extent)`.
pub(crate) fn par_signature(module: &JITModule) -> Signature {
    let mut sig = module.make_signature();
    for _ in 0..4 {
        sig.params.push(AbiParam::new(I64));
    }
    sig
}
