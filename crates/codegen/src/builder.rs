//! A terse way to write loop nests by hand (tests, benches, examples).
//!
//! [`NestBuilder`] keeps a stack of open statement bodies: `for_`, `if_` and `alloc` open one,
//! run a closure that adds statements to it, and close it. Inputs are placed before outputs
//! in the parameter list, whatever order they are declared in.
//!
//! ```
//! use tessel_codegen::builder::NestBuilder;
//! use tessel_ir::loop_nest::LoopKind;
//! let mut b = NestBuilder::new("copy");
//! let x = b.input("x", &[4]);
//! let y = b.output("y", &[4]);
//! b.for_("i", 4, LoopKind::Serial, |b, i| {
//!     let v = b.load(x, i);
//!     b.store(y, i, v);
//! });
//! let nest = b.finish();
//! assert_eq!(nest.params.len(), 2);
//! ```

use tessel_ir::expr::{BinOp, UnOp};
use tessel_ir::loop_nest::{
    Buffer, BufferId, BufferScope, ExprId, Loop, LoopId, LoopKind, Node, Stmt, StmtId,
};
use tessel_ir::LoopNest;

/// Builds a [`LoopNest`] statement by statement.
pub struct NestBuilder {
    /// The nest being built (expressions can be added through it directly).
    pub nest: LoopNest,
    open: Vec<Vec<StmtId>>,
    inputs: Vec<BufferId>,
    outputs: Vec<BufferId>,
}

impl NestBuilder {
    /// An empty nest called `name`.
    pub fn new(name: &str) -> NestBuilder {
        NestBuilder {
            nest: LoopNest::new(name),
            open: vec![Vec::new()],
            inputs: Vec::new(),
            outputs: Vec::new(),
        }
    }

    fn buffer(&mut self, name: &str, shape: &[i64], scope: BufferScope) -> BufferId {
        self.nest.add_buffer(Buffer::new(name, shape, scope))
    }

    /// Declares an input parameter.
    pub fn input(&mut self, name: &str, shape: &[i64]) -> BufferId {
        let b = self.buffer(name, shape, BufferScope::Input);
        self.inputs.push(b);
        b
    }

    /// Declares an output parameter.
    pub fn output(&mut self, name: &str, shape: &[i64]) -> BufferId {
        let b = self.buffer(name, shape, BufferScope::Output);
        self.outputs.push(b);
        b
    }

    /// Declares a kernel-wide temporary.
    pub fn global(&mut self, name: &str, shape: &[i64]) -> BufferId {
        self.buffer(name, shape, BufferScope::Global)
    }

    /// Declares a local buffer (use it inside [`NestBuilder::alloc`]).
    pub fn local(&mut self, name: &str, shape: &[i64]) -> BufferId {
        self.buffer(name, shape, BufferScope::Local)
    }

    fn push(&mut self, s: Stmt) {
        let id = self.nest.add_stmt(s);
        if let Some(top) = self.open.last_mut() {
            top.push(id);
        }
    }

    fn body(&mut self, f: impl FnOnce(&mut Self)) -> Vec<StmtId> {
        self.open.push(Vec::new());
        f(self);
        self.open.pop().unwrap_or_default()
    }

    /// `for name in 0..extent { f(var) }` with the given kind; returns the loop.
    pub fn for_(
        &mut self,
        name: &str,
        extent: i64,
        kind: LoopKind,
        f: impl FnOnce(&mut Self, ExprId),
    ) -> LoopId {
        let lp = self.nest.add_loop(Loop {
            name: name.to_string(),
            extent,
            kind,
        });
        let var = self.nest.var(lp);
        let body = self.body(|b| f(b, var));
        self.push(Stmt::For {
            lp,
            body,
            auto_unroll_max_step: None,
        });
        lp
    }

    /// `if cond { f }`.
    pub fn if_(&mut self, cond: ExprId, f: impl FnOnce(&mut Self)) {
        let body = self.body(f);
        self.push(Stmt::If { cond, body });
    }

    /// `alloc buf { f }`.
    pub fn alloc(&mut self, buf: BufferId, f: impl FnOnce(&mut Self)) {
        let body = self.body(f);
        self.push(Stmt::Alloc { buf, body });
    }

    /// `buf[index] = value`.
    pub fn store(&mut self, buf: BufferId, index: ExprId, value: ExprId) {
        self.push(Stmt::Store { buf, index, value });
    }

    /// Integer constant.
    pub fn int(&mut self, v: i64) -> ExprId {
        self.nest.int(v)
    }

    /// Float constant.
    pub fn float(&mut self, v: f32) -> ExprId {
        self.nest.float(v)
    }

    /// `buf[index]`.
    pub fn load(&mut self, buf: BufferId, index: ExprId) -> ExprId {
        self.nest.node(Node::Load(buf, index))
    }

    /// Binary operation (integer constants fold).
    pub fn bin(&mut self, op: BinOp, a: ExprId, b: ExprId) -> ExprId {
        self.nest.binary(op, a, b)
    }

    /// `a + b`
    pub fn add(&mut self, a: ExprId, b: ExprId) -> ExprId {
        self.bin(BinOp::Add, a, b)
    }

    /// `a - b`
    pub fn sub(&mut self, a: ExprId, b: ExprId) -> ExprId {
        self.bin(BinOp::Sub, a, b)
    }

    /// `a * b`
    pub fn mul(&mut self, a: ExprId, b: ExprId) -> ExprId {
        self.bin(BinOp::Mul, a, b)
    }

    /// `a < b`
    pub fn lt(&mut self, a: ExprId, b: ExprId) -> ExprId {
        self.bin(BinOp::Lt, a, b)
    }

    /// `a * c + b` for integer constants `c`: the usual flattened index `outer*stride + inner`.
    pub fn idx(&mut self, outer: ExprId, stride: i64, inner: ExprId) -> ExprId {
        let c = self.int(stride);
        let m = self.mul(outer, c);
        self.add(m, inner)
    }

    /// Unary operation.
    pub fn un(&mut self, op: UnOp, a: ExprId) -> ExprId {
        self.nest.node(Node::Unary(op, a))
    }

    /// `cond ? a : b`
    pub fn select(&mut self, cond: ExprId, a: ExprId, b: ExprId) -> ExprId {
        self.nest.node(Node::Select(cond, a, b))
    }

    /// The finished nest (parameters: inputs, then outputs).
    pub fn finish(mut self) -> LoopNest {
        self.nest.body = self.open.pop().unwrap_or_default();
        self.nest.params = self.inputs.iter().chain(&self.outputs).copied().collect();
        self.nest
    }
}
