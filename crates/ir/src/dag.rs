//! The compute DAG: the ops of one task in topological order.
//!
//! A [`ComputeDag`] is built with a [`DagBuilder`]: placeholders (inputs) first, then compute
//! ops that read earlier tensors. Ops are numbered by [`OpId`] in that order, which is also
//! Ansor's stage numbering of a fresh schedule. The graph (producer → consumer edges) is a
//! petgraph `DiGraph`; its canonical text form ([`ComputeDag::canonical_text`]) is hashed into
//! the stable [`ComputeDag::workload_key`].
//!
//! ```
//! use tessel_ir::dag::{DagBuilder, Reducer};
//! let mut b = DagBuilder::new();
//! let a = b.placeholder("A", &[4, 8]);
//! let w = b.placeholder("B", &[8, 2]);
//! let c = b.reduce("C", &[("i", 4), ("j", 2)], &[("k", 8)], Reducer::Sum, |ax| {
//!     a.at([ax[0].clone(), ax[2].clone()]) * w.at([ax[2].clone(), ax[1].clone()])
//! });
//! let dag = b.build().unwrap();
//! assert_eq!(dag.ops().len(), 3);
//! assert_eq!(dag.outputs(), vec![c.id]);
//! ```

use crate::expr::{Expr, OpId, ScalarType};
use crate::IrError;
use petgraph::graph::{DiGraph, NodeIndex};
use serde::{Deserialize, Serialize};
use std::fmt;

/// One loop axis of a compute op.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Axis {
    /// Name, as printed (`i`, `rh`, ...).
    pub name: String,
    /// Number of iterations (axes start at 0).
    pub extent: i64,
}

/// How a reduction combines its terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Reducer {
    /// Sum, starting from 0.
    Sum,
    /// Maximum, starting from the lowest finite `f32` (-3.4028235e38), as TVM does.
    Max,
}

impl Reducer {
    /// The value the reduction starts from.
    pub fn init(self) -> f32 {
        match self {
            Reducer::Sum => 0.0,
            Reducer::Max => f32::MIN,
        }
    }

    /// Combines an accumulator with one term.
    pub fn combine(self, acc: f32, term: f32) -> f32 {
        match self {
            Reducer::Sum => acc + term,
            Reducer::Max => acc.max(term),
        }
    }

    /// Name as printed.
    pub fn name(self) -> &'static str {
        match self {
            Reducer::Sum => "sum",
            Reducer::Max => "max",
        }
    }
}

/// A compute op: `out[spatial axes] = body` or, with a reducer,
/// `out[spatial axes] = reduce over reduce_axes of body`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ComputeOp {
    /// Spatial axes; one per output dimension, in order.
    pub axes: Vec<Axis>,
    /// Reduction axes (empty for element-wise and injective ops).
    pub reduce_axes: Vec<Axis>,
    /// The reducer; `Some` exactly when `reduce_axes` is non-empty.
    pub reducer: Option<Reducer>,
    /// The value (or reduction term). `Expr::Axis(n)` is spatial axis `n` for
    /// `n < axes.len()`, else reduction axis `n - axes.len()`.
    pub body: Expr,
}

impl ComputeOp {
    /// All axes, spatial first then reduction, in `Expr::Axis` numbering.
    pub fn all_axes(&self) -> impl Iterator<Item = &Axis> {
        self.axes.iter().chain(self.reduce_axes.iter())
    }

    /// Product of the reduction extents (1 without reduction).
    pub fn reduce_size(&self) -> i64 {
        self.reduce_axes.iter().map(|a| a.extent).product()
    }
}

/// What an op is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum OpKind {
    /// An input tensor.
    Placeholder,
    /// A computed tensor.
    Compute(ComputeOp),
}

/// One tensor of the DAG and how it is made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Op {
    /// Unique name within the DAG.
    pub name: String,
    /// Shape of the tensor (row-major, last axis fastest). Element type is always `f32`.
    pub shape: Vec<i64>,
    /// Placeholder or compute.
    pub kind: OpKind,
    /// A constant weight: a placeholder whose value is fixed once the model is trained
    /// (convolution and dense weights, biases), as opposed to an activation or a matmul
    /// operand that changes with every call. Ansor calls such inputs "layout-free": code
    /// generation may rewrite their layout once and reuse it across calls. Only
    /// placeholders may be constant ([`ComputeDag::from_ops`] checks it). Not part of the
    /// [`canonical_text`](ComputeDag::canonical_text) nor of the workload key, so records
    /// made before the flag existed still match; missing in old JSON means `false`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub constant: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Op {
    /// The compute definition, or `None` for a placeholder.
    pub fn compute(&self) -> Option<&ComputeOp> {
        match &self.kind {
            OpKind::Compute(c) => Some(c),
            OpKind::Placeholder => None,
        }
    }

    /// Number of elements.
    pub fn num_elements(&self) -> i64 {
        self.shape.iter().product()
    }
}

