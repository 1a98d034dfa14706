//! Builders for the operators of Ansor's benchmarks and common networks.
//!
//! Every operator has the semantics of its TVM definition (`te_workload` of
//! `tvm.meta_schedule.testing`, or `tvm.topi`): the same stages (e.g. a separate padding
//! stage `PadInput` / `pad_temp` written with [`Expr::select`]), the same tensor and axis
//! names, the same reduction-axis order and index expressions. The test vectors in
//! `testdata/ops/` pin this down (see `tests/testdata.rs`).
//!
//! Two levels of API:
//!
//! * builder-level functions (`conv2d_nhwc`, `matmul`, `relu`, ...) take a
//!   [`DagBuilder`] and input [`Tensor`]s and return the output tensor, so subgraphs and
//!   networks can compose them; intermediate stages are named with
//!   [`DagBuilder::unique_name`], so composing two convolutions yields `PadInput` and
//!   `PadInput_1`;
//! * `*_dag` functions build the whole single-operator DAG of a benchmark, with TVM's
//!   placeholder names and order.
//!
//! An invalid shape (groups not dividing the channels, an output size ≤ 0, a weight
//! that does not match the input, ...) is an [`IrError::InvalidOp`], never a panic.
//!
//! ```
//! use tessel_workloads::ops::{self, ConvParams};
//! let dag = ops::conv2d_nhwc_dag(1, [56, 56], 64, 64, 3, ConvParams::new(1, 1)).unwrap();
//! assert_eq!(dag.flop_count(), 2 * 56 * 56 * 64 * 64 * 9);
//! ```

mod conv;
mod elementwise;
mod matmul;
mod pool;
mod reduction;

pub use conv::*;
pub use elementwise::*;
pub use matmul::*;
pub use pool::*;
pub use reduction::*;

use tessel_ir::dag::{DagBuilder, Tensor};
use tessel_ir::expr::Expr;
use tessel_ir::IrError;

/// Window parameters of a convolution: stride, symmetric zero padding, dilation and
/// groups (the same value on every spatial axis, as in TVM's `te_workload`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvParams {
    /// Step between two output positions, in input elements.
    pub stride: i64,
    /// Zero padding added on both sides of every spatial axis.
    pub padding: i64,
    /// Spacing between two kernel taps (1 = dense kernel).
    pub dilation: i64,
    /// Number of channel groups (1 = ordinary convolution).
    pub groups: i64,
}

impl Default for ConvParams {
    fn default() -> ConvParams {
        ConvParams {
            stride: 1,
            padding: 0,
            dilation: 1,
            groups: 1,
        }
    }
}

impl ConvParams {
    /// Stride and padding, no dilation, one group.
    pub fn new(stride: i64, padding: i64) -> ConvParams {
        ConvParams {
            stride,
            padding,
            ..ConvParams::default()
        }
    }

    /// The same parameters with another dilation.
    pub fn with_dilation(self, dilation: i64) -> ConvParams {
        ConvParams { dilation, ..self }
    }

    /// The same parameters with another number of groups.
    pub fn with_groups(self, groups: i64) -> ConvParams {
        ConvParams { groups, ..self }
    }
}

/// An [`IrError::InvalidOp`] for operator `op`.
pub(crate) fn invalid(op: &str, reason: impl Into<String>) -> IrError {
    IrError::InvalidOp {
        op: op.to_string(),
        reason: reason.into(),
    }
}

/// Checks that `t` has `rank` dimensions, all positive.
pub(crate) fn expect_rank(op: &str, what: &str, t: &Tensor, rank: usize) -> Result<(), IrError> {
    if t.ndim() != rank {
        return Err(invalid(
            op,
            format!(
                "{what} must have {rank} dimensions, got shape {:?}",
                t.shape
            ),
        ));
    }
    if t.shape.iter().any(|&d| d <= 0) {
        return Err(invalid(
            op,
            format!("{what} has a non-positive dimension: {:?}", t.shape),
        ));
    }
    Ok(())
}

/// Checks that `value` (named `what`) is at least `min`.
pub(crate) fn expect_at_least(op: &str, what: &str, value: i64, min: i64) -> Result<(), IrError> {
    if value < min {
        return Err(invalid(
            op,
            format!("{what} must be at least {min}, got {value}"),
        ));
    }
    Ok(())
}

