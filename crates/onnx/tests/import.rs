//! Imports the small models of `testdata/onnx/` (made by `make_testdata.py` with
//! onnxruntime's outputs) and checks them: numerically against onnxruntime through the
//! reference evaluator, task by task against the built-in networks, and every bad input
//! against its error.

use std::collections::HashMap;
use std::path::PathBuf;
use tessel_ir::eval;
use tessel_onnx::{import, import_file, ImportOptions, Model, OnnxError};
use tessel_workloads::networks::{self, layer_params, BinaryOp, Layer, LayerId, Network, Weights};

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/onnx")
        .join(name)
}

fn load(name: &str, opts: &ImportOptions) -> Model {
    import_file(testdata(&format!("{name}.onnx")), opts).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// One tensor of the expected-values file.
struct Tensor {
    shape: Vec<i64>,
    data: Vec<f32>,
}

fn tensors(v: &serde_json::Value) -> HashMap<String, Tensor> {
    v.as_object()
        .expect("object")
        .iter()
        .map(|(k, t)| {
            let shape = t["shape"]
                .as_array()
                .expect("shape")
                .iter()
                .map(|d| d.as_i64().expect("dim"))
                .collect();
            let data = t["data"]
                .as_array()
                .expect("data")
                .iter()
                .map(|d| d.as_f64().expect("value") as f32)
                .collect();
            (k.clone(), Tensor { shape, data })
        })
        .collect()
}

fn expected(name: &str) -> (HashMap<String, Tensor>, HashMap<String, Tensor>) {
    let text = std::fs::read_to_string(testdata(&format!("{name}.json"))).expect("expected values");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    (tensors(&v["inputs"]), tensors(&v["outputs"]))
}

/// NCHW → NHWC of a row-major buffer (and back with `inverse`).
fn relayout(data: &[f32], nchw: &[i64], inverse: bool) -> Vec<f32> {
    let (n, c, h, w) = (
        nchw[0] as usize,
        nchw[1] as usize,
        nchw[2] as usize,
        nchw[3] as usize,
    );
    let mut out = vec![0.0; data.len()];
    for a in 0..n {
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    let i = ((a * c + ch) * h + y) * w + x;
                    let j = ((a * h + y) * w + x) * c + ch;
                    if inverse {
                        out[i] = data[j];
                    } else {
                        out[j] = data[i];
                    }
                }
            }
        }
    }
    out
}

/// Runs a whole network with the reference evaluator: every fused subgraph's DAG in turn,
/// its placeholders fed in the order `subgraph_dag` makes them (per layer: the activations
/// it reads from outside the subgraph, then its weights).
fn run_network(
    net: &Network,
    weights: &Weights,
    inputs: &HashMap<LayerId, Vec<f32>>,
) -> HashMap<LayerId, Vec<f32>> {
    let mut bufs: HashMap<LayerId, Vec<f32>> = inputs.clone();
    let mut pending = networks::partition(net);
    // Reshapes are views: the same buffer.
    let resolve = |bufs: &HashMap<LayerId, Vec<f32>>, mut id: LayerId| -> Option<Vec<f32>> {
        while matches!(net.node(id).layer, Layer::Reshape(_)) {
            id = net.inputs(id)[0];
        }
        bufs.get(&id).cloned()
    };
    while !pending.is_empty() {
        let before = pending.len();
        let mut rest = Vec::new();
        for g in pending {
            let mut feed = Vec::new();
            let mut seen: Vec<LayerId> = Vec::new();
            let mut ready = true;
            for &id in &g.layers {
                for i in net.inputs(id) {
                    if g.layers.contains(&i) || seen.contains(&i) {
                        continue;
                    }
                    seen.push(i);
                    match resolve(&bufs, i) {
                        Some(b) => feed.push(b),
                        None => ready = false,
                    }
                }
                let name = &net.node(id).name;
                for (param, _) in layer_params(net, id) {
                    feed.push(weights.get(name, param).expect("weight").data.clone());
                }
            }
            if !ready {
                rest.push(g);
                continue;
            }
            let dag = networks::subgraph_dag(net, &g).expect("dag");
            let mut out = eval::evaluate(&dag, &feed).expect("evaluate");
            assert_eq!(out.len(), 1, "one output per subgraph");
            bufs.insert(g.output(), out.remove(0));
        }
        assert!(rest.len() < before, "no subgraph could run");
        pending = rest;
    }
    net.layers()
        .filter_map(|id| resolve(&bufs, id).map(|b| (id, b)))
        .collect()
}

