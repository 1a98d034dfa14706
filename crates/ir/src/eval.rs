//! The reference evaluator of a [`ComputeDag`]: the ground truth of Tessel.
//!
//! Semantics are the naive ones of TVM's unscheduled TE definition: every compute op is
//! materialized in topological order; a reduction starts from [`Reducer::init`] and
//! combines its terms in row-major order of the reduction axes; arithmetic is `f32`;
//! integer `/` and `%` are floor division and floor modulo; [`Expr::Select`] evaluates
//! only the chosen branch (padding reads outside the input are never made).
//!
//! It is fast enough to check real-size kernels: each op's body is compiled once into a
//! tree of closures, where every read whose indices are affine in the axes becomes a dot
//! product with precomputed strides, and reads that provably stay in bounds skip the
//! per-dimension checks. A read out of bounds (only possible in a select branch or with
//! non-affine indices) or an integer division by zero is an [`IrError::Eval`].
//!
//! ```
//! use tessel_ir::{eval, DagBuilder, Reducer};
//! let mut b = DagBuilder::new();
//! let a = b.placeholder("A", &[2, 2]);
//! let w = b.placeholder("B", &[2, 2]);
//! b.reduce("C", &[("i", 2), ("j", 2)], &[("k", 2)], Reducer::Sum, |v| {
//!     a.at([v[0].clone(), v[2].clone()]) * w.at([v[2].clone(), v[1].clone()])
//! });
//! let dag = b.build().unwrap();
//! let out = eval::evaluate(&dag, &[vec![1.0, 2.0, 3.0, 4.0], vec![1.0, 0.0, 0.0, 1.0]]).unwrap();
//! assert_eq!(out, vec![vec![1.0, 2.0, 3.0, 4.0]]);
//! ```

use crate::dag::{ComputeDag, ComputeOp, Reducer};
use crate::expr::{BinOp, Expr, OpId, ScalarType, UnOp};
use crate::IrError;
use std::cell::RefCell;

/// Evaluates `dag` on `inputs` (one buffer per [`ComputeDag::inputs`], in that order,
/// row-major) and returns the buffers of [`ComputeDag::outputs`], in that order.
///
/// A wrong number of inputs, a buffer of the wrong length, a read out of bounds or an
/// integer division by zero is an [`IrError::Eval`] naming the tensor.
pub fn evaluate(dag: &ComputeDag, inputs: &[Vec<f32>]) -> Result<Vec<Vec<f32>>, IrError> {
    let input_ids = dag.inputs();
    if inputs.len() != input_ids.len() {
        let names: Vec<&str> = input_ids.iter().map(|&i| dag.op(i).name.as_str()).collect();
        return Err(IrError::Eval(format!(
            "expected {} input buffers ({}), got {}",
            input_ids.len(),
            names.join(", "),
            inputs.len()
        )));
    }
    let mut bufs: Vec<Vec<f32>> = Vec::with_capacity(dag.ops().len());
    let mut next_input = 0;
    for (k, op) in dag.ops().iter().enumerate() {
        let len = element_count(&op.shape)
            .ok_or_else(|| IrError::Eval(format!("tensor {} is too large", op.name)))?;
        match op.compute() {
            None => {
                let given = &inputs[next_input];
                next_input += 1;
                if given.len() != len {
                    return Err(IrError::Eval(format!(
                        "input {} has shape {:?} ({len} elements), but its buffer has {} elements",
                        op.name,
                        op.shape,
                        given.len()
                    )));
                }
                bufs.push(given.clone());
            }
            Some(c) => {
                let out = run_op(dag, OpId(k as u32), c, &bufs, len)?;
                bufs.push(out);
            }
        }
    }
    Ok(dag
        .outputs()
        .into_iter()
        .map(|id| std::mem::take(&mut bufs[id.index()]))
        .collect())
}

/// Deterministic inputs for `dag`: one buffer per [`ComputeDag::inputs`], uniform in
/// `[-1, 1)`, drawn input after input from a splitmix64 stream seeded with `seed`.
pub fn random_inputs(dag: &ComputeDag, seed: u64) -> Vec<Vec<f32>> {
    let mut state = seed;
    dag.inputs()
        .into_iter()
        .map(|id| {
            let len = element_count(&dag.op(id).shape).unwrap_or(0);
            (0..len)
                .map(|_| {
                    // 24 random bits: exactly representable, in [0, 1).
                    let u = (splitmix64(&mut state) >> 40) as f32 / (1u32 << 24) as f32;
                    2.0 * u - 1.0
                })
                .collect()
        })
        .collect()
}