/// Output size of a convolution window along one axis:
/// `(x + 2*padding - dilation*(k-1) - 1) // stride + 1`, which must be positive.
pub(crate) fn conv_out_size(
    op: &str,
    axis: &str,
    x: i64,
    k: i64,
    p: &ConvParams,
) -> Result<i64, IrError> {
    expect_at_least(op, "stride", p.stride, 1)?;
    expect_at_least(op, "dilation", p.dilation, 1)?;
    expect_at_least(op, "padding", p.padding, 0)?;
    let span = x + 2 * p.padding - p.dilation * (k - 1) - 1;
    if span < 0 {
        return Err(invalid(
            op,
            format!(
                "output size along {axis} is not positive (input {x}, padding {}, kernel {k}, dilation {})",
                p.padding, p.dilation
            ),
        ));
    }
    Ok(span / p.stride + 1)
}

/// `e * c`, or just `e` when `c == 1`.
pub(crate) fn mul_c(e: Expr, c: i64) -> Expr {
    if c == 1 {
        e
    } else {
        e * c
    }
}

/// `base * stride + r * dilation`, without the unit factors (the window index of a
/// convolution or pooling).
pub(crate) fn window(base: &Expr, stride: i64, r: &Expr, dilation: i64) -> Expr {
    mul_c(base.clone(), stride) + mul_c(r.clone(), dilation)
}

/// Axis names `prefix0, prefix1, ...`.
pub(crate) fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|k| format!("{prefix}{k}")).collect()
}

/// Pairs names with extents, as [`DagBuilder::compute`] wants them.
pub(crate) fn named<'a>(names: &'a [String], extents: &[i64]) -> Vec<(&'a str, i64)> {
    names
        .iter()
        .map(|s| s.as_str())
        .zip(extents.iter().copied())
        .collect()
}

/// `topi.nn.pad`: a stage named `name` (made unique) of shape `dim + before + after` per
/// axis, equal to `x` shifted by `before` inside and to `value` outside. Its body is
/// `select(before <= i && i < before + dim && ..., x[i - before, ...], value)`, with
/// conditions only on the padded sides; without any padding it is a plain copy (TVM keeps
/// the stage in that case too). Axes are named `i0, i1, ...`.
pub fn pad(
    b: &mut DagBuilder,
    name: &str,
    x: &Tensor,
    before: &[i64],
    after: &[i64],
    value: f32,
) -> Result<Tensor, IrError> {
    pad_with_axes(b, name, "i", x, before, after, value)
}

/// [`pad`] with axes named `{axis_prefix}0, ...` (`ax` for the C++ `topi` operators).
pub(crate) fn pad_with_axes(
    b: &mut DagBuilder,
    name: &str,
    axis_prefix: &str,
    x: &Tensor,
    before: &[i64],
    after: &[i64],
    value: f32,
) -> Result<Tensor, IrError> {
    let rank = x.ndim();
    if before.len() != rank || after.len() != rank {
        return Err(invalid(
            name,
            format!(
                "padding needs {rank} values per side, got {} and {}",
                before.len(),
                after.len()
            ),
        ));
    }
    if before.iter().chain(after).any(|&p| p < 0) {
        return Err(invalid(name, "negative padding"));
    }
    let shape: Vec<i64> = (0..rank)
        .map(|d| x.shape[d] + before[d] + after[d])
        .collect();
    let names = numbered(axis_prefix, rank);
    let stage = b.unique_name(name);
    let x = x.clone();
    let before = before.to_vec();
    let after = after.to_vec();
    Ok(b.compute(&stage, &named(&names, &shape), |ax| {
        let mut cond: Option<Expr> = None;
        let mut and = |c: Expr| {
            cond = Some(match cond.take() {
                None => c,
                Some(prev) => prev.and(c),
            })
        };
        let mut idx = Vec::with_capacity(rank);
        for d in 0..rank {
            if before[d] > 0 {
                and(Expr::int(before[d]).le(ax[d].clone()));
            }
            if after[d] > 0 {
                and(ax[d].clone().lt(before[d] + x.shape[d]));
            }
            idx.push(if before[d] > 0 {
                ax[d].clone() - before[d]
            } else {
                ax[d].clone()
            });
        }
        let read = x.at(idx);
        match cond {
            Some(c) => Expr::select(c, read, Expr::float(value)),
            None => read,
        }
    }))
}
