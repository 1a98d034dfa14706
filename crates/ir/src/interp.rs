//! The interpreter of a [`LoopNest`]: the oracle that codegen and lowering are tested
//! against, on small shapes.
//!
//! [`run`] executes the statements in order; every loop kind (parallel, vectorized,
//! unrolled) runs as a plain sequential loop. Integer `/` and `%` are floor division and
//! modulo, `Select` evaluates only the chosen branch, and integer overflow or division by zero
//! is an error. Global temporaries are allocated when the run starts and local buffers at
//! their [`Stmt::Alloc`]; both start filled with NaN so that reading a never-written element
//! shows up in the results. Any out-of-bounds access is an [`IrError::Eval`] naming the
//! buffer and the index, never a panic.
//!
//! Expressions are evaluated by recursion over [`ExprId`]s, without allocating.
//!
//! ```
//! use tessel_ir::expr::BinOp;
//! use tessel_ir::interp;
//! use tessel_ir::loop_nest::{Buffer, BufferScope, Loop, LoopKind, LoopNest, Stmt};
//! // out[i] = in[i] * 2 for i in 0..4
//! let mut nest = LoopNest::new("double");
//! let inp = nest.add_buffer(Buffer::new("in", &[4], BufferScope::Input));
//! let out = nest.add_buffer(Buffer::new("out", &[4], BufferScope::Output));
//! nest.params = vec![inp, out];
//! let i = nest.add_loop(Loop { name: "i".into(), extent: 4, kind: LoopKind::Serial });
//! let iv = nest.var(i);
//! let x = nest.node(tessel_ir::loop_nest::Node::Load(inp, iv));
//! let two = nest.float(2.0);
//! let value = nest.binary(BinOp::Mul, x, two);
//! let store = nest.add_stmt(Stmt::Store { buf: out, index: iv, value });
//! let lp = nest.add_stmt(Stmt::For { lp: i, body: vec![store], auto_unroll_max_step: None });
//! nest.body = vec![lp];
//! let mut args = vec![vec![1.0, 2.0, 3.0, 4.0], vec![0.0; 4]];
//! interp::run(&nest, &mut args).unwrap();
//! assert_eq!(args[1], vec![2.0, 4.0, 6.0, 8.0]);
//! ```

use crate::expr::{BinOp, UnOp};
use crate::loop_nest::{fold_int, BufferId, BufferScope, ExprId, LoopNest, Node, Stmt, StmtId};
use crate::IrError;

/// The value of an expression.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    /// An integer (index arithmetic).
    Int(i64),
    /// A float (tensor value).
    Float(f32),
    /// A boolean (comparison or logic).
    Bool(bool),
}

/// Where a buffer's elements live during a run.
enum Slot {
    /// Kernel argument `k`.
    Arg(usize),
    /// A global temporary, or a local buffer inside its `Alloc`.
    Temp(Vec<f32>),
    /// A local buffer outside its `Alloc` (its vector is kept to reuse the memory).
    Unallocated(Vec<f32>),
}

/// Runs `nest` on `args`, given in `nest.params` order; output arguments are written in place.
///
/// Errors: a wrong number of arguments, an argument whose length differs from its buffer's
/// size (naming the buffer), and any evaluation problem (out-of-bounds access, use of a local
/// buffer outside its allocation, integer overflow, division by zero, ill-typed node).
pub fn run(nest: &LoopNest, args: &mut [Vec<f32>]) -> Result<(), IrError> {
    if args.len() != nest.params.len() {
        return Err(IrError::Eval(format!(
            "kernel {} takes {} arguments, got {}",
            nest.name,
            nest.params.len(),
            args.len()
        )));
    }
    let mut slots: Vec<Slot> = Vec::with_capacity(nest.buffers.len());
    for (b, buf) in nest.buffers.iter().enumerate() {
        let param = nest.params.iter().position(|p| p.index() == b);
        let len = usize::try_from(buf.len())
            .map_err(|_| IrError::Eval(format!("buffer {} has a negative size", buf.name)))?;
        slots.push(match (param, buf.scope) {
            (Some(k), _) => {
                if args[k].len() != len {
                    return Err(IrError::Eval(format!(
                        "argument {k} ({}) has {} elements, expected {len} for shape {:?}",
                        buf.name,
                        args[k].len(),
                        buf.shape
                    )));
                }
                Slot::Arg(k)
            }
            (None, BufferScope::Local) => Slot::Unallocated(Vec::new()),
            (None, BufferScope::Global) => Slot::Temp(vec![f32::NAN; len]),
            (None, scope) => {
                return Err(IrError::Eval(format!(
                    "buffer {} is an {scope:?} buffer but not a kernel parameter",
                    buf.name
                )))
            }
        });
    }
    let mut m = Machine {
        nest,
        args,
        slots,
        vars: vec![0; nest.loops.len()],
    };
    m.block(&nest.body)
}

