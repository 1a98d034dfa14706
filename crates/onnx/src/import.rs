//! From a decoded `ModelProto` to a [`Network`] and its [`Weights`].

use crate::error::OnnxError;
use crate::proto::{AttributeProto, ModelProto, NodeProto, TensorProto};
use crate::tensor::{self, Const, Data};
use prost::Message;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use tessel_workloads::networks::{
    BinaryOp, ConstTensor, Layer, LayerId, Network, NetworkBuilder, Weights,
};

/// The oldest opset of the default domain the importer reads.
pub const MIN_OPSET: i64 = 7;
/// The newest opset of the default domain the importer knows.
pub const MAX_OPSET: i64 = 22;

/// How to import a model.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Shapes for graph inputs (ONNX order of axes, e.g. `[1, 3, 224, 224]`), overriding
    /// the model's (needed where the model's shape is symbolic).
    pub input_shapes: Vec<(String, Vec<i64>)>,
    /// The network's name (default: the graph's name, else `onnx`).
    pub name: Option<String>,
}

/// A network input or output and how its ONNX tensor is laid out in Tessel.
#[derive(Clone, Debug, PartialEq)]
pub struct Port {
    /// The ONNX value name.
    pub name: String,
    /// The layer that holds it.
    pub layer: LayerId,
    /// Its shape in the model (ONNX axis order, e.g. NCHW).
    pub onnx_shape: Vec<i64>,
    /// True when Tessel holds it as NHWC (a 4-D NCHW tensor of the model): the buffer is
    /// the ONNX tensor transposed by `[0, 2, 3, 1]`.
    pub nhwc: bool,
    /// True for an integer input of the model (token ids): Tessel takes its values as
    /// `f32` (exact up to 2^24).
    pub integer: bool,
}

/// An imported model.
#[derive(Clone, Debug)]
pub struct Model {
    /// The network graph (NHWC images, as the built-in networks).
    pub network: Network,
    /// Its weights, keyed by (layer name, weight name of [`Layer::params`]).
    pub weights: Weights,
    /// The graph inputs, in model order.
    pub inputs: Vec<Port>,
    /// The graph outputs, in model order.
    pub outputs: Vec<Port>,
    /// Every change of layout the import made, one line each (inputs taken as NHWC,
    /// transposes inserted, outputs left as NHWC).
    pub layout_changes: Vec<String>,
    /// The model's opset of the default domain.
    pub opset: i64,
}

impl Model {
    /// The network and its weights.
    pub fn into_parts(self) -> (Network, Weights) {
        (self.network, self.weights)
    }
}

/// Reads and imports the `.onnx` file at `path`.
pub fn import_file(
    path: impl AsRef<std::path::Path>,
    opts: &ImportOptions,
) -> Result<Model, OnnxError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| OnnxError::Io {
        path: path.display().to_string(),
        source,
    })?;
    import(&bytes, opts)
}

