//! Subgraph specs: a fused subgraph of any network written as a self-describing workload spec,
//! `subgraph:{...}`, that [`crate::lookup`] turns back into the same DAG without the network.
//!
//! Measurement workers know workloads only by spec. A task of a built-in network travels as
//! `NETWORK@BATCH/TASK`, but a task that only an imported model has (a squeeze-excite
//! gate, an erf GELU) has no such name; its subgraph spec carries the layers themselves:
//! the shapes of the subgraph's external inputs and, per layer, the [`Layer`] and which
//! inputs or earlier layers it reads. Weights stay implicit, as in every task.
//!
//! ```
//! use tessel_workloads::networks::{self, subgraph_spec};
//!
//! let net = networks::tiny_cnn(1).unwrap();
//! let g = &networks::partition(&net)[0];
//! let spec = subgraph_spec(&net, g).unwrap();
//! assert!(spec.starts_with("subgraph:"));
//! let w = tessel_workloads::lookup(&spec).unwrap();
//! assert_eq!(w.dag, networks::subgraph_dag(&net, g).unwrap());
//! assert_eq!(w.spec(), spec);
//! ```

use super::graph::{LayerId, Network, NetworkBuilder};
use super::layers::{Layer, Pattern};
use super::tasks::{partition, subgraph_dag, Subgraph, Task};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use tessel_ir::dag::ComputeDag;
use tessel_ir::IrError;

/// The op name of a [`crate::Workload`] made from a subgraph spec.
pub const SUBGRAPH_OP: &str = "subgraph";

/// What a subgraph spec starts with.
const PREFIX: &str = "subgraph:";

/// A subgraph without its network.
#[derive(Debug, Serialize, Deserialize)]
struct Description {
    /// Shapes of the external inputs, in the order the DAG's placeholders take them.
    inputs: Vec<Vec<i64>>,
    /// The layers, in the subgraph's order.
    layers: Vec<Entry>,
}

/// One layer of a [`Description`].
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    layer: Layer,
    reads: Vec<Read>,
}

/// What a layer reads: an external input or an earlier layer of the subgraph.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Read {
    Input(usize),
    Layer(usize),
}

/// The subgraph spec of `g` (a subgraph of `net`); looking it up gives `g`'s DAG (checked
/// here).
pub fn subgraph_spec(net: &Network, g: &Subgraph) -> Result<String, IrError> {
    let mut inputs: Vec<Vec<i64>> = Vec::new();
    let mut input_of: HashMap<LayerId, usize> = HashMap::new();
    let mut layers = Vec::with_capacity(g.layers.len());
    for &id in &g.layers {
        let reads = net
            .inputs(id)
            .into_iter()
            .map(|i| match g.layers.iter().position(|&l| l == i) {
                Some(k) => Read::Layer(k),
                None => Read::Input(*input_of.entry(i).or_insert_with(|| {
                    inputs.push(net.node(i).shape.clone());
                    inputs.len() - 1
                })),
            })
            .collect();
        layers.push(Entry {
            layer: net.node(id).layer.clone(),
            reads,
        });
    }
    let json =
        serde_json::to_string(&Description { inputs, layers }).map_err(|e| IrError::InvalidOp {
            op: net.node(g.anchor()).name.clone(),
            reason: format!("its subgraph cannot be written as a spec: {e}"),
        })?;
    let spec = format!("{PREFIX}{json}");
    let (want, got) = (subgraph_dag(net, g)?, dag_of(&spec)?);
    if want != got {
        return Err(IrError::InvalidOp {
            op: net.node(g.anchor()).name.clone(),
            reason: "its subgraph spec does not rebuild the same DAG".into(),
        });
    }
    Ok(spec)
}

/// The subgraph spec of `task` of `net` (its first occurrence's subgraph).
pub fn task_subgraph_spec(net: &Network, task: &Task) -> Result<String, IrError> {
    let anchor = task
        .occurrences
        .first()
        .and_then(|name| net.find(name))
        .ok_or_else(|| IrError::InvalidOp {
            op: task.name.clone(),
            reason: "the task has no occurrence in the network".into(),
        })?;
    let g = partition(net)
        .into_iter()
        .find(|g| g.anchor() == anchor)
        .ok_or_else(|| IrError::InvalidOp {
            op: task.name.clone(),
            reason: "no subgraph starts at its anchor".into(),
        })?;
    subgraph_spec(net, &g)
}

/// Whether `text` is a subgraph spec.
pub(crate) fn is_subgraph_spec(text: &str) -> bool {
    text.starts_with(PREFIX)
}

/// The DAG of subgraph spec `text`: its layers rebuilt on placeholders of its input shapes.
pub(crate) fn dag_of(text: &str) -> Result<ComputeDag, IrError> {
    let shown: String = text.chars().take(80).collect();
    let bad = |reason: String| IrError::BadSpec {
        spec: shown.clone(),
        reason,
    };
    let json = text
        .strip_prefix(PREFIX)
        .ok_or_else(|| bad(format!("a subgraph spec starts with `{PREFIX}`")))?;
    let d: Description =
        serde_json::from_str(json).map_err(|e| bad(format!("not a subgraph description: {e}")))?;
    if d.layers.is_empty() {
        return Err(bad("a subgraph has at least one layer".into()));
    }
    let mut b = NetworkBuilder::new("subgraph", d.inputs.first().map_or(1, |s| s[0].max(1)));
    let inputs: Vec<LayerId> = d
        .inputs
        .iter()
        .enumerate()
        .map(|(k, shape)| b.input(&format!("in{k}"), shape))
        .collect::<Result<_, _>>()?;
    let mut layers: Vec<LayerId> = Vec::with_capacity(d.layers.len());
    for (k, e) in d.layers.iter().enumerate() {
        if matches!(e.layer.pattern(), Pattern::Input | Pattern::View) {
            return Err(bad(format!(
                "layer {k} is an input or a view, which no subgraph holds"
            )));
        }
        let reads = e
            .reads
            .iter()
            .map(|r| match *r {
                Read::Input(i) => inputs.get(i).copied(),
                Read::Layer(l) if l < k => layers.get(l).copied(),
                Read::Layer(_) => None,
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                bad(format!(
                    "layer {k} reads an input or a layer that does not come before it"
                ))
            })?;
        layers.push(b.add(&format!("l{k}"), e.layer.clone(), &reads)?);
    }
    subgraph_dag(&b.build(), &Subgraph { layers })
}
