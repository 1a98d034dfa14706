//! Tensorized sketches: generation, tile sizes that match a micro-kernel, numerics (the
//! interpreter and compiled code against the reference) and legality under mutation.

use rand::RngExt;
use std::sync::Arc;
use tessel_ir::rng::seeded;
use tessel_ir::{eval, lower::lower, tensorize, testing, ComputeDag, State, Step};
use tessel_sketch::rules::is_tensorized;
use tessel_sketch::{
    generate_sketches, sample_initial, HardwareParams, Isa, MutationRegistry, Sketch,
};

/// The ISA the tests below were written for (their tile shapes are AVX2's); the AVX-512
/// family has its own test at the end.
const ISA: Isa = Isa::Avx2;

fn hw(isa: Isa) -> HardwareParams {
    HardwareParams {
        isa,
        ..HardwareParams::with_cores(4)
    }
}

fn dag(spec: &str) -> Arc<ComputeDag> {
    Arc::new(tessel_workloads::lookup(spec).expect("known workload").dag)
}

/// Small gmm / conv specs (NHWC conv with co a multiple of 8).
const SMALL: [&str; 3] = [
    "gmm:b=1,n=24,m=48,k=40",
    "gmm:b=2,n=12,m=16,k=24",
    "c2d:n=1,h=6,w=6,ci=8,co=16,kernel=3,stride=1,pad=1",
];

/// Compares `text` with `tests/golden/<name>.txt`, rewriting it when `TESSEL_BLESS=1`.
fn check_golden(name: &str, text: &str) {
    let path = format!("{}/tests/golden/{name}.txt", env!("CARGO_MANIFEST_DIR"));
    tessel_ir::testing::check_golden(std::path::Path::new(&path), text);
}

fn tensorized(sketches: &[Sketch]) -> Vec<&Sketch> {
    sketches
        .iter()
        .filter(|s| is_tensorized(&s.state))
        .collect()
}

/// Whether the state lowers to a nest with at least one tensorized loop, all of them
/// matching a micro-kernel of `isa`'s family.
fn matches_kernel(state: &State, isa: Isa) -> bool {
    let Ok(nest) = lower(state) else {
        return false;
    };
    let found = tensorize::find(&nest);
    !found.is_empty()
        && found.iter().all(|(_, m)| {
            m.as_ref()
                .is_ok_and(|m| tensorize::kernel_supported(isa, m.mr, m.nr))
        })
}

#[test]
fn gmm3_and_c2d3_get_tensorized_sketches_besides_the_plain_ones() {
    for spec in ["gmm-3", "c2d-3"] {
        let d = dag(spec);
        let plain = generate_sketches(&d, &hw(Isa::Generic)).expect("sketches");
        let all = generate_sketches(&d, &hw(ISA)).expect("sketches");
        let t = tensorized(&all);
        assert!(!t.is_empty(), "{spec}: no tensorized sketch");
        assert_eq!(all.len(), plain.len() + t.len(), "{spec}");
        // The plain sketches come first, unchanged.
        for (a, b) in plain.iter().zip(&all) {
            assert_eq!(a.text(), b.text(), "{spec}: plain sketch changed");
        }
        assert!(plain.iter().all(|s| !is_tensorized(&s.state)));
        let text: String = t.iter().map(|s| format!("{s}\n")).collect();
        check_golden(&format!("{spec}-tensorized"), &text);
    }
}

#[test]
fn sampled_tensorized_states_match_a_micro_kernel() {
    let hw = hw(ISA);
    let mut rng = seeded(99);
    for spec in ["gmm-3", "c2d-3", SMALL[0], SMALL[1], SMALL[2]] {
        let d = dag(spec);
        let sketches = generate_sketches(&d, &hw).expect("sketches");
        for sketch in tensorized(&sketches) {
            let (mut ok, mut total) = (0, 0);
            for _ in 0..40 {
                let Some(s) = sample_initial(sketch, &hw, &mut rng) else {
                    continue;
                };
                total += 1;
                if matches_kernel(&s, ISA) {
                    ok += 1;
                } else if let Ok(nest) = lower(&s) {
                    eprintln!(
                        "{spec}: no match: {:?}\n{}",
                        tensorize::find(&nest)
                            .into_iter()
                            .map(|(_, m)| m.err())
                            .collect::<Vec<_>>(),
                        s.steps_text()
                    );
                }
            }
            assert!(
                total >= 20,
                "{spec} sketch {}: only {total} samples",
                sketch.id
            );
            assert!(
                ok * 10 >= total * 9,
                "{spec} sketch {}: {ok}/{total} samples match a micro-kernel",
                sketch.id
            );
        }
    }
}

