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

/// The BERT-base-shaped export of `make_testdata.py --bert-base PATH` (seq 128, random
/// weights, in the form torch exports HuggingFace's BertModel at opset 14; about 440 MB, not
/// committed) against the built-in `bert-base` (12 encoder layers, no embeddings): every
/// built-in task but one is a task of the import with the same name, weight and workload
/// key. The differences left, printed and checked:
///
/// * the built-in GELU is the tanh approximation (`dense+gelu`), the export's the exact erf
///   GELU (`dense+gelu_erf`, one stage as well): the same dense, another epilogue;
/// * the export has the embeddings the built-in network leaves out: the lookup with its
///   position and token-type additions (`embedding+add_const+add_const`) and one more layer
///   norm (25 instead of 24).
///
/// ```text
/// TESSEL_BERT_BASE=/tmp/bert_base.onnx cargo test --release -p tessel-onnx --test real_models -- --ignored --nocapture bert
/// ```
#[test]
#[ignore = "needs the BERT-base export (TESSEL_BERT_BASE)"]
fn bert_base_export_has_the_builtin_tasks_but_gelu_and_embeddings() {
    let path = std::env::var("TESSEL_BERT_BASE")
        .expect("set TESSEL_BERT_BASE to the export of make_testdata.py --bert-base");
    let start = Instant::now();
    let model =
        import_file(&path, &ImportOptions::default()).unwrap_or_else(|e| panic!("{path}: {e}"));
    println!(
        "{path}: imported in {:.3} s ({} layers, {} weights)",
        start.elapsed().as_secs_f64(),
        model.network.len(),
        model.weights.element_count()
    );
    let ours = networks::extract_tasks(&model.network).unwrap();
    let theirs = networks::extract_tasks(&networks::lookup("bert-base", 1).unwrap()).unwrap();
    let mut differences = Vec::new();
    for t in &theirs {
        match ours.iter().find(|o| o.workload_key() == t.workload_key()) {
            Some(o) if o.name == t.name && o.weight == t.weight => {
                println!("equal     {:>3} x {}", t.weight, t.name)
            }
            Some(o) => {
                println!(
                    "weight    {:>3} x {} (import: {})",
                    t.weight, t.name, o.weight
                );
                differences.push(format!("{} x{} vs x{}", t.kind, t.weight, o.weight));
            }
            None => {
                println!("built-in  {:>3} x {}", t.weight, t.name);
                differences.push(format!("built-in only: {}", t.kind));
            }
        }
    }
    for o in &ours {
        if !theirs.iter().any(|t| t.workload_key() == o.workload_key()) {
            println!("import    {:>3} x {}", o.weight, o.name);
            differences.push(format!("import only: {}", o.kind));
        }
    }
    assert_eq!(
        differences,
        [
            "layer_norm x24 vs x25",
            "built-in only: dense+gelu",
            "import only: embedding+add_const+add_const",
            "import only: dense+gelu_erf"
        ]
    );
}
