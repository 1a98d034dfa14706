//! The lowered program: a loop nest over flat buffers.
//!
//! A [`LoopNest`] is what [`crate::lower`] makes of a schedule and what codegen compiles and
//! the interpreter runs. Everything lives in arenas with typed indices (Cranelift style):
//!
//! * [`BufferId`] → [`Buffer`]: the kernel's arguments (inputs, then outputs) and its
//!   temporaries (global, or local to the loop where they are allocated). Buffers are flat
//!   `f32` arrays; multi-dimensional indices are flattened during lowering.
//! * [`LoopId`] → [`Loop`]: a loop variable running over `0..extent`, with its kind.
//! * [`ExprId`] → [`Node`]: expressions as a flat, hash-consed node list: children always have
//!   smaller ids than their parents, and equal sub-expressions share one id.
//! * [`StmtId`] → [`Stmt`]: for-loops, guarded blocks, local allocations and stores.
//!
//! A loop nest prints as readable text (see the `Display` impl), which golden tests compare.
//!
//! It is serde-serializable, so a lowered candidate can travel to a measurement worker: the
//! arenas are written as they are (ids are plain numbers) and the node interning table is
//! rebuilt when a nest is read back. A nest read from outside is not checked here; code
//! generation validates ids, the statement tree and types before it compiles one.

use crate::expr::{format_float, BinOp, ScalarType, UnOp};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;

macro_rules! entity {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub u32);
        impl $name {
            /// The index as `usize`.
            pub fn index(self) -> usize {
                self.0 as usize
            }
        }
    };
}

entity!(
    /// A buffer of a [`LoopNest`].
    BufferId
);
entity!(
    /// A loop (and its variable) of a [`LoopNest`].
    LoopId
);
entity!(
    /// An expression node of a [`LoopNest`].
    ExprId
);
entity!(
    /// A statement of a [`LoopNest`].
    StmtId
);

/// Where a buffer's memory comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BufferScope {
    /// A kernel argument that is only read.
    Input,
    /// A kernel argument that is written (an output of the DAG).
    Output,
    /// A temporary for the whole kernel (a `compute_root` intermediate stage).
    Global,
    /// A temporary allocated by a [`Stmt::Alloc`] inside a loop (a `compute_at` stage or a
    /// cache stage). Codegen may keep it in registers when every access has a constant index
    /// after unrolling.
    Local,
}

/// A flat `f32` buffer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Buffer {
    /// Name (the tensor's name, e.g. `C.local`).
    pub name: String,
    /// Logical shape (for printing and checks); the buffer holds their product of elements.
    pub shape: Vec<i64>,
    /// Where its memory comes from.
    pub scope: BufferScope,
    /// An input that holds a constant weight ([`crate::dag::Op::constant`]): its value is
    /// the same on every call, so code generation may keep a rewritten copy of it across
    /// calls. Always `false` for other scopes. Printed as `in const`.
    pub constant: bool,
}

impl Buffer {
    /// A buffer that is not a constant weight.
    pub fn new(name: &str, shape: &[i64], scope: BufferScope) -> Buffer {
        Buffer {
            name: name.to_string(),
            shape: shape.to_vec(),
            scope,
            constant: false,
        }
    }

    /// Number of `f32` elements.
    pub fn len(&self) -> i64 {
        self.shape.iter().product()
    }

    /// True when the buffer holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How a loop runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LoopKind {
    /// An ordinary loop.
    Serial,
    /// Iterations run in parallel on a thread pool.
    Parallel,
    /// Iterations become SIMD lanes.
    Vectorized,
    /// The loop is fully unrolled.
    Unrolled,
    /// A reduction loop whose body (a register tile) codegen may replace by one micro-kernel
    /// call (see [`crate::tensorize`]); otherwise an ordinary loop.
    Tensorized,
}

impl LoopKind {
    /// The keyword printed before `for`.
    pub fn keyword(self) -> &'static str {
        match self {
            LoopKind::Serial => "",
            LoopKind::Parallel => "parallel ",
            LoopKind::Vectorized => "vectorized ",
            LoopKind::Unrolled => "unrolled ",
            LoopKind::Tensorized => "tensorized ",
        }
    }
}

/// A loop variable running over `0..extent`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Loop {
    /// Name (the schedule iterator's name, e.g. `i.1`).
    pub name: String,
    /// Number of iterations, at least 1.
    pub extent: i64,
    /// How it runs.
    pub kind: LoopKind,
}