/// Imports `name`, runs it on the inputs of its expected-values file, and compares every
/// output with onnxruntime's.
fn check_against_onnxruntime(name: &str, opts: &ImportOptions, tol: f32) -> Model {
    let model = load(name, opts);
    let (inputs, outputs) = expected(name);
    let mut feed = HashMap::new();
    for p in &model.inputs {
        let t = &inputs[&p.name];
        assert_eq!(t.shape, p.onnx_shape, "{name}: input {}", p.name);
        let data = if p.nhwc {
            relayout(&t.data, &t.shape, false)
        } else {
            t.data.clone()
        };
        feed.insert(p.layer, data);
    }
    let bufs = run_network(&model.network, &model.weights, &feed);
    for p in &model.outputs {
        let want = &outputs[&p.name];
        assert_eq!(want.shape, p.onnx_shape, "{name}: output {}", p.name);
        let got = &bufs[&p.layer];
        let got = if p.nhwc {
            relayout(got, &p.onnx_shape, true)
        } else {
            got.clone()
        };
        assert_eq!(got.len(), want.data.len());
        let worst = got
            .iter()
            .zip(&want.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst <= tol,
            "{name}: output {} differs from onnxruntime by {worst}",
            p.name
        );
        // Not all zero: the check means something.
        assert!(
            want.data.iter().any(|v| v.abs() > 1e-3),
            "{name}: trivial output"
        );
    }
    model
}

#[test]
fn conv_bias_relu_matches_onnxruntime_and_the_builtin_layers() {
    let model = check_against_onnxruntime("conv_bias_relu", &ImportOptions::default(), 1e-4);
    let tasks = networks::extract_tasks(&model.network).unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(
        tasks[0].name,
        "c2d:n=1,h=8,w=8,ci=3,co=4,kernel=3,stride=1,pad=1+bias+relu"
    );
    assert_eq!(
        model.layout_changes,
        vec![
            "input `x`: NCHW 1x3x8x8 is taken as NHWC 1x8x8x3".to_string(),
            "output `y`: NCHW 1x4x8x8 is given as NHWC 1x8x8x4".to_string()
        ]
    );
    // The same layers built by hand give the same DAG.
    let mut b = networks::NetworkBuilder::new("hand", 1);
    let x = b.input("x", &[1, 8, 8, 3]).unwrap();
    let c = b
        .add(
            "conv",
            Layer::Conv2d {
                out_channels: 4,
                kernel: 3,
                stride: 1,
                pad: 1,
                dilation: 1,
                groups: 1,
            },
            &[x],
        )
        .unwrap();
    let c = b.add("conv.bias", Layer::BiasAdd, &[c]).unwrap();
    b.add("relu", Layer::Relu, &[c]).unwrap();
    let hand = networks::extract_tasks(&b.build()).unwrap();
    assert_eq!(hand[0].workload_key(), tasks[0].workload_key());
}

#[test]
fn grouped_and_dilated_convolutions_match_onnxruntime() {
    let model = check_against_onnxruntime("grouped_dilated", &ImportOptions::default(), 1e-4);
    let tasks = networks::extract_tasks(&model.network).unwrap();
    let names: Vec<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "c2d:n=1,h=9,w=9,ci=4,co=6,kernel=3,stride=1,pad=2,dilation=2,groups=2+bias+relu",
            "c2d:n=1,h=9,w=9,ci=6,co=5,kernel=3,stride=2,pad=2,dilation=2",
        ],
    );
    // A task of the convolution alone is the registry's workload of that spec.
    let conv = tessel_workloads::lookup(tasks[1].spec.as_deref().expect("one layer"))
        .expect("registry spec");
    assert_eq!(conv.dag.workload_key(), tasks[1].dag.workload_key());
}

#[test]
fn depthwise_and_relu6_match_onnxruntime() {
    let model = check_against_onnxruntime("depthwise", &ImportOptions::default(), 1e-4);
    let kinds: Vec<String> = networks::extract_tasks(&model.network)
        .unwrap()
        .iter()
        .map(|t| t.kind.clone())
        .collect();
    assert_eq!(kinds, ["depthwise_conv2d+bias+relu6", "conv2d"]);
}

#[test]
fn residual_block_with_batch_norm_and_old_opset_matches_onnxruntime() {
    let model = check_against_onnxruntime("residual", &ImportOptions::default(), 1e-4);
    assert_eq!(model.opset, 9);
    // BatchNormalization is folded away: conv + bias + relu.
    let kinds: Vec<String> = networks::extract_tasks(&model.network)
        .unwrap()
        .iter()
        .map(|t| t.kind.clone())
        .collect();
    assert_eq!(
        kinds,
        [
            "conv2d+bias+relu",
            "conv2d+bias+add+relu",
            "max_pool2d",
            "global_avg_pool",
            "dense"
        ]
    );
}