/// A handle to a tensor made by a [`DagBuilder`], used to write reads in later ops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tensor {
    /// The op that makes this tensor.
    pub id: OpId,
    /// Its shape.
    pub shape: Vec<i64>,
}

impl Tensor {
    /// `self[indices]` as an expression.
    pub fn at(&self, indices: impl IntoIterator<Item = Expr>) -> Expr {
        Expr::Read {
            tensor: self.id,
            indices: indices.into_iter().collect(),
        }
    }

    /// Number of dimensions.
    pub fn ndim(&self) -> usize {
        self.shape.len()
    }
}

/// Builds a [`ComputeDag`] op by op, in topological order.
#[derive(Default)]
pub struct DagBuilder {
    ops: Vec<Op>,
}

impl DagBuilder {
    /// An empty builder.
    pub fn new() -> DagBuilder {
        DagBuilder::default()
    }

    /// Adds an input tensor that may change from call to call (an activation, a matmul
    /// operand).
    pub fn placeholder(&mut self, name: &str, shape: &[i64]) -> Tensor {
        self.push(Op {
            name: name.to_string(),
            shape: shape.to_vec(),
            kind: OpKind::Placeholder,
            constant: false,
        })
    }

    /// Adds a constant input tensor: a weight or bias, fixed across calls
    /// ([`Op::constant`]).
    pub fn weight(&mut self, name: &str, shape: &[i64]) -> Tensor {
        self.push(Op {
            name: name.to_string(),
            shape: shape.to_vec(),
            kind: OpKind::Placeholder,
            constant: true,
        })
    }

    /// Adds an element-wise / injective op: `f` gets one `Expr::Axis` per spatial axis.
    pub fn compute(
        &mut self,
        name: &str,
        axes: &[(&str, i64)],
        f: impl FnOnce(&[Expr]) -> Expr,
    ) -> Tensor {
        let vars: Vec<Expr> = (0..axes.len() as u32).map(Expr::axis).collect();
        let body = f(&vars);
        self.push(Op {
            name: name.to_string(),
            shape: axes.iter().map(|a| a.1).collect(),
            kind: OpKind::Compute(ComputeOp {
                axes: to_axes(axes),
                reduce_axes: Vec::new(),
                reducer: None,
                body,
            }),
            constant: false,
        })
    }

    /// Adds a reduction: `f` gets the spatial axes followed by the reduction axes.
    pub fn reduce(
        &mut self,
        name: &str,
        axes: &[(&str, i64)],
        reduce_axes: &[(&str, i64)],
        reducer: Reducer,
        f: impl FnOnce(&[Expr]) -> Expr,
    ) -> Tensor {
        let n = (axes.len() + reduce_axes.len()) as u32;
        let vars: Vec<Expr> = (0..n).map(Expr::axis).collect();
        let body = f(&vars);
        self.push(Op {
            name: name.to_string(),
            shape: axes.iter().map(|a| a.1).collect(),
            kind: OpKind::Compute(ComputeOp {
                axes: to_axes(axes),
                reduce_axes: to_axes(reduce_axes),
                reducer: Some(reducer),
                body,
            }),
            constant: false,
        })
    }

    /// Adds an op as it is (used by schedule steps that rewrite the DAG).
    pub fn push(&mut self, op: Op) -> Tensor {
        let id = OpId(self.ops.len() as u32);
        let shape = op.shape.clone();
        self.ops.push(op);
        Tensor { id, shape }
    }

    /// `base` if no tensor of the builder has that name yet, else the first free
    /// `base_1`, `base_2`, ... (TVM's renaming when two stages share a name). Operator
    /// builders name their stages with it so that composed graphs keep unique names.
    pub fn unique_name(&self, base: &str) -> String {
        let taken = |n: &str| self.ops.iter().any(|o| o.name == n);
        if !taken(base) {
            return base.to_string();
        }
        (1..)
            .map(|k| format!("{base}_{k}"))
            .find(|n| !taken(n))
            .unwrap_or_else(|| base.to_string())
    }

    /// Checks the ops and builds the DAG.
    pub fn build(self) -> Result<ComputeDag, IrError> {
        ComputeDag::from_ops(self.ops)
    }
}

fn to_axes(axes: &[(&str, i64)]) -> Vec<Axis> {
    axes.iter()
        .map(|(n, e)| Axis {
            name: n.to_string(),
            extent: *e,
        })
        .collect()
}

