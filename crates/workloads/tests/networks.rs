//! Whole networks: the built-in graphs partition into the tasks WORKLOADS.md and the
//! onnxruntime anchor describe (shapes, counts, FLOPs), identical subgraphs share one
//! workload key, single-op tasks are the registry's DAGs, and every kind of task computes
//! what the reference evaluator computes when lowered and interpreted.

use std::collections::BTreeMap;
use std::sync::Arc;
use tessel_ir::dag::DagBuilder;
use tessel_ir::{eval, lower::lower, rng, testing, IrError, State};
use tessel_workloads::networks::{self, BertConfig, Layer, Network, NetworkBuilder, Task};

fn tasks_of(name: &str, batch: i64) -> Vec<Task> {
    let net = networks::lookup(name, batch).unwrap_or_else(|e| panic!("{name}: {e}"));
    networks::extract_tasks(&net).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The anchor op's workload (the part of the name before the first `+`).
fn anchor(t: &Task) -> tessel_workloads::Workload {
    let spec = t.name.split('+').next().unwrap_or("");
    tessel_workloads::lookup(spec).unwrap_or_else(|e| panic!("{}: {e}", t.name))
}

fn weighted(tasks: &[Task], kind: &str) -> usize {
    tasks
        .iter()
        .filter(|t| t.anchor_kind == kind)
        .map(|t| t.weight)
        .sum()
}

/// WORKLOADS.md §6.1: (C, H=W, K, R=S, stride, pad, count).
const RESNET50_V15: [[i64; 7]; 23] = [
    [3, 224, 64, 7, 2, 3, 1],
    [64, 56, 64, 1, 1, 0, 1],
    [64, 56, 64, 3, 1, 1, 3],
    [64, 56, 256, 1, 1, 0, 4],
    [256, 56, 64, 1, 1, 0, 2],
    [256, 56, 128, 1, 1, 0, 1],
    [128, 56, 128, 3, 2, 1, 1],
    [128, 28, 512, 1, 1, 0, 4],
    [256, 56, 512, 1, 2, 0, 1],
    [512, 28, 128, 1, 1, 0, 3],
    [128, 28, 128, 3, 1, 1, 3],
    [512, 28, 256, 1, 1, 0, 1],
    [256, 28, 256, 3, 2, 1, 1],
    [256, 14, 1024, 1, 1, 0, 6],
    [512, 28, 1024, 1, 2, 0, 1],
    [1024, 14, 256, 1, 1, 0, 5],
    [256, 14, 256, 3, 1, 1, 5],
    [1024, 14, 512, 1, 1, 0, 1],
    [512, 14, 512, 3, 2, 1, 1],
    [512, 7, 2048, 1, 1, 0, 3],
    [1024, 14, 2048, 1, 2, 0, 1],
    [2048, 7, 512, 1, 1, 0, 2],
    [512, 7, 512, 3, 1, 1, 2],
];

#[test]
fn resnet50_tasks_have_the_conv_shapes_and_counts_of_the_table() {
    let tasks = tasks_of("resnet50", 1);
    let mut by_shape: BTreeMap<[i64; 6], i64> = BTreeMap::new();
    let mut conv_flop = 0u64;
    for t in tasks.iter().filter(|t| t.anchor_kind == "conv2d") {
        let w = anchor(t);
        let p = |k: &str| w.param(k).unwrap_or(-1);
        assert_eq!(p("h"), p("w"), "{}", t.name);
        let key = [p("ci"), p("h"), p("co"), p("kernel"), p("stride"), p("pad")];
        *by_shape.entry(key).or_default() += t.weight as i64;
        conv_flop += t.weight as u64 * w.flop();
    }
    let want: BTreeMap<[i64; 6], i64> = RESNET50_V15
        .iter()
        .map(|r| ([r[0], r[1], r[2], r[3], r[4], r[5]], r[6]))
        .collect();
    assert_eq!(by_shape, want);
    // 53 convs, 8.17 GFLOP (2 per MAC).
    assert_eq!(weighted(&tasks, "conv2d"), 53);
    assert!(
        (8.16e9..8.18e9).contains(&(conv_flop as f64)),
        "{conv_flop}"
    );
    // The same 1x1 64->256 conv appears as a projection (conv + bias) and as the last conv
    // of a block (conv + bias + add + ReLU): two tasks, so 24 conv tasks for 23 shapes.
    assert_eq!(
        tasks.iter().filter(|t| t.anchor_kind == "conv2d").count(),
        24
    );
    let kinds: BTreeMap<&str, usize> = tasks.iter().fold(BTreeMap::new(), |mut m, t| {
        *m.entry(t.kind.as_str()).or_default() += t.weight;
        m
    });
    assert_eq!(kinds.get("conv2d+bias"), Some(&4), "{kinds:?}");
    assert_eq!(kinds.get("conv2d+bias+add+relu"), Some(&16), "{kinds:?}");
    assert_eq!(kinds.get("conv2d+bias+relu"), Some(&33), "{kinds:?}");
    // The non-conv tasks.
    let specs: Vec<&str> = tasks.iter().filter_map(|t| t.spec.as_deref()).collect();
    assert_eq!(
        specs,
        [
            "maxpool:n=1,h=112,w=112,c=64,kernel=3,stride=2,pad=1",
            "avgpool:n=1,h=7,w=7,c=2048",
            "dense:n=1,in=2048,out=1000",
        ]
    );
    assert_eq!(tasks.len(), 27);
    let total: u64 = tasks.iter().map(|t| t.weight as u64 * t.flop()).sum();
    assert!((8.18e9..8.25e9).contains(&(total as f64)), "{total}");
}

#[test]
fn mobilenet_v2_tasks_match_the_onnx_model() {
    let tasks = tasks_of("mobilenet-v2", 1);
    // make_models.py: 52 convs (17 depthwise), 30 distinct conv shapes, 0.599 GFLOP of
    // convs and 0.00256 of Gemm.
    assert_eq!(
        weighted(&tasks, "conv2d") + weighted(&tasks, "depthwise_conv2d"),
        52
    );
    assert_eq!(weighted(&tasks, "depthwise_conv2d"), 17);
    let conv_tasks: Vec<&Task> = tasks
        .iter()
        .filter(|t| t.anchor_kind.contains("conv2d"))
        .collect();
    assert_eq!(conv_tasks.len(), 30);
    let conv_flop: u64 = conv_tasks
        .iter()
        .map(|t| t.weight as u64 * anchor(t).flop())
        .sum();
    assert!(
        (0.595e9..0.603e9).contains(&(conv_flop as f64)),
        "{conv_flop}"
    );
    assert!(tasks
        .iter()
        .any(|t| t.kind == "depthwise_conv2d+bias+relu6" && t.weight == 4));
    assert!(tasks.iter().any(|t| t.kind == "conv2d+bias+add"));
    assert_eq!(
        tasks.last().and_then(|t| t.spec.as_deref()),
        Some("dense:n=1,in=1280,out=1000")
    );
    assert_eq!(tasks.len(), 32);
}

#[test]
fn bert_base_has_nine_tasks_and_about_1_9_gflop_per_layer() {
    let tasks = tasks_of("bert-base", 1);
    let got: Vec<(&str, usize)> = tasks.iter().map(|t| (t.kind.as_str(), t.weight)).collect();
    assert_eq!(
        got,
        [
            ("dense+split_heads", 24), // Q and V: the same subgraph
            ("dense+split_heads", 12), // K, transposed
            ("batch_matmul+mul", 12),
            ("softmax", 12),
            ("batch_matmul+merge_heads", 12),
            ("dense+add", 12),
            ("layer_norm", 24),
            ("dense+gelu", 12),
            ("dense+add", 12),
        ]
    );
    // Matmul FLOPs of one layer (2 per MAC): 4 x 128x768x768 + 2 x 128x768x3072 dense,
    // 2 x 12x128x128x64 batch matmul = 1.862 GFLOP; BERT-base's 12 layers: 22.3 GFLOP.
    let mm: u64 = tasks
        .iter()
        .filter(|t| t.anchor_kind == "dense" || t.anchor_kind == "batch_matmul")
        .map(|t| t.weight as u64 * anchor(t).flop())
        .sum();
    let per_layer = 2 * (4 * 128 * 768 * 768 + 2 * 128 * 768 * 3072 + 2 * 12 * 128 * 128 * 64);
    // The dense FLOPs include the bias add (one per output).
    let bias = 4 * 128 * 768 + 128 * 3072 + 128 * 768;
    assert_eq!(mm, 12 * (per_layer + bias) as u64);
    let total: u64 = tasks.iter().map(|t| t.weight as u64 * t.flop()).sum();
    assert!((22.3e9..22.6e9).contains(&(total as f64)), "{total}");
    assert_eq!(
        tasks[3].spec.as_deref(),
        Some("softmax:m=1536,n=128"),
        "softmax is a plain op"
    );
}

#[test]
fn batch_scales_every_network() {
    for name in networks::NAMES {
        let one = tasks_of(name, 1);
        let four = tasks_of(name, 4);
        assert_eq!(one.len(), four.len(), "{name}");
        let flop = |ts: &[Task]| ts.iter().map(|t| t.weight as u64 * t.flop()).sum::<u64>();
        let (a, b) = (flop(&one) as f64, flop(&four) as f64);
        assert!((b / a - 4.0).abs() < 0.01, "{name}: {a} -> {b}");
    }
    assert!(tasks_of("resnet50", 4)[0].name.starts_with("c2d:n=4,h=224"));
    assert!(networks::lookup("resnet50", 0).is_err());
    assert!(matches!(
        networks::lookup("vgg16", 1),
        Err(IrError::BadSpec { .. })
    ));
    assert!(networks::lookup("MobileNet_V2", 1).is_ok());
}

#[test]
fn identical_subgraphs_share_a_key_and_single_ops_are_the_registry_dags() {
    for name in networks::NAMES {
        let net = networks::lookup(name, 1).expect("network");
        let tasks = networks::extract_tasks(&net).expect("tasks");
        let groups = networks::partition(&net);
        assert_eq!(
            groups.len(),
            tasks.iter().map(|t| t.weight).sum::<usize>(),
            "{name}"
        );
        // Every subgraph's DAG is exactly one task's, and weights count them.
        let mut seen = vec![0usize; tasks.len()];
        for g in &groups {
            let key = networks::subgraph_dag(&net, g).expect("dag").workload_key();
            let hits: Vec<usize> = (0..tasks.len())
                .filter(|&k| tasks[k].workload_key() == key)
                .collect();
            assert_eq!(hits.len(), 1, "{name}");
            seen[hits[0]] += 1;
        }
        let weights: Vec<usize> = tasks.iter().map(|t| t.weight).collect();
        assert_eq!(seen, weights, "{name}");
        for t in &tasks {
            assert_eq!(t.occurrences.len(), t.weight);
            if let Some(spec) = &t.spec {
                let w = tessel_workloads::lookup(spec).expect("the spec resolves");
                assert_eq!(w.dag, t.dag, "{}", t.name);
                assert_eq!(&t.name, spec);
            } else {
                assert!(t.name.contains('+') || t.name.starts_with("layernorm:"));
            }
        }
        // Every computing layer is in exactly one subgraph.
        let mut count = vec![0; net.len()];
        for g in &groups {
            for l in &g.layers {
                count[l.index()] += 1;
            }
        }
        for id in net.layers() {
            let in_none = matches!(net.node(id).layer, Layer::Input | Layer::Reshape(_));
            assert_eq!(
                count[id.index()],
                usize::from(!in_none),
                "{}",
                net.node(id).name
            );
        }
    }
}

#[test]
fn epilogues_fuse_into_their_producer_only_when_nothing_else_reads_it() {
    let net = networks::lookup("resnet50", 1).expect("network");
    let groups = networks::partition(&net);
    let names = |g: &networks::Subgraph| -> Vec<String> {
        g.layers.iter().map(|&l| net.node(l).name.clone()).collect()
    };
    let find = |first: &str| {
        groups
            .iter()
            .find(|g| net.node(g.anchor()).name == first)
            .map(names)
            .unwrap_or_default()
    };
    assert_eq!(
        find("layer1.0.downsample"),
        ["layer1.0.downsample", "layer1.0.downsample.bias"]
    );
    assert_eq!(
        find("layer1.0.conv3"),
        [
            "layer1.0.conv3",
            "layer1.0.conv3.bias",
            "layer1.0.conv3.add",
            "layer1.0.conv3.relu"
        ]
    );
    // A ReLU whose input is also read elsewhere starts its own task.
    let mut b = NetworkBuilder::new("toy", 1);
    let x = b.input("x", &[1, 8, 8, 4]).expect("input");
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
        .expect("conv");
    let r = b.add("relu", Layer::Relu, &[c]).expect("relu");
    b.add("sum", Layer::Add, &[r, c]).expect("add");
    let toy = b.build();
    let g: Vec<Vec<String>> = networks::partition(&toy)
        .iter()
        .map(|g| g.layers.iter().map(|&l| toy.node(l).name.clone()).collect())
        .collect();
    assert_eq!(g, [vec!["conv"], vec!["relu", "sum"]]);
    let tasks = networks::extract_tasks(&toy).expect("tasks");
    assert_eq!(tasks[1].name, "relu:1x8x8x4+add");
    assert_eq!(
        tasks[0].spec.as_deref(),
        Some("c2d:n=1,h=8,w=8,ci=4,co=4,kernel=3,stride=1,pad=1")
    );
}

#[test]
fn a_named_output_that_is_also_read_ends_its_subgraph() {
    let build = |named: bool| {
        let mut b = NetworkBuilder::new("toy", 1);
        let x = b.input("x", &[4, 8]).expect("input");
        let d = b
            .add("dense", Layer::Dense { units: 16 }, &[x])
            .expect("dense");
        let r = b.add("relu", Layer::Relu, &[d]).expect("relu");
        if named {
            b.set_outputs(&[r, d]).expect("outputs");
        }
        b.build()
    };
    let groups = |net: &Network| -> Vec<Vec<String>> {
        networks::partition(net)
            .iter()
            .map(|g| g.layers.iter().map(|&l| net.node(l).name.clone()).collect())
            .collect()
    };
    let plain = build(false);
    assert_eq!(groups(&plain), [vec!["dense", "relu"]]);
    let named = build(true);
    assert_eq!(groups(&named), [vec!["dense"], vec!["relu"]]);
    let outputs: Vec<&str> = named
        .output_layers()
        .iter()
        .map(|&l| named.node(l).name.as_str())
        .collect();
    assert_eq!(outputs, ["relu", "dense"]);
    // An input is not an output.
    let mut b = NetworkBuilder::new("bad", 1);
    let x = b.input("x", &[4, 8]).expect("input");
    let e = b.set_outputs(&[x]).expect_err("an input as output");
    assert!(e.to_string().contains("input cannot be an output"), "{e}");
}

#[test]
fn bad_layers_are_errors_naming_the_layer() {
    let mut b = NetworkBuilder::new("bad", 1);
    let x = b.input("x", &[1, 8, 8, 4]).expect("input");
    let e = b
        .add(
            "big",
            Layer::Conv2d {
                out_channels: 4,
                kernel: 11,
                stride: 1,
                pad: 0,
                dilation: 1,
                groups: 1,
            },
            &[x],
        )
        .expect_err("kernel larger than the input");
    assert!(e.to_string().contains("big"), "{e}");
    let e = b
        .add("two", Layer::Add, &[x])
        .expect_err("add takes 2 inputs");
    assert!(e.to_string().contains("two"), "{e}");
    let e = b
        .add("view", Layer::Reshape(vec![3, 5]), &[x])
        .expect_err("element count differs");
    assert!(e.to_string().contains("reshape"), "{e}");
    assert!(b.input("x", &[1]).is_err(), "duplicate name");
}

/// A small network with every conv-net layer kind and a small BERT with batch 2.
fn small_networks() -> Vec<Network> {
    let mut b = NetworkBuilder::new("small-cnn", 2);
    let x = b.input("x", &[2, 9, 9, 3]).expect("input");
    let conv = |co, k, s| Layer::Conv2d {
        out_channels: co,
        kernel: k,
        stride: s,
        pad: k / 2,
        dilation: 1,
        groups: 1,
    };
    let mut add = |name: &str, l: Layer, i: &[networks::LayerId]| b.add(name, l, i).expect(name);
    let c = add("c1", conv(8, 3, 2), &[x]);
    let c = add("c1.bias", Layer::BiasAdd, &[c]);
    let c = add("c1.relu", Layer::Relu, &[c]);
    let p = add(
        "pool",
        Layer::MaxPool2d {
            kernel: 3,
            stride: 2,
            pad: 1,
        },
        &[c],
    );
    let d = add(
        "dw",
        Layer::DepthwiseConv2d {
            kernel: 3,
            stride: 1,
            pad: 1,
        },
        &[p],
    );
    let d = add("dw.bias", Layer::BiasAdd, &[d]);
    let d = add("dw.relu6", Layer::Relu6, &[d]);
    let s = add("proj", conv(8, 1, 1), &[p]);
    let s = add("proj.bias", Layer::BiasAdd, &[s]);
    let y = add("c2", conv(8, 1, 1), &[d]);
    let y = add("c2.bias", Layer::BiasAdd, &[y]);
    let y = add("c2.add", Layer::Add, &[y, s]);
    let y = add("c2.relu", Layer::Relu, &[y]);
    let g = add("gap", Layer::GlobalAvgPool, &[y]);
    let f = add("flat", Layer::Reshape(vec![2, 8]), &[g]);
    add("fc", Layer::Dense { units: 5 }, &[f]);
    let cnn = b.build();
    let bert = networks::bert(BertConfig {
        batch: 2,
        seq_len: 4,
        layers: 1,
        hidden: 8,
        heads: 2,
        ffn: 12,
    })
    .expect("small bert");
    // Squeeze-excite (a broadcast product by a [N,1,1,C] gate), a grouped transposed
    // convolution with a hard sigmoid, and a reversed broadcast division by a row.
    let mut b = NetworkBuilder::new("small-se", 1);
    let x = b.input("x", &[1, 6, 6, 4]).expect("input");
    let mut add = |name: &str, l: Layer, i: &[networks::LayerId]| b.add(name, l, i).expect(name);
    let c = add("c", conv(4, 3, 1), &[x]);
    let g = add("gap", Layer::GlobalAvgPool, &[c]);
    let g = add("fc", conv(4, 1, 1), &[g]);
    let g = add("gate", Layer::Sigmoid, &[g]);
    let se = Layer::Broadcast {
        op: networks::BinaryOp::Mul,
        reversed: false,
    };
    let y = add("se", se, &[c, g]);
    let up = Layer::ConvTranspose2d {
        out_channels: 6,
        kernel: 3,
        stride: 2,
        pad: 1,
        output_padding: 1,
        groups: 2,
    };
    let u = add("up", up, &[y]);
    let u = add(
        "hs",
        Layer::HardSigmoid {
            alpha: 0.2,
            beta: 0.5,
        },
        &[u],
    );
    let row = add("row", Layer::Reshape(vec![1, 1, 1, 4]), &[g]);
    let div = Layer::Broadcast {
        op: networks::BinaryOp::Div,
        reversed: true,
    };
    add("rdiv", div, &[y, row]);
    let _ = u;
    let se = b.build();
    vec![cnn, bert, se]
}

#[test]
fn every_kind_of_task_lowers_and_runs_like_the_evaluator() {
    let mut kinds = Vec::new();
    for net in small_networks() {
        for t in networks::extract_tasks(&net).expect("tasks") {
            let dag = Arc::new(t.dag.clone());
            let inputs = eval::random_inputs(&dag, 7);
            let want = eval::evaluate(&dag, &inputs).expect("evaluates");
            assert!(want.iter().flatten().all(|v| v.is_finite()), "{}", t.name);
            let nest = lower(&State::new(dag.clone())).expect("lowers");
            let got = testing::run_interp(&nest, &inputs).expect("runs");
            testing::check_close(&got, &want, 1e-5, 1e-4)
                .unwrap_or_else(|e| panic!("{}: {e}", t.name));
            // And a few random legal schedules of it.
            for seed in 0..4 {
                let state = testing::random_state(
                    &dag,
                    &mut rng::seeded(seed),
                    &testing::Limits::default(),
                );
                let nest = lower(&state).unwrap_or_else(|e| panic!("{}: {e}", t.name));
                let got = testing::run_interp(&nest, &inputs).expect("runs");
                testing::check_close(&got, &want, 1e-5, 1e-4)
                    .unwrap_or_else(|e| panic!("{} seed {seed}: {e}", t.name));
            }
            kinds.push(t.kind.clone());
        }
    }
    kinds.sort();
    kinds.dedup();
    for k in [
        "conv2d+bias+relu",
        "conv2d+bias+add+relu",
        "conv2d+bias",
        "depthwise_conv2d+bias+relu6",
        "max_pool2d",
        "global_avg_pool",
        "dense",
        "dense+split_heads",
        "batch_matmul+mul",
        "softmax",
        "batch_matmul+merge_heads",
        "dense+add",
        "layer_norm",
        "dense+gelu",
        "broadcast_mul",
        "conv2d_transpose+hard_sigmoid",
        "broadcast_rdiv",
    ] {
        assert!(kinds.iter().any(|x| x == k), "no {k} task in {kinds:?}");
    }
}

#[test]
fn the_network_ops_compute_their_definitions() {
    let mut b = DagBuilder::new();
    let x = b.placeholder("x", &[2, 6]);
    let g = b.placeholder("gamma", &[6]);
    let be = b.placeholder("beta", &[6]);
    let ln = networks::layer_norm(&mut b, &x, &g, &be, 1e-5).expect("ln");
    let ge = networks::gelu(&mut b, &ln).expect("gelu");
    let r6 = networks::relu6(&mut b, &ge).expect("relu6");
    networks::scale(&mut b, &r6, 3.0).expect("scale");
    let dag = b.build().expect("dag");
    let xs: Vec<f32> = (0..12).map(|i| (i as f32 - 5.0) * 0.7).collect();
    let gs: Vec<f32> = (0..6).map(|i| 1.0 + i as f32).collect();
    let bs: Vec<f32> = (0..6).map(|i| 0.5 - i as f32 * 0.1).collect();
    let out = eval::evaluate(&dag, &[xs.clone(), gs.clone(), bs.clone()]).expect("evaluates");
    for row in 0..2 {
        let r = &xs[row * 6..row * 6 + 6];
        let mean = r.iter().sum::<f32>() / 6.0;
        let var = r.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / 6.0;
        for j in 0..6 {
            let n = (r[j] - mean) / (var + 1e-5).sqrt() * gs[j] + bs[j];
            let c = (2.0f32 / std::f32::consts::PI).sqrt();
            let gelu = 0.5 * n * (1.0 + (c * (n + 0.044715 * n * n * n)).tanh());
            let want = gelu.clamp(0.0, 6.0) * 3.0;
            let got = out[0][row * 6 + j];
            assert!((got - want).abs() < 1e-4, "[{row},{j}] {got} vs {want}");
        }
    }
    // Splitting into heads and merging them back is the identity, at batch 1 and 3.
    for batch in [1, 3] {
        let (seq, heads, dim) = (4, 2, 3);
        let mut b = DagBuilder::new();
        let x = b.placeholder("x", &[batch * seq, heads * dim]);
        let s = networks::split_heads(&mut b, &x, heads, seq, false).expect("split");
        assert_eq!(s.shape, [batch * heads, seq, dim]);
        networks::merge_heads(&mut b, &s, heads).expect("merge");
        let dag = b.build().expect("dag");
        let xs: Vec<f32> = (0..batch * seq * heads * dim).map(|i| i as f32).collect();
        let out = eval::evaluate(&dag, std::slice::from_ref(&xs)).expect("evaluates");
        assert_eq!(out[0], xs, "batch {batch}");
        // The transposed split puts the sequence last: out[bh, d, s].
        let mut b = DagBuilder::new();
        let x = b.placeholder("x", &[batch * seq, heads * dim]);
        networks::split_heads(&mut b, &x, heads, seq, true).expect("split");
        let dag = b.build().expect("dag");
        let out = eval::evaluate(&dag, std::slice::from_ref(&xs)).expect("evaluates");
        let (bi, h, d, s) = (batch - 1, 1, 2, 3);
        let got = out[0][(((bi * heads + h) * dim + d) * seq + s) as usize];
        assert_eq!(
            got,
            xs[((bi * seq + s) * heads * dim + h * dim + d) as usize]
        );
    }
}

#[test]
fn network_tasks_resolve_as_workload_specs() {
    let net = tessel_workloads::networks::lookup("resnet50", 1).expect("resnet50");
    let tasks = tessel_workloads::networks::extract_tasks(&net).expect("tasks");
    let t = &tasks[4];
    let spec = format!("resnet50@1/{}", t.name);
    let w = tessel_workloads::lookup(&spec).expect("a task spec resolves");
    assert_eq!(w.dag.workload_key(), t.workload_key());
    assert_eq!(w.spec(), spec);
    assert_eq!(
        tessel_workloads::lookup(&w.spec()).expect("round trip").dag,
        w.dag
    );
    let e = tessel_workloads::lookup("resnet50@1/no-such-task").expect_err("unknown task");
    assert!(
        e.to_string().contains("no task named `no-such-task`"),
        "{e}"
    );
}

/// A task name as `tessel tasks` prints it, without its network, resolves to the task of the
/// first built-in network that has it (batch overrides included); a fused name that no network
/// has is a named error.
#[test]
fn a_task_name_without_its_network_resolves_to_the_network_task() {
    let bare = "c2d:n=1,h=56,w=56,ci=64,co=256,kernel=1,stride=1,pad=0+bias+add+relu";
    let w = tessel_workloads::lookup(bare).expect("a bare task name resolves");
    assert_eq!(w.name, format!("resnet50@1/{bare}"));
    let full = tessel_workloads::lookup(&w.name).expect("the network task");
    assert_eq!(w.dag, full.dag);
    let bare2 = bare.replace("n=1", "n=2");
    let b2 = tessel_workloads::lookup_with_batch(&bare2, 2).expect("at batch 2");
    assert_eq!(b2.name, format!("resnet50@2/{bare2}"));
    let mobile = "c2d:n=1,h=56,w=56,ci=96,co=24,kernel=1,stride=1,pad=0+bias";
    assert_eq!(
        tessel_workloads::lookup(mobile)
            .expect("a MobileNet-V2 task")
            .name,
        format!("mobilenet-v2@1/{mobile}")
    );
    let e = tessel_workloads::lookup("c2d:n=1,h=9,w=9,ci=3,co=5,kernel=1,stride=1,pad=0+bias")
        .expect_err("no network has this task");
    assert!(e.to_string().contains("no built-in network"), "{e}");
}

/// The layers the ONNX importer added, through the reference evaluator on values worked out
/// by hand: an embedding lookup (an id outside the table gives a zero row), a constant
/// addition, a reversing slice, a concatenation, and the sigmoid / tanh / exact GELU.
#[test]
fn embedding_slice_concat_and_activations_evaluate_to_hand_values() {
    use tessel_workloads::networks::{evaluate, ConstTensor, Layer, NetworkBuilder, Weights};
    let mut b = NetworkBuilder::new("layers", 1);
    let ids = b.input("ids", &[3]).unwrap();
    let emb = b
        .add("emb", Layer::Embedding { vocab: 3, dim: 2 }, &[ids])
        .unwrap();
    let plus = b.add("plus", Layer::AddConst, &[emb]).unwrap();
    let rev = b
        .add(
            "rev",
            Layer::Slice {
                axis: 0,
                start: 2,
                step: -1,
                len: 3,
            },
            &[plus],
        )
        .unwrap();
    let cat = b
        .add("cat", Layer::Concat { axis: 1, inputs: 2 }, &[rev, emb])
        .unwrap();
    let sig = b.add("sig", Layer::Sigmoid, &[cat]).unwrap();
    let tanh = b.add("tanh", Layer::Tanh, &[sig]).unwrap();
    b.add("gelu", Layer::GeluErf, &[tanh]).unwrap();
    let net = b.build();
    let mut w = Weights::new();
    let table = vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0];
    w.insert("emb", "table", ConstTensor::new(vec![3, 2], table).unwrap());
    let c = vec![0.5, -0.5, 1.0, -1.0, 2.0, -2.0];
    w.insert("plus", "constant", ConstTensor::new(vec![3, 2], c).unwrap());
    // ids 2, 7 (outside the table: a zero row), 0.
    let out = evaluate(&net, &w, &[vec![2.0, 7.0, 0.0]]).unwrap();
    // emb = [[4, 5], [0, 0], [0, 1]]; plus = [[4.5, 4.5], [1, -1], [2, -1]];
    // rev = [[2, -1], [1, -1], [4.5, 4.5]]; cat = [rev | emb].
    let cat = [2.0, -1.0, 4.0, 5.0, 1.0, -1.0, 0.0, 0.0, 4.5, 4.5, 0.0, 1.0];
    let gelu = |x: f64| 0.5 * x * (1.0 + libm_erf(x / 2f64.sqrt()));
    let want: Vec<f64> = cat
        .iter()
        .map(|&x: &f64| gelu((1.0 / (1.0 + (-x).exp())).tanh()))
        .collect();
    assert_eq!(out[0].len(), 12);
    for (g, w) in out[0].iter().zip(&want) {
        assert!((*g as f64 - w).abs() < 1e-6, "{:?} vs {want:?}", out[0]);
    }
}

