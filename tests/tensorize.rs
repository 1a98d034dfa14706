//! Tensorize: the micro-kernels of every ISA family the CPU runs (AVX2, AVX-512) against a
//! reference on random sizes and strides, and tensorized schedules of gmm, c2d, GRP, DIL,
//! dep and fused conv tasks (small shapes) against the reference evaluator, compiled for
//! every target the CPU supports (AVX2 + FMA, AVX-512F, and the pure Cranelift code of
//! `Isa::Generic`, which every CPU runs); under every layout rewrite mode (constant weights
//! packed once, other inputs packed on every run). Tests that need a family the CPU lacks
//! say so on stderr and check what they can.

use std::sync::Arc;
use tessel_codegen::{compile, ukernel, CompileOptions, Isa, Kernel, LayoutRewrite};
use tessel_ir::state::Annotation;
use tessel_ir::{eval, lower::lower, tensorize, testing, LoopNest, State, Step};

/// A small deterministic generator (SplitMix64), so that this test needs no `rand`.
struct Rng(u64);

impl Rng {
    fn seed_from_u64(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `range` (inclusive).
    fn int(&mut self, range: std::ops::RangeInclusive<i64>) -> i64 {
        let n = (range.end() - range.start() + 1) as u64;
        range.start() + (self.next() % n) as i64
    }

    fn float(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

/// Calls the `mr`×`nr` kernel on random operands laid out with random strides and checks
/// `C += A·B` against an f64 reference; elements outside the tile must be left alone. An
/// elementwise kernel also folds in an outer reduction of 1 to 3 steps.
fn check_kernel(isa: Isa, kind: ukernel::KernelKind, mr: i64, nr: i64, k: i64, rng: &mut Rng) {
    let f = ukernel::kernel(isa, kind, mr, nr).expect("kernel exists");
    let elementwise = kind == ukernel::KernelKind::Elementwise;
    // An elementwise A row is `nr` wide; rows and steps may overlap (they are only read).
    let width = if elementwise { nr } else { 1 };
    let a_rs = rng.int(1..=5) * if rng.int(0..=1) == 1 { k * width } else { 1 };
    let a_ks = if a_rs == 1 { mr + rng.int(0..=2) } else { 1 };
    let b_ks = nr + rng.int(0..=8);
    let c_rs = nr + rng.int(0..=8);
    let k2 = if elementwise { rng.int(1..=3) } else { 1 };
    let a_k2s = (mr - 1) * a_rs + (k - 1) * a_ks + width + rng.int(0..=4);
    let b_k2s = (k - 1) * b_ks + nr + rng.int(0..=4);
    let a_len = ((k2 - 1) * a_k2s + (mr - 1) * a_rs + (k - 1) * a_ks + width) as usize;
    let b_len = ((k2 - 1) * b_k2s + (k - 1) * b_ks + nr) as usize;
    let c_len = ((mr - 1) * c_rs + nr) as usize;
    let mut r = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.float()).collect() };
    let (a, b, c0) = (r(a_len), r(b_len), r(c_len));
    let mut c = c0.clone();
    // SAFETY: every element the kernel touches lies inside `a`, `b` and `c` by construction
    // of their lengths from the strides, and `c` does not overlap `a` or `b`.
    unsafe {
        match f {
            ukernel::KernelFn::Broadcast(f) => f(
                k,
                a.as_ptr(),
                a_rs,
                a_ks,
                b.as_ptr(),
                b_ks,
                c.as_mut_ptr(),
                c_rs,
            ),
            ukernel::KernelFn::Elementwise(f) => f(
                k2,
                a_k2s,
                b_k2s,
                k,
                a.as_ptr(),
                a_rs,
                a_ks,
                b.as_ptr(),
                b_ks,
                c.as_mut_ptr(),
                c_rs,
            ),
        }
    };
    let mut want: Vec<f64> = c0.iter().map(|&x| x as f64).collect();
    for i in 0..mr {
        for j in 0..nr {
            let mut s = 0.0f64;
            for q in 0..k2 {
                for p in 0..k {
                    let a_at = q * a_k2s + i * a_rs + p * a_ks + if elementwise { j } else { 0 };
                    let b_at = q * b_k2s + p * b_ks + j;
                    s += a[a_at as usize] as f64 * b[b_at as usize] as f64;
                }
            }
            want[(i * c_rs + j) as usize] += s;
        }
    }
    for (x, (&got, &w)) in c.iter().zip(&want).enumerate() {
        assert!(
            (got as f64 - w).abs() <= 1e-4 * (1.0 + (k * k2) as f64),
            "{isa} {kind:?} {mr}x{nr} k={k} k2={k2} a_rs={a_rs} a_ks={a_ks} b_ks={b_ks} c_rs={c_rs}: c[{x}] = {got}, want {w}"
        );
    }
}

/// Every kernel shape of `isa`'s two families against the reference (k = 1, 2, 3, 17 and
/// random k, random strides); returns the number of register-tile shapes.
fn check_every_kernel_shape(isa: Isa) -> usize {
    let mut rng = Rng::seed_from_u64(7);
    let mut shapes = 0;
    for mr in 1..=tensorize::max_mr(isa) + 1 {
        for nr in (1..=72).filter(|n| n % 8 == 0) {
            if !tensorize::register_tile_fits(isa, mr, nr) {
                assert!(
                    ukernel::micro_kernel(isa, mr, nr).is_none(),
                    "{isa} {mr}x{nr}"
                );
                continue;
            }
            shapes += 1;
            for kind in [
                ukernel::KernelKind::Broadcast,
                ukernel::KernelKind::Elementwise,
            ] {
                for k in [1, 2, 3, 17] {
                    check_kernel(isa, kind, mr, nr, k, &mut rng);
                }
                for _ in 0..4 {
                    let k = rng.int(1..=70);
                    check_kernel(isa, kind, mr, nr, k, &mut rng);
                }
            }
        }
    }
    shapes
}

#[test]
fn every_avx2_micro_kernel_shape_of_both_families_matches_a_reference() {
    if !ukernel::available(Isa::Avx2) {
        eprintln!("SKIPPED: this CPU has no AVX2+FMA, so the AVX2 kernels cannot run");
        assert!(ukernel::micro_kernel(Isa::Avx2, 4, 16).is_none());
        return;
    }
    assert_eq!(check_every_kernel_shape(Isa::Avx2), 20);
}

#[test]
fn every_avx512_micro_kernel_shape_of_both_families_matches_a_reference() {
    if !ukernel::available(Isa::Avx512) {
        eprintln!("SKIPPED: this CPU has no AVX-512F, so the AVX-512 kernels cannot run");
        assert!(ukernel::micro_kernel(Isa::Avx512, 4, 16).is_none());
        return;
    }
    // 14 rows of 8, 16, 24 and 32 columns, 9 of 40 and 48, 6 of 56 and 64 (the odd
    // multiples of 8 end in a masked half vector).
    assert_eq!(check_every_kernel_shape(Isa::Avx512), 86);
}

/// gmm (`b, n, m, k`): Z.local as an `mr`×`nr` tile at the fused parallel tile loop, the k
/// loop that encloses it tensorized (as `examples/schedules/gmm-3-tensorized.json`).
fn gmm_steps(mr: i64, nr: i64) -> Vec<Step> {
    let json = format!(
        r#"[
    {{"step":"cache_write","stage":2,"scope":"local"}},
    {{"step":"split","stage":2,"iter":0,"extent":null,"lengths":[1,1,1]}},
    {{"step":"split","stage":2,"iter":4,"extent":null,"lengths":[1,1,{mr}]}},
    {{"step":"split","stage":2,"iter":8,"extent":null,"lengths":[1,1,{nr}]}},
    {{"step":"split","stage":2,"iter":12,"extent":null,"lengths":[1]}},
    {{"step":"reorder","stage":2,"order":[0,4,8,1,5,9,12,2,6,10,13,3,7,11]}},
    {{"step":"follow_split","stage":3,"iter":0,"src_step":1,"n_split":1}},
    {{"step":"follow_split","stage":3,"iter":2,"src_step":2,"n_split":1}},
    {{"step":"follow_split","stage":3,"iter":4,"src_step":3,"n_split":1}},
    {{"step":"reorder","stage":3,"order":[0,4,2,1,3,5]}},
    {{"step":"compute_at","stage":2,"target_stage":3,"target_iter":2}},
    {{"step":"fuse","stage":3,"iters":[0,1,2]}},
    {{"step":"annotate","stage":3,"iter":0,"annotation":"parallel"}},
    {{"step":"annotate","stage":2,"iter":6,"annotation":"tensorize"}},
    {{"step":"annotate","stage":2,"iter":12,"annotation":"unroll"}},
    {{"step":"annotate","stage":2,"iter":13,"annotation":"vectorize"}}
    ]"#
    );
    serde_json::from_str(&json).expect("steps")
}

