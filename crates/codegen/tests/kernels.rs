//! Hand-built loop nests compiled, run, and compared with plain Rust computations.

use tessel_codegen::builder::NestBuilder;
use tessel_codegen::{compile, CodegenError, CompileOptions, Kernel};
use tessel_ir::expr::{BinOp, UnOp};
use tessel_ir::loop_nest::LoopKind::{self, *};
use tessel_ir::LoopNest;

fn opts(threads: usize) -> CompileOptions {
    CompileOptions {
        keep_ir: true,
        ..CompileOptions::with_threads(threads)
    }
}

fn build(nest: &LoopNest, threads: usize) -> Kernel {
    match compile(nest, &opts(threads)) {
        Ok(k) => k,
        Err(e) => panic!("compile failed: {e}\n{nest}"),
    }
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

fn assert_close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        let tol = 1e-5 * (1.0 + w.abs());
        assert!(
            (g - w).abs() <= tol || (g.is_nan() && w.is_nan()),
            "element {k}: got {g}, want {w}"
        );
    }
}

/// C[M,N] = A[M,K] · B[K,N] with plain serial loops.
#[test]
fn scalar_matmul() {
    let (m, n, k) = (5i64, 7i64, 3i64);
    let mut b = NestBuilder::new("mm");
    let a = b.input("A", &[m, k]);
    let bb = b.input("B", &[k, n]);
    let c = b.output("C", &[m, n]);
    b.for_("i", m, Serial, |b, i| {
        b.for_("j", n, Serial, |b, j| {
            let ci = b.idx(i, n, j);
            let zero = b.float(0.0);
            b.store(c, ci, zero);
            b.for_("k", k, Serial, |b, kk| {
                let ai = b.idx(i, k, kk);
                let bi = b.idx(kk, n, j);
                let (x, y, acc) = (b.load(a, ai), b.load(bb, bi), b.load(c, ci));
                let p = b.mul(x, y);
                let s = b.add(acc, p);
                b.store(c, ci, s);
            });
        });
    });
    let nest = b.finish();
    let ker = build(&nest, 1);
    let (av, bv) = (data((m * k) as usize, 1), data((k * n) as usize, 2));
    let mut out = vec![0.0; (m * n) as usize];
    ker.run(&[&av, &bv], &mut [&mut out]).unwrap();
    let mut want = vec![0.0f32; (m * n) as usize];
    for i in 0..m as usize {
        for j in 0..n as usize {
            for kk in 0..k as usize {
                want[i * n as usize + j] += av[i * k as usize + kk] * bv[kk * n as usize + j];
            }
        }
    }
    assert_close(&out, &want);
    assert!(ker.compile_time().as_nanos() > 0);
}

/// out[i, j] = x[i, j] * s[i] + y[j], with j vectorized (s[i] is a broadcast operand).
fn vector_case(e: i64) {
    let rows = 3i64;
    let mut b = NestBuilder::new("vec");
    let x = b.input("x", &[rows, e]);
    let s = b.input("s", &[rows]);
    let y = b.input("y", &[e]);
    let out = b.output("out", &[rows, e]);
    b.for_("i", rows, Serial, |b, i| {
        b.for_("j", e, Vectorized, |b, j| {
            let xi = b.idx(i, e, j);
            let (xv, sv, yv) = (b.load(x, xi), b.load(s, i), b.load(y, j));
            let p = b.mul(xv, sv);
            let v = b.add(p, yv);
            b.store(out, xi, v);
        });
    });
    let nest = b.finish();
    let ker = build(&nest, 1);
    let (xv, sv, yv) = (
        data((rows * e) as usize, 3),
        data(rows as usize, 4),
        data(e as usize, 5),
    );
    let mut got = vec![0.0; (rows * e) as usize];
    ker.run(&[&xv, &sv, &yv], &mut [&mut got]).unwrap();
    let want: Vec<f32> = (0..(rows * e) as usize)
        .map(|k| xv[k] * sv[k / e as usize] + yv[k % e as usize])
        .collect();
    assert_close(&got, &want);
    let ir = ker.ir_text().unwrap();
    if e >= 4 {
        assert!(ir.contains("f32x4"), "no SIMD code for extent {e}:\n{ir}");
        assert!(ir.contains("splat"), "no broadcast for extent {e}:\n{ir}");
    }
}

#[test]
fn vectorized_extent_4() {
    vector_case(4);
}

#[test]
fn vectorized_extent_8() {
    vector_case(8);
}

