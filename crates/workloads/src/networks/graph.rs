//! The network graph: layers as petgraph nodes, activations flowing along edges.

use super::layers::{Layer, Pattern};
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use petgraph::Direction;
use tessel_ir::dag::DagBuilder;
use tessel_ir::IrError;

/// Index of a layer in a [`Network`] (also its position in topological order).
pub type LayerId = NodeIndex;

/// One layer of a network with the shape of its output.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Unique name (`layer2.0.conv1`, ...).
    pub name: String,
    /// The operator.
    pub layer: Layer,
    /// Shape of its output.
    pub shape: Vec<i64>,
}

/// A network: a DAG of layers (edge weight = input position of the consumer), built in
/// topological order by a [`NetworkBuilder`].
#[derive(Clone, Debug)]
pub struct Network {
    name: String,
    batch: i64,
    graph: DiGraph<Node, usize>,
    /// Outputs named by the builder ([`NetworkBuilder::set_outputs`]); `None`: the layers
    /// nothing reads.
    outputs: Option<Vec<LayerId>>,
}

impl Network {
    /// The network's name (`resnet50`, ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The batch size it was built for.
    pub fn batch(&self) -> i64 {
        self.batch
    }

    /// The graph (node weights are layers, edge weights input positions).
    pub fn graph(&self) -> &DiGraph<Node, usize> {
        &self.graph
    }

    /// One layer.
    pub fn node(&self, id: LayerId) -> &Node {
        &self.graph[id]
    }

    /// All layers in topological order.
    pub fn layers(&self) -> impl Iterator<Item = LayerId> + '_ {
        self.graph.node_indices()
    }

    /// Number of layers (inputs and views included).
    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    /// True when the network has no layer.
    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    /// The activations `id` reads, in input order.
    pub fn inputs(&self, id: LayerId) -> Vec<LayerId> {
        let mut e: Vec<(usize, LayerId)> = self
            .graph
            .edges_directed(id, Direction::Incoming)
            .map(|e| (*e.weight(), e.source()))
            .collect();
        e.sort();
        e.into_iter().map(|(_, s)| s).collect()
    }

    /// The distinct layers that read `id`, in topological order.
    pub fn consumers(&self, id: LayerId) -> Vec<LayerId> {
        let mut c: Vec<LayerId> = self
            .graph
            .neighbors_directed(id, Direction::Outgoing)
            .collect();
        c.sort();
        c.dedup();
        c
    }

    /// The network's inputs ([`Layer::Input`] layers), in topological order: the buffers a
    /// caller passes to run the network.
    pub fn input_layers(&self) -> Vec<LayerId> {
        self.layers()
            .filter(|&i| matches!(self.graph[i].layer.pattern(), Pattern::Input))
            .collect()
    }

    /// The network's outputs: those its builder named ([`NetworkBuilder::set_outputs`]), in
    /// that order, or else the layers nothing reads (inputs excluded), in topological order.
    pub fn output_layers(&self) -> Vec<LayerId> {
        if let Some(named) = &self.outputs {
            return named.clone();
        }
        self.layers()
            .filter(|&i| {
                !matches!(self.graph[i].layer.pattern(), Pattern::Input)
                    && self.consumers(i).is_empty()
            })
            .collect()
    }

    /// The layer named `name`.
    pub fn find(&self, name: &str) -> Option<LayerId> {
        self.graph
            .node_indices()
            .find(|&i| self.graph[i].name == name)
    }

    /// Number of layers of each kind that make stages (inputs and views excluded), e.g.
    /// `[("conv2d", 53), ...]`, in order of first appearance.
    pub fn op_counts(&self) -> Vec<(&'static str, usize)> {
        let mut out: Vec<(&'static str, usize)> = Vec::new();
        for id in self.layers() {
            let l = &self.graph[id].layer;
            if matches!(l.pattern(), Pattern::Input | Pattern::View) {
                continue;
            }
            match out.iter_mut().find(|(k, _)| *k == l.kind()) {
                Some(e) => e.1 += 1,
                None => out.push((l.kind(), 1)),
            }
        }
        out
    }
}

/// Builds a [`Network`] layer by layer; every layer's output shape is inferred (and its
/// inputs checked) by building its stages, so a bad shape is an [`IrError::InvalidOp`]
/// naming the layer.
#[derive(Debug)]
pub struct NetworkBuilder {
    name: String,
    batch: i64,
    graph: DiGraph<Node, usize>,
    outputs: Option<Vec<LayerId>>,
}