/// NHWC conv (`c2d`, `grp`, `dil`): a 1×`mr`×`nr` (h × w × co) tile reduced over rh, rw and
/// then rc (extent `rc`) innermost, rc tensorized; the padded input is computed at the root.
fn conv_steps(mr: i64, nr: i64, rc: i64) -> Vec<Step> {
    let json = format!(
        r#"[
    {{"step":"cache_write","stage":3,"scope":"local"}},
    {{"step":"split","stage":3,"iter":0,"extent":null,"lengths":[1,1,1]}},
    {{"step":"split","stage":3,"iter":4,"extent":null,"lengths":[1,1,1]}},
    {{"step":"split","stage":3,"iter":8,"extent":null,"lengths":[1,1,{mr}]}},
    {{"step":"split","stage":3,"iter":12,"extent":null,"lengths":[1,1,{nr}]}},
    {{"step":"split","stage":3,"iter":16,"extent":null,"lengths":[1]}},
    {{"step":"split","stage":3,"iter":18,"extent":null,"lengths":[1]}},
    {{"step":"split","stage":3,"iter":20,"extent":null,"lengths":[{rc}]}},
    {{"step":"reorder","stage":3,"order":[0,4,8,12,1,5,9,13,16,18,20,2,6,10,14,17,19,21,3,7,11,15]}},
    {{"step":"follow_split","stage":4,"iter":0,"src_step":1,"n_split":1}},
    {{"step":"follow_split","stage":4,"iter":2,"src_step":2,"n_split":1}},
    {{"step":"follow_split","stage":4,"iter":4,"src_step":3,"n_split":1}},
    {{"step":"follow_split","stage":4,"iter":6,"src_step":4,"n_split":1}},
    {{"step":"reorder","stage":4,"order":[0,2,4,6,1,3,5,7]}},
    {{"step":"compute_at","stage":3,"target_stage":4,"target_iter":3}},
    {{"step":"fuse","stage":4,"iters":[0,1,2,3]}},
    {{"step":"annotate","stage":4,"iter":0,"annotation":"parallel"}},
    {{"step":"annotate","stage":3,"iter":17,"annotation":"tensorize"}},
    {{"step":"annotate","stage":3,"iter":20,"annotation":"unroll"}},
    {{"step":"annotate","stage":3,"iter":21,"annotation":"vectorize"}}
    ]"#
    );
    serde_json::from_str(&json).expect("steps")
}

