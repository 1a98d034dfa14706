//! Feature values of small hand-made loop nests against values worked out by hand (one test
//! per feature group). Expected raw values are written out, then log-scaled with `slog`.

use tessel_cost_model::features::{slog, ProgramFeatures};
use tessel_cost_model::{extract, feature_names, CodegenFlags, FeatureExtractor, FEATURE_LEN};
use tessel_ir::expr::BinOp;
use tessel_ir::loop_nest::{
    Buffer, BufferId, BufferScope, ExprId, Loop, LoopId, LoopKind, LoopNest, Node, Stmt, StmtId,
};

fn buf(n: &mut LoopNest, name: &str, len: i64, scope: BufferScope) -> BufferId {
    n.add_buffer(Buffer::new(name, &[len], scope))
}

fn lp(n: &mut LoopNest, name: &str, extent: i64, kind: LoopKind) -> LoopId {
    n.add_loop(Loop {
        name: name.into(),
        extent,
        kind,
    })
}

fn for_(n: &mut LoopNest, l: LoopId, body: Vec<StmtId>, unroll: Option<u32>) -> StmtId {
    n.add_stmt(Stmt::For {
        lp: l,
        body,
        auto_unroll_max_step: unroll,
    })
}

fn load(n: &mut LoopNest, b: BufferId, i: ExprId) -> ExprId {
    n.node(Node::Load(b, i))
}

/// `a*s + b` without the constant folding of `LoopNest::binary` getting in the way.
fn lin(n: &mut LoopNest, a: ExprId, s: i64, b: ExprId) -> ExprId {
    let s = n.int(s);
    let m = n.node(Node::Binary(BinOp::Mul, a, s));
    n.node(Node::Binary(BinOp::Add, m, b))
}

fn get(p: &ProgramFeatures, row: usize, name: &str) -> f32 {
    p.get(row, name)
        .unwrap_or_else(|| panic!("no feature {name} in row {row}"))
}

fn assert_feature(p: &ProgramFeatures, row: usize, name: &str, want: f32) {
    let got = get(p, row, name);
    assert!(
        (got - want).abs() < 1e-4,
        "{name}: got {got}, want {want}\n{p}"
    );
}

/// ```text
/// parallel for i in 0..4 @auto_unroll_max_step(16) {
///   unrolled for j in 0..2 {
///     vectorized for k in 0..8 {
///       C[(i*16 + j*8) + k] = A[(i*16 + j*8) + k] * B[k] + 1.0
/// ```
fn annotated_nest() -> LoopNest {
    let mut n = LoopNest::new("t");
    let a = buf(&mut n, "A", 64, BufferScope::Input);
    let b = buf(&mut n, "B", 8, BufferScope::Input);
    let c = buf(&mut n, "C", 64, BufferScope::Output);
    n.params = vec![a, b, c];
    let li = lp(&mut n, "i", 4, LoopKind::Parallel);
    let lj = lp(&mut n, "j", 2, LoopKind::Unrolled);
    let lk = lp(&mut n, "k", 8, LoopKind::Vectorized);
    let (vi, vj, vk) = (n.var(li), n.var(lj), n.var(lk));
    // (i*16 + j*8) + k: one int mad (i*16 + (j*8)), one int mul, one int add.
    let s16 = n.int(16);
    let i16 = n.node(Node::Binary(BinOp::Mul, vi, s16));
    let ij = lin(&mut n, vj, 8, i16);
    let idx = n.node(Node::Binary(BinOp::Add, ij, vk));
    let la = load(&mut n, a, idx);
    let lb = load(&mut n, b, vk);
    let prod = n.node(Node::Binary(BinOp::Mul, la, lb));
    let one = n.float(1.0);
    let value = n.node(Node::Binary(BinOp::Add, prod, one));
    let st = n.add_stmt(Stmt::Store {
        buf: c,
        index: idx,
        value,
    });
    let fk = for_(&mut n, lk, vec![st], None);
    let fj = for_(&mut n, lj, vec![fk], None);
    let fi = for_(&mut n, li, vec![fj], Some(16));
    n.body = vec![fi];
    n
}

