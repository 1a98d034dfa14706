//! Checks the operator library and the reference evaluator against the test vectors that
//! Apache TVM computed (`testdata/ops/` in this repository, see its README): for every instance, the
//! op built from its `params` must have the same input and output names and shapes, give
//! the same output on the same inputs (1e-5 absolute + 1e-4 relative), and count the same
//! FLOPs as TVM's `estimate_tir_flops`.

use serde_json::Value;
use std::path::PathBuf;
use tessel_ir::{eval, ComputeDag};
use tessel_workloads::ops::{self, ConvParams, Layout};

/// Where the vectors are: `$TESSEL_TESTDATA`, else the repository's own `testdata/ops`.
fn testdata_dir() -> PathBuf {
    match std::env::var_os("TESSEL_TESTDATA") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/ops"),
    }
}

fn int(params: &Value, key: &str) -> Result<i64, String> {
    params
        .get(key)
        .and_then(Value::as_i64)
        .ok_or_else(|| format!("params has no integer `{key}`"))
}

fn int_list(params: &Value, key: &str) -> Result<Vec<i64>, String> {
    params
        .get(key)
        .and_then(Value::as_array)
        .and_then(|a| a.iter().map(Value::as_i64).collect::<Option<Vec<_>>>())
        .ok_or_else(|| format!("params has no integer list `{key}`"))
}

fn shape_of(desc: &Value, which: &str, k: usize) -> Result<Vec<i64>, String> {
    desc[which][k]["shape"]
        .as_array()
        .and_then(|a| a.iter().map(Value::as_i64).collect::<Option<Vec<_>>>())
        .ok_or_else(|| format!("{which}[{k}] has no shape"))
}

