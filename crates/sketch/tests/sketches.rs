//! Sketch generation: counts, shapes and golden text of the sketches of known workloads.

use std::path::PathBuf;
use std::sync::Arc;
use tessel_ir::dag::DagBuilder;
use tessel_ir::ops::{self, ConvParams};
use tessel_ir::{workloads, ComputeDag};
use tessel_sketch::{generate_sketches, HardwareParams, Sketch};

/// Fixed hardware so that the goldens do not depend on the machine.
fn hw() -> HardwareParams {
    HardwareParams::with_cores(4)
}

fn sketches_of(spec: &str) -> Vec<Sketch> {
    let w = workloads::lookup(spec).expect("known workload");
    generate_sketches(&Arc::new(w.dag), &hw()).expect("sketches")
}

/// Compares `text` with `tests/golden/<name>.txt`, rewriting it when `TESSEL_BLESS=1`.
fn check_golden(name: &str, text: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(format!("{name}.txt"));
    if std::env::var("TESSEL_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(&path, text).expect("write golden");
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("missing golden {} (run with TESSEL_BLESS=1)", path.display()));
    assert!(
        want == text,
        "sketches differ from {} (re-bless with TESSEL_BLESS=1 if intended)\n--- got:\n{text}",
        path.display()
    );
}

fn all_text(sketches: &[Sketch]) -> String {
    sketches.iter().map(|s| format!("{s}\n")).collect()
}

fn names(s: &Sketch) -> Vec<String> {
    s.state.stages().iter().map(|st| st.name.clone()).collect()
}

#[test]
fn gmm3_has_the_three_sketches_of_ansor() {
    let sk = sketches_of("gmm-3");
    print!("{}", all_text(&sk));
    assert_eq!(sk.len(), 3);
    for (k, s) in sk.iter().enumerate() {
        assert_eq!(s.id, k as u32);
        assert_eq!(s.state.sketch_id(), Some(k as u32));
        assert!(!s.state.is_concrete(), "a sketch has holes");
    }
    check_golden("gmm-3", &all_text(&sk));
}