/// The ops of one task in topological order, with their producer → consumer graph.
#[derive(Clone, Debug)]
pub struct ComputeDag {
    ops: Vec<Op>,
    graph: DiGraph<OpId, ()>,
    consumers: Vec<Vec<OpId>>,
    producers: Vec<Vec<OpId>>,
}

impl PartialEq for ComputeDag {
    fn eq(&self, other: &ComputeDag) -> bool {
        self.ops == other.ops
    }
}

impl ComputeDag {
    /// Checks `ops` (topological order, unique names, well-typed bodies, reads of earlier
    /// tensors with the right number of indices, positive extents) and builds the DAG.
    pub fn from_ops(ops: Vec<Op>) -> Result<ComputeDag, IrError> {
        let bad = |op: &Op, why: String| IrError::InvalidOp {
            op: op.name.clone(),
            reason: why,
        };
        for (k, op) in ops.iter().enumerate() {
            if ops[..k].iter().any(|o| o.name == op.name) {
                return Err(bad(op, "duplicate tensor name".into()));
            }
            if op.shape.iter().any(|&d| d <= 0) {
                return Err(bad(
                    op,
                    format!("non-positive dimension in shape {:?}", op.shape),
                ));
            }
            let Some(c) = op.compute() else { continue };
            if op.constant {
                return Err(bad(op, "only placeholders can be constant weights".into()));
            }
            if c.axes.len() != op.shape.len()
                || c.axes.iter().zip(&op.shape).any(|(a, &d)| a.extent != d)
            {
                return Err(bad(op, "spatial axes do not match the shape".into()));
            }
            if c.reduce_axes.iter().any(|a| a.extent <= 0) {
                return Err(bad(op, "non-positive reduction extent".into()));
            }
            if c.reduce_axes.is_empty() != c.reducer.is_none() {
                return Err(bad(op, "a reducer goes with reduction axes".into()));
            }
            if c.body.ty() != ScalarType::Float {
                return Err(bad(op, "the body must be a float expression".into()));
            }
            let n_axes = (c.axes.len() + c.reduce_axes.len()) as u32;
            let mut problem = None;
            c.body.visit(&mut |e| match e {
                Expr::Axis(n) if *n >= n_axes => {
                    problem = Some(format!("axis {n} out of range"));
                }
                Expr::Read { tensor, indices } => {
                    if tensor.index() >= k {
                        problem = Some(format!(
                            "reads tensor #{} that is not defined before it",
                            tensor.0
                        ));
                    } else if ops[tensor.index()].shape.len() != indices.len() {
                        problem = Some(format!(
                            "reads {} with {} indices, but it has {} dimensions",
                            ops[tensor.index()].name,
                            indices.len(),
                            ops[tensor.index()].shape.len()
                        ));
                    } else if indices.iter().any(|i| i.ty() != ScalarType::Int) {
                        problem = Some(format!(
                            "non-integer index into {}",
                            ops[tensor.index()].name
                        ));
                    }
                }
                _ => {}
            });
            if let Some(p) = problem {
                return Err(bad(op, p));
            }
        }
        if !ops.iter().any(|o| o.compute().is_some()) {
            return Err(IrError::InvalidOp {
                op: "<dag>".into(),
                reason: "a DAG needs at least one compute op".into(),
            });
        }
        let mut graph = DiGraph::new();
        let nodes: Vec<NodeIndex> = (0..ops.len())
            .map(|k| graph.add_node(OpId(k as u32)))
            .collect();
        let mut consumers = vec![Vec::new(); ops.len()];
        let mut producers = vec![Vec::new(); ops.len()];
        for (k, op) in ops.iter().enumerate() {
            if let Some(c) = op.compute() {
                for (t, _) in c.body.reads() {
                    if !producers[k].contains(&t) {
                        producers[k].push(t);
                        consumers[t.index()].push(OpId(k as u32));
                        graph.add_edge(nodes[t.index()], nodes[k], ());
                    }
                }
            }
        }
        Ok(ComputeDag {
            ops,
            graph,
            consumers,
            producers,
        })
    }

    /// All ops in topological order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// One op.
    pub fn op(&self, id: OpId) -> &Op {
        &self.ops[id.index()]
    }

    /// True when input `id` is a constant weight ([`Op::constant`]).
    pub fn is_constant(&self, id: OpId) -> bool {
        self.op(id).constant
    }

    /// The op named `name`.
    pub fn find(&self, name: &str) -> Option<OpId> {
        self.ops
            .iter()
            .position(|o| o.name == name)
            .map(|k| OpId(k as u32))
    }