#[test]
fn gemm_softmax_with_symbolic_batch_matches_onnxruntime() {
    let opts = ImportOptions {
        input_shapes: vec![("x".into(), vec![2, 16])],
        name: None,
    };
    let model = check_against_onnxruntime("gemm", &opts, 1e-5);
    let tasks = networks::extract_tasks(&model.network).unwrap();
    let kinds: Vec<&str> = tasks.iter().map(|t| t.kind.as_str()).collect();
    // The MatMul's bias Add is folded into its dense layer; the shape chain is computed.
    assert_eq!(kinds, ["dense+relu", "dense", "softmax"]);
    assert_eq!(tasks[2].spec.as_deref(), Some("softmax:m=2,n=6"));
}

fn err(name: &str, opts: &ImportOptions) -> String {
    match import_file(testdata(&format!("{name}.onnx")), opts) {
        Ok(_) => panic!("{name} imported"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn each_bad_model_gives_its_error() {
    let none = ImportOptions::default();
    assert_eq!(
        err("bad_operator", &none),
        "unsupported operator `HardSwish` (node `hs`, opset 14)"
    );
    let e = err("bad_attribute", &none);
    assert!(
        e.starts_with("node `dilated` (Conv): unsupported dilations = [1, 2]"),
        "{e}"
    );
    assert_eq!(
        err("bad_dynamic", &none),
        "input `x` has a dynamic shape [1, 3, height, width]; give it with `--input x:1x3x1x1`"
    );
    let fixed = ImportOptions {
        input_shapes: vec![("x".into(), vec![1, 3, 5, 7])],
        name: None,
    };
    let m = load("bad_dynamic", &fixed);
    assert_eq!(m.network.node(m.outputs[0].layer).shape, [1, 5, 7, 3]);
    let wrong = ImportOptions {
        input_shapes: vec![("x".into(), vec![1, 4, 5, 7])],
        name: None,
    };
    assert!(
        err("bad_dynamic", &wrong).contains("does not fit the model's shape [1, 3, height, width]")
    );
    let unknown = ImportOptions {
        input_shapes: vec![("y".into(), vec![1])],
        name: None,
    };
    assert!(err("conv_bias_relu", &unknown).contains("`y`, which is not an input of the model"));
    assert_eq!(
        err("bad_opset", &none),
        "the model uses opset 99 of domain `ai.onnx`; this importer knows opsets up to 22"
    );
}

#[test]
fn truncated_and_foreign_bytes_are_errors() {
    let bytes = std::fs::read(testdata("residual.onnx")).unwrap();
    for cut in [1, 7, bytes.len() / 3, bytes.len() / 2, bytes.len() - 3] {
        let e = import(&bytes[..cut], &ImportOptions::default()).unwrap_err();
        assert!(
            matches!(
                e,
                OnnxError::Decode(_)
                    | OnnxError::NotOnnx(_)
                    | OnnxError::Model(_)
                    | OnnxError::Invalid { .. }
            ),
            "cut at {cut}: {e}"
        );
    }
    let e = import(&bytes[..bytes.len() / 2], &ImportOptions::default()).unwrap_err();
    assert!(e.to_string().contains("truncated file or not ONNX"), "{e}");
    let e = import(b"", &ImportOptions::default()).unwrap_err();
    assert_eq!(e.to_string(), "not an ONNX model: the file is empty");
    let e = import(b"\x89PNG\r\n\x1a\n not a model", &ImportOptions::default()).unwrap_err();
    assert!(
        matches!(e, OnnxError::Decode(_) | OnnxError::NotOnnx(_)),
        "{e}"
    );
    let e = import_file(testdata("missing.onnx"), &ImportOptions::default()).unwrap_err();
    assert!(e.to_string().starts_with("cannot read "), "{e}");
}

#[test]
fn transformer_encoder_with_erf_gelu_matches_onnxruntime() {
    let model = check_against_onnxruntime("encoder", &ImportOptions::default(), 1e-4);
    let tasks = networks::extract_tasks(&model.network).unwrap();
    let kinds: Vec<&str> = tasks.iter().map(|t| t.kind.as_str()).collect();
    // Bias Adds fold into the MatMuls' dense layers; Reshape is no layer, so the head
    // split/merge transposes become the built-in BERT's split_heads / merge_heads and fuse
    // into the dense and batch matmul before them, the scaling joins the scores' batch
    // matmul and the residual Adds their dense layers; the exact GELU (Div, Erf, Add, Mul,
    // Mul) is one gelu_erf epilogue: the fusion of `tessel tasks bert-base`.
    assert_eq!(
        kinds,
        [
            "dense+split_heads",
            "dense+split_heads",
            "batch_matmul+mul",
            "softmax",
            "batch_matmul+merge_heads",
            "dense+add",
            "layer_norm",
            "dense+gelu_erf",
            "dense+add"
        ]
    );
    // Q and V (one task), K (keys transposed), 2 batch matmuls, softmax, output dense,
    // 2 layer norms, the two FFN denses.
    let weights: Vec<usize> = tasks.iter().map(|t| t.weight).collect();
    assert_eq!(weights, [2, 1, 1, 1, 1, 1, 2, 1, 1]);
    assert_eq!(tasks[1].name, "dense:n=8,in=16,out=16+split_heads2t");
    assert!(
        model.layout_changes.is_empty(),
        "{:?}",
        model.layout_changes
    );
}

fn kinds(model: &Model) -> Vec<String> {
    networks::extract_tasks(&model.network)
        .unwrap()
        .iter()
        .map(|t| t.kind.clone())
        .collect()
}

#[test]
fn sigmoid_tanh_average_pools_and_concat_match_onnxruntime() {
    // Average pools with count_include_pad 0 and 1 over a padded 9x9 input (the border
    // windows hold 4 or 6 of 9 elements), concatenated along NCHW channels (NHWC axis 3).
    let model = check_against_onnxruntime("pool_activations", &ImportOptions::default(), 1e-4);
    assert_eq!(
        kinds(&model),
        [
            "conv2d+bias+tanh",
            "avg_pool2d+concat",
            "conv2d+sigmoid",
            "avg_pool2d"
        ]
    );
    let net = &model.network;
    let pools: Vec<&Layer> = net
        .layers()
        .map(|id| &net.node(id).layer)
        .filter(|l| matches!(l, Layer::AvgPool2d { .. }))
        .collect();
    assert_eq!(
        pools,
        [
            &Layer::AvgPool2d {
                kernel: 3,
                stride: 2,
                pad: 1,
                count_include_pad: false
            },
            &Layer::AvgPool2d {
                kernel: 3,
                stride: 2,
                pad: 1,
                count_include_pad: true
            }
        ]
    );
    assert_eq!(net.node(model.outputs[0].layer).shape, [1, 5, 5, 8]);
}

#[test]
fn conv_transpose_with_output_padding_matches_onnxruntime() {
    let model = check_against_onnxruntime("conv_transpose", &ImportOptions::default(), 1e-4);
    let tasks = networks::extract_tasks(&model.network).unwrap();
    let kinds: Vec<&str> = tasks.iter().map(|t| t.kind.as_str()).collect();
    assert_eq!(kinds, ["conv2d_transpose+bias+relu", "conv2d_transpose"]);
    // Without output padding it is the registry's t2d workload: the same DAG.
    let spec = "t2d:n=1,h=10,w=10,ci=3,co=2,kernel=2,stride=2,pad=0";
    assert_eq!(tasks[1].spec.as_deref(), Some(spec));
    let registry = tessel_workloads::lookup(spec).unwrap();
    assert_eq!(registry.dag.workload_key(), tasks[1].workload_key());
}

#[test]
fn split_concat_and_slices_match_onnxruntime() {
    // Opset 13: Split sizes as an input, a reversing Slice (step -1), a strided Slice.
    let model = check_against_onnxruntime("split_slice", &ImportOptions::default(), 1e-5);
    assert_eq!(
        kinds(&model),
        ["dense", "slice+concat+slice", "slice", "slice+slice"]
    );
    let reverse = model.network.find("reverse").unwrap();
    assert_eq!(
        model.network.node(reverse).layer,
        Layer::Slice {
            axis: 1,
            start: 5,
            step: -1,
            len: 6
        }
    );
    // Opset 11: the split attribute on NCHW channels (NHWC axis 3), Slice of H (axis 1).
    let model = check_against_onnxruntime("split_opset11", &ImportOptions::default(), 1e-5);
    assert_eq!(
        kinds(&model),
        ["conv2d", "slice+relu+slice", "slice+slice+concat"]
    );
    let part = model.network.find("split.1").unwrap();
    assert_eq!(
        model.network.node(part).layer,
        Layer::Slice {
            axis: 3,
            start: 3,
            step: 1,
            len: 5
        }
    );
}

#[test]
fn bert_like_encoder_as_torch_exports_it_matches_onnxruntime() {
    // Token ids (int64) through Gather embeddings, constant position and token-type
    // embeddings, decomposed layer norms, fused QKV split in three, erf GELU, pooler.
    let model = check_against_onnxruntime("bert_tiny", &ImportOptions::default(), 1e-4);
    assert!(model.inputs[0].integer);
    assert_eq!(
        model.layout_changes,
        ["input `input_ids`: integer 1x8 is taken as f32 values"]
    );
    assert_eq!(
        kinds(&model),
        [
            "embedding+add_const+add_const",
            "layer_norm",
            "dense",
            "slice",
            "slice",
            "slice",
            "split_heads",
            "split_heads",
            "batch_matmul+mul",
            "softmax",
            "batch_matmul+merge_heads",
            "dense+add",
            "dense+gelu_erf",
            "dense+add",
            "slice",
            "dense+tanh"
        ]
    );
    // Every decomposed layer norm became one layer: 1 + 2 per encoder layer.
    let net = &model.network;
    let norms = net
        .layers()
        .filter(|&id| matches!(net.node(id).layer, Layer::LayerNorm { eps } if eps == 1e-12))
        .count();
    assert_eq!(norms, 5);
    let gelus = net
        .layers()
        .filter(|&id| net.node(id).layer == Layer::GeluErf)
        .count();
    assert_eq!(gelus, 2);
}

#[test]
fn bad_new_operators_name_the_attribute_or_operator() {
    let none = ImportOptions::default();
    assert_eq!(
        err("bad_conv_transpose", &none),
        "node `up` (ConvTranspose): unsupported dilations = [2, 2]: Tessel's transposed convolution has dilation 1"
    );
    assert_eq!(
        err("bad_avg_pool", &none),
        "node `pool` (AveragePool): unsupported ceil_mode = 1: Tessel's average pool rounds the output size down"
    );
    assert_eq!(
        err("bad_split", &none),
        "node `split` (Split): unsupported split = [1, 2]: must give 2 positive sizes adding up to 4"
    );
    assert!(
        err("bad_gather", &none).starts_with(
            "unsupported operator `Gather` (node `pick`, opset 13): of a computed tensor by indices [0, 2]"
        ),
        "{}",
        err("bad_gather", &none)
    );
    assert!(
        err("bad_reduce_mean", &none).starts_with(
            "unsupported operator `ReduceMean` (node `mean`, opset 13): Tessel maps ReduceMean, Pow and Sqrt only as parts of a layer norm"
        ),
        "{}",
        err("bad_reduce_mean", &none)
    );
}

/// Single-node models built in the test, for the attribute values each new operator refuses.
mod build {
    use prost::Message;
    use tessel_onnx::proto::*;

    pub fn vi(name: &str, shape: &[i64], elem: i32) -> ValueInfoProto {
        ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                tensor_type: Some(TypeProtoTensor {
                    elem_type: elem,
                    shape: Some(TensorShapeProto {
                        dim: shape
                            .iter()
                            .map(|&d| Dimension {
                                dim_value: Some(d),
                                dim_param: None,
                            })
                            .collect(),
                    }),
                }),
            }),
        }
    }

    pub fn ints(name: &str, v: &[i64]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: 7,
            ints: v.to_vec(),
            ..Default::default()
        }
    }

    pub fn int(name: &str, v: i64) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: 2,
            i: v,
            ..Default::default()
        }
    }

    pub fn string(name: &str, v: &str) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: 3,
            s: v.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    pub fn tensor(name: &str, shape: &[i64], ints: Option<Vec<i64>>) -> TensorProto {
        let n: i64 = shape.iter().product();
        let mut t = TensorProto {
            name: name.into(),
            dims: shape.to_vec(),
            data_type: 1,
            float_data: (0..n).map(|i| i as f32 * 0.01).collect(),
            ..Default::default()
        };
        if let Some(v) = ints {
            t.data_type = 7;
            t.float_data.clear();
            t.raw_data = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        }
        t
    }

    /// A model of `op` on `x` (float, `shape`) and `more` initializers, output `y`.
    pub fn model(
        op: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: Vec<AttributeProto>,
        x: ValueInfoProto,
        inits: Vec<TensorProto>,
        opset: i64,
    ) -> Vec<u8> {
        let node = NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            name: "n".into(),
            op_type: op.into(),
            attribute: attrs,
            ..Default::default()
        };
        ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: opset,
            }],
            producer_name: "test".into(),
            graph: Some(GraphProto {
                node: vec![node],
                name: "g".into(),
                initializer: inits,
                input: vec![x],
                output: outputs.iter().map(|o| vi(o, &[], 1)).collect(),
            }),
        }
        .encode_to_vec()
    }
}

