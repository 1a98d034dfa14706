//! The layers of a network and how each becomes tensor-expression stages.
//!
//! A [`Layer`] is one operator of a network graph. Its weights (convolution kernels, dense
//! matrices, biases, layer-norm scales) are implicit: they become placeholders of the task
//! that contains the layer ([`Layer::params`]). [`Layer::emit`] writes the layer's stages
//! into a [`DagBuilder`] with the operator builders of [`crate::ops`], or with the few
//! builders only networks need ([`relu6`], [`gelu`], [`scale`], [`layer_norm`],
//! [`split_heads`], [`merge_heads`]).

use crate::ops::{self, expect_rank, invalid, named, numbered, ConvParams, Layout, Pool2dParams};
use tessel_ir::dag::{DagBuilder, Reducer, Tensor};
use tessel_ir::expr::Expr;
use tessel_ir::IrError;

/// How a layer takes part in fusion (TVM Relay's `OpPattern`, reduced to what our
/// networks use).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// A network input: no stages.
    Input,
    /// A free reinterpretation of the producer's buffer (reshape): no stages, never in a task.
    View,
    /// A complex op that starts a task. `epilogues` says whether element-wise / injective
    /// consumers may be fused after it (Relay's `OUT_ELEMWISE_FUSABLE`: conv, dense, batch
    /// matmul, pooling); softmax and layer norm are opaque.
    Anchor {
        /// Element-wise / injective consumers may join its task.
        epilogues: bool,
    },
    /// An element-wise or injective op: fused into its producer's task when it may be.
    Epilogue,
}

/// One operator of a network. Activations are NHWC for images and `(tokens, features)` for
/// sequences; weights are implicit (see [`Layer::params`]).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Layer {
    /// A network input of the given shape.
    Input,
    /// 2-D convolution, NHWC, weight `(kernel, kernel, CI / groups, out_channels)`, no bias
    /// (see [`Layer::BiasAdd`]). With groups, output channel `co` reads input channel block
    /// `co / (out_channels / groups)`.
    Conv2d {
        /// Output channels.
        out_channels: i64,
        /// Square kernel size.
        kernel: i64,
        /// Stride.
        stride: i64,
        /// Zero padding on every side.
        pad: i64,
        /// Spacing between two kernel taps (1: a dense kernel).
        dilation: i64,
        /// Channel groups (1: an ordinary convolution).
        groups: i64,
    },
    /// Depthwise 2-D convolution (channel multiplier 1), NHWC, weight `(1, kernel, kernel, C)`.
    DepthwiseConv2d {
        /// Square kernel size.
        kernel: i64,
        /// Stride.
        stride: i64,
        /// Zero padding on every side.
        pad: i64,
    },
    /// `topi.nn.dense` with its bias: `(n, in) x (units, in)^T + bias(units)`.
    Dense {
        /// Output features.
        units: i64,
    },
    /// `Z(b, n, m) = X(b, n, k) Y(b, k, m)` of two activations (`te_workload.batch_matmul_nkkm`).
    BatchMatmul,
    /// Max pooling, NHWC, square window.
    MaxPool2d {
        /// Window size.
        kernel: i64,
        /// Stride.
        stride: i64,
        /// Padding on every side.
        pad: i64,
    },
    /// Global average pooling, NHWC (keeps `H = W = 1`).
    GlobalAvgPool,
    /// Softmax over the rows of a 2-D tensor (`topi.nn.softmax`, axis 1).
    Softmax,
    /// Layer normalization over the last axis of a 2-D tensor, with `gamma` and `beta`.
    LayerNorm {
        /// Added to the variance.
        eps: f32,
    },
    /// Per-channel bias over the last axis.
    BiasAdd,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)` (ONNX `Clip(0, 6)`).
    Relu6,
    /// GELU, tanh approximation (see [`gelu`]).
    Gelu,
    /// Element-wise sum of two tensors of the same shape (a residual connection).
    Add,
    /// Element-wise product of two tensors of the same shape (`topi.multiply`).
    Mul,
    /// The error function, element-wise (see [`erf`]); with [`Layer::Mul`] and constants
    /// it makes the exact GELU of ONNX exports, `x·0.5·(1 + erf(x/√2))`.
    Erf,
    /// Multiplication by a constant.
    Scale(f32),
    /// `(batch·seq, heads·dim) → (batch·heads, seq, dim)`, or `(batch·heads, dim, seq)` when
    /// `transpose` (the keys of attention): Relay's `reshape + transpose`.
    SplitHeads {
        /// Number of attention heads.
        heads: i64,
        /// Sequence length.
        seq: i64,
        /// Put the sequence axis last.
        transpose: bool,
    },
    /// `(batch·heads, seq, dim) → (batch·seq, heads·dim)`, the inverse of
    /// [`Layer::SplitHeads`] without transpose.
    MergeHeads {
        /// Number of attention heads.
        heads: i64,
    },
    /// The same buffer seen with another shape (same number of elements).
    Reshape(Vec<i64>),
    /// `topi.transpose`: output axis `i` is input axis `perm[i]` (a layout change, e.g.
    /// NHWC → NCHW is `[0, 3, 1, 2]`).
    Transpose(Vec<usize>),
    /// The logistic function `1 / (1 + exp(-x))`, element-wise.
    Sigmoid,
    /// The hyperbolic tangent, element-wise (see [`tanh`]).
    Tanh,
    /// The exact GELU of BERT exports, `x·0.5·(1 + erf(x/√2))`, in one stage (see
    /// [`gelu_erf`]); [`Layer::Gelu`] is the tanh approximation.
    GeluErf,
    /// Average pooling, NHWC, square window (see [`crate::ops::avg_pool2d`]).
    AvgPool2d {
        /// Window size.
        kernel: i64,
        /// Stride.
        stride: i64,
        /// Zero padding on every side.
        pad: i64,
        /// Divide by the whole window (padding included) rather than by the elements
        /// inside the input.
        count_include_pad: bool,
    },
    /// Transposed 2-D convolution, NHWC, weight `(kernel, kernel, CI / groups,
    /// out_channels)`, output `(H-1)·stride − 2·pad + kernel + output_padding` (see
    /// [`crate::ops::conv2d_transpose_nhwc_grouped`]). With groups, output channel `co`
    /// reads input channel block `co / (out_channels / groups)`.
    ConvTranspose2d {
        /// Output channels.
        out_channels: i64,
        /// Square kernel size.
        kernel: i64,
        /// Stride.
        stride: i64,
        /// Padding removed from every side of the full output.
        pad: i64,
        /// Extra rows and columns at the end of the output.
        output_padding: i64,
        /// Channel groups (1: an ordinary transposed convolution).
        groups: i64,
    },
    /// Concatenation of `inputs` tensors (equal but for `axis`) along `axis`.
    Concat {
        /// The axis the inputs are joined along.
        axis: usize,
        /// Number of inputs.
        inputs: usize,
    },
    /// `len` elements along `axis` from `start` in steps of `step` (negative steps walk
    /// backwards): `out[.., i, ..] = x[.., start + i·step, ..]`.
    Slice {
        /// The sliced axis.
        axis: usize,
        /// The first index read.
        start: i64,
        /// The step between indices read (not 0).
        step: i64,
        /// Number of elements kept.
        len: i64,
    },
    /// An embedding lookup (ONNX `Gather` of a `(vocab, dim)` table by token ids): the input
    /// holds token ids as `f32` values, the output appends an axis of `dim`. The expression
    /// language has no data-dependent index, so it is a one-hot reduction over the
    /// vocabulary (see [`embedding`]); an id outside `[0, vocab)` gives a zero row.
    Embedding {
        /// Rows of the table.
        vocab: i64,
        /// Width of a row.
        dim: i64,
    },
    /// Addition of a constant tensor of the input's shape (position embeddings), weight
    /// `constant`.
    AddConst,
    /// `x (op) y` of two activations with numpy broadcasting, the output of `x`'s shape
    /// (`y (op) x` when `reversed`): `y`'s axes align with the last axes of `x`, each of
    /// extent 1 (broadcast) or equal (see [`broadcast`]). Squeeze-excite gates
    /// (`x[N,H,W,C] · gate[N,1,1,C]`), attention masks, rows added to matrices.
    Broadcast {
        /// The arithmetic.
        op: BinaryOp,
        /// Compute `y (op) x` instead (for `Sub` and `Div` whose broadcast operand is first).
        reversed: bool,
    },
    /// ONNX `HardSigmoid`, element-wise: `max(0, min(1, alpha·x + beta))`.
    HardSigmoid {
        /// The slope.
        alpha: f32,
        /// The offset.
        beta: f32,
    },
}