/// Depthwise NHWC conv (`dep`): a 1×`mr`×`nr` (h × w × c) tile reduced over rh, then rw
/// (whole) innermost, rw tensorized (an elementwise tile: input and weight both run along
/// c); the padded input is computed at the root. With `fold` the rh loop encloses the
/// tensorized loop alone and is folded into the call; without it a 2-extent channel loop
/// sits between them.
fn dep_steps(mr: i64, nr: i64, kernel: i64, fold: bool) -> Vec<Step> {
    let (rh_inner, c_mid) = if fold { (kernel, 1) } else { (1, 2) };
    let json = format!(
        r#"[
    {{"step":"cache_write","stage":3,"scope":"local"}},
    {{"step":"split","stage":3,"iter":0,"extent":null,"lengths":[1,1,1]}},
    {{"step":"split","stage":3,"iter":4,"extent":null,"lengths":[1,1,1]}},
    {{"step":"split","stage":3,"iter":8,"extent":null,"lengths":[1,1,{mr}]}},
    {{"step":"split","stage":3,"iter":12,"extent":null,"lengths":[1,{c_mid},{nr}]}},
    {{"step":"split","stage":3,"iter":16,"extent":null,"lengths":[{rh_inner}]}},
    {{"step":"split","stage":3,"iter":18,"extent":null,"lengths":[{kernel}]}},
    {{"step":"reorder","stage":3,"order":[0,4,8,12,1,5,9,13,16,18,2,6,10,14,17,19,3,7,11,15]}},
    {{"step":"follow_split","stage":4,"iter":0,"src_step":1,"n_split":1}},
    {{"step":"follow_split","stage":4,"iter":2,"src_step":2,"n_split":1}},
    {{"step":"follow_split","stage":4,"iter":4,"src_step":3,"n_split":1}},
    {{"step":"follow_split","stage":4,"iter":6,"src_step":4,"n_split":1}},
    {{"step":"reorder","stage":4,"order":[0,2,4,6,1,3,5,7]}},
    {{"step":"compute_at","stage":3,"target_stage":4,"target_iter":3}},
    {{"step":"fuse","stage":4,"iters":[0,1,2,3]}},
    {{"step":"annotate","stage":4,"iter":0,"annotation":"parallel"}},
    {{"step":"annotate","stage":3,"iter":15,"annotation":"tensorize"}}
    ]"#
    );
    serde_json::from_str(&json).expect("steps")
}

fn run(kernel: &Kernel, nest: &LoopNest, inputs: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let mut outs: Vec<Vec<f32>> = nest.params[inputs.len()..]
        .iter()
        .map(|&p| vec![f32::NAN; nest.buffer(p).len() as usize])
        .collect();
    let ins: Vec<&[f32]> = inputs.iter().map(|v| v.as_slice()).collect();
    let mut o: Vec<&mut [f32]> = outs.iter_mut().map(|v| v.as_mut_slice()).collect();
    kernel.run(&ins, &mut o).expect("runs");
    outs
}

/// Micro-kernel calls a nest compiled to, per target ISA the CPU runs.
struct Calls(Vec<(Isa, usize)>);

impl Calls {
    /// The calls under `isa` (0 when the CPU cannot run it).
    fn of(&self, isa: Isa) -> usize {
        self.0.iter().find(|c| c.0 == isa).map_or(0, |c| c.1)
    }
}

/// Replays `steps` on `spec` and checks the result against the reference evaluator
/// compiled for every target the CPU supports (the micro-kernel ones under every layout
/// rewrite mode, generic once), on 1 and 2 threads; returns the nest and the number of
/// micro-kernel calls per ISA.
fn check_schedule_per_isa(spec: &str, steps: &[Step]) -> (LoopNest, Calls) {
    let w = tessel_workloads::lookup(spec).expect("workload");
    let dag = Arc::new(w.dag);
    let state = State::replay(dag.clone(), steps).unwrap_or_else(|e| panic!("{spec}: {e}"));
    let nest = lower(&state).expect("lowers");
    let inputs = eval::random_inputs(&dag, 3);
    let want = eval::evaluate(&dag, &inputs).expect("evaluates");
    // The matched B operand is the conv weight (a constant) or a gmm operand (not one).
    let b_is_weight = dag.inputs().iter().any(|&i| dag.is_constant(i));
    let mut calls = Vec::new();
    for isa in Isa::ALL {
        if isa.has_micro_kernels() && !ukernel::available(isa) {
            eprintln!("{spec}: SKIPPED target {isa}: this CPU cannot run its kernels");
            continue;
        }
        let modes: &[LayoutRewrite] = if isa.has_micro_kernels() {
            &LayoutRewrite::MODES
        } else {
            &[LayoutRewrite::All]
        };
        for threads in [1, 2] {
            for &layout_rewrite in modes {
                let opts = CompileOptions {
                    isa,
                    layout_rewrite,
                    ..CompileOptions::with_threads(threads)
                };
                let kernel = compile(&nest, &opts).expect("compiles");
                let mk = kernel.micro_kernel_calls();
                if isa.has_micro_kernels() {
                    // Every matched gmm/conv B operand is a row-major input: the mode
                    // decides. Elementwise kernels read their B rows as they are.
                    let packed = |c: &tessel_codegen::MicroKernelCall| {
                        layout_rewrite.packs(b_is_weight)
                            && c.kind == ukernel::KernelKind::Broadcast
                    };
                    assert!(mk.iter().all(|c| c.packed_b == packed(c)), "{mk:?}");
                    assert!(
                        mk.iter()
                            .all(|c| c.packs_per_call == (packed(c) && !b_is_weight)),
                        "{mk:?}"
                    );
                    assert!(
                        mk.iter()
                            .all(|c| c.blocks == tensorize::strip_blocks(isa, c.mr, c.nr)),
                        "{isa} {mk:?}"
                    );
                } else {
                    assert!(mk.is_empty());
                }
                if threads == 1 && layout_rewrite == LayoutRewrite::All {
                    calls.push((isa, mk.len()));
                }
                let got = run(&kernel, &nest, &inputs);
                testing::check_close(&got, &want, 1e-4, 1e-4).unwrap_or_else(|e| {
                    panic!("{spec} threads={threads} target={isa} layout_rewrite={layout_rewrite}: {e}\n{nest}")
                });
            }
        }
    }
    (nest, Calls(calls))
}

/// [`check_schedule_per_isa`], returning the calls under AVX2 (the family the shapes of
/// the tests below were chosen for).
fn check_schedule(spec: &str, steps: &[Step]) -> (LoopNest, usize) {
    let (nest, calls) = check_schedule_per_isa(spec, steps);
    (nest, calls.of(Isa::Avx2))
}

/// AVX2 compile options with `threads` threads.
fn avx2(threads: usize) -> CompileOptions {
    CompileOptions {
        isa: Isa::Avx2,
        ..CompileOptions::with_threads(threads)
    }
}

