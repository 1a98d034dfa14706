//! Tests of the index simplifier: CODEGEN.md's examples, interval facts, guards, the
//! whole-nest pass, and brute-force equivalence over the loop ranges.

use proptest::prelude::*;
use tessel_ir::expr::BinOp;
use tessel_ir::interp::{self, eval_expr, Value};
use tessel_ir::loop_nest::{
    Buffer, BufferScope, ExprId, Loop, LoopId, LoopKind, LoopNest, Node, Stmt,
};
use tessel_ir::simplify::{as_bool_const, int_bounds, simplify, simplify_nest};

fn add_loop(nest: &mut LoopNest, name: &str, extent: i64) -> ExprId {
    let l = nest.add_loop(Loop {
        name: name.into(),
        extent,
        kind: LoopKind::Serial,
    });
    nest.var(l)
}

/// A raw binary node (no folding), as lowering might leave it.
fn raw(nest: &mut LoopNest, op: BinOp, a: ExprId, b: ExprId) -> ExprId {
    nest.node(Node::Binary(op, a, b))
}

/// Every assignment of the nest's loop variables.
fn all_assignments(nest: &LoopNest) -> Vec<Vec<i64>> {
    let mut out = vec![Vec::new()];
    for l in &nest.loops {
        out = out
            .into_iter()
            .flat_map(|p| {
                (0..l.extent).map(move |v| {
                    let mut q = p.clone();
                    q.push(v);
                    q
                })
            })
            .collect();
    }
    out
}

/// `a` and `b` evaluate equally on every assignment of the loop variables.
fn assert_equivalent(nest: &LoopNest, a: ExprId, b: ExprId) {
    for vars in all_assignments(nest) {
        let va = eval_expr(nest, a, &vars).expect("original evaluates");
        let vb = eval_expr(nest, b, &vars).expect("simplified evaluates");
        assert_eq!(
            va,
            vb,
            "{} vs {} at {vars:?}",
            nest.expr_text(a),
            nest.expr_text(b)
        );
    }
}

/// Simplifies `e`, checks equivalence and returns the printed result.
fn simplified(nest: &mut LoopNest, e: ExprId) -> String {
    let s = simplify(nest, e);
    assert_equivalent(nest, e, s);
    nest.expr_text(s)
}

#[test]
fn codegen_md_split_then_fuse() {
    let mut nest = LoopNest::new("t");
    let i = add_loop(&mut nest, "i", 64);
    let four = nest.int(4);
    // (i/4)*4 + i%4
    let d = raw(&mut nest, BinOp::Div, i, four);
    let m = raw(&mut nest, BinOp::Mod, i, four);
    let dm = raw(&mut nest, BinOp::Mul, d, four);
    let e = raw(&mut nest, BinOp::Add, dm, m);
    assert_eq!(simplified(&mut nest, e), "i");
    // i%4 + 4*(i/4)
    let md = raw(&mut nest, BinOp::Mul, four, d);
    let e = raw(&mut nest, BinOp::Add, m, md);
    assert_eq!(simplified(&mut nest, e), "i");
}

#[test]
fn codegen_md_fused_pair() {
    // ((x*16+y)/16)*16 + (x*16+y)%16 with y < 16, and with y unbounded by 16.
    for (ey, expected) in [(16, "((x * 16) + y)"), (40, "((x * 16) + y)")] {
        let mut nest = LoopNest::new("t");
        let x = add_loop(&mut nest, "x", 4);
        let y = add_loop(&mut nest, "y", ey);
        let c16 = nest.int(16);
        let x16 = raw(&mut nest, BinOp::Mul, x, c16);
        let f = raw(&mut nest, BinOp::Add, x16, y);
        let d = raw(&mut nest, BinOp::Div, f, c16);
        let dm = raw(&mut nest, BinOp::Mul, d, c16);
        let m = raw(&mut nest, BinOp::Mod, f, c16);
        let e = raw(&mut nest, BinOp::Add, dm, m);
        assert_eq!(simplified(&mut nest, e), expected);
        // And the parts, when y < 16: (x*16+y)/16 = x, (x*16+y)%16 = y.
        if ey == 16 {
            assert_eq!(simplified(&mut nest, d), "x");
            assert_eq!(simplified(&mut nest, m), "y");
        }
    }
}