/// The arithmetic of a [`Layer::Broadcast`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum BinaryOp {
    /// `x + y` (`T_add`).
    Add,
    /// `x − y` (`T_subtract`).
    Sub,
    /// `x · y` (`T_multiply`).
    Mul,
    /// `x / y` (`T_divide`).
    Div,
}

impl BinaryOp {
    /// The TVM stage name of the operation (`T_add`, `T_subtract`, ...).
    pub fn stage(self) -> &'static str {
        match self {
            BinaryOp::Add => "T_add",
            BinaryOp::Sub => "T_subtract",
            BinaryOp::Mul => "T_multiply",
            BinaryOp::Div => "T_divide",
        }
    }

    /// `a (op) b`.
    pub fn apply(self, a: Expr, b: Expr) -> Expr {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
        }
    }
}

impl Layer {
    /// Its fusion pattern.
    pub fn pattern(&self) -> Pattern {
        match self {
            Layer::Input => Pattern::Input,
            Layer::Reshape(_) => Pattern::View,
            Layer::Conv2d { .. }
            | Layer::DepthwiseConv2d { .. }
            | Layer::Dense { .. }
            | Layer::BatchMatmul
            | Layer::MaxPool2d { .. }
            | Layer::GlobalAvgPool
            | Layer::AvgPool2d { .. }
            | Layer::ConvTranspose2d { .. }
            | Layer::Embedding { .. } => Pattern::Anchor { epilogues: true },
            Layer::Softmax | Layer::LayerNorm { .. } => Pattern::Anchor { epilogues: false },
            Layer::BiasAdd
            | Layer::Relu
            | Layer::Relu6
            | Layer::Gelu
            | Layer::Add
            | Layer::Mul
            | Layer::Erf
            | Layer::Scale(_)
            | Layer::SplitHeads { .. }
            | Layer::MergeHeads { .. }
            | Layer::Transpose(_)
            | Layer::Sigmoid
            | Layer::Tanh
            | Layer::GeluErf
            | Layer::Concat { .. }
            | Layer::Slice { .. }
            | Layer::AddConst
            | Layer::Broadcast { .. }
            | Layer::HardSigmoid { .. } => Pattern::Epilogue,
        }
    }

    /// Number of activation inputs it takes.
    pub fn arity(&self) -> usize {
        match self {
            Layer::Input => 0,
            Layer::BatchMatmul | Layer::Add | Layer::Mul | Layer::Broadcast { .. } => 2,
            Layer::Concat { inputs, .. } => *inputs,
            _ => 1,
        }
    }