/// Evaluates an expression that does not load from buffers, with loop variable `l` set to
/// `vars[l]` (missing variables are 0). Useful to check index arithmetic.
pub fn eval_expr(nest: &LoopNest, e: ExprId, vars: &[i64]) -> Result<Value, IrError> {
    let mut v = vars.to_vec();
    v.resize(nest.loops.len().max(vars.len()), 0);
    let mut args: [Vec<f32>; 0] = [];
    let m = Machine {
        nest,
        args: &mut args,
        slots: nest
            .buffers
            .iter()
            .map(|_| Slot::Unallocated(Vec::new()))
            .collect(),
        vars: v,
    };
    m.eval(e)
}

struct Machine<'a> {
    nest: &'a LoopNest,
    args: &'a mut [Vec<f32>],
    slots: Vec<Slot>,
    vars: Vec<i64>,
}

fn err(msg: String) -> IrError {
    IrError::Eval(msg)
}

impl Machine<'_> {
    fn buffer_name(&self, b: BufferId) -> &str {
        self.nest
            .buffers
            .get(b.index())
            .map(|x| x.name.as_str())
            .unwrap_or("<unknown buffer>")
    }

    fn data(&self, b: BufferId) -> Result<&[f32], IrError> {
        match self.slots.get(b.index()) {
            Some(Slot::Arg(k)) => Ok(&self.args[*k]),
            Some(Slot::Temp(v)) => Ok(v),
            Some(Slot::Unallocated(_)) => Err(err(format!(
                "buffer {} is used outside its allocation",
                self.buffer_name(b)
            ))),
            None => Err(err(format!("unknown buffer #{}", b.0))),
        }
    }

    fn data_mut(&mut self, b: BufferId) -> Result<&mut [f32], IrError> {
        let name = self.buffer_name(b).to_string();
        match self.slots.get_mut(b.index()) {
            Some(Slot::Arg(k)) => Ok(&mut self.args[*k]),
            Some(Slot::Temp(v)) => Ok(v),
            Some(Slot::Unallocated(_)) => {
                Err(err(format!("buffer {name} is used outside its allocation")))
            }
            None => Err(err(format!("unknown buffer #{}", b.0))),
        }
    }

    fn block(&mut self, body: &[StmtId]) -> Result<(), IrError> {
        for &s in body {
            self.stmt(s)?;
        }
        Ok(())
    }

    fn stmt(&mut self, id: StmtId) -> Result<(), IrError> {
        let nest = self.nest;
        let stmt = nest
            .stmts
            .get(id.index())
            .ok_or_else(|| err(format!("unknown statement #{}", id.0)))?;
        match stmt {
            Stmt::For { lp, body, .. } => {
                let extent = nest
                    .loops
                    .get(lp.index())
                    .ok_or_else(|| err(format!("unknown loop #{}", lp.0)))?
                    .extent;
                for v in 0..extent {
                    self.vars[lp.index()] = v;
                    self.block(body)?;
                }
                Ok(())
            }
            Stmt::If { cond, body } => match self.eval(*cond)? {
                Value::Bool(true) => self.block(body),
                Value::Bool(false) => Ok(()),
                other => Err(err(format!(
                    "if condition {} is not a boolean: {other:?}",
                    nest.expr_text(*cond)
                ))),
            },
            Stmt::Alloc { buf, body } => {
                let b = buf.index();
                let len = nest
                    .buffers
                    .get(b)
                    .ok_or_else(|| err(format!("unknown buffer #{}", buf.0)))?
                    .len();
                let len = usize::try_from(len).map_err(|_| {
                    err(format!(
                        "buffer {} has a negative size",
                        self.buffer_name(*buf)
                    ))
                })?;
                let mut mem =
                    match std::mem::replace(&mut self.slots[b], Slot::Unallocated(Vec::new())) {
                        Slot::Unallocated(v) => v,
                        other => {
                            self.slots[b] = other;
                            return Err(err(format!(
                                "buffer {} is allocated while already live (or is not local)",
                                self.buffer_name(*buf)
                            )));
                        }
                    };
                mem.clear();
                mem.resize(len, f32::NAN);
                self.slots[b] = Slot::Temp(mem);
                let result = self.block(body);
                if let Slot::Temp(v) =
                    std::mem::replace(&mut self.slots[b], Slot::Unallocated(Vec::new()))
                {
                    self.slots[b] = Slot::Unallocated(v);
                }
                result
            }
            Stmt::Store { buf, index, value } => {
                let i = self.eval_int(*index)?;
                let v = match self.eval(*value)? {
                    Value::Float(v) => v,
                    other => {
                        return Err(err(format!(
                            "stored value {} is not a float: {other:?}",
                            nest.expr_text(*value)
                        )))
                    }
                };
                let data = self.data_mut(*buf)?;
                let len = data.len();
                match usize::try_from(i).ok().and_then(|k| data.get_mut(k)) {
                    Some(slot) => {
                        *slot = v;
                        Ok(())
                    }
                    None => Err(err(format!(
                        "out-of-bounds store {}[{i}] (buffer has {len} elements)",
                        self.buffer_name(*buf)
                    ))),
                }
            }
        }
    }

    fn eval_int(&self, e: ExprId) -> Result<i64, IrError> {
        match self.eval(e)? {
            Value::Int(v) => Ok(v),
            other => Err(err(format!(
                "{} is not an integer: {other:?}",
                self.nest.expr_text(e)
            ))),
        }
    }

    fn eval(&self, e: ExprId) -> Result<Value, IrError> {
        let node = *self
            .nest
            .nodes()
            .get(e.index())
            .ok_or_else(|| err(format!("unknown expression #{}", e.0)))?;
        match node {
            Node::Int(v) => Ok(Value::Int(v)),
            Node::Float(bits) => Ok(Value::Float(f32::from_bits(bits))),
            Node::Var(l) => self
                .vars
                .get(l.index())
                .map(|&v| Value::Int(v))
                .ok_or_else(|| err(format!("unknown loop #{}", l.0))),
            Node::Load(b, i) => {
                let i = self.eval_int(i)?;
                let data = self.data(b)?;
                usize::try_from(i)
                    .ok()
                    .and_then(|k| data.get(k))
                    .map(|&v| Value::Float(v))
                    .ok_or_else(|| {
                        err(format!(
                            "out-of-bounds load {}[{i}] (buffer has {} elements)",
                            self.buffer_name(b),
                            data.len()
                        ))
                    })
            }
            Node::Unary(op, a) => {
                let a = self.eval(a)?;
                match (op, a) {
                    (UnOp::Neg, Value::Int(x)) => x
                        .checked_neg()
                        .map(Value::Int)
                        .ok_or_else(|| err(format!("integer overflow in -({x})"))),
                    (UnOp::Neg, Value::Float(x)) => Ok(Value::Float(-x)),
                    (UnOp::Not, Value::Bool(x)) => Ok(Value::Bool(!x)),
                    (UnOp::Sqrt, Value::Float(x)) => Ok(Value::Float(x.sqrt())),
                    (UnOp::Exp, Value::Float(x)) => Ok(Value::Float(x.exp())),
                    (UnOp::ToFloat, Value::Int(x)) => Ok(Value::Float(x as f32)),
                    (op, a) => Err(err(format!("{} applied to {a:?}", op.name()))),
                }
            }
            Node::Binary(op, a, b) => {
                let a = self.eval(a)?;
                // `&&` and `||` short-circuit.
                match (op, a) {
                    (BinOp::And, Value::Bool(false)) => return Ok(Value::Bool(false)),
                    (BinOp::Or, Value::Bool(true)) => return Ok(Value::Bool(true)),
                    _ => {}
                }
                let b = self.eval(b)?;
                binary(op, a, b)
            }
            Node::Select(c, a, b) => match self.eval(c)? {
                Value::Bool(true) => self.eval(a),
                Value::Bool(false) => self.eval(b),
                other => Err(err(format!("select condition is not a boolean: {other:?}"))),
            },
        }
    }
}