#[test]
fn every_new_operator_names_the_attribute_value_it_refuses() {
    use build::*;
    let x = || vi("x", &[1, 4, 5, 5], 1);
    let e = |bytes: Vec<u8>| {
        import(&bytes, &ImportOptions::default())
            .unwrap_err()
            .to_string()
    };
    let w = || vec![tensor("w", &[4, 2, 3, 3], None)];
    let ct = |attrs| model("ConvTranspose", &["x", "w"], &["y"], attrs, x(), w(), 13);
    assert_eq!(
        e(ct(vec![ints("strides", &[2, 2]), ints("output_padding", &[2, 2])])),
        "node `n` (ConvTranspose): unsupported output_padding = [2, 2]: Tessel takes one value for both axes, below the stride 2"
    );
    assert_eq!(
        e(ct(vec![ints("output_shape", &[9, 9])])),
        "node `n` (ConvTranspose): unsupported output_shape = [9, 9]: give pads and output_padding instead"
    );
    assert_eq!(
        e(ct(vec![ints("pads", &[1, 1, 0, 0])])),
        "node `n` (ConvTranspose): unsupported pads = [1, 1, 0, 0]: Tessel's transposed convolution pads every side equally"
    );
    assert_eq!(
        e(ct(vec![ints("pads", &[3, 3, 3, 3])])),
        "node `n` (ConvTranspose): unsupported pads = [3, 3, 3, 3]: must be between 0 and kernel - 1 = 2"
    );
    assert_eq!(
        e(ct(vec![string("auto_pad", "SAME_UPPER")])),
        "node `n` (ConvTranspose): unsupported auto_pad = SAME_UPPER: Tessel maps a transposed convolution with explicit pads only"
    );
    let pool = |attrs| model("AveragePool", &["x"], &["y"], attrs, x(), vec![], 13);
    assert_eq!(
        e(pool(vec![
            ints("kernel_shape", &[3, 3]),
            int("count_include_pad", 2)
        ])),
        "node `n` (AveragePool): unsupported count_include_pad = 2: expected 0 or 1"
    );
    assert_eq!(
        e(pool(vec![ints("kernel_shape", &[3, 3]), ints("pads", &[1, 1, 0, 0])])),
        "node `n` (AveragePool): unsupported pads = [1, 1, 0, 0]: Tessel's average pool pads every side equally"
    );
    assert_eq!(
        e(pool(vec![ints("kernel_shape", &[3, 2])])),
        "node `n` (AveragePool): unsupported kernel_shape = [3, 2]: Tessel's layers take a 2-D window equal on both axes"
    );
    assert_eq!(
        e(model(
            "Gelu",
            &["x"],
            &["y"],
            vec![string("approximate", "fast")],
            x(),
            vec![],
            20
        )),
        "node `n` (Gelu): unsupported approximate = fast: expected none or tanh"
    );
    let range = |name: &str, v: i64| tensor(name, &[1], Some(vec![v]));
    let slice = model(
        "Slice",
        &["x", "s", "e", "a", "st"],
        &["y"],
        vec![],
        x(),
        vec![range("s", 0), range("e", 3), range("a", 2), range("st", 0)],
        13,
    );
    assert_eq!(
        e(slice),
        "node `n` (Slice): unsupported steps = [0]: a step of 0"
    );
    let concat = model(
        "Concat",
        &["x", "w"],
        &["y"],
        vec![int("axis", 1)],
        x(),
        w(),
        13,
    );
    assert_eq!(
        e(concat),
        "node `n` (Concat): input 1 (`w`) is a constant: Tessel concatenates computed tensors only"
    );
    let split = model(
        "Split",
        &["x"],
        &["a", "b"],
        vec![int("axis", 1), int("num_outputs", 3)],
        x(),
        vec![],
        18,
    );
    assert_eq!(
        e(split),
        "node `n` (Split): unsupported num_outputs = 3: the node has 2 outputs"
    );
    let gather = model(
        "Gather",
        &["w", "ids"],
        &["y"],
        vec![],
        vi("ids", &[1, 3], 7),
        w(),
        13,
    );
    assert_eq!(
        e(gather),
        "unsupported operator `Gather` (node `n`, opset 13): of a constant of shape [4, 2, 3, 3] along axis 0 by computed indices (Tessel maps an embedding lookup: axis 0 of a 2-D table)"
    );
    let doubles = model(
        "Relu",
        &["x"],
        &["y"],
        vec![],
        vi("x", &[1, 3], 11),
        vec![],
        13,
    );
    assert_eq!(
        e(doubles),
        "input `x` is of type double; Tessel networks take float inputs (and int32/int64 token ids)"
    );
}

