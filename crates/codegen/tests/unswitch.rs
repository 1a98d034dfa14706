//! Vectorized loops unswitched on a padding guard their variable does not change: a
//! max-pool reading its input through the padding's `select` computes the same as plain
//! Rust, with one conditional branch per guard instead of one per `f32x4` chunk.

use tessel_codegen::builder::NestBuilder;
use tessel_codegen::{compile, CompileOptions, Isa, Kernel};
use tessel_ir::expr::BinOp;
use tessel_ir::loop_nest::LoopKind::{Serial, Unrolled, Vectorized};
use tessel_ir::loop_nest::{ExprId, LoopKind};
use tessel_ir::LoopNest;

const H: i64 = 6;
const W: i64 = 5;
const C: i64 = 16;

fn build(nest: &LoopNest, isa: Isa) -> Kernel {
    let opts = CompileOptions {
        keep_ir: true,
        isa,
        ..CompileOptions::with_threads(1)
    };
    compile(nest, &opts).unwrap_or_else(|e| panic!("compile failed: {e}\n{nest}"))
}

/// `lo <= e && e < hi`.
fn inside(b: &mut NestBuilder, e: ExprId, lo: i64, hi: i64) -> ExprId {
    let (l, h) = (b.int(lo), b.int(hi));
    let a = b.bin(BinOp::Le, l, e);
    let z = b.lt(e, h);
    b.bin(BinOp::And, a, z)
}

/// A 3×3, stride-1 max-pool with padding 1 over an `H×W×C` image, the padding read through
/// (`max(acc, select(inside, x[..], -inf))`), channels vectorized, window loops `window`.
fn maxpool(window: LoopKind) -> LoopNest {
    let mut b = NestBuilder::new("maxpool");
    let x = b.input("x", &[H, W, C]);
    let out = b.output("out", &[H, W, C]);
    b.for_("h", H, Serial, |b, h| {
        b.for_("w", W, Serial, |b, w| {
            b.for_("c0", C, Vectorized, |b, c| {
                let hw = b.idx(h, W, w);
                let o = b.idx(hw, C, c);
                let ninf = b.float(f32::MIN);
                b.store(out, o, ninf);
            });
            b.for_("r", 3, window, |b, r| {
                b.for_("s", 3, window, |b, s| {
                    b.for_("c", C, Vectorized, |b, c| {
                        let hw = b.idx(h, W, w);
                        let o = b.idx(hw, C, c);
                        let m1 = b.int(-1);
                        let hr = b.add(h, r);
                        let ih = b.add(hr, m1);
                        let ws = b.add(w, s);
                        let iw = b.add(ws, m1);
                        let gh = inside(b, ih, 0, H);
                        let gw = inside(b, iw, 0, W);
                        let g = b.bin(BinOp::And, gh, gw);
                        let ihw = b.idx(ih, W, iw);
                        let xi = b.idx(ihw, C, c);
                        let xv = b.load(x, xi);
                        let ninf = b.float(f32::MIN);
                        let v = b.select(g, xv, ninf);
                        let acc = b.load(out, o);
                        let m = b.bin(BinOp::Max, acc, v);
                        b.store(out, o, m);
                    });
                });
            });
        });
    });
    b.finish()
}

fn reference(x: &[f32]) -> Vec<f32> {
    let mut out = vec![f32::MIN; (H * W * C) as usize];
    for h in 0..H {
        for w in 0..W {
            for r in 0..3 {
                for s in 0..3 {
                    let (ih, iw) = (h + r - 1, w + s - 1);
                    if !(0..H).contains(&ih) || !(0..W).contains(&iw) {
                        continue;
                    }
                    for c in 0..C {
                        let o = ((h * W + w) * C + c) as usize;
                        out[o] = out[o].max(x[((ih * W + iw) * C + c) as usize]);
                    }
                }
            }
        }
    }
    out
}

#[test]
fn padded_maxpool_matches_plain_rust() {
    let x: Vec<f32> = (0..H * W * C)
        .map(|i| ((i * 37) % 101) as f32 - 50.0)
        .collect();
    let want = reference(&x);
    for window in [Serial, Unrolled] {
        for isa in [Isa::Generic, Isa::Avx2, Isa::Avx512] {
            let ker = build(&maxpool(window), isa);
            let mut got = vec![0.0; want.len()];
            ker.run(&[&x], &mut [&mut got]).unwrap();
            assert_eq!(got, want, "{window:?} {isa:?}");
        }
    }
}

#[test]
fn one_branch_per_guard_not_per_chunk() {
    // With the window loops unrolled, each of the 9 taps has a guard of its own; the 16
    // channels are 4 chunks. Unswitched: one conditional branch per tap (the two loops'
    // back edges besides); per chunk it would be 36.
    let ker = build(&maxpool(Unrolled), Isa::Generic);
    let ir = ker.ir_text().expect("kept IR");
    let branches = ir.matches("brif").count();
    assert!(branches <= 9 + 2, "{branches} conditional branches:\n{ir}");
}