#[test]
fn feature_vector_layout_has_164_ansor_entries_then_9_kernel_entries() {
    let names = feature_names();
    assert_eq!(FEATURE_LEN, 173);
    assert_eq!(names.len(), FEATURE_LEN);
    assert_eq!(names[0], "float_mad");
    assert_eq!(names[57], "B0.acc_type.read");
    assert_eq!(names[146], "B4.stride");
    assert_eq!(names[147], "arith_intensity_curve_0");
    assert_eq!(names[163], "auto_unroll_max_step");
    assert_eq!(names[164], "tensorize.kernel");
    assert_eq!(names[170], "tensorize.packed_b");
    assert_eq!(names[172], "tensorize.k2");
}

#[test]
fn computation_counts_scale_with_the_outer_loops() {
    let p = extract(&annotated_nest());
    assert_eq!(p.n_stores(), 1);
    // Per iteration: float mad 1 (A*B + 1.0); the index (i*16 + j*8) + k, used by the store
    // and the load of A: int mad 1, int mul 1, int add 1 each. 64 iterations.
    assert_feature(&p, 0, "float_mad", slog(64.0));
    assert_feature(&p, 0, "float_addsub", 0.0);
    assert_feature(&p, 0, "float_mul", 0.0);
    assert_feature(&p, 0, "int_mad", slog(128.0));
    assert_feature(&p, 0, "int_mul", slog(128.0));
    assert_feature(&p, 0, "int_addsub", slog(128.0));
    assert_feature(&p, 0, "select_op", 0.0);
}

#[test]
fn annotation_features_describe_vectorize_unroll_parallel_loops() {
    let p = extract(&annotated_nest());
    for (ann, extent) in [("vec", 8.0), ("unroll", 2.0), ("parallel", 4.0)] {
        assert_feature(&p, 0, &format!("{ann}_num"), slog(1.0));
        assert_feature(&p, 0, &format!("{ann}_prod"), slog(extent));
        assert_feature(&p, 0, &format!("{ann}_len"), slog(extent));
        assert_feature(&p, 0, &format!("{ann}_type.mixed"), 1.0);
        assert_feature(&p, 0, &format!("{ann}_type.none"), 0.0);
    }
    assert_feature(&p, 0, "is_gpu", 0.0);
}

#[test]
fn outer_scope_features() {
    let p = extract(&annotated_nest());
    assert_feature(&p, 0, "outer_prod", slog(64.0));
    assert_feature(&p, 0, "num_loops", slog(3.0));
    assert_feature(&p, 0, "auto_unroll_max_step", slog(16.0));
}