#[test]
fn an_output_that_other_nodes_read_is_kept_in_the_models_order() {
    // y1 = x·W is a model output and also feeds the bias and ReLU that give y2; the model
    // lists y2 first.
    let model = check_against_onnxruntime("read_output", &ImportOptions::default(), 1e-5);
    let net = &model.network;
    let names: Vec<&str> = net
        .output_layers()
        .iter()
        .map(|&id| net.node(id).name.as_str())
        .collect();
    let ports: Vec<&str> = model.outputs.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(ports, ["y2", "y1"]);
    assert_eq!(
        net.output_layers(),
        model.outputs.iter().map(|p| p.layer).collect::<Vec<_>>(),
        "outputs {names:?}"
    );
    // The dense layer ends its subgraph (its value is an output); the bias and ReLU fuse.
    let groups: Vec<Vec<&str>> = networks::partition(net)
        .iter()
        .map(|g| g.layers.iter().map(|&l| net.node(l).layer.kind()).collect())
        .collect();
    assert_eq!(groups, [vec!["dense"], vec!["bias", "relu"]], "{groups:?}");
}

/// Task names of an imported model, in order.
fn names(model: &Model) -> Vec<String> {
    networks::extract_tasks(&model.network)
        .unwrap()
        .iter()
        .map(|t| t.name.clone())
        .collect()
}

