//! Auto-vectorization (`CompileOptions::auto_vectorize`): serial and unrolled innermost loops
//! that are plain copies, fills and element-wise maps become `f32x4` code and compute
//! bit-for-bit what the scalar loops compute; loops whose iterations depend on each other, or
//! that would need per-lane code, stay scalar.

mod common;

use tessel_codegen::builder::NestBuilder;
use tessel_codegen::CompileOptions;
use tessel_ir::expr::{BinOp, UnOp};
use tessel_ir::loop_nest::LoopKind::{self, *};
use tessel_ir::LoopNest;

/// Compiles `nest` with auto-vectorization on or off, runs it on `inputs` and returns the
/// outputs and whether the Cranelift IR has any `f32x4` value.
fn run(nest: &LoopNest, inputs: &[&[f32]], auto_vectorize: bool) -> (Vec<Vec<f32>>, bool) {
    // The generic target: with micro-kernels, contiguous copies and fills become calls of
    // the target's run routine instead (tests/bulk_runs.rs).
    let opts = CompileOptions {
        keep_ir: true,
        auto_vectorize,
        isa: tessel_ir::target::Isa::Generic,
        ..CompileOptions::with_threads(1)
    };
    let (outputs, kernel) = common::compile_and_run(nest, &opts, inputs);
    let simd = kernel.ir_text().expect("IR kept").contains("f32x4");
    (outputs, simd)
}

/// Runs `nest` both ways: the outputs must be bit-for-bit equal and equal to `want`, and the
/// auto-vectorized build must use SIMD exactly when `expect_simd`.
fn check(nest: &LoopNest, inputs: &[&[f32]], want: &[Vec<f32>], expect_simd: bool) {
    let (off, simd_off) = run(nest, inputs, false);
    let (on, simd_on) = run(nest, inputs, true);
    assert!(!simd_off, "no SIMD without auto-vectorization\n{nest}");
    assert_eq!(simd_on, expect_simd, "SIMD used\n{nest}");
    for (k, (a, b)) in off.iter().zip(&on).enumerate() {
        let (a, b): (Vec<u32>, Vec<u32>) = (
            a.iter().map(|x| x.to_bits()).collect(),
            b.iter().map(|x| x.to_bits()).collect(),
        );
        assert_eq!(a, b, "output {k} differs with auto-vectorization\n{nest}");
    }
    assert_eq!(on, want, "{nest}");
}

