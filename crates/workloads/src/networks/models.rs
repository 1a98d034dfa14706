//! The built-in networks: ResNet-50 v1.5, MobileNet-V2 and BERT-base, as the onnxruntime
//! anchor's `make_models.py` defines the first two (batch-norm folded into conv weight +
//! bias), in NHWC.

use super::graph::{LayerId, Network, NetworkBuilder};
use super::layers::Layer;
use tessel_ir::IrError;

/// A small helper over [`NetworkBuilder`] for the conv nets.
struct Net(NetworkBuilder);

/// Activation after a convolution's bias.
#[derive(Clone, Copy, PartialEq)]
enum Act {
    None,
    Relu,
    Relu6,
}

impl Net {
    /// conv (+ bias, BN folded) (+ residual add) (+ activation), as `Builder.conv` of
    /// `make_models.py`. `depthwise` means group = channels.
    #[allow(clippy::too_many_arguments)]
    fn conv(
        &mut self,
        name: &str,
        x: LayerId,
        out: i64,
        kernel: i64,
        stride: i64,
        depthwise: bool,
        act: Act,
        add: Option<LayerId>,
    ) -> Result<LayerId, IrError> {
        let pad = kernel / 2;
        let layer = if depthwise {
            Layer::DepthwiseConv2d {
                kernel,
                stride,
                pad,
            }
        } else {
            Layer::Conv2d {
                out_channels: out,
                kernel,
                stride,
                pad,
                dilation: 1,
                groups: 1,
            }
        };
        let mut y = self.0.add(name, layer, &[x])?;
        y = self.0.add(&format!("{name}.bias"), Layer::BiasAdd, &[y])?;
        if let Some(r) = add {
            y = self.0.add(&format!("{name}.add"), Layer::Add, &[y, r])?;
        }
        match act {
            Act::None => Ok(y),
            Act::Relu => self.0.add(&format!("{name}.relu"), Layer::Relu, &[y]),
            Act::Relu6 => self.0.add(&format!("{name}.relu6"), Layer::Relu6, &[y]),
        }
    }

    /// Global average pool, flatten, dense to `classes` (with bias).
    fn head(&mut self, x: LayerId, classes: i64) -> Result<LayerId, IrError> {
        let batch = self.0.shape(x)[0];
        let c = self.0.shape(x)[3];
        let gap = self.0.add("gap", Layer::GlobalAvgPool, &[x])?;
        let flat = self
            .0
            .add("flatten", Layer::Reshape(vec![batch, c]), &[gap])?;
        self.0.add("fc", Layer::Dense { units: classes }, &[flat])
    }
}

fn check_batch(batch: i64) -> Result<(), IrError> {
    if !(1..=crate::MAX_VALUE).contains(&batch) {
        return Err(IrError::BadSpec {
            spec: format!("--batch {batch}"),
            reason: format!("the batch size must be in 1..={}", crate::MAX_VALUE),
        });
    }
    Ok(())
}

/// A tiny residual CNN (NHWC `batch×16×16×8`) for trying the tools and for tests: a 3×3
/// conv + bias + ReLU, a second 3×3 conv + bias + add (residual) + ReLU, a 1×1 conv to 32
/// channels, max-pool 2×2/2, global average pool and dense 32→10. Six tasks, ~0.6 MFLOP.
pub fn tiny_cnn(batch: i64) -> Result<Network, IrError> {
    check_batch(batch)?;
    let mut n = Net(NetworkBuilder::new("tiny-cnn", batch));
    let input = n.0.input("input", &[batch, 16, 16, 8])?;
    let a = n.conv("conv1", input, 8, 3, 1, false, Act::Relu, None)?;
    let b = n.conv("conv2", a, 8, 3, 1, false, Act::Relu, Some(a))?;
    let c = n.conv("conv3", b, 32, 1, 1, false, Act::Relu, None)?;
    let p = n.0.add(
        "maxpool",
        Layer::MaxPool2d {
            kernel: 2,
            stride: 2,
            pad: 0,
        },
        &[c],
    )?;
    n.head(p, 10)?;
    Ok(n.0.build())
}

