//! Tests of the loop-nest interpreter on hand-built loop nests.

use tessel_ir::expr::{BinOp, UnOp};
use tessel_ir::interp::{self, eval_expr, Value};
use tessel_ir::loop_nest::{
    Buffer, BufferId, BufferScope, ExprId, LoopId, LoopKind, LoopNest, Node, Stmt, StmtId,
};
use tessel_ir::IrError;

fn buffer(nest: &mut LoopNest, name: &str, shape: &[i64], scope: BufferScope) -> BufferId {
    nest.add_buffer(Buffer::new(name, shape, scope))
}

fn lp(nest: &mut LoopNest, name: &str, extent: i64, kind: LoopKind) -> (LoopId, ExprId) {
    let l = nest.add_loop(tessel_ir::loop_nest::Loop {
        name: name.into(),
        extent,
        kind,
    });
    let v = nest.var(l);
    (l, v)
}

fn for_(nest: &mut LoopNest, l: LoopId, body: Vec<StmtId>) -> StmtId {
    nest.add_stmt(Stmt::For {
        lp: l,
        body,
        auto_unroll_max_step: None,
    })
}

fn store(nest: &mut LoopNest, buf: BufferId, index: ExprId, value: ExprId) -> StmtId {
    nest.add_stmt(Stmt::Store { buf, index, value })
}

fn load(nest: &mut LoopNest, buf: BufferId, index: ExprId) -> ExprId {
    nest.node(Node::Load(buf, index))
}

fn c(nest: &mut LoopNest, v: i64) -> ExprId {
    nest.int(v)
}

/// `C[M, N] = A[M, K] @ B[K, N]` with an init store and a reduction loop; the outer loop is
/// parallel and the inner one vectorized, which the interpreter runs sequentially.
fn matmul_nest(m: i64, n: i64, k: i64) -> LoopNest {
    let mut nest = LoopNest::new("matmul");
    let a = buffer(&mut nest, "A", &[m, k], BufferScope::Input);
    let b = buffer(&mut nest, "B", &[k, n], BufferScope::Input);
    let cb = buffer(&mut nest, "C", &[m, n], BufferScope::Output);
    nest.params = vec![a, b, cb];
    let (li, i) = lp(&mut nest, "i", m, LoopKind::Parallel);
    let (lj, j) = lp(&mut nest, "j", n, LoopKind::Vectorized);
    let (lk, kk) = lp(&mut nest, "k", k, LoopKind::Unrolled);
    let nn = c(&mut nest, n);
    let kn = c(&mut nest, k);
    let i_n = nest.mul(i, nn);
    let cidx = nest.add(i_n, j);
    let zero = nest.float(0.0);
    let init = store(&mut nest, cb, cidx, zero);
    let i_k = nest.mul(i, kn);
    let aidx = nest.add(i_k, kk);
    let k_n = nest.mul(kk, nn);
    let bidx = nest.add(k_n, j);
    let la = load(&mut nest, a, aidx);
    let lb = load(&mut nest, b, bidx);
    let lc = load(&mut nest, cb, cidx);
    let prod = nest.binary(BinOp::Mul, la, lb);
    let sum = nest.binary(BinOp::Add, lc, prod);
    let upd = store(&mut nest, cb, cidx, sum);
    let fk = for_(&mut nest, lk, vec![upd]);
    let fj = for_(&mut nest, lj, vec![init, fk]);
    let fi = for_(&mut nest, li, vec![fj]);
    nest.body = vec![fi];
    nest
}

