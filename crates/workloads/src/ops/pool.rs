//! Pooling: window maximum (`topi.nn.pool2d`, and `te_workload.max_pool2d_nchw`) and
//! global average (`topi.nn.global_pool`).

use super::{expect_at_least, expect_rank, invalid, mul_c, named, numbered, pad_with_axes};
use tessel_ir::dag::{ComputeDag, DagBuilder, Reducer, Tensor};
use tessel_ir::expr::Expr;
use tessel_ir::IrError;

/// Memory layout of a 4-D image tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    /// `(N, C, H, W)`.
    Nchw,
    /// `(N, H, W, C)`.
    Nhwc,
}

impl Layout {
    /// Positions of the H and W axes.
    fn spatial(self) -> [usize; 2] {
        match self {
            Layout::Nchw => [2, 3],
            Layout::Nhwc => [1, 2],
        }
    }
}

/// Window parameters of a 2-D pooling, as `topi.nn.pool2d` takes them (dilation 1,
/// `ceil_mode=False`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pool2dParams {
    /// Window size `[KH, KW]`.
    pub kernel: [i64; 2],
    /// Strides `[SH, SW]`.
    pub stride: [i64; 2],
    /// Padding `[top, left, bottom, right]`.
    pub padding: [i64; 4],
}

impl Pool2dParams {
    /// A square `kernel` window with the same stride and padding everywhere.
    pub fn square(kernel: i64, stride: i64, padding: i64) -> Pool2dParams {
        Pool2dParams {
            kernel: [kernel; 2],
            stride: [stride; 2],
            padding: [padding; 4],
        }
    }
}

/// Where a 2-D pooling window goes: the spatial axes of `layout`, the output shape, and the
/// padding before and after each axis.
struct PoolWindow {
    spatial: [usize; 2],
    out_shape: Vec<i64>,
    before: Vec<i64>,
    after: Vec<i64>,
}

/// Checks a pooling's input and parameters (named `op` in errors) and computes its window:
/// output size `(X + pad_before + pad_after - K) // S + 1` per spatial axis.
fn pool_window(
    op: &str,
    x: &Tensor,
    layout: Layout,
    p: &Pool2dParams,
) -> Result<PoolWindow, IrError> {
    expect_rank(op, "input", x, 4)?;
    for k in 0..2 {
        expect_at_least(op, "kernel", p.kernel[k], 1)?;
        expect_at_least(op, "stride", p.stride[k], 1)?;
    }
    for &v in &p.padding {
        expect_at_least(op, "padding", v, 0)?;
    }
    let sp = layout.spatial();
    let mut out_shape = x.shape.clone();
    let mut before = vec![0; 4];
    let mut after = vec![0; 4];
    for k in 0..2 {
        let (pb, pa) = (p.padding[k], p.padding[k + 2]);
        let span = x.shape[sp[k]] + pb + pa - p.kernel[k];
        if span < 0 {
            return Err(invalid(
                op,
                format!(
                    "window {} is larger than the padded input ({})",
                    p.kernel[k],
                    x.shape[sp[k]] + pb + pa
                ),
            ));
        }
        out_shape[sp[k]] = span / p.stride[k] + 1;
        before[sp[k]] = pb;
        after[sp[k]] = pa;
    }
    Ok(PoolWindow {
        spatial: sp,
        out_shape,
        before,
        after,
    })
}

/// `topi.nn.pool2d` with `pool_type="max"`: `pool_max[...] = max over rv0, rv1` of the
/// window `(h*SH + rv0, w*SW + rv1)`. When any padding is given, a `pad_temp` stage pads
/// with -3.4028235e38 (the lowest finite `f32`, never winning); the reduction starts from
/// the same value. Output size `(X + pad_before + pad_after - K) // S + 1`. Axes are
/// `ax0..ax3`.
pub fn max_pool2d(
    b: &mut DagBuilder,
    x: &Tensor,
    layout: Layout,
    p: Pool2dParams,
) -> Result<Tensor, IrError> {
    let op = "pool_max";
    let PoolWindow {
        spatial: sp,
        out_shape,
        before,
        after,
    } = pool_window(op, x, layout, &p)?;
    let src = if p.padding.iter().any(|&v| v > 0) {
        pad_with_axes(b, "pad_temp", "ax", x, &before, &after, f32::MIN)?
    } else {
        x.clone()
    };
    let names = numbered("ax", 4);
    let name = b.unique_name(op);
    Ok(b.reduce(
        &name,
        &named(&names, &out_shape),
        &[("rv0", p.kernel[0]), ("rv1", p.kernel[1])],
        Reducer::Max,
        |ax| {
            let mut idx: Vec<Expr> = ax[..4].to_vec();
            for k in 0..2 {
                idx[sp[k]] = mul_c(ax[sp[k]].clone(), p.stride[k]) + ax[4 + k].clone();
            }
            src.at(idx)
        },
    ))
}

