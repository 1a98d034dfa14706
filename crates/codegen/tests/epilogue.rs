//! Fused write-backs (`tessel_codegen::epilogue`): a tile's write-back that applies bias,
//! residual add, ReLU or ReLU6 runs as one call of the target's epilogue routine when the
//! target has micro-kernels. Tensorized convolution tasks with those epilogues match the
//! reference evaluator under every target this CPU runs, on 1 and 2 threads; chains on odd
//! widths compute bit for bit what the plain loops compute; write-backs outside the pattern
//! stay loops and stay correct.

mod common;

use std::sync::Arc;
use tessel_codegen::builder::NestBuilder;
use tessel_codegen::{compile, ukernel, CompileOptions, Isa, LayoutRewrite};
use tessel_ir::expr::BinOp;
use tessel_ir::loop_nest::{ExprId, LoopKind::*};
use tessel_ir::target::CpuFeatures;
use tessel_ir::{eval, lower::lower, testing, LoopNest, State, Step};

/// The targets this CPU runs (generic always).
fn targets() -> Vec<Isa> {
    Isa::ALL
        .into_iter()
        .filter(|&isa| {
            let ok = !isa.has_micro_kernels() || ukernel::available(isa);
            if !ok {
                eprintln!("skipping {isa}: this CPU cannot run it");
            }
            ok
        })
        .collect()
}

/// A fused conv task's schedule: the conv (stage `conv`) computed at the output's (stage
/// `out`) tile of `mr` output columns × `nr` channels (one output row), its reduction over
/// `rc` input channels tensorized; the output tile loop fused and parallel. The write-back
/// is then `for w in 0..mr { vectorized for co in 0..nr { out = f(conv, ...) } }`.
fn conv_steps(inline: &[usize], conv: usize, out: usize, mr: i64, nr: i64, rc: i64) -> Vec<Step> {
    conv_steps_in(inline, conv, out, mr, nr, rc, 1)
}

/// [`conv_steps`] with the window's rows and columns split `[window]` (so that for a
/// `window`-wide kernel they run in `rh.1` and `rw.1`).
fn conv_steps_in(
    inline: &[usize],
    conv: usize,
    out: usize,
    mr: i64,
    nr: i64,
    rc: i64,
    window: i64,
) -> Vec<Step> {
    let mut json = String::from("[");
    for s in inline {
        json += &format!(r#"{{"step":"compute_inline","stage":{s}}},"#);
    }
    let s0 = inline.len();
    json += &format!(
        r#"
    {{"step":"split","stage":{conv},"iter":0,"extent":null,"lengths":[1,1,1]}},
    {{"step":"split","stage":{conv},"iter":4,"extent":null,"lengths":[1,1,1]}},
    {{"step":"split","stage":{conv},"iter":8,"extent":null,"lengths":[1,1,{mr}]}},
    {{"step":"split","stage":{conv},"iter":12,"extent":null,"lengths":[1,1,{nr}]}},
    {{"step":"split","stage":{conv},"iter":16,"extent":null,"lengths":[{window}]}},
    {{"step":"split","stage":{conv},"iter":18,"extent":null,"lengths":[{window}]}},
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
        s1 = s0 + 1,
        s2 = s0 + 2,
        s3 = s0 + 3,
    );
    serde_json::from_str(&json).expect("steps")
}

/// [`conv_steps`] for a convolution with a 3×3 window, as ResNet-50's tuned 3×3 tasks are
/// scheduled: the window's columns and the input channels fused into the tensorized loop
/// (`rw.1@rc.1@`, `k = 3·rc`), its rows `rh.1` a loop around it; `rc` of the input
/// channels inside the call, the rest an outer loop `rc.0` before the window's.
fn window_steps(inline: &[usize], conv: usize, out: usize, mr: i64, nr: i64, rc: i64) -> Vec<Step> {
    let mut steps = conv_steps_in(inline, conv, out, mr, nr, rc, 3);
    let json = format!(
        r#"[{{"step":"fuse","stage":{conv},"iters":[16,17]}},
        {{"step":"annotate","stage":{conv},"iter":16,"annotation":"tensorize"}}]"#
    );
    let fuse: Vec<Step> = serde_json::from_str(&json).expect("steps");
    // In place of conv_steps' tensorize annotation of `rc.1` (iterator 17).
    let at = steps.len() - 2;
    steps.splice(at..at + 1, fuse);
    steps
}