#[test]
fn packed_weights_follow_new_weights_and_pack_weights_is_checked() {
    let spec = "c2d:n=1,h=6,w=6,ci=8,co=16,kernel=3,stride=1,pad=1";
    let dag = Arc::new(tessel_workloads::lookup(spec).expect("w").dag);
    let nest =
        lower(&State::replay(dag.clone(), &conv_steps(2, 16, 8)).expect("legal")).expect("l");
    for layout_rewrite in [LayoutRewrite::Weights, LayoutRewrite::All] {
        let opts = CompileOptions {
            layout_rewrite,
            ..avx2(2)
        };
        let kernel = compile(&nest, &opts).expect("compiles");
        let mk = kernel.micro_kernel_calls();
        assert_eq!(mk.iter().filter(|c| c.packed_b).count(), expect_calls(1));
        // The weight is a constant: packed once, also under `All`.
        assert!(mk.iter().all(|c| !c.packs_per_call), "{mk:?}");
        for seed in [1, 2, 3] {
            let inputs = eval::random_inputs(&dag, seed);
            let want = eval::evaluate(&dag, &inputs).expect("evaluates");
            let ins: Vec<&[f32]> = inputs.iter().map(|v| v.as_slice()).collect();
            kernel.pack_weights(&ins).expect("packs");
            for _ in 0..2 {
                testing::check_close(&run(&kernel, &nest, &inputs), &want, 1e-4, 1e-4)
                    .unwrap_or_else(|e| panic!("{layout_rewrite} seed {seed}: {e}"));
            }
        }
        assert!(kernel.pack_weights(&[&[0.0; 3]]).is_err());
    }
}

#[test]
fn per_call_packing_sees_new_b_values_on_every_run() {
    let spec = "gmm:b=2,n=8,m=32,k=9";
    let dag = Arc::new(tessel_workloads::lookup(spec).expect("w").dag);
    let nest = lower(&State::replay(dag.clone(), &gmm_steps(4, 16)).expect("legal")).expect("l");
    // Weights packs nothing here (neither gmm operand is a weight); All packs `Y` per call.
    let weights = CompileOptions {
        layout_rewrite: LayoutRewrite::Weights,
        ..avx2(2)
    };
    let weights = compile(&nest, &weights).expect("compiles");
    assert!(weights.micro_kernel_calls().iter().all(|c| !c.packed_b));
    for threads in [1, 2] {
        let opts = CompileOptions {
            layout_rewrite: LayoutRewrite::All,
            ..avx2(threads)
        };
        let kernel = compile(&nest, &opts).expect("compiles");
        let mk = kernel.micro_kernel_calls();
        assert_eq!(
            mk.iter().filter(|c| c.packed_b && c.packs_per_call).count(),
            expect_calls(1),
            "{mk:?}"
        );
        let mut inputs = eval::random_inputs(&dag, 1);
        for round in 0..6 {
            // New B values every run, in place (same address and length) and at elements
            // the old fingerprint never sampled (every 9th of 576); `pack_weights` is never
            // called.
            if round % 2 == 0 {
                inputs = eval::random_inputs(&dag, 10 + round);
            } else {
                for (k, x) in inputs[1].iter_mut().enumerate() {
                    if k % 9 == 4 {
                        *x = -*x + 0.25;
                    }
                }
            }
            let want = eval::evaluate(&dag, &inputs).expect("evaluates");
            testing::check_close(&run(&kernel, &nest, &inputs), &want, 1e-4, 1e-4)
                .unwrap_or_else(|e| panic!("threads={threads} round {round}: {e}"));
        }
    }
}

/// Expected micro-kernel calls under AVX2: `n` on a CPU with AVX2+FMA, none without.
fn expect_calls(n: usize) -> usize {
    expect_calls_of(Isa::Avx2, n)
}

/// Expected micro-kernel calls under `isa`: `n` on a CPU that runs it, none without.
fn expect_calls_of(isa: Isa, n: usize) -> usize {
    if ukernel::available(isa) {
        n
    } else {
        0
    }
}

#[test]
fn tensorized_gmm_matches_the_reference_for_every_tile_shape() {
    for (mr, nr) in [
        (1, 8),
        (4, 8),
        (8, 8),
        (2, 16),
        (4, 16),
        (6, 16),
        (3, 24),
        (4, 24),
        (7, 8),
        (1, 32),
        (2, 32),
    ] {
        let spec = format!("gmm:b=2,n={},m={},k=7", 2 * mr, 2 * nr);
        let (nest, calls) = check_schedule(&spec, &gmm_steps(mr, nr));
        assert_eq!(calls, expect_calls(1), "{spec}\n{nest}");
        let found = tensorize::find(&nest);
        assert_eq!(found.len(), 1);
        let m = found[0].1.as_ref().expect("matches");
        assert_eq!((m.mr, m.nr, m.k), (mr, nr, 7));
        // A one-row tile has no row loop: row strides are 0.
        let rows = i64::from(mr > 1);
        assert_eq!(
            (m.a_row_stride, m.a_k_stride, m.b_k_stride),
            (7 * rows, 1, 2 * nr)
        );
        assert_eq!(m.c_row_stride, nr * rows);
    }
}

#[test]
fn tensorized_gmm_with_k_equal_to_one() {
    let (_, calls) = check_schedule("gmm:b=1,n=4,m=16,k=1", &gmm_steps(4, 16));
    // k = 1: the reduction loop has extent 1, so lowering drops it and nothing is tensorized.
    assert_eq!(calls, 0);
    let (_, calls) = check_schedule("gmm:b=1,n=4,m=16,k=2", &gmm_steps(4, 16));
    assert_eq!(calls, expect_calls(1));
}

#[test]
fn tile_shapes_without_a_kernel_or_with_guards_fall_back_and_stay_correct() {
    // 5 columns: no kernel; 12 columns with a 16-wide tile: guards; 65 rows: taller than
    // any strip.
    for (spec, mr, nr) in [
        ("gmm:b=1,n=4,m=5,k=3", 4, 5),
        ("gmm:b=1,n=4,m=12,k=3", 4, 16),
        ("gmm:b=1,n=65,m=8,k=3", 65, 8),
    ] {
        let (nest, calls) = check_schedule(spec, &gmm_steps(mr, nr));
        assert_eq!(calls, 0, "{spec}");
        assert!(tensorize::find(&nest).iter().all(|(_, r)| r.is_err()));
    }
}