/// An expression node. Integers are `i64` index arithmetic, floats are `f32` values, booleans
/// come from comparisons; the type of a node follows from its operator and children
/// ([`LoopNest::ty`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Node {
    /// Integer constant.
    Int(i64),
    /// Float constant, as its bit pattern (so that nodes can be hashed).
    Float(u32),
    /// The current value of a loop variable.
    Var(LoopId),
    /// `buf[index]` (flat index).
    Load(BufferId, ExprId),
    /// Unary operator or math function.
    Unary(UnOp, ExprId),
    /// Binary operator (integer `/` and `%` are floor division and modulo).
    Binary(BinOp, ExprId, ExprId),
    /// `cond ? a : b`, evaluating only the chosen branch.
    Select(ExprId, ExprId, ExprId),
}

/// A statement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Stmt {
    /// `for var in 0..extent { body }`.
    For {
        /// The loop (variable, extent, kind).
        lp: LoopId,
        /// Statements run in each iteration.
        body: Vec<StmtId>,
        /// `auto_unroll_max_step` pragma placed on this loop by the schedule, if any. Lowering
        /// has already applied it (inner loops it covers are [`LoopKind::Unrolled`]); it is
        /// kept for printing and features.
        auto_unroll_max_step: Option<u32>,
    },
    /// `if cond { body }` (guards of splits that do not divide).
    If {
        /// A boolean expression.
        cond: ExprId,
        /// Statements run when it holds.
        body: Vec<StmtId>,
    },
    /// Allocates a [`BufferScope::Local`] buffer for the duration of `body` (contents start
    /// undefined).
    Alloc {
        /// The local buffer.
        buf: BufferId,
        /// Statements that may use it.
        body: Vec<StmtId>,
    },
    /// `buf[index] = value`.
    Store {
        /// Destination buffer.
        buf: BufferId,
        /// Flat integer index.
        index: ExprId,
        /// Float value.
        value: ExprId,
    },
}

/// A lowered kernel: buffers, loops, expressions and statements in arenas.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "LoopNestData")]
pub struct LoopNest {
    /// Kernel name (the workload's name or key).
    pub name: String,
    /// All buffers.
    pub buffers: Vec<Buffer>,
    /// Kernel arguments in call order: the DAG's inputs, then its outputs.
    pub params: Vec<BufferId>,
    /// All loops.
    pub loops: Vec<Loop>,
    /// All statements.
    pub stmts: Vec<Stmt>,
    /// Top-level statements.
    pub body: Vec<StmtId>,
    nodes: Vec<Node>,
    #[serde(skip)]
    dedup: HashMap<Node, ExprId>,
}

/// A [`LoopNest`] as read: its fields without the node interning table, which
/// [`LoopNest::from`] rebuilds.
#[derive(Deserialize)]
struct LoopNestData {
    name: String,
    buffers: Vec<Buffer>,
    params: Vec<BufferId>,
    loops: Vec<Loop>,
    stmts: Vec<Stmt>,
    body: Vec<StmtId>,
    nodes: Vec<Node>,
}

impl From<LoopNestData> for LoopNest {
    fn from(d: LoopNestData) -> LoopNest {
        let mut dedup = HashMap::with_capacity(d.nodes.len());
        for (k, &node) in d.nodes.iter().enumerate() {
            // The first of equal nodes wins, as when they were interned.
            dedup.entry(node).or_insert(ExprId(k as u32));
        }
        LoopNest {
            name: d.name,
            buffers: d.buffers,
            params: d.params,
            loops: d.loops,
            stmts: d.stmts,
            body: d.body,
            nodes: d.nodes,
            dedup,
        }
    }
}

impl LoopNest {
    /// An empty loop nest.
    pub fn new(name: &str) -> LoopNest {
        LoopNest {
            name: name.to_string(),
            ..LoopNest::default()
        }
    }

    /// Adds a buffer.
    pub fn add_buffer(&mut self, buffer: Buffer) -> BufferId {
        self.buffers.push(buffer);
        BufferId(self.buffers.len() as u32 - 1)
    }

    /// Adds a loop.
    pub fn add_loop(&mut self, lp: Loop) -> LoopId {
        self.loops.push(lp);
        LoopId(self.loops.len() as u32 - 1)
    }

    /// Adds a statement (place it in a body yourself).
    pub fn add_stmt(&mut self, stmt: Stmt) -> StmtId {
        self.stmts.push(stmt);
        StmtId(self.stmts.len() as u32 - 1)
    }