/// The splitmix64 generator (Steele, Lea and Flood): advances `state`, returns 64 bits.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Product of a shape, if it fits in memory indices.
fn element_count(shape: &[i64]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| {
        usize::try_from(d).ok().and_then(|d| acc.checked_mul(d))
    })
}

/// Row-major strides of a shape.
fn strides(shape: &[i64]) -> Vec<i64> {
    let mut s = vec![1i64; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1].wrapping_mul(shape[d + 1]);
    }
    s
}

type FloatFn<'a> = Box<dyn Fn(&[i64]) -> f32 + 'a>;
type IntFn<'a> = Box<dyn Fn(&[i64]) -> i64 + 'a>;
type BoolFn<'a> = Box<dyn Fn(&[i64]) -> bool + 'a>;
type ValueFn<'a, T> = Box<dyn Fn(&[i64]) -> T + 'a>;

/// The first run-time fault of an op (reads return 0 after it; the op then fails).
type Fault = RefCell<Option<String>>;

fn report(f: &Fault, msg: impl FnOnce() -> String) {
    let mut slot = f.borrow_mut();
    if slot.is_none() {
        *slot = Some(msg());
    }
}

/// Compiles the body of one op against the buffers of the ops before it.
struct Compiler<'a> {
    dag: &'a ComputeDag,
    bufs: &'a [Vec<f32>],
    /// Extent of every axis of the op (spatial, then reduction).
    extents: Vec<i64>,
    fault: &'a Fault,
}

/// `c + sum_a coef[a] * axis[a]`.
#[derive(Clone, Debug)]
struct Affine {
    c: i64,
    coef: Vec<i64>,
}

impl Affine {
    fn constant(c: i64, n: usize) -> Affine {
        Affine {
            c,
            coef: vec![0; n],
        }
    }

    fn scale(mut self, k: i64) -> Affine {
        self.c = self.c.checked_mul(k).unwrap_or(i64::MAX);
        self.coef.iter_mut().for_each(|v| *v = v.saturating_mul(k));
        self
    }

    fn plus(mut self, o: &Affine, sign: i64) -> Affine {
        self.c = self.c.saturating_add(sign.saturating_mul(o.c));
        for (a, b) in self.coef.iter_mut().zip(&o.coef) {
            *a = a.saturating_add(sign.saturating_mul(*b));
        }
        self
    }

    fn as_const(&self) -> Option<i64> {
        self.coef.iter().all(|&v| v == 0).then_some(self.c)
    }

    /// Smallest and largest value over the axes' ranges.
    fn range(&self, extents: &[i64]) -> (i64, i64) {
        let (mut lo, mut hi) = (self.c, self.c);
        for (&k, &e) in self.coef.iter().zip(extents) {
            let end = k.saturating_mul(e - 1);
            lo = lo.saturating_add(end.min(0));
            hi = hi.saturating_add(end.max(0));
        }
        (lo, hi)
    }

    /// The non-zero terms, as `(axis, coefficient)`.
    fn terms(&self) -> Vec<(usize, i64)> {
        self.coef
            .iter()
            .enumerate()
            .filter(|(_, &k)| k != 0)
            .map(|(a, &k)| (a, k))
            .collect()
    }
}

/// Integer floor division (`None` when dividing by zero).
fn floor_div(a: i64, b: i64) -> Option<i64> {
    if b == 0 {
        return None;
    }
    let q = a.wrapping_div(b);
    if a.wrapping_rem(b) != 0 && ((a < 0) != (b < 0)) {
        Some(q - 1)
    } else {
        Some(q)
    }
}

/// Integer floor modulo (`None` when dividing by zero).
fn floor_mod(a: i64, b: i64) -> Option<i64> {
    floor_div(a, b).map(|q| a.wrapping_sub(q.wrapping_mul(b)))
}

