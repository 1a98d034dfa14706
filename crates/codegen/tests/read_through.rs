//! Read-through padding (`CompileOptions::read_through`): a depthwise convolution whose
//! padding is computed per block of output rows and columns reads interior blocks straight
//! from the image. Every target this CPU runs computes the reference (1 and 2 threads,
//! read-through on and off); under a target with micro-kernels every call is planned to
//! read through, and with the option off none is.
//!
//! Guarded edges (`CompileOptions::guarded_edges`): the edge blocks read the image too,
//! through the guarded elementwise kernels, with the image surrounded by NaN in memory, so
//! a tap that falls in the padding and is read anyway spoils the output.

mod common;

use std::sync::Arc;
use tessel_codegen::{ukernel, CompileOptions};
use tessel_ir::target::{CpuFeatures, Isa};
use tessel_ir::tensorize::KernelKind;
use tessel_ir::{eval, lower::lower, testing, State, Step};

/// dep-1's structure: an `h1`-row × 16-column × 32-channel elementwise tile, the window
/// folded into the call, the padding computed at the column tile (`w.0`).
fn steps(h1: i64, kernel: i64, pad_at: usize) -> Vec<Step> {
    steps_tiled(h1, 16, 32, kernel, pad_at)
}

/// [`steps`] with a `w1`-column × `c1`-channel tile.
fn steps_tiled(h1: i64, w1: i64, c1: i64, kernel: i64, pad_at: usize) -> Vec<Step> {
    serde_json::from_str(&format!(
        r#"[{{"step":"split","stage":3,"iter":0,"extent":1,"lengths":[1,1,1]}},
        {{"step":"split","stage":3,"iter":4,"extent":null,"lengths":[{h1},1,1]}},
        {{"step":"split","stage":3,"iter":8,"extent":null,"lengths":[1,1,{w1}]}},
        {{"step":"split","stage":3,"iter":12,"extent":null,"lengths":[1,1,{c1}]}},
        {{"step":"split","stage":3,"iter":16,"extent":{kernel},"lengths":[{kernel}]}},
        {{"step":"split","stage":3,"iter":18,"extent":{kernel},"lengths":[{kernel}]}},
        {{"step":"reorder","stage":3,"order":[0,4,8,12,1,5,9,13,16,18,2,6,10,14,17,19,3,7,11,15]}},
        {{"step":"annotate","stage":3,"iter":15,"annotation":"tensorize"}},
        {{"step":"compute_at","stage":2,"target_stage":3,"target_iter":{pad_at}}},
        {{"step":"fuse","stage":3,"iters":[0,1]}},
        {{"step":"annotate","stage":3,"iter":0,"annotation":"parallel"}}]"#
    ))
    .expect("steps")
}

#[test]
fn depthwise_padding_at_a_column_tile_reads_interior_blocks_in_place_and_matches_the_reference() {
    // (spec, rows per block, window): images with interior blocks and border blocks on
    // every side; stride 1 and 2; a 5-tap window.
    let cases = [
        ("dep:n=1,h=12,w=64,c=32,kernel=3,stride=1,pad=1", 4, 3),
        ("dep:n=1,h=16,w=48,c=32,kernel=3,stride=1,pad=1", 2, 3),
        ("dep:n=1,h=24,w=128,c=32,kernel=3,stride=2,pad=1", 4, 3),
        ("dep:n=1,h=12,w=64,c=32,kernel=5,stride=1,pad=2", 4, 5),
    ];
    for (spec, h1, kernel) in cases {
        let dag = Arc::new(tessel_workloads::lookup(spec).expect("workload").dag);
        for pad_at in [2, 1] {
            // At `w.0` blocks can be interior; at `h.0` every block spans the whole width
            // (planned, but the run-time test always copies).
            let state = State::replay(dag.clone(), &steps(h1, kernel, pad_at))
                .unwrap_or_else(|e| panic!("{spec}: {e}"));
            let nest = lower(&state).expect("lowers");
            let inputs = eval::random_inputs(&dag, 7);
            let want = eval::evaluate(&dag, &inputs).expect("evaluates");
            let ins: Vec<&[f32]> = inputs.iter().map(|v| v.as_slice()).collect();
            for isa in Isa::ALL {
                if !CpuFeatures::host().supports(isa) {
                    eprintln!("{spec}: SKIPPED target {isa}: this CPU lacks it");
                    continue;
                }
                for threads in [1, 2] {
                    for read_through in [true, false] {
                        let opts = CompileOptions {
                            isa,
                            read_through,
                            ..CompileOptions::with_threads(threads)
                        };
                        let (got, kernel) = common::compile_and_run(&nest, &opts, &ins);
                        testing::check_close(&got, &want, 1e-4, 1e-4).unwrap_or_else(|e| {
                            panic!("{spec} pad_at={pad_at} {isa} threads={threads} read_through={read_through}: {e}\n{nest}")
                        });
                        let mk = kernel.micro_kernel_calls();
                        if isa.has_micro_kernels() {
                            assert!(!mk.is_empty(), "{spec} {isa}: no call\n{nest}");
                        }
                        assert!(
                            mk.iter().all(|c| c.reads_through == read_through),
                            "{spec} {isa} read_through={read_through}: {mk:?}\n{nest}"
                        );
                    }
                }
            }
        }
    }
}

