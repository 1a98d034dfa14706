//! Tests of the access analysis on hand-built DAGs.

use tessel_ir::analysis::{access_pattern, AccessAnalysis};
use tessel_ir::dag::{DagBuilder, Reducer, Tensor};
use tessel_ir::expr::Expr;
use tessel_ir::ComputeDag;

fn ax(v: &[Expr], k: usize) -> Expr {
    v[k].clone()
}

/// `C = A @ B`, `D = C + bias[j]`, `E = relu(D)`.
fn matmul_bias_relu(m: i64, n: i64, k: i64) -> (ComputeDag, [Tensor; 6]) {
    let mut b = DagBuilder::new();
    let a = b.placeholder("A", &[m, k]);
    let w = b.placeholder("B", &[k, n]);
    let bias = b.placeholder("bias", &[n]);
    let c = b.reduce("C", &[("i", m), ("j", n)], &[("k", k)], Reducer::Sum, |v| {
        a.at([ax(v, 0), ax(v, 2)]) * w.at([ax(v, 2), ax(v, 1)])
    });
    let d = b.compute("D", &[("i", m), ("j", n)], |v| {
        c.at([ax(v, 0), ax(v, 1)]) + bias.at([ax(v, 1)])
    });
    let e = b.compute("E", &[("i", m), ("j", n)], |v| {
        d.at([ax(v, 0), ax(v, 1)]).max(0.0f32)
    });
    let dag = b.build().expect("valid dag");
    (dag, [a, w, bias, c, d, e])
}

#[test]
fn matmul_needs_multi_level_tiling() {
    let (dag, [a, _, _, c, _, _]) = matmul_bias_relu(8, 8, 8);
    let an = AccessAnalysis::new(&dag);
    assert!(an.needs_multi_level_tiling(c.id));
    assert!(an.has_reduction(c.id));
    assert!(!an.is_simple_access(c.id), "reads use the reduction axis");
    assert!(!an.is_strictly_inlineable(c.id));
    assert!(!an.is_injective(c.id));
    assert!(!an.is_output(c.id));
    // Placeholders.
    assert!(an.is_simple_access(a.id));
    assert!(!an.is_strictly_inlineable(a.id));
    assert!(!an.needs_multi_level_tiling(a.id));
    assert!(!an.is_output(a.id));
    assert_eq!(an.reads(c.id, a.id).len(), 1);
}

#[test]
fn elementwise_chain_is_strictly_inlineable() {
    let (dag, [_, _, bias, c, d, e]) = matmul_bias_relu(8, 4, 8);
    let an = AccessAnalysis::new(&dag);
    for op in [d.id, e.id] {
        assert!(an.is_simple_access(op));
        assert!(an.is_strictly_inlineable(op));
        assert!(an.is_injective(op));
        assert!(!an.needs_multi_level_tiling(op));
        assert!(!an.has_reduction(op));
    }
    assert!(an.is_output(e.id));
    assert!(!an.is_output(d.id));
    assert!(an.element_wise_match(d.id, e.id));
    assert!(an.element_wise_match(c.id, e.id));
    assert!(an.element_wise_match(e.id, e.id));
    // bias has shape [n], D has [m, n]: not element-wise.
    assert!(!an.element_wise_match(bias.id, d.id));
    // E is not downstream of itself to D.
    assert!(!an.element_wise_match(e.id, d.id));
}

#[test]
fn common_outer_iterators_of_matmul_epilogue() {
    let (dag, [a, w, bias, c, d, e]) = matmul_bias_relu(8, 4, 16);
    let an = AccessAnalysis::new(&dag);
    assert_eq!(an.num_common_outer_iterators(c.id, d.id), 2);
    assert_eq!(an.num_common_outer_iterators(d.id, c.id), 2);
    assert_eq!(an.num_common_outer_iterators(c.id, e.id), 2);
    assert_eq!(an.num_common_outer_iterators(c.id, c.id), 2);
    // A[i, k]: dim 0 matches i (and extents 8 == 8), dim 1 is k (a reduction axis).
    assert_eq!(an.num_common_outer_iterators(a.id, c.id), 1);
    // B[k, j]: dim 0 is k.
    assert_eq!(an.num_common_outer_iterators(w.id, c.id), 0);
    // bias[j] read by D[i, j]: dim 0 is j, not i.
    assert_eq!(an.num_common_outer_iterators(bias.id, d.id), 0);
    // Unrelated ops.
    assert_eq!(an.num_common_outer_iterators(a.id, bias.id), 0);
}

