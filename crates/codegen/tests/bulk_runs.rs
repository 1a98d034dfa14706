//! Bulk runs (`tessel_codegen::bulk`): copy, fill and padding loops become one call of the
//! target's run routine when the target has micro-kernels, and compute bit for bit what the
//! plain loops compute, under every target this CPU runs; loops outside the pattern stay
//! loops.

mod common;

use tessel_codegen::builder::NestBuilder;
use tessel_codegen::CompileOptions;
use tessel_ir::expr::BinOp;
use tessel_ir::loop_nest::LoopKind::{self, *};
use tessel_ir::target::{CpuFeatures, Isa};
use tessel_ir::LoopNest;

fn data(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2654435761).wrapping_add(12345);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            ((s >> 8) as f32 / (1u32 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Runs `nest` for `isa` on `inputs`: the outputs and the loops that became runs.
fn run(nest: &LoopNest, isa: Isa, inputs: &[&[f32]]) -> (Vec<Vec<f32>>, Vec<String>) {
    let opts = CompileOptions {
        isa,
        ..CompileOptions::with_threads(1)
    };
    let (outputs, kernel) = common::compile_and_run(nest, &opts, inputs);
    (outputs, kernel.bulk_runs().to_vec())
}

/// A padding stage `pad[r][c] = 1 <= r - lo_off && r < rows + 1 ? x[r-1][c] : fill`
/// (rows guarded through the outer loop), a zero fill of a second output, and a column
/// guard that depends on the inner loop (not a run).
fn stages(rows: i64, cols: i64, inner: LoopKind, fill: f32) -> LoopNest {
    let mut b = NestBuilder::new("runs");
    let x = b.input("x", &[rows, cols]);
    let pad = b.output("pad", &[rows + 2, cols]);
    let zeros = b.output("zeros", &[rows, cols]);
    let edge = b.output("edge", &[rows, cols]);
    b.for_("r", rows + 2, Serial, |b, r| {
        b.for_("c", cols, inner, |b, c| {
            let (one, hi) = (b.int(1), b.int(rows + 1));
            let lo = b.bin(BinOp::Le, one, r);
            let up = b.lt(r, hi);
            let cond = b.bin(BinOp::And, lo, up);
            let r1 = b.sub(r, one);
            let i = b.idx(r1, cols, c);
            let xv = b.load(x, i);
            let f = b.float(fill);
            let v = b.select(cond, xv, f);
            let o = b.idx(r, cols, c);
            b.store(pad, o, v);
        });
    });
    b.for_("r", rows, Serial, |b, r| {
        b.for_("c", cols, inner, |b, c| {
            let i = b.idx(r, cols, c);
            let zero = b.float(0.0);
            b.store(zeros, i, zero);
        });
    });
    b.for_("r", rows, Serial, |b, r| {
        b.for_("c", cols, inner, |b, c| {
            let one = b.int(1);
            let cond = b.bin(BinOp::Le, one, c);
            let i = b.idx(r, cols, c);
            let xv = b.load(x, i);
            let f = b.float(fill);
            let v = b.select(cond, xv, f);
            b.store(edge, i, v);
        });
    });
    b.finish()
}

#[test]
fn padding_fills_and_copies_match_plain_loops_under_every_target() {
    for (rows, cols) in [(3i64, 70i64), (5, 37), (9, 40), (2, 16), (4, 13), (1, 3)] {
        for inner in [Serial, Unrolled, Vectorized] {
            let nest = stages(rows, cols, inner, -0.5);
            let xv = data((rows * cols) as usize, rows as u32 * 31 + cols as u32);
            let (r, c) = (rows as usize, cols as usize);
            let mut want_pad = vec![-0.5f32; (r + 2) * c];
            want_pad[c..(r + 1) * c].copy_from_slice(&xv);
            let want_zero = vec![0.0f32; r * c];
            let want_edge: Vec<f32> = (0..r * c)
                .map(|k| if k % c >= 1 { xv[k] } else { -0.5 })
                .collect();
            let want = [want_pad, want_zero, want_edge];
            for isa in Isa::ALL {
                if !CpuFeatures::host().supports(isa) {
                    eprintln!("skipping {isa}: this CPU lacks it");
                    continue;
                }
                let (got, runs) = run(&nest, isa, &[&xv]);
                for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                    let same = g.iter().zip(w).all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(
                        same,
                        "{isa} {rows}x{cols} {inner:?}: output {k}\n{g:?}\n{w:?}"
                    );
                }
                // Under a target with micro-kernels, the padding and the fill (collapsed
                // with their row loops: `r`) are runs when long enough; the column-guarded
                // copy is not (its guard depends on the inner loop).
                let min = tessel_codegen::bulk::MIN_RUN;
                let expect: Vec<String> = [(rows + 2) * cols, rows * cols]
                    .into_iter()
                    .filter(|&n| isa.has_micro_kernels() && n >= min)
                    .map(|_| "r".to_string())
                    .collect();
                assert_eq!(runs, expect, "{isa} {rows}x{cols} {inner:?}");
            }
        }
    }
}