#[test]
fn vectorized_extent_6_has_scalar_tail() {
    vector_case(6);
}

#[test]
fn vectorized_extent_3_and_long_70() {
    vector_case(3);
    vector_case(70);
}

/// Strided (non-contiguous) loads and stores in a vectorized loop: out[2j] = x[3j] + x[j].
#[test]
fn strided_vector_access() {
    let e = 10i64;
    let mut b = NestBuilder::new("strided");
    let x = b.input("x", &[3 * e]);
    let out = b.output("out", &[2 * e]);
    b.for_("j", e, Vectorized, |b, j| {
        let (three, two) = (b.int(3), b.int(2));
        let xi = b.mul(j, three);
        let oi = b.mul(j, two);
        let (a, c) = (b.load(x, xi), b.load(x, j));
        let v = b.add(a, c);
        b.store(out, oi, v);
    });
    let nest = b.finish();
    let ker = build(&nest, 1);
    let xv = data((3 * e) as usize, 6);
    let mut got = vec![7.0; (2 * e) as usize];
    ker.run(&[&xv], &mut [&mut got]).unwrap();
    let mut want = vec![7.0; (2 * e) as usize];
    for j in 0..e as usize {
        want[2 * j] = xv[3 * j] + xv[j];
    }
    assert_close(&got, &want);
}

/// Lanes that depend on each other (out[j+1] = out[j] + 1) must not become SIMD.
#[test]
fn dependent_lanes_stay_sequential() {
    let mut b = NestBuilder::new("scan");
    let x = b.input("x", &[1]);
    let out = b.output("out", &[9]);
    let zero = b.int(0);
    let x0 = b.load(x, zero);
    b.store(out, zero, x0);
    b.for_("j", 8, Vectorized, |b, j| {
        let one = b.int(1);
        let j1 = b.add(j, one);
        let prev = b.load(out, j);
        let onef = b.float(1.0);
        let v = b.add(prev, onef);
        b.store(out, j1, v);
    });
    let ker = build(&b.finish(), 1);
    let mut got = vec![0.0; 9];
    ker.run(&[&[2.0]], &mut [&mut got]).unwrap();
    let want: Vec<f32> = (0..9).map(|k| 2.0 + k as f32).collect();
    assert_close(&got, &want);
}

/// parallel i { local tmp[8] (per-thread scratch) ; vectorized j { tmp[j] = x*2 } ;
/// vectorized j { out = tmp[j] + 1 } } with two threads; and a nested parallel loop.
#[test]
fn parallel_and_vectorize_two_threads() {
    let (rows, e) = (37i64, 8i64);
    let mut b = NestBuilder::new("par");
    let x = b.input("x", &[rows, 2, e]);
    let out = b.output("out", &[rows, 2, e]);
    let tmp = b.local("tmp", &[e]);
    b.for_("i", rows, Parallel, |b, i| {
        b.for_("h", 2, Parallel, |b, h| {
            let row = b.idx(i, 2, h);
            b.alloc(tmp, |b| {
                // The index depends on a serial loop: not promoted, lives on the stack.
                b.for_("j", e, Serial, |b, j| {
                    let xi = b.idx(row, e, j);
                    let xv = b.load(x, xi);
                    let two = b.float(2.0);
                    let v = b.mul(xv, two);
                    b.store(tmp, j, v);
                });
                b.for_("j2", e, Vectorized, |b, j| {
                    let oi = b.idx(row, e, j);
                    let t = b.load(tmp, j);
                    let one = b.float(1.0);
                    let v = b.add(t, one);
                    b.store(out, oi, v);
                });
            });
        });
    });
    let nest = b.finish();
    let xv = data((rows * 2 * e) as usize, 7);
    let want: Vec<f32> = xv.iter().map(|v| v * 2.0 + 1.0).collect();
    for threads in [1, 2, 3] {
        let ker = build(&nest, threads);
        for _ in 0..20 {
            let mut got = vec![0.0; want.len()];
            ker.run(&[&xv], &mut [&mut got]).unwrap();
            assert_close(&got, &want);
        }
        let ir = ker.ir_text().unwrap();
        if threads > 1 {
            assert!(ir.contains("call"), "no pool call:\n{ir}");
        }
    }
}