fn check_numerics(spec: &str, state: &State, inputs: &[Vec<f32>], want: &[Vec<f32>]) {
    check_numerics_for(ISA, spec, state, inputs, want);
}

/// The interpreter and the code compiled for `isa` against the reference outputs `want`.
fn check_numerics_for(isa: Isa, spec: &str, state: &State, inputs: &[Vec<f32>], want: &[Vec<f32>]) {
    let nest = lower(state).unwrap_or_else(|e| panic!("{spec}: lowering: {e}"));
    let got = testing::run_interp(&nest, inputs).unwrap_or_else(|e| panic!("{spec}: {e}"));
    let compiled = {
        let opts = tessel_codegen::CompileOptions {
            isa,
            ..tessel_codegen::CompileOptions::with_threads(1)
        };
        let kernel =
            tessel_codegen::compile(&nest, &opts).unwrap_or_else(|e| panic!("{spec}: {e}"));
        let ins: Vec<&[f32]> = inputs.iter().map(|v| v.as_slice()).collect();
        let mut outs: Vec<Vec<f32>> = want.iter().map(|w| vec![0.0; w.len()]).collect();
        let mut refs: Vec<&mut [f32]> = outs.iter_mut().map(|v| v.as_mut_slice()).collect();
        kernel
            .run(&ins, &mut refs)
            .unwrap_or_else(|e| panic!("{spec}: run: {e}"));
        outs
    };
    for outs in [&got, &compiled] {
        for (o, w) in outs.iter().zip(want) {
            for (i, (a, b)) in o.iter().zip(w).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-3 * b.abs().max(1.0),
                    "{spec}: [{i}] = {a}, want {b}\n{}",
                    state.steps_text()
                );
            }
        }
    }
}

#[test]
fn sampled_tensorized_states_compute_the_reference() {
    let hw = hw(ISA);
    let mut rng = seeded(7);
    for spec in SMALL {
        let d = dag(spec);
        let inputs = eval::random_inputs(&d, 5);
        let want = eval::evaluate(&d, &inputs).expect("reference");
        let sketches = generate_sketches(&d, &hw).expect("sketches");
        let t = tensorized(&sketches);
        assert!(!t.is_empty(), "{spec}: no tensorized sketch");
        for sketch in t {
            let mut n = 0;
            for _ in 0..20 {
                if let Some(s) = sample_initial(sketch, &hw, &mut rng) {
                    check_numerics(spec, &s, &inputs, &want);
                    n += 1;
                }
            }
            assert!(n >= 5, "{spec}: only {n} samples");
        }
    }
}

#[test]
fn random_mutations_of_tensorized_states_are_legal() {
    let hw = hw(ISA);
    let reg = MutationRegistry::cpu();
    let mut rng = seeded(1234);
    let mut pool: Vec<State> = Vec::new();
    for spec in ["gmm-3", "c2d-3", SMALL[0], SMALL[2]] {
        let sketches = generate_sketches(&dag(spec), &hw).expect("sketches");
        for sketch in tensorized(&sketches) {
            pool.extend((0..10).filter_map(|_| sample_initial(sketch, &hw, &mut rng)));
        }
    }
    assert!(!pool.is_empty());
    let (mut applied, mut matched) = (0, 0);
    for k in 0..1000 {
        let parent = &pool[k % pool.len()];
        let rule = &reg.rules[rng.random_range(0..reg.rules.len())];
        let Some(child) = rule.apply(parent, &hw, &mut rng) else {
            continue;
        };
        applied += 1;
        assert_eq!(child.sketch_id(), parent.sketch_id());
        assert!(child.is_concrete(), "{}: not concrete", rule.name);
        let again = State::replay(child.original_dag().clone(), child.steps())
            .unwrap_or_else(|e| panic!("{}: replay: {e}", rule.name));
        assert_eq!(again.to_string(), child.to_string());
        assert!(lower(&child).is_ok(), "{}: does not lower", rule.name);
        if matches_kernel(&child, ISA) {
            matched += 1;
        }
    }
    eprintln!("{applied} mutations applied, {matched} match a micro-kernel");
    assert!(applied >= 300, "only {applied} mutations applied");
    assert!(matched * 10 >= applied * 9, "{matched}/{applied} match");
}

