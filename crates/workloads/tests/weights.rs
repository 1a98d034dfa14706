//! Constant weights ("layout-free" placeholders): which inputs of the operator definitions
//! are marked constant, that the mark reaches the lowered loop nest, that it stays out of the
//! workload key, and that old JSON without it still reads.

use std::sync::Arc;
use tessel_ir::dag::{DagBuilder, Op, OpKind};
use tessel_ir::loop_nest::BufferScope;
use tessel_ir::{lower::lower, State};
use tessel_workloads::networks;

/// `(input name, constant)` of every input of workload `spec`, in order.
fn inputs(spec: &str) -> Vec<(String, bool)> {
    let w = tessel_workloads::lookup(spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
    w.dag
        .inputs()
        .into_iter()
        .map(|i| (w.dag.op(i).name.clone(), w.dag.is_constant(i)))
        .collect()
}

fn constants(spec: &str) -> Vec<String> {
    inputs(spec)
        .into_iter()
        .filter(|(_, c)| *c)
        .map(|(n, _)| n)
        .collect()
}

#[test]
fn convolution_weights_are_constant_and_their_inputs_are_not() {
    let nchw = "c2d-nchw:n=1,h=8,w=8,ci=4,co=8,kernel=3,stride=1,pad=1";
    for spec in [
        "c1d-1", "c2d-1", "c3d-1", "grp-1", "dil-1", "t2d-1", "cap-1", nchw,
    ] {
        let ins = inputs(spec);
        assert_eq!(ins.len(), 2, "{spec}: {ins:?}");
        assert!(!ins[0].1, "{spec}: the activation is not a weight: {ins:?}");
        assert!(ins[1].1, "{spec}: the weight is constant: {ins:?}");
    }
    assert_eq!(constants("dep-1"), ["placeholder_1"]);
    assert_eq!(
        constants("convlayer-1"),
        ["kernel", "bias", "bn_offset", "bn_scale"]
    );
}

#[test]
fn dense_weights_and_bias_are_constant() {
    assert_eq!(constants("dense:n=2,in=16,out=8"), ["weight", "bias"]);
}

#[test]
fn matmul_operands_are_not_weights() {
    for spec in [
        "gmm-1",
        "gmm-3",
        "tbg-1",
        "nrm-1",
        "gmm:b=1,n=64,m=64,k=64",
        "matmul:n=8,m=8,k=8",
        "softmax:m=4,n=8",
    ] {
        assert!(constants(spec).is_empty(), "{spec}: {:?}", inputs(spec));
    }
}

#[test]
fn network_tasks_mark_their_layer_parameters_constant() {
    let net = networks::lookup("resnet50", 1).expect("resnet50");
    let tasks = networks::extract_tasks(&net).expect("tasks");
    let conv = tasks
        .iter()
        .find(|t| t.anchor_kind == "conv2d")
        .expect("a conv task");
    let ins = conv.dag.inputs();
    assert!(!conv.dag.is_constant(ins[0]), "{}", conv.name);
    assert!(
        ins[1..].iter().all(|&i| conv.dag.is_constant(i)),
        "{}",
        conv.name
    );
    let dense = tasks
        .iter()
        .find(|t| t.anchor_kind == "dense")
        .expect("a dense task");
    let names: Vec<&str> = dense
        .dag
        .inputs()
        .into_iter()
        .filter(|&i| dense.dag.is_constant(i))
        .map(|i| dense.dag.op(i).name.as_str())
        .collect();
    assert_eq!(names, ["weight", "bias"], "{}", dense.name);
    // BERT's batch matmuls read two activations.
    let bert = networks::lookup("bert-base", 1).expect("bert");
    let tasks = networks::extract_tasks(&bert).expect("tasks");
    let bmm = tasks
        .iter()
        .find(|t| t.anchor_kind == "batch_matmul")
        .expect("a batch matmul task");
    assert!(
        bmm.dag.inputs().iter().all(|&i| !bmm.dag.is_constant(i)),
        "{}",
        bmm.name
    );
}

#[test]
fn the_mark_reaches_the_loop_nest_and_prints_as_in_const() {
    let w = tessel_workloads::lookup("c2d-3").expect("c2d-3");
    let nest = lower(&State::new(Arc::new(w.dag))).expect("lowers");
    let flags: Vec<(String, bool)> = nest
        .params
        .iter()
        .map(|&b| (nest.buffer(b).name.clone(), nest.buffer(b).constant))
        .collect();
    assert_eq!(
        flags,
        [
            ("inputs".to_string(), false),
            ("weight".to_string(), true),
            ("conv2d_nhwc".to_string(), false)
        ]
    );
    assert!(nest
        .buffers
        .iter()
        .all(|b| !b.constant || b.scope == BufferScope::Input));
    let text = nest.to_string();
    assert!(text.contains("weight: in const f32["), "{text}");
    assert!(text.contains("inputs: in f32["), "{text}");
}

#[test]
fn the_mark_is_not_part_of_the_workload_key() {
    let build = |weight: bool| {
        let mut b = DagBuilder::new();
        let x = b.placeholder("X", &[4, 8]);
        let w = if weight {
            b.weight("W", &[8, 2])
        } else {
            b.placeholder("W", &[8, 2])
        };
        b.reduce(
            "Y",
            &[("i", 4), ("j", 2)],
            &[("k", 8)],
            tessel_ir::dag::Reducer::Sum,
            |ax| x.at([ax[0].clone(), ax[2].clone()]) * w.at([ax[2].clone(), ax[1].clone()]),
        );
        b.build().expect("builds")
    };
    let (a, b) = (build(false), build(true));
    assert_ne!(a, b);
    assert_eq!(a.workload_key(), b.workload_key());
}

#[test]
fn old_json_reads_as_not_constant_and_compute_ops_cannot_be_constant() {
    let old: Op = serde_json::from_str(r#"{"name":"A","shape":[2],"kind":"Placeholder"}"#)
        .expect("old op reads");
    assert!(!old.constant);
    // Non-constant ops serialise as before; constant ones say so.
    assert!(!serde_json::to_string(&old)
        .expect("json")
        .contains("constant"));
    let w = Op {
        constant: true,
        ..old.clone()
    };
    let back: Op = serde_json::from_str(&serde_json::to_string(&w).expect("json")).expect("reads");
    assert!(back.constant);
    let dag = tessel_workloads::lookup("gmm-3").expect("gmm-3").dag;
    let mut ops = dag.ops().to_vec();
    let last = ops.len() - 1;
    assert!(matches!(ops[last].kind, OpKind::Compute(_)));
    ops[last].constant = true;
    assert!(tessel_ir::dag::ComputeDag::from_ops(ops).is_err());
}