/// A non-dividing split: i = i.0*4 + i.1 over 0..10 as 3 × 4 with a guard; i.1 unrolled.
#[test]
fn unroll_and_guard() {
    let mut b = NestBuilder::new("guard");
    let x = b.input("x", &[10]);
    let out = b.output("out", &[10]);
    b.for_("i.0", 3, Serial, |b, i0| {
        b.for_("i.1", 4, Unrolled, |b, i1| {
            let i = b.idx(i0, 4, i1);
            let ten = b.int(10);
            let c = b.lt(i, ten);
            b.if_(c, |b| {
                let xv = b.load(x, i);
                let two = b.float(2.0);
                let v = b.mul(xv, two);
                b.store(out, i, v);
            });
        });
    });
    let ker = build(&b.finish(), 1);
    let xv = data(10, 8);
    let mut got = vec![0.0; 10];
    ker.run(&[&xv], &mut [&mut got]).unwrap();
    let want: Vec<f32> = xv.iter().map(|v| v * 2.0).collect();
    assert_close(&got, &want);
    // The guard proves the accesses in range: no clamping (`umin`) is needed.
    assert!(!ker.ir_text().unwrap().contains("umin"));
}

/// The register-tiled matmul shape: a 4×8 `Local` tile, k innermost (serial), i.3 unrolled,
/// j.3 vectorized; returns the nest.
pub fn tiled_matmul(m: i64, n: i64, k: i64, outer: LoopKind) -> LoopNest {
    let mut b = NestBuilder::new("gmm");
    let a = b.input("X", &[m, k]);
    let bb = b.input("Y", &[k, n]);
    let c = b.output("Z", &[m, n]);
    let tile = b.local("Z.local", &[4, 8]);
    let (mt, nt) = (m / 4, n / 8);
    b.for_("i.0@j.0", mt * nt, outer, |b, f| {
        let (ntc, eight, four) = (b.int(nt), b.int(8), b.int(4));
        let i0 = b.bin(BinOp::Div, f, ntc);
        let j0 = b.bin(BinOp::Mod, f, ntc);
        let ibase = b.mul(i0, four);
        let jbase = b.mul(j0, eight);
        b.alloc(tile, |b| {
            b.for_("i.3", 4, Unrolled, |b, i3| {
                b.for_("j.3", 8, Vectorized, |b, j3| {
                    let ti = b.idx(i3, 8, j3);
                    let z = b.float(0.0);
                    b.store(tile, ti, z);
                });
            });
            b.for_("k", k, Serial, |b, kk| {
                b.for_("i.3", 4, Unrolled, |b, i3| {
                    b.for_("j.3", 8, Vectorized, |b, j3| {
                        let ti = b.idx(i3, 8, j3);
                        let row = b.add(ibase, i3);
                        let ai = b.idx(row, k, kk);
                        let col = b.add(jbase, j3);
                        let bi = b.idx(kk, n, col);
                        let (acc, x, y) = (b.load(tile, ti), b.load(a, ai), b.load(bb, bi));
                        let p = b.mul(x, y);
                        let s = b.add(acc, p);
                        b.store(tile, ti, s);
                    });
                });
            });
            b.for_("i.3", 4, Unrolled, |b, i3| {
                b.for_("j.3", 8, Vectorized, |b, j3| {
                    let ti = b.idx(i3, 8, j3);
                    let row = b.add(ibase, i3);
                    let col = b.add(jbase, j3);
                    let ci = b.idx(row, n, col);
                    let v = b.load(tile, ti);
                    b.store(c, ci, v);
                });
            });
        });
    });
    b.finish()
}

fn reference_matmul(a: &[f32], b: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
    let mut c = vec![0.0f32; m * n];
    for i in 0..m {
        for kk in 0..k {
            for j in 0..n {
                c[i * n + j] += a[i * k + kk] * b[kk * n + j];
            }
        }
    }
    c
}

#[test]
fn register_promotion_of_a_4x8_tile() {
    let (m, n, k) = (8i64, 16i64, 5i64);
    let nest = tiled_matmul(m, n, k, Serial);
    let ker = build(&nest, 1);
    let (av, bv) = (data((m * k) as usize, 9), data((k * n) as usize, 10));
    let mut got = vec![0.0; (m * n) as usize];
    ker.run(&[&av, &bv], &mut [&mut got]).unwrap();
    assert_close(
        &got,
        &reference_matmul(&av, &bv, m as usize, n as usize, k as usize),
    );
    let ir = ker.ir_text().unwrap();
    // The tile lives in registers: no stack slot, and the only stores are the 8 f32x4
    // stores of the copy-out; the k loop does 8 FMAs and loads only X (4) and Y (2).
    assert!(
        !ir.contains("stack_addr") && !ir.contains("explicit_slot"),
        "{ir}"
    );
    let count = |pat: &str| ir.lines().filter(|l| l.contains(pat)).count();
    assert_eq!(count("store"), 8, "{ir}");
    assert_eq!(count("= fma "), 8, "{ir}");
    assert_eq!(count("load.f32x4"), 2, "{ir}");
    assert_eq!(count("load.f32 "), 4, "{ir}");
}