#[test]
fn strips_taller_than_a_register_tile_match_the_reference() {
    // 7x16 needs 14 accumulators: a strip of 4 and 3 rows. 56x16 (ResNet-50's W = 56) is
    // ten blocks; 3x32 would spill: 2 + 1 rows; 64x8 is the tallest strip.
    for (mr, nr) in [(7, 16), (14, 16), (56, 16), (3, 32), (9, 24), (64, 8)] {
        let spec = format!("gmm:b=1,n={},m={},k=5", 2 * mr, 2 * nr);
        let (nest, calls) = check_schedule(&spec, &gmm_steps(mr, nr));
        assert_eq!(calls, expect_calls(1), "{spec}\n{nest}");
        let found = tensorize::find(&nest);
        let m = found[0].1.as_ref().expect("matches");
        assert_eq!((m.mr, m.nr, m.k), (mr, nr, 5));
        let kernel = compile(&nest, &avx2(1)).expect("compiles");
        let blocks = tensorize::strip_blocks(Isa::Avx2, mr, nr);
        assert!(blocks.len() > 1, "{mr}x{nr}");
        if ukernel::available(Isa::Avx2) {
            assert_eq!(kernel.micro_kernel_calls()[0].blocks, blocks);
        }
    }
    // A 56-row strip in an NHWC convolution: the A rows are input pixels at the channel
    // stride, so each block's rows start 64 floats further on.
    let (nest, calls) = check_schedule(
        "c2d:n=1,h=2,w=56,ci=3,co=16,kernel=3,stride=1,pad=1",
        &conv_steps(56, 16, 3),
    );
    assert_eq!(calls, expect_calls(1), "{nest}");
}

#[test]
fn tensorized_convolutions_match_the_reference() {
    // (spec, mr, nr, rc, expected calls with AVX2)
    let cases = [
        (
            "c2d:n=1,h=6,w=6,ci=4,co=16,kernel=3,stride=1,pad=1",
            3,
            16,
            4,
            1,
        ),
        (
            "c2d:n=1,h=6,w=6,ci=5,co=8,kernel=3,stride=2,pad=1",
            3,
            8,
            5,
            1,
        ),
        (
            "dil:n=1,h=8,w=8,ci=4,co=24,kernel=3,stride=1,pad=1",
            2,
            24,
            4,
            1,
        ),
        // A 2x32 tile (c2d-3's shape: 14 columns, 256 output channels, scaled down).
        (
            "c2d:n=1,h=4,w=14,ci=6,co=64,kernel=3,stride=1,pad=1",
            2,
            32,
            6,
            1,
        ),
        // Grouped: the input channel depends on co through a division, so the tile does not
        // match (A would depend on the tile columns); the fallback must still be right.
        (
            "grp:n=1,h=6,w=6,ci=8,co=16,kernel=3,stride=1,pad=1",
            2,
            8,
            2,
            0,
        ),
    ];
    for (spec, mr, nr, rc, n) in cases {
        let (nest, calls) = check_schedule(spec, &conv_steps(mr, nr, rc));
        assert_eq!(calls, expect_calls(n), "{spec}\n{nest}");
    }
}

#[test]
fn tensorize_is_only_legal_on_reduction_iterators() {
    let dag = Arc::new(
        tessel_workloads::lookup("gmm:b=1,n=4,m=8,k=3")
            .expect("w")
            .dag,
    );
    let mut state = State::new(dag);
    let bad = Step::Annotate {
        stage: 2,
        iter: 1,
        annotation: Annotation::Tensorize,
    };
    assert!(state.apply(bad).is_err());
    let good = Step::Annotate {
        stage: 2,
        iter: 3,
        annotation: Annotation::Tensorize,
    };
    state.apply(good).expect("k is a reduction iterator");
}

#[test]
fn example_tensorized_schedules_compile_and_are_correct() {
    for name in ["gmm-3-tensorized", "c2d-3-tensorized"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("examples/schedules/{name}.json"));
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("file")).expect("JSON");
        let steps: Vec<Step> = serde_json::from_value(v["steps"].clone()).expect("steps");
        let w = tessel_workloads::lookup(v["workload"].as_str().expect("workload")).expect("w");
        let dag = Arc::new(w.dag);
        let state = State::replay(dag.clone(), &steps).expect("legal");
        let nest = lower(&state).expect("lowers");
        let inputs = eval::random_inputs(&dag, 5);
        let want = eval::evaluate(&dag, &inputs).expect("evaluates");
        let kernel = compile(&nest, &avx2(2)).expect("compiles");
        assert_eq!(kernel.micro_kernel_calls().len(), expect_calls(1), "{name}");
        let got = run(&kernel, &nest, &inputs);
        testing::check_close(&got, &want, 1e-3, 1e-3).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