    /// Interns a node: equal nodes get equal ids.
    pub fn node(&mut self, node: Node) -> ExprId {
        if let Some(&id) = self.dedup.get(&node) {
            return id;
        }
        let id = ExprId(self.nodes.len() as u32);
        self.nodes.push(node);
        self.dedup.insert(node, id);
        id
    }

    /// Integer constant.
    pub fn int(&mut self, v: i64) -> ExprId {
        self.node(Node::Int(v))
    }

    /// Float constant.
    pub fn float(&mut self, v: f32) -> ExprId {
        self.node(Node::Float(v.to_bits()))
    }

    /// Loop variable.
    pub fn var(&mut self, lp: LoopId) -> ExprId {
        self.node(Node::Var(lp))
    }

    /// Binary node, folding integer constants and the identities `x+0`, `x*1`, `x*0`, `x/1`,
    /// `x%1` on integers so that printed indices stay short.
    pub fn binary(&mut self, op: BinOp, a: ExprId, b: ExprId) -> ExprId {
        if let (Node::Int(x), Node::Int(y)) = (self.get(a), self.get(b)) {
            if let Some(v) = fold_int(op, x, y) {
                return self.int(v);
            }
        }
        match (op, self.get(a), self.get(b)) {
            (BinOp::Add, Node::Int(0), _) => return b,
            (BinOp::Add | BinOp::Sub, _, Node::Int(0)) => return a,
            (BinOp::Mul, Node::Int(1), _) => return b,
            (BinOp::Mul | BinOp::Div, _, Node::Int(1)) => return a,
            (BinOp::Mul, Node::Int(0), _) | (BinOp::Mul, _, Node::Int(0)) => return self.int(0),
            (BinOp::Mod, _, Node::Int(1)) => return self.int(0),
            (BinOp::Sub, _, _) if a == b && self.ty(a) == ScalarType::Int => return self.int(0),
            // x - c → x + (-c), so that offsets written either way share one node.
            (BinOp::Sub, _, Node::Int(c)) if c != i64::MIN => {
                let neg = self.int(-c);
                return self.binary(BinOp::Add, a, neg);
            }
            // (x + y) - x → y, and any sum minus an expression that cancels some of its
            // terms: local offsets into region buffers (`(base + w + rw) - base`), which
            // interval bounds could not otherwise prove in range.
            (BinOp::Sub, Node::Binary(BinOp::Add, _, _), _) if self.ty(a) == ScalarType::Int => {
                if let Some(rest) = self.cancel_sub(a, b) {
                    return rest;
                }
            }
            // (x / c) * (c*k) + (x % c) * k → x * k, with any other terms on either side:
            // the index of a fused loop split back into its parents (`rw = f / C`,
            // `rc = f % C`) where the parents are contiguous in the buffer.
            (BinOp::Add, _, _)
                if self.ty(a) == ScalarType::Int
                    && (self.has_mod_term(a, 0) || self.has_mod_term(b, 0)) =>
            {
                if let Some(fused) = self.fuse_div_mod(a, b) {
                    return fused;
                }
            }
            _ => {}
        }
        self.node(Node::Binary(op, a, b))
    }

    /// True when the linear form of `e` (sums, differences and constant multiples) has a
    /// term `x % c` with a constant `c` (the cheap trigger of [`LoopNest::fuse_div_mod`]).
    fn has_mod_term(&self, e: ExprId, depth: usize) -> bool {
        if depth > 32 {
            return false;
        }
        match self.get(e) {
            Node::Binary(BinOp::Mod, _, m) => matches!(self.get(m), Node::Int(_)),
            Node::Binary(BinOp::Add | BinOp::Sub, x, y) => {
                self.has_mod_term(x, depth + 1) || self.has_mod_term(y, depth + 1)
            }
            Node::Binary(BinOp::Mul, x, y) => match (self.get(x), self.get(y)) {
                (_, Node::Int(_)) => self.has_mod_term(x, depth + 1),
                (Node::Int(_), _) => self.has_mod_term(y, depth + 1),
                _ => false,
            },
            _ => false,
        }
    }