    /// Base names of the placeholders of its activation inputs when they come from outside
    /// its task (TVM's names, so that a task made of one plain op is the registry's DAG).
    pub(crate) fn input_names(&self) -> &'static [&'static str] {
        match self {
            Layer::Input | Layer::Reshape(_) => &[],
            Layer::Conv2d { .. } => &["inputs"],
            Layer::DepthwiseConv2d { .. } => &["placeholder"],
            Layer::Dense { .. } | Layer::MaxPool2d { .. } | Layer::GlobalAvgPool => &["data"],
            Layer::BatchMatmul => &["X", "Y"],
            Layer::Softmax => &["A"],
            Layer::LayerNorm { .. } => &["data"],
            Layer::Add => &["data", "residual"],
            Layer::Mul => &["data", "factor"],
            Layer::Broadcast { .. } => &["data", "operand"],
            Layer::ConvTranspose2d { .. } => &["inputs"],
            Layer::Embedding { .. } => &["indices"],
            _ => &["data"],
        }
    }

    /// Its weights, as (placeholder base name, shape), given its input shapes.
    pub fn params(&self, inputs: &[&[i64]]) -> Vec<(&'static str, Vec<i64>)> {
        let last = |k: usize| inputs.get(k).and_then(|s| s.last().copied()).unwrap_or(0);
        match self {
            // Both convolutions: (kernel, kernel, CI / groups, CO).
            Layer::Conv2d {
                out_channels,
                kernel,
                groups,
                ..
            }
            | Layer::ConvTranspose2d {
                out_channels,
                kernel,
                groups,
                ..
            } => vec![(
                "weight",
                vec![*kernel, *kernel, last(0) / (*groups).max(1), *out_channels],
            )],
            Layer::DepthwiseConv2d { kernel, .. } => {
                vec![("placeholder", vec![1, *kernel, *kernel, last(0)])]
            }
            Layer::Dense { units } => {
                vec![("weight", vec![*units, last(0)]), ("bias", vec![*units])]
            }
            Layer::BiasAdd => vec![("bias", vec![last(0)])],
            Layer::LayerNorm { .. } => vec![("gamma", vec![last(0)]), ("beta", vec![last(0)])],
            Layer::Embedding { vocab, dim } => vec![("table", vec![*vocab, *dim])],
            Layer::AddConst => vec![(
                "constant",
                inputs.first().map(|s| s.to_vec()).unwrap_or_default(),
            )],
            _ => Vec::new(),
        }
    }

    /// Writes its stages: `inputs` are its activations, `params` its weights (in
    /// [`Layer::params`] order). Returns the output tensor.
    pub fn emit(
        &self,
        b: &mut DagBuilder,
        inputs: &[Tensor],
        params: &[Tensor],
    ) -> Result<Tensor, IrError> {
        let name = self.kind();
        if inputs.len() != self.arity() {
            return Err(invalid(
                name,
                format!("takes {} inputs, got {}", self.arity(), inputs.len()),
            ));
        }
        let want = self
            .params(
                &inputs
                    .iter()
                    .map(|t| t.shape.as_slice())
                    .collect::<Vec<_>>(),
            )
            .len();
        if params.len() != want {
            return Err(invalid(
                name,
                format!("takes {want} weights, got {}", params.len()),
            ));
        }
        let x = inputs.first();
        let x = || x.ok_or_else(|| invalid(name, "an input layer has no stages"));
        match self {
            Layer::Input => Err(invalid(name, "an input layer has no stages")),
            Layer::Reshape(shape) => Err(invalid(
                name,
                format!("a reshape to {shape:?} is a view, not a stage"),
            )),
            Layer::Conv2d {
                stride,
                pad,
                dilation,
                groups,
                ..
            } => ops::conv2d_nhwc(
                b,
                x()?,
                &params[0],
                ConvParams {
                    dilation: *dilation,
                    groups: *groups,
                    ..ConvParams::new(*stride, *pad)
                },
            ),
            Layer::DepthwiseConv2d { stride, pad, .. } => {
                ops::depthwise_conv2d_nhwc(b, x()?, &params[0], ConvParams::new(*stride, *pad))
            }
            Layer::Dense { .. } => ops::dense(b, x()?, &params[0], Some(&params[1])),
            Layer::BatchMatmul => ops::batch_matmul_nkkm(b, &inputs[0], &inputs[1]),
            Layer::MaxPool2d {
                kernel,
                stride,
                pad,
            } => ops::max_pool2d(
                b,
                x()?,
                Layout::Nhwc,
                Pool2dParams::square(*kernel, *stride, *pad),
            ),
            Layer::GlobalAvgPool => ops::global_avg_pool(b, x()?, Layout::Nhwc),
            Layer::Softmax => ops::softmax_mn(b, x()?),
            Layer::LayerNorm { eps } => layer_norm(b, x()?, &params[0], &params[1], *eps),
            Layer::BiasAdd => ops::bias_add(b, x()?, &params[0]),
            Layer::Relu => ops::relu(b, x()?),
            Layer::Relu6 => relu6(b, x()?),
            Layer::Gelu => gelu(b, x()?),
            Layer::Add => ops::add(b, &inputs[0], &inputs[1]),
            Layer::Mul => multiply(b, &inputs[0], &inputs[1]),
            Layer::Erf => erf(b, x()?),
            Layer::Scale(v) => scale(b, x()?, *v),
            Layer::SplitHeads {
                heads,
                seq,
                transpose,
            } => split_heads(b, x()?, *heads, *seq, *transpose),
            Layer::MergeHeads { heads } => merge_heads(b, x()?, *heads),
            Layer::Transpose(perm) => transpose(b, x()?, perm),
            Layer::Sigmoid => sigmoid(b, x()?),
            Layer::Tanh => tanh(b, x()?),
            Layer::GeluErf => gelu_erf(b, x()?),
            Layer::AvgPool2d {
                kernel,
                stride,
                pad,
                count_include_pad,
            } => ops::avg_pool2d(
                b,
                x()?,
                Layout::Nhwc,
                Pool2dParams::square(*kernel, *stride, *pad),
                *count_include_pad,
            ),
            Layer::ConvTranspose2d {
                stride,
                pad,
                output_padding,
                groups,
                ..
            } => ops::conv2d_transpose_nhwc_grouped(
                b,
                x()?,
                &params[0],
                *stride,
                *pad,
                *output_padding,
                *groups,
            ),
            Layer::Concat { axis, .. } => concat(b, inputs, *axis),
            Layer::Slice {
                axis,
                start,
                step,
                len,
            } => slice(b, x()?, *axis, *start, *step, *len),
            Layer::Embedding { .. } => embedding(b, x()?, &params[0]),
            Layer::AddConst => ops::add(b, x()?, &params[0]),
            Layer::Broadcast { op, reversed } => {
                broadcast(b, &inputs[0], &inputs[1], *op, *reversed)
            }
            Layer::HardSigmoid { alpha, beta } => hard_sigmoid(b, x()?, *alpha, *beta),
        }
    }

    /// Short name of the operator (`conv2d`, `bias`, `relu6`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Layer::Input => "input",
            Layer::Conv2d { .. } => "conv2d",
            Layer::DepthwiseConv2d { .. } => "depthwise_conv2d",
            Layer::Dense { .. } => "dense",
            Layer::BatchMatmul => "batch_matmul",
            Layer::MaxPool2d { .. } => "max_pool2d",
            Layer::GlobalAvgPool => "global_avg_pool",
            Layer::Softmax => "softmax",
            Layer::LayerNorm { .. } => "layer_norm",
            Layer::BiasAdd => "bias",
            Layer::Relu => "relu",
            Layer::Relu6 => "relu6",
            Layer::Gelu => "gelu",
            Layer::Add => "add",
            Layer::Mul => "multiply",
            Layer::Erf => "erf",
            Layer::Scale(_) => "mul",
            Layer::SplitHeads { .. } => "split_heads",
            Layer::MergeHeads { .. } => "merge_heads",
            Layer::Reshape(_) => "reshape",
            Layer::Transpose(_) => "transpose",
            Layer::Sigmoid => "sigmoid",
            Layer::Tanh => "tanh",
            Layer::GeluErf => "gelu_erf",
            Layer::AvgPool2d { .. } => "avg_pool2d",
            Layer::ConvTranspose2d { .. } => "conv2d_transpose",
            Layer::Concat { .. } => "concat",
            Layer::Slice { .. } => "slice",
            Layer::Embedding { .. } => "embedding",
            Layer::AddConst => "add_const",
            Layer::Broadcast { op, reversed } => match (op, reversed) {
                (BinaryOp::Add, _) => "broadcast_add",
                (BinaryOp::Mul, _) => "broadcast_mul",
                (BinaryOp::Sub, false) => "broadcast_sub",
                (BinaryOp::Sub, true) => "broadcast_rsub",
                (BinaryOp::Div, false) => "broadcast_div",
                (BinaryOp::Div, true) => "broadcast_rdiv",
            },
            Layer::HardSigmoid { .. } => "hard_sigmoid",
        }
    }

    /// The workload spec of this layer alone (`c2d:n=1,...`), when the registry has its op:
    /// a task made of only this layer is exactly [`crate::lookup`] of it.
    pub fn spec(&self, inputs: &[&[i64]]) -> Option<String> {
        let s = |k: usize| inputs.get(k).copied().unwrap_or(&[]);
        let d = |k: usize, i: usize| s(k).get(i).copied().unwrap_or(0);
        Some(match self {
            Layer::Conv2d {
                out_channels,
                kernel,
                stride,
                pad,
                dilation,
                groups,
            } => {
                let mut spec = format!(
                    "c2d:n={},h={},w={},ci={},co={out_channels},kernel={kernel},stride={stride},pad={pad}",
                    d(0, 0),
                    d(0, 1),
                    d(0, 2),
                    d(0, 3)
                );
                if *dilation != 1 {
                    spec.push_str(&format!(",dilation={dilation}"));
                }
                if *groups != 1 {
                    spec.push_str(&format!(",groups={groups}"));
                }
                spec
            }
            Layer::DepthwiseConv2d {
                kernel,
                stride,
                pad,
            } => format!(
                "dep:n={},h={},w={},c={},kernel={kernel},stride={stride},pad={pad}",
                d(0, 0),
                d(0, 1),
                d(0, 2),
                d(0, 3)
            ),
            Layer::Dense { units } => format!("dense:n={},in={},out={units}", d(0, 0), d(0, 1)),
            Layer::BatchMatmul => format!(
                "gmm:b={},n={},m={},k={}",
                d(0, 0),
                d(0, 1),
                d(1, 2),
                d(0, 2)
            ),
            Layer::MaxPool2d {
                kernel,
                stride,
                pad,
            } => format!(
                "maxpool:n={},h={},w={},c={},kernel={kernel},stride={stride},pad={pad}",
                d(0, 0),
                d(0, 1),
                d(0, 2),
                d(0, 3)
            ),
            Layer::GlobalAvgPool => format!(
                "avgpool:n={},h={},w={},c={}",
                d(0, 0),
                d(0, 1),
                d(0, 2),
                d(0, 3)
            ),
            Layer::Softmax => format!("softmax:m={},n={}", d(0, 0), d(0, 1)),
            Layer::ConvTranspose2d {
                out_channels,
                kernel,
                stride,
                pad,
                output_padding: 0,
                groups: 1,
            } => format!(
                "t2d:n={},h={},w={},ci={},co={out_channels},kernel={kernel},stride={stride},pad={pad}",
                d(0, 0),
                d(0, 1),
                d(0, 2),
                d(0, 3)
            ),
            _ => return None,
        })
    }

    /// This layer's part of a task name: its spec for an op of the registry
    /// (`c2d:n=1,...`), else its kind with what distinguishes it (`mul0.125`,
    /// `split_heads12t`, `layernorm:m=128,n=768,eps=1e-12`, `relu:1x56x56x64` when it
    /// heads a task).
    pub fn token(&self, inputs: &[&[i64]], heads_task: bool) -> String {
        if let Some(spec) = self.spec(inputs) {
            return spec;
        }
        let shape = || {
            inputs
                .first()
                .map(|s| {
                    s.iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join("x")
                })
                .unwrap_or_default()
        };
        let base = match self {
            Layer::LayerNorm { eps } => {
                let d = |i: usize| inputs.first().and_then(|s| s.get(i)).copied().unwrap_or(0);
                return format!("layernorm:m={},n={},eps={eps:e}", d(0), d(1));
            }
            Layer::Scale(v) => format!("mul{v}"),
            Layer::SplitHeads {
                heads, transpose, ..
            } => format!("split_heads{heads}{}", if *transpose { "t" } else { "" }),
            Layer::MergeHeads { heads } => format!("merge_heads{heads}"),
            Layer::AvgPool2d {
                kernel,
                stride,
                pad,
                count_include_pad,
            } => format!(
                "avg_pool2d:k{kernel}s{stride}p{pad}{}",
                if *count_include_pad { "i" } else { "" }
            ),
            Layer::ConvTranspose2d {
                out_channels,
                kernel,
                stride,
                pad,
                output_padding,
                groups,
            } => {
                let mut t = format!(
                    "conv2d_transpose:co{out_channels}k{kernel}s{stride}p{pad}o{output_padding}"
                );
                if *groups != 1 {
                    t.push_str(&format!("g{groups}"));
                }
                t
            }
            // The broadcast operand's shape tells two broadcasts of one input shape apart.
            Layer::Broadcast { .. } => format!(
                "{}.{}",
                self.kind(),
                inputs
                    .get(1)
                    .map(|s| s
                        .iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join("x"))
                    .unwrap_or_default()
            ),
            Layer::HardSigmoid { alpha, beta } => format!("hard_sigmoid{alpha}_{beta}"),
            Layer::Concat { axis, inputs } => format!("concat{inputs}a{axis}"),
            Layer::Slice {
                axis,
                start,
                step,
                len,
            } => format!("slice:a{axis}s{start}d{step}n{len}"),
            Layer::Embedding { vocab, dim } => format!("embedding:v{vocab}d{dim}"),
            Layer::Transpose(perm) => format!(
                "transpose{}",
                perm.iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join("")
            ),
            other => other.kind().to_string(),
        };
        if heads_task {
            format!("{base}:{}", shape())
        } else {
            base
        }
    }
}

