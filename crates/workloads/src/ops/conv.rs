//! Convolutions: channels-last 1-D/2-D/3-D (with groups and dilation), depthwise,
//! transposed, capsule, NCHW, and the ConvLayer subgraph (conv + bias + batch-norm + ReLU).

use super::{
    conv_out_size, expect_at_least, expect_rank, invalid, mul_c, named, pad, window, ConvParams,
};
use tessel_ir::dag::{ComputeDag, DagBuilder, Reducer, Tensor};
use tessel_ir::expr::Expr;
use tessel_ir::IrError;

/// Channels-last convolution over `d` spatial axes (`te_workload.conv1d_nlc`,
/// `conv2d_nhwc`, `conv3d_ndhwc`): input `(N, S1..Sd, CI)`, weight
/// `(K1..Kd, CI/groups, CO)`, output `(N, O1..Od, CO)`, reduction axes `r<spatial>..., rc`.
fn conv_channels_last(
    b: &mut DagBuilder,
    op: &str,
    spatial: &[&str],
    x: &Tensor,
    w: &Tensor,
    p: ConvParams,
) -> Result<Tensor, IrError> {
    let d = spatial.len();
    expect_rank(op, "input", x, d + 2)?;
    expect_rank(op, "weight", w, d + 2)?;
    expect_at_least(op, "groups", p.groups, 1)?;
    let (ci, co) = (x.shape[d + 1], w.shape[d + 1]);
    if ci % p.groups != 0 || co % p.groups != 0 {
        return Err(invalid(
            op,
            format!(
                "groups={} must divide the input channels {ci} and the output channels {co}",
                p.groups
            ),
        ));
    }
    let ci_per_group = ci / p.groups;
    if w.shape[d] != ci_per_group {
        return Err(invalid(
            op,
            format!(
                "weight has {} input channels, expected CI/groups = {ci_per_group}",
                w.shape[d]
            ),
        ));
    }
    let co_per_group = co / p.groups;
    let mut out_shape = vec![x.shape[0]];
    for (k, axis) in spatial.iter().enumerate() {
        out_shape.push(conv_out_size(op, axis, x.shape[k + 1], w.shape[k], &p)?);
    }
    out_shape.push(co);
    let mut pads = vec![0; d + 2];
    pads[1..=d].fill(p.padding);
    let padded = pad(b, "PadInput", x, &pads, &pads, 0.0)?;
    let mut axis_names = vec!["n".to_string()];
    axis_names.extend(spatial.iter().map(|s| s.to_string()));
    axis_names.push("co".into());
    let mut red_names: Vec<String> = spatial.iter().map(|s| format!("r{s}")).collect();
    red_names.push("rc".into());
    let mut red_ext: Vec<i64> = w.shape[..d].to_vec();
    red_ext.push(ci_per_group);
    let name = b.unique_name(op);
    let w = w.clone();
    Ok(b.reduce(
        &name,
        &named(&axis_names, &out_shape),
        &named(&red_names, &red_ext),
        Reducer::Sum,
        |ax| {
            let (co_ax, rc) = (&ax[d + 1], &ax[2 * d + 2]);
            let mut idx = vec![ax[0].clone()];
            for k in 0..d {
                idx.push(window(&ax[k + 1], p.stride, &ax[d + 2 + k], p.dilation));
            }
            idx.push(if p.groups == 1 {
                rc.clone()
            } else {
                mul_c(co_ax.clone().floor_div(co_per_group), ci_per_group) + rc.clone()
            });
            let mut widx: Vec<Expr> = ax[d + 2..2 * d + 2].to_vec();
            widx.push(rc.clone());
            widx.push(co_ax.clone());
            padded.at(idx) * w.at(widx)
        },
    ))
}

/// `te_workload.conv1d_nlc`: input `(N, L, CI)`, weight `(K, CI/groups, CO)`, output
/// `(N, OL, CO)` named `conv1d_nlc`, after a `PadInput` stage.
pub fn conv1d_nlc(
    b: &mut DagBuilder,
    input: &Tensor,
    weight: &Tensor,
    p: ConvParams,
) -> Result<Tensor, IrError> {
    conv_channels_last(b, "conv1d_nlc", &["l"], input, weight, p)
}

