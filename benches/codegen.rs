//! Criterion benches of the code generator: compile time and run time of a register-tiled
//! 512×512×512 gmm (Z = X·Y, row-major), shaped as Ansor's cache-write sketch lowers it:
//!
//! ```text
//! parallel for i.0@j.0 in 0..8192 {          // 128 row tiles × 64 column tiles
//!   alloc Z.local: f32[4, 8]
//!   unrolled for i.3 in 0..4 { vectorized for j.3 in 0..8 { Z.local[i.3*8 + j.3] = 0 } }
//!   for k in 0..512 {
//!     unrolled for i.3 in 0..4 { vectorized for j.3 in 0..8 {
//!       Z.local[i.3*8 + j.3] = Z.local[i.3*8 + j.3] + X[(i.0*4 + i.3)*512 + k] * Y[k*512 + j.0*8 + j.3]
//!   } } }
//!   unrolled for i.3 in 0..4 { vectorized for j.3 in 0..8 { Z[...] = Z.local[...] } }
//! }
//! ```
//!
//! Also benched: the same with the tile loops fused as `j.0@i.0`.
//!
//! `cargo bench --bench codegen`; throughput is reported in FLOP/s ("elem/s").

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use tessel_codegen::builder::NestBuilder;
use tessel_codegen::{compile, CompileOptions};
use tessel_ir::expr::BinOp;
use tessel_ir::loop_nest::LoopKind::*;
use tessel_ir::LoopNest;

const N: i64 = 512;

/// `j_outer`: fuse the tile loops as j.0@i.0 (consecutive tiles share a Y panel) instead of
/// i.0@j.0.
fn gmm(n: i64, j_outer: bool) -> LoopNest {
    let (m, k) = (n, n);
    let mut b = NestBuilder::new("gmm");
    let a = b.input("X", &[m, k]);
    let bb = b.input("Y", &[k, n]);
    let c = b.output("Z", &[m, n]);
    let tile = b.local("Z.local", &[4, 8]);
    let (mt, nt) = (m / 4, n / 8);
    b.for_("i.0@j.0", mt * nt, Parallel, |b, f| {
        let (four, eight) = (b.int(4), b.int(8));
        let (i0, j0) = if j_outer {
            let d = b.int(mt);
            (b.bin(BinOp::Mod, f, d), b.bin(BinOp::Div, f, d))
        } else {
            let d = b.int(nt);
            (b.bin(BinOp::Div, f, d), b.bin(BinOp::Mod, f, d))
        };
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

fn bench_compile(c: &mut Criterion) {
    let nest = gmm(N, false);
    let mut g = c.benchmark_group("compile");
    g.bench_function("gmm512_tiled_4x8", |b| {
        b.iter(|| compile(black_box(&nest), &CompileOptions::with_threads(2)).expect("compile"))
    });
    g.finish();
}

fn bench_run(c: &mut Criterion) {
    let x: Vec<f32> = (0..N * N).map(|v| ((v * 7) % 13) as f32 * 0.1).collect();
    let y: Vec<f32> = (0..N * N).map(|v| ((v * 5) % 11) as f32 * 0.1).collect();
    let mut z = vec![0.0f32; (N * N) as usize];
    let mut g = c.benchmark_group("gmm512");
    g.throughput(Throughput::Elements(2 * (N * N * N) as u64));
    g.sample_size(30);
    for (threads, j_outer) in [(1usize, false), (2, false), (1, true), (2, true)] {
        let nest = gmm(N, j_outer);
        let kernel = compile(&nest, &CompileOptions::with_threads(threads)).expect("compile");
        let order = if j_outer { "j.0@i.0" } else { "i.0@j.0" };
        g.bench_function(format!("{order}/threads={threads}"), |b| {
            b.iter(|| kernel.run(&[&x, &y], &mut [&mut z]).expect("run"))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_compile, bench_run);
criterion_main!(benches);