#[test]
fn mutate_tensorize_shape_changes_the_kernel_and_keeps_it_matching() {
    let hw = hw(ISA);
    let rule = *MutationRegistry::cpu()
        .get("MutateTensorizeShape")
        .expect("registered");
    let mut rng = seeded(5);
    for spec in ["gmm-3", "c2d-3"] {
        let sketches = generate_sketches(&dag(spec), &hw).expect("sketches");
        let t = tensorized(&sketches);
        let parent = (0..20)
            .find_map(|_| sample_initial(t[0], &hw, &mut rng))
            .expect("a sample");
        let shape = |s: &State| {
            let nest = lower(s).expect("lowers");
            tensorize::find(&nest)
                .into_iter()
                .filter_map(|(_, m)| m.ok().map(|m| (m.mr, m.nr)))
                .collect::<Vec<_>>()
        };
        let mut changed = 0;
        for _ in 0..20 {
            let child = rule.apply(&parent, &hw, &mut rng).expect("applies");
            assert!(
                matches_kernel(&child, ISA),
                "{spec}:\n{}",
                child.steps_text()
            );
            if shape(&child) != shape(&parent) {
                changed += 1;
            }
        }
        assert!(changed >= 15, "{spec}: shape changed {changed}/20 times");
    }
    // Plain states: the rule does not apply.
    let sketches = generate_sketches(&dag("gmm-3"), &hw).expect("sketches");
    let plain = sample_initial(&sketches[1], &hw, &mut rng).expect("sample");
    assert!(rule.apply(&plain, &hw, &mut rng).is_none());
}

/// Fused ResNet-50 conv tasks (conv + bias (+ add) (+ ReLU)): 3×3, 1×1, strided, the 7×7
/// stem and a 7×7 feature map.
const RESNET_CONV_TASKS: [&str; 6] = [
    "resnet50@1/c2d:n=1,h=56,w=56,ci=64,co=64,kernel=3,stride=1,pad=1+bias+relu",
    "resnet50@1/c2d:n=1,h=56,w=56,ci=64,co=256,kernel=1,stride=1,pad=0+bias+add+relu",
    "resnet50@1/c2d:n=1,h=56,w=56,ci=256,co=512,kernel=1,stride=2,pad=0+bias",
    "resnet50@1/c2d:n=1,h=56,w=56,ci=128,co=128,kernel=3,stride=2,pad=1+bias+relu",
    "resnet50@1/c2d:n=1,h=224,w=224,ci=3,co=64,kernel=7,stride=2,pad=3+bias+relu",
    "resnet50@1/c2d:n=1,h=7,w=7,ci=512,co=512,kernel=3,stride=1,pad=1+bias+relu",
];

/// Small fused tasks (tiny-cnn): conv + bias + ReLU, conv + bias + add + ReLU, 1×1 conv.
const TINY_CNN_TASKS: [&str; 3] = [
    "tiny-cnn@1/c2d:n=1,h=16,w=16,ci=8,co=8,kernel=3,stride=1,pad=1+bias+relu",
    "tiny-cnn@1/c2d:n=1,h=16,w=16,ci=8,co=8,kernel=3,stride=1,pad=1+bias+add+relu",
    "tiny-cnn@1/c2d:n=1,h=16,w=16,ci=8,co=32,kernel=1,stride=1,pad=0+bias+relu",
];

/// Samples `n` states of `sketch`; returns (samples, samples whose tensorized loops all
/// match a micro-kernel and compile to a call), printing why the others do not.
fn match_rate(
    spec: &str,
    sketch: &Sketch,
    n: usize,
    rng: &mut tessel_ir::rng::TesselRng,
) -> (usize, usize) {
    let hw = hw(ISA);
    let (mut ok, mut total) = (0, 0);
    for _ in 0..n {
        let Some(s) = sample_initial(sketch, &hw, rng) else {
            continue;
        };
        total += 1;
        let called =
            compiled_calls(&s, ISA) == usize::from(tessel_codegen::ukernel::available(ISA));
        if matches_kernel(&s, ISA) && called {
            ok += 1;
        } else if let Ok(nest) = lower(&s) {
            eprintln!(
                "{spec}: no match or no call: {:?}\n{}",
                tensorize::find(&nest)
                    .into_iter()
                    .map(|(_, m)| m.err())
                    .collect::<Vec<_>>(),
                s.steps_text()
            );
        }
    }
    (total, ok)
}