#[test]
fn codegen_md_two_level_split_then_fuse() {
    // (((f/8)/4)*4 + (f/8)%4)*8 + f%8 = f
    let mut nest = LoopNest::new("t");
    let f = add_loop(&mut nest, "f", 256);
    let c8 = nest.int(8);
    let c4 = nest.int(4);
    let f8 = raw(&mut nest, BinOp::Div, f, c8);
    let f84 = raw(&mut nest, BinOp::Div, f8, c4);
    let f844 = raw(&mut nest, BinOp::Mul, f84, c4);
    let f8m4 = raw(&mut nest, BinOp::Mod, f8, c4);
    let inner = raw(&mut nest, BinOp::Add, f844, f8m4);
    let inner8 = raw(&mut nest, BinOp::Mul, inner, c8);
    let fm8 = raw(&mut nest, BinOp::Mod, f, c8);
    let e = raw(&mut nest, BinOp::Add, inner8, fm8);
    assert_eq!(
        nest.expr_text(e),
        "((((((f / 8) / 4) * 4) + ((f / 8) % 4)) * 8) + (f % 8))"
    );
    assert_eq!(simplified(&mut nest, e), "f");
}

#[test]
fn codegen_md_div_and_mod_of_scaled_sums() {
    let mut nest = LoopNest::new("t");
    let io = add_loop(&mut nest, "io", 8);
    let ii = add_loop(&mut nest, "ii", 64);
    let c8 = nest.int(8);
    let c0 = nest.int(0);
    let c32 = nest.int(32);
    // (io*8 + 0)/8 = io
    let io8 = raw(&mut nest, BinOp::Mul, io, c8);
    let s = raw(&mut nest, BinOp::Add, io8, c0);
    let e = raw(&mut nest, BinOp::Div, s, c8);
    assert_eq!(simplified(&mut nest, e), "io");
    // (io*32 + ii)%32 = ii%32 (ii may reach 63)
    let io32 = raw(&mut nest, BinOp::Mul, io, c32);
    let s = raw(&mut nest, BinOp::Add, io32, ii);
    let e = raw(&mut nest, BinOp::Mod, s, c32);
    assert_eq!(simplified(&mut nest, e), "(ii % 32)");
    // (io*32 + ii)/32 = io + ii/32
    let e = raw(&mut nest, BinOp::Div, s, c32);
    assert_eq!(simplified(&mut nest, e), "(io + (ii / 32))");
}