    /// The producer → consumer graph (node weights are op ids).
    pub fn graph(&self) -> &DiGraph<OpId, ()> {
        &self.graph
    }

    /// Ops that read `id`, in topological order.
    pub fn consumers(&self, id: OpId) -> &[OpId] {
        &self.consumers[id.index()]
    }

    /// Tensors that `id` reads, in order of first read.
    pub fn producers(&self, id: OpId) -> &[OpId] {
        &self.producers[id.index()]
    }

    /// Input tensors, in order: the first arguments of a compiled kernel.
    pub fn inputs(&self) -> Vec<OpId> {
        (0..self.ops.len() as u32)
            .map(OpId)
            .filter(|&i| self.op(i).compute().is_none())
            .collect()
    }

    /// Compute ops that nothing reads: the kernel's outputs, after its inputs.
    pub fn outputs(&self) -> Vec<OpId> {
        (0..self.ops.len() as u32)
            .map(OpId)
            .filter(|&i| self.op(i).compute().is_some() && self.consumers(i).is_empty())
            .collect()
    }

    /// Floating-point operations of one run, counted as TVM's `estimate_tir_flops` does:
    /// per output element, every float add, sub, mul, div, min and max of the body, plus one
    /// per reduction step for the reducer's combine; math calls (`exp`, `sqrt`), integer index
    /// arithmetic and selects are not counted.
    pub fn flop_count(&self) -> u64 {
        let mut total: u64 = 0;
        for op in &self.ops {
            let Some(c) = op.compute() else { continue };
            let mut per_term: u64 = 0;
            c.body.visit(&mut |e| {
                if let Expr::Binary(bop, a, _) = e {
                    let arith = matches!(
                        bop,
                        crate::expr::BinOp::Add
                            | crate::expr::BinOp::Sub
                            | crate::expr::BinOp::Mul
                            | crate::expr::BinOp::Div
                            | crate::expr::BinOp::Min
                            | crate::expr::BinOp::Max
                    );
                    if arith && a.ty() == ScalarType::Float {
                        per_term += 1;
                    }
                }
            });
            if c.reducer.is_some() {
                per_term += 1;
            }
            let points = op.num_elements() as u64 * c.reduce_size() as u64;
            total += per_term * points;
        }
        total
    }

    /// The canonical text form: one line per op. Equal text means equal computation.
    pub fn canonical_text(&self) -> String {
        self.to_string()
    }

    /// A stable key of the computation: 16 hex digits of the FNV-1a hash of
    /// [`canonical_text`](Self::canonical_text). Records and workers use it to tell
    /// workloads apart.
    pub fn workload_key(&self) -> String {
        format!("{:016x}", fnv1a(self.canonical_text().as_bytes()))
    }

    /// Prints `expr` (a body of op `id`) with that op's axis names and the DAG's tensor names.
    pub fn expr_text(&self, id: OpId, expr: &Expr) -> String {
        let op = self.op(id);
        let names: Vec<String> = op
            .compute()
            .map(|c| c.all_axes().map(|a| a.name.clone()).collect())
            .unwrap_or_default();
        let axis = |n: u32| {
            names
                .get(n as usize)
                .cloned()
                .unwrap_or_else(|| format!("ax{n}"))
        };
        let tensor = |t: OpId| self.ops[t.index()].name.clone();
        let text = expr.display(&axis, &tensor).to_string();
        text
    }
}

/// 64-bit FNV-1a: small, stable across platforms and Rust versions.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl fmt::Display for ComputeDag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, op) in self.ops.iter().enumerate() {
            let shape: Vec<String> = op.shape.iter().map(|d| d.to_string()).collect();
            match &op.kind {
                OpKind::Placeholder => {
                    writeln!(f, "{} = placeholder[{}]", op.name, shape.join(", "))?
                }
                OpKind::Compute(c) => {
                    let axes: Vec<String> = c.axes.iter().map(|a| a.name.clone()).collect();
                    let body = self.expr_text(OpId(k as u32), &c.body);
                    write!(f, "{}[{}] = ", op.name, axes.join(", "))?;
                    match c.reducer {
                        None => write!(f, "{body}")?,
                        Some(r) => {
                            let red: Vec<String> = c
                                .reduce_axes
                                .iter()
                                .map(|a| format!("{}:{}", a.name, a.extent))
                                .collect();
                            write!(f, "{}({body}, axis=[{}])", r.name(), red.join(", "))?
                        }
                    }
                    writeln!(f, "  # shape [{}]", shape.join(", "))?;
                }
            }
        }
        Ok(())
    }
}
