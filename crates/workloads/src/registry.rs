//! The named workload registry and the `OP:key=value,...` spec syntax.
//!
//! A workload is one task to tune: a [`ComputeDag`] with a name. It is given either by a
//! registry name (`c2d-1`, `gmm-3`, `convlayer-2`, `resnet50-conv-7`, ... see
//! [`registry`]) or by a custom spec such as `gmm:b=1,n=512,m=512,k=512` or
//! `c2d:n=1,h=56,w=56,ci=64,co=64,kernel=3,stride=1,pad=1,dilation=2`. The keys of each
//! op are the lower-case column names of the Ansor benchmark tuples (WORKLOADS.md); see
//! [`op_infos`] and `docs/workloads.md`. Every problem with a spec is an
//! [`IrError::BadSpec`] naming the bad part.
//!
//! ```
//! let w = tessel_workloads::lookup("c2d:n=1,h=56,w=56,ci=64,co=64,kernel=1,stride=1,pad=0").unwrap();
//! assert_eq!(w.flop(), 2 * 56 * 56 * 64 * 64);
//! assert_eq!(tessel_workloads::lookup_with_batch("gmm-1", 16).unwrap().spec(), "gmm:b=16,n=128,m=128,k=128");
//! assert!(tessel_workloads::lookup("c2d:n=1").is_err());
//! ```

use crate::ops::{self, ConvParams, Layout};
use tessel_ir::{ComputeDag, IrError};

/// One task: a named compute DAG with the parameters it was made from.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Registry name (`c2d-1`), or the canonical spec for a custom workload.
    pub name: String,
    /// The op of the spec syntax (`c2d`, `gmm`, ...).
    pub op: String,
    /// Every key of the op with its value (optional keys included), in the op's key order.
    pub params: Vec<(String, i64)>,
    /// The computation.
    pub dag: ComputeDag,
}

impl Workload {
    /// Floating-point operations of one run ([`ComputeDag::flop_count`]).
    pub fn flop(&self) -> u64 {
        self.dag.flop_count()
    }

    /// The canonical custom spec: `op:key=value,...` in the op's key order, optional keys
    /// only when they differ from their default (e.g. `gmm:b=1,n=512,m=512,k=512`); a task
    /// of a built-in network's `NETWORK@BATCH/TASK`, or a subgraph spec
    /// ([`crate::networks::subgraph_spec`]) as given. Looking it up gives the same DAG.
    pub fn spec(&self) -> String {
        if self.op == NETWORK_TASK_OP || self.op == crate::networks::SUBGRAPH_OP {
            return self.name.clone();
        }
        let info = find_op(&self.op);
        let parts: Vec<String> = self
            .params
            .iter()
            .filter(|(k, v)| {
                info.and_then(|i| i.optional.iter().find(|(o, _)| o == k))
                    .is_none_or(|(_, default)| default != v)
            })
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("{}:{}", self.op, parts.join(","))
    }

    /// The value of parameter `key`.
    pub fn param(&self, key: &str) -> Option<i64> {
        self.params.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }
}

/// Description of one op of the spec syntax.
#[derive(Clone, Copy, Debug)]
pub struct OpInfo {
    /// Name in specs (`c2d`).
    pub name: &'static str,
    /// Required keys, in canonical order.
    pub keys: &'static [&'static str],
    /// Optional keys with their defaults, after the required ones.
    pub optional: &'static [(&'static str, i64)],
    /// The key that `--batch` overrides, if the op has a batch dimension.
    pub batch_key: Option<&'static str>,
    /// What it computes (the TVM function).
    pub description: &'static str,
    build: fn(&Params) -> Result<ComputeDag, IrError>,
}

/// Parameter values of a spec being built.
struct Params<'a>(&'a [(String, i64)]);

impl Params<'_> {
    fn get(&self, key: &str) -> i64 {
        // Every key of the op is present once parsing succeeded.
        self.0.iter().find(|(k, _)| k == key).map_or(0, |(_, v)| *v)
    }

    fn conv(&self) -> ConvParams {
        ConvParams::new(self.get("stride"), self.get("pad"))
            .with_dilation(
                self.0
                    .iter()
                    .find(|(k, _)| k == "dilation")
                    .map_or(1, |(_, v)| *v),
            )
            .with_groups(
                self.0
                    .iter()
                    .find(|(k, _)| k == "groups")
                    .map_or(1, |(_, v)| *v),
            )
    }

    fn hw(&self) -> [i64; 2] {
        [self.get("h"), self.get("w")]
    }
}

