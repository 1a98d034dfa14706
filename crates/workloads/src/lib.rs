//! `tessel-workloads`: the tensor programs Tessel is benchmarked on, built as [`tessel_ir`]
//! compute DAGs.
//!
//! This crate sits directly above `tessel-ir` and below everything that tunes, measures or
//! runs a workload:
//!
//! * [`ops`]: builders for the operators of Ansor's benchmarks and common networks
//!   (matmul, batch matmul, dense, conv1d/2d/3d, depthwise, grouped, dilated and transposed
//!   conv2d, pooling, softmax, layer norm, element-wise epilogues);
//! * the named workload registry and the `OP:key=value,...` spec syntax ([`lookup`],
//!   [`registry`], [`op_infos`], [`Workload`]); the measurement worker resolves the specs of
//!   the candidates it is sent through [`lookup`];
//! * [`networks`]: whole networks (ResNet-50, MobileNet-V2, BERT, a tiny CNN), their
//!   partition into tasks, their weights and a reference evaluator of a whole network.
//!
//! Errors are `tessel_ir`'s [`IrError`](tessel_ir::IrError): an invalid operator shape is
//! [`IrError::InvalidOp`](tessel_ir::IrError::InvalidOp), a bad spec
//! [`IrError::BadSpec`](tessel_ir::IrError::BadSpec) naming the bad part.
//!
//! ```
//! let w = tessel_workloads::lookup("gmm:b=1,n=16,m=16,k=16").unwrap();
//! assert_eq!(w.flop(), 2 * 16 * 16 * 16);
//! let dag = tessel_workloads::ops::matmul_dag(16, 16, 16).unwrap();
//! assert_eq!(dag.flop_count(), w.flop());
//! ```
#![warn(missing_docs)]

pub mod networks;
pub mod ops;
mod registry;

pub use registry::{
    lookup, lookup_with_batch, op_infos, registry, registry_names, registry_with_batch, OpInfo,
    Workload, MAX_VALUE, NETWORK_TASK_OP,
};