/// A fused tiny-cnn conv task (`conv` at stage `conv`, its element-wise output at stage
/// `out`, the bias/add stages inlined): a 1×`mr`×`nr` (h × w × co) tile reduced over rh, rw
/// and then rc (whole) innermost, rc tensorized; the conv computed at the output's level-1
/// tile loop (no cache write: the fused sketch MultiLevelTilingTensorized offers).
fn fused_conv_steps(
    inline: &[usize],
    conv: usize,
    out: usize,
    mr: i64,
    nr: i64,
    rc: i64,
) -> Vec<Step> {
    let mut json = String::from("[");
    for s in inline {
        json += &format!(r#"{{"step":"compute_inline","stage":{s}}},"#);
    }
    json += &format!(
        r#"
    {{"step":"split","stage":{conv},"iter":0,"extent":null,"lengths":[1,1,1]}},
    {{"step":"split","stage":{conv},"iter":4,"extent":null,"lengths":[2,1,1]}},
    {{"step":"split","stage":{conv},"iter":8,"extent":null,"lengths":[1,1,{mr}]}},
    {{"step":"split","stage":{conv},"iter":12,"extent":null,"lengths":[1,1,{nr}]}},
    {{"step":"split","stage":{conv},"iter":16,"extent":null,"lengths":[1]}},
    {{"step":"split","stage":{conv},"iter":18,"extent":null,"lengths":[1]}},
    {{"step":"split","stage":{conv},"iter":20,"extent":null,"lengths":[{rc}]}},
    {{"step":"reorder","stage":{conv},"order":[0,4,8,12,1,5,9,13,16,18,20,2,6,10,14,17,19,21,3,7,11,15]}},
    {{"step":"follow_split","stage":{out},"iter":0,"src_step":{s0},"n_split":1}},
    {{"step":"follow_split","stage":{out},"iter":2,"src_step":{s1},"n_split":1}},
    {{"step":"follow_split","stage":{out},"iter":4,"src_step":{s2},"n_split":1}},
    {{"step":"follow_split","stage":{out},"iter":6,"src_step":{s3},"n_split":1}},
    {{"step":"reorder","stage":{out},"order":[0,2,4,6,1,3,5,7]}},
    {{"step":"compute_at","stage":{conv},"target_stage":{out},"target_iter":3}},
    {{"step":"fuse","stage":{out},"iters":[0,1,2,3]}},
    {{"step":"annotate","stage":{out},"iter":0,"annotation":"parallel"}},
    {{"step":"annotate","stage":{conv},"iter":17,"annotation":"tensorize"}},
    {{"step":"annotate","stage":{out},"iter":4,"annotation":"vectorize"}}
    ]"#,
        s0 = inline.len(),
        s1 = inline.len() + 1,
        s2 = inline.len() + 2,
        s3 = inline.len() + 3,
    );
    serde_json::from_str(&json).expect("steps")
}

#[test]
fn tensorized_fused_conv_tasks_match_the_reference() {
    // (task, inlined stages (bias, add; the 1×1 conv's padding), conv stage, output
    // stage, mr, nr, rc)
    let cases = [
        (
            "tiny-cnn@1/c2d:n=1,h=16,w=16,ci=8,co=8,kernel=3,stride=1,pad=1+bias+relu",
            vec![5],
            4,
            6,
            8,
            8,
            8,
        ),
        (
            "tiny-cnn@1/c2d:n=1,h=16,w=16,ci=8,co=8,kernel=3,stride=1,pad=1+bias+add+relu",
            vec![6, 5],
            4,
            7,
            4,
            8,
            8,
        ),
        (
            "tiny-cnn@1/c2d:n=1,h=16,w=16,ci=8,co=32,kernel=1,stride=1,pad=0+bias+relu",
            vec![5, 3],
            4,
            6,
            4,
            16,
            8,
        ),
    ];
    for (spec, inline, conv, out, mr, nr, rc) in cases {
        let (nest, calls) = check_schedule(spec, &fused_conv_steps(&inline, conv, out, mr, nr, rc));
        assert_eq!(calls, expect_calls(1), "{spec}\n{nest}");
        let found = tensorize::find(&nest);
        assert_eq!(found.len(), 1, "{spec}");
        let m = found[0]
            .1
            .as_ref()
            .unwrap_or_else(|e| panic!("{spec}: {e}\n{nest}"));
        assert_eq!((m.mr, m.nr, m.k), (mr, nr, rc), "{spec}");
    }
}

/// `steps` (from [`conv_steps`] or [`fused_conv_steps`], conv at stage `conv`) with the rw
/// tile made whole (`kw`) and the innermost rw and rc tiles fused into the tensorized loop
/// (the fused-reduction variant of MultiLevelTilingTensorized): the kernel then reduces over
/// `kw * rc` steps per call.
fn fuse_reduction(steps: &[Step], conv: usize, kw: i64) -> Vec<Step> {
    let mut out = Vec::new();
    let mut fused = false;
    for s in steps {
        match s.clone() {
            Step::Split {
                stage,
                iter: 18,
                extent,
                ..
            } if stage == conv => out.push(Step::Split {
                stage,
                iter: 18,
                extent,
                lengths: vec![Some(kw)],
            }),
            r @ Step::Reorder { stage, .. } if stage == conv && !fused => {
                out.push(r);
                out.push(Step::Fuse {
                    stage,
                    iters: vec![16, 17],
                });
                fused = true;
            }
            Step::Annotate {
                stage,
                iter,
                annotation,
            } if stage == conv && iter >= 17 => out.push(Step::Annotate {
                stage,
                iter: iter - 1,
                annotation,
            }),
            other => out.push(other),
        }
    }
    assert!(fused, "no reorder of stage {conv}");
    out
}

/// The single tensorized loop of `nest` matches with `(mr, nr, k)`.
fn assert_match(spec: &str, nest: &LoopNest, mr: i64, nr: i64, k: i64) {
    let found = tensorize::find(nest);
    assert_eq!(found.len(), 1, "{spec}");
    let m = found[0]
        .1
        .as_ref()
        .unwrap_or_else(|e| panic!("{spec}: {e}\n{nest}"));
    assert_eq!((m.mr, m.nr, m.k), (mr, nr, k), "{spec}\n{nest}");
}

#[test]
fn tensorized_fused_reduction_convolutions_match_the_reference() {
    // (spec, mr, nr, kernel, ci, expected calls with AVX2)
    let cases = [
        (
            "c2d:n=1,h=6,w=6,ci=4,co=16,kernel=3,stride=1,pad=1",
            3,
            16,
            3,
            4,
            1,
        ),
        (
            "c2d:n=1,h=6,w=6,ci=5,co=8,kernel=3,stride=2,pad=1",
            3,
            8,
            3,
            5,
            1,
        ),
        (
            "c2d:n=1,h=7,w=7,ci=3,co=16,kernel=5,stride=2,pad=2",
            2,
            16,
            5,
            3,
            1,
        ),
    ];
    for (spec, mr, nr, kw, ci, n) in cases {
        let steps = fuse_reduction(&conv_steps(mr, nr, ci), 3, kw);
        let (nest, calls) = check_schedule(spec, &steps);
        assert_eq!(calls, expect_calls(n), "{spec}\n{nest}");
        assert_match(spec, &nest, mr, nr, kw * ci);
    }
    // Dilated (rw steps 2 columns, so the fused index is not affine) and grouped (A depends
    // on the tile columns, as without fusion): no match, still correct.
    for (spec, mr, nr, ci) in [
        (
            "dil:n=1,h=8,w=8,ci=4,co=24,kernel=3,stride=1,pad=1",
            2,
            24,
            4,
        ),
        (
            "grp:n=1,h=6,w=6,ci=8,co=16,kernel=3,stride=1,pad=1",
            2,
            8,
            2,
        ),
    ] {
        let (nest, calls) = check_schedule(spec, &fuse_reduction(&conv_steps(mr, nr, ci), 3, 3));
        assert_eq!(calls, 0, "{spec}\n{nest}");
    }
}