#[test]
fn register_tiled_matmul_in_parallel() {
    let (m, n, k) = (16i64, 32i64, 19i64);
    let nest = tiled_matmul(m, n, k, Parallel);
    let (av, bv) = (data((m * k) as usize, 11), data((k * n) as usize, 12));
    let want = reference_matmul(&av, &bv, m as usize, n as usize, k as usize);
    for threads in [1, 2] {
        let ker = build(&nest, threads);
        let mut got = vec![0.0; (m * n) as usize];
        ker.run(&[&av, &bv], &mut [&mut got]).unwrap();
        assert_close(&got, &want);
    }
}

/// out[i] = select(2 <= i && i < 6, x[i - 2], -1): x has 4 elements, so the load would read
/// out of range when the condition is false; scalar and vectorized.
#[test]
fn select_with_out_of_range_load() {
    for kind in [Serial, Vectorized, Unrolled] {
        let mut b = NestBuilder::new("pad");
        let x = b.input("x", &[4]);
        let out = b.output("out", &[8]);
        b.for_("i", 8, kind, |b, i| {
            let (two, six) = (b.int(2), b.int(6));
            let lo = b.bin(BinOp::Le, two, i);
            let hi = b.lt(i, six);
            let c = b.bin(BinOp::And, lo, hi);
            let xi = b.sub(i, two);
            let xv = b.load(x, xi);
            let other = b.float(-1.0);
            let v = b.select(c, xv, other);
            b.store(out, i, v);
        });
        let ker = build(&b.finish(), 1);
        let xv = [1.0, 2.0, 3.0, 4.0];
        let mut got = vec![0.0; 8];
        ker.run(&[&xv], &mut [&mut got]).unwrap();
        assert_eq!(
            got,
            [-1.0, -1.0, 1.0, 2.0, 3.0, 4.0, -1.0, -1.0],
            "{kind:?}"
        );
    }
}

/// exp, sqrt, max, min, int→float, floor division and modulo of negative numbers.
#[test]
fn math_functions_and_floor_semantics() {
    for kind in [Serial, Vectorized] {
        let n = 12i64;
        let mut b = NestBuilder::new("math");
        let x = b.input("x", &[n]);
        let o1 = b.output("o1", &[n]);
        let o2 = b.output("o2", &[n]);
        b.for_("i", n, kind, |b, i| {
            let xv = b.load(x, i);
            let e = b.un(UnOp::Exp, xv);
            let ab = b.mul(xv, xv);
            let s = b.un(UnOp::Sqrt, ab);
            let z = b.float(0.0);
            let r = b.bin(BinOp::Max, xv, z);
            let half = b.float(0.5);
            let mn = b.bin(BinOp::Min, xv, half);
            let v = b.add(e, s);
            let v = b.add(v, r);
            let v = b.add(v, mn);
            b.store(o1, i, v);
            let (five, three, hundred) = (b.int(5), b.int(3), b.float(100.0));
            let d = b.sub(i, five);
            let q = b.bin(BinOp::Div, d, three);
            let m = b.bin(BinOp::Mod, d, three);
            let qf = b.un(UnOp::ToFloat, q);
            let mf = b.un(UnOp::ToFloat, m);
            let mf = b.mul(mf, hundred);
            let v2 = b.add(qf, mf);
            b.store(o2, i, v2);
        });
        let ker = build(&b.finish(), 1);
        let xv = data(n as usize, 13);
        let (mut g1, mut g2) = (vec![0.0; n as usize], vec![0.0; n as usize]);
        ker.run(&[&xv], &mut [&mut g1, &mut g2]).unwrap();
        let w1: Vec<f32> = xv
            .iter()
            .map(|&v| v.exp() + (v * v).sqrt() + v.max(0.0) + v.min(0.5))
            .collect();
        let w2: Vec<f32> = (0..n)
            .map(|i| ((i - 5).div_euclid(3)) as f32 + ((i - 5).rem_euclid(3)) as f32 * 100.0)
            .collect();
        assert_close(&g1, &w1);
        assert_eq!(g2, w2, "{kind:?}");
    }
}

