//! Partitioning a network into fused subgraphs, and task extraction.
//!
//! **Fusion** (TVM Relay's `FuseOps`, as Ansor gets its tasks): every complex layer
//! (convolution, dense, batch matmul, pooling, softmax, layer norm) starts a subgraph; an
//! element-wise or injective layer (bias, ReLU, ReLU6, GELU, residual add, scaling, head
//! split/merge) joins the subgraph of its first input when that input is computed in a
//! subgraph that accepts epilogues (not softmax or layer norm), nothing else reads it and it
//! is not a network output (so the intermediate never has to be written out); otherwise it
//! starts its own
//! subgraph. Reshapes are views: they belong to no subgraph, and their readers see a
//! placeholder of the new shape. Inside a task, Ansor's sketch rules then inline what is
//! strictly inlineable (bias, ReLU, add, ...).
//!
//! **Tasks** are the distinct subgraphs: two subgraphs are the same task exactly when their
//! [`ComputeDag`]s are equal (same canonical text, hence the same
//! [`ComputeDag::workload_key`]), and a task's weight is how often it occurs.

use super::graph::{LayerId, Network};
use super::layers::Pattern;
use std::collections::{HashMap, HashSet};
use tessel_ir::dag::{ComputeDag, DagBuilder, Tensor};
use tessel_ir::IrError;

/// One fused subgraph of a network: layers in topological order, the first one its anchor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subgraph {
    /// The layers, anchor first; every other layer reads the one before it.
    pub layers: Vec<LayerId>,
}

impl Subgraph {
    /// The first layer (a complex op, or the element-wise op that starts the subgraph).
    pub fn anchor(&self) -> LayerId {
        self.layers[0]
    }

    /// The layer whose output leaves the subgraph.
    pub fn output(&self) -> LayerId {
        self.layers[self.layers.len() - 1]
    }
}

/// A distinct subgraph of a network, to be tuned once and run `weight` times.
#[derive(Clone, Debug)]
pub struct Task {
    /// Stable name from the layers and shapes: the anchor's workload spec (or kind and
    /// shape) followed by `+epilogue` per fused layer, e.g.
    /// `c2d:n=1,h=56,w=56,ci=64,co=64,kernel=3,stride=1,pad=1+bias+relu`.
    pub name: String,
    /// The workload spec when the task is a single op of the registry
    /// (`maxpool:n=1,h=112,w=112,c=64,kernel=3,stride=2,pad=1`): `workloads::lookup` of it
    /// gives this very DAG.
    pub spec: Option<String>,
    /// Layer kinds joined by `+` (`conv2d+bias+add+relu`).
    pub kind: String,
    /// Kind of the anchor layer (`conv2d`, `dense`, ...): the similarity tag of the task
    /// scheduler.
    pub anchor_kind: &'static str,
    /// Number of occurrences in the network.
    pub weight: usize,
    /// The computation.
    pub dag: ComputeDag,
    /// Names of the anchor layers of the occurrences, in network order.
    pub occurrences: Vec<String>,
}

impl Task {
    /// Floating-point operations of one run ([`ComputeDag::flop_count`]).
    pub fn flop(&self) -> u64 {
        self.dag.flop_count()
    }

    /// The stable key of the computation ([`ComputeDag::workload_key`]).
    pub fn workload_key(&self) -> String {
        self.dag.workload_key()
    }
}

/// Splits `net` into fused subgraphs (see the module docs), in topological order of their
/// anchors. Every layer except inputs and reshapes is in exactly one subgraph.
pub fn partition(net: &Network) -> Vec<Subgraph> {
    let mut groups: Vec<Subgraph> = Vec::new();
    let mut group_of: Vec<Option<usize>> = vec![None; net.len()];
    // Outputs are written out: an output that other layers read ends its subgraph.
    let kept: HashSet<LayerId> = net
        .output_layers()
        .into_iter()
        .map(|o| view_source(net, o))
        .collect();
    for id in net.layers() {
        let layer = &net.node(id).layer;
        let joined = match layer.pattern() {
            Pattern::Input | Pattern::View => continue,
            Pattern::Anchor { .. } => None,
            Pattern::Epilogue => net.inputs(id).first().and_then(|&p| {
                let g = group_of[p.index()]?;
                let group = &groups[g];
                let accepts = match net.node(group.anchor()).layer.pattern() {
                    Pattern::Anchor { epilogues } => epilogues,
                    _ => true,
                };
                (accepts
                    && group.output() == p
                    && net.consumers(p).len() == 1
                    && !kept.contains(&p))
                .then_some(g)
            }),
        };
        let g = match joined {
            Some(g) => {
                groups[g].layers.push(id);
                g
            }
            None => {
                groups.push(Subgraph { layers: vec![id] });
                groups.len() - 1
            }
        };
        group_of[id.index()] = Some(g);
    }
    groups
}

