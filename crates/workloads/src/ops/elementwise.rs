//! Element-wise epilogues: ReLU, per-channel bias / scale / offset, and tensor addition.

use super::{expect_rank, invalid, named, numbered};
use tessel_ir::dag::{DagBuilder, Tensor};
use tessel_ir::expr::{BinOp, Expr};
use tessel_ir::IrError;

/// Axis names of the ConvLayer epilogues: `i, j, k, l` for 4-D tensors, else `i0, i1, ...`.
fn epilogue_axes(rank: usize) -> Vec<String> {
    if rank == 4 {
        ["i", "j", "k", "l"].iter().map(|s| s.to_string()).collect()
    } else {
        numbered("i", rank)
    }
}

/// `out[..., c] = x[..., c] (op) v[c]` for a vector `v` over the last (channel) axis.
fn channel_op(
    b: &mut DagBuilder,
    name: &str,
    x: &Tensor,
    v: &Tensor,
    op: BinOp,
) -> Result<Tensor, IrError> {
    expect_rank(name, "vector", v, 1)?;
    let Some(&c) = x.shape.last() else {
        return Err(invalid(name, "the tensor has no channel axis"));
    };
    if v.shape[0] != c {
        return Err(invalid(
            name,
            format!(
                "vector of length {} does not match the {c} channels of {:?}",
                v.shape[0], x.shape
            ),
        ));
    }
    let names = epilogue_axes(x.ndim());
    let stage = b.unique_name(name);
    let last = x.ndim() - 1;
    Ok(b.compute(&stage, &named(&names, &x.shape), |ax| {
        Expr::binary(op, x.at(ax.to_vec()), v.at([ax[last].clone()]))
    }))
}

/// Per-channel bias (channels last): `bias_add[..., c] = x[..., c] + bias[c]`.
pub fn bias_add(b: &mut DagBuilder, x: &Tensor, bias: &Tensor) -> Result<Tensor, IrError> {
    channel_op(b, "bias_add", x, bias, BinOp::Add)
}

/// Per-channel addition (channels last) into a stage named `name`:
/// `out[..., c] = x[..., c] + v[c]` (the batch-norm offset `bn_add`).
pub fn channel_add(
    b: &mut DagBuilder,
    name: &str,
    x: &Tensor,
    v: &Tensor,
) -> Result<Tensor, IrError> {
    channel_op(b, name, x, v, BinOp::Add)
}

/// Per-channel scaling (channels last) into a stage named `name`:
/// `out[..., c] = x[..., c] * v[c]` (the batch-norm scale `bn_mul`).
pub fn channel_mul(
    b: &mut DagBuilder,
    name: &str,
    x: &Tensor,
    v: &Tensor,
) -> Result<Tensor, IrError> {
    channel_op(b, name, x, v, BinOp::Mul)
}

/// `topi.nn.relu`: `compute[...] = max(x[...], 0.0)` (axes `i0, i1, ...`).
pub fn relu(b: &mut DagBuilder, x: &Tensor) -> Result<Tensor, IrError> {
    let names = numbered("i", x.ndim());
    let stage = b.unique_name("compute");
    Ok(b.compute(&stage, &named(&names, &x.shape), |ax| {
        x.at(ax.to_vec()).max(Expr::float(0.0))
    }))
}

/// `topi.add` of two tensors of the same shape: `T_add[...] = x[...] + y[...]` (axes
/// `ax0, ax1, ...`; e.g. a residual connection).
pub fn add(b: &mut DagBuilder, x: &Tensor, y: &Tensor) -> Result<Tensor, IrError> {
    if x.shape != y.shape {
        return Err(invalid(
            "T_add",
            format!("shapes differ: {:?} and {:?}", x.shape, y.shape),
        ));
    }
    let names = numbered("ax", x.ndim());
    let stage = b.unique_name("T_add");
    Ok(b.compute(&stage, &named(&names, &x.shape), |ax| {
        x.at(ax.to_vec()) + y.at(ax.to_vec())
    }))
}
