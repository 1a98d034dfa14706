//! Whole networks: built-in network graphs and their partition into tasks.
//!
//! A [`Network`] is a petgraph DAG of [`Layer`]s (convolutions, dense, batch matmul,
//! pooling, softmax, layer norm, and element-wise epilogues), built in topological order
//! with a [`NetworkBuilder`] that infers and checks every shape. [`partition`] fuses
//! element-wise / injective layers into their producer as TVM Relay does before Ansor sees
//! the graph, and [`extract_tasks`] returns the distinct fused subgraphs as [`Task`]s: each
//! a [`ComputeDag`](tessel_ir::ComputeDag) the rest of Tessel tunes, with its weight (number of
//! occurrences), a stable name, and its workload spec when it is a single registry op.
//!
//! Built-in networks ([`lookup`], names in [`NAMES`]), NHWC, batch `N`:
//!
//! * `resnet50`: ResNet-50 v1.5 ([`resnet50`]) — 27 tasks (24 conv subgraphs over the 23
//!   conv shapes of WORKLOADS.md §6.1, max-pool, global average pool, dense);
//! * `mobilenet-v2`: MobileNet-V2 1.0 ([`mobilenet_v2`]);
//! * `bert-base`: the 12 encoder layers of BERT-base at sequence length 128 ([`bert`]).
//!
//! ```
//! use tessel_workloads::networks;
//! let net = networks::lookup("resnet50", 1).unwrap();
//! let tasks = networks::extract_tasks(&net).unwrap();
//! assert_eq!(tasks.len(), 27);
//! let convs: usize = tasks.iter().filter(|t| t.anchor_kind == "conv2d").map(|t| t.weight).sum();
//! assert_eq!(convs, 53);
//! ```

mod evaluate;
mod graph;
mod layers;
mod models;
mod standalone;
mod tasks;
mod weights;

pub use evaluate::{evaluate, random_inputs};
pub use graph::{LayerId, Network, NetworkBuilder, Node};
pub use layers::{
    broadcast, concat, embedding, erf, gelu, gelu_erf, hard_sigmoid, layer_norm, merge_heads,
    multiply, relu6, scale, sigmoid, slice, split_heads, tanh, transpose, BinaryOp, Layer, Pattern,
};
pub use models::{bert, mobilenet_v2, resnet50, tiny_cnn, BertConfig};
pub(crate) use standalone::{dag_of as subgraph_spec_dag, is_subgraph_spec};
pub use standalone::{subgraph_spec, task_subgraph_spec, SUBGRAPH_OP};
pub use tasks::{
    execution_order, extract_tasks, partition, subgraph_dag, subgraph_dag_bound, view_source,
    Binding, Subgraph, Task,
};
pub use weights::{layer_params, ConstTensor, Weights};

use tessel_ir::IrError;

/// Names of the built-in networks, in documentation order.
pub const NAMES: &[&str] = &["resnet50", "mobilenet-v2", "bert-base", "tiny-cnn"];

/// The built-in network `name` (one of [`NAMES`]; `resnet-50`, `mobilenet_v2`,
/// `mobilenetv2`, `bert` are accepted too, in any case) at batch size `batch`.
pub fn lookup(name: &str, batch: i64) -> Result<Network, IrError> {
    let key: String = name
        .trim()
        .to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
        .collect();
    match key.as_str() {
        "resnet50" | "resnet50v1.5" | "resnet50v15" => resnet50(batch),
        "mobilenetv2" => mobilenet_v2(batch),
        "bertbase" | "bert" => bert(BertConfig::base(batch)),
        "tinycnn" => tiny_cnn(batch),
        _ => Err(IrError::BadSpec {
            spec: name.to_string(),
            reason: format!(
                "unknown network `{name}`; known networks: {}",
                NAMES.join(", ")
            ),
        }),
    }
}