/// A closure computing `c + sum k * axis` for the given terms.
fn affine_fn<'a>(c: i64, terms: Vec<(usize, i64)>) -> IntFn<'a> {
    match terms.as_slice() {
        [] => Box::new(move |_| c),
        &[(a, k)] => Box::new(move |ax: &[i64]| c + k * ax[a]),
        &[(a, k), (b, l)] => Box::new(move |ax: &[i64]| c + k * ax[a] + l * ax[b]),
        &[(a, k), (b, l), (d, m)] => {
            Box::new(move |ax: &[i64]| c + k * ax[a] + l * ax[b] + m * ax[d])
        }
        _ => Box::new(move |ax: &[i64]| {
            terms
                .iter()
                .fold(c, |acc, &(a, k)| acc.wrapping_add(k.wrapping_mul(ax[a])))
        }),
    }
}

impl<'a> Compiler<'a> {
    fn naxes(&self) -> usize {
        self.extents.len()
    }

    fn affine(&self, e: &Expr) -> Option<Affine> {
        let n = self.naxes();
        match e {
            Expr::Int(v) => Some(Affine::constant(*v, n)),
            Expr::Axis(a) => {
                let mut f = Affine::constant(0, n);
                *f.coef.get_mut(*a as usize)? = 1;
                Some(f)
            }
            Expr::Unary(UnOp::Neg, a) => Some(self.affine(a)?.scale(-1)),
            Expr::Binary(op, a, b) => {
                let (fa, fb) = (self.affine(a)?, self.affine(b)?);
                match op {
                    BinOp::Add => Some(fa.plus(&fb, 1)),
                    BinOp::Sub => Some(fa.plus(&fb, -1)),
                    BinOp::Mul => match (fa.as_const(), fb.as_const()) {
                        (Some(k), _) => Some(fb.scale(k)),
                        (_, Some(k)) => Some(fa.scale(k)),
                        _ => None,
                    },
                    _ => None,
                }
            }
            _ => None,
        }
    }

