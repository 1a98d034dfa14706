//! `tessel run-network` end to end on the tiny built-in CNN.

mod common;

#[test]
fn tiny_cnn_builds_verifies_and_times_on_default_schedules() {
    let (v, text) = common::tessel_json(&[
        "run-network",
        "tiny-cnn",
        "--threads",
        "1",
        "--repeat",
        "3",
        "--alone",
        "2",
        "--json",
    ]);
    assert!(
        text.contains("fallbacks: 6 of 6 tasks run a default schedule"),
        "{text}"
    );
    assert!(
        text.contains("verify: matches the reference evaluator"),
        "{text}"
    );
    assert_eq!(v["fallbacks"].as_array().map(|a| a.len()), Some(6), "{v}");
    assert_eq!(v["launches"], 6);
    let err = v["max_abs_error"].as_f64().expect("verified");
    assert!(err < 1e-4, "{err}");
    let (arena, all) = (
        v["arena_bytes"].as_u64().expect("arena"),
        v["intermediates_bytes"].as_u64().expect("intermediates"),
    );
    assert!(arena > 0 && arena < all, "{arena} vs {all}");
    let tasks = v["tasks"].as_array().expect("tasks");
    assert_eq!(tasks.len(), 6);
    assert!(tasks
        .iter()
        .all(|t| t["source"] == "default" && t["estimate_ms"].is_null()));
    // --alone: every task also timed alone, hot.
    assert!(
        tasks
            .iter()
            .all(|t| t["alone_ms"].as_f64().is_some_and(|a| a > 0.0)),
        "{v}"
    );
    assert!(text.contains("alone: every launch's median of 2"), "{text}");
    // Calls its threads lost to other processes are retaken, and counted.
    assert!(text.contains("contended calls retaken"), "{text}");
    assert!(
        tasks.iter().all(|t| t["alone_contended_calls"].is_u64()),
        "{v}"
    );
    assert!(v["median_ms"].as_f64().expect("median") > 0.0);
    assert!(v["estimate_ms"].is_null());
}

#[test]
fn a_bad_target_or_records_file_is_a_clear_error() {
    let exe = env!("CARGO_BIN_EXE_tessel");
    let out = std::process::Command::new(exe)
        .args(["run-network", "tiny-cnn", "--target", "avx9"])
        .output()
        .expect("tessel runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("avx9"), "{err}");
    let out = std::process::Command::new(exe)
        .args([
            "run-network",
            "tiny-cnn",
            "--records",
            "/nonexistent/r.jsonl",
        ])
        .output()
        .expect("tessel runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot read records file /nonexistent/r.jsonl"),
        "{err}"
    );
}

/// An NCHW tensor (`shape` = n, c, h, w) in NHWC order.
fn nchw_to_nhwc(data: &[f32], shape: &[usize]) -> Vec<f32> {
    let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3]);
    let mut out = Vec::with_capacity(data.len());
    for b in 0..n {
        for y in 0..h {
            for x in 0..w {
                for ch in 0..c {
                    out.push(data[((b * c + ch) * h + y) * w + x]);
                }
            }
        }
    }
    out
}

/// A tensor of a committed expected-values file (`testdata/onnx/<model>.json`), NHWC when 4-D
/// (as Tessel holds images).
fn case_tensor(t: &serde_json::Value) -> Vec<f32> {
    let data: Vec<f32> = t["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let shape: Vec<usize> = t["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    if shape.len() == 4 {
        nchw_to_nhwc(&data, &shape)
    } else {
        data
    }
}

/// Runs `testdata/onnx/<name>.onnx` untuned through `tessel run-network` (with `extra`
/// arguments) on the inputs of its expected-values file, given in model order, and returns
/// the largest difference from onnxruntime's `outputs` (in the model's order, as the output
/// file holds them).
fn run_committed_model(name: &str, inputs: &[&str], outputs: &[&str], extra: &[&str]) -> f32 {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/onnx");
    let case: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join(format!("{name}.json"))).unwrap())
            .unwrap();
    let dir = std::env::temp_dir().join(format!("tessel-run-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (input_file, output_file) = (dir.join("x.bin"), dir.join("y.bin"));
    let bytes: Vec<u8> = inputs
        .iter()
        .flat_map(|i| case_tensor(&case["inputs"][*i]))
        .flat_map(|v| v.to_le_bytes())
        .collect();
    std::fs::write(&input_file, bytes).unwrap();
    let model = root.join(format!("{name}.onnx"));
    let mut args = vec![
        "run-network",
        model.to_str().unwrap(),
        "--threads",
        "1",
        "--repeat",
        "1",
        "--input-file",
        input_file.to_str().unwrap(),
        "--output-file",
        output_file.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(extra);
    let (_, text) = common::tessel_json(&args);
    assert!(text.contains("verify: matches"), "{name}: {text}");
    let got: Vec<f32> = std::fs::read(&output_file)
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let want: Vec<f32> = outputs
        .iter()
        .flat_map(|o| case_tensor(&case["outputs"][*o]))
        .collect();
    assert_eq!(got.len(), want.len(), "{name}: output lengths");
    std::fs::remove_dir_all(&dir).ok();
    got.iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max)
}

#[test]
fn every_committed_onnx_model_runs_untuned_and_gives_onnxruntimes_outputs() {
    /// A committed model: its name, its inputs and its outputs in model order, extra
    /// arguments.
    type Case<'a> = (&'a str, &'a [&'a str], &'a [&'a str], &'a [&'a str]);
    let cases: [Case; 17] = [
        ("conv_bias_relu", &["x"], &["y"], &[]),
        ("depthwise", &["x"], &["y"], &[]),
        ("residual", &["x"], &["y"], &[]),
        ("gemm", &["x"], &["y"], &["--input", "x:2x16"]),
        ("encoder", &["x"], &["y"], &[]),
        ("pool_activations", &["x"], &["y"], &[]),
        ("conv_transpose", &["x"], &["y"], &[]),
        ("split_slice", &["x"], &["y1", "y2"], &[]),
        ("split_opset11", &["x"], &["y"], &[]),
        // The pooler reads the last hidden state, which is an output too.
        (
            "bert_tiny",
            &["input_ids"],
            &["last_hidden_state", "pooler_output"],
            &[],
        ),
        ("grouped_dilated", &["x"], &["y"], &[]),
        // y1 is an output that the bias and ReLU giving y2 also read; the model lists y2 first.
        ("read_output", &["x"], &["y2", "y1"], &[]),
        ("se_block", &["x"], &["y"], &[]),
        ("attention_mask", &["x", "mask", "row"], &["y"], &[]),
        ("attention_mask_b2", &["x", "mask", "row"], &["y"], &[]),
        (
            "broadcast_sub_div",
            &["x", "m", "row", "k"],
            &["y", "z"],
            &[],
        ),
        ("conv_transpose_grouped", &["x"], &["y"], &[]),
    ];
    for (name, inputs, outputs, extra) in cases {
        let err = run_committed_model(name, inputs, outputs, extra);
        println!("{name}: max |tessel - onnxruntime| = {err:.3e}");
        assert!(err < 1e-4, "{name}: max |tessel - onnxruntime| = {err}");
    }
}

#[test]
fn an_onnx_input_file_of_the_wrong_size_is_refused_naming_the_sizes() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/onnx");
    let dir = std::env::temp_dir().join(format!("tessel-run-onnx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("x.bin");
    let model = root.join("conv_bias_relu.onnx");
    std::fs::write(&input, [0u8; 12]).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tessel"))
        .args(["run-network", model.to_str().unwrap(), "--input-file"])
        .arg(&input)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("12 bytes"), "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}