/// `inputs` each copied into the middle of a NaN-filled buffer (`pad` NaNs before and
/// after): the buffers and the ranges of the inputs in them.
fn nan_surrounded(inputs: &[Vec<f32>], pad: usize) -> Vec<Vec<f32>> {
    inputs
        .iter()
        .map(|x| {
            let mut v = vec![f32::NAN; x.len() + 2 * pad];
            v[pad..pad + x.len()].copy_from_slice(x);
            v
        })
        .collect()
}

#[test]
fn guarded_edges_read_the_image_at_its_borders_without_the_copy_and_match_the_reference() {
    // (spec, rows, columns and channels per block): dep-1's 28-column tile (two 14-row
    // register tiles), stride 2, channels that are not a multiple of 16 (masked AVX-512
    // vectors), a block wider than the image (padding on both sides), one row per block.
    let cases = [
        ("dep:n=1,h=16,w=56,c=32,kernel=3,stride=1,pad=1", 8, 28, 32),
        ("dep:n=1,h=12,w=64,c=32,kernel=3,stride=1,pad=1", 4, 16, 32),
        ("dep:n=1,h=24,w=128,c=32,kernel=3,stride=2,pad=1", 4, 16, 32),
        ("dep:n=1,h=10,w=40,c=24,kernel=3,stride=1,pad=1", 5, 8, 24),
        ("dep:n=1,h=8,w=30,c=40,kernel=3,stride=2,pad=1", 2, 5, 40),
        ("dep:n=1,h=6,w=7,c=16,kernel=3,stride=1,pad=1", 1, 7, 16),
    ];
    const PAD: usize = 4096;
    for (spec, h1, w1, c1) in cases {
        let dag = Arc::new(tessel_workloads::lookup(spec).expect("workload").dag);
        let state = State::replay(dag.clone(), &steps_tiled(h1, w1, c1, 3, 2))
            .unwrap_or_else(|e| panic!("{spec}: {e}"));
        let nest = lower(&state).expect("lowers");
        let inputs = eval::random_inputs(&dag, 11);
        let want = eval::evaluate(&dag, &inputs).expect("evaluates");
        let held = nan_surrounded(&inputs, PAD);
        let ins: Vec<&[f32]> = held
            .iter()
            .zip(&inputs)
            .map(|(v, x)| &v[PAD..PAD + x.len()])
            .collect();
        for isa in Isa::ALL {
            if !CpuFeatures::host().supports(isa) {
                eprintln!("{spec}: SKIPPED target {isa}: this CPU lacks it");
                continue;
            }
            for (threads, guarded_edges) in [(1, true), (2, true), (2, false)] {
                let opts = CompileOptions {
                    isa,
                    guarded_edges,
                    ..CompileOptions::with_threads(threads)
                };
                let (got, kernel) = common::compile_and_run(&nest, &opts, &ins);
                testing::check_close(&got, &want, 1e-4, 1e-4).unwrap_or_else(|e| {
                    panic!(
                        "{spec} {isa} threads={threads} guarded_edges={guarded_edges}: {e}\n{nest}"
                    )
                });
                let mk = kernel.micro_kernel_calls();
                let tile = ukernel::strip_kernels(isa, KernelKind::Elementwise, w1, c1);
                if isa.has_micro_kernels() && tile.is_some() {
                    assert!(!mk.is_empty(), "{spec} {isa}: no call\n{nest}");
                }
                assert!(
                    mk.iter()
                        .all(|c| c.reads_through && c.guarded_edges == guarded_edges),
                    "{spec} {isa} guarded_edges={guarded_edges}: {mk:?}\n{nest}"
                );
            }
        }
    }
}

#[test]
fn a_five_tap_window_keeps_the_copy_at_its_edges() {
    // The guarded kernels slide 3-tap windows only; a 5-tap window's edge blocks copy.
    let spec = "dep:n=1,h=12,w=64,c=32,kernel=5,stride=1,pad=2";
    let dag = Arc::new(tessel_workloads::lookup(spec).expect("workload").dag);
    let state = State::replay(dag.clone(), &steps(4, 5, 2)).expect("replays");
    let nest = lower(&state).expect("lowers");
    let inputs = eval::random_inputs(&dag, 5);
    let want = eval::evaluate(&dag, &inputs).expect("evaluates");
    let ins: Vec<&[f32]> = inputs.iter().map(|v| v.as_slice()).collect();
    let isa = CpuFeatures::host().best_isa();
    let (got, kernel) = common::compile_and_run(
        &nest,
        &CompileOptions {
            isa,
            ..CompileOptions::with_threads(2)
        },
        &ins,
    );
    testing::check_close(&got, &want, 1e-4, 1e-4).expect("matches");
    let mk = kernel.micro_kernel_calls();
    assert!(
        mk.iter().all(|c| !c.guarded_edges),
        "{spec} {isa}: {mk:?}\n{nest}"
    );
}