#[test]
fn fused_resnet_conv_tasks_get_tensorized_sketches_that_match_a_kernel() {
    let mut rng = seeded(3);
    for spec in RESNET_CONV_TASKS.iter().chain(&TINY_CNN_TASKS) {
        let d = dag(spec);
        let plain = generate_sketches(&d, &hw(Isa::Generic)).expect("sketches");
        let all = generate_sketches(&d, &hw(ISA)).expect("sketches");
        let t = tensorized(&all);
        // The conv stage is fused with its element-wise consumer at level 1 and 2; with a
        // kernel wider than 1, each also with the rw and rc tiles fused.
        let n = if spec.contains("kernel=1,") { 2 } else { 4 };
        assert_eq!(t.len(), n, "{spec}");
        assert_eq!(all.len(), plain.len() + n, "{spec}");
        for sketch in t {
            // Level-1 fusions of the small tasks lose about a quarter of the samples (nested
            // parallel loops): 40 draws keep at least 20.
            let (total, ok) = match_rate(spec, sketch, 40, &mut rng);
            assert!(
                total >= 20,
                "{spec} sketch {}: only {total} samples",
                sketch.id
            );
            assert_eq!(ok, total, "{spec} sketch {}: {ok}/{total} match", sketch.id);
        }
    }
}

#[test]
fn dense_tasks_get_no_tensorized_sketch() {
    // `dense` reads `weight[j, k]`: the tile columns are not contiguous in B, so no
    // micro-kernel matches and the rule offers nothing (gmm's B[k, j] does match).
    for spec in [
        "resnet50@1/dense:n=1,in=2048,out=1000",
        "bert-base@1/dense:n=128,in=768,out=3072+gelu",
        "bert-base@1/dense:n=128,in=768,out=768+add",
    ] {
        let all = generate_sketches(&dag(spec), &hw(ISA)).expect("sketches");
        assert!(tensorized(&all).is_empty(), "{spec}");
    }
}

#[test]
fn fused_task_sketches_list_the_tensorized_variants() {
    let spec = RESNET_CONV_TASKS[0];
    let all = generate_sketches(&dag(spec), &hw(ISA)).expect("sketches");
    let text: String = tensorized(&all).iter().map(|s| format!("{s}\n")).collect();
    check_golden("resnet50-c2d-bias-relu-tensorized", &text);
}

/// Micro-kernel calls of the compiled state (code generation also needs every operand
/// access provably in bounds, e.g. into a padded input computed inside the tile).
fn compiled_calls(state: &State, isa: Isa) -> usize {
    let nest = lower(state).expect("lowers");
    let opts = tessel_codegen::CompileOptions {
        isa,
        ..tessel_codegen::CompileOptions::with_threads(2)
    };
    tessel_codegen::compile(&nest, &opts)
        .expect("compiles")
        .micro_kernel_calls()
        .len()
}

#[test]
fn sampled_tensorized_fused_tasks_compute_the_reference() {
    let hw = hw(ISA);
    let mut rng = seeded(11);
    for spec in TINY_CNN_TASKS {
        let d = dag(spec);
        let inputs = eval::random_inputs(&d, 5);
        let want = eval::evaluate(&d, &inputs).expect("reference");
        let sketches = generate_sketches(&d, &hw).expect("sketches");
        for sketch in tensorized(&sketches) {
            let mut n = 0;
            for _ in 0..12 {
                if let Some(s) = sample_initial(sketch, &hw, &mut rng) {
                    assert!(matches_kernel(&s, ISA), "{spec}:\n{}", s.steps_text());
                    assert_eq!(
                        compiled_calls(&s, ISA),
                        usize::from(tessel_codegen::ukernel::available(ISA)),
                        "{spec}: the compiled kernel does not call the micro-kernel\n{}",
                        s.steps_text()
                    );
                    check_numerics(spec, &s, &inputs, &want);
                    n += 1;
                }
            }
            assert!(n >= 5, "{spec}: only {n} samples");
        }
    }
}