/// `te_workload.conv2d_nhwc` (C2D, GRP, DIL): input `(N, H, W, CI)`, weight
/// `(KH, KW, CI/groups, CO)`, output `(N, OH, OW, CO)` named `conv2d_nhwc`; reduction
/// over `rh, rw, rc`. With groups, output channel `co` reads input block
/// `co // (CO/groups)`.
pub fn conv2d_nhwc(
    b: &mut DagBuilder,
    input: &Tensor,
    weight: &Tensor,
    p: ConvParams,
) -> Result<Tensor, IrError> {
    conv_channels_last(b, "conv2d_nhwc", &["h", "w"], input, weight, p)
}

/// `te_workload.conv3d_ndhwc`: input `(N, D, H, W, CI)`, weight
/// `(KD, KH, KW, CI/groups, CO)`, output `(N, OD, OH, OW, CO)` named `conv3d_ndhwc`.
pub fn conv3d_ndhwc(
    b: &mut DagBuilder,
    input: &Tensor,
    weight: &Tensor,
    p: ConvParams,
) -> Result<Tensor, IrError> {
    conv_channels_last(b, "conv3d_ndhwc", &["d", "h", "w"], input, weight, p)
}

/// `te_workload.depthwise_conv2d_nhwc` (channel multiplier 1): input `(N, H, W, C)`,
/// weight `(1, KH, KW, C)`, output `(N, OH, OW, C)` named `depth_conv2d_nhwc`;
/// `out[n,h,w,c] = sum_{rh,rw} pad(x)[n, h*s + rh*d, w*s + rw*d, c] * w[0, rh, rw, c]`.
/// `p.groups` is ignored.
pub fn depthwise_conv2d_nhwc(
    b: &mut DagBuilder,
    input: &Tensor,
    weight: &Tensor,
    p: ConvParams,
) -> Result<Tensor, IrError> {
    let op = "depth_conv2d_nhwc";
    expect_rank(op, "input", input, 4)?;
    expect_rank(op, "weight", weight, 4)?;
    let c = input.shape[3];
    if weight.shape[0] != 1 || weight.shape[3] != c {
        return Err(invalid(
            op,
            format!("weight must be (1, KH, KW, {c}), got {:?}", weight.shape),
        ));
    }
    let oh = conv_out_size(op, "h", input.shape[1], weight.shape[1], &p)?;
    let ow = conv_out_size(op, "w", input.shape[2], weight.shape[2], &p)?;
    let pads = [0, p.padding, p.padding, 0];
    let padded = pad(b, "PadInput", input, &pads, &pads, 0.0)?;
    let name = b.unique_name(op);
    let w = weight.clone();
    Ok(b.reduce(
        &name,
        &[("n", input.shape[0]), ("h", oh), ("w", ow), ("c", c)],
        &[("rh", weight.shape[1]), ("rw", weight.shape[2])],
        Reducer::Sum,
        |ax| {
            padded.at([
                ax[0].clone(),
                window(&ax[1], p.stride, &ax[4], p.dilation),
                window(&ax[2], p.stride, &ax[5], p.dilation),
                ax[3].clone(),
            ]) * w.at([Expr::int(0), ax[4].clone(), ax[5].clone(), ax[3].clone()])
        },
    ))
}

/// `te_workload.conv2d_transpose_nhwc` (T2D): input `(N, H, W, CI)`, weight
/// `(KH, KW, CI, CO)`, output `(N, (H-1)*stride - 2*padding + KH, ..., CO)` named
/// `conv2d_transpose_nhwc`. As TVM: a `PadInput` stage pads the input by
/// `ceil((K-1-padding)/stride)`; the convolution reads it dilated by `stride` (zeros where
/// `(h + rh + border) % stride != 0`, tested in the body) with the flipped kernel
/// `w[KH-1-rh, KW-1-rw]`, reducing over `rh, rw, rc` (inserted zeros included).
/// Requires `padding <= K - 1`.
pub fn conv2d_transpose_nhwc(
    b: &mut DagBuilder,
    input: &Tensor,
    weight: &Tensor,
    stride: i64,
    padding: i64,
) -> Result<Tensor, IrError> {
    conv2d_transpose_nhwc_grouped(b, input, weight, stride, padding, 0, 1)
}