    fn int(&self, e: &Expr) -> Result<IntFn<'a>, IrError> {
        if let Some(f) = self.affine(e) {
            return Ok(affine_fn(f.c, f.terms()));
        }
        let fault = self.fault;
        Ok(match e {
            Expr::Int(v) => {
                let v = *v;
                Box::new(move |_| v)
            }
            Expr::Axis(a) => {
                let a = *a as usize;
                Box::new(move |ax: &[i64]| ax[a])
            }
            Expr::Unary(UnOp::Neg, a) => {
                let a = self.int(a)?;
                Box::new(move |ax: &[i64]| a(ax).wrapping_neg())
            }
            Expr::Binary(op, a, b) => {
                let (fa, fb) = (self.int(a)?, self.int(b)?);
                match op {
                    BinOp::Add => Box::new(move |ax: &[i64]| fa(ax).wrapping_add(fb(ax))),
                    BinOp::Sub => Box::new(move |ax: &[i64]| fa(ax).wrapping_sub(fb(ax))),
                    BinOp::Mul => Box::new(move |ax: &[i64]| fa(ax).wrapping_mul(fb(ax))),
                    BinOp::Min => Box::new(move |ax: &[i64]| fa(ax).min(fb(ax))),
                    BinOp::Max => Box::new(move |ax: &[i64]| fa(ax).max(fb(ax))),
                    BinOp::Div | BinOp::Mod => {
                        let is_div = *op == BinOp::Div;
                        if let Some(k) =
                            self.affine(b).and_then(|f| f.as_const()).filter(|&k| k > 0)
                        {
                            // The common case: a positive constant divisor.
                            if is_div {
                                Box::new(move |ax: &[i64]| fa(ax).div_euclid(k))
                            } else {
                                Box::new(move |ax: &[i64]| fa(ax).rem_euclid(k))
                            }
                        } else {
                            Box::new(move |ax: &[i64]| {
                                let (x, y) = (fa(ax), fb(ax));
                                let r = if is_div {
                                    floor_div(x, y)
                                } else {
                                    floor_mod(x, y)
                                };
                                r.unwrap_or_else(|| {
                                    report(fault, || "integer division by zero".into());
                                    0
                                })
                            })
                        }
                    }
                    _ => return Err(self.bad(e, "not an integer operator")),
                }
            }
            Expr::Select(c, a, b) => {
                let (fc, fa, fb) = (self.boolean(c)?, self.int(a)?, self.int(b)?);
                Box::new(move |ax: &[i64]| if fc(ax) { fa(ax) } else { fb(ax) })
            }
            _ => return Err(self.bad(e, "not an integer expression")),
        })
    }

    fn boolean(&self, e: &Expr) -> Result<BoolFn<'a>, IrError> {
        Ok(match e {
            Expr::Unary(UnOp::Not, a) => {
                let a = self.boolean(a)?;
                Box::new(move |ax: &[i64]| !a(ax))
            }
            Expr::Binary(op @ (BinOp::And | BinOp::Or), a, b) => {
                let (fa, fb) = (self.boolean(a)?, self.boolean(b)?);
                if *op == BinOp::And {
                    Box::new(move |ax: &[i64]| fa(ax) && fb(ax))
                } else {
                    Box::new(move |ax: &[i64]| fa(ax) || fb(ax))
                }
            }
            Expr::Binary(op, a, b) if op.is_comparison() => {
                let op = *op;
                match a.ty() {
                    ScalarType::Int => compare(op, self.int(a)?, self.int(b)?),
                    ScalarType::Float => compare(op, self.float(a)?, self.float(b)?),
                    ScalarType::Bool => {
                        let (fa, fb) = (self.boolean(a)?, self.boolean(b)?);
                        match op {
                            BinOp::Eq => Box::new(move |ax: &[i64]| fa(ax) == fb(ax)),
                            BinOp::Ne => Box::new(move |ax: &[i64]| fa(ax) != fb(ax)),
                            _ => return Err(self.bad(e, "ordering of booleans")),
                        }
                    }
                }
            }
            Expr::Select(c, a, b) => {
                let (fc, fa, fb) = (self.boolean(c)?, self.boolean(a)?, self.boolean(b)?);
                Box::new(move |ax: &[i64]| if fc(ax) { fa(ax) } else { fb(ax) })
            }
            _ => return Err(self.bad(e, "not a boolean expression")),
        })
    }

    fn float(&self, e: &Expr) -> Result<FloatFn<'a>, IrError> {
        Ok(match e {
            Expr::Float(v) => {
                let v = *v;
                Box::new(move |_| v)
            }
            Expr::Read { tensor, indices } => self.read(*tensor, indices)?,
            Expr::Unary(op, a) => match op {
                UnOp::ToFloat => {
                    let a = self.int(a)?;
                    Box::new(move |ax: &[i64]| a(ax) as f32)
                }
                UnOp::Neg => {
                    let a = self.float(a)?;
                    Box::new(move |ax: &[i64]| -a(ax))
                }
                UnOp::Sqrt => {
                    let a = self.float(a)?;
                    Box::new(move |ax: &[i64]| a(ax).sqrt())
                }
                UnOp::Exp => {
                    let a = self.float(a)?;
                    Box::new(move |ax: &[i64]| a(ax).exp())
                }
                UnOp::Not => return Err(self.bad(e, "`!` of a float")),
            },
            Expr::Binary(op, a, b) => {
                let (fa, fb) = (self.float(a)?, self.float(b)?);
                match op {
                    BinOp::Add => Box::new(move |ax: &[i64]| fa(ax) + fb(ax)),
                    BinOp::Sub => Box::new(move |ax: &[i64]| fa(ax) - fb(ax)),
                    BinOp::Mul => Box::new(move |ax: &[i64]| fa(ax) * fb(ax)),
                    BinOp::Div => Box::new(move |ax: &[i64]| fa(ax) / fb(ax)),
                    BinOp::Min => Box::new(move |ax: &[i64]| fa(ax).min(fb(ax))),
                    BinOp::Max => Box::new(move |ax: &[i64]| fa(ax).max(fb(ax))),
                    _ => return Err(self.bad(e, "not a float operator")),
                }
            }
            Expr::Select(c, a, b) => {
                let (fc, fa, fb) = (self.boolean(c)?, self.float(a)?, self.float(b)?);
                Box::new(move |ax: &[i64]| if fc(ax) { fa(ax) } else { fb(ax) })
            }
            _ => return Err(self.bad(e, "not a float expression")),
        })
    }

    /// The buffer and flat affine offset of a read whose indices are affine and provably
    /// in bounds, if it is one.
    fn fast_read(&self, e: &Expr) -> Option<(&'a [f32], Affine)> {
        let Expr::Read { tensor, indices } = e else {
            return None;
        };
        let buf: &'a [f32] = self.bufs.get(tensor.index())?;
        let shape = &self.dag.op(*tensor).shape;
        let mut flat = Affine::constant(0, self.naxes());
        for ((i, &d), s) in indices.iter().zip(shape).zip(strides(shape)) {
            let f = self.affine(i)?;
            let (lo, hi) = f.range(&self.extents);
            if lo < 0 || hi >= d {
                return None;
            }
            flat = flat.plus(&f.scale(s), 1);
        }
        Some((buf, flat))
    }

    /// A read of `tensor[indices]`: one dot product when the indices are affine and
    /// provably in bounds, else per-dimension indices checked at run time.
    fn read(&self, tensor: OpId, indices: &[Expr]) -> Result<FloatFn<'a>, IrError> {
        let src = self.dag.op(tensor);
        let buf: &'a [f32] = self
            .bufs
            .get(tensor.index())
            .ok_or_else(|| IrError::Eval(format!("{} is read before it is computed", src.name)))?;
        let shape = src.shape.clone();
        let st = strides(&shape);
        let fault = self.fault;
        let name = src.name.clone();
        let affine: Option<Vec<Affine>> = indices.iter().map(|i| self.affine(i)).collect();
        if let Some(aff) = &affine {
            let in_bounds = aff.iter().zip(&shape).all(|(f, &d)| {
                let (lo, hi) = f.range(&self.extents);
                lo >= 0 && hi < d
            });
            if in_bounds {
                let mut flat = Affine::constant(0, self.naxes());
                for (f, &s) in aff.iter().zip(&st) {
                    flat = flat.plus(&f.clone().scale(s), 1);
                }
                let offset = affine_fn(flat.c, flat.terms());
                return Ok(Box::new(move |ax: &[i64]| {
                    let off = offset(ax) as usize;
                    match buf.get(off) {
                        Some(&v) => v,
                        None => {
                            report(fault, || format!("read of {name} out of bounds"));
                            0.0
                        }
                    }
                }));
            }
        }
        let idx: Vec<IntFn<'a>> = indices
            .iter()
            .map(|i| self.int(i))
            .collect::<Result<_, _>>()?;
        Ok(Box::new(move |ax: &[i64]| {
            let mut off = 0i64;
            for (d, f) in idx.iter().enumerate() {
                let i = f(ax);
                if i < 0 || i >= shape[d] {
                    report(fault, || {
                        let all: Vec<i64> = idx.iter().map(|f| f(ax)).collect();
                        format!("read of {name}{all:?} out of bounds (shape {shape:?})")
                    });
                    return 0.0;
                }
                off += i * st[d];
            }
            buf.get(off as usize).copied().unwrap_or(0.0)
        }))
    }

    fn bad(&self, e: &Expr, why: &str) -> IrError {
        IrError::Eval(format!("cannot evaluate `{e}`: {why}"))
    }
}