    /// `a + b` rebuilt from their linear forms when a term `(x % c) * k` meets a term
    /// `(x / c) * (c*k)` (floor division and modulo, so the pair is exactly `x * k`);
    /// `None` when no such pair exists (or on overflow).
    fn fuse_div_mod(&mut self, a: ExprId, b: ExprId) -> Option<ExprId> {
        let mut terms = Vec::new();
        let mut konst = 0i64;
        self.linear(a, 1, &mut terms, &mut konst, 0)?;
        self.linear(b, 1, &mut terms, &mut konst, 0)?;
        let mut merged: Vec<(ExprId, i64)> = Vec::new();
        for (e, c) in terms {
            match merged.iter_mut().find(|(x, _)| *x == e) {
                Some(slot) => slot.1 = slot.1.checked_add(c)?,
                None => merged.push((e, c)),
            }
        }
        let mut fused = false;
        let mut k = 0;
        while k < merged.len() {
            let (m, coef) = merged[k];
            let Node::Binary(BinOp::Mod, x, cid) = self.get(m) else {
                k += 1;
                continue;
            };
            let Node::Int(c) = self.get(cid) else {
                k += 1;
                continue;
            };
            let div = self.dedup.get(&Node::Binary(BinOp::Div, x, cid)).copied();
            let want = coef.checked_mul(c);
            let pos = div.and_then(|d| {
                merged
                    .iter()
                    .position(|&(e, dc)| e == d && Some(dc) == want && dc != 0)
            });
            let Some(pos) = pos else {
                k += 1;
                continue;
            };
            // Remove both terms (the later index first), then add x * coef.
            let (hi, lo) = if pos > k { (pos, k) } else { (k, pos) };
            merged.remove(hi);
            merged.remove(lo);
            let mut more = Vec::new();
            self.linear(x, coef, &mut more, &mut konst, 0)?;
            for (e, c) in more {
                match merged.iter_mut().find(|(y, _)| *y == e) {
                    Some(slot) => slot.1 = slot.1.checked_add(c)?,
                    None => merged.push((e, c)),
                }
            }
            fused = true;
            k = 0;
        }
        if !fused {
            return None;
        }
        let mut out = self.int(konst);
        for (e, c) in merged {
            if c != 0 {
                let k = self.int(c);
                let t = self.mul(e, k);
                out = self.add(out, t);
            }
        }
        Some(out)
    }

    /// `a - b` rebuilt from their linear forms (integer multiples of the non-linear
    /// sub-expressions, plus a constant) when some sub-expression of `b` cancels one of `a`,
    /// so that `((w1*2 + w2)*4 + w3 + rw) - (w1*2)*4` becomes `w2*4 + w3 + rw`; `None` when
    /// nothing cancels (or on overflow).
    fn cancel_sub(&mut self, a: ExprId, b: ExprId) -> Option<ExprId> {
        let mut terms = Vec::new();
        let mut konst = 0i64;
        self.linear(a, 1, &mut terms, &mut konst, 0)?;
        let n_a = terms.len();
        self.linear(b, -1, &mut terms, &mut konst, 0)?;
        // Merge by sub-expression, keeping `a`'s order.
        let mut merged: Vec<(ExprId, i64, bool)> = Vec::new();
        for (k, &(e, c)) in terms.iter().enumerate() {
            match merged.iter_mut().find(|(x, _, _)| *x == e) {
                Some(slot) => {
                    slot.1 = slot.1.checked_add(c)?;
                    slot.2 |= k >= n_a;
                }
                None => merged.push((e, c, false)),
            }
        }
        if !merged.iter().any(|&(_, c, met)| met && c == 0) {
            return None;
        }
        let mut out = self.int(konst);
        for (e, c, _) in merged {
            if c != 0 {
                let k = self.int(c);
                let t = self.mul(e, k);
                out = self.add(out, t);
            }
        }
        Some(out)
    }

    /// Appends the linear form of integer expression `e` times `scale` to `terms` and
    /// `konst`: sums, differences and products by constants are expanded, anything else is
    /// a term. `None` on overflow or a too deep expression.
    fn linear(
        &self,
        e: ExprId,
        scale: i64,
        terms: &mut Vec<(ExprId, i64)>,
        konst: &mut i64,
        depth: usize,
    ) -> Option<()> {
        if depth > 32 {
            return None;
        }
        match self.get(e) {
            Node::Int(c) => *konst = konst.checked_add(c.checked_mul(scale)?)?,
            Node::Binary(BinOp::Add, x, y) => {
                self.linear(x, scale, terms, konst, depth + 1)?;
                self.linear(y, scale, terms, konst, depth + 1)?;
            }
            Node::Binary(BinOp::Sub, x, y) => {
                self.linear(x, scale, terms, konst, depth + 1)?;
                self.linear(y, scale.checked_neg()?, terms, konst, depth + 1)?;
            }
            Node::Binary(BinOp::Mul, x, y) => match (self.get(x), self.get(y)) {
                (_, Node::Int(c)) => {
                    self.linear(x, scale.checked_mul(c)?, terms, konst, depth + 1)?
                }
                (Node::Int(c), _) => {
                    self.linear(y, scale.checked_mul(c)?, terms, konst, depth + 1)?
                }
                _ => terms.push((e, scale)),
            },
            _ => terms.push((e, scale)),
        }
        Some(())
    }