impl NetworkBuilder {
    /// An empty network named `name`, built for batch size `batch`.
    pub fn new(name: &str, batch: i64) -> NetworkBuilder {
        NetworkBuilder {
            name: name.to_string(),
            batch,
            graph: DiGraph::new(),
            outputs: None,
        }
    }

    /// Adds a network input.
    pub fn input(&mut self, name: &str, shape: &[i64]) -> Result<LayerId, IrError> {
        if shape.is_empty() || shape.iter().any(|&d| d <= 0) {
            return Err(IrError::InvalidOp {
                op: name.to_string(),
                reason: format!("input shape must be non-empty and positive, got {shape:?}"),
            });
        }
        self.check_name(name)?;
        Ok(self.graph.add_node(Node {
            name: name.to_string(),
            layer: Layer::Input,
            shape: shape.to_vec(),
        }))
    }

    /// Adds `layer` named `name` reading `inputs`, and returns it.
    pub fn add(
        &mut self,
        name: &str,
        layer: Layer,
        inputs: &[LayerId],
    ) -> Result<LayerId, IrError> {
        self.check_name(name)?;
        let bad = |reason: String| IrError::InvalidOp {
            op: name.to_string(),
            reason,
        };
        if inputs.iter().any(|i| i.index() >= self.graph.node_count()) {
            return Err(bad("reads a layer that does not exist".into()));
        }
        let shapes: Vec<Vec<i64>> = inputs
            .iter()
            .map(|&i| self.graph[i].shape.clone())
            .collect();
        let shape = match &layer {
            Layer::Input => return Err(bad("use `input` to add an input".into())),
            Layer::Reshape(to) => {
                let [from] = shapes.as_slice() else {
                    return Err(bad(format!(
                        "a reshape takes 1 input, got {}",
                        shapes.len()
                    )));
                };
                if to.iter().any(|&d| d <= 0)
                    || to.iter().product::<i64>() != from.iter().product::<i64>()
                {
                    return Err(bad(format!("cannot reshape {from:?} to {to:?}")));
                }
                to.clone()
            }
            _ => infer_shape(&layer, &shapes).map_err(|e| match e {
                IrError::InvalidOp { op, reason } => bad(format!("{op}: {reason}")),
                other => other,
            })?,
        };
        let id = self.graph.add_node(Node {
            name: name.to_string(),
            layer,
            shape,
        });
        for (k, &i) in inputs.iter().enumerate() {
            self.graph.add_edge(i, id, k);
        }
        Ok(id)
    }

    /// The output shape of a layer already added.
    pub fn shape(&self, id: LayerId) -> &[i64] {
        &self.graph[id].shape
    }

    /// Names the network's outputs, in the order a caller gets them (by default they are the
    /// layers nothing reads). An output that other layers also read is kept: fusion ends its
    /// subgraph at it. An input or a layer not yet added is refused.
    pub fn set_outputs(&mut self, outputs: &[LayerId]) -> Result<(), IrError> {
        for &id in outputs {
            let Some(node) = self.graph.node_weight(id) else {
                return Err(IrError::InvalidOp {
                    op: format!("output #{}", id.index()),
                    reason: "names a layer that does not exist".into(),
                });
            };
            if matches!(node.layer.pattern(), Pattern::Input) {
                return Err(IrError::InvalidOp {
                    op: node.name.clone(),
                    reason: "a network input cannot be an output".into(),
                });
            }
        }
        self.outputs = Some(outputs.to_vec());
        Ok(())
    }

    /// Finishes the network.
    pub fn build(self) -> Network {
        Network {
            name: self.name,
            batch: self.batch,
            graph: self.graph,
            outputs: self.outputs,
        }
    }

    fn check_name(&self, name: &str) -> Result<(), IrError> {
        if self.graph.node_weights().any(|n| n.name == name) {
            return Err(IrError::InvalidOp {
                op: name.to_string(),
                reason: "duplicate layer name".into(),
            });
        }
        Ok(())
    }
}

/// The output shape of `layer` on inputs of `shapes`, by emitting its stages on placeholders.
fn infer_shape(layer: &Layer, shapes: &[Vec<i64>]) -> Result<Vec<i64>, IrError> {
    let mut b = DagBuilder::new();
    let inputs: Vec<_> = shapes
        .iter()
        .enumerate()
        .map(|(k, s)| b.placeholder(&format!("in{k}"), s))
        .collect();
    let refs: Vec<&[i64]> = shapes.iter().map(|s| s.as_slice()).collect();
    let params: Vec<_> = layer
        .params(&refs)
        .into_iter()
        .enumerate()
        .map(|(k, (_, s))| b.weight(&format!("w{k}"), &s))
        .collect();
    Ok(layer.emit(&mut b, &inputs, &params)?.shape)
}