/// [`conv2d_transpose_nhwc`] with ONNX's `output_padding` and channel groups
/// (`ConvTranspose`'s `group`). The output has `output_padding` more rows and columns at the
/// end, `(H-1)*stride - 2*padding + KH + output_padding`; the `PadInput` stage pads
/// `ceil(output_padding / stride)` more input elements after, so those rows read zeros where
/// no input reaches (requires `0 <= output_padding < stride`, as ONNX). With groups the
/// weight is `(KH, KW, CI/groups, CO)` and output channel `co` is the transposed convolution
/// of input channel block `co / (CO/groups)` (reduction over `rc < CI/groups`, reading input
/// channel `(co / (CO/groups))·(CI/groups) + rc`). With `output_padding = 0` and
/// `groups = 1` it is exactly [`conv2d_transpose_nhwc`] (the same stages).
pub fn conv2d_transpose_nhwc_grouped(
    b: &mut DagBuilder,
    input: &Tensor,
    weight: &Tensor,
    stride: i64,
    padding: i64,
    output_padding: i64,
    groups: i64,
) -> Result<Tensor, IrError> {
    let op = "conv2d_transpose_nhwc";
    expect_rank(op, "input", input, 4)?;
    expect_rank(op, "weight", weight, 4)?;
    expect_at_least(op, "stride", stride, 1)?;
    expect_at_least(op, "padding", padding, 0)?;
    let (n, h, w, ci) = (
        input.shape[0],
        input.shape[1],
        input.shape[2],
        input.shape[3],
    );
    let (kh, kw, co) = (weight.shape[0], weight.shape[1], weight.shape[3]);
    check_groups(op, ci, co, groups)?;
    let (ci_per_group, co_per_group) = (ci / groups, co / groups);
    if weight.shape[2] != ci_per_group {
        return Err(invalid(
            op,
            format!(
                "weight has {} input channels, expected CI/groups = {ci_per_group}",
                weight.shape[2]
            ),
        ));
    }
    if padding > kh - 1 || padding > kw - 1 {
        return Err(invalid(
            op,
            format!("padding {padding} must be at most kernel-1 ({kh}x{kw} kernel)"),
        ));
    }
    if output_padding < 0 || output_padding >= stride.max(1) {
        return Err(invalid(
            op,
            format!("output padding {output_padding} must be in [0, stride {stride})"),
        ));
    }
    let oh = (h - 1) * stride - 2 * padding + kh + output_padding;
    let ow = (w - 1) * stride - 2 * padding + kw + output_padding;
    // Padding of the (virtually) dilated input, and the part of it already covered by
    // whole padded input elements.
    let (bpad_h, bpad_w) = (kh - 1 - padding, kw - 1 - padding);
    let (ph, pw) = (
        (bpad_h + stride - 1) / stride,
        (bpad_w + stride - 1) / stride,
    );
    let (border_h, border_w) = (
        (stride - bpad_h % stride) % stride,
        (stride - bpad_w % stride) % stride,
    );
    let extra = (output_padding + stride - 1) / stride;
    let padded = pad(
        b,
        "PadInput",
        input,
        &[0, ph, pw, 0],
        &[0, ph + extra, pw + extra, 0],
        0.0,
    )?;
    let name = b.unique_name(op);
    let wt = weight.clone();
    Ok(b.reduce(
        &name,
        &[("n", n), ("h", oh), ("w", ow), ("co", co)],
        &[("rh", kh), ("rw", kw), ("rc", ci_per_group)],
        Reducer::Sum,
        |ax| {
            let channel = if groups == 1 {
                ax[6].clone()
            } else {
                mul_c(ax[3].clone().floor_div(co_per_group), ci_per_group) + ax[6].clone()
            };
            let shifted = |o: &Expr, r: &Expr, border: i64| {
                let e = o.clone() + r.clone();
                if border == 0 {
                    e
                } else {
                    e + border
                }
            };
            let y = shifted(&ax[1], &ax[4], border_h);
            let x = shifted(&ax[2], &ax[5], border_w);
            let value = if stride == 1 {
                padded.at([ax[0].clone(), y, x, channel])
            } else {
                Expr::select(
                    y.clone()
                        .floor_mod(stride)
                        .eq(0)
                        .and(x.clone().floor_mod(stride).eq(0)),
                    padded.at([
                        ax[0].clone(),
                        y.floor_div(stride),
                        x.floor_div(stride),
                        channel,
                    ]),
                    Expr::float(0.0),
                )
            };
            value
                * wt.at([
                    Expr::int(kh - 1) - ax[4].clone(),
                    Expr::int(kw - 1) - ax[5].clone(),
                    ax[6].clone(),
                    ax[3].clone(),
                ])
        },
    ))
}