/// A global temporary between two stages, and division by a non-power-of-two constant.
#[test]
fn global_temporary_and_fused_index() {
    let (r, c) = (3i64, 5i64);
    let mut b = NestBuilder::new("two_stage");
    let x = b.input("x", &[r, c]);
    let out = b.output("out", &[r]);
    let t = b.global("t", &[r, c]);
    b.for_("f", r * c, Serial, |b, f| {
        let xv = b.load(x, f);
        let v = b.mul(xv, xv);
        b.store(t, f, v);
    });
    b.for_("i", r, Serial, |b, i| {
        let z = b.float(0.0);
        b.store(out, i, z);
    });
    b.for_("f", r * c, Serial, |b, f| {
        let cc = b.int(c);
        let i = b.bin(BinOp::Div, f, cc);
        let (o, tv) = (b.load(out, i), b.load(t, f));
        let v = b.add(o, tv);
        b.store(out, i, v);
    });
    let ker = build(&b.finish(), 1);
    let xv = data((r * c) as usize, 14);
    let mut got = vec![0.0; r as usize];
    for _ in 0..2 {
        ker.run(&[&xv], &mut [&mut got]).unwrap();
    }
    let want: Vec<f32> = (0..r as usize)
        .map(|i| {
            (0..c as usize)
                .map(|j| xv[i * c as usize + j].powi(2))
                .sum()
        })
        .collect();
    assert_close(&got, &want);
}

/// Out-of-range indices in a broken nest are clamped, never a crash.
#[test]
fn out_of_range_index_is_memory_safe() {
    let mut b = NestBuilder::new("oob");
    let x = b.input("x", &[4]);
    let out = b.output("out", &[4]);
    b.for_("i", 4, Serial, |b, i| {
        let big = b.int(1 << 40);
        let xi = b.add(i, big);
        let v = b.load(x, xi);
        b.store(out, xi, v);
    });
    let ker = build(&b.finish(), 1);
    let mut got = vec![0.0; 4];
    ker.run(&[&[1.0, 2.0, 3.0, 4.0]], &mut [&mut got]).unwrap();
}

#[test]
fn wrong_buffers_are_errors() {
    let mut b = NestBuilder::new("copy");
    let x = b.input("x", &[4]);
    let y = b.output("y", &[4]);
    b.for_("i", 4, Serial, |b, i| {
        let v = b.load(x, i);
        b.store(y, i, v);
    });
    let ker = build(&b.finish(), 1);
    assert_eq!(ker.inputs(), [("x", 4)]);
    assert_eq!(ker.outputs(), [("y", 4)]);
    let xv = [1.0f32; 4];
    let mut yv = [0.0f32; 4];
    let mut short = [0.0f32; 3];
    assert!(matches!(
        ker.run(&[], &mut [&mut yv]),
        Err(CodegenError::BufferCount {
            kind: "input",
            expected: 1,
            got: 0
        })
    ));
    assert!(matches!(
        ker.run(&[&xv, &xv], &mut [&mut yv]),
        Err(CodegenError::BufferCount { kind: "input", .. })
    ));
    assert!(matches!(
        ker.run(&[&xv], &mut []),
        Err(CodegenError::BufferCount { kind: "output", .. })
    ));
    assert!(matches!(
        ker.run(&[&xv[..3]], &mut [&mut yv]),
        Err(CodegenError::BufferLength {
            expected: 4,
            got: 3,
            ..
        })
    ));
    assert!(matches!(
        ker.run(&[&xv], &mut [&mut short]),
        Err(CodegenError::BufferLength { .. })
    ));
    assert_eq!(yv, [0.0; 4], "nothing ran");
    ker.run(&[&xv], &mut [&mut yv]).unwrap();
    assert_eq!(yv, [1.0; 4]);
}

#[test]
fn invalid_nests_are_errors() {
    // A loop variable used outside its loop.
    let mut b = NestBuilder::new("bad");
    let y = b.output("y", &[4]);
    let mut var = None;
    b.for_("i", 4, Serial, |_, i| var = Some(i));
    let one = b.float(1.0);
    b.store(y, var.unwrap(), one);
    assert!(matches!(
        compile(&b.finish(), &opts(1)),
        Err(CodegenError::InvalidNest(_))
    ));
    // An ill-typed store (an integer value).
    let mut b = NestBuilder::new("bad2");
    let y = b.output("y", &[4]);
    let z = b.int(0);
    b.store(y, z, z);
    assert!(matches!(
        compile(&b.finish(), &opts(1)),
        Err(CodegenError::InvalidNest(_))
    ));
}