/// Replays `steps` on task `spec` and checks every target on 1 and 2 threads against the
/// reference evaluator; under a target with micro-kernels the write-back must be fused with
/// chain `chain`, under the generic one nothing is.
fn check_task(spec: &str, steps: &[Step], chain: &str, in_kernel: [bool; 2]) {
    check_window_task(spec, steps, chain, in_kernel, 1)
}

/// [`check_task`], and a call with its write-back in the kernel folds `k2` window rows in
/// (a call without folds none).
fn check_window_task(spec: &str, steps: &[Step], chain: &str, in_kernel: [bool; 2], k2: i64) {
    let w = tessel_workloads::lookup(spec).expect("workload");
    let dag = Arc::new(w.dag);
    let state = State::replay(dag.clone(), steps).unwrap_or_else(|e| panic!("{spec}: {e}"));
    let nest = lower(&state).expect("lowers");
    let inputs = eval::random_inputs(&dag, 7);
    let want = eval::evaluate(&dag, &inputs).expect("evaluates");
    let ins: Vec<&[f32]> = inputs.iter().map(|v| v.as_slice()).collect();
    for isa in targets() {
        for threads in [1, 2] {
            // Packed weights on 2 threads (as tuned programs run), the input as it is on 1.
            let layout_rewrite = if threads == 2 {
                LayoutRewrite::All
            } else {
                LayoutRewrite::Off
            };
            let opts = CompileOptions {
                isa,
                layout_rewrite,
                ..CompileOptions::with_threads(threads)
            };
            let (got, kernel) = common::compile_and_run(&nest, &opts, &ins);
            testing::check_close(&got, &want, 1e-4, 1e-4)
                .unwrap_or_else(|e| panic!("{spec} threads={threads} target={isa}: {e}\n{nest}"));
            let fused: Vec<String> = kernel
                .fused_write_backs()
                .iter()
                .map(|f| f.chain.clone())
                .collect();
            // The chain runs inside the kernel when the tile has a fused kernel
            // (`in_kernel`: under AVX-512, under AVX2).
            let inside = kernel.fused_write_backs().iter().any(|f| f.in_kernel);
            let expect = match isa {
                Isa::Avx512 => in_kernel[0],
                Isa::Avx2 => in_kernel[1],
                Isa::Generic => false,
            };
            let calls = kernel.micro_kernel_calls();
            assert_eq!(inside, expect, "{spec} {isa}\n{nest}\n{calls:?}");
            assert_eq!(
                calls.iter().any(|c| c.fused_write_back),
                inside,
                "{spec} {isa}"
            );
            for c in calls {
                let want = if c.fused_write_back { k2 } else { 1 };
                assert_eq!(c.k2, want, "{spec} {isa}: {c:?}");
                assert_eq!(c.zero_start, c.fused_write_back, "{spec} {isa}: {c:?}");
            }
            // No chain: a guarded (edge) tile, nothing fused.
            if isa.has_micro_kernels() && !chain.is_empty() {
                assert_eq!(fused, [chain], "{spec} {isa}\n{nest}");
            } else {
                assert!(fused.is_empty(), "{spec} {isa}: {fused:?}");
            }
        }
    }
}