/// `te_workload.conv2d_capsule_nhwijc` (CAP): input `(N, H, W, C, C, CI)` (a `C x C` pose
/// matrix per capsule channel), weight `(K, K, C, C, CI, CO)`, output
/// `(N, OH, OW, C, C, CO)` named `conv2d_capsule_nhwijc`:
/// `out[n,h,w,i,j,co] = sum_{rh,rw,cap_k,rc} pad(x)[n, h*s+rh, w*s+rw, i, cap_k, rc] * w[rh, rw, cap_k, j, rc, co]`.
pub fn conv2d_capsule_nhwijc(
    b: &mut DagBuilder,
    input: &Tensor,
    weight: &Tensor,
    stride: i64,
    padding: i64,
) -> Result<Tensor, IrError> {
    let op = "conv2d_capsule_nhwijc";
    expect_rank(op, "input", input, 6)?;
    expect_rank(op, "weight", weight, 6)?;
    let cap = input.shape[3];
    let ci = input.shape[5];
    if input.shape[4] != cap
        || weight.shape[2] != cap
        || weight.shape[3] != cap
        || weight.shape[4] != ci
    {
        return Err(invalid(
            op,
            format!(
                "input {:?} and weight {:?} do not match (capsule {cap}x{cap}, {ci} input channels)",
                input.shape, weight.shape
            ),
        ));
    }
    let p = ConvParams::new(stride, padding);
    let oh = conv_out_size(op, "h", input.shape[1], weight.shape[0], &p)?;
    let ow = conv_out_size(op, "w", input.shape[2], weight.shape[1], &p)?;
    let pads = [0, padding, padding, 0, 0, 0];
    let padded = pad(b, "PadInput", input, &pads, &pads, 0.0)?;
    let name = b.unique_name(op);
    let w = weight.clone();
    let axes = [
        ("n", input.shape[0]),
        ("h", oh),
        ("w", ow),
        ("cap_i", cap),
        ("cap_j", cap),
        ("co", weight.shape[5]),
    ];
    let red = [
        ("rh", weight.shape[0]),
        ("rw", weight.shape[1]),
        ("cap_k", cap),
        ("rc", ci),
    ];
    Ok(b.reduce(&name, &axes, &red, Reducer::Sum, |ax| {
        padded.at([
            ax[0].clone(),
            window(&ax[1], stride, &ax[6], 1),
            window(&ax[2], stride, &ax[7], 1),
            ax[3].clone(),
            ax[8].clone(),
            ax[9].clone(),
        ]) * w.at([
            ax[6].clone(),
            ax[7].clone(),
            ax[8].clone(),
            ax[4].clone(),
            ax[9].clone(),
            ax[5].clone(),
        ])
    }))
}