/// A guard on an outer variable inside a vectorized loop (split of 10 rows into 3 × 4), and
/// a local tile of 2 × 6 accessed by vector lanes at unaligned offsets (6 is not a multiple
/// of 4) with a scalar tail.
#[test]
fn guard_inside_vector_loop_and_unaligned_local_tile() {
    let (rows, e) = (10i64, 6i64);
    let mut b = NestBuilder::new("guarded_tile");
    let x = b.input("x", &[rows, e]);
    let out = b.output("out", &[rows, e]);
    let tile = b.local("t", &[2, e]);
    b.for_("i.0", 3, Serial, |b, i0| {
        b.for_("i.1", 4, Unrolled, |b, i1| {
            let i = b.idx(i0, 4, i1);
            b.alloc(tile, |b| {
                for pass in 0..2 {
                    b.for_(&format!("h{pass}"), 2, Unrolled, |b, h| {
                        b.for_(&format!("j{pass}"), e, Vectorized, |b, j| {
                            let ti = b.idx(h, e, j);
                            let v = if pass == 0 {
                                let hf = b.un(UnOp::ToFloat, h);
                                let one = b.float(1.0);
                                b.add(hf, one)
                            } else {
                                let t = b.load(tile, ti);
                                let two = b.float(2.0);
                                b.mul(t, two)
                            };
                            b.store(tile, ti, v);
                        });
                    });
                }
                b.for_("j", e, Vectorized, |b, j| {
                    let ten = b.int(10);
                    let c = b.lt(i, ten);
                    b.if_(c, |b| {
                        let xi = b.idx(i, e, j);
                        let zero = b.int(0);
                        let t0 = b.idx(zero, e, j);
                        let one = b.int(1);
                        let t1 = b.idx(one, e, j);
                        let (xv, a, c2) = (b.load(x, xi), b.load(tile, t0), b.load(tile, t1));
                        let p = b.mul(xv, a);
                        let v = b.add(p, c2);
                        b.store(out, xi, v);
                    });
                });
            });
        });
    });
    let ker = build(&b.finish(), 1);
    let xv = data((rows * e) as usize, 15);
    let mut got = vec![0.0; xv.len()];
    ker.run(&[&xv], &mut [&mut got]).unwrap();
    // tile row 0 = 2, row 1 = 4 → out = x*2 + 4
    let want: Vec<f32> = xv.iter().map(|v| v * 2.0 + 4.0).collect();
    assert_close(&got, &want);
    let ir = ker.ir_text().unwrap();
    assert!(!ir.contains("stack_addr"), "tile should be promoted:\n{ir}");
    assert!(!ir.contains("umin"), "guard should prove bounds:\n{ir}");
}

/// A reduction into a scalar inside a vectorized loop (stride 0 store) stays sequential.
#[test]
fn reduction_in_vectorized_loop() {
    let e = 9i64;
    let mut b = NestBuilder::new("sum");
    let x = b.input("x", &[e]);
    let out = b.output("out", &[1]);
    let zero = b.int(0);
    let z = b.float(0.0);
    b.store(out, zero, z);
    b.for_("j", e, Vectorized, |b, j| {
        let (o, xv) = (b.load(out, zero), b.load(x, j));
        let v = b.add(o, xv);
        b.store(out, zero, v);
    });
    let ker = build(&b.finish(), 1);
    let xv = data(e as usize, 16);
    let mut got = vec![0.0; 1];
    ker.run(&[&xv], &mut [&mut got]).unwrap();
    assert_close(&got, &[xv.iter().sum()]);
}

/// Kernels sharing the pool from several threads at once (a busy pool runs a call inline).
#[test]
fn concurrent_kernels_share_the_pool() {
    let (m, n, k) = (8i64, 16i64, 7i64);
    let nest = tiled_matmul(m, n, k, Parallel);
    let (av, bv) = (data((m * k) as usize, 17), data((k * n) as usize, 18));
    let want = reference_matmul(&av, &bv, m as usize, n as usize, k as usize);
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                let ker = build(&nest, 2);
                for _ in 0..300 {
                    let mut got = vec![0.0; (m * n) as usize];
                    ker.run(&[&av, &bv], &mut [&mut got]).unwrap();
                    assert_close(&got, &want);
                }
            });
        }
    });
}

#[test]
fn kernels_can_move_between_threads() {
    fn assert_send<T: Send>() {}
    assert_send::<Kernel>();
    assert_send::<CodegenError>();
}