/// Builds the DAG of one instance from its TVM function and parameters.
fn build(desc: &Value) -> Result<ComputeDag, String> {
    let p = &desc["params"];
    let op = desc["op"].as_str().unwrap_or("");
    let conv = |stride_key: &str| -> Result<ConvParams, String> {
        Ok(ConvParams::new(int(p, stride_key)?, int(p, "padding")?)
            .with_dilation(p.get("dilation").and_then(Value::as_i64).unwrap_or(1))
            .with_groups(p.get("groups").and_then(Value::as_i64).unwrap_or(1)))
    };
    let dag = match op {
        "te_workload.conv1d_nlc" => ops::conv1d_nlc_dag(
            int(p, "N")?,
            int(p, "L")?,
            int(p, "CI")?,
            int(p, "CO")?,
            int(p, "kernel_size")?,
            conv("stride")?,
        ),
        "te_workload.conv2d_nhwc" => ops::conv2d_nhwc_dag(
            int(p, "N")?,
            [int(p, "H")?, int(p, "W")?],
            int(p, "CI")?,
            int(p, "CO")?,
            int(p, "kernel_size")?,
            conv("stride")?,
        ),
        "te_workload.conv3d_ndhwc" => ops::conv3d_ndhwc_dag(
            int(p, "N")?,
            [int(p, "D")?, int(p, "H")?, int(p, "W")?],
            int(p, "CI")?,
            int(p, "CO")?,
            int(p, "kernel_size")?,
            conv("stride")?,
        ),
        "te_workload.batch_matmul_nkkm" => {
            ops::batch_matmul_nkkm_dag(int(p, "B")?, int(p, "N")?, int(p, "M")?, int(p, "K")?)
        }
        "te_workload.depthwise_conv2d_nhwc" => {
            if int(p, "factor")? != 1 {
                return Err("only channel multiplier 1 is supported".into());
            }
            ops::depthwise_conv2d_nhwc_dag(
                int(p, "N")?,
                [int(p, "H")?, int(p, "W")?],
                int(p, "C")?,
                int(p, "kernel_size")?,
                conv("stride")?,
            )
        }
        "te_workload.conv2d_transpose_nhwc" => ops::conv2d_transpose_nhwc_dag(
            int(p, "N")?,
            [int(p, "H")?, int(p, "W")?],
            int(p, "CI")?,
            int(p, "CO")?,
            int(p, "kernel_size")?,
            int(p, "stride")?,
            int(p, "padding")?,
        ),
        "te_workload.conv2d_capsule_nhwijc" => {
            if int(p, "capsule_size")? != 4 {
                return Err("only capsule_size 4 is supported".into());
            }
            ops::conv2d_capsule_nhwijc_dag(
                int(p, "N")?,
                [int(p, "H")?, int(p, "W")?],
                int(p, "CI")?,
                int(p, "CO")?,
                int(p, "kernel_size")?,
                int(p, "stride")?,
                int(p, "padding")?,
            )
        }
        "te_workload.norm_bmn" => ops::norm_bmn_dag(int(p, "B")?, int(p, "M")?, int(p, "N")?),
        "te_workload.conv2d_nhwc_bn_relu" => ops::conv2d_nhwc_bn_relu_dag(
            int(p, "N")?,
            [int(p, "H")?, int(p, "W")?],
            int(p, "CI")?,
            int(p, "CO")?,
            int(p, "kernel_size")?,
            conv("strides")?,
        ),
        "te_workload.transpose_batch_matmul" => ops::transpose_batch_matmul_dag(
            int(p, "batch")?,
            int(p, "seq_len")?,
            int(p, "n_head")?,
            int(p, "n_dim")?,
        ),
        "te_workload.matmul" => ops::matmul_dag(int(p, "n")?, int(p, "m")?, int(p, "k")?),
        "te_workload.conv2d_nchw" => {
            if int(p, "kh")? != int(p, "kw")? {
                return Err("only square kernels are supported".into());
            }
            ops::conv2d_nchw_dag(
                int(p, "n")?,
                [int(p, "h")?, int(p, "w")?],
                int(p, "ci")?,
                int(p, "co")?,
                int(p, "kh")?,
                conv("stride")?,
            )
        }
        "te_workload.softmax_mn" => ops::softmax_mn_dag(int(p, "m")?, int(p, "n")?),
        "te_workload.max_pool2d_nchw" => ops::max_pool2d_nchw_dag(
            int(p, "n")?,
            int(p, "h")?,
            int(p, "w")?,
            int(p, "ci")?,
            int(p, "padding")?,
        ),
        "topi.nn.pool2d" => {
            let layout = match p["layout"].as_str() {
                Some("NHWC") => Layout::Nhwc,
                Some("NCHW") => Layout::Nchw,
                other => return Err(format!("unsupported layout {other:?}")),
            };
            if p["pool_type"].as_str() != Some("max")
                || int_list(p, "dilation")? != [1, 1]
                || p["ceil_mode"].as_bool() != Some(false)
            {
                return Err("only max pooling, dilation 1, ceil_mode=False".into());
            }
            let (k, s, pad) = (
                int_list(p, "kernel")?,
                int_list(p, "stride")?,
                int_list(p, "padding")?,
            );
            let params = ops::Pool2dParams {
                kernel: [k[0], k[1]],
                stride: [s[0], s[1]],
                padding: [pad[0], pad[1], pad[2], pad[3]],
            };
            let mut b = tessel_ir::DagBuilder::new();
            let x = b.placeholder("data", &shape_of(desc, "inputs", 0)?);
            ops::max_pool2d(&mut b, &x, layout, params).map_err(|e| e.to_string())?;
            b.build()
        }
        "topi.nn.global_pool" => {
            let layout = match p["layout"].as_str() {
                Some("NHWC") => Layout::Nhwc,
                Some("NCHW") => Layout::Nchw,
                other => return Err(format!("unsupported layout {other:?}")),
            };
            if p["pool_type"].as_str() != Some("avg") {
                return Err("only average global pooling".into());
            }
            let s = shape_of(desc, "inputs", 0)?;
            ops::global_avg_pool_dag([s[0], s[1], s[2], s[3]], layout)
        }
        "topi.nn.dense" => {
            let (data, weight) = (shape_of(desc, "inputs", 0)?, shape_of(desc, "inputs", 1)?);
            ops::dense_dag(data[0], data[1], weight[0])
        }
        other => return Err(format!("unknown TVM function `{other}`")),
    };
    dag.map_err(|e| e.to_string())
}