/// ReLU6 (ONNX `Clip(0, 6)`, `topi.clip`): `compute[...] = min(max(x[...], 0.0), 6.0)`.
pub fn relu6(b: &mut DagBuilder, x: &Tensor) -> Result<Tensor, IrError> {
    let names = numbered("i", x.ndim());
    let stage = b.unique_name("compute");
    Ok(b.compute(&stage, &named(&names, &x.shape), |ax| {
        x.at(ax.to_vec())
            .max(Expr::float(0.0))
            .min(Expr::float(6.0))
    }))
}

/// `2·sqrt(2/π)`: GELU's tanh approximation written with a logistic function.
const GELU_2C: f32 = 1.595_769;

/// GELU with the tanh approximation (Hendrycks & Gimpel):
/// `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`, written as the equal
/// `x / (1 + exp(-2√(2/π)·(x + 0.044715·x³)))` because the expression language has `exp` but
/// neither `tanh` nor `erf` (so this is not the exact erf GELU of BERT; the two differ by
/// less than 1e-3). One stage `T_gelu`.
pub fn gelu(b: &mut DagBuilder, x: &Tensor) -> Result<Tensor, IrError> {
    let names = numbered("ax", x.ndim());
    let stage = b.unique_name("T_gelu");
    Ok(b.compute(&stage, &named(&names, &x.shape), |ax| {
        let v = || x.at(ax.to_vec());
        let inner = v() + Expr::float(0.044_715) * v() * v() * v();
        let e = (Expr::float(-GELU_2C) * inner).exp();
        v() / (Expr::float(1.0) + e)
    }))
}