#[test]
fn interval_facts() {
    let mut nest = LoopNest::new("t");
    let io = add_loop(&mut nest, "io", 5);
    let ii = add_loop(&mut nest, "ii", 4);
    let c4 = nest.int(4);
    let c16 = nest.int(16);
    let c2 = nest.int(2);
    // ii/4 = 0 and ii%4 = ii when ii < 4.
    let e = raw(&mut nest, BinOp::Div, ii, c4);
    assert_eq!(simplified(&mut nest, e), "0");
    let e = raw(&mut nest, BinOp::Mod, ii, c4);
    assert_eq!(simplified(&mut nest, e), "ii");
    // (io*4 + ii)/4 = io, (io*4 + ii)%4 = ii.
    let io4 = raw(&mut nest, BinOp::Mul, io, c4);
    let f = raw(&mut nest, BinOp::Add, io4, ii);
    let e = raw(&mut nest, BinOp::Div, f, c4);
    assert_eq!(simplified(&mut nest, e), "io");
    let e = raw(&mut nest, BinOp::Mod, f, c4);
    assert_eq!(simplified(&mut nest, e), "ii");
    // (io*4 + ii)/16 = io/4 (an inner split of a fused index); (io*4 + ii)%16 has no
    // smaller form, but ((io*4 + ii)%16)/4 = io%4.
    let e = raw(&mut nest, BinOp::Div, f, c16);
    assert_eq!(simplified(&mut nest, e), "(io / 4)");
    let m = raw(&mut nest, BinOp::Mod, f, c16);
    assert_eq!(simplify(&mut nest, m), m);
    let e = raw(&mut nest, BinOp::Div, m, c4);
    assert_eq!(simplified(&mut nest, e), "(io % 4)");
    // ((io*4 + ii)%16)/2 has no smaller form but stays equivalent.
    let e = raw(&mut nest, BinOp::Div, m, c2);
    simplified(&mut nest, e);
    // min/max decided by ranges: min(ii, 7) = ii, max(ii, io + 4) = io + 4; max(ii, f)
    // needs relational facts, which intervals do not give.
    let c7 = nest.int(7);
    let e = raw(&mut nest, BinOp::Min, ii, c7);
    assert_eq!(simplified(&mut nest, e), "ii");
    let io_4 = raw(&mut nest, BinOp::Add, io, c4);
    let e = raw(&mut nest, BinOp::Max, ii, io_4);
    assert_eq!(simplified(&mut nest, e), "(io + 4)");
    let e = raw(&mut nest, BinOp::Max, ii, f);
    assert_eq!(simplify(&mut nest, e), e);
    // Constant folding.
    let c3 = nest.int(3);
    let e = raw(&mut nest, BinOp::Mul, c3, c4);
    let e = raw(&mut nest, BinOp::Add, e, c2);
    assert_eq!(simplified(&mut nest, e), "14");
    // Overflow is not folded.
    let big = nest.int(i64::MAX);
    let e = raw(&mut nest, BinOp::Add, big, c2);
    assert_eq!(simplify(&mut nest, e), e);
}

#[test]
fn guards_that_become_true() {
    let mut nest = LoopNest::new("t");
    let io = add_loop(&mut nest, "io", 4);
    let ii = add_loop(&mut nest, "ii", 4);
    let c4 = nest.int(4);
    let c16 = nest.int(16);
    let c10 = nest.int(10);
    let c0 = nest.int(0);
    let io4 = raw(&mut nest, BinOp::Mul, io, c4);
    let f = raw(&mut nest, BinOp::Add, io4, ii);
    // io*4 + ii < 16 always holds.
    let g1 = raw(&mut nest, BinOp::Lt, f, c16);
    let s = simplify(&mut nest, g1);
    assert_eq!(as_bool_const(&nest, s), Some(true));
    assert_equivalent(&nest, g1, s);
    // 0 <= ii && io*4 + ii < 16 is true.
    let g0 = raw(&mut nest, BinOp::Le, c0, ii);
    let both = raw(&mut nest, BinOp::And, g0, g1);
    let s = simplify(&mut nest, both);
    assert_eq!(as_bool_const(&nest, s), Some(true));
    // (io*4 + ii < 10) && (io*4 + ii < 16) = io*4 + ii < 10.
    let g2 = raw(&mut nest, BinOp::Lt, f, c10);
    let e = raw(&mut nest, BinOp::And, g2, g1);
    assert_eq!(simplified(&mut nest, e), "(((io * 4) + ii) < 10)");
    // io*4 + ii < 10 itself cannot be decided: unchanged.
    assert_eq!(simplify(&mut nest, g2), g2);
    // 16 <= io*4 + ii is false.
    let g3 = raw(&mut nest, BinOp::Le, c16, f);
    let s = simplify(&mut nest, g3);
    assert_eq!(as_bool_const(&nest, s), Some(false));
}