#[test]
fn consumers_and_producers_through_inlined_ops() {
    let (dag, [a, w, bias, c, d, e]) = matmul_bias_relu(4, 4, 4);
    let an = AccessAnalysis::new(&dag);
    assert_eq!(an.consumers(c.id, |_| false), vec![d.id]);
    assert_eq!(an.consumers(c.id, |op| op == d.id), vec![e.id]);
    assert_eq!(an.producers(e.id, |_| false), vec![d.id]);
    assert_eq!(an.producers(e.id, |op| op == d.id), vec![bias.id, c.id]);
    assert_eq!(
        an.producers(e.id, |op| op == d.id || op == c.id),
        vec![a.id, w.id, bias.id]
    );
    assert_eq!(an.direct_producers(d.id), vec![c.id, bias.id]);
    assert_eq!(an.direct_consumers(bias.id), &[d.id]);
}

#[test]
fn conv2d_nhwc_with_padding() {
    let (n, h, w, ci, co, kh, kw) = (1, 6, 6, 3, 4, 3, 3);
    let mut b = DagBuilder::new();
    let data = b.placeholder("data", &[n, h, w, ci]);
    let kernel = b.placeholder("kernel", &[kh, kw, ci, co]);
    let pad = b.compute(
        "pad",
        &[("n", n), ("h", h + 2), ("w", w + 2), ("c", ci)],
        |v| {
            let inside = ax(v, 1)
                .ge(Expr::int(1))
                .and(ax(v, 1).lt(Expr::int(h + 1)))
                .and(ax(v, 2).ge(Expr::int(1)))
                .and(ax(v, 2).lt(Expr::int(w + 1)));
            Expr::select(
                inside,
                data.at([ax(v, 0), ax(v, 1) - 1, ax(v, 2) - 1, ax(v, 3)]),
                Expr::float(0.0),
            )
        },
    );
    let conv = b.reduce(
        "conv",
        &[("n", n), ("h", h), ("w", w), ("co", co)],
        &[("rh", kh), ("rw", kw), ("rc", ci)],
        Reducer::Sum,
        |v| {
            pad.at([ax(v, 0), ax(v, 1) + ax(v, 4), ax(v, 2) + ax(v, 5), ax(v, 6)])
                * kernel.at([ax(v, 4), ax(v, 5), ax(v, 6), ax(v, 3)])
        },
    );
    let dag = b.build().expect("valid dag");
    let an = AccessAnalysis::new(&dag);
    assert!(an.is_simple_access(pad.id), "h-1, w-1 are constant shifts");
    assert!(an.has_branch(pad.id));
    assert!(!an.is_strictly_inlineable(pad.id), "padding uses select");
    assert!(an.is_injective(pad.id));
    assert!(!an.needs_multi_level_tiling(pad.id));
    assert!(an.needs_multi_level_tiling(conv.id));
    assert!(!an.is_simple_access(conv.id));
    assert!(an.is_output(conv.id));
    // Only n has the same extent and an `axis + const` access in both.
    assert_eq!(an.num_common_outer_iterators(pad.id, conv.id), 1);
    assert!(!an.element_wise_match(pad.id, conv.id));
}

#[test]
fn softmax_exp_is_not_strictly_inlineable() {
    let (m, n) = (4, 16);
    let mut b = DagBuilder::new();
    let x = b.placeholder("X", &[m, n]);
    let mx = b.reduce("max", &[("i", m)], &[("k", n)], Reducer::Max, |v| {
        x.at([ax(v, 0), ax(v, 1)])
    });
    let ex = b.compute("exp", &[("i", m), ("j", n)], |v| {
        (x.at([ax(v, 0), ax(v, 1)]) - mx.at([ax(v, 0)])).exp()
    });
    let sum = b.reduce("sum", &[("i", m)], &[("k", n)], Reducer::Sum, |v| {
        ex.at([ax(v, 0), ax(v, 1)])
    });
    let out = b.compute("out", &[("i", m), ("j", n)], |v| {
        ex.at([ax(v, 0), ax(v, 1)]) / sum.at([ax(v, 0)])
    });
    let dag = b.build().expect("valid dag");
    let an = AccessAnalysis::new(&dag);
    assert!(an.is_simple_access(ex.id));
    assert!(an.has_expensive_op(ex.id));
    assert!(!an.is_strictly_inlineable(ex.id));
    assert!(an.is_strictly_inlineable(out.id));
    // Row reductions read every spatial axis: no multi-level tiling.
    assert!(!an.needs_multi_level_tiling(mx.id));
    assert!(!an.needs_multi_level_tiling(sum.id));
    assert!(an.has_reduction(sum.id));
    // exp has two consumers (sum, out): element-wise matching stops there.
    assert!(!an.element_wise_match(ex.id, out.id));
    assert_eq!(an.num_common_outer_iterators(ex.id, out.id), 1);
}