/// `x (op) y` with numpy broadcasting to `x`'s shape, one stage named as TVM's (`T_add`,
/// `T_subtract`, `T_multiply`, `T_divide`): `out[i..] = x[i..] (op) y[j..]` where `y`'s axes
/// align with the last axes of `x` and index 0 where `y` has extent 1 (`y (op) x` when
/// `reversed`). `y` must have at most `x`'s rank and each extent 1 or equal to `x`'s.
pub fn broadcast(
    b: &mut DagBuilder,
    x: &Tensor,
    y: &Tensor,
    op: BinaryOp,
    reversed: bool,
) -> Result<Tensor, IrError> {
    let name = op.stage();
    let rank = x.ndim();
    let offset = rank.checked_sub(y.ndim());
    let fits = offset.is_some_and(|o| {
        y.shape
            .iter()
            .enumerate()
            .all(|(j, &d)| d == 1 || d == x.shape[o + j])
    });
    let Some(offset) = offset.filter(|_| fits) else {
        return Err(invalid(
            name,
            format!("{:?} does not broadcast to {:?}", y.shape, x.shape),
        ));
    };
    let names = numbered("ax", rank);
    let stage = b.unique_name(name);
    Ok(b.compute(&stage, &named(&names, &x.shape), |ax| {
        let yidx: Vec<Expr> = y
            .shape
            .iter()
            .enumerate()
            .map(|(j, &d)| {
                if d == 1 {
                    Expr::int(0)
                } else {
                    ax[offset + j].clone()
                }
            })
            .collect();
        let (a, c) = (x.at(ax.to_vec()), y.at(yidx));
        if reversed {
            op.apply(c, a)
        } else {
            op.apply(a, c)
        }
    }))
}