/// Computes one op into a fresh buffer of `len` elements.
fn run_op(
    dag: &ComputeDag,
    id: OpId,
    c: &ComputeOp,
    bufs: &[Vec<f32>],
    len: usize,
) -> Result<Vec<f32>, IrError> {
    let name = &dag.op(id).name;
    let fault: Fault = RefCell::new(None);
    let extents: Vec<i64> = c.all_axes().map(|a| a.extent).collect();
    let out = {
        let compiler = Compiler {
            dag,
            bufs,
            extents: extents.clone(),
            fault: &fault,
        };
        let body = compiler
            .float(&c.body)
            .map_err(|e| IrError::Eval(format!("op {name}: {e}")))?;
        // The common reduction `sum(A[..] * B[..])` with in-bounds affine reads runs as a
        // strided inner loop (same terms, same order, so the same result).
        let product = match (&c.body, c.reducer) {
            (Expr::Binary(BinOp::Mul, a, b), Some(r)) => compiler
                .fast_read(a)
                .zip(compiler.fast_read(b))
                .map(|(a, b)| (a, b, r)),
            _ => None,
        };
        let nsp = c.axes.len();
        let mut out = vec![0f32; len];
        let mut ax = vec![0i64; extents.len()];
        let red = &extents[nsp..];
        for slot in out.iter_mut() {
            *slot = match (c.reducer, &product) {
                (_, Some((a, b, r))) => {
                    let init = r.init();
                    match r {
                        Reducer::Sum => reduce_product(a, b, &mut ax, nsp, red, init, |x, t| x + t),
                        Reducer::Max => reduce_product(a, b, &mut ax, nsp, red, init, f32::max),
                    }
                }
                (None, _) => body(&ax),
                (Some(Reducer::Sum), None) => reduce(&body, &mut ax, nsp, red, 0.0, |a, t| a + t),
                (Some(Reducer::Max), None) => reduce(&body, &mut ax, nsp, red, f32::MIN, f32::max),
            };
            // Next spatial point, row-major.
            for d in (0..nsp).rev() {
                ax[d] += 1;
                if ax[d] < extents[d] {
                    break;
                }
                ax[d] = 0;
            }
        }
        out
    };
    match fault.into_inner() {
        Some(msg) => Err(IrError::Eval(format!("op {name}: {msg}"))),
        None => Ok(out),
    }
}