const CONV2D_KEYS: &[&str] = &["n", "h", "w", "ci", "co", "kernel", "stride", "pad"];

const OPS: &[OpInfo] = &[
    OpInfo {
        name: "c1d",
        keys: &["n", "l", "ci", "co", "kernel", "stride", "pad"],
        optional: &[("dilation", 1), ("groups", 1)],
        batch_key: Some("n"),
        description: "1-D convolution, NLC (te_workload.conv1d_nlc)",
        build: |p| {
            let (n, l, ci, co, k) = (
                p.get("n"),
                p.get("l"),
                p.get("ci"),
                p.get("co"),
                p.get("kernel"),
            );
            ops::conv1d_nlc_dag(n, l, ci, co, k, p.conv())
        },
    },
    OpInfo {
        name: "c2d",
        keys: CONV2D_KEYS,
        optional: &[("dilation", 1), ("groups", 1)],
        batch_key: Some("n"),
        description: "2-D convolution, NHWC (te_workload.conv2d_nhwc)",
        build: build_c2d,
    },
    OpInfo {
        name: "grp",
        keys: CONV2D_KEYS,
        optional: &[("dilation", 1), ("groups", 4)],
        batch_key: Some("n"),
        description: "grouped 2-D convolution, NHWC (te_workload.conv2d_nhwc, groups=4)",
        build: build_c2d,
    },
    OpInfo {
        name: "dil",
        keys: CONV2D_KEYS,
        optional: &[("dilation", 2), ("groups", 1)],
        batch_key: Some("n"),
        description: "dilated 2-D convolution, NHWC (te_workload.conv2d_nhwc, dilation=2)",
        build: build_c2d,
    },
    OpInfo {
        name: "c3d",
        keys: &["n", "d", "h", "w", "ci", "co", "kernel", "stride", "pad"],
        optional: &[("dilation", 1), ("groups", 1)],
        batch_key: Some("n"),
        description: "3-D convolution, NDHWC (te_workload.conv3d_ndhwc)",
        build: |p| {
            let dhw = [p.get("d"), p.get("h"), p.get("w")];
            ops::conv3d_ndhwc_dag(
                p.get("n"),
                dhw,
                p.get("ci"),
                p.get("co"),
                p.get("kernel"),
                p.conv(),
            )
        },
    },
    OpInfo {
        name: "gmm",
        keys: &["b", "n", "m", "k"],
        optional: &[],
        batch_key: Some("b"),
        description: "batched matmul Z(b,n,m) = X(b,n,k) Y(b,k,m) (te_workload.batch_matmul_nkkm)",
        build: |p| ops::batch_matmul_nkkm_dag(p.get("b"), p.get("n"), p.get("m"), p.get("k")),
    },
    OpInfo {
        name: "dep",
        keys: &["n", "h", "w", "c", "kernel", "stride", "pad"],
        optional: &[("dilation", 1)],
        batch_key: Some("n"),
        description: "depthwise 2-D convolution, NHWC (te_workload.depthwise_conv2d_nhwc)",
        build: |p| {
            ops::depthwise_conv2d_nhwc_dag(
                p.get("n"),
                p.hw(),
                p.get("c"),
                p.get("kernel"),
                p.conv(),
            )
        },
    },
    OpInfo {
        name: "t2d",
        keys: CONV2D_KEYS,
        optional: &[],
        batch_key: Some("n"),
        description: "transposed 2-D convolution, NHWC (te_workload.conv2d_transpose_nhwc)",
        build: |p| {
            let (ci, co, k) = (p.get("ci"), p.get("co"), p.get("kernel"));
            ops::conv2d_transpose_nhwc_dag(
                p.get("n"),
                p.hw(),
                ci,
                co,
                k,
                p.get("stride"),
                p.get("pad"),
            )
        },
    },
    OpInfo {
        name: "cap",
        keys: CONV2D_KEYS,
        optional: &[],
        batch_key: Some("n"),
        description: "capsule 2-D convolution, 4x4 poses (te_workload.conv2d_capsule_nhwijc)",
        build: |p| {
            let (ci, co, k) = (p.get("ci"), p.get("co"), p.get("kernel"));
            ops::conv2d_capsule_nhwijc_dag(
                p.get("n"),
                p.hw(),
                ci,
                co,
                k,
                p.get("stride"),
                p.get("pad"),
            )
        },
    },
    OpInfo {
        name: "nrm",
        keys: &["b", "m", "n"],
        optional: &[],
        batch_key: Some("b"),
        description: "Frobenius norm of each (m, n) matrix (te_workload.norm_bmn)",
        build: |p| ops::norm_bmn_dag(p.get("b"), p.get("m"), p.get("n")),
    },
    OpInfo {
        name: "convlayer",
        keys: CONV2D_KEYS,
        optional: &[("dilation", 1)],
        batch_key: Some("n"),
        description: "conv2d + bias + batch-norm + ReLU, NHWC (te_workload.conv2d_nhwc_bn_relu)",
        build: |p| {
            let (ci, co, k) = (p.get("ci"), p.get("co"), p.get("kernel"));
            ops::conv2d_nhwc_bn_relu_dag(p.get("n"), p.hw(), ci, co, k, p.conv())
        },
    },
    OpInfo {
        name: "tbg",
        keys: &["b", "seq", "heads", "dim"],
        optional: &[],
        batch_key: Some("b"),
        description: "transpose + batched matmul (te_workload.transpose_batch_matmul)",
        build: |p| {
            ops::transpose_batch_matmul_dag(p.get("b"), p.get("seq"), p.get("heads"), p.get("dim"))
        },
    },
    OpInfo {
        name: "matmul",
        keys: &["n", "m", "k"],
        optional: &[],
        batch_key: None,
        description: "C(n,m) = A(n,k) B(k,m) (te_workload.matmul)",
        build: |p| ops::matmul_dag(p.get("n"), p.get("m"), p.get("k")),
    },
    OpInfo {
        name: "dense",
        keys: &["n", "in", "out"],
        optional: &[],
        batch_key: Some("n"),
        description: "data(n,in) weight(out,in)^T + bias(out) (topi.nn.dense)",
        build: |p| ops::dense_dag(p.get("n"), p.get("in"), p.get("out")),
    },
    OpInfo {
        name: "softmax",
        keys: &["m", "n"],
        optional: &[],
        batch_key: None,
        description: "softmax over the rows of an (m, n) matrix (topi.nn.softmax, axis 1)",
        build: |p| ops::softmax_mn_dag(p.get("m"), p.get("n")),
    },
    OpInfo {
        name: "maxpool",
        keys: &["n", "h", "w", "c", "kernel", "stride", "pad"],
        optional: &[],
        batch_key: Some("n"),
        description: "max pooling, NHWC, square window (topi.nn.pool2d)",
        build: |p| {
            ops::max_pool2d_nhwc_dag(
                p.get("n"),
                p.hw(),
                p.get("c"),
                p.get("kernel"),
                p.get("stride"),
                p.get("pad"),
            )
        },
    },
    OpInfo {
        name: "maxpool-nchw",
        keys: &["n", "h", "w", "c", "pad"],
        optional: &[],
        batch_key: Some("n"),
        description: "2x2 stride-1 max pooling, NCHW (te_workload.max_pool2d_nchw)",
        build: |p| {
            ops::max_pool2d_nchw_dag(p.get("n"), p.get("h"), p.get("w"), p.get("c"), p.get("pad"))
        },
    },
    OpInfo {
        name: "avgpool",
        keys: &["n", "h", "w", "c"],
        optional: &[],
        batch_key: Some("n"),
        description: "global average pooling, NHWC (topi.nn.global_pool)",
        build: |p| {
            ops::global_avg_pool_dag(
                [p.get("n"), p.get("h"), p.get("w"), p.get("c")],
                Layout::Nhwc,
            )
        },
    },
    OpInfo {
        name: "avgpool-nchw",
        keys: &["n", "h", "w", "c"],
        optional: &[],
        batch_key: Some("n"),
        description: "global average pooling, NCHW (topi.nn.global_pool)",
        build: |p| {
            ops::global_avg_pool_dag(
                [p.get("n"), p.get("c"), p.get("h"), p.get("w")],
                Layout::Nchw,
            )
        },
    },
    OpInfo {
        name: "c2d-nchw",
        keys: CONV2D_KEYS,
        optional: &[("dilation", 1)],
        batch_key: Some("n"),
        description: "2-D convolution, NCHW (te_workload.conv2d_nchw / topi.nn.conv2d_nchw)",
        build: |p| {
            let (ci, co, k) = (p.get("ci"), p.get("co"), p.get("kernel"));
            ops::conv2d_nchw_dag(p.get("n"), p.hw(), ci, co, k, p.conv())
        },
    },
];