#[test]
fn transpose_is_simple_but_not_strictly_inlineable() {
    let mut b = DagBuilder::new();
    let a = b.placeholder("A", &[4, 6]);
    let t = b.compute("T", &[("j", 6), ("i", 4)], |v| a.at([ax(v, 1), ax(v, 0)]));
    let dag = b.build().expect("valid dag");
    let an = AccessAnalysis::new(&dag);
    assert!(an.is_simple_access(t.id));
    assert!(!an.is_strictly_inlineable(t.id));
    assert!(an.is_injective(t.id));
    assert!(!an.needs_multi_level_tiling(t.id));
    let p = access_pattern(2, &an.reads(t.id, a.id)[0]);
    assert!(p.simple && !p.same_order && !p.axis_missing && !p.axis_duplicated);
}

#[test]
fn access_patterns() {
    let i = Expr::axis(0);
    let j = Expr::axis(1);
    let p = access_pattern(2, &[i.clone() + 1, Expr::int(0), j.clone() - 2]);
    assert!(p.simple && p.same_order && !p.axis_missing && !p.axis_duplicated);
    let p = access_pattern(2, &[i.clone(), i.clone()]);
    assert!(p.simple && p.axis_missing && p.axis_duplicated);
    assert!(!access_pattern(2, &[i.clone() + j.clone()]).simple);
    assert!(!access_pattern(2, &[i.clone() * 2]).simple);
    // Axis 2 is not a spatial axis of a 2-d op (a reduction axis).
    assert!(!access_pattern(2, &[Expr::axis(2)]).simple);
}

#[test]
fn constant_tensor_is_strictly_inlineable() {
    let mut b = DagBuilder::new();
    let a = b.placeholder("A", &[4, 4]);
    let eye = b.compute("eye", &[("i", 4), ("j", 4)], |v| {
        Expr::select(ax(v, 0).eq(ax(v, 1)), Expr::float(1.0), Expr::float(0.0))
    });
    let out = b.compute("out", &[("i", 4), ("j", 4)], |v| {
        a.at([ax(v, 0), ax(v, 1)]) * eye.at([ax(v, 0), ax(v, 1)])
    });
    let dag = b.build().expect("valid dag");
    let an = AccessAnalysis::new(&dag);
    assert!(an.is_strictly_inlineable(eye.id), "reads nothing");
    assert!(an.is_strictly_inlineable(out.id));
    assert!(!an.needs_multi_level_tiling(out.id));
}

#[test]
fn unit_extent_axes_do_not_count_as_missing() {
    // A batched matmul with batch 1: the missing batch axis does not count.
    let mut b = DagBuilder::new();
    let x = b.placeholder("X", &[1, 4]);
    let y = b.placeholder("Y", &[1, 4]);
    // out[b, i] = X[0, i] * Y[0, i]: misses axis b (extent 1) only.
    let out = b.compute("out", &[("b", 1), ("i", 4)], |v| {
        x.at([Expr::int(0), ax(v, 1)]) * y.at([Expr::int(0), ax(v, 1)])
    });
    // Outer product: each producer misses one axis of extent > 1.
    let outer = b.compute("outer", &[("i", 4), ("j", 4)], |v| {
        x.at([Expr::int(0), ax(v, 0)]) * y.at([Expr::int(0), ax(v, 1)])
    });
    let dag = b.build().expect("valid dag");
    let an = AccessAnalysis::new(&dag);
    assert!(!an.needs_multi_level_tiling(out.id));
    assert!(an.needs_multi_level_tiling(outer.id));
}