#[test]
fn matmul_with_init_and_reduction() {
    let (m, n, k) = (2usize, 3usize, 4usize);
    let nest = matmul_nest(m as i64, n as i64, k as i64);
    let a: Vec<f32> = (0..m * k).map(|x| x as f32 * 0.5 - 1.0).collect();
    let b: Vec<f32> = (0..k * n).map(|x| (x % 5) as f32 - 2.0).collect();
    let mut expected = vec![0.0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f32;
            for kk in 0..k {
                acc += a[i * k + kk] * b[kk * n + j];
            }
            expected[i * n + j] = acc;
        }
    }
    let mut args = vec![a, b, vec![f32::NAN; m * n]];
    interp::run(&nest, &mut args).expect("runs");
    assert_eq!(args[2], expected);
    // A worked value: C[0][0] = sum_k A[0][k] * B[k][0]
    //   = (-1.0)(-2.0) + (-0.5)(1.0) + (0.0)(-1.0) + (0.5)(2.0) = 2.5.
    assert_eq!(args[2][0], 2.5);
}

#[test]
fn guarded_non_dividing_split() {
    // out[f] = in[f] + 1 for f in 0..10, split by 4: io in 0..3, ii in 0..4, guarded.
    let mut nest = LoopNest::new("split");
    let inp = buffer(&mut nest, "in", &[10], BufferScope::Input);
    let out = buffer(&mut nest, "out", &[10], BufferScope::Output);
    nest.params = vec![inp, out];
    let (lo, io) = lp(&mut nest, "io", 3, LoopKind::Serial);
    let (li, ii) = lp(&mut nest, "ii", 4, LoopKind::Serial);
    let four = c(&mut nest, 4);
    let ten = c(&mut nest, 10);
    let base = nest.mul(io, four);
    let f = nest.add(base, ii);
    let cond = nest.binary(BinOp::Lt, f, ten);
    let x = load(&mut nest, inp, f);
    let one = nest.float(1.0);
    let v = nest.binary(BinOp::Add, x, one);
    let st = store(&mut nest, out, f, v);
    let guard = nest.add_stmt(Stmt::If {
        cond,
        body: vec![st],
    });
    let fi = for_(&mut nest, li, vec![guard]);
    let fo = for_(&mut nest, lo, vec![fi]);
    nest.body = vec![fo];
    let input: Vec<f32> = (0..10).map(|x| x as f32).collect();
    let mut args = vec![input, vec![0.0; 10]];
    interp::run(&nest, &mut args).expect("the guard keeps accesses in bounds");
    let expected: Vec<f32> = (1..=10).map(|x| x as f32).collect();
    assert_eq!(args[1], expected);

    // Without the guard, the 11th iteration writes out[10].
    nest.stmts[guard.index()] = Stmt::Store {
        buf: out,
        index: f,
        value: v,
    };
    let mut args = vec![vec![0.0; 10], vec![0.0; 10]];
    let e = interp::run(&nest, &mut args).expect_err("out of bounds");
    let IrError::Eval(msg) = e else {
        panic!("expected an Eval error")
    };
    assert!(msg.contains("in[10]"), "{msg}");
}

#[test]
fn local_alloc_buffer() {
    // for i in 0..4 { alloc t[2]; t[0] = in[i] * 2; t[1] = t[0] + 1; out[i] = t[1] }
    let mut nest = LoopNest::new("local");
    let inp = buffer(&mut nest, "in", &[4], BufferScope::Input);
    let out = buffer(&mut nest, "out", &[4], BufferScope::Output);
    let t = buffer(&mut nest, "t", &[2], BufferScope::Local);
    nest.params = vec![inp, out];
    let (li, i) = lp(&mut nest, "i", 4, LoopKind::Serial);
    let z = c(&mut nest, 0);
    let o = c(&mut nest, 1);
    let x = load(&mut nest, inp, i);
    let two = nest.float(2.0);
    let one = nest.float(1.0);
    let x2 = nest.binary(BinOp::Mul, x, two);
    let s0 = store(&mut nest, t, z, x2);
    let t0 = load(&mut nest, t, z);
    let t0p = nest.binary(BinOp::Add, t0, one);
    let s1 = store(&mut nest, t, o, t0p);
    let t1 = load(&mut nest, t, o);
    let s2 = store(&mut nest, out, i, t1);
    let alloc = nest.add_stmt(Stmt::Alloc {
        buf: t,
        body: vec![s0, s1, s2],
    });
    let fi = for_(&mut nest, li, vec![alloc]);
    nest.body = vec![fi];
    let mut args = vec![vec![1.0, 2.0, 3.0, 4.0], vec![0.0; 4]];
    interp::run(&nest, &mut args).expect("runs");
    assert_eq!(args[1], vec![3.0, 5.0, 7.0, 9.0]);

    // Reading t[1] before writing it shows NaN: every allocation starts as NaN.
    nest.stmts[alloc.index()] = Stmt::Alloc {
        buf: t,
        body: vec![s2, s0, s1],
    };
    interp::run(&nest, &mut args).expect("runs");
    assert!(args[1].iter().all(|v| v.is_nan()), "{:?}", args[1]);

    // Using t outside its allocation is an error, not a panic.
    nest.body = vec![s2];
    let e = interp::run(&nest, &mut args).expect_err("t is not allocated");
    assert!(e.to_string().contains("buffer t"), "{e}");
}