/// One reduction: `init` combined with `body` at every point of the reduction axes
/// (`ax[first..]`, extents `red`), in row-major order. Leaves those axes at 0.
fn reduce(
    body: &dyn Fn(&[i64]) -> f32,
    ax: &mut [i64],
    first: usize,
    red: &[i64],
    init: f32,
    combine: impl Fn(f32, f32) -> f32,
) -> f32 {
    let mut acc = init;
    let Some((&inner, outer)) = red.split_last() else {
        return acc;
    };
    let last = first + outer.len();
    loop {
        for v in 0..inner {
            ax[last] = v;
            acc = combine(acc, body(ax));
        }
        ax[last] = 0;
        let mut d = outer.len();
        loop {
            if d == 0 {
                return acc;
            }
            d -= 1;
            ax[first + d] += 1;
            if ax[first + d] < outer[d] {
                break;
            }
            ax[first + d] = 0;
        }
    }
}

/// [`reduce`] of the body `A[fa] * B[fb]` (two in-bounds affine reads): the offsets are
/// computed once per run of the innermost reduction axis, then stepped by its strides.
fn reduce_product(
    (a, fa): &(&[f32], Affine),
    (b, fb): &(&[f32], Affine),
    ax: &mut [i64],
    first: usize,
    red: &[i64],
    init: f32,
    combine: impl Fn(f32, f32) -> f32,
) -> f32 {
    let mut acc = init;
    let Some((&inner, outer)) = red.split_last() else {
        return acc;
    };
    let last = first + outer.len();
    let (ta, tb) = (fa.terms(), fb.terms());
    let (sa, sb) = (fa.coef[last], fb.coef[last]);
    let dot = |f: &Affine, t: &[(usize, i64)], ax: &[i64]| {
        t.iter().fold(f.c, |acc, &(k, c)| acc + c * ax[k])
    };
    loop {
        ax[last] = 0;
        let (mut oa, mut ob) = (dot(fa, &ta, ax), dot(fb, &tb, ax));
        for _ in 0..inner {
            // In bounds by the range analysis of `fast_read`.
            let x = a.get(oa as usize).copied().unwrap_or(0.0);
            let y = b.get(ob as usize).copied().unwrap_or(0.0);
            acc = combine(acc, x * y);
            oa += sa;
            ob += sb;
        }
        let mut d = outer.len();
        loop {
            if d == 0 {
                return acc;
            }
            d -= 1;
            ax[first + d] += 1;
            if ax[first + d] < outer[d] {
                break;
            }
            ax[first + d] = 0;
        }
    }
}

/// `fa op fb` for an ordering or equality comparison `op` (`<`, `<=`, `==`, `!=`).
fn compare<'a, T: PartialOrd + 'a>(
    op: BinOp,
    fa: ValueFn<'a, T>,
    fb: ValueFn<'a, T>,
) -> BoolFn<'a> {
    match op {
        BinOp::Lt => Box::new(move |ax: &[i64]| fa(ax) < fb(ax)),
        BinOp::Le => Box::new(move |ax: &[i64]| fa(ax) <= fb(ax)),
        BinOp::Eq => Box::new(move |ax: &[i64]| fa(ax) == fb(ax)),
        _ => Box::new(move |ax: &[i64]| fa(ax) != fb(ax)),
    }
}