/// Whether the sketch is the fused-reduction variant (a fuse of the tensorized stage).
fn fuses_reduction(sketch: &Sketch) -> bool {
    sketch
        .state
        .steps()
        .iter()
        .any(|s| matches!(s, tessel_ir::Step::Fuse { .. }))
}

#[test]
fn fused_reduction_sketches_run_the_kernel_over_kernel_w_times_ci() {
    // (spec, kernel * ci)
    let cases = [
        ("c2d-3", 3 * 256),
        (SMALL[2], 3 * 8),
        (RESNET_CONV_TASKS[0], 3 * 64),
        (TINY_CNN_TASKS[0], 3 * 8),
    ];
    let hw = hw(ISA);
    let reg = MutationRegistry::cpu();
    let mut rng = seeded(17);
    for (spec, k) in cases {
        let sketches = generate_sketches(&dag(spec), &hw).expect("sketches");
        let fused: Vec<&Sketch> = tensorized(&sketches)
            .into_iter()
            .filter(|s| fuses_reduction(s))
            .collect();
        assert!(!fused.is_empty(), "{spec}: no fused-reduction sketch");
        let ks = |s: &State| -> Vec<i64> {
            let nest = lower(s).expect("lowers");
            tensorize::find(&nest)
                .into_iter()
                .filter_map(|(_, m)| m.ok().map(|m| m.k))
                .collect()
        };
        let (mut mutated, mut kept) = (0, 0);
        for sketch in fused {
            let mut n = 0;
            for _ in 0..20 {
                let Some(s) = sample_initial(sketch, &hw, &mut rng) else {
                    continue;
                };
                n += 1;
                assert_eq!(ks(&s), [k], "{spec}:\n{}", s.steps_text());
                // Mutations keep the fused kernel (a matching kernel never has another k).
                for rule in &reg.rules {
                    if let Some(child) = rule.apply(&s, &hw, &mut rng) {
                        let got = ks(&child);
                        assert!(got.iter().all(|&g| g == k), "{spec} {}: {got:?}", rule.name);
                        mutated += 1;
                        kept += usize::from(got == [k]);
                    }
                }
            }
            assert!(n >= 10, "{spec} sketch {}: only {n} samples", sketch.id);
        }
        assert!(
            kept * 10 >= mutated * 9,
            "{spec}: {kept}/{mutated} mutations keep the kernel"
        );
    }
    // gmm and 1×1 convs have no such variant.
    for spec in ["gmm-3", RESNET_CONV_TASKS[1]] {
        let sketches = generate_sketches(&dag(spec), &hw).expect("sketches");
        assert!(
            tensorized(&sketches).iter().all(|s| !fuses_reduction(s)),
            "{spec}"
        );
    }
}

/// Where the stage named `PadInput` is computed: `Some(true)` attached to a loop,
/// `Some(false)` at the root, `None` inlined or absent.
fn padding_attached(state: &State) -> Option<bool> {
    let pad = state.stages().iter().find(|s| s.name == "PadInput")?;
    match pad.compute_at {
        tessel_ir::state::ComputeAt::At { .. } => Some(true),
        tessel_ir::state::ComputeAt::Root => Some(false),
        tessel_ir::state::ComputeAt::Inline => None,
    }
}