/// `topi.nn.pool2d` with `pool_type="avg"`: `pool_sum[...]` sums the window
/// `(h*SH + rv0, w*SW + rv1)` of the input padded with zeros (a `pad_temp` stage when any
/// padding is given); `pool_avg[...] = pool_sum[...] / count`, where `count` is the window
/// size when `count_include_pad`, else the number of window elements inside the input
/// (`(min(h*SH - top + KH, H) - max(h*SH - top, 0)) * (...)` for W). Output size as
/// [`max_pool2d`]. Axes are `ax0..ax3`.
pub fn avg_pool2d(
    b: &mut DagBuilder,
    x: &Tensor,
    layout: Layout,
    p: Pool2dParams,
    count_include_pad: bool,
) -> Result<Tensor, IrError> {
    let op = "pool_avg";
    let PoolWindow {
        spatial: sp,
        out_shape,
        before,
        after,
    } = pool_window(op, x, layout, &p)?;
    let padded = p.padding.iter().any(|&v| v > 0);
    let src = if padded {
        pad_with_axes(b, "pad_temp", "ax", x, &before, &after, 0.0)?
    } else {
        x.clone()
    };
    let names = numbered("ax", 4);
    let name = b.unique_name("pool_sum");
    let sum = b.reduce(
        &name,
        &named(&names, &out_shape),
        &[("rv0", p.kernel[0]), ("rv1", p.kernel[1])],
        Reducer::Sum,
        |ax| {
            let mut idx: Vec<Expr> = ax[..4].to_vec();
            for k in 0..2 {
                idx[sp[k]] = mul_c(ax[sp[k]].clone(), p.stride[k]) + ax[4 + k].clone();
            }
            src.at(idx)
        },
    );
    let name = b.unique_name(op);
    let full = (p.kernel[0] * p.kernel[1]) as f32;
    let extents = [x.shape[sp[0]], x.shape[sp[1]]];
    Ok(b.compute(&name, &named(&names, &out_shape), |ax| {
        let s = sum.at(ax.to_vec());
        if count_include_pad || !padded {
            return s / Expr::float(full);
        }
        let count = |k: usize| {
            let start = mul_c(ax[sp[k]].clone(), p.stride[k]) - Expr::int(p.padding[k]);
            let end = (start.clone() + Expr::int(p.kernel[k])).min(Expr::int(extents[k]));
            end - start.max(Expr::int(0))
        };
        s / (count(0) * count(1)).to_float()
    }))
}

/// `te_workload.max_pool2d_nchw`: [`max_pool2d`] in NCHW with a 2x2 window, stride 1 and
/// `padding` on all four sides; output `(N, C, H + 2p - 1, W + 2p - 1)`.
pub fn max_pool2d_nchw(b: &mut DagBuilder, x: &Tensor, padding: i64) -> Result<Tensor, IrError> {
    max_pool2d(b, x, Layout::Nchw, Pool2dParams::square(2, 1, padding))
}

/// `topi.nn.global_pool` with `pool_type="avg"`: `adaptive_pool_sum` sums each H x W
/// plane (reduction `rv0, rv1`, reading `x[.., ax_h*H + rv0, ax_w*W + rv1, ..]` as TVM's
/// adaptive pool does), then `adaptive_pool_avg = adaptive_pool_sum / (H*W)`. The spatial
/// axes are kept with size 1.
pub fn global_avg_pool(b: &mut DagBuilder, x: &Tensor, layout: Layout) -> Result<Tensor, IrError> {
    let op = "adaptive_pool_sum";
    expect_rank(op, "input", x, 4)?;
    let sp = layout.spatial();
    let (h, w) = (x.shape[sp[0]], x.shape[sp[1]]);
    let mut out_shape = x.shape.clone();
    out_shape[sp[0]] = 1;
    out_shape[sp[1]] = 1;
    let names = numbered("ax", 4);
    let name = b.unique_name(op);
    let sum = b.reduce(
        &name,
        &named(&names, &out_shape),
        &[("rv0", h), ("rv1", w)],
        Reducer::Sum,
        |ax| {
            let mut idx: Vec<Expr> = ax[..4].to_vec();
            idx[sp[0]] = ax[sp[0]].clone() * h + ax[4].clone();
            idx[sp[1]] = ax[sp[1]].clone() * w + ax[5].clone();
            x.at(idx)
        },
    );
    let avg = b.unique_name("adaptive_pool_avg");
    let area = (h * w) as f32;
    Ok(b.compute(&avg, &named(&names, &out_shape), |ax| {
        sum.at(ax.to_vec()) / Expr::float(area)
    }))
}

/// `te_workload.max_pool2d_nchw(n, h, w, ci, padding)`: placeholder `X (n, ci, h, w)`, then
/// [`max_pool2d_nchw`].
pub fn max_pool2d_nchw_dag(
    n: i64,
    h: i64,
    w: i64,
    c: i64,
    padding: i64,
) -> Result<ComputeDag, IrError> {
    let mut b = DagBuilder::new();
    let x = b.placeholder("X", &[n, c, h, w]);
    max_pool2d_nchw(&mut b, &x, padding)?;
    b.build()
}

/// `topi.nn.pool2d` max, NHWC, on a placeholder `data (n, h, w, c)` with a square window.
pub fn max_pool2d_nhwc_dag(
    n: i64,
    hw: [i64; 2],
    c: i64,
    kernel: i64,
    stride: i64,
    padding: i64,
) -> Result<ComputeDag, IrError> {
    let mut b = DagBuilder::new();
    let x = b.placeholder("data", &[n, hw[0], hw[1], c]);
    max_pool2d(
        &mut b,
        &x,
        Layout::Nhwc,
        Pool2dParams::square(kernel, stride, padding),
    )?;
    b.build()
}

/// `topi.nn.global_pool` avg on a placeholder `data` of shape `shape` in `layout`.
pub fn global_avg_pool_dag(shape: [i64; 4], layout: Layout) -> Result<ComputeDag, IrError> {
    let mut b = DagBuilder::new();
    let x = b.placeholder("data", &shape);
    global_avg_pool(&mut b, &x, layout)?;
    b.build()
}