#[test]
fn fused_conv_epilogues_match_the_reference_under_every_target() {
    // bias + ReLU, a 16×32 tile (two zmm / four ymm per row): the fill, kernel call and
    // write-back are one fused kernel call per register tile.
    check_task(
        "tiny-cnn@1/c2d:n=1,h=16,w=16,ci=8,co=32,kernel=1,stride=1,pad=0+bias+relu",
        &conv_steps(&[5, 3], 4, 6, 16, 32, 8),
        "max((conv2d_nhwc + bias), 0)",
        [true, true],
    );
    // bias + residual add + ReLU (the residual is the block input), 16×8 (half a zmm: a
    // masked row; no AVX-512 kernel that narrow, and the 3×3 window's loops around the
    // call: the routine after the kernel).
    check_task(
        "tiny-cnn@1/c2d:n=1,h=16,w=16,ci=8,co=8,kernel=3,stride=1,pad=1+bias+add+relu",
        &conv_steps(&[6, 5], 4, 7, 16, 8, 8),
        "max(((conv2d_nhwc + bias) + inputs), 0)",
        [false, false],
    );
    // bias + ReLU6, 7×48 and 7×40 (a masked zmm tail; five ymm; no AVX2 kernel that
    // wide, and no kernel at all 40 wide: the routine).
    for nr in [48, 40] {
        check_task(
            "mobilenet-v2@1/c2d:n=1,h=7,w=7,ci=160,co=960,kernel=1,stride=1,pad=0+bias+relu6",
            &conv_steps(&[5, 3], 4, 6, 7, nr, 160),
            "min(max((conv2d_nhwc + bias), 0), 6)",
            [nr == 48, false],
        );
    }
    // bias alone, 7×32; and 7×20, a width no micro-kernel has (the conv stays plain code,
    // the write-back is still fused: a scalar AVX2 tail of 4).
    for nr in [32, 20] {
        check_task(
            "mobilenet-v2@1/c2d:n=1,h=7,w=7,ci=576,co=160,kernel=1,stride=1,pad=0+bias",
            &conv_steps(&[3], 4, 5, 7, nr, 576),
            "(conv2d_nhwc + bias)",
            [nr == 32, nr == 32],
        );
    }
}

#[test]
fn window_convs_fold_the_window_rows_into_the_fused_kernel() {
    // A 3×3 window, stride 1, bias + ReLU: 28×64 tiles (strip blocks 6, 6, 6, 5, 5 under
    // AVX-512, a 64-wide tile has no AVX2 kernel), `k` 3·128 per window row, 3 rows folded.
    let s1 = "resnet50@1/c2d:n=1,h=28,w=28,ci=128,co=128,kernel=3,stride=1,pad=1+bias+relu";
    let relu = "max((conv2d_nhwc + bias), 0)";
    check_window_task(
        s1,
        &window_steps(&[5], 4, 6, 28, 64, 128),
        relu,
        [true, false],
        3,
    );
    // 14×32 tiles: both ISAs (AVX2 strips of 3 rows × 4 ymm, AVX-512 5, 5, 4 × 2 zmm).
    check_window_task(
        s1,
        &window_steps(&[5], 4, 6, 14, 32, 128),
        relu,
        [true, true],
        3,
    );
    // The input channels split (`rc.0` of 2 around the window loop): two reduction loops
    // around the call, declined (the write-back a routine after it), still correct.
    check_window_task(
        s1,
        &window_steps(&[5], 4, 6, 14, 32, 64),
        relu,
        [false, false],
        1,
    );
    // Stride 2 (the tile's rows 2·ci apart).
    check_window_task(
        "resnet50@1/c2d:n=1,h=56,w=56,ci=128,co=128,kernel=3,stride=2,pad=1+bias+relu",
        &window_steps(&[5], 4, 6, 14, 32, 128),
        relu,
        [true, true],
        3,
    );
    // Stride 2, ReLU6, 3 input channels: MobileNet-V2's stem, 16×32 tiles.
    check_window_task(
        "mobilenet-v2@1/c2d:n=1,h=224,w=224,ci=3,co=32,kernel=3,stride=2,pad=1+bias+relu6",
        &window_steps(&[5], 4, 6, 16, 32, 3),
        "min(max((conv2d_nhwc + bias), 0), 6)",
        [true, true],
        3,
    );
    // bias + residual add + ReLU, 8 channels (AVX2 only: no AVX-512 fused kernel that
    // narrow, the routine after the kernel there); 16 and 6 output columns per tile
    // (6 leaves an edge tile of 4, 16 = 6 + 6 + 4: the guarded tile is plain code, its
    // write-back a loop).
    for (mr, chain) in [(16, "max(((conv2d_nhwc + bias) + inputs), 0)"), (6, "")] {
        check_window_task(
            "tiny-cnn@1/c2d:n=1,h=16,w=16,ci=8,co=8,kernel=3,stride=1,pad=1+bias+add+relu",
            &window_steps(&[6, 5], 4, 7, mr, 8, 8),
            chain,
            [false, mr == 16],
            3,
        );
    }
}