#[test]
fn tensorized_fused_reduction_conv_tasks_match_the_reference() {
    let cases = [
        (
            "tiny-cnn@1/c2d:n=1,h=16,w=16,ci=8,co=8,kernel=3,stride=1,pad=1+bias+relu",
            vec![5],
            4,
            6,
            8,
            8,
        ),
        (
            "tiny-cnn@1/c2d:n=1,h=16,w=16,ci=8,co=8,kernel=3,stride=1,pad=1+bias+add+relu",
            vec![6, 5],
            4,
            7,
            4,
            8,
        ),
    ];
    for (spec, inline, conv, out, mr, nr) in cases {
        let steps = fuse_reduction(&fused_conv_steps(&inline, conv, out, mr, nr, 8), conv, 3);
        let (nest, calls) = check_schedule(spec, &steps);
        assert_eq!(calls, expect_calls(1), "{spec}\n{nest}");
        assert_match(spec, &nest, mr, nr, 3 * 8);
    }
}

#[test]
fn tensorized_depthwise_convolutions_use_the_elementwise_kernels_and_match_the_reference() {
    // (mr, nr, kernel, stride): register tiles, strips (14 and 56 rows), a 5x5 window and
    // stride 2 (input rows two pixels apart).
    for (mr, nr, kernel, stride) in [
        (4, 16, 3, 1),
        (2, 32, 3, 1),
        (8, 8, 3, 1),
        (3, 24, 3, 2),
        (14, 16, 3, 1),
        (56, 32, 3, 1),
        (6, 16, 5, 1),
    ] {
        let w = 2 * mr * stride;
        let spec = format!(
            "dep:n=1,h=3,w={w},c={},kernel={kernel},stride={stride},pad={}",
            2 * nr,
            kernel / 2
        );
        let fold = mr % 2 == 0;
        let (nest, calls) = check_schedule(&spec, &dep_steps(mr, nr, kernel, fold));
        assert_eq!(calls, expect_calls(1), "{spec}\n{nest}");
        let found = tensorize::find(&nest);
        let m = found[0]
            .1
            .as_ref()
            .unwrap_or_else(|e| panic!("{spec}: {e}\n{nest}"));
        assert_eq!(m.kind, tensorize::KernelKind::Elementwise, "{spec}");
        assert_eq!((m.mr, m.nr, m.k), (mr, nr, kernel), "{spec}");
        // A: padded input rows `stride` pixels apart, the window's next column one pixel on;
        // B: the weight's next window column; both one channel per tile column.
        let c = 2 * nr;
        assert_eq!(
            (m.a_row_stride, m.a_k_stride, m.b_k_stride),
            (stride * c, c, c)
        );
        if fold {
            // rh: the next padded input row (w + 2·pad pixels) and the next weight row.
            let o = m
                .outer
                .as_ref()
                .expect("rh encloses the tensorized loop alone");
            let padded_w = w + 2 * (kernel / 2);
            assert_eq!(
                (o.extent, o.a_stride, o.b_stride),
                (kernel, padded_w * c, kernel * c)
            );
        } else {
            assert!(m.outer.is_none());
        }
        if ukernel::available(Isa::Avx2) {
            let compiled = compile(&nest, &avx2(1)).expect("compiles");
            let call = &compiled.micro_kernel_calls()[0];
            assert_eq!(call.kind, ukernel::KernelKind::Elementwise);
            assert!(!call.packed_b, "depthwise weights are read as they are");
            assert_eq!(call.blocks, tensorize::strip_blocks(Isa::Avx2, mr, nr));
            // The window's rows fold into the call when rh encloses it alone.
            assert_eq!(call.k2, if fold { kernel } else { 1 }, "{spec}");
        }
    }
}