/// ONNX `HardSigmoid`, one stage `T_hard_sigmoid`: `max(0, min(1, alpha·x + beta))`.
pub fn hard_sigmoid(
    b: &mut DagBuilder,
    x: &Tensor,
    alpha: f32,
    beta: f32,
) -> Result<Tensor, IrError> {
    let names = numbered("ax", x.ndim());
    let stage = b.unique_name("T_hard_sigmoid");
    Ok(b.compute(&stage, &named(&names, &x.shape), |ax| {
        (x.at(ax.to_vec()) * Expr::float(alpha) + Expr::float(beta))
            .min(Expr::float(1.0))
            .max(Expr::float(0.0))
    }))
}

/// `topi.multiply` by a constant: `T_multiply[...] = x[...] * v`.
pub fn scale(b: &mut DagBuilder, x: &Tensor, v: f32) -> Result<Tensor, IrError> {
    let names = numbered("ax", x.ndim());
    let stage = b.unique_name("T_multiply");
    Ok(b.compute(&stage, &named(&names, &x.shape), |ax| {
        x.at(ax.to_vec()) * Expr::float(v)
    }))
}

/// Layer normalization over the last axis of `x (m, n)`, as `topi.nn.layer_norm` computes
/// it (one pass of sums, variance = E\[x²\] − E\[x\]²):
/// `T_layer_norm_sum[i] = sum_k x[i, k]`, `T_layer_norm_sqsum[i] = sum_k x[i, k]·x[i, k]`,
/// `T_layer_norm[i, j] = (x[i, j] − mean[i]) / sqrt(var[i] + eps) · gamma[j] + beta[j]`.
pub fn layer_norm(
    b: &mut DagBuilder,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f32,
) -> Result<Tensor, IrError> {
    let op = "T_layer_norm";
    expect_rank(op, "data", x, 2)?;
    let (m, n) = (x.shape[0], x.shape[1]);
    for (what, t) in [("gamma", gamma), ("beta", beta)] {
        if t.shape != [n] {
            return Err(invalid(
                op,
                format!("{what} must have shape [{n}], got {:?}", t.shape),
            ));
        }
    }
    let name = b.unique_name("T_layer_norm_sum");
    let sum = b.reduce(&name, &[("i", m)], &[("k", n)], Reducer::Sum, |ax| {
        x.at([ax[0].clone(), ax[1].clone()])
    });
    let name = b.unique_name("T_layer_norm_sqsum");
    let sqsum = b.reduce(&name, &[("i", m)], &[("k", n)], Reducer::Sum, |ax| {
        x.at([ax[0].clone(), ax[1].clone()]) * x.at([ax[0].clone(), ax[1].clone()])
    });
    let inv_n = 1.0 / n as f32;
    let name = b.unique_name(op);
    Ok(b.compute(&name, &[("i", m), ("j", n)], |ax| {
        let (i, j) = (ax[0].clone(), ax[1].clone());
        let mean = || sum.at([i.clone()]) * Expr::float(inv_n);
        let var = sqsum.at([i.clone()]) * Expr::float(inv_n) - mean() * mean();
        (x.at([i.clone(), j.clone()]) - mean()) / (var + Expr::float(eps)).sqrt()
            * gamma.at([j.clone()])
            + beta.at([j.clone()])
    }))
}

/// `x (batch·seq, heads·dim)` → `T_transpose (batch·heads, seq, dim)`:
/// `out[bh, s, d] = x[(bh / heads)·seq + s, (bh % heads)·dim + d]`; with `transpose`, the
/// last two axes swap (`(batch·heads, dim, seq)`, the keys of `Q·Kᵀ`). At batch 1 the
/// indices are written without the division.
pub fn split_heads(
    b: &mut DagBuilder,
    x: &Tensor,
    heads: i64,
    seq: i64,
    transpose: bool,
) -> Result<Tensor, IrError> {
    let op = "T_transpose";
    expect_rank(op, "data", x, 2)?;
    let (tokens, width) = (x.shape[0], x.shape[1]);
    if heads < 1 || seq < 1 || width % heads != 0 || tokens % seq != 0 {
        return Err(invalid(
            op,
            format!(
                "cannot split {:?} into {heads} heads of sequences of {seq}",
                x.shape
            ),
        ));
    }
    let (batch, dim) = (tokens / seq, width / heads);
    let shape = if transpose {
        [batch * heads, dim, seq]
    } else {
        [batch * heads, seq, dim]
    };
    let names = numbered("ax", 3);
    let name = b.unique_name(op);
    Ok(b.compute(&name, &named(&names, &shape), |ax| {
        let (s, d) = if transpose {
            (ax[2].clone(), ax[1].clone())
        } else {
            (ax[1].clone(), ax[2].clone())
        };
        let (bi, h) = if batch == 1 {
            (None, ax[0].clone())
        } else {
            (
                Some(ax[0].clone().floor_div(heads)),
                ax[0].clone().floor_mod(heads),
            )
        };
        let row = match bi {
            Some(bi) => bi * seq + s,
            None => s,
        };
        x.at([row, h * dim + d])
    }))
}