/// ResNet-50 v1.5 (torchvision layout: the stride of a stage's first bottleneck is on its
/// 3×3 conv and its 1×1 projection), NHWC `batch×224×224×3`: stem 7×7/2 conv + bias + ReLU,
/// max-pool 3×3/2 pad 1, bottlenecks [3, 4, 6, 3] of widths [64, 128, 256, 512] (×4 out),
/// each conv + bias + ReLU except the last (conv + bias + add + ReLU) and the projection
/// (conv + bias), global average pool, dense 2048→1000. 53 convolutions.
pub fn resnet50(batch: i64) -> Result<Network, IrError> {
    check_batch(batch)?;
    let mut n = Net(NetworkBuilder::new("resnet50", batch));
    let input = n.0.input("input", &[batch, 224, 224, 3])?;
    let x = n.conv("stem", input, 64, 7, 2, false, Act::Relu, None)?;
    let mut x = n.0.add(
        "maxpool",
        Layer::MaxPool2d {
            kernel: 3,
            stride: 2,
            pad: 1,
        },
        &[x],
    )?;
    for (stage, (width, blocks)) in [(64, 3), (128, 4), (256, 6), (512, 3)]
        .into_iter()
        .enumerate()
    {
        let stage = stage + 1;
        for i in 0..blocks {
            let stride = if i == 0 && stage > 1 { 2 } else { 1 };
            let p = format!("layer{stage}.{i}.");
            let shortcut = if i == 0 {
                n.conv(
                    &format!("{p}downsample"),
                    x,
                    width * 4,
                    1,
                    stride,
                    false,
                    Act::None,
                    None,
                )?
            } else {
                x
            };
            let y = n.conv(&format!("{p}conv1"), x, width, 1, 1, false, Act::Relu, None)?;
            let y = n.conv(
                &format!("{p}conv2"),
                y,
                width,
                3,
                stride,
                false,
                Act::Relu,
                None,
            )?;
            x = n.conv(
                &format!("{p}conv3"),
                y,
                width * 4,
                1,
                1,
                false,
                Act::Relu,
                Some(shortcut),
            )?;
        }
    }
    n.head(x, 1000)?;
    Ok(n.0.build())
}

/// MobileNet-V2 1.0/224 (torchvision), NHWC `batch×224×224×3`: stem 3×3/2 conv → 32 +
/// ReLU6, inverted residuals (t, c, n, s) = (1,16,1,1), (6,24,2,2), (6,32,3,2), (6,64,4,2),
/// (6,96,3,1), (6,160,3,2), (6,320,1,1) — 1×1 expansion + ReLU6 (when t ≠ 1), depthwise
/// 3×3 + ReLU6, linear 1×1 projection (+ residual add when stride 1 and C_in = C_out) — then
/// 1×1 to 1280 + ReLU6, global average pool, dense 1280→1000. Every conv has a bias (BN
/// folded). 52 convolutions.
pub fn mobilenet_v2(batch: i64) -> Result<Network, IrError> {
    check_batch(batch)?;
    let mut n = Net(NetworkBuilder::new("mobilenet-v2", batch));
    let input = n.0.input("input", &[batch, 224, 224, 3])?;
    let mut x = n.conv("stem", input, 32, 3, 2, false, Act::Relu6, None)?;
    let mut cin = 32;
    let cfg = [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ];
    let mut blk = 0;
    for (t, c, reps, s) in cfg {
        for i in 0..reps {
            let stride = if i == 0 { s } else { 1 };
            let p = format!("block{blk}.");
            let hidden = cin * t;
            let mut y = x;
            if t != 1 {
                y = n.conv(
                    &format!("{p}expand"),
                    y,
                    hidden,
                    1,
                    1,
                    false,
                    Act::Relu6,
                    None,
                )?;
            }
            y = n.conv(
                &format!("{p}dw"),
                y,
                hidden,
                3,
                stride,
                true,
                Act::Relu6,
                None,
            )?;
            let res = (stride == 1 && cin == c).then_some(x);
            x = n.conv(&format!("{p}project"), y, c, 1, 1, false, Act::None, res)?;
            cin = c;
            blk += 1;
        }
    }
    let x = n.conv("last", x, 1280, 1, 1, false, Act::Relu6, None)?;
    n.head(x, 1000)?;
    Ok(n.0.build())
}