    /// `a + b`
    pub fn add(&mut self, a: ExprId, b: ExprId) -> ExprId {
        self.binary(BinOp::Add, a, b)
    }

    /// `a * b`
    pub fn mul(&mut self, a: ExprId, b: ExprId) -> ExprId {
        self.binary(BinOp::Mul, a, b)
    }

    /// The node behind an id.
    pub fn get(&self, id: ExprId) -> Node {
        self.nodes[id.index()]
    }

    /// All expression nodes (children before parents).
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The type of an expression.
    pub fn ty(&self, id: ExprId) -> ScalarType {
        match self.get(id) {
            Node::Int(_) | Node::Var(_) => ScalarType::Int,
            Node::Float(_) | Node::Load(..) => ScalarType::Float,
            Node::Unary(UnOp::Not, _) => ScalarType::Bool,
            Node::Unary(UnOp::Neg, a) => self.ty(a),
            Node::Unary(_, _) => ScalarType::Float,
            Node::Binary(op, a, _) => {
                if op.is_comparison() || matches!(op, BinOp::And | BinOp::Or) {
                    ScalarType::Bool
                } else {
                    self.ty(a)
                }
            }
            Node::Select(_, a, _) => self.ty(a),
        }
    }

    /// The buffer behind an id.
    pub fn buffer(&self, id: BufferId) -> &Buffer {
        &self.buffers[id.index()]
    }

    /// The loop behind an id.
    pub fn lp(&self, id: LoopId) -> &Loop {
        &self.loops[id.index()]
    }

    /// The statement behind an id.
    pub fn stmt(&self, id: StmtId) -> &Stmt {
        &self.stmts[id.index()]
    }

    /// Prints one expression.
    pub fn expr_text(&self, id: ExprId) -> String {
        let mut s = String::new();
        self.write_expr(&mut s, id)
            .expect("writing to a String cannot fail");
        s
    }

    fn write_expr(&self, f: &mut impl fmt::Write, id: ExprId) -> fmt::Result {
        match self.get(id) {
            Node::Int(v) => write!(f, "{v}"),
            Node::Float(bits) => write!(f, "{}", format_float(f32::from_bits(bits))),
            Node::Var(l) => write!(f, "{}", self.lp(l).name),
            Node::Load(b, i) => {
                write!(f, "{}[", self.buffer(b).name)?;
                self.write_expr(f, i)?;
                write!(f, "]")
            }
            Node::Unary(UnOp::Neg, a) => {
                write!(f, "(-")?;
                self.write_expr(f, a)?;
                write!(f, ")")
            }
            Node::Unary(UnOp::Not, a) => {
                write!(f, "!")?;
                self.write_expr(f, a)
            }
            Node::Unary(op, a) => {
                write!(f, "{}(", op.name())?;
                self.write_expr(f, a)?;
                write!(f, ")")
            }
            Node::Binary(op @ (BinOp::Min | BinOp::Max), a, b) => {
                write!(f, "{}(", op.symbol())?;
                self.write_expr(f, a)?;
                write!(f, ", ")?;
                self.write_expr(f, b)?;
                write!(f, ")")
            }
            Node::Binary(op, a, b) => {
                write!(f, "(")?;
                self.write_expr(f, a)?;
                write!(f, " {} ", op.symbol())?;
                self.write_expr(f, b)?;
                write!(f, ")")
            }
            Node::Select(c, a, b) => {
                write!(f, "select(")?;
                self.write_expr(f, c)?;
                write!(f, ", ")?;
                self.write_expr(f, a)?;
                write!(f, ", ")?;
                self.write_expr(f, b)?;
                write!(f, ")")
            }
        }
    }

    fn write_block(
        &self,
        f: &mut fmt::Formatter<'_>,
        body: &[StmtId],
        depth: usize,
    ) -> fmt::Result {
        for &s in body {
            self.write_stmt(f, s, depth)?;
        }
        Ok(())
    }