#[test]
fn squeeze_excite_gates_broadcast_along_nhwc_and_match_onnxruntime() {
    // x[1,8,6,6] * gate[1,8,1,1] twice: a Sigmoid gate second, a HardSigmoid gate first.
    let model = check_against_onnxruntime("se_block", &ImportOptions::default(), 1e-4);
    // Both operands stay NHWC: no transpose is inserted.
    assert_eq!(
        model.layout_changes,
        [
            "input `x`: NCHW 1x3x6x6 is taken as NHWC 1x6x6x3",
            "output `y`: NCHW 1x8x6x6 is given as NHWC 1x6x6x8"
        ]
    );
    let net = &model.network;
    let scale = net.find("se1.scale").unwrap();
    assert_eq!(
        net.node(scale).layer,
        Layer::Broadcast {
            op: BinaryOp::Mul,
            reversed: false
        }
    );
    let shapes: Vec<Vec<i64>> = net
        .inputs(scale)
        .iter()
        .map(|&i| net.node(i).shape.clone())
        .collect();
    assert_eq!(shapes, [vec![1, 6, 6, 8], vec![1, 1, 1, 8]]);
    // The gated activation has two readers (the pool and the product), so the product is
    // its own task, as the built-in fusion rule has it; the gate-first product of the
    // second block is the same task as the first's (the larger operand goes first).
    assert_eq!(
        kinds(&model),
        [
            "conv2d+bias+relu",
            "global_avg_pool",
            "conv2d+bias+relu",
            "conv2d+bias+sigmoid",
            "broadcast_mul",
            "conv2d",
            "conv2d+bias+hard_sigmoid",
        ]
    );
    let tasks = networks::extract_tasks(net).unwrap();
    let mul = tasks.iter().find(|t| t.kind == "broadcast_mul").unwrap();
    assert_eq!(
        (mul.name.as_str(), mul.weight),
        ("broadcast_mul.1x1x1x8:1x6x6x8", 2)
    );
}