fn data(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2654435761).wrapping_add(12345);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            ((s >> 8) as f32 / (1u32 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// What a cache-write stage and a padding stage lower to: a zero fill of a local tile (an
/// unrolled loop), an element-wise update (`fma`), a write-back copy (a serial loop of 70:
/// chunks plus a scalar tail), and a padded copy whose in-range load sits under a select.
#[test]
fn fills_copies_maps_and_padding_become_simd() {
    let (rows, cols) = (3i64, 70i64);
    for inner in [Serial, Unrolled] {
        let mut b = NestBuilder::new("stages");
        let x = b.input("x", &[rows, cols]);
        let y = b.input("y", &[cols]);
        let out = b.output("out", &[rows, cols]);
        let pad = b.output("pad", &[rows + 2, cols]);
        let tile = b.local("tile", &[rows, cols]);
        b.alloc(tile, |b| {
            b.for_("r", rows, Serial, |b, r| {
                b.for_("c", cols, inner, |b, c| {
                    let i = b.idx(r, cols, c);
                    let zero = b.float(0.0);
                    b.store(tile, i, zero);
                });
                b.for_("c", cols, inner, |b, c| {
                    let i = b.idx(r, cols, c);
                    let (acc, xv, yv) = (b.load(tile, i), b.load(x, i), b.load(y, c));
                    let p = b.mul(xv, yv);
                    let s = b.add(acc, p);
                    let two = b.float(2.0);
                    let s = b.mul(s, two);
                    b.store(tile, i, s);
                });
            });
            b.for_("r", rows, Serial, |b, r| {
                b.for_("c", cols, inner, |b, c| {
                    let i = b.idx(r, cols, c);
                    let v = b.load(tile, i);
                    let v = b.un(UnOp::Neg, v);
                    b.store(out, i, v);
                });
            });
        });
        b.for_("r", rows + 2, Serial, |b, r| {
            b.for_("c", cols, inner, |b, c| {
                let (one, hi) = (b.int(1), b.int(rows + 1));
                let lo = b.bin(BinOp::Le, one, r);
                let up = b.lt(r, hi);
                let cond = b.bin(BinOp::And, lo, up);
                let r1 = b.sub(r, one);
                let i = b.idx(r1, cols, c);
                let xv = b.load(x, i);
                let zero = b.float(0.0);
                let v = b.select(cond, xv, zero);
                let o = b.idx(r, cols, c);
                b.store(pad, o, v);
            });
        });
        let nest = b.finish();
        let (xv, yv) = (data((rows * cols) as usize, 1), data(cols as usize, 2));
        let (rows, cols) = (rows as usize, cols as usize);
        let mut want_out = vec![0.0f32; rows * cols];
        let mut want_pad = vec![0.0f32; (rows + 2) * cols];
        for r in 0..rows {
            for c in 0..cols {
                let i = r * cols + c;
                want_out[i] = -(xv[i].mul_add(yv[c], 0.0) * 2.0);
                want_pad[(r + 1) * cols + c] = xv[i];
            }
        }
        check(&nest, &[&xv, &yv], &[want_out, want_pad], true);
    }
}

/// Unrolled fills of 4 and 6 elements (one chunk; one chunk and a two-element tail).
#[test]
fn short_unrolled_fills() {
    for n in [4i64, 6] {
        let mut b = NestBuilder::new("fill");
        let out = b.output("out", &[n]);
        b.for_("c", n, Unrolled, |b, c| {
            let v = b.float(0.5);
            b.store(out, c, v);
        });
        check(&b.finish(), &[], &[vec![0.5; n as usize]], true);
    }
}

/// One nest per loop that must stay scalar, with the plain Rust result of each.
fn scalar_cases(kind: LoopKind) -> Vec<(&'static str, LoopNest, Vec<f32>)> {
    let n = 16i64;
    let xv = data(n as usize * 3, 3);
    let mut cases = Vec::new();

    // A scan: each iteration reads what the previous one wrote.
    let mut b = NestBuilder::new("scan");
    let x = b.input("x", &[3 * n]);
    let out = b.output("out", &[n + 1]);
    let zero = b.int(0);
    let x0 = b.load(x, zero);
    b.store(out, zero, x0);
    b.for_("j", n, kind, |b, j| {
        let one = b.int(1);
        let j1 = b.add(j, one);
        let (prev, xj) = (b.load(out, j), b.load(x, j));
        let v = b.add(prev, xj);
        b.store(out, j1, v);
    });
    let mut want = vec![xv[0]; n as usize + 1];
    for j in 0..n as usize {
        want[j + 1] = want[j] + xv[j];
    }
    cases.push(("scan", b.finish(), want));

    // A reduction into one element (store stride 0).
    let mut b = NestBuilder::new("sum");
    let x = b.input("x", &[3 * n]);
    let out = b.output("out", &[4]);
    for k in 0..4 {
        let i = b.int(k);
        let z = b.float(0.0);
        b.store(out, i, z);
    }
    b.for_("j", n, kind, |b, j| {
        let zero = b.int(0);
        let (acc, xj) = (b.load(out, zero), b.load(x, j));
        let v = b.add(acc, xj);
        b.store(out, zero, v);
    });
    let mut want = vec![0.0f32; 4];
    for v in &xv[..n as usize] {
        want[0] += v;
    }
    cases.push(("sum", b.finish(), want));

    // A strided store (even elements, then odd ones) and a strided (gathered) load.
    let mut b = NestBuilder::new("scatter");
    let x = b.input("x", &[3 * n]);
    let out = b.output("out", &[2 * n]);
    for parity in [0, 1] {
        b.for_("j", n, kind, |b, j| {
            let p = b.int(parity);
            let i = b.idx(j, 2, p);
            let v = b.load(x, j);
            b.store(out, i, v);
        });
    }
    let want = (0..2 * n as usize).map(|i| xv[i / 2]).collect();
    cases.push(("scatter", b.finish(), want));
    let mut b = NestBuilder::new("gather");
    let x = b.input("x", &[3 * n]);
    let out = b.output("out", &[n]);
    b.for_("j", n, kind, |b, j| {
        let i = b.idx(j, 2, j);
        let v = b.load(x, i);
        b.store(out, j, v);
    });
    let want = (0..n as usize).map(|j| xv[3 * j]).collect();
    cases.push(("gather", b.finish(), want));

    // `exp` would run once per lane.
    let mut b = NestBuilder::new("exp");
    let x = b.input("x", &[3 * n]);
    let out = b.output("out", &[2 * n]);
    b.for_("j", 2 * n, kind, |b, j| {
        let v = b.load(x, j);
        let v = b.un(UnOp::Exp, v);
        b.store(out, j, v);
    });
    cases.push(("exp", b.finish(), xv.iter().map(|v| v.exp()).collect()));
    cases
}

#[test]
fn dependent_strided_and_per_lane_loops_stay_scalar() {
    for kind in [Serial, Unrolled] {
        for (name, nest, want) in scalar_cases(kind) {
            let xv = data(48, 3);
            let (off, _) = run(&nest, &[&xv], false);
            let (on, simd) = run(&nest, &[&xv], true);
            assert!(!simd, "{name} {kind:?} became SIMD\n{nest}");
            assert_eq!(off, on, "{name} {kind:?}");
            for (g, w) in on[0].iter().zip(&want) {
                assert!(
                    (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                    "{name} {kind:?}: got {:?}, want {want:?}",
                    on[0]
                );
            }
        }
    }
}

/// A register tile (a local buffer promoted to SSA variables, every index constant) keeps
/// its scalar loops: auto-vectorization must not change how a promoted buffer is held.
#[test]
fn promoted_register_tiles_are_left_alone() {
    let (rows, cols) = (4i64, 8i64);
    let mut b = NestBuilder::new("tile");
    let x = b.input("x", &[rows, cols]);
    let out = b.output("out", &[rows, cols]);
    let tile = b.local("tile", &[rows, cols]);
    b.alloc(tile, |b| {
        b.for_("r", rows, Unrolled, |b, r| {
            b.for_("c", cols, Unrolled, |b, c| {
                let i = b.idx(r, cols, c);
                let v = b.load(x, i);
                let three = b.float(3.0);
                let v = b.mul(v, three);
                b.store(tile, i, v);
            });
        });
        b.for_("r", rows, Unrolled, |b, r| {
            b.for_("c", cols, Unrolled, |b, c| {
                let i = b.idx(r, cols, c);
                let v = b.load(tile, i);
                b.store(out, i, v);
            });
        });
    });
    let nest = b.finish();
    let xv = data((rows * cols) as usize, 4);
    let want: Vec<f32> = xv.iter().map(|v| v * 3.0).collect();
    check(&nest, &[&xv], &[want], false);
}