    fn write_stmt(&self, f: &mut fmt::Formatter<'_>, id: StmtId, depth: usize) -> fmt::Result {
        let pad = "  ".repeat(depth);
        match self.stmt(id) {
            Stmt::For {
                lp,
                body,
                auto_unroll_max_step,
            } => {
                let l = self.lp(*lp);
                write!(
                    f,
                    "{pad}{}for {} in 0..{}",
                    l.kind.keyword(),
                    l.name,
                    l.extent
                )?;
                if let Some(n) = auto_unroll_max_step {
                    write!(f, " @auto_unroll_max_step({n})")?;
                }
                writeln!(f, " {{")?;
                self.write_block(f, body, depth + 1)?;
                writeln!(f, "{pad}}}")
            }
            Stmt::If { cond, body } => {
                writeln!(f, "{pad}if {} {{", self.expr_text(*cond))?;
                self.write_block(f, body, depth + 1)?;
                writeln!(f, "{pad}}}")
            }
            Stmt::Alloc { buf, body } => {
                let b = self.buffer(*buf);
                writeln!(f, "{pad}alloc {}: f32{:?}", b.name, b.shape)?;
                self.write_block(f, body, depth)
            }
            Stmt::Store { buf, index, value } => writeln!(
                f,
                "{pad}{}[{}] = {}",
                self.buffer(*buf).name,
                self.expr_text(*index),
                self.expr_text(*value)
            ),
        }
    }
}

/// Folds an integer operation on constants (`None` for division by zero or overflow).
pub fn fold_int(op: BinOp, x: i64, y: i64) -> Option<i64> {
    Some(match op {
        BinOp::Add => x.checked_add(y)?,
        BinOp::Sub => x.checked_sub(y)?,
        BinOp::Mul => x.checked_mul(y)?,
        BinOp::Div => {
            if y == 0 {
                return None;
            }
            x.div_euclid(y) - if y < 0 && x.rem_euclid(y) != 0 { 1 } else { 0 }
        }
        BinOp::Mod => {
            if y == 0 {
                return None;
            }
            x - y * fold_int(BinOp::Div, x, y)?
        }
        BinOp::Min => x.min(y),
        BinOp::Max => x.max(y),
        _ => return None,
    })
}

impl fmt::Display for LoopNest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kernel {}(", self.name)?;
        for (k, &p) in self.params.iter().enumerate() {
            let b = self.buffer(p);
            let dir = match b.scope {
                BufferScope::Output => "out",
                _ if b.constant => "in const",
                _ => "in",
            };
            if k > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{}: {dir} f32{:?}", b.name, b.shape)?;
        }
        writeln!(f, ") {{")?;
        for b in self
            .buffers
            .iter()
            .filter(|b| b.scope == BufferScope::Global)
        {
            writeln!(f, "  global {}: f32{:?}", b.name, b.shape)?;
        }
        self.write_block(f, &self.body, 1)?;
        writeln!(f, "}}")
    }
}

#[cfg(test)]
mod tests {
    use crate::dag::{DagBuilder, Reducer};
    use crate::loop_nest::{LoopNest, Node};
    use std::sync::Arc;

    /// A lowered random schedule of a small matmul reads back from JSON as the same nest
    /// (arenas, printed text and the interning table: interning a node it holds gives its
    /// old id, a new node a new one).
    #[test]
    fn a_lowered_nest_round_trips_through_json() {
        let mut b = DagBuilder::new();
        let a = b.placeholder("A", &[12, 10]);
        let w = b.placeholder("B", &[10, 6]);
        b.reduce(
            "C",
            &[("i", 12), ("j", 6)],
            &[("k", 10)],
            Reducer::Sum,
            |v| a.at([v[0].clone(), v[2].clone()]) * w.at([v[2].clone(), v[1].clone()]),
        );
        let dag = Arc::new(b.build().expect("dag"));
        for seed in 0..8 {
            let state = crate::testing::random_state(
                &dag,
                &mut crate::rng::seeded(seed),
                &crate::testing::Limits::default(),
            );
            let nest = crate::lower::lower(&state).expect("lowers");
            let text = serde_json::to_string(&nest).expect("encodes");
            assert!(!text.contains("dedup"), "{text}");
            let mut back: LoopNest = serde_json::from_str(&text).expect("decodes");
            assert_eq!(back, nest, "seed {seed}");
            assert_eq!(back.to_string(), nest.to_string());
            let n = back.nodes().len();
            let last = back.get(crate::loop_nest::ExprId(n as u32 - 1));
            assert_eq!(back.node(last).index(), n - 1);
            assert_eq!(back.node(Node::Int(1 << 40)).index(), n);
        }
    }
}