/// `topi.nn.conv2d_nchw` (as called by `te_workload.conv2d_nchw`): input
/// `(N, CI, H, W)`, weight `(CO, CI, KH, KW)`, output `(N, CO, OH, OW)` named
/// `conv2d_nchw` with axes `nn, ff, yy, xx`, reducing over `rc, ry, rx`, after a
/// `pad_temp` stage. Groups are not supported (`p.groups` must be 1).
pub fn conv2d_nchw(
    b: &mut DagBuilder,
    input: &Tensor,
    weight: &Tensor,
    p: ConvParams,
) -> Result<Tensor, IrError> {
    let op = "conv2d_nchw";
    expect_rank(op, "input", input, 4)?;
    expect_rank(op, "weight", weight, 4)?;
    if p.groups != 1 {
        return Err(invalid(op, format!("groups must be 1, got {}", p.groups)));
    }
    if weight.shape[1] != input.shape[1] {
        return Err(invalid(
            op,
            format!(
                "weight has {} input channels, the input {}",
                weight.shape[1], input.shape[1]
            ),
        ));
    }
    let oh = conv_out_size(op, "h", input.shape[2], weight.shape[2], &p)?;
    let ow = conv_out_size(op, "w", input.shape[3], weight.shape[3], &p)?;
    let pads = [0, 0, p.padding, p.padding];
    let padded = pad(b, "pad_temp", input, &pads, &pads, 0.0)?;
    let name = b.unique_name(op);
    let w = weight.clone();
    Ok(b.reduce(
        &name,
        &[
            ("nn", input.shape[0]),
            ("ff", weight.shape[0]),
            ("yy", oh),
            ("xx", ow),
        ],
        &[
            ("rc", input.shape[1]),
            ("ry", weight.shape[2]),
            ("rx", weight.shape[3]),
        ],
        Reducer::Sum,
        |ax| {
            padded.at([
                ax[0].clone(),
                ax[4].clone(),
                window(&ax[2], p.stride, &ax[5], p.dilation),
                window(&ax[3], p.stride, &ax[6], p.dilation),
            ]) * w.at([ax[1].clone(), ax[4].clone(), ax[5].clone(), ax[6].clone()])
        },
    ))
}

/// `topi.nn.conv2d_nhwc` (used by the ConvLayer subgraph): input `(N, H, W, CI)`, kernel
/// `(KH, KW, CI, CO)`, output `Conv2dOutput (N, OH, OW, CO)` with axes `nn, yy, xx, ff`,
/// reducing over `ry, rx, rc`, after a `PaddedInput` stage. No groups.
pub fn conv2d_nhwc_topi(
    b: &mut DagBuilder,
    input: &Tensor,
    kernel: &Tensor,
    p: ConvParams,
) -> Result<Tensor, IrError> {
    let op = "Conv2dOutput";
    expect_rank(op, "input", input, 4)?;
    expect_rank(op, "kernel", kernel, 4)?;
    if p.groups != 1 {
        return Err(invalid(op, format!("groups must be 1, got {}", p.groups)));
    }
    if kernel.shape[2] != input.shape[3] {
        return Err(invalid(
            op,
            format!(
                "kernel has {} input channels, the input {}",
                kernel.shape[2], input.shape[3]
            ),
        ));
    }
    let oh = conv_out_size(op, "h", input.shape[1], kernel.shape[0], &p)?;
    let ow = conv_out_size(op, "w", input.shape[2], kernel.shape[1], &p)?;
    let pads = [0, p.padding, p.padding, 0];
    let padded = pad(b, "PaddedInput", input, &pads, &pads, 0.0)?;
    let name = b.unique_name(op);
    let k = kernel.clone();
    Ok(b.reduce(
        &name,
        &[
            ("nn", input.shape[0]),
            ("yy", oh),
            ("xx", ow),
            ("ff", kernel.shape[3]),
        ],
        &[
            ("ry", kernel.shape[0]),
            ("rx", kernel.shape[1]),
            ("rc", input.shape[3]),
        ],
        Reducer::Sum,
        |ax| {
            padded.at([
                ax[0].clone(),
                window(&ax[1], p.stride, &ax[4], p.dilation),
                window(&ax[2], p.stride, &ax[5], p.dilation),
                ax[6].clone(),
            ]) * k.at([ax[4].clone(), ax[5].clone(), ax[6].clone(), ax[3].clone()])
        },
    ))
}