#[test]
fn buffer_access_features() {
    let p = extract(&annotated_nest());
    // Sorted by (lines, bytes) descending; all three have 4 lines and 256 bytes, so the
    // order of first access stays: C (written), A, B.
    // C and A: coefficients i:16, j:8, k:1 → 64 unique elements (256 bytes), stride 1,
    // lines = 64 · 4/64 = 4, contiguous run 64 elements → unique lines 256/64 = 4; every
    // loop moves them: no reuse (÷ reuse becomes ×2).
    for (slot, acc) in [(0, "write"), (1, "read")] {
        let b = |f: &str| format!("B{slot}.{f}");
        assert_feature(&p, 0, &b(&format!("acc_type.{acc}")), 1.0);
        assert_feature(&p, 0, &b("bytes"), slog(256.0));
        assert_feature(&p, 0, &b("unique_bytes"), slog(256.0));
        assert_feature(&p, 0, &b("lines"), slog(4.0));
        assert_feature(&p, 0, &b("unique_lines"), slog(4.0));
        assert_feature(&p, 0, &b("reuse_type.no_reuse"), 1.0);
        assert_feature(&p, 0, &b("reuse_ct"), 0.0);
        assert_feature(&p, 0, &b("bytes_d_reuse_ct"), slog(512.0));
        assert_feature(&p, 0, &b("lines_d_reuse_ct"), slog(8.0));
        assert_feature(&p, 0, &b("stride"), slog(1.0));
    }
    // B[k]: 8 unique elements (32 bytes, one run → 1 unique line); j does not move it:
    // loop-multiple-read, count 2, distance 8 iterations (k) and the bytes the k loop
    // touches: C 8 + A 8 + B 8 elements = 96 bytes.
    let b = |f: &str| format!("B2.{f}");
    assert_feature(&p, 0, &b("acc_type.read"), 1.0);
    assert_feature(&p, 0, &b("bytes"), slog(256.0));
    assert_feature(&p, 0, &b("unique_bytes"), slog(32.0));
    assert_feature(&p, 0, &b("lines"), slog(4.0));
    assert_feature(&p, 0, &b("unique_lines"), slog(1.0));
    assert_feature(&p, 0, &b("reuse_type.loop_multiple_read"), 1.0);
    assert_feature(&p, 0, &b("reuse_ct"), slog(2.0));
    assert_feature(&p, 0, &b("reuse_dis_iter"), slog(8.0));
    assert_feature(&p, 0, &b("reuse_dis_bytes"), slog(96.0));
    assert_feature(&p, 0, &b("bytes_d_reuse_ct"), slog(128.0));
    assert_feature(&p, 0, &b("unique_bytes_d_reuse_ct"), slog(16.0));
    assert_feature(&p, 0, &b("unique_lines_d_reuse_ct"), slog(0.5));
    // Only three buffers: groups 3 and 4 are zero.
    assert_feature(&p, 0, "B3.bytes", 0.0);
    assert_feature(&p, 0, "B4.acc_type.read", 0.0);
}

#[test]
fn arithmetic_intensity_curve() {
    let p = extract(&annotated_nest());
    // Levels inner → outer: (log2 flops, log2 bytes) = (3, log2 96), (4, log2 160),
    // (6, log2 544); samples at 0.6, 1.2, …, 6.0 flops (log2), linearly interpolated.
    let r = [3.0 / 96f32.log2(), 4.0 / 160f32.log2(), 6.0 / 544f32.log2()];
    for k in 0..5 {
        assert_feature(&p, 0, &format!("arith_intensity_curve_{k}"), r[0]);
    }
    assert_feature(&p, 0, "arith_intensity_curve_5", r[0] + (r[1] - r[0]) * 0.6);
    assert_feature(
        &p,
        0,
        "arith_intensity_curve_6",
        r[1] + (r[2] - r[1]) / 2.0 * 0.2,
    );
    assert_feature(&p, 0, "arith_intensity_curve_9", r[2]);
}

#[test]
fn allocation_features_of_a_local_buffer() {
    // for i in 0..4 { alloc T[8]; for j in 0..8 { T[j] = A[i*8 + j] }
    //                 for j2 in 0..8 { C[i*8 + j2] = T[j2] } }
    let mut n = LoopNest::new("t");
    let a = buf(&mut n, "A", 32, BufferScope::Input);
    let c = buf(&mut n, "C", 32, BufferScope::Output);
    let t = buf(&mut n, "T", 8, BufferScope::Local);
    n.params = vec![a, c];
    let li = lp(&mut n, "i", 4, LoopKind::Serial);
    let lj = lp(&mut n, "j", 8, LoopKind::Serial);
    let lj2 = lp(&mut n, "j2", 8, LoopKind::Serial);
    let (vi, vj, vj2) = (n.var(li), n.var(lj), n.var(lj2));
    let ia = lin(&mut n, vi, 8, vj);
    let va = load(&mut n, a, ia);
    let s1 = n.add_stmt(Stmt::Store {
        buf: t,
        index: vj,
        value: va,
    });
    let ic = lin(&mut n, vi, 8, vj2);
    let vt = load(&mut n, t, vj2);
    let s2 = n.add_stmt(Stmt::Store {
        buf: c,
        index: ic,
        value: vt,
    });
    let f1 = for_(&mut n, lj, vec![s1], None);
    let f2 = for_(&mut n, lj2, vec![s2], None);
    let al = n.add_stmt(Stmt::Alloc {
        buf: t,
        body: vec![f1, f2],
    });
    let fi = for_(&mut n, li, vec![al], None);
    n.body = vec![fi];
    let p = extract(&n);
    assert_eq!(p.n_stores(), 2);
    // T: 32 bytes allocated inside a loop of 4; the store runs 32 times, 8 per allocation.
    assert_feature(&p, 0, "alloc_size", slog(32.0));
    assert_feature(&p, 0, "alloc_outer_prod", slog(4.0));
    assert_feature(&p, 0, "alloc_prod", slog(128.0));
    assert_feature(&p, 0, "alloc_inner_prod", slog(8.0));
    // C is a kernel argument: no allocation.
    assert_feature(&p, 1, "alloc_size", 0.0);
    assert_feature(&p, 1, "alloc_inner_prod", 0.0);
}

