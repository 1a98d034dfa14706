//! Matrix products: matmul, batched matmul (GMM), dense with bias, and the
//! transpose + batched matmul subgraph (TBG).

use super::{expect_rank, invalid};
use tessel_ir::dag::{ComputeDag, DagBuilder, Reducer, Tensor};
use tessel_ir::IrError;

/// `te_workload.matmul`: `C[i, j] = sum_k A[i, k] * B[k, j]` for `A (n, k)`, `B (k, m)`.
pub fn matmul(b: &mut DagBuilder, a: &Tensor, bm: &Tensor) -> Result<Tensor, IrError> {
    let op = "C";
    expect_rank(op, "A", a, 2)?;
    expect_rank(op, "B", bm, 2)?;
    if a.shape[1] != bm.shape[0] {
        return Err(invalid(
            op,
            format!("inner dimensions differ: A {:?}, B {:?}", a.shape, bm.shape),
        ));
    }
    let name = b.unique_name(op);
    Ok(b.reduce(
        &name,
        &[("i", a.shape[0]), ("j", bm.shape[1])],
        &[("k", a.shape[1])],
        Reducer::Sum,
        |ax| a.at([ax[0].clone(), ax[2].clone()]) * bm.at([ax[2].clone(), ax[1].clone()]),
    ))
}

/// `te_workload.batch_matmul_nkkm` (GMM): `Z[b, i, j] = sum_k X[b, i, k] * Y[b, k, j]` for
/// `X (B, N, K)`, `Y (B, K, M)`.
pub fn batch_matmul_nkkm(b: &mut DagBuilder, x: &Tensor, y: &Tensor) -> Result<Tensor, IrError> {
    let op = "Z";
    expect_rank(op, "X", x, 3)?;
    expect_rank(op, "Y", y, 3)?;
    if x.shape[0] != y.shape[0] || x.shape[2] != y.shape[1] {
        return Err(invalid(
            op,
            format!("X {:?} and Y {:?} do not match", x.shape, y.shape),
        ));
    }
    let name = b.unique_name(op);
    Ok(b.reduce(
        &name,
        &[("b", x.shape[0]), ("i", x.shape[1]), ("j", y.shape[2])],
        &[("k", x.shape[2])],
        Reducer::Sum,
        |ax| {
            x.at([ax[0].clone(), ax[1].clone(), ax[3].clone()])
                * y.at([ax[0].clone(), ax[3].clone(), ax[2].clone()])
        },
    ))
}

/// `topi.nn.dense`: `T_matmul_NT[i0, i1] = sum_k data[i0, k] * weight[i1, k]` for
/// `data (batch, in)` and `weight (out, in)` (not transposed); with a bias, TVM adds the
/// stages `compute[j] = bias[j]` and `T_add[i, j] = T_matmul_NT[i, j] + compute[j]`.
pub fn dense(
    b: &mut DagBuilder,
    data: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
) -> Result<Tensor, IrError> {
    let op = "T_matmul_NT";
    expect_rank(op, "data", data, 2)?;
    expect_rank(op, "weight", weight, 2)?;
    if data.shape[1] != weight.shape[1] {
        return Err(invalid(
            op,
            format!(
                "data {:?} and weight {:?} (out, in) do not match",
                data.shape, weight.shape
            ),
        ));
    }
    let (n, out) = (data.shape[0], weight.shape[0]);
    let name = b.unique_name(op);
    let mm = b.reduce(
        &name,
        &[("i0", n), ("i1", out)],
        &[("k", data.shape[1])],
        Reducer::Sum,
        |ax| data.at([ax[0].clone(), ax[2].clone()]) * weight.at([ax[1].clone(), ax[2].clone()]),
    );
    let Some(bias) = bias else { return Ok(mm) };
    if bias.shape != [out] {
        return Err(invalid(
            "T_add",
            format!("bias must have shape [{out}], got {:?}", bias.shape),
        ));
    }
    let copy_name = b.unique_name("compute");
    let copy = b.compute(&copy_name, &[("i0", out)], |ax| bias.at([ax[0].clone()]));
    let add_name = b.unique_name("T_add");
    Ok(b.compute(&add_name, &[("ax0", n), ("ax1", out)], |ax| {
        mm.at([ax[0].clone(), ax[1].clone()]) + copy.at([ax[1].clone()])
    }))
}