/// `x (batch·heads, seq, dim)` → `T_reshape (batch·seq, heads·dim)`:
/// `out[t, c] = x[(t / seq)·heads + c / dim, t % seq, c % dim]` (at batch 1 without the
/// first division).
pub fn merge_heads(b: &mut DagBuilder, x: &Tensor, heads: i64) -> Result<Tensor, IrError> {
    let op = "T_reshape";
    expect_rank(op, "data", x, 3)?;
    let (bh, seq, dim) = (x.shape[0], x.shape[1], x.shape[2]);
    if heads < 1 || bh % heads != 0 {
        return Err(invalid(
            op,
            format!("{:?} does not hold {heads} heads", x.shape),
        ));
    }
    let batch = bh / heads;
    let names = numbered("ax", 2);
    let name = b.unique_name(op);
    Ok(
        b.compute(&name, &named(&names, &[batch * seq, heads * dim]), |ax| {
            let (t, c) = (ax[0].clone(), ax[1].clone());
            let head = c.clone().floor_div(dim);
            let (first, s) = if batch == 1 {
                (head, t)
            } else {
                (t.clone().floor_div(seq) * heads + head, t.floor_mod(seq))
            };
            x.at([first, s, c.floor_mod(dim)])
        }),
    )
}

/// `topi.transpose`: `T_transpose[a0, ..] = x[..]` where output axis `i` reads input axis
/// `perm[i]` (so the output shape is `x.shape[perm[i]]`). `perm` must be a permutation of
/// the axes of `x`.
pub fn transpose(b: &mut DagBuilder, x: &Tensor, perm: &[usize]) -> Result<Tensor, IrError> {
    let op = "T_transpose";
    let rank = x.ndim();
    let mut seen = vec![false; rank];
    for &a in perm {
        if a >= rank || seen[a] {
            return Err(invalid(
                op,
                format!(
                    "{perm:?} is not a permutation of the {rank} axes of {:?}",
                    x.shape
                ),
            ));
        }
        seen[a] = true;
    }
    if perm.len() != rank {
        return Err(invalid(
            op,
            format!(
                "{perm:?} is not a permutation of the {rank} axes of {:?}",
                x.shape
            ),
        ));
    }
    let shape: Vec<i64> = perm.iter().map(|&a| x.shape[a]).collect();
    let names = numbered("ax", rank);
    let name = b.unique_name(op);
    Ok(b.compute(&name, &named(&names, &shape), |ax| {
        let mut idx = vec![Expr::Int(0); rank];
        for (i, &a) in perm.iter().enumerate() {
            idx[a] = ax[i].clone();
        }
        x.at(idx)
    }))
}

/// `topi.multiply` of two tensors of the same shape: `T_multiply[...] = x[...] * y[...]`.
pub fn multiply(b: &mut DagBuilder, x: &Tensor, y: &Tensor) -> Result<Tensor, IrError> {
    let op = "T_multiply";
    if x.shape != y.shape {
        return Err(invalid(
            op,
            format!("shapes {:?} and {:?} differ", x.shape, y.shape),
        ));
    }
    let names = numbered("ax", x.ndim());
    let name = b.unique_name(op);
    Ok(b.compute(&name, &named(&names, &x.shape), |ax| {
        x.at(ax.to_vec()) * y.at(ax.to_vec())
    }))
}

/// The error function, element-wise, one stage `T_erf`. The expression language has `exp`
/// but no `erf`, so it is Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7):
/// `erf(x) = s·(1 − t·(a1 + t·(a2 + t·(a3 + t·(a4 + t·a5))))·exp(−x²))` with
/// `t = 1 / (1 + p·|x|)` and `s` the sign of `x`.
pub fn erf(b: &mut DagBuilder, x: &Tensor) -> Result<Tensor, IrError> {
    let names = numbered("ax", x.ndim());
    let stage = b.unique_name("T_erf");
    Ok(b.compute(&stage, &named(&names, &x.shape), |ax| {
        erf_expr(&|| x.at(ax.to_vec()))
    }))
}

/// The expression of [`erf`] of `v()`.
fn erf_expr(v: &dyn Fn() -> Expr) -> Expr {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_7,
        -1.453_152_1,
        1.061_405_4,
    ];
    let abs = v().max(Expr::float(0.0) - v());
    let t = Expr::float(1.0) / (Expr::float(1.0) + Expr::float(P) * abs);
    let mut poly = Expr::float(A[4]);
    for a in A[..4].iter().rev() {
        poly = Expr::float(*a) + t.clone() * poly;
    }
    let e = (Expr::float(0.0) - v() * v()).exp();
    let r = Expr::float(1.0) - t * poly * e;
    Expr::select(v().lt(Expr::float(0.0)), Expr::float(0.0) - r.clone(), r)
}

/// The exact GELU, one stage `T_gelu_erf`: `x·0.5·(1 + erf(x·(1/√2)))`, the erf as in
/// [`erf`] (so within 1e-7 of ONNX's `x·0.5·(1 + Erf(x/√2))`).
pub fn gelu_erf(b: &mut DagBuilder, x: &Tensor) -> Result<Tensor, IrError> {
    let names = numbered("ax", x.ndim());
    let stage = b.unique_name("T_gelu_erf");
    Ok(b.compute(&stage, &named(&names, &x.shape), |ax| {
        let v = || x.at(ax.to_vec());
        let scaled = || v() * Expr::float(std::f32::consts::FRAC_1_SQRT_2);
        v() * Expr::float(0.5) * (Expr::float(1.0) + erf_expr(&scaled))
    }))
}