#[test]
fn init_and_update_share_one_entry_and_reuse_is_detected() {
    // for i in 0..4 { C[i] = 0.0; for k in 0..8 { C[i] = C[i] + A[i*8 + k] * B[k] } }
    let mut n = LoopNest::new("t");
    let a = buf(&mut n, "A", 32, BufferScope::Input);
    let b = buf(&mut n, "B", 8, BufferScope::Input);
    let c = buf(&mut n, "C", 4, BufferScope::Output);
    n.params = vec![a, b, c];
    let li = lp(&mut n, "i", 4, LoopKind::Serial);
    let lk = lp(&mut n, "k", 8, LoopKind::Serial);
    let (vi, vk) = (n.var(li), n.var(lk));
    let zero = n.float(0.0);
    let init = n.add_stmt(Stmt::Store {
        buf: c,
        index: vi,
        value: zero,
    });
    let ia = lin(&mut n, vi, 8, vk);
    let la = load(&mut n, a, ia);
    let lb = load(&mut n, b, vk);
    let lc = load(&mut n, c, vi);
    let m = n.node(Node::Binary(BinOp::Mul, la, lb));
    let v = n.node(Node::Binary(BinOp::Add, lc, m));
    let upd = n.add_stmt(Stmt::Store {
        buf: c,
        index: vi,
        value: v,
    });
    let fk = for_(&mut n, lk, vec![upd], None);
    let fi = for_(&mut n, li, vec![init, fk], None);
    n.body = vec![fi];
    let p = extract(&n);
    assert_eq!(p.n_stores(), 1, "{p}");
    // Counts add up over the two stores (the init has none); the rest is the update's.
    assert_feature(&p, 0, "float_mad", slog(32.0));
    assert_feature(&p, 0, "int_mad", slog(32.0));
    assert_feature(&p, 0, "num_loops", slog(2.0));
    assert_feature(&p, 0, "outer_prod", slog(32.0));
    // Lines: A 32·min(1, 4/64)·… = 2, B 2, C = 32/8 (k does not move C) · 4/64 → 1.
    // A (read, 128 bytes) comes first, then B (read), then C (read-write).
    assert_feature(&p, 0, "B0.acc_type.read", 1.0);
    assert_feature(&p, 0, "B0.unique_bytes", slog(128.0));
    let names = feature_names();
    let row: Vec<f32> = p.rows().next().map(|r| r.to_vec()).unwrap_or_default();
    let slot_of_c = (0..3)
        .find(|s| {
            row[names
                .iter()
                .position(|n| n == &format!("B{s}.acc_type.read_write"))
                .unwrap_or(0)]
                == 1.0
        })
        .unwrap_or_else(|| panic!("C is not among the buffers\n{p}"));
    let c = |f: &str| format!("B{slot_of_c}.{f}");
    // C[i] inside k: loop-multiple-read, count 8, distance 1 iteration and the 12 bytes one
    // iteration touches (A, B, C one element each).
    assert_feature(&p, 0, &c("reuse_type.loop_multiple_read"), 1.0);
    assert_feature(&p, 0, &c("reuse_ct"), slog(8.0));
    assert_feature(&p, 0, &c("reuse_dis_iter"), slog(1.0));
    assert_feature(&p, 0, &c("reuse_dis_bytes"), slog(12.0));
    assert_feature(&p, 0, &c("unique_bytes"), slog(16.0));
    // The store and the load of C: bytes count both accesses.
    assert_feature(&p, 0, &c("bytes"), slog(2.0 * 32.0 * 4.0));
}