/// `te_workload.conv2d_nhwc_bn_relu` (the ConvLayer subgraph):
/// `relu((conv2d_nhwc(data, kernel) + bias[co]) * bn_scale[co] + bn_offset[co])`, as the
/// stages `PaddedInput`, `Conv2dOutput`, `bias_add`, `bn_mul`, `bn_add`, `compute`.
/// Note TVM's argument order: `bn_offset` before `bn_scale`.
pub fn conv2d_nhwc_bn_relu(
    b: &mut DagBuilder,
    data: &Tensor,
    kernel: &Tensor,
    bias: &Tensor,
    bn_offset: &Tensor,
    bn_scale: &Tensor,
    p: ConvParams,
) -> Result<Tensor, IrError> {
    let conv = conv2d_nhwc_topi(b, data, kernel, p)?;
    let biased = super::bias_add(b, &conv, bias)?;
    let scaled = super::channel_mul(b, "bn_mul", &biased, bn_scale)?;
    let shifted = super::channel_add(b, "bn_add", &scaled, bn_offset)?;
    super::relu(b, &shifted)
}

/// Adds the two placeholders `names` of a convolution (the input, then the weight, a
/// constant: [`DagBuilder::weight`]) and builds its DAG with `f`.
fn conv_dag(
    names: [&str; 2],
    input: Vec<i64>,
    weight: Vec<i64>,
    f: impl FnOnce(&mut DagBuilder, &Tensor, &Tensor) -> Result<Tensor, IrError>,
) -> Result<ComputeDag, IrError> {
    let mut b = DagBuilder::new();
    let x = b.placeholder(names[0], &input);
    let w = b.weight(names[1], &weight);
    f(&mut b, &x, &w)?;
    b.build()
}

/// Checks the channel split of a convolution DAG before shapes are formed.
fn check_groups(op: &str, ci: i64, co: i64, groups: i64) -> Result<(), IrError> {
    expect_at_least(op, "groups", groups, 1)?;
    if ci % groups != 0 || co % groups != 0 {
        return Err(invalid(
            op,
            format!(
                "groups={groups} must divide the input channels {ci} and the output channels {co}"
            ),
        ));
    }
    Ok(())
}

/// The C1D benchmark DAG: placeholders `inputs (n, l, ci)` and
/// `weight (kernel, ci/groups, co)`, then [`conv1d_nlc`].
pub fn conv1d_nlc_dag(
    n: i64,
    l: i64,
    ci: i64,
    co: i64,
    kernel: i64,
    p: ConvParams,
) -> Result<ComputeDag, IrError> {
    check_groups("conv1d_nlc", ci, co, p.groups)?;
    conv_dag(
        ["inputs", "weight"],
        vec![n, l, ci],
        vec![kernel, ci / p.groups, co],
        |b, x, w| conv1d_nlc(b, x, w, p),
    )
}

/// The C2D/GRP/DIL benchmark DAG: placeholders `inputs (n, h, w, ci)` and
/// `weight (kernel, kernel, ci/groups, co)`, then [`conv2d_nhwc`].
pub fn conv2d_nhwc_dag(
    n: i64,
    hw: [i64; 2],
    ci: i64,
    co: i64,
    kernel: i64,
    p: ConvParams,
) -> Result<ComputeDag, IrError> {
    check_groups("conv2d_nhwc", ci, co, p.groups)?;
    conv_dag(
        ["inputs", "weight"],
        vec![n, hw[0], hw[1], ci],
        vec![kernel, kernel, ci / p.groups, co],
        |b, x, w| conv2d_nhwc(b, x, w, p),
    )
}

/// The C3D benchmark DAG: placeholders `inputs (n, d, h, w, ci)` and
/// `weight (kernel, kernel, kernel, ci/groups, co)`, then [`conv3d_ndhwc`].
pub fn conv3d_ndhwc_dag(
    n: i64,
    dhw: [i64; 3],
    ci: i64,
    co: i64,
    kernel: i64,
    p: ConvParams,
) -> Result<ComputeDag, IrError> {
    check_groups("conv3d_ndhwc", ci, co, p.groups)?;
    conv_dag(
        ["inputs", "weight"],
        vec![n, dhw[0], dhw[1], dhw[2], ci],
        vec![kernel, kernel, kernel, ci / p.groups, co],
        |b, x, w| conv3d_ndhwc(b, x, w, p),
    )
}