#[test]
fn depthwise_padding_placement_is_a_sketch_choice_that_samples_and_mutations_keep() {
    let hw = hw(ISA);
    let reg = MutationRegistry::cpu();
    let mut rng = seeded(21);
    let spec = "dep:n=1,h=6,w=6,c=16,kernel=3,stride=1,pad=1";
    let d = dag(spec);
    let inputs = eval::random_inputs(&d, 3);
    let want = eval::evaluate(&d, &inputs).expect("reference");
    let sketches = generate_sketches(&d, &hw).expect("sketches");
    let t = tensorized(&sketches);
    let attached: Vec<bool> = t
        .iter()
        .map(|s| padding_attached(&s.state).expect("a padding stage"))
        .collect();
    // The in-place structure only (the local stage of a short reduction is not tensorized),
    // with the padding in the tile (a root pass over the whole input is what in place
    // avoids).
    assert_eq!(
        attached,
        [true],
        "{spec}: {:?}",
        t.iter().map(|s| has_cache_write(s)).collect::<Vec<_>>()
    );
    assert!(!has_cache_write(t[0]));
    for sketch in t {
        let in_tile = padding_attached(&sketch.state) == Some(true);
        let mut n = 0;
        for _ in 0..30 {
            let Some(s) = sample_initial(sketch, &hw, &mut rng) else {
                continue;
            };
            n += 1;
            assert_eq!(
                padding_attached(&s),
                Some(in_tile),
                "sample of #{}",
                sketch.id
            );
            check_numerics(spec, &s, &inputs, &want);
            for rule in &reg.rules {
                if let Some(child) = rule.apply(&s, &hw, &mut rng) {
                    assert_eq!(
                        padding_attached(&child),
                        Some(in_tile),
                        "{} moved the padding of #{}",
                        rule.name,
                        sketch.id
                    );
                }
            }
        }
        assert!(n >= 10, "#{}: only {n} samples", sketch.id);
    }
    // A long reduction (c2d-3: 3×3×256 points per output) keeps Ansor's per-program draw.
    let c2d = generate_sketches(&dag("c2d-3"), &hw).expect("sketches");
    assert!(tensorized(&c2d)
        .iter()
        .all(|s| padding_attached(&s.state) == Some(false)));
}

/// Whether the sketch's step log caches the stage's output in a local buffer.
fn has_cache_write(sketch: &Sketch) -> bool {
    sketch
        .state
        .steps()
        .iter()
        .any(|s| matches!(s, Step::CacheWrite { .. }))
}

#[test]
fn short_reductions_also_tensorize_in_place_and_long_ones_keep_the_local_stage() {
    let hw = hw(ISA);
    let mut rng = seeded(5);
    let spec = "dep:n=1,h=6,w=6,c=16,kernel=3,stride=1,pad=1";
    let d = dag(spec);
    let inputs = eval::random_inputs(&d, 3);
    let want = eval::evaluate(&d, &inputs).expect("reference");
    let sketches = generate_sketches(&d, &hw).expect("sketches");
    let in_place: Vec<&Sketch> = tensorized(&sketches)
        .into_iter()
        .filter(|s| !has_cache_write(s))
        .collect();
    // One structure, with the padding in the tile, and no tensorized local stage (its zero
    // fill and write-back are a large share of a 9-point reduction); the local stage keeps
    // its plain sketches.
    assert_eq!(in_place.len(), 1, "{spec}");
    assert_eq!(tensorized(&sketches).len(), 1, "{spec}");
    assert!(sketches.iter().any(has_cache_write), "{spec}");
    for sketch in in_place {
        let mut n = 0;
        for _ in 0..20 {
            let Some(s) = sample_initial(sketch, &hw, &mut rng) else {
                continue;
            };
            n += 1;
            // The kernel accumulates in the output: no stage besides the DAG's own.
            assert_eq!(s.stages().len(), d.ops().len(), "sample of #{}", sketch.id);
            check_numerics(spec, &s, &inputs, &want);
        }
        assert!(n >= 10, "#{}: only {n} samples", sketch.id);
    }
    // A short matmul is no elementwise product: its local stage keeps its tensorized
    // sketches beside the in-place one.
    let short_gmm = generate_sketches(&dag("gmm:b=1,n=32,m=32,k=64"), &hw).expect("sketches");
    let short_gmm = tensorized(&short_gmm);
    assert!(short_gmm.iter().any(|s| has_cache_write(s)), "short gmm");
    assert!(short_gmm.iter().any(|s| !has_cache_write(s)), "short gmm");
    // Long reductions (a 3×3×256 conv, a 512-long matmul) keep the local stage only.
    for spec in ["c2d-3", "gmm-3"] {
        let sketches = generate_sketches(&dag(spec), &hw).expect("sketches");
        assert!(
            tensorized(&sketches).iter().all(|s| has_cache_write(s)),
            "{spec}"
        );
    }
}