fn build_c2d(p: &Params) -> Result<ComputeDag, IrError> {
    let (ci, co, k) = (p.get("ci"), p.get("co"), p.get("kernel"));
    ops::conv2d_nhwc_dag(p.get("n"), p.hw(), ci, co, k, p.conv())
}

/// Every op of the spec syntax, in documentation order.
pub fn op_infos() -> &'static [OpInfo] {
    OPS
}

fn find_op(name: &str) -> Option<&'static OpInfo> {
    OPS.iter().find(|o| o.name == name)
}

/// Largest value accepted for one key (keeps all shape arithmetic far from overflow).
pub const MAX_VALUE: i64 = 1 << 24;

/// Largest number of loop iterations (elements x reduction size) of one op.
const MAX_POINTS: u64 = 1 << 50;

/// The named workloads: (name, canonical spec).
const NAMED: &[(&str, &str)] = &[
    (
        "c1d-1",
        "c1d:n=1,l=256,ci=64,co=128,kernel=3,stride=2,pad=1",
    ),
    (
        "c1d-2",
        "c1d:n=1,l=128,ci=128,co=256,kernel=1,stride=2,pad=0",
    ),
    (
        "c1d-3",
        "c1d:n=1,l=64,ci=256,co=256,kernel=5,stride=1,pad=2",
    ),
    (
        "c1d-4",
        "c1d:n=1,l=32,ci=512,co=512,kernel=3,stride=1,pad=1",
    ),
    (
        "c2d-1",
        "c2d:n=1,h=224,w=224,ci=3,co=64,kernel=7,stride=2,pad=3",
    ),
    (
        "c2d-2",
        "c2d:n=1,h=56,w=56,ci=64,co=64,kernel=1,stride=1,pad=0",
    ),
    (
        "c2d-3",
        "c2d:n=1,h=14,w=14,ci=256,co=256,kernel=3,stride=1,pad=1",
    ),
    (
        "c2d-4",
        "c2d:n=1,h=7,w=7,ci=512,co=512,kernel=3,stride=1,pad=1",
    ),
    (
        "c3d-1",
        "c3d:n=1,d=16,h=224,w=224,ci=3,co=64,kernel=7,stride=2,pad=3",
    ),
    (
        "c3d-2",
        "c3d:n=1,d=16,h=56,w=56,ci=64,co=64,kernel=1,stride=1,pad=0",
    ),
    (
        "c3d-3",
        "c3d:n=1,d=16,h=14,w=14,ci=256,co=256,kernel=3,stride=1,pad=1",
    ),
    (
        "c3d-4",
        "c3d:n=1,d=16,h=7,w=7,ci=512,co=512,kernel=3,stride=1,pad=1",
    ),
    ("gmm-1", "gmm:b=1,n=128,m=128,k=128"),
    ("gmm-2", "gmm:b=1,n=512,m=32,k=512"),
    ("gmm-3", "gmm:b=1,n=512,m=512,k=512"),
    ("gmm-4", "gmm:b=1,n=1024,m=1024,k=1024"),
    (
        "grp-1",
        "grp:n=1,h=56,w=56,ci=64,co=128,kernel=3,stride=2,pad=1",
    ),
    (
        "grp-2",
        "grp:n=1,h=56,w=56,ci=64,co=64,kernel=1,stride=1,pad=0",
    ),
    (
        "grp-3",
        "grp:n=1,h=14,w=14,ci=256,co=256,kernel=3,stride=1,pad=1",
    ),
    (
        "grp-4",
        "grp:n=1,h=7,w=7,ci=512,co=512,kernel=3,stride=1,pad=1",
    ),
    (
        "dil-1",
        "dil:n=1,h=224,w=224,ci=3,co=64,kernel=7,stride=2,pad=3",
    ),
    (
        "dil-2",
        "dil:n=1,h=56,w=56,ci=64,co=64,kernel=1,stride=1,pad=0",
    ),
    (
        "dil-3",
        "dil:n=1,h=14,w=14,ci=256,co=256,kernel=3,stride=1,pad=1",
    ),
    (
        "dil-4",
        "dil:n=1,h=7,w=7,ci=512,co=512,kernel=3,stride=1,pad=1",
    ),
    ("dep-1", "dep:n=1,h=112,w=112,c=32,kernel=3,stride=1,pad=1"),
    ("dep-2", "dep:n=1,h=112,w=112,c=64,kernel=3,stride=2,pad=1"),
    ("dep-3", "dep:n=1,h=14,w=14,c=512,kernel=3,stride=2,pad=1"),
    ("dep-4", "dep:n=1,h=7,w=7,c=1024,kernel=3,stride=1,pad=1"),
    (
        "t2d-1",
        "t2d:n=1,h=4,w=4,ci=512,co=256,kernel=4,stride=2,pad=1",
    ),
    (
        "t2d-2",
        "t2d:n=1,h=8,w=8,ci=256,co=128,kernel=4,stride=2,pad=1",
    ),
    (
        "t2d-3",
        "t2d:n=1,h=16,w=16,ci=128,co=64,kernel=4,stride=2,pad=1",
    ),
    (
        "t2d-4",
        "t2d:n=1,h=32,w=32,ci=64,co=3,kernel=4,stride=2,pad=1",
    ),
    (
        "cap-1",
        "cap:n=1,h=16,w=16,ci=32,co=32,kernel=3,stride=2,pad=1",
    ),
    (
        "cap-2",
        "cap:n=1,h=8,w=8,ci=32,co=32,kernel=3,stride=1,pad=1",
    ),
    (
        "cap-3",
        "cap:n=1,h=16,w=16,ci=8,co=16,kernel=3,stride=2,pad=1",
    ),
    (
        "cap-4",
        "cap:n=1,h=8,w=8,ci=16,co=16,kernel=3,stride=1,pad=1",
    ),
    ("nrm-1", "nrm:b=1,m=256,n=256"),
    ("nrm-2", "nrm:b=1,m=512,n=512"),
    ("nrm-3", "nrm:b=1,m=1024,n=1024"),
    ("nrm-4", "nrm:b=1,m=4096,n=1024"),
    (
        "convlayer-1",
        "convlayer:n=1,h=224,w=224,ci=3,co=64,kernel=7,stride=2,pad=3",
    ),
    (
        "convlayer-2",
        "convlayer:n=1,h=56,w=56,ci=64,co=128,kernel=3,stride=2,pad=1",
    ),
    (
        "convlayer-3",
        "convlayer:n=1,h=28,w=28,ci=128,co=256,kernel=1,stride=2,pad=0",
    ),
    (
        "convlayer-4",
        "convlayer:n=1,h=7,w=7,ci=512,co=512,kernel=3,stride=1,pad=1",
    ),
    ("tbg-1", "tbg:b=1,seq=128,heads=12,dim=64"),
    ("tbg-2", "tbg:b=1,seq=128,heads=16,dim=64"),
    ("tbg-3", "tbg:b=1,seq=64,heads=12,dim=128"),
    ("tbg-4", "tbg:b=1,seq=128,heads=12,dim=128"),
];