#[test]
fn float_comparisons_are_opaque_in_conditions() {
    // (A[i] < 0.0) && (i < 8) with i < 8 is A[i] < 0.0.
    let mut nest = LoopNest::new("t");
    let a = nest.add_buffer(Buffer::new("A", &[8], BufferScope::Input));
    let i = add_loop(&mut nest, "i", 8);
    let c8 = nest.int(8);
    let x = nest.node(Node::Load(a, i));
    let zero = nest.float(0.0);
    let neg = raw(&mut nest, BinOp::Lt, x, zero);
    let in_range = raw(&mut nest, BinOp::Lt, i, c8);
    let e = raw(&mut nest, BinOp::And, neg, in_range);
    assert_eq!(simplify(&mut nest, e), neg);
}

#[test]
fn no_change_returns_the_same_id() {
    let mut nest = LoopNest::new("t");
    let i = add_loop(&mut nest, "i", 7);
    let j = add_loop(&mut nest, "j", 5);
    let c3 = nest.int(3);
    let ij = raw(&mut nest, BinOp::Mul, i, j);
    let e = raw(&mut nest, BinOp::Add, ij, c3);
    let before = nest.nodes().len();
    assert_eq!(simplify(&mut nest, e), e);
    assert_eq!(simplify(&mut nest, i), i);
    assert_eq!(nest.nodes().len(), before, "no node added");
    // A float expression is left alone.
    let x = nest.float(1.5);
    assert_eq!(simplify(&mut nest, x), x);
}

#[test]
fn int_bounds_from_loop_ranges() {
    let mut nest = LoopNest::new("t");
    let io = add_loop(&mut nest, "io", 4);
    let ii = add_loop(&mut nest, "ii", 8);
    let c8 = nest.int(8);
    let c3 = nest.int(3);
    let c5 = nest.int(5);
    let io8 = nest.mul(io, c8);
    let f = nest.add(io8, ii);
    assert_eq!(int_bounds(&nest, f), Some((0, 31)));
    let e = nest.binary(BinOp::Sub, ii, c5);
    assert_eq!(int_bounds(&nest, e), Some((-5, 2)));
    let e = nest.binary(BinOp::Div, e, c3);
    assert_eq!(int_bounds(&nest, e), Some((-2, 0)));
    let e = nest.binary(BinOp::Mod, f, c5);
    assert_eq!(int_bounds(&nest, e), Some((0, 4)));
    let e = nest.binary(BinOp::Mod, ii, c8);
    assert_eq!(int_bounds(&nest, e), Some((0, 7)));
    let e = nest.binary(BinOp::Max, io, c5);
    assert_eq!(int_bounds(&nest, e), Some((5, 5)));
    // Division by a range containing zero is unbounded.
    let e = nest.binary(BinOp::Div, c8, ii);
    assert_eq!(int_bounds(&nest, e), Some((i64::MIN, i64::MAX)));
    // Not integers.
    let x = nest.float(1.0);
    assert_eq!(int_bounds(&nest, x), None);
    let lt = nest.binary(BinOp::Lt, io, ii);
    assert_eq!(int_bounds(&nest, lt), None);
}