/// `rows`×`cols` write-backs from a tile `t` (rows `ld` apart), a bias `b[cols]` and a
/// residual `r[rows][cols]` into `out[rows][cols]`, with value `f(t, b, r)`.
fn write_back(
    rows: i64,
    cols: i64,
    ld: i64,
    f: impl Fn(&mut NestBuilder, ExprId, ExprId, ExprId) -> ExprId,
    transposed: bool,
) -> LoopNest {
    let mut nb = NestBuilder::new("wb");
    let t = nb.input("t", &[rows.max(cols) * ld.max(rows)]);
    let b = nb.input("b", &[cols]);
    let r = nb.input("r", &[rows, cols]);
    let out = nb.output("out", &[rows, cols]);
    nb.for_("i", rows, Serial, |nb, i| {
        nb.for_("j", cols, Vectorized, |nb, j| {
            // The tile read row by row, or transposed (column `j` is row `j` of `t`).
            let ti = if transposed {
                nb.idx(j, ld, i)
            } else {
                nb.idx(i, ld, j)
            };
            let tv = nb.load(t, ti);
            let bv = nb.load(b, j);
            let ri = nb.idx(i, cols, j);
            let rv = nb.load(r, ri);
            let v = f(nb, tv, bv, rv);
            nb.store(out, ri, v);
        });
    });
    nb.finish()
}

fn data(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2654435761).wrapping_add(12345);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            // Multiples of 1/8 in [-4, 4): exact sums, ties for min and max.
            ((s >> 16) % 64) as f32 / 8.0 - 4.0
        })
        .collect()
}

/// Runs `nest` under every target on 1 and 2 threads: the outputs must equal `want` bit for
/// bit; returns the fused write-backs per target with micro-kernels.
fn check_bits(nest: &LoopNest, inputs: &[Vec<f32>], want: &[f32], what: &str) -> Vec<usize> {
    let ins: Vec<&[f32]> = inputs.iter().map(|v| v.as_slice()).collect();
    let mut fused = Vec::new();
    for isa in targets() {
        if !CpuFeatures::host().supports(isa) {
            continue;
        }
        for threads in [1, 2] {
            let opts = CompileOptions {
                isa,
                ..CompileOptions::with_threads(threads)
            };
            let kernel = compile(nest, &opts).expect("compiles");
            let mut out = vec![f32::NAN; want.len()];
            kernel.run(&ins, &mut [out.as_mut_slice()]).expect("runs");
            let same = out
                .iter()
                .zip(want)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{what} {isa} threads={threads}\n{out:?}\n{want:?}");
            if isa.has_micro_kernels() && threads == 1 {
                fused.push(kernel.fused_write_backs().len());
            }
            if !isa.has_micro_kernels() {
                assert!(kernel.fused_write_backs().is_empty());
            }
        }
    }
    fused
}

#[test]
fn chains_on_odd_widths_compute_what_the_loops_compute() {
    // Chains with every operator, the leaf on either side, on widths with masked and
    // scalar tails.
    type Chain = (
        &'static str,
        fn(&mut NestBuilder, ExprId, ExprId, ExprId) -> ExprId,
        fn(f32, f32, f32) -> f32,
    );
    let chains: [Chain; 3] = [
        (
            "relu6 of t + b + r",
            |nb, t, b, r| {
                let s = nb.add(t, b);
                let s = nb.add(s, r);
                let z = nb.float(0.0);
                let s = nb.bin(BinOp::Max, s, z);
                let six = nb.float(6.0);
                nb.bin(BinOp::Min, s, six)
            },
            |t, b, r| {
                let s = t + b + r;
                let s = if 0.0 < s { s } else { 0.0 };
                if s < 6.0 {
                    s
                } else {
                    6.0
                }
            },
        ),
        (
            "b - max(1.5, t * r) then min(-1, .)",
            |nb, t, b, r| {
                let s = nb.mul(t, r);
                let c = nb.float(1.5);
                let s = nb.bin(BinOp::Max, c, s);
                let s = nb.sub(b, s);
                let m = nb.float(-1.0);
                nb.bin(BinOp::Min, m, s)
            },
            |t, b, r| {
                let s = t * r;
                let s = if s < 1.5 { 1.5 } else { s };
                let s = b - s;
                if -1.0 < s {
                    -1.0
                } else {
                    s
                }
            },
        ),
        (
            "(t - 0.25) * b - r",
            |nb, t, b, r| {
                let c = nb.float(0.25);
                let s = nb.sub(t, c);
                let s = nb.mul(s, b);
                nb.sub(s, r)
            },
            |t, b, r| (t - 0.25) * b - r,
        ),
    ];
    for (rows, cols) in [(3i64, 67i64), (9, 17), (1, 130), (5, 40), (2, 100), (4, 37)] {
        let ld = cols + 3;
        for (name, f, g) in &chains {
            let nest = write_back(rows, cols, ld, f, false);
            let t = data((rows.max(cols) * ld.max(rows)) as usize, 1);
            let b = data(cols as usize, 2);
            let r = data((rows * cols) as usize, 3);
            let want: Vec<f32> = (0..rows * cols)
                .map(|k| {
                    let (i, j) = (k / cols, k % cols);
                    g(t[(i * ld + j) as usize], b[j as usize], r[k as usize])
                })
                .collect();
            let fused = check_bits(&nest, &[t, b, r], &want, &format!("{name} {rows}x{cols}"));
            let expect = usize::from(rows * cols >= tessel_codegen::epilogue::MIN_ELEMENTS);
            assert!(
                fused.iter().all(|&n| n == expect),
                "{name} {rows}x{cols}: {fused:?}"
            );
        }
    }
}