#[test]
fn global_temporary_between_two_stages() {
    // tmp[i] = in[i] * in[i]; out[i] = tmp[3 - i]
    let mut nest = LoopNest::new("two_stages");
    let inp = buffer(&mut nest, "in", &[4], BufferScope::Input);
    let out = buffer(&mut nest, "out", &[4], BufferScope::Output);
    let tmp = buffer(&mut nest, "tmp", &[4], BufferScope::Global);
    nest.params = vec![inp, out];
    let (l1, i) = lp(&mut nest, "i", 4, LoopKind::Serial);
    let (l2, j) = lp(&mut nest, "j", 4, LoopKind::Serial);
    let x = load(&mut nest, inp, i);
    let sq = nest.binary(BinOp::Mul, x, x);
    let s1 = store(&mut nest, tmp, i, sq);
    let three = c(&mut nest, 3);
    let rev = nest.binary(BinOp::Sub, three, j);
    let t = load(&mut nest, tmp, rev);
    let s2 = store(&mut nest, out, j, t);
    let f1 = for_(&mut nest, l1, vec![s1]);
    let f2 = for_(&mut nest, l2, vec![s2]);
    nest.body = vec![f1, f2];
    let mut args = vec![vec![1.0, 2.0, 3.0, 4.0], vec![0.0; 4]];
    interp::run(&nest, &mut args).expect("runs");
    assert_eq!(args[1], vec![16.0, 9.0, 4.0, 1.0]);
}

#[test]
fn out_of_bounds_load_and_store_are_errors() {
    // out[i] = in[i + 1] for i in 0..4: the last load reads in[4].
    let mut nest = LoopNest::new("oob");
    let inp = buffer(&mut nest, "in", &[4], BufferScope::Input);
    let out = buffer(&mut nest, "out", &[4], BufferScope::Output);
    nest.params = vec![inp, out];
    let (li, i) = lp(&mut nest, "i", 4, LoopKind::Serial);
    let one = c(&mut nest, 1);
    let ip1 = nest.add(i, one);
    let x = load(&mut nest, inp, ip1);
    let s = store(&mut nest, out, i, x);
    let f = for_(&mut nest, li, vec![s]);
    nest.body = vec![f];
    let mut args = vec![vec![1.0, 2.0, 3.0, 4.0], vec![0.0; 4]];
    let e = interp::run(&nest, &mut args).expect_err("in[4] is out of bounds");
    assert!(
        matches!(&e, IrError::Eval(m) if m.contains("load in[4]")),
        "{e}"
    );
    // The first three iterations ran.
    assert_eq!(args[1], vec![2.0, 3.0, 4.0, 0.0]);

    // A negative store index: out[i - 1].
    let m1 = c(&mut nest, -1);
    let im1 = nest.add(i, m1);
    let x = load(&mut nest, inp, i);
    nest.stmts[s.index()] = Stmt::Store {
        buf: out,
        index: im1,
        value: x,
    };
    let e = interp::run(&nest, &mut args).expect_err("out[-1]");
    assert!(
        matches!(&e, IrError::Eval(m) if m.contains("store out[-1]")),
        "{e}"
    );
}