#[test]
fn attention_with_a_computed_mask_matches_onnxruntime_and_fuses() {
    // scores[1,2,6,6] + (1 - float(mask[1,1,1,6])) * -10000 from an int64 input, then a
    // computed bias row [1,8] added to the context [1,6,8].
    let model = check_against_onnxruntime("attention_mask", &ImportOptions::default(), 1e-4);
    // The mask joins the scores' task (batch matmul, scaling) and the row the context's:
    // each broadcast reads its producer's buffer directly, the small operand viewed to fit.
    let k = kinds(&model);
    assert!(
        k.contains(&"batch_matmul+mul+broadcast_add".to_string()),
        "{k:?}"
    );
    assert!(
        k.contains(&"batch_matmul+merge_heads+broadcast_add".to_string()),
        "{k:?}"
    );
    let net = &model.network;
    let mask = net.find("scores.mask").unwrap();
    let shapes: Vec<Vec<i64>> = net
        .inputs(mask)
        .iter()
        .map(|&i| net.node(i).shape.clone())
        .collect();
    assert_eq!(shapes, [vec![2, 6, 6], vec![1, 1, 6]]);
    // At batch 2 the scores are held [4,6,6] and the mask [2,1,1,6] fits no broadcast of
    // that buffer: the scores are viewed [2,2,6,6] and the add is a task of its own.
    let model = check_against_onnxruntime("attention_mask_b2", &ImportOptions::default(), 1e-4);
    let n = names(&model);
    assert!(
        n.contains(&"broadcast_add.2x1x1x6:2x2x6x6".to_string()),
        "{n:?}"
    );
    assert!(kinds(&model).contains(&"batch_matmul+merge_heads+broadcast_add".to_string()));
}

