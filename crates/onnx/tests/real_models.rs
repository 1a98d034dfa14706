//! The ResNet-50 v1.5 and MobileNet-V2 exports of the onnxruntime anchor's `make_models.py`
//! (about 100 MB, not committed): their tasks must equal the built-in networks'. Ignored by
//! default; run with the directory holding the two files:
//!
//! ```text
//! TESSEL_ONNX_MODELS=/work/ort-anchor cargo test --release -p tessel-onnx --test real_models -- --ignored --nocapture
//! ```

use std::path::PathBuf;
use std::time::Instant;
use tessel_onnx::{import_file, ImportOptions};
use tessel_workloads::networks;

fn check(file: &str, builtin: &str) {
    let dir = std::env::var("TESSEL_ONNX_MODELS")
        .expect("set TESSEL_ONNX_MODELS to the models' directory");
    let path = PathBuf::from(dir).join(file);
    let start = Instant::now();
    let model =
        import_file(&path, &ImportOptions::default()).unwrap_or_else(|e| panic!("{file}: {e}"));
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{file}: imported in {seconds:.3} s ({} layers, {} weights)",
        model.network.len(),
        model.weights.element_count()
    );
    for line in &model.layout_changes {
        println!("  layout: {line}");
    }
    let ours = networks::extract_tasks(&model.network).unwrap();
    let theirs = networks::extract_tasks(&networks::lookup(builtin, 1).unwrap()).unwrap();
    let show = |t: &networks::Task| (t.name.clone(), t.weight, t.workload_key());
    let a: Vec<_> = ours.iter().map(show).collect();
    let b: Vec<_> = theirs.iter().map(show).collect();
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x, y, "{file}: task differs from {builtin}'s");
    }
    assert_eq!(
        a.len(),
        b.len(),
        "{file}: {} tasks, {builtin} has {}",
        a.len(),
        b.len()
    );
    println!(
        "{file}: {} tasks, equal to {builtin}'s (names, weights, workload keys)",
        a.len()
    );
}

#[test]
#[ignore = "needs the anchor's exports (TESSEL_ONNX_MODELS)"]
fn resnet50_export_has_the_builtin_tasks() {
    check("resnet50_v1.5.onnx", "resnet50");
}

#[test]
#[ignore = "needs the anchor's exports (TESSEL_ONNX_MODELS)"]
fn mobilenet_v2_export_has_the_builtin_tasks() {
    check("mobilenet_v2.onnx", "mobilenet-v2");
}