/// The name, spec and kind of a subgraph (see [`Task`]).
fn describe(net: &Network, g: &Subgraph) -> (String, Option<String>, String) {
    let mut tokens = Vec::new();
    let mut kinds = Vec::new();
    let mut spec = None;
    for (k, &id) in g.layers.iter().enumerate() {
        let layer = &net.node(id).layer;
        let shapes: Vec<Vec<i64>> = net
            .inputs(id)
            .iter()
            .map(|&i| net.node(i).shape.clone())
            .collect();
        let refs: Vec<&[i64]> = shapes.iter().map(|s| s.as_slice()).collect();
        if k == 0 && g.layers.len() == 1 {
            spec = layer.spec(&refs);
        }
        tokens.push(layer.token(&refs, k == 0));
        kinds.push(layer.kind());
    }
    (tokens.join("+"), spec, kinds.join("+"))
}

/// What one input (placeholder) of a subgraph's [`ComputeDag`] holds when the network runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Binding {
    /// The output of layer `LayerId` (a network input, a view, or a layer of another
    /// subgraph), read as it is.
    Activation(LayerId),
    /// Weight `param` (a name of [`Layer::params`](super::Layer::params)) of layer `layer`:
    /// a constant, stored in [`Weights`](super::Weights) under (the layer's name, `param`).
    Weight {
        /// The layer the weight belongs to.
        layer: LayerId,
        /// The weight's name.
        param: &'static str,
    },
}

/// Builds the [`ComputeDag`] of one subgraph: placeholders first (per layer in order, the
/// activations it reads from outside the subgraph, then its weights, with TVM's names; the
/// weights are constants, [`DagBuilder::weight`]), then every layer's stages.
pub fn subgraph_dag(net: &Network, g: &Subgraph) -> Result<ComputeDag, IrError> {
    subgraph_dag_bound(net, g).map(|(dag, _)| dag)
}

/// [`subgraph_dag`] and what each of its inputs holds: one [`Binding`] per
/// [`ComputeDag::inputs`], in that order. Whoever runs a network (the reference evaluator,
/// the runtime) feeds each subgraph through this, so new layers need no change there.
pub fn subgraph_dag_bound(
    net: &Network,
    g: &Subgraph,
) -> Result<(ComputeDag, Vec<Binding>), IrError> {
    let mut b = DagBuilder::new();
    let mut external: HashMap<LayerId, Tensor> = HashMap::new();
    let mut params: Vec<Vec<Tensor>> = Vec::with_capacity(g.layers.len());
    // Placeholders are the DAG's first ops, in the order they are made here.
    let mut bindings = Vec::new();
    for &id in &g.layers {
        let layer = &net.node(id).layer;
        let inputs = net.inputs(id);
        for (k, &i) in inputs.iter().enumerate() {
            if g.layers.contains(&i) || external.contains_key(&i) {
                continue;
            }
            let base = layer.input_names().get(k).copied().unwrap_or("data");
            let name = b.unique_name(base);
            external.insert(i, b.placeholder(&name, &net.node(i).shape));
            bindings.push(Binding::Activation(i));
        }
        let shapes: Vec<&[i64]> = inputs
            .iter()
            .map(|&i| net.node(i).shape.as_slice())
            .collect();
        let ps = layer
            .params(&shapes)
            .into_iter()
            .map(|(base, shape)| {
                let name = b.unique_name(base);
                bindings.push(Binding::Weight {
                    layer: id,
                    param: base,
                });
                b.weight(&name, &shape)
            })
            .collect();
        params.push(ps);
    }
    let mut made: HashMap<LayerId, Tensor> = HashMap::new();
    for (&id, ps) in g.layers.iter().zip(&params) {
        let node = net.node(id);
        let inputs: Vec<Tensor> = net
            .inputs(id)
            .iter()
            .map(|i| made.get(i).or_else(|| external.get(i)).cloned())
            .collect::<Option<_>>()
            .ok_or_else(|| IrError::InvalidOp {
                op: node.name.clone(),
                reason: "an input is neither in the subgraph nor a placeholder".into(),
            })?;
        let out = node.layer.emit(&mut b, &inputs, ps).map_err(|e| match e {
            IrError::InvalidOp { op, reason } => IrError::InvalidOp {
                op: node.name.clone(),
                reason: format!("{op}: {reason}"),
            },
            other => other,
        })?;
        made.insert(id, out);
    }
    let dag = b.build()?;
    if dag.inputs().len() != bindings.len() {
        return Err(IrError::InvalidOp {
            op: net.node(g.anchor()).name.clone(),
            reason: format!(
                "the subgraph's DAG has {} inputs but {} were bound",
                dag.inputs().len(),
                bindings.len()
            ),
        });
    }
    Ok((dag, bindings))
}