/// `te_workload.transpose_batch_matmul` (TBG): `query` and `value` of shape
/// `(batch, seq, heads, dim)` are transposed to `query_T (batch, heads, seq, dim)` and
/// `value_T (batch, heads, dim, seq)`, then
/// `C[b, h, i, j] = sum_k query_T[b, h, i, k] * value_T[b, h, k, j]`.
pub fn transpose_batch_matmul(
    b: &mut DagBuilder,
    query: &Tensor,
    value: &Tensor,
) -> Result<Tensor, IrError> {
    let op = "C";
    expect_rank(op, "query", query, 4)?;
    expect_rank(op, "value", value, 4)?;
    if query.shape != value.shape {
        return Err(invalid(
            op,
            format!("query {:?} and value {:?} differ", query.shape, value.shape),
        ));
    }
    let (bt, seq, heads, dim) = (
        query.shape[0],
        query.shape[1],
        query.shape[2],
        query.shape[3],
    );
    let qn = b.unique_name("query_T");
    let q_t = b.compute(
        &qn,
        &[("b", bt), ("h", heads), ("l", seq), ("d", dim)],
        |ax| query.at([ax[0].clone(), ax[2].clone(), ax[1].clone(), ax[3].clone()]),
    );
    let vn = b.unique_name("value_T");
    let v_t = b.compute(
        &vn,
        &[("b", bt), ("h", heads), ("d", dim), ("l", seq)],
        |ax| value.at([ax[0].clone(), ax[3].clone(), ax[1].clone(), ax[2].clone()]),
    );
    let name = b.unique_name(op);
    Ok(b.reduce(
        &name,
        &[("b", bt), ("h", heads), ("i", seq), ("j", seq)],
        &[("k", dim)],
        Reducer::Sum,
        |ax| {
            q_t.at([ax[0].clone(), ax[1].clone(), ax[2].clone(), ax[4].clone()])
                * v_t.at([ax[0].clone(), ax[1].clone(), ax[4].clone(), ax[3].clone()])
        },
    ))
}

/// `te_workload.matmul(n, m, k)`: placeholders `A (n, k)`, `B (k, m)`, output `C (n, m)`.
pub fn matmul_dag(n: i64, m: i64, k: i64) -> Result<ComputeDag, IrError> {
    let mut b = DagBuilder::new();
    let a = b.placeholder("A", &[n, k]);
    let bm = b.placeholder("B", &[k, m]);
    matmul(&mut b, &a, &bm)?;
    b.build()
}

/// `te_workload.batch_matmul_nkkm(B, N, M, K)` — note the argument order, M before K:
/// placeholders `X (B, N, K)`, `Y (B, K, M)`, output `Z (B, N, M)`.
pub fn batch_matmul_nkkm_dag(batch: i64, n: i64, m: i64, k: i64) -> Result<ComputeDag, IrError> {
    let mut b = DagBuilder::new();
    let x = b.placeholder("X", &[batch, n, k]);
    let y = b.placeholder("Y", &[batch, k, m]);
    batch_matmul_nkkm(&mut b, &x, &y)?;
    b.build()
}

/// `topi.nn.dense` with bias: placeholders `data (n, in_dim)`, `weight (out_dim, in_dim)`,
/// `bias (out_dim,)`, output `T_add (n, out_dim)`.
pub fn dense_dag(n: i64, in_dim: i64, out_dim: i64) -> Result<ComputeDag, IrError> {
    let mut b = DagBuilder::new();
    let data = b.placeholder("data", &[n, in_dim]);
    let weight = b.weight("weight", &[out_dim, in_dim]);
    let bias = b.weight("bias", &[out_dim]);
    dense(&mut b, &data, &weight, Some(&bias))?;
    b.build()
}

/// `te_workload.transpose_batch_matmul(batch, seq_len, n_head, n_dim)`: placeholders
/// `query` and `value`, output `C (batch, n_head, seq_len, seq_len)`.
pub fn transpose_batch_matmul_dag(
    batch: i64,
    seq_len: i64,
    n_head: i64,
    n_dim: i64,
) -> Result<ComputeDag, IrError> {
    let mut b = DagBuilder::new();
    let shape = [batch, seq_len, n_head, n_dim];
    let q = b.placeholder("query", &shape);
    let v = b.placeholder("value", &shape);
    transpose_batch_matmul(&mut b, &q, &v)?;
    b.build()
}