/// ResNet-50 v1.5 convolutions (WORKLOADS.md §6.1): (C, H=W, K, R=S, stride, pad).
const RESNET50_V15: &[[i64; 6]] = &[
    [3, 224, 64, 7, 2, 3],
    [64, 56, 64, 1, 1, 0],
    [64, 56, 64, 3, 1, 1],
    [64, 56, 256, 1, 1, 0],
    [256, 56, 64, 1, 1, 0],
    [256, 56, 128, 1, 1, 0],
    [128, 56, 128, 3, 2, 1],
    [128, 28, 512, 1, 1, 0],
    [256, 56, 512, 1, 2, 0],
    [512, 28, 128, 1, 1, 0],
    [128, 28, 128, 3, 1, 1],
    [512, 28, 256, 1, 1, 0],
    [256, 28, 256, 3, 2, 1],
    [256, 14, 1024, 1, 1, 0],
    [512, 28, 1024, 1, 2, 0],
    [1024, 14, 256, 1, 1, 0],
    [256, 14, 256, 3, 1, 1],
    [1024, 14, 512, 1, 1, 0],
    [512, 14, 512, 3, 2, 1],
    [512, 7, 2048, 1, 1, 0],
    [1024, 14, 2048, 1, 2, 0],
    [2048, 7, 512, 1, 1, 0],
    [512, 7, 512, 3, 1, 1],
];