#[test]
fn avx512_sketches_draw_their_tiles_from_the_avx512_family_and_compute_the_reference() {
    let hw = hw(Isa::Avx512);
    let runs = tessel_codegen::ukernel::available(Isa::Avx512);
    if !runs {
        eprintln!(
            "SKIPPED the AVX-512 calls and numerics: this CPU has no AVX-512F (the sampled \
             tiles are still checked against the family)"
        );
    }
    let mut rng = seeded(512);
    for spec in [
        "gmm-3",
        "gmm:b=1,n=24,m=64,k=40",
        "c2d:n=1,h=6,w=14,ci=8,co=32,kernel=3,stride=1,pad=1",
        "dep:n=1,h=8,w=14,c=32,kernel=3,stride=1,pad=1",
    ] {
        let d = dag(spec);
        let small = !spec.ends_with("-3");
        let reference = small.then(|| {
            let inputs = eval::random_inputs(&d, 5);
            let want = eval::evaluate(&d, &inputs).expect("reference");
            (inputs, want)
        });
        let sketches = generate_sketches(&d, &hw).expect("sketches");
        let t = tensorized(&sketches);
        assert!(!t.is_empty(), "{spec}: no tensorized sketch for AVX-512");
        for sketch in t {
            let mut n = 0;
            for _ in 0..16 {
                let Some(s) = sample_initial(sketch, &hw, &mut rng) else {
                    continue;
                };
                n += 1;
                let nest = lower(&s).expect("lowers");
                for (_, m) in tensorize::find(&nest) {
                    let m = m.unwrap_or_else(|e| panic!("{spec}: {e}\n{}", s.steps_text()));
                    assert!(
                        tensorize::kernel_nr(Isa::Avx512).contains(&m.nr),
                        "{spec}: {}x{} is not an AVX-512 tile",
                        m.mr,
                        m.nr
                    );
                }
                assert!(
                    matches_kernel(&s, Isa::Avx512),
                    "{spec}:\n{}",
                    s.steps_text()
                );
                assert_eq!(
                    compiled_calls(&s, Isa::Avx512),
                    usize::from(runs),
                    "{spec}:\n{}",
                    s.steps_text()
                );
                if let Some((inputs, want)) = &reference {
                    if runs {
                        check_numerics_for(Isa::Avx512, spec, &s, inputs, want);
                    }
                }
                // Kernel-shape mutation stays in the family.
                let registry = MutationRegistry::cpu();
                if let Some(child) = registry
                    .get("MutateTensorizeShape")
                    .and_then(|r| r.apply(&s, &hw, &mut rng))
                {
                    assert!(matches_kernel(&child, Isa::Avx512), "{spec}: mutated");
                }
            }
            assert!(n >= 8, "{spec} sketch {}: only {n} samples", sketch.id);
        }
    }
}

/// Whether the state's tensorized tiles are all AVX-512 tiles with a masked last vector
/// (a width that is an odd multiple of 8).
fn masked_tiles(state: &State) -> Vec<(i64, i64)> {
    let nest = lower(state).expect("lowers");
    tensorize::find(&nest)
        .into_iter()
        .filter_map(|(_, m)| m.ok())
        .map(|m| (m.mr, m.nr))
        .filter(|&(_, nr)| nr % 16 != 0)
        .collect()
}