#[test]
fn sub_and_div_of_computed_tensors_broadcast_both_ways_and_match_onnxruntime() {
    // c - g, (c - g) / s, g - x, g / x on NCHW activations with [1,4,1,1] operands; a
    // matrix minus a computed row divided by a computed scalar-shaped tensor.
    let model = check_against_onnxruntime("broadcast_sub_div", &ImportOptions::default(), 1e-4);
    let net = &model.network;
    let layer = |name: &str| net.node(net.find(name).unwrap()).layer.clone();
    let b = |op, reversed| Layer::Broadcast { op, reversed };
    assert_eq!(layer("centre"), b(BinaryOp::Sub, false));
    assert_eq!(layer("divide"), b(BinaryOp::Div, false));
    assert_eq!(layer("rsub"), b(BinaryOp::Sub, true));
    assert_eq!(layer("rdiv"), b(BinaryOp::Div, true));
    assert_eq!(layer("row.sub"), b(BinaryOp::Sub, false));
    assert_eq!(layer("row.div"), b(BinaryOp::Div, false));
    let shapes = |name: &str| -> Vec<Vec<i64>> {
        net.inputs(net.find(name).unwrap())
            .iter()
            .map(|&i| net.node(i).shape.clone())
            .collect()
    };
    assert_eq!(shapes("rdiv"), [vec![1, 5, 5, 4], vec![1, 1, 1, 4]]);
    assert_eq!(shapes("row.div"), [vec![6, 8], vec![1, 1]]);
}

#[test]
fn grouped_conv_transpose_matches_onnxruntime() {
    let model =
        check_against_onnxruntime("conv_transpose_grouped", &ImportOptions::default(), 1e-4);
    let net = &model.network;
    assert_eq!(
        net.node(net.find("up").unwrap()).layer,
        Layer::ConvTranspose2d {
            out_channels: 6,
            kernel: 3,
            stride: 2,
            pad: 1,
            output_padding: 1,
            groups: 2
        }
    );
    assert_eq!(
        names(&model),
        ["conv2d_transpose:co6k3s2p1o1g2:1x5x5x4+bias+relu"]
    );
}

#[test]
fn shapes_that_do_not_broadcast_name_the_node_and_both_shapes() {
    let none = ImportOptions::default();
    assert_eq!(
        err("bad_broadcast", &none),
        "node `sum` (Add): the shapes [1, 4, 5, 5] and [1, 3, 5, 5] do not broadcast"
    );
    assert_eq!(
        err("bad_broadcast_outer", &none),
        "unsupported operator `Mul` (node `outer`, opset 13): broadcasting [1, 4, 1, 5] and [1, 1, 3, 1] gives [1, 4, 3, 5], larger than both (Tessel broadcasts one computed operand to the other's shape)"
    );
}

#[test]
fn every_task_of_every_committed_model_travels_as_a_subgraph_spec() {
    let mut models = 0;
    for entry in std::fs::read_dir(testdata("")).expect("testdata") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !name.ends_with(".onnx") || name.starts_with("bad_") {
            continue;
        }
        // gemm.onnx has a symbolic batch.
        let opts = ImportOptions {
            input_shapes: if name == "gemm.onnx" {
                vec![("x".into(), vec![2, 16])]
            } else {
                Vec::new()
            },
            ..ImportOptions::default()
        };
        let model = import_file(&path, &opts).expect(name);
        for t in networks::extract_tasks(&model.network).expect("tasks") {
            let spec = networks::task_subgraph_spec(&model.network, &t).expect("spec");
            let w = tessel_workloads::lookup(&spec).expect("the spec resolves");
            assert_eq!(w.dag, t.dag, "{name}: task {}", t.name);
        }
        models += 1;
    }
    assert!(models >= 15, "{models} models");
}
