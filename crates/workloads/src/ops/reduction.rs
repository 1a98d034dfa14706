//! Row reductions: the matrix norm (NRM) and softmax.

use super::expect_rank;
use tessel_ir::dag::{ComputeDag, DagBuilder, Reducer, Tensor};
use tessel_ir::IrError;

/// `te_workload.norm_bmn` (NRM): `C[b] = sum_{i,j} A[b,i,j] * A[b,i,j]`, then
/// `D[b] = sqrt(C[b])` (the Frobenius norm of each matrix).
pub fn norm_bmn(b: &mut DagBuilder, a: &Tensor) -> Result<Tensor, IrError> {
    expect_rank("C", "A", a, 3)?;
    let cn = b.unique_name("C");
    let c = b.reduce(
        &cn,
        &[("b", a.shape[0])],
        &[("i", a.shape[1]), ("j", a.shape[2])],
        Reducer::Sum,
        |ax| {
            let read = || a.at([ax[0].clone(), ax[1].clone(), ax[2].clone()]);
            read() * read()
        },
    );
    let dn = b.unique_name("D");
    Ok(b.compute(&dn, &[("b", a.shape[0])], |ax| c.at([ax[0].clone()]).sqrt()))
}

/// `topi.nn.softmax(A, axis=1)` on a 2-D tensor, as TVM's four stages:
/// `T_softmax_maxelem[i0] = max_k A[i0, k]`,
/// `T_softmax_exp[i0, i1] = exp(A[i0, i1] - T_softmax_maxelem[i0])`,
/// `T_softmax_expsum[i0] = sum_k T_softmax_exp[i0, k]`,
/// `T_softmax_norm[i0, i1] = T_softmax_exp[i0, i1] / T_softmax_expsum[i0]`.
pub fn softmax_mn(b: &mut DagBuilder, a: &Tensor) -> Result<Tensor, IrError> {
    expect_rank("T_softmax_norm", "A", a, 2)?;
    let (m, n) = (a.shape[0], a.shape[1]);
    let name = b.unique_name("T_softmax_maxelem");
    let maxelem = b.reduce(&name, &[("i0", m)], &[("k", n)], Reducer::Max, |ax| {
        a.at([ax[0].clone(), ax[1].clone()])
    });
    let name = b.unique_name("T_softmax_exp");
    let exp = b.compute(&name, &[("i0", m), ("i1", n)], |ax| {
        (a.at([ax[0].clone(), ax[1].clone()]) - maxelem.at([ax[0].clone()])).exp()
    });
    let name = b.unique_name("T_softmax_expsum");
    let expsum = b.reduce(&name, &[("i0", m)], &[("k", n)], Reducer::Sum, |ax| {
        exp.at([ax[0].clone(), ax[1].clone()])
    });
    let name = b.unique_name("T_softmax_norm");
    Ok(b.compute(&name, &[("i0", m), ("i1", n)], |ax| {
        exp.at([ax[0].clone(), ax[1].clone()]) / expsum.at([ax[0].clone()])
    }))
}

/// `te_workload.norm_bmn(B, M, N)`: placeholder `A (B, M, N)`, output `D (B,)`.
pub fn norm_bmn_dag(batch: i64, m: i64, n: i64) -> Result<ComputeDag, IrError> {
    let mut b = DagBuilder::new();
    let a = b.placeholder("A", &[batch, m, n]);
    norm_bmn(&mut b, &a)?;
    b.build()
}

/// `te_workload.softmax_mn(m, n)`: placeholder `A (m, n)`, output `T_softmax_norm`.
pub fn softmax_mn_dag(m: i64, n: i64) -> Result<ComputeDag, IrError> {
    let mut b = DagBuilder::new();
    let a = b.placeholder("A", &[m, n]);
    softmax_mn(&mut b, &a)?;
    b.build()
}