/// Imports a model from the bytes of an `.onnx` file.
pub fn import(bytes: &[u8], opts: &ImportOptions) -> Result<Model, OnnxError> {
    if bytes.is_empty() {
        return Err(OnnxError::NotOnnx("the file is empty".into()));
    }
    let model = ModelProto::decode(bytes).map_err(|e| OnnxError::Decode(e.to_string()))?;
    if model.ir_version <= 0 {
        return Err(OnnxError::NotOnnx("it has no IR version".into()));
    }
    let Some(graph) = model.graph else {
        return Err(OnnxError::NotOnnx("it has no graph".into()));
    };
    let mut opset = None;
    for o in &model.opset_import {
        let default = o.domain.is_empty() || o.domain == "ai.onnx";
        if default {
            if o.version > MAX_OPSET {
                return Err(OnnxError::OpsetTooNew {
                    domain: "ai.onnx".into(),
                    version: o.version,
                    max: MAX_OPSET,
                });
            }
            if o.version < MIN_OPSET {
                return Err(OnnxError::Model(format!(
                    "the model uses opset {} of ai.onnx; this importer reads opsets {MIN_OPSET} to {MAX_OPSET}",
                    o.version
                )));
            }
            opset = Some(o.version);
        }
    }
    let opset = opset.ok_or_else(|| {
        OnnxError::NotOnnx("it imports no opset of the default domain (ai.onnx)".into())
    })?;
    let domains: HashMap<String, i64> = model
        .opset_import
        .iter()
        .map(|o| (o.domain.clone(), o.version))
        .collect();

    let mut consts: HashMap<String, Const> = HashMap::new();
    for t in &graph.initializer {
        let c = tensor::from_proto(t).map_err(OnnxError::Model)?;
        consts.insert(t.name.clone(), c);
    }
    let nodes = fold_batch_norms(graph.node.clone(), &mut consts)?;
    let outputs_named: Vec<String> = graph.output.iter().map(|o| o.name.clone()).collect();
    let nodes = crate::patterns::fuse_layer_norms(nodes, &mut consts, &outputs_named);
    let nodes = crate::patterns::fuse_gelus(nodes, &consts, &outputs_named);

    let mut uses: HashMap<String, usize> = HashMap::new();
    for n in &nodes {
        for i in n.input.iter().filter(|i| !i.is_empty()) {
            *uses.entry(i.clone()).or_default() += 1;
        }
    }
    for o in &graph.output {
        *uses.entry(o.name.clone()).or_default() += 1;
    }

    // Graph inputs that are not initializers are the network's inputs.
    let mut shapes: Vec<(String, Vec<i64>, bool)> = Vec::new();
    for vi in graph.input.iter().filter(|v| !consts.contains_key(&v.name)) {
        let given = opts.input_shapes.iter().find(|(n, _)| *n == vi.name);
        let tt = vi.r#type.as_ref().and_then(|t| t.tensor_type.as_ref());
        let mut integer = false;
        if let Some(tt) = tt {
            integer = matches!(tt.elem_type, 6 | 7);
            if !matches!(tt.elem_type, 0 | 1 | 6 | 7) {
                return Err(OnnxError::Model(format!(
                    "input `{}` is of type {}; Tessel networks take float inputs (and int32/int64 token ids)",
                    vi.name,
                    tensor::type_name(tt.elem_type)
                )));
            }
        }
        let dims: Vec<Option<i64>> = tt
            .and_then(|t| t.shape.as_ref())
            .map(|s| {
                s.dim
                    .iter()
                    .map(|d| d.dim_value.filter(|&v| v > 0))
                    .collect()
            })
            .unwrap_or_default();
        let shape = match given {
            Some((_, s)) => {
                if !dims.is_empty() && dims.len() != s.len()
                    || dims.iter().zip(s).any(|(d, g)| d.is_some_and(|d| d != *g))
                {
                    return Err(OnnxError::Model(format!(
                        "--input {}:{} does not fit the model's shape {}",
                        vi.name,
                        join_x(s),
                        show_dims(vi)
                    )));
                }
                s.clone()
            }
            None => {
                if dims.is_empty() || dims.iter().any(Option::is_none) {
                    let example = if dims.is_empty() {
                        "1x3x224x224".to_string()
                    } else {
                        dims.iter()
                            .map(|d| d.unwrap_or(1).to_string())
                            .collect::<Vec<_>>()
                            .join("x")
                    };
                    return Err(OnnxError::DynamicShape {
                        input: vi.name.clone(),
                        shape: show_dims(vi),
                        example,
                    });
                }
                dims.into_iter().flatten().collect()
            }
        };
        shapes.push((vi.name.clone(), shape, integer));
    }
    for (n, _) in &opts.input_shapes {
        if !shapes.iter().any(|(s, _, _)| s == n) {
            return Err(OnnxError::Model(format!(
                "--input names `{n}`, which is not an input of the model (its inputs: {})",
                shapes
                    .iter()
                    .map(|(s, _, _)| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    if shapes.is_empty() {
        return Err(OnnxError::Model("the model has no input".into()));
    }
    let batch = shapes[0].1[0];
    let name = opts
        .name
        .clone()
        .or_else(|| (!graph.name.is_empty()).then(|| graph.name.clone()))
        .unwrap_or_else(|| "onnx".into());
    let mut im = Importer {
        b: NetworkBuilder::new(&name, batch),
        weights: Weights::new(),
        vals: consts
            .into_iter()
            .map(|(k, v)| (k, Val::Const(Rc::new(v))))
            .collect(),
        uses,
        layout: Vec::new(),
        names: HashSet::new(),
        matmul_dense: HashMap::new(),
        opset,
        domains,
        layer_names: HashMap::new(),
    };
    let mut inputs = Vec::new();
    for (n, shape, integer) in shapes {
        let nhwc = shape.len() == 4 && !integer;
        let phys = if nhwc {
            to_nhwc_shape(&shape)
        } else {
            shape.clone()
        };
        let lname = im.unique(&n);
        let id = im.b.input(&lname, &phys)?;
        if nhwc {
            im.layout.push(format!(
                "input `{n}`: NCHW {} is taken as NHWC {}",
                join_x(&shape),
                join_x(&phys)
            ));
        }
        if integer {
            im.layout.push(format!(
                "input `{n}`: integer {} is taken as f32 values",
                join_x(&shape)
            ));
        }
        im.vals.insert(
            n.clone(),
            Val::Act(Act {
                id,
                shape: shape.clone(),
                nhwc,
            }),
        );
        inputs.push(Port {
            name: n,
            layer: id,
            onnx_shape: shape,
            nhwc,
            integer,
        });
    }
    for (k, node) in nodes.iter().enumerate() {
        im.node(node, k)?;
    }
    let mut outputs = Vec::new();
    for o in &graph.output {
        match im.vals.get(&o.name) {
            Some(Val::Act(a)) => {
                if a.nhwc {
                    im.layout.push(format!(
                        "output `{}`: NCHW {} is given as NHWC {}",
                        o.name,
                        join_x(&a.shape),
                        join_x(&to_nhwc_shape(&a.shape))
                    ));
                }
                outputs.push(Port {
                    name: o.name.clone(),
                    layer: a.id,
                    onnx_shape: a.shape.clone(),
                    nhwc: a.nhwc,
                    integer: false,
                })
            }
            Some(Val::Const(_)) => {
                return Err(OnnxError::Model(format!(
                    "output `{}` is a constant, not computed from the inputs",
                    o.name
                )))
            }
            None => {
                return Err(OnnxError::Model(format!(
                    "output `{}` is produced by no node",
                    o.name
                )))
            }
        }
    }
    // The model's outputs, in its order; one that other nodes also read is kept whole.
    let output_layers: Vec<_> = outputs.iter().map(|p| p.layer).collect();
    im.b.set_outputs(&output_layers)?;
    let network = im.b.build();
    im.weights.check(&network)?;
    Ok(Model {
        network,
        weights: im.weights,
        inputs,
        outputs,
        layout_changes: im.layout,
        opset,
    })
}

fn join_x(s: &[i64]) -> String {
    s.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("x")
}

fn show_dims(vi: &crate::proto::ValueInfoProto) -> String {
    let dims = vi
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .and_then(|t| t.shape.as_ref());
    match dims {
        None => "(unknown rank)".into(),
        Some(s) => format!(
            "[{}]",
            s.dim
                .iter()
                .map(|d| match (&d.dim_param, d.dim_value) {
                    (Some(p), _) if !p.is_empty() => p.clone(),
                    (_, Some(v)) if v > 0 => v.to_string(),
                    _ => "?".into(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `(N, C, H, W)` → `(N, H, W, C)`.
fn to_nhwc_shape(s: &[i64]) -> Vec<i64> {
    vec![s[0], s[2], s[3], s[1]]
}

/// For each logical (NCHW) axis, its position in the NHWC buffer.
const NCHW_TO_PHYS: [usize; 4] = [0, 3, 1, 2];

fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn attr_i(node: &NodeProto, name: &str, default: i64) -> i64 {
    attr(node, name).map_or(default, |a| a.i)
}

fn attr_f(node: &NodeProto, name: &str, default: f32) -> f32 {
    attr(node, name).map_or(default, |a| a.f)
}

fn attr_ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(node, name).map(|a| a.ints.clone())
}

fn attr_s(node: &NodeProto, name: &str) -> Option<String> {
    attr(node, name).map(|a| String::from_utf8_lossy(&a.s).into_owned())
}

fn node_name(node: &NodeProto, k: usize) -> String {
    if !node.name.is_empty() {
        node.name.clone()
    } else if let Some(o) = node.output.first().filter(|o| !o.is_empty()) {
        o.clone()
    } else {
        format!("{}_{k}", node.op_type)
    }
}

/// Folds every `BatchNormalization` that reads only a `Conv` with constant weights into
/// that conv: `W' = W·γ/√(var+ε)` per output channel, `b' = (b − mean)·γ/√(var+ε) + β`.
fn fold_batch_norms(
    mut nodes: Vec<NodeProto>,
    consts: &mut HashMap<String, Const>,
) -> Result<Vec<NodeProto>, OnnxError> {
    let mut uses: HashMap<String, usize> = HashMap::new();
    for n in &nodes {
        for i in &n.input {
            *uses.entry(i.clone()).or_default() += 1;
        }
    }
    let producer: HashMap<String, usize> = nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.op_type == "Conv" && n.domain.is_empty())
        .filter_map(|(k, n)| n.output.first().map(|o| (o.clone(), k)))
        .collect();
    let mut drop = vec![false; nodes.len()];
    for k in 0..nodes.len() {
        let bn = &nodes[k];
        if bn.op_type != "BatchNormalization" || bn.input.len() != 5 {
            continue;
        }
        let Some(&c) = producer.get(&bn.input[0]) else {
            continue;
        };
        if uses.get(&bn.input[0]).copied().unwrap_or(0) != 1
            || attr_i(bn, "training_mode", 0) != 0
            || bn.output.iter().skip(1).any(|o| !o.is_empty())
        {
            continue;
        }
        let get = |i: usize| consts.get(&bn.input[i]).map(Const::to_f32);
        let (Some(gamma), Some(beta), Some(mean), Some(var)) = (get(1), get(2), get(3), get(4))
        else {
            continue;
        };
        let conv = &nodes[c];
        let Some(w) = conv.input.get(1).and_then(|w| consts.get(w)) else {
            continue;
        };
        let co = w.shape.first().copied().unwrap_or(0) as usize;
        if [&gamma, &beta, &mean, &var].iter().any(|v| v.len() != co) || co == 0 {
            continue;
        }
        let bias = match conv.input.get(2).filter(|b| !b.is_empty()) {
            Some(b) => match consts.get(b) {
                Some(b) if b.len() == co => b.to_f32(),
                _ => continue,
            },
            None => vec![0.0; co],
        };
        let eps = attr_f(bn, "epsilon", 1e-5);
        let factor: Vec<f32> = (0..co).map(|o| gamma[o] / (var[o] + eps).sqrt()).collect();
        let wv = w.to_f32();
        let per = wv.len() / co;
        let nw: Vec<f32> = wv
            .iter()
            .enumerate()
            .map(|(i, &x)| x * factor[i / per])
            .collect();
        let nb: Vec<f32> = (0..co)
            .map(|o| (bias[o] - mean[o]) * factor[o] + beta[o])
            .collect();
        let wname = format!("{}::bn_folded_weight", bn.output[0]);
        let bname = format!("{}::bn_folded_bias", bn.output[0]);
        consts.insert(wname.clone(), Const::floats(w.shape.clone(), nw));
        consts.insert(bname.clone(), Const::floats(vec![co as i64], nb));
        let out = bn.output[0].clone();
        let conv = &mut nodes[c];
        conv.input.truncate(1);
        conv.input.push(wname);
        conv.input.push(bname);
        conv.output[0] = out;
        drop[k] = true;
    }
    Ok(nodes
        .into_iter()
        .zip(drop)
        .filter(|(_, d)| !d)
        .map(|(n, _)| n)
        .collect())
}

/// An activation: a layer's output with its ONNX shape. A plain (not NHWC) activation's
/// buffer is its ONNX tensor in row-major order, whatever the layer's shape: an ONNX
/// `Reshape` changes only `shape` (no layer), and a view is added only where a layer needs
/// the shape (so element-wise ops stay fused with their producer, as in the built-in
/// networks).
#[derive(Clone, Debug)]
struct Act {
    id: LayerId,
    /// The shape in the model (ONNX axis order).
    shape: Vec<i64>,
    /// Held as NHWC (4-D only).
    nhwc: bool,
}

#[derive(Clone, Debug)]
enum Val {
    /// Shared: weights are large, and values are cloned freely.
    Const(Rc<Const>),
    Act(Act),
}

struct Importer {
    b: NetworkBuilder,
    weights: Weights,
    vals: HashMap<String, Val>,
    uses: HashMap<String, usize>,
    layout: Vec<String>,
    names: HashSet<String>,
    /// Activations that are the output of a `MatMul` made a dense layer with a zero bias
    /// (maybe through a reshape), with that layer's name: a following bias `Add` folds in.
    matmul_dense: HashMap<LayerId, String>,
    opset: i64,
    domains: HashMap<String, i64>,
    layer_names: HashMap<LayerId, String>,
}

/// One node being imported, for error messages.
struct Cx<'a> {
    node: &'a NodeProto,
    name: String,
}

impl Cx<'_> {
    fn invalid(&self, reason: impl Into<String>) -> OnnxError {
        OnnxError::Invalid {
            node: self.name.clone(),
            op: self.node.op_type.clone(),
            reason: reason.into(),
        }
    }

    fn attr_err(&self, attr: &str, value: impl Into<String>, reason: &str) -> OnnxError {
        OnnxError::UnsupportedAttribute {
            node: self.name.clone(),
            op: self.node.op_type.clone(),
            attr: attr.into(),
            value: value.into(),
            reason: reason.into(),
        }
    }
}

fn show<T: std::fmt::Debug>(v: T) -> String {
    format!("{v:?}")
}

/// The ops whose outputs are computed at import when all their inputs are constants.
const FOLDABLE: &[&str] = &[
    "Shape",
    "Gather",
    "Unsqueeze",
    "Squeeze",
    "Concat",
    "Cast",
    "Reshape",
    "Identity",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Slice",
    "ConstantOfShape",
    "Transpose",
    "Flatten",
];

impl Importer {
    fn unique(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut k = 1;
        while self.names.contains(&name) {
            name = format!("{base}.{k}");
            k += 1;
        }
        self.names.insert(name.clone());
        name
    }

    fn input<'v>(&'v self, cx: &Cx, k: usize) -> Result<&'v Val, OnnxError> {
        let name = cx
            .node
            .input
            .get(k)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| cx.invalid(format!("input {k} is missing")))?;
        self.vals
            .get(name)
            .ok_or_else(|| cx.invalid(format!("reads `{name}`, which no earlier node makes")))
    }

    fn has_input(&self, cx: &Cx, k: usize) -> bool {
        cx.node.input.get(k).is_some_and(|n| !n.is_empty())
    }

    fn act(&self, cx: &Cx, k: usize) -> Result<Act, OnnxError> {
        match self.input(cx, k)? {
            Val::Act(a) => Ok(a.clone()),
            Val::Const(_) => Err(cx.invalid(format!(
                "input {k} (`{}`) is a constant where Tessel needs a computed tensor",
                cx.node.input[k]
            ))),
        }
    }

    fn konst(&self, cx: &Cx, k: usize) -> Result<Rc<Const>, OnnxError> {
        match self.input(cx, k)? {
            Val::Const(c) => Ok(c.clone()),
            Val::Act(_) => Err(cx.invalid(format!(
                "input {k} (`{}`) must be a constant (an initializer, or computable at import) for Tessel to map it",
                cx.node.input[k]
            ))),
        }
    }

    fn set(&mut self, cx: &Cx, v: Val) {
        if let Some(o) = cx.node.output.first() {
            self.vals.insert(o.clone(), v);
        }
    }

    fn uses_of(&self, cx: &Cx, k: usize) -> usize {
        cx.node
            .input
            .get(k)
            .and_then(|n| self.uses.get(n))
            .copied()
            .unwrap_or(0)
    }

    /// Adds a layer; an [`IrError`](tessel_ir::IrError) becomes an error at this node.
    fn add(
        &mut self,
        cx: &Cx,
        name: &str,
        layer: Layer,
        inputs: &[LayerId],
    ) -> Result<LayerId, OnnxError> {
        let name = self.unique(name);
        let id = self
            .b
            .add(&name, layer, inputs)
            .map_err(|e| cx.invalid(e.to_string()))?;
        self.layer_names.insert(id, name);
        Ok(id)
    }

    fn weight(
        &mut self,
        layer_id: LayerId,
        param: &str,
        shape: Vec<i64>,
        data: Vec<f32>,
    ) -> Result<(), OnnxError> {
        let name = self.b_name(layer_id);
        let t = ConstTensor::new(shape, data)?;
        self.weights.insert(&name, param, t);
        Ok(())
    }

    fn b_name(&self, id: LayerId) -> String {
        self.layer_names.get(&id).cloned().unwrap_or_default()
    }
}

/// Pads `[begin_h, begin_w, end_h, end_w]` of a 2-D window op (`pads` or `auto_pad`).
fn window_pads(
    cx: &Cx,
    input_hw: [i64; 2],
    kernel: [i64; 2],
    stride: [i64; 2],
    dilation: [i64; 2],
) -> Result<[i64; 4], OnnxError> {
    let auto = attr_s(cx.node, "auto_pad").unwrap_or_else(|| "NOTSET".into());
    match auto.as_str() {
        "NOTSET" | "" => {
            let p = attr_ints(cx.node, "pads").unwrap_or_else(|| vec![0; 4]);
            if p.len() != 4 {
                return Err(cx.attr_err("pads", show(&p), "2-D windows take 4 pads"));
            }
            Ok([p[0], p[1], p[2], p[3]])
        }
        "VALID" => Ok([0; 4]),
        "SAME_UPPER" | "SAME_LOWER" => {
            let mut out = [0; 4];
            for i in 0..2 {
                let o = (input_hw[i] + stride[i] - 1) / stride[i];
                let total =
                    ((o - 1) * stride[i] + (kernel[i] - 1) * dilation[i] + 1 - input_hw[i]).max(0);
                let small = total / 2;
                let (b, e) = if auto == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
                out[i] = b;
                out[i + 2] = e;
            }
            Ok(out)
        }
        other => Err(cx.attr_err(
            "auto_pad",
            other,
            "expected NOTSET, VALID, SAME_UPPER or SAME_LOWER",
        )),
    }
}

/// The one value of a square window attribute (`[k, k]`), else an attribute error.
/// The one padding of a square-strided window that pads every side equally
/// ([`window_pads`]); `who` names the layer and its verb in the error ("max pool pads").
fn equal_window_pad(
    cx: &Cx,
    input_hw: [i64; 2],
    kernel: [i64; 2],
    stride: i64,
    dilation: [i64; 2],
    who: &str,
) -> Result<i64, OnnxError> {
    let pads = window_pads(cx, input_hw, kernel, [stride; 2], dilation)?;
    if pads.iter().any(|&p| p != pads[0]) {
        return Err(cx.attr_err(
            "pads",
            show(pads),
            &format!("Tessel's {who} every side equally"),
        ));
    }
    Ok(pads[0])
}

fn square(cx: &Cx, attr: &str, v: &[i64], what: &str) -> Result<i64, OnnxError> {
    match v {
        [a, b] if a == b => Ok(*a),
        _ => Err(cx.attr_err(
            attr,
            show(v),
            &format!("Tessel's layers take a 2-D {what} equal on both axes"),
        )),
    }
}

impl Importer {
    fn node(&mut self, node: &NodeProto, k: usize) -> Result<(), OnnxError> {
        let cx = Cx {
            node,
            name: node_name(node, k),
        };
        if !(node.domain.is_empty() || node.domain == "ai.onnx") {
            return Err(OnnxError::UnsupportedOperator {
                op: format!("{}::{}", node.domain, node.op_type),
                node: cx.name.clone(),
                opset: self.domains.get(&node.domain).copied().unwrap_or(0),
                detail: String::new(),
            });
        }
        let op = node.op_type.as_str();
        // Constants: computed now.
        if op == "Constant" {
            let c = self.constant(&cx)?;
            self.set(&cx, Val::Const(Rc::new(c)));
            return Ok(());
        }
        let all_const = node
            .input
            .iter()
            .filter(|i| !i.is_empty())
            .all(|i| matches!(self.vals.get(i), Some(Val::Const(_))));
        if op == "Shape" || (FOLDABLE.contains(&op) && all_const && !node.input.is_empty()) {
            let c = self.fold(&cx)?;
            self.set(&cx, Val::Const(Rc::new(c)));
            return Ok(());
        }
        let name = cx.name.clone();
        match op {
            "Identity" | "Dropout" => {
                if node.output.iter().skip(1).any(|o| !o.is_empty() && self.uses.contains_key(o)) {
                    return Err(cx.invalid("its mask output is used; only inference (identity) is supported"));
                }
                let v = self.input(&cx, 0)?.clone();
                self.set(&cx, v);
            }
            "Conv" => self.conv(&cx)?,
            "Erf" => {
                let a = self.act(&cx, 0)?;
                let id = self.add(&cx, &name, Layer::Erf, &[a.id])?;
                self.set(&cx, Val::Act(Act { id, ..a }));
            }
            "Relu" => {
                let a = self.act(&cx, 0)?;
                let id = self.add(&cx, &name, Layer::Relu, &[a.id])?;
                self.set(&cx, Val::Act(Act { id, ..a }));
            }
            "Clip" => self.clip(&cx)?,
            "MaxPool" => self.max_pool(&cx)?,
            "GlobalAveragePool" => {
                let a = self.as_nhwc(&cx, self.act(&cx, 0)?)?;
                let id = self.add(&cx, &name, Layer::GlobalAvgPool, &[a.id])?;
                let shape = vec![a.shape[0], a.shape[1], 1, 1];
                self.set(&cx, Val::Act(Act { id, shape, nhwc: true }));
            }
            "Flatten" => {
                let a = self.act(&cx, 0)?;
                let r = a.shape.len();
                let ax = tensor::axis(attr_i(node, "axis", 1), r + 1)
                    .ok_or_else(|| cx.attr_err("axis", attr_i(node, "axis", 1).to_string(), "out of range"))?;
                let outer: i64 = a.shape[..ax].iter().product();
                let inner: i64 = a.shape[ax..].iter().product();
                self.reshape_to(&cx, a, vec![outer, inner])?;
            }
            "Reshape" => {
                let a = self.act(&cx, 0)?;
                let target = self.konst(&cx, 1)?.to_i64();
                let allowzero = attr_i(node, "allowzero", 0) != 0;
                let shape = reshape_target(&a.shape, &target, allowzero)
                    .ok_or_else(|| cx.invalid(format!("cannot reshape {:?} to {target:?}", a.shape)))?;
                self.reshape_to(&cx, a, shape)?;
            }
            "Squeeze" | "Unsqueeze" => {
                let a = self.act(&cx, 0)?;
                let axes = if self.has_input(&cx, 1) {
                    self.konst(&cx, 1)?.to_i64()
                } else {
                    attr_ints(node, "axes").unwrap_or_default()
                };
                let shape = squeeze_shape(&a.shape, &axes, op == "Unsqueeze")
                    .ok_or_else(|| cx.attr_err("axes", show(&axes), &format!("do not fit shape {:?}", a.shape)))?;
                self.reshape_to(&cx, a, shape)?;
            }
            "Gemm" => self.gemm(&cx)?,
            "MatMul" => self.matmul(&cx)?,
            "Add" | "Sub" | "Mul" | "Div" => self.binary(&cx)?,
            "Softmax" => {
                let a = self.as_plain(&cx, self.act(&cx, 0)?)?;
                let r = a.shape.len();
                let default = if self.opset >= 13 { -1 } else { 1 };
                let ax = attr_i(node, "axis", default);
                let last = tensor::axis(ax, r) == Some(r - 1);
                if !(last || self.opset < 13 && tensor::axis(ax, r) == Some(1) && r == 2) {
                    return Err(cx.attr_err("axis", ax.to_string(), "Tessel's softmax is over the last axis"));
                }
                let n = a.shape[r - 1];
                let rows: i64 = a.shape[..r - 1].iter().product();
                let shape = a.shape.clone();
                let flat = self.view(&cx, &a, vec![rows, n])?;
                let id = self.add(&cx, &name, Layer::Softmax, &[flat])?;
                self.set(&cx, Val::Act(Act { id, shape, nhwc: false }));
            }
            "LayerNormalization" => {
                let a = self.as_plain(&cx, self.act(&cx, 0)?)?;
                let r = a.shape.len();
                let ax = attr_i(node, "axis", -1);
                if tensor::axis(ax, r) != Some(r - 1) {
                    return Err(cx.attr_err("axis", ax.to_string(), "Tessel's layer norm is over the last axis"));
                }
                let n = a.shape[r - 1];
                let gamma = self.konst(&cx, 1)?;
                let beta = if self.has_input(&cx, 2) {
                    self.konst(&cx, 2)?.to_f32()
                } else {
                    vec![0.0; n as usize]
                };
                if gamma.len() != n as usize || beta.len() != n as usize {
                    return Err(cx.invalid(format!("scale and bias must have {n} values")));
                }
                let eps = attr_f(node, "epsilon", 1e-5);
                let rows: i64 = a.shape[..r - 1].iter().product();
                let shape = a.shape.clone();
                let flat = self.view(&cx, &a, vec![rows, n])?;
                let id = self.add(&cx, &name, Layer::LayerNorm { eps }, &[flat])?;
                self.weight(id, "gamma", vec![n], gamma.to_f32())?;
                self.weight(id, "beta", vec![n], beta)?;
                self.set(&cx, Val::Act(Act { id, shape, nhwc: false }));
            }
            "Transpose" => {
                let a = self.act(&cx, 0)?;
                let r = a.shape.len();
                let perm: Vec<i64> = attr_ints(node, "perm").unwrap_or_else(|| (0..r as i64).rev().collect());
                let perm: Vec<usize> = perm
                    .iter()
                    .map(|&p| tensor::axis(p, r))
                    .collect::<Option<_>>()
                    .ok_or_else(|| cx.attr_err("perm", show(&perm), "not a permutation of the axes"))?;
                let shape: Vec<i64> = perm.iter().map(|&p| a.shape[p]).collect();
                // On an NHWC buffer, logical axis p is physical axis NCHW_TO_PHYS[p].
                let phys: Vec<usize> = if a.nhwc {
                    perm.iter().map(|&p| NCHW_TO_PHYS[p]).collect()
                } else {
                    perm.clone()
                };
                if phys.iter().enumerate().all(|(i, &p)| i == p) {
                    self.set(&cx, Val::Act(Act { id: a.id, shape, nhwc: false }));
                } else if !a.nhwc {
                    self.transpose_plain(&cx, a, &perm, shape)?;
                } else {
                    let id = self.add(&cx, &name, Layer::Transpose(phys), &[a.id])?;
                    self.set(&cx, Val::Act(Act { id, shape, nhwc: false }));
                }
            }
            "Cast" => {
                // Tessel holds every computed tensor (integer inputs too) as f32 values.
                let a = self.act(&cx, 0)?;
                let to = attr_i(node, "to", 1);
                if !matches!(to, 1) {
                    return Err(cx.attr_err(
                        "to",
                        tensor::type_name(to as i32),
                        "Tessel casts computed tensors to float only",
                    ));
                }
                self.set(&cx, Val::Act(a));
            }
            "HardSigmoid" => {
                let a = self.act(&cx, 0)?;
                let layer = Layer::HardSigmoid {
                    alpha: attr_f(node, "alpha", 0.2),
                    beta: attr_f(node, "beta", 0.5),
                };
                let id = self.add(&cx, &name, layer, &[a.id])?;
                self.set(&cx, Val::Act(Act { id, ..a }));
            }
            "Sigmoid" | "Tanh" => {
                let a = self.act(&cx, 0)?;
                let layer = if op == "Sigmoid" { Layer::Sigmoid } else { Layer::Tanh };
                let id = self.add(&cx, &name, layer, &[a.id])?;
                self.set(&cx, Val::Act(Act { id, ..a }));
            }
            "Gelu" => {
                let a = self.act(&cx, 0)?;
                let approx = attr_s(node, "approximate").unwrap_or_else(|| "none".into());
                let layer = match approx.as_str() {
                    "none" => Layer::GeluErf,
                    "tanh" => Layer::Gelu,
                    other => return Err(cx.attr_err("approximate", other, "expected none or tanh")),
                };
                let id = self.add(&cx, &name, layer, &[a.id])?;
                self.set(&cx, Val::Act(Act { id, ..a }));
            }
            "AveragePool" => self.avg_pool(&cx)?,
            "ConvTranspose" => self.conv_transpose(&cx)?,
            "Concat" => self.concat(&cx)?,
            "Slice" => self.slice(&cx)?,
            "Split" => self.split(&cx)?,
            "Gather" => self.gather(&cx)?,
            "ReduceMean" | "Pow" | "Sqrt" => {
                return Err(OnnxError::UnsupportedOperator {
                    op: op.into(),
                    node: name,
                    opset: self.opset,
                    detail: ": Tessel maps ReduceMean, Pow and Sqrt only as parts of a layer norm over the last axis in the form PyTorch exports it (ReduceMean, Sub, Pow 2, ReduceMean, Add eps, Sqrt, Div, then Mul gamma and Add beta)".into(),
                })
            }
            "BatchNormalization" => {
                return Err(OnnxError::UnsupportedOperator {
                    op: op.into(),
                    node: name,
                    opset: self.opset,
                    detail: ": only a BatchNormalization that reads a Conv with constant weights (and nothing else reads) is supported, folded into the conv".into(),
                })
            }
            _ => {
                return Err(OnnxError::UnsupportedOperator {
                    op: op.into(),
                    node: name,
                    opset: self.opset,
                    detail: String::new(),
                })
            }
        }
        Ok(())
    }

    /// A reshape view of `a` (its physical buffer) to `shape`; the same id when nothing
    /// changes.
    fn view(&mut self, cx: &Cx, a: &Act, shape: Vec<i64>) -> Result<LayerId, OnnxError> {
        if self.b.shape(a.id) == shape.as_slice() {
            return Ok(a.id);
        }
        let name = format!("{}.reshape", cx.name);
        self.add(cx, &name, Layer::Reshape(shape), &[a.id])
    }

    /// Reshapes an activation to the ONNX shape `shape` (row-major over ONNX axes): a view,
    /// after a transpose to NCHW when the activation is NHWC with both C and H·W above 1.
    fn reshape_to(&mut self, cx: &Cx, a: Act, shape: Vec<i64>) -> Result<(), OnnxError> {
        let a = if a.nhwc && a.shape[1] > 1 && a.shape[2] * a.shape[3] > 1 {
            self.as_plain(cx, a)?
        } else {
            Act { nhwc: false, ..a }
        };
        self.set(
            cx,
            Val::Act(Act {
                id: a.id,
                shape,
                nhwc: false,
            }),
        );
        Ok(())
    }

    /// The shape of the buffer that holds `a`.
    fn phys(&self, a: &Act) -> Vec<i64> {
        self.b.shape(a.id).to_vec()
    }

    /// A plain activation whose layer has its ONNX shape (a view when it has another).
    fn materialize(&mut self, cx: &Cx, a: Act) -> Result<Act, OnnxError> {
        let a = self.as_plain(cx, a)?;
        let id = self.view(cx, &a, a.shape.clone())?;
        Ok(Act { id, ..a })
    }

    /// An NHWC activation as a plain (NCHW) one, by a transpose layer.
    fn as_plain(&mut self, cx: &Cx, a: Act) -> Result<Act, OnnxError> {
        if !a.nhwc {
            return Ok(a);
        }
        let name = format!("{}.to_nchw", cx.name);
        let id = self.add(cx, &name, Layer::Transpose(vec![0, 3, 1, 2]), &[a.id])?;
        self.layout.push(format!(
            "node `{}` ({}): transpose NHWC -> NCHW of {} inserted before it",
            cx.name,
            cx.node.op_type,
            join_x(&a.shape)
        ));
        Ok(Act {
            id,
            shape: a.shape,
            nhwc: false,
        })
    }

    /// A 4-D plain (NCHW) activation as NHWC, by a transpose layer.
    fn as_nhwc(&mut self, cx: &Cx, a: Act) -> Result<Act, OnnxError> {
        if a.nhwc {
            return Ok(a);
        }
        if a.shape.len() != 4 {
            return Err(cx.invalid(format!("needs a 4-D NCHW input, got shape {:?}", a.shape)));
        }
        let a = self.materialize(cx, a)?;
        let name = format!("{}.to_nhwc", cx.name);
        let id = self.add(cx, &name, Layer::Transpose(vec![0, 2, 3, 1]), &[a.id])?;
        self.layout.push(format!(
            "node `{}` ({}): transpose NCHW -> NHWC of {} inserted before it",
            cx.name,
            cx.node.op_type,
            join_x(&a.shape)
        ));
        Ok(Act {
            id,
            shape: a.shape,
            nhwc: true,
        })
    }

    fn constant(&self, cx: &Cx) -> Result<Const, OnnxError> {
        let a = cx
            .node
            .attribute
            .first()
            .ok_or_else(|| cx.invalid("has no value"))?;
        Ok(match a.name.as_str() {
            "value" => {
                let t: &TensorProto =
                    a.t.as_ref()
                        .ok_or_else(|| cx.invalid("value is not a tensor"))?;
                tensor::from_proto(t).map_err(|e| cx.invalid(e))?
            }
            "value_float" => Const::floats(vec![], vec![a.f]),
            "value_floats" => Const::floats(vec![a.floats.len() as i64], a.floats.clone()),
            "value_int" => Const::ints(vec![], vec![a.i]),
            "value_ints" => Const::ints(vec![a.ints.len() as i64], a.ints.clone()),
            other => {
                return Err(cx.attr_err(other, "", "a Constant of this kind is not supported"))
            }
        })
    }

    /// Computes a node whose inputs are all constants (and `Shape` of anything).
    fn fold(&self, cx: &Cx) -> Result<Const, OnnxError> {
        let node = cx.node;
        let op = node.op_type.as_str();
        let bad = |what: &str| cx.invalid(format!("cannot compute at import: {what}"));
        Ok(match op {
            "Shape" => {
                let shape = match self.input(cx, 0)? {
                    Val::Act(a) => a.shape.clone(),
                    Val::Const(c) => c.shape.clone(),
                };
                let r = shape.len() as i64;
                let clampi = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
                let s = clampi(attr_i(node, "start", 0));
                let e = clampi(attr_i(node, "end", r));
                let v = shape[s..e.max(s)].to_vec();
                Const::ints(vec![v.len() as i64], v)
            }
            "Identity" => (*self.konst(cx, 0)?).clone(),
            "Cast" => {
                let c = self.konst(cx, 0)?;
                match attr_i(node, "to", 1) {
                    1 | 11 => Const::floats(c.shape.clone(), c.to_f32()),
                    2..=7 | 9 | 12 | 13 => Const::ints(c.shape.clone(), c.to_i64()),
                    t => {
                        return Err(cx.attr_err(
                            "to",
                            tensor::type_name(t as i32),
                            "unsupported cast target",
                        ))
                    }
                }
            }
            "Gather" => {
                let (d, i) = (self.konst(cx, 0)?, self.konst(cx, 1)?);
                let ax = tensor::axis(attr_i(node, "axis", 0), d.shape.len())
                    .ok_or_else(|| bad("axis out of range"))?;
                tensor::gather(&d, &i, ax).ok_or_else(|| bad("index out of range"))?
            }
            "Unsqueeze" | "Squeeze" => {
                let c = self.konst(cx, 0)?;
                let axes = if self.has_input(cx, 1) {
                    self.konst(cx, 1)?.to_i64()
                } else {
                    attr_ints(node, "axes").unwrap_or_default()
                };
                let shape = squeeze_shape(&c.shape, &axes, op == "Unsqueeze")
                    .ok_or_else(|| bad("axes do not fit the shape"))?;
                c.reshaped(shape)
            }
            "Concat" => {
                let parts: Vec<Const> = (0..node.input.len())
                    .filter(|&k| self.has_input(cx, k))
                    .map(|k| self.konst(cx, k).map(|c| (*c).clone()))
                    .collect::<Result<_, _>>()?;
                let r = parts.first().map_or(0, |p| p.shape.len());
                let ax = tensor::axis(attr_i(node, "axis", 0), r)
                    .ok_or_else(|| bad("axis out of range"))?;
                tensor::concat(&parts, ax).ok_or_else(|| bad("shapes do not concatenate"))?
            }
            "Reshape" => {
                let c = self.konst(cx, 0)?;
                let t = self.konst(cx, 1)?.to_i64();
                let shape = reshape_target(&c.shape, &t, attr_i(node, "allowzero", 0) != 0)
                    .ok_or_else(|| bad("bad target shape"))?;
                c.reshaped(shape)
            }
            "Flatten" => {
                let c = self.konst(cx, 0)?;
                let ax = tensor::axis(attr_i(node, "axis", 1), c.shape.len() + 1)
                    .ok_or_else(|| bad("axis"))?;
                let o: i64 = c.shape[..ax].iter().product();
                let i: i64 = c.shape[ax..].iter().product();
                c.reshaped(vec![o, i])
            }
            "Add" | "Sub" | "Mul" | "Div" => {
                let (a, b) = (self.konst(cx, 0)?, self.konst(cx, 1)?);
                tensor::binary(op, &a, &b)
                    .ok_or_else(|| bad("shapes do not broadcast (or division by zero)"))?
            }
            "Slice" => {
                let c = self.konst(cx, 0)?;
                let get = |k: usize, default: i64| -> Result<i64, OnnxError> {
                    if self.has_input(cx, k) {
                        let v = self.konst(cx, k)?.to_i64();
                        v.first()
                            .copied()
                            .ok_or_else(|| bad("empty slice parameter"))
                    } else {
                        Ok(default)
                    }
                };
                let (s, e) = if self.opset >= 10 {
                    (get(1, 0)?, get(2, i64::MAX)?)
                } else {
                    let s = attr_ints(node, "starts")
                        .and_then(|v| v.first().copied())
                        .unwrap_or(0);
                    let e = attr_ints(node, "ends")
                        .and_then(|v| v.first().copied())
                        .unwrap_or(i64::MAX);
                    (s, e)
                };
                let step = if self.opset >= 10 { get(4, 1)? } else { 1 };
                tensor::slice_1d(&c, s, e, step)
                    .ok_or_else(|| bad("only 1-D constant slices are computed"))?
            }
            "ConstantOfShape" => {
                let shape = self.konst(cx, 0)?.to_i64();
                let n: i64 = shape.iter().product();
                let value = attr(node, "value")
                    .and_then(|a| a.t.as_ref())
                    .map(tensor::from_proto)
                    .transpose()
                    .map_err(|e| cx.invalid(e))?
                    .unwrap_or_else(|| Const::floats(vec![1], vec![0.0]));
                match value.data {
                    Data::F(v) => {
                        Const::floats(shape, vec![v.first().copied().unwrap_or(0.0); n as usize])
                    }
                    Data::I(v) => {
                        Const::ints(shape, vec![v.first().copied().unwrap_or(0); n as usize])
                    }
                }
            }
            "Transpose" => {
                let c = self.konst(cx, 0)?;
                let r = c.shape.len();
                let perm: Vec<usize> = attr_ints(node, "perm")
                    .unwrap_or_else(|| (0..r as i64).rev().collect())
                    .iter()
                    .map(|&p| tensor::axis(p, r))
                    .collect::<Option<_>>()
                    .ok_or_else(|| bad("bad perm"))?;
                tensor::transpose(&c, &perm)
            }
            _ => return Err(bad("no constant rule")),
        })
    }

    fn conv(&mut self, cx: &Cx) -> Result<(), OnnxError> {
        let node = cx.node;
        let a = self.as_nhwc(cx, self.act(cx, 0)?)?;
        let w = self.konst(cx, 1)?;
        let bias = if self.has_input(cx, 2) {
            Some(self.konst(cx, 2)?)
        } else {
            None
        };
        if w.shape.len() != 4 {
            return Err(cx.invalid(format!(
                "only 2-D convolutions are supported; the weight has shape {:?}",
                w.shape
            )));
        }
        let (co, cig, kh, kw) = (w.shape[0], w.shape[1], w.shape[2], w.shape[3]);
        let ci = a.shape[1];
        let group = attr_i(node, "group", 1);
        let ks = attr_ints(node, "kernel_shape").unwrap_or_else(|| vec![kh, kw]);
        if ks != [kh, kw] {
            return Err(cx.attr_err("kernel_shape", show(&ks), "does not match the weight"));
        }
        let kernel = square(cx, "kernel_shape", &ks, "kernel")?;
        let strides = attr_ints(node, "strides").unwrap_or_else(|| vec![1, 1]);
        let stride = square(cx, "strides", &strides, "stride")?;
        let dil = attr_ints(node, "dilations").unwrap_or_else(|| vec![1, 1]);
        let dilation = square(cx, "dilations", &dil, "dilation")?;
        if dilation < 1 {
            return Err(cx.attr_err("dilations", show(&dil), "a dilation is at least 1"));
        }
        let pad = equal_window_pad(
            cx,
            [a.shape[2], a.shape[3]],
            [kh, kw],
            stride,
            [dilation; 2],
            "convolution layers pad",
        )?;
        let (layer, param, wshape, wdata) = if group == 1 {
            if cig != ci {
                return Err(cx.invalid(format!(
                    "weight {:?} does not fit {ci} input channels",
                    w.shape
                )));
            }
            // (CO, CI, kh, kw) -> (kh, kw, CI, CO)
            (
                Layer::Conv2d {
                    out_channels: co,
                    kernel,
                    stride,
                    pad,
                    dilation,
                    groups: 1,
                },
                "weight",
                vec![kh, kw, ci, co],
                tensor::oihw_to_hwio(&w),
            )
        } else if group == ci && co == ci && cig == 1 && dilation == 1 {
            // (C, 1, kh, kw) -> (1, kh, kw, C): the same loop with I = 1.
            (
                Layer::DepthwiseConv2d {
                    kernel,
                    stride,
                    pad,
                },
                "placeholder",
                vec![1, kh, kw, co],
                tensor::oihw_to_hwio(&w),
            )
        } else if group > 1 && ci % group == 0 && co % group == 0 && cig * group == ci {
            // (CO, CI/g, kh, kw) -> (kh, kw, CI/g, CO): output channels grouped contiguously,
            // as the grouped convolution layer reads them.
            (
                Layer::Conv2d {
                    out_channels: co,
                    kernel,
                    stride,
                    pad,
                    dilation,
                    groups: group,
                },
                "weight",
                vec![kh, kw, cig, co],
                tensor::oihw_to_hwio(&w),
            )
        } else {
            return Err(cx.attr_err(
                "group",
                group.to_string(),
                &format!(
                    "the weight {:?} does not split {ci} input and {co} output channels into {group} equal groups",
                    w.shape
                ),
            ));
        };
        let name = cx.name.clone();
        let id = self.add(cx, &name, layer, &[a.id])?;
        self.weight(id, param, wshape, wdata)?;
        self.finish_conv(cx, &name, id, co, bias)
    }

    /// The end of a (transposed) convolution `id` named `name` with `co` outputs: its bias,
    /// if any, as a `BiasAdd` layer, and the NHWC activation set as the node's output.
    fn finish_conv(
        &mut self,
        cx: &Cx,
        name: &str,
        id: LayerId,
        co: i64,
        bias: Option<Rc<Const>>,
    ) -> Result<(), OnnxError> {
        let mut out = id;
        if let Some(b) = bias {
            if b.len() != co as usize {
                return Err(cx.invalid(format!(
                    "bias has {} values, the convolution {co} outputs",
                    b.len()
                )));
            }
            out = self.add(cx, &format!("{name}.bias"), Layer::BiasAdd, &[id])?;
            self.weight(out, "bias", vec![co], b.to_f32())?;
        }
        self.set_nhwc(cx, out);
        Ok(())
    }

    /// Sets the node's output to layer `id`, held NHWC (its ONNX shape the NCHW one).
    fn set_nhwc(&mut self, cx: &Cx, id: LayerId) {
        let s = self.b.shape(id);
        let shape = vec![s[0], s[3], s[1], s[2]];
        self.set(
            cx,
            Val::Act(Act {
                id,
                shape,
                nhwc: true,
            }),
        );
    }

    fn clip(&mut self, cx: &Cx) -> Result<(), OnnxError> {
        let a = self.act(cx, 0)?;
        let bound = |k: usize, at: &str, default: f32| -> Result<f32, OnnxError> {
            if self.opset >= 11 {
                if self.has_input(cx, k) {
                    self.konst(cx, k)?
                        .scalar_f32()
                        .ok_or_else(|| cx.attr_err(at, "a tensor", "must be a scalar"))
                } else {
                    Ok(default)
                }
            } else {
                Ok(attr(cx.node, at).map_or(default, |a| a.f))
            }
        };
        let lo = bound(1, "min", f32::NEG_INFINITY)?;
        let hi = bound(2, "max", f32::INFINITY)?;
        let layer = if lo == 0.0 && hi == 6.0 {
            Layer::Relu6
        } else if lo == 0.0 && hi == f32::INFINITY {
            Layer::Relu
        } else {
            return Err(cx.attr_err(
                "min/max",
                format!("({lo}, {hi})"),
                "Tessel maps Clip(0, 6) (ReLU6) and Clip(0, inf) (ReLU)",
            ));
        };
        let name = cx.name.clone();
        let id = self.add(cx, &name, layer, &[a.id])?;
        self.set(cx, Val::Act(Act { id, ..a }));
        Ok(())
    }

    fn max_pool(&mut self, cx: &Cx) -> Result<(), OnnxError> {
        let node = cx.node;
        if node
            .output
            .iter()
            .skip(1)
            .any(|o| !o.is_empty() && self.uses.contains_key(o))
        {
            return Err(cx.invalid("its indices output is used; Tessel's max pool has none"));
        }
        let a = self.as_nhwc(cx, self.act(cx, 0)?)?;
        let ks =
            attr_ints(node, "kernel_shape").ok_or_else(|| cx.invalid("has no kernel_shape"))?;
        let kernel = square(cx, "kernel_shape", &ks, "window")?;
        let strides = attr_ints(node, "strides").unwrap_or_else(|| vec![1, 1]);
        let stride = square(cx, "strides", &strides, "stride")?;
        let dil = attr_ints(node, "dilations").unwrap_or_else(|| vec![1, 1]);
        if dil.iter().any(|&d| d != 1) {
            return Err(cx.attr_err("dilations", show(&dil), "Tessel's max pool has dilation 1"));
        }
        if attr_i(node, "ceil_mode", 0) != 0 {
            return Err(cx.attr_err(
                "ceil_mode",
                "1",
                "Tessel's max pool rounds the output size down",
            ));
        }
        if attr_i(node, "storage_order", 0) != 0 {
            return Err(cx.attr_err("storage_order", "1", "only row-major indices"));
        }
        let pad = equal_window_pad(
            cx,
            [a.shape[2], a.shape[3]],
            [kernel; 2],
            stride,
            [1, 1],
            "max pool pads",
        )?;
        let name = cx.name.clone();
        let id = self.add(
            cx,
            &name,
            Layer::MaxPool2d {
                kernel,
                stride,
                pad,
            },
            &[a.id],
        )?;
        self.set_nhwc(cx, id);
        Ok(())
    }

    fn gemm(&mut self, cx: &Cx) -> Result<(), OnnxError> {
        let node = cx.node;
        let a = self.act(cx, 0)?;
        if a.shape.len() != 2 {
            return Err(cx.invalid(format!("A must be 2-D, got {:?}", a.shape)));
        }
        let a = self.materialize(cx, a)?;
        if attr_i(node, "transA", 0) != 0 {
            return Err(cx.attr_err("transA", "1", "Tessel's dense layer reads A as is"));
        }
        let b = self.konst(cx, 1)?;
        if b.shape.len() != 2 {
            return Err(cx.invalid(format!("B must be a 2-D constant, got {:?}", b.shape)));
        }
        // Dense weight is (units, in).
        let w = if attr_i(node, "transB", 0) != 0 {
            b
        } else {
            Rc::new(tensor::transpose(&b, &[1, 0]))
        };
        let (units, inn) = (w.shape[0], w.shape[1]);
        if inn != a.shape[1] {
            return Err(cx.invalid(format!(
                "A {:?} and B {:?} do not multiply",
                a.shape, w.shape
            )));
        }
        let alpha = attr_f(node, "alpha", 1.0);
        let beta = attr_f(node, "beta", 1.0);
        let bias = if self.has_input(cx, 2) {
            let c = self.konst(cx, 2)?;
            let v = c.to_f32();
            if c.len() == units as usize {
                v
            } else if c.len() == 1 {
                vec![v[0]; units as usize]
            } else {
                return Err(cx.invalid(format!(
                    "C of shape {:?} is not a bias over the {units} outputs",
                    c.shape
                )));
            }
        } else {
            vec![0.0; units as usize]
        };
        let name = cx.name.clone();
        let id = self.add(cx, &name, Layer::Dense { units }, &[a.id])?;
        let wv: Vec<f32> = w.to_f32().into_iter().map(|x| x * alpha).collect();
        self.weight(id, "weight", vec![units, inn], wv)?;
        self.weight(
            id,
            "bias",
            vec![units],
            bias.into_iter().map(|x| x * beta).collect(),
        )?;
        self.set(
            cx,
            Val::Act(Act {
                id,
                shape: vec![a.shape[0], units],
                nhwc: false,
            }),
        );
        Ok(())
    }

    fn matmul(&mut self, cx: &Cx) -> Result<(), OnnxError> {
        let a = self.as_plain(cx, self.act(cx, 0)?)?;
        let name = cx.name.clone();
        match self.input(cx, 1)?.clone() {
            Val::Const(b) => {
                if b.shape.len() != 2 || a.shape.last() != b.shape.first() {
                    return Err(cx.invalid(format!(
                        "{:?} x {:?}: Tessel maps a MatMul by a constant 2-D matrix (K, N)",
                        a.shape, b.shape
                    )));
                }
                let (kk, units) = (b.shape[0], b.shape[1]);
                let rows: i64 = a.shape[..a.shape.len() - 1].iter().product();
                let flat = self.view(cx, &a, vec![rows, kk])?;
                let id = self.add(cx, &name, Layer::Dense { units }, &[flat])?;
                let w = tensor::transpose(&b, &[1, 0]);
                self.weight(id, "weight", vec![units, kk], w.to_f32())?;
                self.weight(id, "bias", vec![units], vec![0.0; units as usize])?;
                let mut shape = a.shape.clone();
                *shape.last_mut().unwrap_or(&mut 0) = units;
                let lname = self.b_name(id);
                self.matmul_dense.insert(id, lname);
                self.set(
                    cx,
                    Val::Act(Act {
                        id,
                        shape,
                        nhwc: false,
                    }),
                );
            }
            Val::Act(b) => {
                let b = self.as_plain(cx, b)?;
                let (ra, rb) = (a.shape.len(), b.shape.len());
                if ra < 3
                    || ra != rb
                    || a.shape[..ra - 2] != b.shape[..rb - 2]
                    || a.shape[ra - 1] != b.shape[rb - 2]
                {
                    return Err(cx.invalid(format!(
                        "{:?} x {:?}: Tessel maps a MatMul of two computed tensors as a batch matmul of equal batch shapes",
                        a.shape, b.shape
                    )));
                }
                let batch: i64 = a.shape[..ra - 2].iter().product();
                let (n, kk, m) = (a.shape[ra - 2], a.shape[ra - 1], b.shape[rb - 1]);
                let x = self.view(cx, &a, vec![batch, n, kk])?;
                let y = self.view(cx, &b, vec![batch, kk, m])?;
                let id = self.add(cx, &name, Layer::BatchMatmul, &[x, y])?;
                let mut shape = a.shape.clone();
                shape[ra - 1] = m;
                self.set(
                    cx,
                    Val::Act(Act {
                        id,
                        shape,
                        nhwc: false,
                    }),
                );
            }
        }
        Ok(())
    }

    fn binary(&mut self, cx: &Cx) -> Result<(), OnnxError> {
        let op = cx.node.op_type.as_str();
        let name = cx.name.clone();
        let (x, y) = (self.input(cx, 0)?.clone(), self.input(cx, 1)?.clone());
        match (x, y) {
            (Val::Act(a), Val::Act(b)) => {
                if a.shape != b.shape || (op != "Add" && op != "Mul") {
                    return self.broadcast(cx, a, b);
                }
                let (a, b) = if a.nhwc == b.nhwc {
                    (a, b)
                } else {
                    (self.as_nhwc(cx, a)?, self.as_nhwc(cx, b)?)
                };
                // Plain buffers of one ONNX shape hold the same row-major data: view the
                // second as the first's layer shape.
                let b = if self.phys(&a) == self.phys(&b) {
                    b
                } else {
                    let pa = self.phys(&a);
                    let id = self.view(cx, &b, pa)?;
                    Act { id, ..b }
                };
                // Fusion joins an add to its first input's task: put first the operand
                // that only this add reads.
                let (a, b) = if self.uses_of(cx, 0) > 1 && self.uses_of(cx, 1) == 1 {
                    (b, a)
                } else {
                    (a, b)
                };
                let layer = if op == "Add" { Layer::Add } else { Layer::Mul };
                let id = self.add(cx, &name, layer, &[a.id, b.id])?;
                self.set(cx, Val::Act(Act { id, ..a }));
            }
            (Val::Act(a), Val::Const(c)) => self.act_const(cx, a, &c, false)?,
            (Val::Const(c), Val::Act(a)) => self.act_const(cx, a, &c, true)?,
            (Val::Const(_), Val::Const(_)) => {
                return Err(cx.invalid("both inputs are constants but could not be computed"))
            }
        }
        Ok(())
    }

    /// `x (op) y` of two computed tensors of different shapes (or `Sub` / `Div` of equal
    /// ones): one broadcasts to the other's shape (numpy rules), a [`Layer::Broadcast`]
    /// whose first input is the larger operand, in its own layout; the smaller is viewed
    /// in that layout (NHWC for an NHWC operand, else the larger's buffer shape when the
    /// broadcast fits it, so that the layer reads its producer's output directly and fuses
    /// with it as the built-in networks' epilogues do).
    fn broadcast(&mut self, cx: &Cx, x: Act, y: Act) -> Result<(), OnnxError> {
        let name = cx.name.clone();
        let op = match cx.node.op_type.as_str() {
            "Add" => BinaryOp::Add,
            "Sub" => BinaryOp::Sub,
            "Mul" => BinaryOp::Mul,
            _ => BinaryOp::Div,
        };
        let Some(out) = tensor::broadcast_shape(&x.shape, &y.shape) else {
            return Err(cx.invalid(format!(
                "the shapes {:?} and {:?} do not broadcast",
                x.shape, y.shape
            )));
        };
        let (a, b, reversed) = if out == x.shape {
            (x, y, false)
        } else if out == y.shape {
            (y, x, matches!(op, BinaryOp::Sub | BinaryOp::Div))
        } else {
            return Err(OnnxError::UnsupportedOperator {
                op: cx.node.op_type.clone(),
                node: name,
                opset: self.opset,
                detail: format!(
                    ": broadcasting {:?} and {:?} gives {out:?}, larger than both (Tessel broadcasts one computed operand to the other's shape)",
                    x.shape, y.shape
                ),
            });
        };
        // The smaller operand's shape with leading ones up to the larger's rank.
        let padded: Vec<i64> = std::iter::repeat_n(1, a.shape.len() - b.shape.len())
            .chain(b.shape.iter().copied())
            .collect();
        let (a, b, target) = if a.nhwc {
            // The larger is an NHWC buffer: the smaller must be laid out NHWC too (a plain
            // tensor already is when its C or its H·W is 1).
            let b = if b.nhwc || padded[1] == 1 || padded[2] * padded[3] == 1 {
                b
            } else {
                self.as_nhwc(
                    cx,
                    Act {
                        shape: padded.clone(),
                        ..b
                    },
                )?
            };
            (a, b, to_nhwc_shape(&padded))
        } else {
            let b = if b.nhwc && b.shape[1] > 1 && b.shape[2] * b.shape[3] > 1 {
                self.as_plain(cx, b)?
            } else {
                b
            };
            let pa = self.phys(&a);
            match fit_broadcast(&a.shape, &pa, &padded) {
                Some(t) => (a, b, t),
                None => {
                    let a = self.materialize(cx, a)?;
                    (a, b, padded)
                }
            }
        };
        let bid = self.view(cx, &b, target)?;
        let id = self.add(cx, &name, Layer::Broadcast { op, reversed }, &[a.id, bid])?;
        self.set(cx, Val::Act(Act { id, ..a }));
        Ok(())
    }

    /// `a (op) c` (or `c (op) a` when `swapped`) with `c` constant.
    fn act_const(&mut self, cx: &Cx, a: Act, c: &Const, swapped: bool) -> Result<(), OnnxError> {
        let op = cx.node.op_type.as_str();
        let name = cx.name.clone();
        let unsupported = |what: &str| OnnxError::UnsupportedOperator {
            op: op.into(),
            node: cx.name.clone(),
            opset: self.opset,
            detail: format!(": {what}"),
        };
        if tensor::broadcast_shape(&a.shape, &c.shape).as_deref() != Some(&a.shape[..]) {
            return Err(cx.invalid(format!(
                "the constant of shape {:?} would broadcast {:?} to a larger shape",
                c.shape, a.shape
            )));
        }
        match op {
            "Mul" | "Div" => {
                let Some(v) = c.scalar_f32() else {
                    return Err(unsupported("by a constant that is not a single value"));
                };
                if op == "Div" && swapped {
                    return Err(unsupported("of a constant by a computed tensor"));
                }
                let v = if op == "Div" { 1.0 / v } else { v };
                let id = self.add(cx, &name, Layer::Scale(v), &[a.id])?;
                self.set(cx, Val::Act(Act { id, ..a }));
            }
            _ => {
                // Add / Sub of a per-channel (or single) constant: a bias. `c - a` is
                // `(-a) + c`.
                let (a, op) = if op == "Sub" && swapped {
                    let id =
                        self.add(cx, &format!("{name}.negate"), Layer::Scale(-1.0), &[a.id])?;
                    (Act { id, ..a }, "Add")
                } else {
                    (a, op)
                };
                let a = if !a.nhwc && self.phys(&a).last() != a.shape.last() {
                    self.materialize(cx, a)?
                } else {
                    a
                };
                let channels = *self.phys(&a).last().unwrap_or(&1);
                // The constant's axis that the bias runs along: NCHW channel or last.
                let chan_axis = if a.nhwc { 1 } else { a.shape.len() - 1 };
                let r = a.shape.len();
                let padded: Vec<i64> = std::iter::repeat_n(1, r - c.shape.len())
                    .chain(c.shape.iter().copied())
                    .collect();
                let per_channel = padded
                    .iter()
                    .enumerate()
                    .all(|(i, &d)| d == 1 || i == chan_axis);
                if !per_channel {
                    return self.add_const(cx, a, c, op == "Sub");
                }
                let mut v = c.to_f32();
                if v.len() == 1 {
                    v = vec![v[0]; channels as usize];
                }
                if op == "Sub" {
                    v.iter_mut().for_each(|x| *x = -*x);
                }
                // A MatMul's dense layer takes the bias itself.
                if let Some(dense) = self.matmul_dense.get(&a.id).cloned() {
                    if self.uses_of(cx, if swapped { 1 } else { 0 }) == 1 {
                        if let Some(old) = self.weights.get(&dense, "bias").cloned() {
                            if old.data.len() == v.len() {
                                let data = old.data.iter().zip(&v).map(|(p, q)| p + q).collect();
                                self.weights.insert(
                                    &dense,
                                    "bias",
                                    ConstTensor::new(old.shape.clone(), data)?,
                                );
                                self.matmul_dense.remove(&a.id);
                                self.set(cx, Val::Act(a));
                                return Ok(());
                            }
                        }
                    }
                }
                let id = self.add(cx, &name, Layer::BiasAdd, &[a.id])?;
                self.weight(id, "bias", vec![channels], v)?;
                self.set(cx, Val::Act(Act { id, ..a }));
            }
        }
        Ok(())
    }
}

/// The shape that `b` (of `a`'s rank, each extent 1 or `a`'s) takes in the frame of `phys`,
/// a buffer shape holding `a` row-major (a regrouping of its axes): each axis of `phys` spans
/// a range of row-major strides; where the axes of `a` it overlaps are all broadcast in `b`
/// it is 1, where they are all kept it is `phys`'s extent. `None` when an axis of `phys`
/// mixes both (`b` is then no broadcast of that frame).
fn fit_broadcast(a: &[i64], phys: &[i64], b: &[i64]) -> Option<Vec<i64>> {
    if a == phys {
        return Some(b.to_vec());
    }
    let ranges = |s: &[i64]| {
        let mut stride = 1;
        let mut r = vec![(0, 0); s.len()];
        for k in (0..s.len()).rev() {
            r[k] = (stride, stride * s[k]);
            stride *= s[k];
        }
        r
    };
    let (ra, rp) = (ranges(a), ranges(phys));
    phys.iter()
        .zip(&rp)
        .map(|(&p, &(lo, hi))| {
            let mut kept = None;
            for (i, &(l, h)) in ra.iter().enumerate() {
                if a[i] > 1 && l.max(lo) < h.min(hi) {
                    let k = b[i] != 1;
                    if kept.is_some_and(|j| j != k) {
                        return None;
                    }
                    kept = Some(k);
                }
            }
            Some(if kept == Some(true) { p } else { 1 })
        })
        .collect()
}

/// The shape of ONNX `Reshape` (`0` copies the input's extent unless `allowzero`, `-1` is
/// inferred).
fn reshape_target(from: &[i64], target: &[i64], allowzero: bool) -> Option<Vec<i64>> {
    let total: i64 = from.iter().product();
    let mut out: Vec<i64> = target
        .iter()
        .enumerate()
        .map(|(i, &d)| {
            if d == 0 && !allowzero {
                from.get(i).copied().unwrap_or(0)
            } else {
                d
            }
        })
        .collect();
    let unknown: Vec<usize> = out
        .iter()
        .enumerate()
        .filter(|(_, &d)| d == -1)
        .map(|(i, _)| i)
        .collect();
    match unknown.as_slice() {
        [] => {}
        [i] => {
            let known: i64 = out.iter().filter(|&&d| d != -1).product();
            if known == 0 || total % known != 0 {
                return None;
            }
            out[*i] = total / known;
        }
        _ => return None,
    }
    (out.iter().all(|&d| d > 0) && out.iter().product::<i64>() == total).then_some(out)
}

/// The shape after `Unsqueeze` (`insert`) or `Squeeze` of `axes` (all 1-extents when empty).
fn squeeze_shape(shape: &[i64], axes: &[i64], insert: bool) -> Option<Vec<i64>> {
    if insert {
        let r = shape.len() + axes.len();
        let mut ax: Vec<usize> = axes
            .iter()
            .map(|&a| tensor::axis(a, r))
            .collect::<Option<_>>()?;
        ax.sort();
        ax.dedup();
        if ax.len() != axes.len() {
            return None;
        }
        let mut it = shape.iter();
        Some(
            (0..r)
                .map(|i| {
                    if ax.contains(&i) {
                        1
                    } else {
                        *it.next().unwrap_or(&1)
                    }
                })
                .collect(),
        )
    } else {
        let r = shape.len();
        let ax: Vec<usize> = axes
            .iter()
            .map(|&a| tensor::axis(a, r))
            .collect::<Option<_>>()?;
        if ax.iter().any(|&i| shape[i] != 1) {
            return None;
        }
        Some(
            shape
                .iter()
                .enumerate()
                .filter(|(i, &d)| {
                    if ax.is_empty() {
                        d != 1
                    } else {
                        !ax.contains(i)
                    }
                })
                .map(|(_, &d)| d)
                .collect(),
        )
    }
}

/// ONNX `Slice` bounds on an axis of extent `d`: the first index and the number of
/// elements (0 when empty).
fn slice_bounds(d: i64, start: i64, end: i64, step: i64) -> (i64, i64) {
    let norm = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
    let (s, e) = (norm(start), norm(end));
    if step > 0 {
        let (s, e) = (s.clamp(0, d), e.clamp(0, d));
        (s, ((e - s).max(0) + step - 1) / step)
    } else {
        let (s, e) = (s.clamp(0, d - 1), e.clamp(-1, d - 1));
        (s, ((s - e).max(0) + (-step) - 1) / (-step))
    }
}

impl Importer {
    /// Sets output `k` of the node.
    fn set_output(&mut self, cx: &Cx, k: usize, v: Val) {
        if let Some(o) = cx.node.output.get(k).filter(|o| !o.is_empty()) {
            self.vals.insert(o.clone(), v);
        }
    }

    /// A transpose of a plain activation: attention's head split (`[0, 2, 1, 3]` or
    /// `[0, 2, 3, 1]` of `(batch, seq, heads, dim)`) and head merge (`[0, 2, 1, 3]` of a batch
    /// matmul's `(batch, heads, seq, dim)`) become the built-in BERT's layers, so that they
    /// fuse the same way; any other permutation is a transpose layer.
    fn transpose_plain(
        &mut self,
        cx: &Cx,
        a: Act,
        perm: &[usize],
        shape: Vec<i64>,
    ) -> Result<(), OnnxError> {
        let name = cx.name.clone();
        let s = a.shape.clone();
        let heads_perm = perm == [0, 2, 1, 3] || perm == [0, 2, 3, 1];
        let id = if s.len() == 4 && heads_perm {
            if perm == [0, 2, 1, 3] && self.phys(&a) == [s[0] * s[1], s[2], s[3]] {
                self.add(cx, &name, Layer::MergeHeads { heads: s[1] }, &[a.id])?
            } else {
                let flat = self.view(cx, &a, vec![s[0] * s[1], s[2] * s[3]])?;
                let layer = Layer::SplitHeads {
                    heads: s[2],
                    seq: s[1],
                    transpose: perm[3] == 1,
                };
                self.add(cx, &name, layer, &[flat])?
            }
        } else {
            let a = self.materialize(cx, a)?;
            self.add(cx, &name, Layer::Transpose(perm.to_vec()), &[a.id])?
        };
        self.set(
            cx,
            Val::Act(Act {
                id,
                shape,
                nhwc: false,
            }),
        );
        Ok(())
    }

    /// `a + c` (`a - c` when `negate`) for a constant `c` that broadcasts to `a`'s shape but
    /// is not per channel (position embeddings): an [`Layer::AddConst`] with `c` expanded.
    fn add_const(&mut self, cx: &Cx, a: Act, c: &Const, negate: bool) -> Result<(), OnnxError> {
        let n: i64 = a.shape.iter().product();
        let zeros = Const::floats(a.shape.clone(), vec![0.0; n as usize]);
        let full = tensor::binary("Add", &zeros, c).ok_or_else(|| {
            cx.invalid(format!("{:?} does not broadcast to {:?}", c.shape, a.shape))
        })?;
        let full = if a.nhwc {
            tensor::transpose(&full, &[0, 2, 3, 1])
        } else {
            full
        };
        let mut data = full.to_f32();
        if negate {
            data.iter_mut().for_each(|x| *x = -*x);
        }
        let name = cx.name.clone();
        let id = self.add(cx, &name, Layer::AddConst, &[a.id])?;
        let phys = self.phys(&a);
        self.weight(id, "constant", phys, data)?;
        self.set(cx, Val::Act(Act { id, ..a }));
        Ok(())
    }

    fn avg_pool(&mut self, cx: &Cx) -> Result<(), OnnxError> {
        let node = cx.node;
        let a = self.as_nhwc(cx, self.act(cx, 0)?)?;
        let ks =
            attr_ints(node, "kernel_shape").ok_or_else(|| cx.invalid("has no kernel_shape"))?;
        let kernel = square(cx, "kernel_shape", &ks, "window")?;
        let strides = attr_ints(node, "strides").unwrap_or_else(|| vec![1, 1]);
        let stride = square(cx, "strides", &strides, "stride")?;
        let dil = attr_ints(node, "dilations").unwrap_or_else(|| vec![1, 1]);
        if dil.iter().any(|&d| d != 1) {
            return Err(cx.attr_err(
                "dilations",
                show(&dil),
                "Tessel's average pool has dilation 1",
            ));
        }
        if attr_i(node, "ceil_mode", 0) != 0 {
            return Err(cx.attr_err(
                "ceil_mode",
                "1",
                "Tessel's average pool rounds the output size down",
            ));
        }
        let count_include_pad = match attr_i(node, "count_include_pad", 0) {
            0 => false,
            1 => true,
            v => return Err(cx.attr_err("count_include_pad", v.to_string(), "expected 0 or 1")),
        };
        let pad = equal_window_pad(
            cx,
            [a.shape[2], a.shape[3]],
            [kernel; 2],
            stride,
            [1, 1],
            "average pool pads",
        )?;
        let name = cx.name.clone();
        let layer = Layer::AvgPool2d {
            kernel,
            stride,
            pad,
            count_include_pad,
        };
        let id = self.add(cx, &name, layer, &[a.id])?;
        self.set_nhwc(cx, id);
        Ok(())
    }

    fn conv_transpose(&mut self, cx: &Cx) -> Result<(), OnnxError> {
        let node = cx.node;
        let a = self.as_nhwc(cx, self.act(cx, 0)?)?;
        let w = self.konst(cx, 1)?;
        if w.shape.len() != 4 {
            return Err(cx.invalid(format!(
                "only 2-D transposed convolutions are supported; the weight has shape {:?}",
                w.shape
            )));
        }
        let group = attr_i(node, "group", 1);
        // ONNX's weight is (CI, CO / group, kh, kw).
        let (ci, cog, kh, kw) = (w.shape[0], w.shape[1], w.shape[2], w.shape[3]);
        if ci != a.shape[1] {
            return Err(cx.invalid(format!(
                "weight {:?} does not fit {} input channels",
                w.shape, a.shape[1]
            )));
        }
        if group < 1 || ci % group != 0 {
            return Err(cx.attr_err(
                "group",
                group.to_string(),
                &format!("does not split {ci} input channels into equal groups"),
            ));
        }
        let co = cog * group;
        let ks = attr_ints(node, "kernel_shape").unwrap_or_else(|| vec![kh, kw]);
        if ks != [kh, kw] {
            return Err(cx.attr_err("kernel_shape", show(&ks), "does not match the weight"));
        }
        let kernel = square(cx, "kernel_shape", &ks, "kernel")?;
        let strides = attr_ints(node, "strides").unwrap_or_else(|| vec![1, 1]);
        let stride = square(cx, "strides", &strides, "stride")?;
        let dil = attr_ints(node, "dilations").unwrap_or_else(|| vec![1, 1]);
        if dil.iter().any(|&d| d != 1) {
            return Err(cx.attr_err(
                "dilations",
                show(&dil),
                "Tessel's transposed convolution has dilation 1",
            ));
        }
        let auto = attr_s(node, "auto_pad").unwrap_or_default();
        if !(auto.is_empty() || auto == "NOTSET") {
            return Err(cx.attr_err(
                "auto_pad",
                auto,
                "Tessel maps a transposed convolution with explicit pads only",
            ));
        }
        if let Some(os) = attr_ints(node, "output_shape") {
            return Err(cx.attr_err(
                "output_shape",
                show(&os),
                "give pads and output_padding instead",
            ));
        }
        let pads = attr_ints(node, "pads").unwrap_or_else(|| vec![0; 4]);
        if pads.len() != 4 || pads.iter().any(|&p| p != pads[0]) {
            return Err(cx.attr_err(
                "pads",
                show(&pads),
                "Tessel's transposed convolution pads every side equally",
            ));
        }
        let pad = pads[0];
        if pad < 0 || pad > kernel - 1 {
            return Err(cx.attr_err(
                "pads",
                show(&pads),
                &format!("must be between 0 and kernel - 1 = {}", kernel - 1),
            ));
        }
        let op_pad = attr_ints(node, "output_padding").unwrap_or_else(|| vec![0, 0]);
        let output_padding = match op_pad.as_slice() {
            [x, y] if x == y && *x >= 0 && *x < stride => *x,
            _ => {
                return Err(cx.attr_err(
                    "output_padding",
                    show(&op_pad),
                    &format!("Tessel takes one value for both axes, below the stride {stride}"),
                ))
            }
        };
        let bias = if self.has_input(cx, 2) {
            Some(self.konst(cx, 2)?)
        } else {
            None
        };
        let name = cx.name.clone();
        let layer = Layer::ConvTranspose2d {
            out_channels: co,
            kernel,
            stride,
            pad,
            output_padding,
            groups: group,
        };
        let id = self.add(cx, &name, layer, &[a.id])?;
        // (CI, CO/g, kh, kw) -> (kh, kw, CI/g, CO): output channel g·CO/g + o of input
        // channel g·CI/g + i is weight[i + g·CI/g][o].
        let cig = ci / group;
        let src = w.to_f32();
        let mut wt = vec![0.0f32; (kh * kw * cig * co) as usize];
        for y in 0..kh {
            for x in 0..kw {
                for i in 0..cig {
                    for o in 0..co {
                        let (g, oo) = (o / cog, o % cog);
                        let from = (((g * cig + i) * cog + oo) * kh + y) * kw + x;
                        wt[(((y * kw + x) * cig + i) * co + o) as usize] = src[from as usize];
                    }
                }
            }
        }
        self.weight(id, "weight", vec![kh, kw, cig, co], wt)?;
        self.finish_conv(cx, &name, id, co, bias)
    }

    fn concat(&mut self, cx: &Cx) -> Result<(), OnnxError> {
        let mut acts = Vec::new();
        for k in 0..cx.node.input.len() {
            if !self.has_input(cx, k) {
                continue;
            }
            match self.input(cx, k)? {
                Val::Act(a) => acts.push(a.clone()),
                Val::Const(_) => {
                    return Err(cx.invalid(format!(
                        "input {k} (`{}`) is a constant: Tessel concatenates computed tensors only",
                        cx.node.input[k]
                    )))
                }
            }
        }
        let r = acts.first().map_or(0, |a| a.shape.len());
        let ax_attr = attr_i(cx.node, "axis", 0);
        let axis = tensor::axis(ax_attr, r)
            .ok_or_else(|| cx.attr_err("axis", ax_attr.to_string(), "out of range"))?;
        if acts.iter().any(|a| a.shape.len() != r) {
            return Err(cx.invalid("inputs of different ranks"));
        }
        let nhwc = acts.iter().all(|a| a.nhwc);
        let mut ids = Vec::new();
        let mut plain = Vec::new();
        for a in acts {
            let a = if nhwc { a } else { self.materialize(cx, a)? };
            ids.push(a.id);
            plain.push(a);
        }
        let mut shape = plain[0].shape.clone();
        shape[axis] = plain.iter().map(|a| a.shape[axis]).sum();
        let phys_axis = if nhwc { NCHW_TO_PHYS[axis] } else { axis };
        let name = cx.name.clone();
        let layer = Layer::Concat {
            axis: phys_axis,
            inputs: ids.len(),
        };
        let id = self.add(cx, &name, layer, &ids)?;
        self.set(cx, Val::Act(Act { id, shape, nhwc }));
        Ok(())
    }

    /// Slices `a` along ONNX axis `axis` (`len` elements from `start` by `step`, given as
    /// `(start, step, len)`); the same
    /// activation when nothing is cut.
    fn slice_axis(
        &mut self,
        cx: &Cx,
        name: &str,
        a: Act,
        axis: usize,
        (start, step, len): (i64, i64, i64),
    ) -> Result<Act, OnnxError> {
        if start == 0 && step == 1 && len == a.shape[axis] {
            return Ok(a);
        }
        if len < 1 {
            return Err(cx.invalid(format!(
                "the slice of axis {axis} of {:?} is empty",
                a.shape
            )));
        }
        let a = if a.nhwc { a } else { self.materialize(cx, a)? };
        let phys_axis = if a.nhwc { NCHW_TO_PHYS[axis] } else { axis };
        let layer = Layer::Slice {
            axis: phys_axis,
            start,
            step,
            len,
        };
        let id = self.add(cx, name, layer, &[a.id])?;
        let mut shape = a.shape.clone();
        shape[axis] = len;
        Ok(Act { id, shape, ..a })
    }

    fn slice(&mut self, cx: &Cx) -> Result<(), OnnxError> {
        let node = cx.node;
        let mut a = self.act(cx, 0)?;
        let r = a.shape.len();
        let list = |k: usize, at: &str| -> Result<Option<Vec<i64>>, OnnxError> {
            if self.opset >= 10 {
                if self.has_input(cx, k) {
                    Ok(Some(self.konst(cx, k)?.to_i64()))
                } else {
                    Ok(None)
                }
            } else {
                Ok(attr_ints(node, at))
            }
        };
        let starts = list(1, "starts")?.ok_or_else(|| cx.invalid("has no starts"))?;
        let ends = list(2, "ends")?.ok_or_else(|| cx.invalid("has no ends"))?;
        let axes = list(3, "axes")?.unwrap_or_else(|| (0..starts.len() as i64).collect());
        let steps = if self.opset >= 10 {
            list(4, "steps")?.unwrap_or_else(|| vec![1; starts.len()])
        } else {
            vec![1; starts.len()]
        };
        if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
            return Err(cx.invalid(format!(
                "starts {starts:?}, ends {ends:?}, axes {axes:?} and steps {steps:?} differ in length"
            )));
        }
        for k in 0..starts.len() {
            let axis = tensor::axis(axes[k], r).ok_or_else(|| {
                cx.attr_err("axes", show(&axes), &format!("out of range for rank {r}"))
            })?;
            if steps[k] == 0 {
                return Err(cx.attr_err("steps", show(&steps), "a step of 0"));
            }
            let (start, len) = slice_bounds(a.shape[axis], starts[k], ends[k], steps[k]);
            let name = if k == 0 {
                cx.name.clone()
            } else {
                format!("{}.{k}", cx.name)
            };
            a = self.slice_axis(cx, &name, a, axis, (start, steps[k], len))?;
        }
        self.set(cx, Val::Act(a));
        Ok(())
    }

    fn split(&mut self, cx: &Cx) -> Result<(), OnnxError> {
        let node = cx.node;
        let a = self.act(cx, 0)?;
        let r = a.shape.len();
        let ax_attr = attr_i(node, "axis", 0);
        let axis = tensor::axis(ax_attr, r)
            .ok_or_else(|| cx.attr_err("axis", ax_attr.to_string(), "out of range"))?;
        let d = a.shape[axis];
        let n = node.output.len();
        let given = if self.opset >= 13 {
            if self.has_input(cx, 1) {
                Some(self.konst(cx, 1)?.to_i64())
            } else {
                None
            }
        } else {
            attr_ints(node, "split")
        };
        let sizes = match given {
            Some(s) => {
                if s.len() != n || s.iter().any(|&v| v < 1) || s.iter().sum::<i64>() != d {
                    return Err(cx.attr_err(
                        "split",
                        show(&s),
                        &format!("must give {n} positive sizes adding up to {d}"),
                    ));
                }
                s
            }
            None => {
                let parts = attr(node, "num_outputs").map_or(n as i64, |v| v.i);
                if parts != n as i64 || parts < 1 {
                    return Err(cx.attr_err(
                        "num_outputs",
                        parts.to_string(),
                        &format!("the node has {n} outputs"),
                    ));
                }
                let each = (d + parts - 1) / parts;
                let mut s = vec![each; n];
                s[n - 1] = d - each * (parts - 1);
                if s[n - 1] < 1 {
                    return Err(cx.invalid(format!("cannot split {d} into {n} parts")));
                }
                s
            }
        };
        let mut start = 0;
        for (k, &len) in sizes.iter().enumerate() {
            let name = format!("{}.{k}", cx.name);
            let part = self.slice_axis(cx, &name, a.clone(), axis, (start, 1, len))?;
            self.set_output(cx, k, Val::Act(part));
            start += len;
        }
        Ok(())
    }

    fn gather(&mut self, cx: &Cx) -> Result<(), OnnxError> {
        let node = cx.node;
        let ax_attr = attr_i(node, "axis", 0);
        let name = cx.name.clone();
        match (self.input(cx, 0)?.clone(), self.input(cx, 1)?.clone()) {
            (Val::Const(table), Val::Act(ids)) => {
                if table.shape.len() != 2 || tensor::axis(ax_attr, 2) != Some(0) {
                    return Err(OnnxError::UnsupportedOperator {
                        op: "Gather".into(),
                        node: name,
                        opset: self.opset,
                        detail: format!(
                            ": of a constant of shape {:?} along axis {ax_attr} by computed indices (Tessel maps an embedding lookup: axis 0 of a 2-D table)",
                            table.shape
                        ),
                    });
                }
                let (vocab, dim) = (table.shape[0], table.shape[1]);
                let ids = self.as_plain(cx, ids)?;
                let id = self.add(cx, &name, Layer::Embedding { vocab, dim }, &[ids.id])?;
                self.weight(id, "table", vec![vocab, dim], table.to_f32())?;
                let mut shape = ids.shape.clone();
                shape.push(dim);
                self.set(
                    cx,
                    Val::Act(Act {
                        id,
                        shape,
                        nhwc: false,
                    }),
                );
            }
            (Val::Act(a), Val::Const(idx)) => {
                let r = a.shape.len();
                let axis = tensor::axis(ax_attr, r)
                    .ok_or_else(|| cx.attr_err("axis", ax_attr.to_string(), "out of range"))?;
                let d = a.shape[axis];
                let norm = |v: i64| if v < 0 { v + d } else { v };
                let v: Vec<i64> = idx.to_i64().into_iter().map(norm).collect();
                if v.iter().any(|&i| i < 0 || i >= d) {
                    return Err(cx.invalid(format!(
                        "index {v:?} out of range for axis {axis} of {:?}",
                        a.shape
                    )));
                }
                let consecutive = v.windows(2).all(|w| w[1] == w[0] + 1) && !v.is_empty();
                if idx.shape.len() > 1 || !consecutive {
                    return Err(OnnxError::UnsupportedOperator {
                        op: "Gather".into(),
                        node: name,
                        opset: self.opset,
                        detail: format!(
                            ": of a computed tensor by indices {v:?} of shape {:?} (Tessel maps a single index or consecutive indices, as a slice)",
                            idx.shape
                        ),
                    });
                }
                let part = self.slice_axis(cx, &name, a, axis, (v[0], 1, v.len() as i64))?;
                if idx.shape.is_empty() {
                    let mut shape = part.shape.clone();
                    shape.remove(axis);
                    self.reshape_to(cx, part, shape)?;
                } else {
                    self.set(cx, Val::Act(part));
                }
            }
            (Val::Act(_), Val::Act(_)) => {
                return Err(OnnxError::UnsupportedOperator {
                    op: "Gather".into(),
                    node: name,
                    opset: self.opset,
                    detail: ": of a computed tensor by computed indices".into(),
                })
            }
            (Val::Const(_), Val::Const(_)) => {
                return Err(cx.invalid("both inputs are constants but could not be computed"))
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::fit_broadcast;

    #[test]
    fn a_broadcast_operand_fits_a_regrouped_buffer_only_where_it_is_all_kept_or_all_broadcast() {
        // Scores [1,H,S,S] held as [H,S,S]: a mask [1,1,1,S] is [1,1,S] there.
        assert_eq!(
            fit_broadcast(&[1, 2, 6, 6], &[2, 6, 6], &[1, 1, 1, 6]),
            Some(vec![1, 1, 6])
        );
        // A per-head bias [1,H,1,1] spans the first axis whole.
        assert_eq!(
            fit_broadcast(&[1, 2, 6, 6], &[2, 6, 6], &[1, 2, 1, 1]),
            Some(vec![2, 1, 1])
        );
        // [B,H] merged into one axis with the mask kept on B only: no fit.
        assert_eq!(
            fit_broadcast(&[2, 2, 6, 6], &[4, 6, 6], &[2, 1, 1, 6]),
            None
        );
        // Axes split rather than merged: a row [1,8] of [3,8] held as [3,2,4].
        assert_eq!(
            fit_broadcast(&[3, 8], &[3, 2, 4], &[1, 8]),
            Some(vec![1, 2, 4])
        );
        // The same frame: the operand as it is.
        assert_eq!(fit_broadcast(&[2, 3], &[2, 3], &[1, 3]), Some(vec![1, 3]));
        // A scalar-shaped operand is all ones in any frame.
        assert_eq!(fit_broadcast(&[6, 8], &[48], &[1, 1]), Some(vec![1]));
    }
}