/// A 4×8 register tile over a tensorized reduction of 16, called 3 times:
///
/// ```text
/// for o in 0..3 {
///   tensorized for k in 0..16 {
///     for i in 0..4 {
///       vectorized for j in 0..8 {
///         C[o*32 + i*8 + j] = C[o*32 + i*8 + j] + A[i*16 + k] * B[k*8 + j]
/// ```
///
/// With `nr` = 7 instead of 8 the nest matches no kernel of the family.
fn tensorized_nest(nr: i64) -> LoopNest {
    let mut n = LoopNest::new("t");
    let a = buf(&mut n, "A", 64, BufferScope::Input);
    let b = buf(&mut n, "B", 16 * nr, BufferScope::Input);
    let c = buf(&mut n, "C", 3 * 4 * nr, BufferScope::Output);
    n.params = vec![a, b, c];
    let lo = lp(&mut n, "o", 3, LoopKind::Serial);
    let lk = lp(&mut n, "k", 16, LoopKind::Tensorized);
    let li = lp(&mut n, "i", 4, LoopKind::Serial);
    let lj = lp(&mut n, "j", nr, LoopKind::Vectorized);
    let (vo, vk, vi, vj) = (n.var(lo), n.var(lk), n.var(li), n.var(lj));
    let oi = lin(&mut n, vo, 4 * nr, vj);
    let ci = lin(&mut n, vi, nr, oi);
    let ai = lin(&mut n, vi, 16, vk);
    let bi = lin(&mut n, vk, nr, vj);
    let lc = load(&mut n, c, ci);
    let la = load(&mut n, a, ai);
    let lb = load(&mut n, b, bi);
    let prod = n.node(Node::Binary(BinOp::Mul, la, lb));
    let value = n.node(Node::Binary(BinOp::Add, lc, prod));
    let st = n.add_stmt(Stmt::Store {
        buf: c,
        index: ci,
        value,
    });
    let fj = for_(&mut n, lj, vec![st], None);
    let fi = for_(&mut n, li, vec![fj], None);
    let fk = for_(&mut n, lk, vec![fi], None);
    let fo = for_(&mut n, lo, vec![fk], None);
    n.body = vec![fo];
    n
}

#[test]
fn micro_kernel_features_describe_a_matched_tile() {
    let p = extract(&tensorized_nest(8));
    assert_eq!(p.n_stores(), 1);
    assert_feature(&p, 0, "tensorize.kernel", 1.0);
    assert_feature(&p, 0, "tensorize.plain", 0.0);
    assert_feature(&p, 0, "tensorize.mr", slog(4.0));
    assert_feature(&p, 0, "tensorize.nr", slog(8.0));
    assert_feature(&p, 0, "tensorize.k", slog(16.0));
    // One call per iteration of `o`.
    assert_feature(&p, 0, "tensorize.calls", slog(3.0));
    assert_feature(&p, 0, "tensorize.packed_b", 1.0);

    // Without layout rewrite B is read in place.
    let flags = CodegenFlags {
        micro_kernels: true,
        layout_rewrite: false,
    };
    let p = FeatureExtractor::new().extract_with(&tensorized_nest(8), flags);
    assert_feature(&p, 0, "tensorize.kernel", 1.0);
    assert_feature(&p, 0, "tensorize.packed_b", 0.0);
}