#[test]
fn avx512_masked_tiles_are_sampled_for_24_and_40_column_outputs_and_compute_the_reference() {
    let hw = hw(Isa::Avx512);
    let runs = tessel_codegen::ukernel::available(Isa::Avx512);
    if !runs {
        eprintln!(
            "SKIPPED the AVX-512 calls and numerics: this CPU has no AVX-512F (the sampled \
             tiles are still checked against the family)"
        );
    }
    let mut rng = seeded(24);
    for spec in [
        // MobileNet-V2's co = 24 pointwise convolution, small; a gmm of 40 and one of 56
        // columns; a depthwise convolution of 24 channels (the elementwise family).
        "c2d:n=1,h=4,w=14,ci=16,co=24,kernel=1,stride=1,pad=0",
        "gmm:b=1,n=12,m=40,k=24",
        "gmm:b=1,n=6,m=56,k=9",
        "dep:n=1,h=6,w=14,c=24,kernel=3,stride=1,pad=1",
    ] {
        let d = dag(spec);
        let inputs = eval::random_inputs(&d, 5);
        let want = eval::evaluate(&d, &inputs).expect("reference");
        let sketches = generate_sketches(&d, &hw).expect("sketches");
        let t = tensorized(&sketches);
        assert!(!t.is_empty(), "{spec}: no tensorized sketch for AVX-512");
        let mut masked = 0;
        for sketch in t {
            for _ in 0..6 {
                let Some(s) = sample_initial(sketch, &hw, &mut rng) else {
                    continue;
                };
                assert!(
                    matches_kernel(&s, Isa::Avx512),
                    "{spec}:\n{}",
                    s.steps_text()
                );
                if masked_tiles(&s).is_empty() {
                    continue;
                }
                masked += 1;
                assert_eq!(
                    compiled_calls(&s, Isa::Avx512),
                    usize::from(runs),
                    "{spec}:\n{}",
                    s.steps_text()
                );
                if runs {
                    check_numerics_for(Isa::Avx512, spec, &s, &inputs, &want);
                }
                // The same program under the AVX2 target (its own tiles or plain code) and
                // plain Cranelift code.
                if tessel_codegen::ukernel::available(Isa::Avx2) {
                    check_numerics_for(Isa::Avx2, spec, &s, &inputs, &want);
                }
                check_numerics_for(Isa::Generic, spec, &s, &inputs, &want);
            }
        }
        assert!(
            masked >= 2,
            "{spec}: only {masked} samples with a masked tile"
        );
    }
}

#[test]
fn kernel_shape_mutation_reaches_the_masked_avx512_tiles() {
    // The 24-column output has no 16-, 32- or 48-column tile: every tensorized sample and
    // every mutation of one is masked (8 or 24 columns) under AVX-512.
    let hw = hw(Isa::Avx512);
    let d = dag("c2d:n=1,h=4,w=14,ci=16,co=24,kernel=1,stride=1,pad=0");
    let sketches = generate_sketches(&d, &hw).expect("sketches");
    let mut rng = seeded(8);
    let registry = MutationRegistry::cpu();
    let mutate = registry.get("MutateTensorizeShape").expect("registered");
    let mut widths = std::collections::BTreeSet::new();
    for sketch in tensorized(&sketches) {
        for _ in 0..8 {
            let Some(s) = sample_initial(sketch, &hw, &mut rng) else {
                continue;
            };
            for state in std::iter::once(s.clone()).chain(mutate.apply(&s, &hw, &mut rng)) {
                let tiles = masked_tiles(&state);
                assert!(!tiles.is_empty(), "{}", state.steps_text());
                widths.extend(tiles.iter().map(|t| t.1));
            }
        }
    }
    assert_eq!(widths.into_iter().collect::<Vec<_>>(), [8, 24]);
}

#[test]
fn mobilenet_v2_co24_tasks_get_masked_avx512_kernels() {
    // MobileNet-V2's tasks 5 and 8: before the masked tiles, no AVX-512 tile divided 24
    // columns and these tasks got no tensorized sketch under AVX-512.
    let hw = hw(Isa::Avx512);
    let runs = tessel_codegen::ukernel::available(Isa::Avx512);
    let mut rng = seeded(58);
    for spec in [
        "mobilenet-v2@1/c2d:n=1,h=56,w=56,ci=96,co=24,kernel=1,stride=1,pad=0+bias",
        "mobilenet-v2@1/c2d:n=1,h=56,w=56,ci=144,co=24,kernel=1,stride=1,pad=0+bias+add",
    ] {
        let d = dag(spec);
        let all = generate_sketches(&d, &hw).expect("sketches");
        let t = tensorized(&all);
        assert_eq!(t.len(), 2, "{spec}");
        for sketch in t {
            let mut n = 0;
            for _ in 0..12 {
                let Some(s) = sample_initial(sketch, &hw, &mut rng) else {
                    continue;
                };
                n += 1;
                assert!(
                    matches_kernel(&s, Isa::Avx512),
                    "{spec}:\n{}",
                    s.steps_text()
                );
                assert!(!masked_tiles(&s).is_empty(), "{spec}:\n{}", s.steps_text());
                assert_eq!(compiled_calls(&s, Isa::Avx512), usize::from(runs), "{spec}");
            }
            assert!(n >= 6, "{spec} sketch {}: only {n} samples", sketch.id);
        }
    }
}