#[test]
fn wrong_arguments_are_errors() {
    let nest = matmul_nest(2, 3, 4);
    let mut too_few = vec![vec![0.0; 8], vec![0.0; 12]];
    let e = interp::run(&nest, &mut too_few).expect_err("two arguments for three");
    assert!(e.to_string().contains("3 arguments, got 2"), "{e}");
    let mut wrong_len = vec![vec![0.0; 8], vec![0.0; 11], vec![0.0; 6]];
    let e = interp::run(&nest, &mut wrong_len).expect_err("B has 12 elements");
    let msg = e.to_string();
    assert!(
        msg.contains("(B)") && msg.contains("11") && msg.contains("12"),
        "{msg}"
    );
}

#[test]
fn select_evaluates_only_the_chosen_branch() {
    // out[i] = select(i < 2, in[i], select(2 <= i, -1.0, in[i + 100])): the far load is
    // out of bounds but never chosen.
    let mut nest = LoopNest::new("select");
    let inp = buffer(&mut nest, "in", &[4], BufferScope::Input);
    let out = buffer(&mut nest, "out", &[4], BufferScope::Output);
    nest.params = vec![inp, out];
    let (li, i) = lp(&mut nest, "i", 4, LoopKind::Serial);
    let two = c(&mut nest, 2);
    let hundred = c(&mut nest, 100);
    let cond = nest.binary(BinOp::Lt, i, two);
    let inb = load(&mut nest, inp, i);
    let far = nest.add(i, hundred);
    let oob = load(&mut nest, inp, far);
    let minus = nest.float(-1.0);
    let ge = nest.binary(BinOp::Le, two, i);
    let inner = nest.node(Node::Select(ge, minus, oob));
    let v = nest.node(Node::Select(cond, inb, inner));
    let s = store(&mut nest, out, i, v);
    let f = for_(&mut nest, li, vec![s]);
    nest.body = vec![f];
    let mut args = vec![vec![5.0, 6.0, 7.0, 8.0], vec![0.0; 4]];
    interp::run(&nest, &mut args).expect("the far load is never evaluated");
    assert_eq!(args[1], vec![5.0, 6.0, -1.0, -1.0]);
}

#[test]
fn integer_division_is_floor_division() {
    let mut nest = LoopNest::new("div");
    let (_, i) = lp(&mut nest, "i", 8, LoopKind::Serial);
    let three = c(&mut nest, 3);
    let four = c(&mut nest, 4);
    let shifted = nest.binary(BinOp::Sub, i, four);
    let d = nest.binary(BinOp::Div, shifted, three);
    let m = nest.binary(BinOp::Mod, shifted, three);
    for (iv, q, r) in [(0, -2, 2), (1, -1, 0), (3, -1, 2), (4, 0, 0), (7, 1, 0)] {
        assert_eq!(
            eval_expr(&nest, d, &[iv]).expect("evaluates"),
            Value::Int(q)
        );
        assert_eq!(
            eval_expr(&nest, m, &[iv]).expect("evaluates"),
            Value::Int(r)
        );
    }
    let f = nest.node(Node::Unary(UnOp::ToFloat, d));
    assert_eq!(
        eval_expr(&nest, f, &[0]).expect("evaluates"),
        Value::Float(-2.0)
    );
    let zero = c(&mut nest, 0);
    let by_zero = nest.node(Node::Binary(BinOp::Div, i, zero));
    assert!(eval_expr(&nest, by_zero, &[1]).is_err());
    let big = c(&mut nest, i64::MAX);
    let overflow = nest.add(big, i);
    assert!(eval_expr(&nest, overflow, &[1]).is_err());
}