/// Shape of a BERT encoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BertConfig {
    /// Sequences per batch.
    pub batch: i64,
    /// Tokens per sequence.
    pub seq_len: i64,
    /// Encoder layers.
    pub layers: usize,
    /// Hidden size.
    pub hidden: i64,
    /// Attention heads (`hidden` must be a multiple).
    pub heads: i64,
    /// Feed-forward inner size.
    pub ffn: i64,
}

impl BertConfig {
    /// BERT-base: 12 layers, hidden 768, 12 heads, FFN 3072, at sequence length 128.
    pub fn base(batch: i64) -> BertConfig {
        BertConfig {
            batch,
            seq_len: 128,
            layers: 12,
            hidden: 768,
            heads: 12,
            ffn: 3072,
        }
    }
}

/// BERT encoder layers (post-norm, as BERT-base): per layer, from `x (batch·seq, hidden)`:
/// Q, K, V = dense + bias, split into heads (K transposed); scores = batch matmul
/// `Q·Kᵀ` × 1/√dim; softmax over each row; context = batch matmul with V, heads merged;
/// `h = LayerNorm(x + dense(context))`; `out = LayerNorm(h + dense(GELU(dense(h))))`.
/// Embeddings, the attention mask and the pooler are left out; GELU is the tanh
/// approximation ([`super::gelu`]); layer norm eps 1e-12.
pub fn bert(cfg: BertConfig) -> Result<Network, IrError> {
    check_batch(cfg.batch)?;
    let BertConfig {
        batch,
        seq_len: seq,
        layers,
        hidden,
        heads,
        ffn,
    } = cfg;
    if heads < 1 || hidden % heads != 0 {
        return Err(IrError::InvalidOp {
            op: "bert".into(),
            reason: format!("hidden size {hidden} is not a multiple of {heads} heads"),
        });
    }
    let dim = hidden / heads;
    let tokens = batch * seq;
    let mut b = NetworkBuilder::new("bert-base", batch);
    let mut x = b.input("input", &[tokens, hidden])?;
    let eps = 1e-12;
    for l in 0..layers {
        let p = format!("layer{l}.");
        let name = |s: &str| format!("{p}{s}");
        let heads_of = |b: &mut NetworkBuilder, what: &str, transpose: bool| {
            let d = b.add(&name(what), Layer::Dense { units: hidden }, &[x])?;
            b.add(
                &name(&format!("{what}.split")),
                Layer::SplitHeads {
                    heads,
                    seq,
                    transpose,
                },
                &[d],
            )
        };
        let q = heads_of(&mut b, "query", false)?;
        let k = heads_of(&mut b, "key", true)?;
        let v = heads_of(&mut b, "value", false)?;
        let s = b.add(&name("scores"), Layer::BatchMatmul, &[q, k])?;
        let s = b.add(
            &name("scores.scale"),
            Layer::Scale(1.0 / (dim as f32).sqrt()),
            &[s],
        )?;
        let rows = batch * heads * seq;
        let s = b.add(&name("scores.rows"), Layer::Reshape(vec![rows, seq]), &[s])?;
        let prob = b.add(&name("softmax"), Layer::Softmax, &[s])?;
        let prob = b.add(
            &name("probs"),
            Layer::Reshape(vec![batch * heads, seq, seq]),
            &[prob],
        )?;
        let ctx = b.add(&name("context"), Layer::BatchMatmul, &[prob, v])?;
        let ctx = b.add(&name("context.merge"), Layer::MergeHeads { heads }, &[ctx])?;
        let o = b.add(&name("output"), Layer::Dense { units: hidden }, &[ctx])?;
        let o = b.add(&name("output.add"), Layer::Add, &[o, x])?;
        let h = b.add(&name("output.norm"), Layer::LayerNorm { eps }, &[o])?;
        let f = b.add(&name("ffn1"), Layer::Dense { units: ffn }, &[h])?;
        let f = b.add(&name("ffn1.gelu"), Layer::Gelu, &[f])?;
        let f = b.add(&name("ffn2"), Layer::Dense { units: hidden }, &[f])?;
        let f = b.add(&name("ffn2.add"), Layer::Add, &[f, h])?;
        x = b.add(&name("ffn2.norm"), Layer::LayerNorm { eps }, &[f])?;
    }
    Ok(b.build())
}
