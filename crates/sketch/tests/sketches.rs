//! Sketch generation: counts, shapes and golden text of the sketches of known workloads.

use std::path::PathBuf;
use std::sync::Arc;
use tessel_ir::dag::DagBuilder;
use tessel_ir::ComputeDag;
use tessel_sketch::{generate_sketches, HardwareParams, Sketch};
use tessel_workloads::ops::{self, ConvParams};

/// Fixed hardware so that the goldens do not depend on the machine: Ansor's sketches only
/// (the tensorized ones are tested in `tensorized.rs`).
fn hw() -> HardwareParams {
    HardwareParams {
        isa: tessel_sketch::Isa::Generic,
        ..HardwareParams::with_cores(4)
    }
}

fn sketches_of(spec: &str) -> Vec<Sketch> {
    let w = tessel_workloads::lookup(spec).expect("known workload");
    generate_sketches(&Arc::new(w.dag), &hw()).expect("sketches")
}

/// Compares `text` with `tests/golden/<name>.txt`, rewriting it when `TESSEL_BLESS=1`.
fn check_golden(name: &str, text: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.txt"));
    tessel_ir::testing::check_golden(&path, text);
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

/// `conv2d_nhwc` (with its padding stage) + `bias_add` + `relu`, built with the op library.
fn conv_bias_relu() -> Arc<ComputeDag> {
    let mut b = DagBuilder::new();
    let x = b.placeholder("data", &[1, 14, 14, 32]);
    let w = b.placeholder("kernel", &[3, 3, 32, 64]);
    let bias = b.placeholder("bias", &[64]);
    let conv = ops::conv2d_nhwc(&mut b, &x, &w, ConvParams::new(1, 1)).expect("conv");
    let biased = ops::bias_add(&mut b, &conv, &bias).expect("bias");
    ops::relu(&mut b, &biased).expect("relu");
    Arc::new(b.build().expect("dag"))
}

#[test]
fn gmm3_sketch_shapes() {
    use tessel_ir::state::ComputeAt;
    let sk = sketches_of("gmm-3");
    // (a) plain SSRSRS tiling of Z: b, i, j split in 4, k in 2, level-major order.
    let a = &sk[0];
    assert_eq!(names(a), ["X", "Y", "Z"]);
    let z = a.state.stage(2);
    assert_eq!(
        z.leaf_names(),
        [
            "b.0", "i.0", "j.0", "b.1", "i.1", "j.1", "k.0", "b.2", "i.2", "j.2", "k.1", "b.3",
            "i.3", "j.3"
        ]
    );
    // (b), (c): Z.local tiled and computed at Z's last loop of level 1 / level 2.
    for (s, level, at) in [(&sk[1], 1, "j.0"), (&sk[2], 2, "j.1")] {
        assert_eq!(names(s), ["X", "Y", "Z.local", "Z"]);
        let z = s.state.stage(3);
        assert_eq!(z.leaves.len(), 3 * (level + 1), "Z follows {level} levels");
        let ComputeAt::At { stage: t, iter } = s.state.stage(2).compute_at else {
            panic!("Z.local is not attached")
        };
        assert_eq!(t, 3);
        assert_eq!(z.iter(iter).name, at);
        assert_eq!(s.state.stage(2).leaves.len(), 14);
    }
}

#[test]
fn conv_with_bias_relu_gets_fusion_sketches() {
    use tessel_ir::state::ComputeAt;
    // convlayer-2 pads (its padding stage has a branch and is kept); convlayer-3 does not
    // (its padding stage is a plain copy and gets inlined).
    for (name, dag, pad_kept) in [
        (
            "convlayer-2",
            Arc::new(tessel_workloads::lookup("convlayer-2").expect("w").dag),
            true,
        ),
        (
            "convlayer-3",
            Arc::new(tessel_workloads::lookup("convlayer-3").expect("w").dag),
            false,
        ),
        ("conv2d-bias-relu", conv_bias_relu(), true),
    ] {
        let sk = generate_sketches(&dag, &hw()).expect("sketches");
        assert_eq!(
            sk.len(),
            3,
            "{name}: fusion at levels 1 and 2, then plain tiling"
        );
        for s in &sk {
            for st in s.state.stages().iter().filter(|st| st.is_compute) {
                let inlined = st.compute_at == ComputeAt::Inline;
                let epilogue = ["bias_add", "bn_mul", "bn_add"].contains(&st.name.as_str());
                let pad = st.name == "PaddedInput" || st.name == "pad_temp";
                assert_eq!(
                    inlined,
                    epilogue || (pad && !pad_kept),
                    "{name}: stage {}",
                    st.name
                );
            }
            assert!(
                !names(s).iter().any(|n| n.ends_with(".local")),
                "{name}: no cache stage"
            );
        }
        // Sketches 0 and 1: the convolution (7 axes: 4 spatial x 4 + 3 reduce x 2 = 22
        // loops) is computed inside the output at its last loop of level 1 / level 2.
        for (s, level) in [(&sk[0], 1usize), (&sk[1], 2)] {
            let conv = s
                .state
                .stages()
                .iter()
                .position(|st| matches!(st.compute_at, ComputeAt::At { .. }))
                .expect("fused");
            assert_eq!(s.state.stage(conv).leaves.len(), 22, "{name}");
            let ComputeAt::At { stage: t, iter } = s.state.stage(conv).compute_at else {
                unreachable!()
            };
            assert_eq!(
                t,
                s.state.stages().len() - 1,
                "{name}: fused into the output"
            );
            assert_eq!(s.state.stage(t).leaves.len(), 4 * (level + 1), "{name}");
            assert_eq!(
                s.state.stage(t).position(iter),
                Some(4 * level - 1),
                "{name}"
            );
        }
        // Sketch 2: plain tiling, the output untouched at the root.
        let last = sk[2].state.stages().len() - 1;
        assert_eq!(sk[2].state.stage(last).leaves.len(), 4, "{name}");
        assert!(sk[2]
            .state
            .stages()
            .iter()
            .all(|st| !matches!(st.compute_at, ComputeAt::At { .. })));
        check_golden(name, &all_text(&sk));
    }
}

#[test]
fn plain_conv2d_gets_cache_write_sketches() {
    let sk = sketches_of("c2d-3");
    assert_eq!(sk.len(), 3);
    assert!(!names(&sk[0]).iter().any(|n| n.ends_with(".local")));
    assert!(names(&sk[1]).iter().any(|n| n.ends_with(".local")));
    assert!(names(&sk[2]).iter().any(|n| n.ends_with(".local")));
    check_golden("c2d-3", &all_text(&sk));
}

#[test]
fn nrm_gets_rfactor_sketches() {
    let sk = sketches_of("nrm-1");
    assert_eq!(sk.len(), 3, "rfactor outer, rfactor inner, none");
    for s in &sk[..2] {
        assert_eq!(names(s), ["A", "C.rf", "C", "D"]);
        // The split feeding the rfactor is a hole, sampled later.
        let rf = s
            .state
            .steps()
            .iter()
            .position(|st| matches!(st, tessel_ir::Step::Rfactor { .. }))
            .expect("rfactor");
        assert!(
            matches!(&s.state.steps()[rf - 1], tessel_ir::Step::Split { lengths, .. } if lengths == &[None]),
            "post-pass made the rfactor split a hole"
        );
    }
    // The inner variant moves the factored loop innermost for vectorization.
    assert_eq!(sk[0].state.stage(1).leaf_names(), ["b", "i@j@.0", "i@j@.1"]);
    assert_eq!(sk[1].state.stage(1).leaf_names(), ["b", "i@j@.0", "i@j@.1"]);
    assert_eq!(
        sk[1].state.stage(1).leaf(2).map(|i| i.kind),
        Some(tessel_ir::state::IterKind::Spatial)
    );
    assert_eq!(
        sk[0].state.stage(1).leaf(2).map(|i| i.kind),
        Some(tessel_ir::state::IterKind::Reduce)
    );
    assert_eq!(names(&sk[2]), ["A", "C", "D"]);
    check_golden("nrm-1", &all_text(&sk));
}

#[test]
fn rfactor_depends_on_the_number_of_cores() {
    // NRM reduces over 16 points: rfactor only when that exceeds the core count.
    let w = tessel_workloads::lookup("nrm:b=1,m=4,n=4").expect("w");
    let dag = Arc::new(w.dag);
    assert_eq!(generate_sketches(&dag, &hw()).expect("s").len(), 3);
    assert_eq!(
        generate_sketches(&dag, &HardwareParams::with_cores(16))
            .expect("s")
            .len(),
        1
    );
}

#[test]
fn softmax_sketches() {
    let sk = sketches_of("softmax:m=4,n=64");
    // Both reductions may be rfactored (outer / inner / not): 3 x 3.
    assert_eq!(sk.len(), 9);
    check_golden("softmax", &all_text(&sk));
}

#[test]
fn generation_is_deterministic_and_rules_are_editable() {
    let dag = Arc::new(tessel_workloads::lookup("gmm-1").expect("w").dag);
    let a = all_text(&generate_sketches(&dag, &hw()).expect("s"));
    let b = all_text(&generate_sketches(&dag, &hw()).expect("s"));
    assert_eq!(a, b);
    let mut rules = tessel_sketch::SketchRules::cpu();
    assert!(rules.remove("AddCacheWrite"));
    let only_plain = tessel_sketch::generate_sketches_with(&dag, &hw(), &rules).expect("s");
    assert_eq!(only_plain.len(), 1);
}