fn read_f32(path: &PathBuf) -> Result<Vec<f32>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() % 4 != 0 {
        return Err(format!("{}: length is not a multiple of 4", path.display()));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// Checks one instance; `Err` says what differs.
fn check(dir: &std::path::Path, desc: &Value) -> Result<(), String> {
    let dag = build(desc)?;
    // Inputs: names and shapes in order.
    let inputs = dag.inputs();
    let expected_inputs = desc["inputs"].as_array().ok_or("no inputs list")?;
    if inputs.len() != expected_inputs.len() {
        return Err(format!(
            "{} inputs, TVM has {}",
            inputs.len(),
            expected_inputs.len()
        ));
    }
    let mut buffers = Vec::new();
    for (k, (&id, want)) in inputs.iter().zip(expected_inputs).enumerate() {
        let op = dag.op(id);
        let (name, shape) = (
            want["name"].as_str().unwrap_or(""),
            shape_of(desc, "inputs", k)?,
        );
        if op.name != name || op.shape != shape {
            return Err(format!(
                "input {k} is {} {:?}, TVM has {name} {shape:?}",
                op.name, op.shape
            ));
        }
        buffers.push(read_f32(
            &dir.join(want["file"].as_str().ok_or("no file")?),
        )?);
    }
    // Output: name and shape.
    let outputs = dag.outputs();
    let want = &desc["outputs"][0];
    let (name, shape) = (
        want["name"].as_str().unwrap_or(""),
        shape_of(desc, "outputs", 0)?,
    );
    let [out_id] = outputs.as_slice() else {
        return Err(format!("{} outputs, expected 1", outputs.len()));
    };
    let out_op = dag.op(*out_id);
    if out_op.name != name || out_op.shape != shape {
        return Err(format!(
            "output is {} {:?}, TVM has {name} {shape:?}",
            out_op.name, out_op.shape
        ));
    }
    // FLOPs as TVM estimates them.
    let tvm_flop = desc["flop_tvm_estimate"]
        .as_f64()
        .ok_or("no flop_tvm_estimate")?;
    if dag.flop_count() as f64 != tvm_flop {
        return Err(format!(
            "flop_count {} != TVM's estimate {tvm_flop}",
            dag.flop_count()
        ));
    }
    // Values.
    let expected = read_f32(&dir.join(want["file"].as_str().ok_or("no file")?))?;
    let got = eval::evaluate(&dag, &buffers).map_err(|e| e.to_string())?;
    let got = &got[0];
    if got.len() != expected.len() {
        return Err(format!(
            "{} output values, expected {}",
            got.len(),
            expected.len()
        ));
    }
    for (i, (&g, &e)) in got.iter().zip(&expected).enumerate() {
        let close = (g - e).abs() <= 1e-5 + 1e-4 * e.abs();
        if !close {
            return Err(format!("output[{i}] = {g}, TVM gives {e}"));
        }
    }
    Ok(())
}

#[test]
fn every_tvm_test_vector_matches() {
    let dir = testdata_dir();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) => panic!(
            "test vectors not found: looked in {} ({e}); set TESSEL_TESTDATA to the folder",
            dir.display()
        ),
    };
    let mut jsons: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    jsons.sort();
    assert!(
        !jsons.is_empty(),
        "no *.json test vectors in {}",
        dir.display()
    );
    let mut failures = Vec::new();
    for path in &jsons {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let desc: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{}: not JSON: {e}", path.display()));
                continue;
            }
        };
        let name = desc["name"].as_str().unwrap_or("?").to_string();
        if let Err(why) = check(&dir, &desc) {
            failures.push(format!("{name}: {why}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} instances fail:\n{}",
        failures.len(),
        jsons.len(),
        failures.join("\n")
    );
    eprintln!("{} TVM test vectors match", jsons.len());
}