/// Every named workload as (name, spec), in registry order.
fn named_specs() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = NAMED
        .iter()
        .map(|(n, s)| (n.to_string(), s.to_string()))
        .collect();
    for (k, [c, h, co, r, s, p]) in RESNET50_V15.iter().enumerate() {
        out.push((
            format!("resnet50-conv-{}", k + 1),
            format!("c2d:n=1,h={h},w={h},ci={c},co={co},kernel={r},stride={s},pad={p}"),
        ));
    }
    out
}

/// All named workloads at batch 1, in a stable order: the Ansor single operators
/// (`c1d-1` … `nrm-4`), the subgraphs (`convlayer-1..4`, `tbg-1..4`) and the 23 distinct
/// ResNet-50 v1.5 convolutions (`resnet50-conv-1` … `-23`, NHWC).
pub fn registry() -> Vec<Workload> {
    registry_with_batch(None).unwrap_or_default()
}

/// [`registry`] with every batch key set to `batch`.
pub fn registry_with_batch(batch: Option<i64>) -> Result<Vec<Workload>, IrError> {
    named_specs()
        .into_iter()
        .map(|(name, spec)| {
            let mut w = parse_spec(&spec, batch)?;
            w.name = name;
            Ok(w)
        })
        .collect()
}

/// Names of all registry workloads, in registry order.
pub fn registry_names() -> Vec<String> {
    named_specs().into_iter().map(|(n, _)| n).collect()
}