#[test]
fn simplify_nest_rewrites_indices_and_unwraps_guards() {
    // out[16] = in[16] * 2, fused-then-split by 4 with a guard that always holds:
    // for io in 0..4 { for ii in 0..4 { if (io*4+ii) < 16 {
    //   out[((io*4+ii)/4)*4 + (io*4+ii)%4] = in[(io*4+ii)/4*4 + ii] * 2 } } }
    let mut nest = LoopNest::new("t");
    let inp = nest.add_buffer(Buffer::new("in", &[16], BufferScope::Input));
    let out = nest.add_buffer(Buffer::new("out", &[16], BufferScope::Output));
    nest.params = vec![inp, out];
    let io = add_loop(&mut nest, "io", 4);
    let ii = add_loop(&mut nest, "ii", 4);
    let c4 = nest.int(4);
    let c16 = nest.int(16);
    let io4 = raw(&mut nest, BinOp::Mul, io, c4);
    let f = raw(&mut nest, BinOp::Add, io4, ii);
    let d = raw(&mut nest, BinOp::Div, f, c4);
    let d4 = raw(&mut nest, BinOp::Mul, d, c4);
    let m = raw(&mut nest, BinOp::Mod, f, c4);
    let store_idx = raw(&mut nest, BinOp::Add, d4, m);
    let load_idx = raw(&mut nest, BinOp::Add, d4, ii);
    let x = nest.node(Node::Load(inp, load_idx));
    let two = nest.float(2.0);
    let v = nest.node(Node::Binary(BinOp::Mul, x, two));
    let cond = raw(&mut nest, BinOp::Lt, f, c16);
    let st = nest.add_stmt(Stmt::Store {
        buf: out,
        index: store_idx,
        value: v,
    });
    let guard = nest.add_stmt(Stmt::If {
        cond,
        body: vec![st],
    });
    let fi = nest.add_stmt(Stmt::For {
        lp: LoopId(1),
        body: vec![guard],
        auto_unroll_max_step: None,
    });
    let fo = nest.add_stmt(Stmt::For {
        lp: LoopId(0),
        body: vec![fi],
        auto_unroll_max_step: None,
    });
    nest.body = vec![fo];

    let input: Vec<f32> = (0..16).map(|v| v as f32).collect();
    let mut before = vec![input.clone(), vec![0.0; 16]];
    interp::run(&nest, &mut before).expect("runs");

    simplify_nest(&mut nest);
    let text = nest.to_string();
    assert_eq!(
        text,
        "kernel t(in: in f32[16], out: out f32[16]) {\n  for io in 0..4 {\n    for ii in 0..4 {\n      \
         out[((io * 4) + ii)] = (in[((io * 4) + ii)] * 2.0)\n    }\n  }\n}\n"
    );
    let mut after = vec![input, vec![0.0; 16]];
    interp::run(&nest, &mut after).expect("runs");
    assert_eq!(before, after);
}

#[test]
fn simplify_nest_drops_false_guards_and_keeps_undecided_ones() {
    let mut nest = LoopNest::new("t");
    let out = nest.add_buffer(Buffer::new("out", &[8], BufferScope::Output));
    nest.params = vec![out];
    let i = add_loop(&mut nest, "i", 8);
    let c8 = nest.int(8);
    let c5 = nest.int(5);
    let never = raw(&mut nest, BinOp::Le, c8, i);
    let sometimes = raw(&mut nest, BinOp::Lt, i, c5);
    let one = nest.float(1.0);
    let two = nest.float(2.0);
    let s1 = nest.add_stmt(Stmt::Store {
        buf: out,
        index: i,
        value: one,
    });
    let s2 = nest.add_stmt(Stmt::Store {
        buf: out,
        index: i,
        value: two,
    });
    let g1 = nest.add_stmt(Stmt::If {
        cond: sometimes,
        body: vec![s1],
    });
    let g2 = nest.add_stmt(Stmt::If {
        cond: never,
        body: vec![s2],
    });
    let f = nest.add_stmt(Stmt::For {
        lp: LoopId(0),
        body: vec![g1, g2],
        auto_unroll_max_step: None,
    });
    nest.body = vec![f];
    simplify_nest(&mut nest);
    assert_eq!(
        nest.to_string(),
        "kernel t(out: out f32[8]) {\n  for i in 0..8 {\n    if (i < 5) {\n      out[i] = 1.0\n    }\n  }\n}\n"
    );
}

/// A random integer expression over three loop variables.
#[derive(Clone, Debug)]
enum Gen {
    Var(u32),
    Const(i64),
    Bin(BinOp, Box<Gen>, Box<Gen>),
    /// Division or modulo by a positive constant.
    DivC(bool, Box<Gen>, i64),
}