fn binary(op: BinOp, a: Value, b: Value) -> Result<Value, IrError> {
    use Value::{Bool, Float, Int};
    Ok(match (a, b) {
        (Int(x), Int(y)) => match op {
            BinOp::Lt => Bool(x < y),
            BinOp::Le => Bool(x <= y),
            BinOp::Eq => Bool(x == y),
            BinOp::Ne => Bool(x != y),
            BinOp::And | BinOp::Or => {
                return Err(err(format!("{} applied to integers", op.symbol())))
            }
            _ => Int(fold_int(op, x, y).ok_or_else(|| {
                err(format!(
                    "integer overflow or division by zero in {x} {} {y}",
                    op.symbol()
                ))
            })?),
        },
        (Float(x), Float(y)) => match op {
            BinOp::Add => Float(x + y),
            BinOp::Sub => Float(x - y),
            BinOp::Mul => Float(x * y),
            BinOp::Div => Float(x / y),
            BinOp::Min => Float(x.min(y)),
            BinOp::Max => Float(x.max(y)),
            BinOp::Lt => Bool(x < y),
            BinOp::Le => Bool(x <= y),
            BinOp::Eq => Bool(x == y),
            BinOp::Ne => Bool(x != y),
            BinOp::Mod | BinOp::And | BinOp::Or => {
                return Err(err(format!("{} applied to floats", op.symbol())))
            }
        },
        (Bool(x), Bool(y)) => match op {
            BinOp::And => Bool(x && y),
            BinOp::Or => Bool(x || y),
            BinOp::Eq => Bool(x == y),
            BinOp::Ne => Bool(x != y),
            _ => return Err(err(format!("{} applied to booleans", op.symbol()))),
        },
        (a, b) => {
            return Err(err(format!(
                "{} applied to mismatched operands {a:?} and {b:?}",
                op.symbol()
            )))
        }
    })
}