/// A workload from a registry name (`c2d-1`) or a custom spec (`gmm:b=1,n=512,m=512,k=512`).
pub fn lookup(spec_or_name: &str) -> Result<Workload, IrError> {
    resolve(spec_or_name, None)
}

/// [`lookup`] with the batch key (`n`, or `b` for `gmm`, `nrm`, `tbg`) set to `batch`.
/// An op without a batch dimension (`matmul`, `softmax`) is an error.
pub fn lookup_with_batch(spec_or_name: &str, batch: i64) -> Result<Workload, IrError> {
    resolve(spec_or_name, Some(batch))
}

fn bad(spec: impl Into<String>, reason: impl Into<String>) -> IrError {
    IrError::BadSpec {
        spec: spec.into(),
        reason: reason.into(),
    }
}

fn op_list() -> String {
    OPS.iter().map(|o| o.name).collect::<Vec<_>>().join(", ")
}

/// The `op` of a workload that is a task of a built-in network.
pub const NETWORK_TASK_OP: &str = "task";

/// A task of a built-in network, named `NETWORK@BATCH/TASK` (e.g.
/// `resnet50@1/c2d:n=1,h=56,w=56,ci=64,co=64,kernel=3,stride=1,pad=1+bias+relu`), as
/// `tessel tasks` lists them. This is how fused subgraphs travel to measurement workers.
fn resolve_network_task(text: &str, batch: Option<i64>) -> Option<Result<Workload, IrError>> {
    let (net_part, task) = text.split_once('/')?;
    let (net, given_batch) = match net_part.split_once('@') {
        Some((n, b)) => (n, b.parse::<i64>().ok()),
        None => (net_part, None),
    };
    if !crate::networks::NAMES.contains(&net) {
        return None;
    }
    let batch = batch.or(given_batch).unwrap_or(1);
    let found = crate::networks::lookup(net, batch)
        .and_then(|n| crate::networks::extract_tasks(&n))
        .and_then(|tasks| {
            tasks.into_iter().find(|t| t.name == task).ok_or_else(|| {
                bad(
                    text,
                    format!("network {net} has no task named `{task}` (see `tessel tasks {net}`)"),
                )
            })
        });
    Some(found.map(|t| task_workload(net, batch, t)))
}