/// [`partition`] in an order that runs: every subgraph after the subgraphs whose outputs
/// it reads (partition order is that of the anchors, and a fused epilogue may read a
/// subgraph whose anchor comes later). Ties keep partition order.
pub fn execution_order(net: &Network) -> Vec<Subgraph> {
    let groups = partition(net);
    let mut group_of: HashMap<LayerId, usize> = HashMap::new();
    for (k, g) in groups.iter().enumerate() {
        for &l in &g.layers {
            group_of.insert(l, k);
        }
    }
    // The subgraphs each one reads from (through views).
    let deps: Vec<Vec<usize>> = groups
        .iter()
        .enumerate()
        .map(|(k, g)| {
            let mut d: Vec<usize> = g
                .layers
                .iter()
                .flat_map(|&l| net.inputs(l))
                .filter_map(|i| group_of.get(&view_source(net, i)).copied())
                .filter(|&j| j != k)
                .collect();
            d.sort_unstable();
            d.dedup();
            d
        })
        .collect();
    let mut done = vec![false; groups.len()];
    let mut order = Vec::with_capacity(groups.len());
    while order.len() < groups.len() {
        let next = (0..groups.len()).find(|&k| !done[k] && deps[k].iter().all(|&j| done[j]));
        // The network is a DAG, so some subgraph is always ready; stop rather than loop.
        let Some(k) = next else { break };
        done[k] = true;
        order.push(k);
    }
    order.into_iter().map(|k| groups[k].clone()).collect()
}

/// The layer whose buffer `id` reads: `id` itself, or for a view (reshape) the source it
/// reinterprets, through chains of views.
pub fn view_source(net: &Network, mut id: LayerId) -> LayerId {
    while matches!(net.node(id).layer.pattern(), Pattern::View) {
        match net.inputs(id).first() {
            Some(&src) => id = src,
            None => break,
        }
    }
    id
}

/// The tasks of `net`: its distinct fused subgraphs with how often each occurs, in order
/// of first occurrence. Two subgraphs are one task when their DAGs are equal; a name
/// shared by two different DAGs is an error (it would make names ambiguous).
pub fn extract_tasks(net: &Network) -> Result<Vec<Task>, IrError> {
    let mut tasks: Vec<Task> = Vec::new();
    let mut by_key: HashMap<String, usize> = HashMap::new();
    for g in partition(net) {
        let dag = subgraph_dag(net, &g)?;
        let key = dag.canonical_text();
        let anchor = net.node(g.anchor());
        if let Some(&t) = by_key.get(&key) {
            tasks[t].weight += 1;
            tasks[t].occurrences.push(anchor.name.clone());
            continue;
        }
        let (name, spec, kind) = describe(net, &g);
        if tasks.iter().any(|t| t.name == name) {
            return Err(IrError::InvalidOp {
                op: anchor.name.clone(),
                reason: format!("two different subgraphs are both named `{name}`"),
            });
        }
        by_key.insert(key, tasks.len());
        tasks.push(Task {
            name,
            spec,
            kind,
            anchor_kind: anchor.layer.kind(),
            weight: 1,
            dag,
            occurrences: vec![anchor.name.clone()],
        });
    }
    Ok(tasks)
}