fn gen_expr() -> impl Strategy<Value = Gen> {
    let leaf = prop_oneof![
        (0u32..3).prop_map(Gen::Var),
        (-3i64..17).prop_map(Gen::Const),
        prop_oneof![Just(2i64), Just(4), Just(8), Just(16)].prop_map(Gen::Const),
    ];
    leaf.prop_recursive(5, 24, 2, |inner| {
        prop_oneof![
            (
                prop_oneof![
                    Just(BinOp::Add),
                    Just(BinOp::Sub),
                    Just(BinOp::Mul),
                    Just(BinOp::Min),
                    Just(BinOp::Max)
                ],
                inner.clone(),
                inner.clone()
            )
                .prop_map(|(op, a, b)| Gen::Bin(op, Box::new(a), Box::new(b))),
            (
                any::<bool>(),
                inner,
                prop_oneof![1i64..9, Just(16), Just(32)]
            )
                .prop_map(|(d, a, c)| Gen::DivC(d, Box::new(a), c)),
        ]
    })
}

fn build(nest: &mut LoopNest, g: &Gen) -> ExprId {
    match g {
        Gen::Var(v) => nest.var(LoopId(*v)),
        Gen::Const(c) => nest.int(*c),
        Gen::Bin(op, a, b) => {
            let (a, b) = (build(nest, a), build(nest, b));
            raw(nest, *op, a, b)
        }
        Gen::DivC(div, a, c) => {
            let a = build(nest, a);
            let c = nest.int(*c);
            raw(nest, if *div { BinOp::Div } else { BinOp::Mod }, a, c)
        }
    }
}

fn nest_with_loops(extents: [i64; 3]) -> LoopNest {
    let mut nest = LoopNest::new("p");
    for (k, e) in extents.into_iter().enumerate() {
        add_loop(&mut nest, &format!("v{k}"), e);
    }
    nest
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The simplified expression equals the input on every value of the loop variables, and
    /// stays inside `int_bounds` of the input.
    #[test]
    fn simplify_preserves_values(
        g in gen_expr(),
        extents in [1i64..6, 1i64..9, 1i64..17],
        cmp in prop_oneof![Just(None), Just(Some(BinOp::Lt)), Just(Some(BinOp::Le))],
        bound in 0i64..40,
    ) {
        let mut nest = nest_with_loops(extents);
        let mut e = build(&mut nest, &g);
        let (lo, hi) = int_bounds(&nest, e).expect("integer expression");
        if let Some(op) = cmp {
            let b = nest.int(bound);
            e = raw(&mut nest, op, e, b);
        }
        let s = simplify(&mut nest, e);
        for vars in all_assignments(&nest) {
            let a = eval_expr(&nest, e, &vars);
            let b = eval_expr(&nest, s, &vars);
            prop_assert_eq!(&a, &b, "{} vs {} at {:?}", nest.expr_text(e), nest.expr_text(s), vars);
            if cmp.is_none() {
                if let Ok(Value::Int(v)) = a {
                    prop_assert!(lo <= v && v <= hi, "{} = {} outside [{}, {}]", nest.expr_text(e), v, lo, hi);
                }
            }
        }
    }
}