/// The DEP benchmark DAG: placeholders `placeholder (n, h, w, c)` and
/// `placeholder_1 (1, kernel, kernel, c)` (unnamed in `te_workload`), then
/// [`depthwise_conv2d_nhwc`].
pub fn depthwise_conv2d_nhwc_dag(
    n: i64,
    hw: [i64; 2],
    c: i64,
    kernel: i64,
    p: ConvParams,
) -> Result<ComputeDag, IrError> {
    conv_dag(
        ["placeholder", "placeholder_1"],
        vec![n, hw[0], hw[1], c],
        vec![1, kernel, kernel, c],
        |b, x, w| depthwise_conv2d_nhwc(b, x, w, p),
    )
}

/// The T2D benchmark DAG: placeholders `inputs (n, h, w, ci)` and
/// `weight (kernel, kernel, ci, co)`, then [`conv2d_transpose_nhwc`].
pub fn conv2d_transpose_nhwc_dag(
    n: i64,
    hw: [i64; 2],
    ci: i64,
    co: i64,
    kernel: i64,
    stride: i64,
    padding: i64,
) -> Result<ComputeDag, IrError> {
    conv_dag(
        ["inputs", "weight"],
        vec![n, hw[0], hw[1], ci],
        vec![kernel, kernel, ci, co],
        |b, x, w| conv2d_transpose_nhwc(b, x, w, stride, padding),
    )
}

/// The CAP benchmark DAG (capsule 4x4): placeholders `inputs (n, h, w, 4, 4, ci)` and
/// `weight (kernel, kernel, 4, 4, ci, co)`, then [`conv2d_capsule_nhwijc`].
pub fn conv2d_capsule_nhwijc_dag(
    n: i64,
    hw: [i64; 2],
    ci: i64,
    co: i64,
    kernel: i64,
    stride: i64,
    padding: i64,
) -> Result<ComputeDag, IrError> {
    const CAP: i64 = 4;
    conv_dag(
        ["inputs", "weight"],
        vec![n, hw[0], hw[1], CAP, CAP, ci],
        vec![kernel, kernel, CAP, CAP, ci, co],
        |b, x, w| conv2d_capsule_nhwijc(b, x, w, stride, padding),
    )
}

/// `te_workload.conv2d_nchw`: placeholders `X (n, ci, h, w)` and `W (co, ci, kh, kw)`,
/// then [`conv2d_nchw`] (square kernel here).
pub fn conv2d_nchw_dag(
    n: i64,
    hw: [i64; 2],
    ci: i64,
    co: i64,
    kernel: i64,
    p: ConvParams,
) -> Result<ComputeDag, IrError> {
    conv_dag(
        ["X", "W"],
        vec![n, ci, hw[0], hw[1]],
        vec![co, ci, kernel, kernel],
        |b, x, w| conv2d_nchw(b, x, w, p),
    )
}

/// The ConvLayer subgraph DAG: placeholders `data (n, h, w, ci)`,
/// `kernel (kernel, kernel, ci, co)`, `bias`, `bn_offset`, `bn_scale` (each `(co,)`, in
/// TVM's order), then [`conv2d_nhwc_bn_relu`].
pub fn conv2d_nhwc_bn_relu_dag(
    n: i64,
    hw: [i64; 2],
    ci: i64,
    co: i64,
    kernel: i64,
    p: ConvParams,
) -> Result<ComputeDag, IrError> {
    let mut b = DagBuilder::new();
    let data = b.placeholder("data", &[n, hw[0], hw[1], ci]);
    let k = b.weight("kernel", &[kernel, kernel, ci, co]);
    let bias = b.weight("bias", &[co]);
    let offset = b.weight("bn_offset", &[co]);
    let scale = b.weight("bn_scale", &[co]);
    conv2d_nhwc_bn_relu(&mut b, &data, &k, &bias, &offset, &scale, p)?;
    b.build()
}