/// The workload of task `t` of network `net` at `batch`, named `NETWORK@BATCH/TASK`.
fn task_workload(net: &str, batch: i64, t: crate::networks::Task) -> Workload {
    Workload {
        name: format!("{net}@{batch}/{}", t.name),
        op: NETWORK_TASK_OP.to_string(),
        params: vec![("batch".to_string(), batch)],
        dag: t.dag,
    }
}

/// A fused task named as `tessel tasks` lists it, without its network
/// (`c2d:…,pad=0+bias+add+relu`): the task of that name in the first built-in network that
/// has one, so that a name copied from the task list resolves as `NETWORK@BATCH/TASK` does.
fn resolve_bare_task(text: &str, batch: Option<i64>) -> Result<Workload, IrError> {
    let at = batch.unwrap_or(1);
    for net in crate::networks::NAMES {
        let Ok(tasks) =
            crate::networks::lookup(net, at).and_then(|n| crate::networks::extract_tasks(&n))
        else {
            continue;
        };
        if let Some(t) = tasks.into_iter().find(|t| t.name == text) {
            return Ok(task_workload(net, at, t));
        }
    }
    Err(bad(
        text,
        format!(
            "`+…` names a fused task of a network, and no built-in network ({}) has this task at batch {at}; \
             `tessel tasks NETWORK` lists them",
            crate::networks::NAMES.join(", ")
        ),
    ))
}

fn resolve(spec_or_name: &str, batch: Option<i64>) -> Result<Workload, IrError> {
    let text = spec_or_name.trim();
    if crate::networks::is_subgraph_spec(text) {
        if batch.is_some() {
            return Err(bad(
                text.chars().take(80).collect::<String>(),
                "a subgraph spec has fixed shapes; the batch size cannot be overridden",
            ));
        }
        return Ok(Workload {
            name: text.to_string(),
            op: crate::networks::SUBGRAPH_OP.to_string(),
            params: Vec::new(),
            dag: crate::networks::subgraph_spec_dag(text)?,
        });
    }
    if let Some(task) = resolve_network_task(text, batch) {
        return task;
    }
    if text.contains(':') && text.contains('+') {
        return resolve_bare_task(text, batch);
    }
    if text.contains(':') {
        return parse_spec(text, batch);
    }
    let lower = text.to_ascii_lowercase();
    if let Some((name, spec)) = named_specs().into_iter().find(|(n, _)| *n == lower) {
        let mut w = parse_spec(&spec, batch)?;
        w.name = name;
        return Ok(w);
    }
    let hint = match find_op(&lower) {
        Some(op) => format!(
            "`{lower}` is an op: give its keys, e.g. `{lower}:{}`",
            op.keys.iter().map(|k| format!("{k}=...")).collect::<Vec<_>>().join(",")
        ),
        None => format!(
            "not a registry name (run `tessel workloads` to list them) nor a spec `OP:key=value,...` with OP one of: {}",
            op_list()
        ),
    };
    Err(bad(text, format!("unknown workload `{text}`: {hint}")))
}