#[test]
fn write_backs_outside_the_pattern_stay_loops_and_stay_correct() {
    let (rows, cols, ld) = (12i64, 24i64, 24i64);
    let relu_bias = |nb: &mut NestBuilder, t: ExprId, b: ExprId, _r: ExprId| {
        let s = nb.add(t, b);
        let z = nb.float(0.0);
        nb.bin(BinOp::Max, s, z)
    };
    let t = data((rows.max(cols) * ld.max(rows)) as usize, 4);
    let b = data(cols as usize, 5);
    let r = data((rows * cols) as usize, 6);
    let relu = |s: f32| if 0.0 < s { s } else { 0.0 };
    // A transposed read of the tile.
    let nest = write_back(rows, cols, ld, relu_bias, true);
    let want: Vec<f32> = (0..rows * cols)
        .map(|k| {
            let (i, j) = (k / cols, k % cols);
            relu(t[(j * ld + i) as usize] + b[j as usize])
        })
        .collect();
    let fused = check_bits(
        &nest,
        &[t.clone(), b.clone(), r.clone()],
        &want,
        "transposed",
    );
    assert!(fused.iter().all(|&n| n == 0), "transposed: {fused:?}");
    // Not a chain: (t + b) * (t - r).
    let nest = write_back(
        rows,
        cols,
        ld,
        |nb, t, b, r| {
            let x = nb.add(t, b);
            let y = nb.sub(t, r);
            nb.mul(x, y)
        },
        false,
    );
    let want: Vec<f32> = (0..rows * cols)
        .map(|k| {
            let (i, j) = (k / cols, k % cols);
            let tv = t[(i * ld + j) as usize];
            (tv + b[j as usize]) * (tv - r[k as usize])
        })
        .collect();
    let fused = check_bits(
        &nest,
        &[t.clone(), b.clone(), r.clone()],
        &want,
        "not a chain",
    );
    assert!(fused.iter().all(|&n| n == 0), "not a chain: {fused:?}");
    // A non-affine read: the bias indexed by `(j * j) % cols`.
    let mut nb = NestBuilder::new("wb");
    let tb = nb.input("t", &[rows * cols]);
    let bb = nb.input("b", &[cols]);
    let out = nb.output("out", &[rows, cols]);
    nb.for_("i", rows, Serial, |nb, i| {
        nb.for_("j", cols, Serial, |nb, j| {
            let ti = nb.idx(i, cols, j);
            let tv = nb.load(tb, ti);
            let jj = nb.mul(j, j);
            let c = nb.int(cols);
            let bi = nb.bin(BinOp::Mod, jj, c);
            let bv = nb.load(bb, bi);
            let s = nb.add(tv, bv);
            let z = nb.float(0.0);
            let v = nb.bin(BinOp::Max, s, z);
            nb.store(out, ti, v);
        });
    });
    let nest = nb.finish();
    let t2 = data((rows * cols) as usize, 7);
    let want: Vec<f32> = (0..rows * cols)
        .map(|k| {
            let j = k % cols;
            relu(t2[k as usize] + b[((j * j) % cols) as usize])
        })
        .collect();
    let fused = check_bits(&nest, &[t2, b], &want, "non-affine");
    assert!(fused.iter().all(|&n| n == 0), "non-affine: {fused:?}");
}