/// The logistic function, one stage `T_sigmoid`: `1 / (1 + exp(-x))`.
pub fn sigmoid(b: &mut DagBuilder, x: &Tensor) -> Result<Tensor, IrError> {
    let names = numbered("ax", x.ndim());
    let stage = b.unique_name("T_sigmoid");
    Ok(b.compute(&stage, &named(&names, &x.shape), |ax| {
        Expr::float(1.0) / (Expr::float(1.0) + (Expr::float(0.0) - x.at(ax.to_vec())).exp())
    }))
}

/// The hyperbolic tangent, one stage `T_tanh`, written with `exp` (the expression language
/// has no `tanh`): `1 − 2 / (1 + exp(2x))`, which saturates to ±1 without overflow trouble
/// (absolute error near 1e-7).
pub fn tanh(b: &mut DagBuilder, x: &Tensor) -> Result<Tensor, IrError> {
    let names = numbered("ax", x.ndim());
    let stage = b.unique_name("T_tanh");
    Ok(b.compute(&stage, &named(&names, &x.shape), |ax| {
        let e = (Expr::float(2.0) * x.at(ax.to_vec())).exp();
        Expr::float(1.0) - Expr::float(2.0) / (Expr::float(1.0) + e)
    }))
}

/// `topi.concatenate` along `axis`, one stage `T_concat`: the inputs must agree on every
/// other axis. `out[.., j, ..]` reads input `k` at `j − offset_k` for the `k` whose range
/// holds `j` (a chain of selects; only the chosen branch is read).
pub fn concat(b: &mut DagBuilder, xs: &[Tensor], axis: usize) -> Result<Tensor, IrError> {
    let op = "T_concat";
    let Some(first) = xs.first() else {
        return Err(invalid(op, "takes at least one input"));
    };
    let rank = first.ndim();
    if axis >= rank {
        return Err(invalid(
            op,
            format!("axis {axis} is out of range for {:?}", first.shape),
        ));
    }
    let mut offsets = Vec::with_capacity(xs.len());
    let mut total = 0;
    for x in xs {
        let same = x.ndim() == rank && (0..rank).all(|d| d == axis || x.shape[d] == first.shape[d]);
        if !same {
            return Err(invalid(
                op,
                format!(
                    "cannot join {:?} and {:?} along axis {axis}",
                    first.shape, x.shape
                ),
            ));
        }
        offsets.push(total);
        total += x.shape[axis];
    }
    let mut shape = first.shape.clone();
    shape[axis] = total;
    let names = numbered("ax", rank);
    let name = b.unique_name(op);
    Ok(b.compute(&name, &named(&names, &shape), |ax| {
        let read = |k: usize| {
            let mut idx = ax.to_vec();
            if offsets[k] != 0 {
                idx[axis] = idx[axis].clone() - Expr::int(offsets[k]);
            }
            xs[k].at(idx)
        };
        let last = xs.len() - 1;
        let mut e = read(last);
        for k in (0..last).rev() {
            e = Expr::select(ax[axis].clone().lt(Expr::int(offsets[k + 1])), read(k), e);
        }
        e
    }))
}

/// `topi.strided_slice` along one axis, one stage `T_strided_slice`:
/// `out[.., i, ..] = x[.., start + i·step, ..]` for `i < len`. Every index read must lie in
/// the input.
pub fn slice(
    b: &mut DagBuilder,
    x: &Tensor,
    axis: usize,
    start: i64,
    step: i64,
    len: i64,
) -> Result<Tensor, IrError> {
    let op = "T_strided_slice";
    if axis >= x.ndim() {
        return Err(invalid(
            op,
            format!("axis {axis} is out of range for {:?}", x.shape),
        ));
    }
    let extent = x.shape[axis];
    let last = start + (len - 1) * step;
    if step == 0 || len < 1 || start < 0 || start >= extent || last < 0 || last >= extent {
        return Err(invalid(
            op,
            format!(
                "{len} elements from {start} in steps of {step} do not fit axis {axis} of {:?}",
                x.shape
            ),
        ));
    }
    let mut shape = x.shape.clone();
    shape[axis] = len;
    let names = numbered("ax", x.ndim());
    let name = b.unique_name(op);
    Ok(b.compute(&name, &named(&names, &shape), |ax| {
        let mut idx = ax.to_vec();
        let mut i = idx[axis].clone();
        if step != 1 {
            i = i * Expr::int(step);
        }
        if start != 0 {
            i = i + Expr::int(start);
        }
        idx[axis] = i;
        x.at(idx)
    }))
}

/// An embedding lookup: `ids` holds token ids as `f32`, `table` is `(vocab, dim)`;
/// `T_embedding[i.., d] = sum_v select(ids[i..] == v, table[v, d], 0)` (a one-hot reduction:
/// the expression language indexes only by loop variables). Exact: one term is the row,
/// every other a zero.
pub fn embedding(b: &mut DagBuilder, ids: &Tensor, table: &Tensor) -> Result<Tensor, IrError> {
    let op = "T_embedding";
    expect_rank(op, "table", table, 2)?;
    let (vocab, dim) = (table.shape[0], table.shape[1]);
    let rank = ids.ndim();
    let mut shape = ids.shape.clone();
    shape.push(dim);
    let names = numbered("ax", rank + 1);
    let name = b.unique_name(op);
    Ok(b.reduce(
        &name,
        &named(&names, &shape),
        &[("v", vocab)],
        Reducer::Sum,
        |ax| {
            let id = ids.at(ax[..rank].to_vec());
            let v = ax[rank + 1].clone();
            Expr::select(
                id.eq(v.clone().to_float()),
                table.at([v, ax[rank].clone()]),
                Expr::float(0.0),
            )
        },
    ))
}