/// Parses `op:key=value,...`, applies the batch override, and builds the DAG.
fn parse_spec(text: &str, batch: Option<i64>) -> Result<Workload, IrError> {
    let (op_text, rest) = text.split_once(':').unwrap_or((text, ""));
    let op_name = op_text.trim().to_ascii_lowercase();
    let info = find_op(&op_name).ok_or_else(|| {
        bad(
            op_text.trim(),
            format!("unknown op `{}`; known ops: {}", op_text.trim(), op_list()),
        )
    })?;
    let mut given: Vec<(String, i64)> = Vec::new();
    for part in rest.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, value)) = part.split_once('=') else {
            return Err(bad(part, format!("`{part}` is not `key=value`")));
        };
        let key = key.trim().to_ascii_lowercase();
        let value = value.trim();
        let known =
            info.keys.contains(&key.as_str()) || info.optional.iter().any(|(k, _)| *k == key);
        if !known {
            return Err(bad(
                part,
                format!(
                    "unknown key `{key}` for op {}; its keys are: {}",
                    info.name,
                    key_list(info)
                ),
            ));
        }
        if given.iter().any(|(k, _)| *k == key) {
            return Err(bad(part, format!("duplicate key `{key}`")));
        }
        let v: i64 = value.parse().map_err(|_| {
            bad(
                part,
                format!("value of `{key}` is not an integer: `{value}`"),
            )
        })?;
        check_value(part, &key, v)?;
        given.push((key, v));
    }
    if let Some(b) = batch {
        let Some(bk) = info.batch_key else {
            return Err(bad(
                format!("--batch {b}"),
                format!("op {} has no batch dimension", info.name),
            ));
        };
        check_value(&format!("--batch {b}"), "batch", b)?;
        match given.iter_mut().find(|(k, _)| k == bk) {
            Some(entry) => entry.1 = b,
            None => given.push((bk.to_string(), b)),
        }
    }
    // Canonical order: required keys, then optional ones with defaults filled in.
    let mut params = Vec::new();
    let missing: Vec<&str> = info
        .keys
        .iter()
        .filter(|k| !given.iter().any(|(g, _)| g == *k))
        .copied()
        .collect();
    if !missing.is_empty() {
        return Err(bad(
            text,
            format!(
                "missing key{} {} for op {} (its keys are: {})",
                if missing.len() > 1 { "s" } else { "" },
                missing
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                info.name,
                key_list(info)
            ),
        ));
    }
    for k in info.keys {
        let v = given.iter().find(|(g, _)| g == k).map_or(0, |(_, v)| *v);
        params.push((k.to_string(), v));
    }
    for (k, default) in info.optional {
        let v = given
            .iter()
            .find(|(g, _)| g == k)
            .map_or(*default, |(_, v)| *v);
        params.push((k.to_string(), v));
    }
    let dag = (info.build)(&Params(&params)).map_err(|e| match e {
        IrError::InvalidOp { op, reason } => bad(
            text,
            format!("invalid {} shape ({op}): {reason}", info.name),
        ),
        other => bad(text, other.to_string()),
    })?;
    check_size(text, &dag)?;
    let mut w = Workload {
        name: String::new(),
        op: info.name.to_string(),
        params,
        dag,
    };
    w.name = w.spec();
    Ok(w)
}

fn key_list(info: &OpInfo) -> String {
    let mut keys: Vec<String> = info.keys.iter().map(|k| k.to_string()).collect();
    keys.extend(
        info.optional
            .iter()
            .map(|(k, d)| format!("{k} (optional, default {d})")),
    );
    keys.join(", ")
}

/// Values are integers in `[1, MAX_VALUE]`, except `pad` which may be 0.
fn check_value(part: &str, key: &str, v: i64) -> Result<(), IrError> {
    let min = if key == "pad" { 0 } else { 1 };
    if v < min {
        let what = if min == 0 { "negative" } else { "not positive" };
        return Err(bad(part, format!("value of `{key}` is {what}: {v}")));
    }
    if v > MAX_VALUE {
        return Err(bad(
            part,
            format!("value of `{key}` is too large: {v} (max {MAX_VALUE})"),
        ));
    }
    Ok(())
}

/// Rejects DAGs whose loop nests are absurdly large (and would overflow FLOP counts).
fn check_size(text: &str, dag: &ComputeDag) -> Result<(), IrError> {
    for op in dag.ops() {
        let reduce: Vec<i64> = op
            .compute()
            .map(|c| c.reduce_axes.iter().map(|a| a.extent).collect())
            .unwrap_or_default();
        let points = op
            .shape
            .iter()
            .chain(&reduce)
            .try_fold(1u64, |acc, &d| acc.checked_mul(u64::try_from(d).ok()?));
        if points.is_none_or(|p| p > MAX_POINTS) {
            return Err(bad(
                text,
                format!(
                    "workload too large: op {} has more than 2^50 loop iterations",
                    op.name
                ),
            ));
        }
    }
    Ok(())
}