#[test]
fn a_sum_minus_some_of_its_terms_folds_at_construction() {
    // `(base + w + rw) - base`, as a region-local index: the common term cancels, so that
    // interval bounds see `w + rw` (in range) rather than `base + w + rw - base` (not).
    let mut nest = LoopNest::new("t");
    let n = add_loop(&mut nest, "n", 4);
    let w = add_loop(&mut nest, "w", 7);
    let rw = add_loop(&mut nest, "rw", 3);
    let two = nest.int(2);
    let seven = nest.int(7);
    let m = nest.binary(BinOp::Mod, n, two);
    let base = nest.mul(m, seven);
    let bw = nest.add(base, w);
    let a = nest.add(bw, rw);
    let d = nest.binary(BinOp::Sub, a, base);
    let want = nest.add(w, rw);
    assert_eq!(d, want, "{}", nest.expr_text(d));
    assert_eq!(int_bounds(&nest, d), Some((0, 8)));
    // A sum minus a sum of some of its terms; nothing in common leaves the node.
    let wrw = nest.add(w, rw);
    let base_rw = nest.add(base, rw);
    let d2 = nest.binary(BinOp::Sub, a, base_rw);
    assert_eq!(d2, w);
    let partly = nest.binary(BinOp::Sub, bw, wrw);
    let unfolded = raw(&mut nest, BinOp::Sub, bw, wrw);
    assert_equivalent(&nest, partly, unfolded);
    let kept = nest.binary(BinOp::Sub, bw, rw);
    assert!(matches!(nest.get(kept), Node::Binary(BinOp::Sub, _, _)));
    // Products by constants are expanded: ((w*2 + rw)*4 + n) - (w*2)*4 = rw*4 + n.
    let w2 = nest.mul(w, two);
    let w2rw = nest.add(w2, rw);
    let four = nest.int(4);
    let x = nest.mul(w2rw, four);
    let x = nest.add(x, n);
    let w8 = nest.mul(w2, four);
    let d3 = nest.binary(BinOp::Sub, x, w8);
    assert_eq!(int_bounds(&nest, d3), Some((0, 11)));
    let unfolded = raw(&mut nest, BinOp::Sub, x, w8);
    assert_equivalent(&nest, d3, unfolded);
    let unfolded = raw(&mut nest, BinOp::Sub, a, base);
    assert_equivalent(&nest, d, unfolded);
}

/// A fused reduction loop `f` over (rw, rc) split back as `f / C` and `f % C`: indices where
/// the pair is contiguous fold to an affine `f * s`, both when the nest is built and in the
/// e-graph, and the results are equal to the originals on every value.
#[test]
fn fused_div_mod_pairs_fold_to_the_fused_variable() {
    let mut nest = LoopNest::new("k");
    let f = add_loop(&mut nest, "f", 12);
    let w = add_loop(&mut nest, "w", 3);
    let c = nest.int(4);
    let d = nest.binary(BinOp::Div, f, c);
    let m = nest.binary(BinOp::Mod, f, c);
    // Construction: (f / 4) * 4 + f % 4 → f.
    let dc = nest.mul(d, c);
    let e = nest.add(dc, m);
    assert_eq!(nest.expr_text(e), "f");
    // Input row: ((f / 4) + w) * 4 + f % 4 → w * 4 + f (either operand order).
    let dw = nest.add(d, w);
    let dw4 = nest.mul(dw, c);
    let e = nest.add(dw4, m);
    assert_eq!(nest.expr_text(e), "((w * 4) + f)");
    let e = nest.add(m, dw4);
    assert_eq!(nest.expr_text(e), "((w * 4) + f)");
    // Weight: (((f / 4) * 4 + f % 4) ... ) * 8 with a stride: (f/4)*32 + (f%4)*8 → f*8.
    let (c32, c8) = (nest.int(32), nest.int(8));
    let d32 = nest.mul(d, c32);
    let m8 = nest.mul(m, c8);
    let e = nest.add(d32, m8);
    assert_eq!(nest.expr_text(e), "(f * 8)");
    // Not a pair: the coefficients do not match.
    let d8 = nest.mul(d, c8);
    let e = nest.add(d8, m8);
    assert_eq!(nest.expr_text(e), "(((f / 4) * 8) + ((f % 4) * 8))");

    // The e-graph rules, on raw (unfolded) nodes.
    let d32 = raw(&mut nest, BinOp::Mul, d, c32);
    let m8 = raw(&mut nest, BinOp::Mul, m, c8);
    let e = raw(&mut nest, BinOp::Add, d32, m8);
    assert_eq!(simplified(&mut nest, e), "(f * 8)");
    let e = raw(&mut nest, BinOp::Add, m8, d32);
    assert_eq!(simplified(&mut nest, e), "(f * 8)");
    let dw = raw(&mut nest, BinOp::Add, d, w);
    let dw4 = raw(&mut nest, BinOp::Mul, dw, c);
    let e = raw(&mut nest, BinOp::Add, dw4, m);
    let s = simplified(&mut nest, e);
    assert!(!s.contains('/') && !s.contains('%'), "{s}");
}