#[test]
fn avx512_tiles_of_gmm_conv_and_depthwise_call_the_avx512_kernels_and_match_the_reference() {
    let avx512 = |n| expect_calls_of(Isa::Avx512, n);
    if !ukernel::available(Isa::Avx512) {
        eprintln!(
            "SKIPPED the AVX-512 calls: this CPU has no AVX-512F (the schedules are still \
             checked under the targets it runs)"
        );
    }
    // gmm: register tiles of every width (14×16, 14×32, 9×48, 6×64, 1×16) and strips (7×64
    // is 4 + 3 rows, 56×16 four 14-row blocks, 64×32 five blocks).
    for (mr, nr) in [
        (1, 16),
        (14, 16),
        (8, 32),
        (14, 32),
        (9, 48),
        (6, 64),
        (7, 64),
        (56, 16),
        (64, 32),
    ] {
        let spec = format!("gmm:b=1,n={},m={},k=5", 2 * mr, 2 * nr);
        let (nest, calls) = check_schedule_per_isa(&spec, &gmm_steps(mr, nr));
        assert_eq!(calls.of(Isa::Avx512), avx512(1), "{spec}\n{nest}");
        // The AVX2 family has 16- and 32-wide tiles too, none 48 or 64 wide.
        let avx2_has = tensorize::kernel_supported(Isa::Avx2, mr, nr);
        assert_eq!(
            calls.of(Isa::Avx2),
            expect_calls(usize::from(avx2_has)),
            "{spec}"
        );
        assert_eq!(calls.of(Isa::Generic), 0);
    }
    // k = 1 in a kernel call: a 1×1 window's reduction over 1 input channel is dropped by
    // lowering, so use gmm with k = 2 and a conv whose rc is 1 but kernel 3.
    let (_, calls) = check_schedule_per_isa("gmm:b=1,n=4,m=32,k=2", &gmm_steps(4, 32));
    assert_eq!(calls.of(Isa::Avx512), avx512(1));
    // NHWC convolutions: a 4×32 tile over 8 channels, a 56-row strip of 16 columns.
    for (spec, mr, nr, rc) in [
        (
            "c2d:n=1,h=4,w=8,ci=8,co=64,kernel=3,stride=1,pad=1",
            4,
            32,
            8,
        ),
        (
            "c2d:n=1,h=2,w=56,ci=3,co=16,kernel=3,stride=1,pad=1",
            56,
            16,
            3,
        ),
        (
            "c2d:n=1,h=3,w=6,ci=5,co=48,kernel=3,stride=1,pad=1",
            3,
            48,
            5,
        ),
    ] {
        let (nest, calls) = check_schedule_per_isa(spec, &conv_steps(mr, nr, rc));
        assert_eq!(calls.of(Isa::Avx512), avx512(1), "{spec}\n{nest}");
    }
    // Depthwise (elementwise kernels), folded and not, 16 to 64 channels per tile.
    for (mr, nr, fold) in [(4, 16, true), (7, 32, false), (14, 32, true), (6, 64, true)] {
        let spec = format!(
            "dep:n=1,h=3,w={},c={},kernel=3,stride=1,pad=1",
            2 * mr,
            2 * nr
        );
        let (nest, calls) = check_schedule_per_isa(&spec, &dep_steps(mr, nr, 3, fold));
        assert_eq!(calls.of(Isa::Avx512), avx512(1), "{spec}\n{nest}");
        if ukernel::available(Isa::Avx512) {
            let opts = CompileOptions {
                isa: Isa::Avx512,
                ..CompileOptions::with_threads(1)
            };
            let compiled = compile(&nest, &opts).expect("compiles");
            let call = &compiled.micro_kernel_calls()[0];
            assert_eq!(call.kind, ukernel::KernelKind::Elementwise);
            assert_eq!(call.k2, if fold { 3 } else { 1 }, "{spec}");
        }
    }
}

#[test]
fn a_target_the_cpu_lacks_compiles_to_the_ordinary_loops() {
    // Whatever this CPU is, an ISA it cannot run never reaches a kernel call (no SIGILL).
    let spec = "gmm:b=1,n=8,m=32,k=4";
    let dag = Arc::new(tessel_workloads::lookup(spec).expect("w").dag);
    let nest = lower(&State::replay(dag.clone(), &gmm_steps(4, 16)).expect("legal")).expect("l");
    for isa in Isa::ALL {
        let opts = CompileOptions {
            isa,
            ..CompileOptions::with_threads(1)
        };
        let kernel = compile(&nest, &opts).expect("compiles");
        let calls = kernel.micro_kernel_calls().len();
        assert_eq!(
            calls,
            expect_calls_of(isa, usize::from(isa.has_micro_kernels()))
        );
        let inputs = eval::random_inputs(&dag, 5);
        let want = eval::evaluate(&dag, &inputs).expect("evaluates");
        testing::check_close(&run(&kernel, &nest, &inputs), &want, 1e-4, 1e-4)
            .unwrap_or_else(|e| panic!("{isa}: {e}"));
    }
}

/// dep-1's best schedule of the AVX-512 search (padding computed per block of output rows,
/// a 16×32 elementwise strip folded over the window) on a smaller image: correct under
/// every target; under a target with micro-kernels the tile's zero fill is fused into the
/// calls (zero-start kernels) and the padding copy runs as bulk runs.
#[test]
fn depthwise_with_padding_at_a_block_fuses_the_zero_fill_and_bulk_copies_the_padding() {
    let steps: Vec<Step> = serde_json::from_str(
        r#"[{"step":"split","stage":3,"iter":0,"extent":1,"lengths":[1,1,1]},
        {"step":"split","stage":3,"iter":4,"extent":null,"lengths":[2,1,1]},
        {"step":"split","stage":3,"iter":8,"extent":null,"lengths":[1,1,16]},
        {"step":"split","stage":3,"iter":12,"extent":null,"lengths":[1,1,32]},
        {"step":"split","stage":3,"iter":16,"extent":3,"lengths":[3]},
        {"step":"split","stage":3,"iter":18,"extent":3,"lengths":[3]},
        {"step":"reorder","stage":3,"order":[0,4,8,12,1,5,9,13,16,18,2,6,10,14,17,19,3,7,11,15]},
        {"step":"annotate","stage":3,"iter":15,"annotation":"tensorize"},
        {"step":"compute_at","stage":2,"target_stage":3,"target_iter":0},
        {"step":"compute_at","stage":2,"target_stage":3,"target_iter":1},
        {"step":"fuse","stage":3,"iters":[0,1]},
        {"step":"annotate","stage":3,"iter":0,"annotation":"parallel"}]"#,
    )
    .expect("steps");
    for spec in [
        "dep:n=1,h=8,w=16,c=32,kernel=3,stride=1,pad=1",
        "dep:n=1,h=6,w=32,c=32,kernel=3,stride=1,pad=1",
    ] {
        let (nest, calls) = check_schedule_per_isa(spec, &steps);
        for isa in [Isa::Avx2, Isa::Avx512] {
            if !ukernel::available(isa) {
                eprintln!("{spec}: SKIPPED target {isa}: this CPU cannot run its kernels");
                continue;
            }
            let kernel = compile(
                &nest,
                &CompileOptions {
                    isa,
                    ..CompileOptions::with_threads(1)
                },
            )
            .expect("compiles");
            let mk = kernel.micro_kernel_calls();
            if isa == Isa::Avx512 {
                assert!(
                    calls.of(isa) > 0,
                    "{spec} {isa}: no micro-kernel call\n{nest}"
                );
            }
            assert!(
                mk.iter().all(|c| c.zero_start),
                "{spec} {isa}: {mk:?}\n{nest}"
            );
            assert!(
                !kernel.bulk_runs().is_empty(),
                "{spec} {isa}: no bulk run\n{nest}"
            );
        }
    }
}