/// A depthwise-style tile: elementwise `A` (unit stride along `j`), a weight row `B` that
/// does not depend on `i`, and the reduction loop `r` around the call:
///
/// ```text
/// for r in 0..3 {
///   tensorized for k in 0..3 {
///     for i in 0..4 {
///       vectorized for j in 0..8 {
///         C[i*8 + j] = C[i*8 + j] + A[r*100 + i*16 + k*8 + j] * B[r*24 + k*8 + j]
/// ```
fn elementwise_nest_with_outer_reduction() -> LoopNest {
    let mut n = LoopNest::new("dw");
    let a = buf(&mut n, "A", 300, BufferScope::Input);
    let b = buf(&mut n, "B", 72, BufferScope::Input);
    let c = buf(&mut n, "C", 32, BufferScope::Output);
    n.params = vec![a, b, c];
    let lr = lp(&mut n, "r", 3, LoopKind::Serial);
    let lk = lp(&mut n, "k", 3, LoopKind::Tensorized);
    let li = lp(&mut n, "i", 4, LoopKind::Serial);
    let lj = lp(&mut n, "j", 8, LoopKind::Vectorized);
    let (vr, vk, vi, vj) = (n.var(lr), n.var(lk), n.var(li), n.var(lj));
    let ci = lin(&mut n, vi, 8, vj);
    let kj = lin(&mut n, vk, 8, vj);
    let ikj = lin(&mut n, vi, 16, kj);
    let ai = lin(&mut n, vr, 100, ikj);
    let bi = lin(&mut n, vr, 24, kj);
    let lc = load(&mut n, c, ci);
    let la = load(&mut n, a, ai);
    let lb = load(&mut n, b, bi);
    let prod = n.node(Node::Binary(BinOp::Mul, la, lb));
    let value = n.node(Node::Binary(BinOp::Add, lc, prod));
    let st = n.add_stmt(Stmt::Store {
        buf: c,
        index: ci,
        value,
    });
    let fj = for_(&mut n, lj, vec![st], None);
    let fi = for_(&mut n, li, vec![fj], None);
    let fk = for_(&mut n, lk, vec![fi], None);
    let fr = for_(&mut n, lr, vec![fk], None);
    n.body = vec![fr];
    n
}

#[test]
fn micro_kernel_features_tell_the_elementwise_family_and_the_folded_reduction() {
    let p = extract(&elementwise_nest_with_outer_reduction());
    assert_feature(&p, 0, "tensorize.kernel", 1.0);
    assert_feature(&p, 0, "tensorize.elementwise", 1.0);
    assert_feature(&p, 0, "tensorize.mr", slog(4.0));
    assert_feature(&p, 0, "tensorize.k", slog(3.0));
    // `r` is folded into the call: one call of 3 × 3 steps, not three calls.
    assert_feature(&p, 0, "tensorize.k2", slog(3.0));
    assert_feature(&p, 0, "tensorize.calls", slog(1.0));
    // The broadcast tile of `tensorized_nest`: its outer loop `o` writes other C rows.
    let p = extract(&tensorized_nest(8));
    assert_feature(&p, 0, "tensorize.elementwise", 0.0);
    assert_feature(&p, 0, "tensorize.k2", slog(1.0));
}

#[test]
fn tensorized_loops_without_a_kernel_run_plain_code() {
    // nr = 7: no kernel of the family.
    let p = extract(&tensorized_nest(7));
    assert_feature(&p, 0, "tensorize.kernel", 0.0);
    assert_feature(&p, 0, "tensorize.plain", 1.0);
    assert_feature(&p, 0, "tensorize.mr", 0.0);
    assert_feature(&p, 0, "tensorize.calls", 0.0);
    // Micro-kernels off: the matched tile runs as plain code too.
    let flags = CodegenFlags {
        micro_kernels: false,
        layout_rewrite: true,
    };
    let p = FeatureExtractor::new().extract_with(&tensorized_nest(8), flags);
    assert_feature(&p, 0, "tensorize.kernel", 0.0);
    assert_feature(&p, 0, "tensorize.plain", 1.0);
    assert_feature(&p, 0, "tensorize.packed_b", 0.0);
    // Outside a tensorized loop the group is all zero.
    let p = extract(&annotated_nest());
    for name in tessel_cost_model::features::TENSORIZE_FEATURES {
        assert_feature(&p, 0, name, 0.0);
    }
}