/// erf by its series (enough terms for |x| <= 1, where the test's values lie).
fn libm_erf(x: f64) -> f64 {
    let mut sum = 0.0;
    let mut term = x;
    for n in 0..30 {
        sum += term / (2 * n + 1) as f64;
        term *= -x * x / (n + 1) as f64;
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

/// The broadcast layer on a network through the reference evaluator, against the numpy
/// rule written out: `x[2,3,4] (op) y` for `y` of shapes `[1,3,1]`, `[4]`, `[1,1,1]`, every
/// op both ways; HardSigmoid clamps. The broadcast joins its producer's task (a relu here)
/// when it reads that task's output first, as any epilogue.
#[test]
fn broadcast_layers_compute_numpy_broadcasting() {
    use tessel_workloads::networks::{evaluate, BinaryOp, Weights};
    let xs: Vec<f32> = (0..24).map(|i| i as f32 * 0.25 - 2.0).collect();
    for yshape in [vec![1i64, 3, 1], vec![4], vec![1, 1, 1]] {
        let n: i64 = yshape.iter().product();
        let ys: Vec<f32> = (0..n).map(|i| 0.5 + i as f32).collect();
        // y's flat index for x's (a, b, c), aligned right, 0 where y has extent 1.
        let yat = |a: usize, b: usize, c: usize| -> f32 {
            let idx = [a, b, c];
            let off = 3 - yshape.len();
            let mut k = 0;
            for (j, &d) in yshape.iter().enumerate() {
                let i = if d == 1 { 0 } else { idx[off + j] };
                k = k * d as usize + i;
            }
            ys[k]
        };
        for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div] {
            for reversed in [false, true] {
                let mut b = NetworkBuilder::new("bcast", 1);
                let x = b.input("x", &[2, 3, 4]).unwrap();
                let y = b.input("y", &yshape).unwrap();
                let r = b.add(
                    "relu",
                    Layer::HardSigmoid {
                        alpha: 0.25,
                        beta: 0.5,
                    },
                    &[x],
                );
                let r = r.unwrap();
                let layer = Layer::Broadcast { op, reversed };
                let out = b.add("op", layer, &[r, y]).unwrap();
                let net = b.build();
                assert_eq!(net.node(out).shape, [2, 3, 4]);
                let tasks = networks::extract_tasks(&net).unwrap();
                assert_eq!(
                    tasks.len(),
                    1,
                    "the broadcast joins the hard sigmoid's task"
                );
                let got = evaluate(&net, &Weights::new(), &[xs.clone(), ys.clone()]).unwrap();
                for a in 0..2 {
                    for bb in 0..3 {
                        for c in 0..4 {
                            let h = (xs[(a * 3 + bb) * 4 + c] * 0.25 + 0.5).clamp(0.0, 1.0);
                            let v = yat(a, bb, c);
                            let (l, rr) = if reversed { (v, h) } else { (h, v) };
                            let want = match op {
                                BinaryOp::Add => l + rr,
                                BinaryOp::Sub => l - rr,
                                BinaryOp::Mul => l * rr,
                                BinaryOp::Div => l / rr,
                            };
                            let g = got[0][(a * 3 + bb) * 4 + c];
                            assert!(
                                // A clamped zero divides to infinity on both sides.
                                g == want || (g - want).abs() <= 1e-6 * want.abs().max(1.0),
                                "{op:?} reversed {reversed} y{yshape:?} [{a},{bb},{c}]: {g} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }
    // Shapes that do not broadcast to the first input's are an error naming the layer.
    let mut b = NetworkBuilder::new("bad", 1);
    let x = b.input("x", &[2, 3]).unwrap();
    let y = b.input("y", &[2, 1]).unwrap();
    let layer = Layer::Broadcast {
        op: BinaryOp::Add,
        reversed: false,
    };
    let e = b
        .add("wide", layer.clone(), &[y, x])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("wide") && e.contains("[2, 3] does not broadcast to [2, 1]"),
        "{e}"
    );
}

/// A grouped transposed convolution equals, group by group, the ungrouped one on that
/// group's input channels and weights (reference evaluator); with groups 1 the layer's DAG
/// and task name are unchanged.
#[test]
fn grouped_conv_transpose_is_the_ungrouped_one_per_group() {
    use tessel_workloads::networks::{evaluate, ConstTensor, Weights};
    let (h, ci, co, k, groups) = (4i64, 4i64, 6i64, 3i64, 2i64);
    let (cig, cog) = (ci / groups, co / groups);
    let layer = |out_channels, groups| Layer::ConvTranspose2d {
        out_channels,
        kernel: k,
        stride: 2,
        pad: 1,
        output_padding: 1,
        groups,
    };
    let xs: Vec<f32> = (0..h * h * ci)
        .map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.3)
        .collect();
    let ws: Vec<f32> = (0..k * k * cig * co)
        .map(|i| ((i * 5 % 13) as f32 - 6.0) * 0.1)
        .collect();
    let run = |l: Layer, x: Vec<f32>, w: Vec<f32>, wshape: Vec<i64>, c: i64| {
        let mut b = NetworkBuilder::new("t", 1);
        let i = b.input("x", &[1, h, h, c]).unwrap();
        let o = b.add("up", l, &[i]).unwrap();
        let net = b.build();
        let mut weights = Weights::new();
        weights.insert("up", "weight", ConstTensor::new(wshape, w).unwrap());
        (
            net.node(o).shape.clone(),
            evaluate(&net, &weights, &[x]).unwrap().remove(0),
        )
    };
    let (shape, grouped) = run(
        layer(co, groups),
        xs.clone(),
        ws.clone(),
        vec![k, k, cig, co],
        ci,
    );
    assert_eq!(shape, [1, 8, 8, co]);
    for g in 0..groups {
        // The group's input channels and its weight columns.
        let x: Vec<f32> = xs
            .chunks(ci as usize)
            .flat_map(|px| px[(g * cig) as usize..((g + 1) * cig) as usize].to_vec())
            .collect();
        let w: Vec<f32> = ws
            .chunks(co as usize)
            .flat_map(|row| row[(g * cog) as usize..((g + 1) * cog) as usize].to_vec())
            .collect();
        let (_, want) = run(layer(cog, 1), x, w, vec![k, k, cig, cog], cig);
        for (p, out) in want.chunks(cog as usize).enumerate() {
            for (o, v) in out.iter().enumerate() {
                let got = grouped[p * co as usize + (g * cog) as usize + o];
                assert!(
                    (got - v).abs() < 1e-5,
                    "group {g} pixel {p} channel {o}: {got} vs {v}"
                );
            }
        }
    }
    // Groups 1 keeps the registry's t2d spec; groups 2 is named apart.
    let shapes: [&[i64]; 1] = [&[1, h, h, ci]];
    let plain = Layer::ConvTranspose2d {
        out_channels: co,
        kernel: k,
        stride: 2,
        pad: 1,
        output_padding: 0,
        groups: 1,
    };
    assert_eq!(
        plain.spec(&shapes).as_deref(),
        Some("t2d:n=1,h=4,w=4,ci=4,co=6,kernel=3,stride=2,pad=1")
    );
    assert_eq!(
        layer(co, 2).token(&shapes, false),
        "conv2d_transpose:co6k3s2p1o1g2"
    );
    assert_eq!(
        layer(co, 1).token(&shapes, false),
        "conv2d_transpose:co6k3s2p1o1"
    );
}

#[test]
fn every_task_travels_as_a_subgraph_spec_that_rebuilds_its_dag() {
    for name in networks::NAMES {
        let net = networks::lookup(name, 1).expect("network");
        for t in networks::extract_tasks(&net).expect("tasks") {
            let spec = networks::task_subgraph_spec(&net, &t).expect("spec");
            let w = tessel_workloads::lookup(&spec).expect("the spec resolves");
            assert_eq!(w.dag, t.dag, "{name}: {}", t.name);
            assert_eq!(w.spec(), spec);
            assert_eq!(w.op, networks::SUBGRAPH_OP);
        }
    }
}

#[test]
fn bad_subgraph_specs_are_errors_naming_the_problem() {
    let err = |spec: &str| tessel_workloads::lookup(spec).expect_err(spec).to_string();
    assert!(err("subgraph:{not json").contains("not a subgraph description"));
    assert!(err(r#"subgraph:{"inputs":[[1,4]],"layers":[]}"#).contains("at least one layer"));
    let forward =
        r#"subgraph:{"inputs":[[1,4]],"layers":[{"layer":"Relu","reads":[{"layer":0}]}]}"#;
    assert!(
        err(forward).contains("does not come before it"),
        "{}",
        err(forward)
    );
    let missing =
        r#"subgraph:{"inputs":[[1,4]],"layers":[{"layer":"Relu","reads":[{"input":3}]}]}"#;
    assert!(err(missing).contains("does not come before it"));
    let view =
        r#"subgraph:{"inputs":[[1,4]],"layers":[{"layer":{"Reshape":[4]},"reads":[{"input":0}]}]}"#;
    assert!(err(view).contains("input or a view"), "{}", err(view));
    let ok = r#"subgraph:{"inputs":[[2,4]],"layers":[{"layer":"Relu","reads":[{"input":0}]}]}"#;
    let relu = tessel_workloads::lookup(ok).expect("a one-layer subgraph");
    assert_eq!(relu.dag.outputs().len(), 1);
    let e = tessel_workloads::lookup_with_batch(ok, 4).expect_err("fixed shapes");
    assert!(e.to_string().contains("cannot be overridden"), "{e}");
}
