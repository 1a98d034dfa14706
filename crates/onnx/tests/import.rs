//! Imports the small models of `testdata/onnx/` (made by `make_testdata.py` with
//! onnxruntime's outputs) and checks them: numerically against onnxruntime through the
//! reference evaluator, task by task against the built-in networks, and every bad input
//! against its error.

use std::collections::HashMap;
use std::path::PathBuf;
use tessel_ir::eval;
use tessel_onnx::{import, import_file, ImportOptions, Model, OnnxError};
use tessel_workloads::networks::{self, layer_params, Layer, LayerId, Network, Weights};

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
        e.starts_with("node `dilated` (Conv): unsupported dilations = [2, 2]"),
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
    // Bias Adds are folded into the MatMuls' dense layers and the exact GELU (Div, Erf,
    // Add, Mul, Mul) fuses into one task. The reshape views around rank-3 and rank-4
    // matmuls keep the scaling and the residual Add out of their producers' tasks (the
    // built-in BERT, 2-D throughout, fuses them).
    assert_eq!(
        kinds,
        [
            "dense",
            "transpose",
            "transpose",
            "batch_matmul",
            "mul",
            "softmax",
            "transpose",
            "add",
            "layer_norm",
            "dense",
            "mul+erf+bias+multiply+mul",
            "dense"
        ]
    );
    // 6 dense, 4 transposes, 2 batch matmuls, 2 residual adds, 2 layer norms, 3 more.
    assert_eq!(tasks.iter().map(|t| t.weight).sum::<usize>(), 19);
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
    let model = check_against_onnxruntime("pool_activations", &ImportOptions::default(), 1e-4);
    eprintln!("{:?}", kinds(&model));
}

#[test]
fn conv_transpose_with_output_padding_matches_onnxruntime() {
    let model = check_against_onnxruntime("conv_transpose", &ImportOptions::default(), 1e-4);
    eprintln!("{:?}", kinds(&model));
}

#[test]
fn split_concat_and_slices_match_onnxruntime() {
    let model = check_against_onnxruntime("split_slice", &ImportOptions::default(), 1e-5);
    eprintln!("{:?}", kinds(&model));
    let model = check_against_onnxruntime("split_opset11", &ImportOptions::default(), 1e-5);
    eprintln!("{:?}", kinds(&model));
}

#[test]
fn bert_like_encoder_as_torch_exports_it_matches_onnxruntime() {
    let model = check_against_onnxruntime("bert_tiny", &ImportOptions::default(), 1e-4);
    eprintln!("{:?}", kinds(&model));
    eprintln!("{:?}", model.layout_changes);
}

#[test]
fn bad_new_operators_name_the_attribute_or_operator() {
    let none = ImportOptions::default();
    for n in ["bad_conv_transpose", "bad_avg_pool", "bad_split", "bad_gather", "bad_reduce_mean"] {
        eprintln!("{n}: {}", err(n, &none));
    }
}
