//! The reference evaluator of a whole network: the ground truth the runtime is checked
//! against.
//!
//! Every fused subgraph is evaluated with the per-DAG reference evaluator
//! ([`tessel_ir::eval::evaluate`]) on the DAG [`subgraph_dag_bound`] builds, in
//! [`execution_order`]; each placeholder gets the activation or the weight its
//! [`Binding`] names. Views (reshapes) read their source's values as they are (row-major
//! data does not move). So any layer a subgraph can express runs here with no change.
//!
//! ```
//! use tessel_workloads::networks::{self, Weights};
//! let net = networks::tiny_cnn(1).unwrap();
//! let weights = Weights::random(&net, 1);
//! let inputs = networks::random_inputs(&net, 2);
//! let out = networks::evaluate(&net, &weights, &inputs).unwrap();
//! assert_eq!(out.len(), 1);
//! assert_eq!(out[0].len(), 10);
//! ```

use super::graph::{LayerId, Network};
use super::tasks::{execution_order, subgraph_dag_bound, view_source, Binding};
use super::weights::Weights;
use std::collections::HashMap;
use tessel_ir::eval;
use tessel_ir::IrError;

/// Evaluates `net` with `weights` on `inputs` (one row-major buffer per
/// [`Network::input_layers`], in order) and returns one buffer per
/// [`Network::output_layers`], in order.
///
/// A wrong number or length of inputs, a missing or mis-shaped weight, or a failure of the
/// per-DAG evaluator is an [`IrError::Eval`] naming the tensor or layer.
pub fn evaluate(
    net: &Network,
    weights: &Weights,
    inputs: &[Vec<f32>],
) -> Result<Vec<Vec<f32>>, IrError> {
    let input_ids = net.input_layers();
    if inputs.len() != input_ids.len() {
        return Err(IrError::Eval(format!(
            "network `{}` takes {} inputs, got {}",
            net.name(),
            input_ids.len(),
            inputs.len()
        )));
    }
    let mut values: HashMap<LayerId, Vec<f32>> = HashMap::new();
    for (&id, x) in input_ids.iter().zip(inputs) {
        let node = net.node(id);
        let want: i64 = node.shape.iter().product();
        if x.len() as i64 != want {
            return Err(IrError::Eval(format!(
                "input `{}` has shape {:?} ({want} elements), got {} values",
                node.name,
                node.shape,
                x.len()
            )));
        }
        values.insert(id, x.clone());
    }
    // How many subgraphs still read each buffer, to free it after its last reader.
    let order = execution_order(net);
    let mut readers: HashMap<LayerId, usize> = HashMap::new();
    let mut plans = Vec::with_capacity(order.len());
    for g in &order {
        let (dag, bindings) = subgraph_dag_bound(net, g)?;
        for b in &bindings {
            if let Binding::Activation(i) = b {
                *readers.entry(view_source(net, *i)).or_default() += 1;
            }
        }
        plans.push((g, dag, bindings));
    }
    let outputs: Vec<LayerId> = net
        .output_layers()
        .into_iter()
        .map(|o| view_source(net, o))
        .collect();
    for (g, dag, bindings) in plans {
        let mut args = Vec::with_capacity(bindings.len());
        for b in &bindings {
            match b {
                Binding::Activation(i) => {
                    let src = view_source(net, *i);
                    let v = values.get(&src).ok_or_else(|| {
                        IrError::Eval(format!(
                            "layer `{}` is read before it is computed",
                            net.node(*i).name
                        ))
                    })?;
                    args.push(v.clone());
                    let left = readers.entry(src).or_default();
                    *left = left.saturating_sub(1);
                    if *left == 0 && !outputs.contains(&src) {
                        values.remove(&src);
                    }
                }
                Binding::Weight { layer, param } => {
                    let node = net.node(*layer);
                    let t = weights.get(&node.name, param).ok_or_else(|| {
                        IrError::Eval(format!("layer `{}` has no weight `{param}`", node.name))
                    })?;
                    args.push(t.data.clone());
                }
            }
        }
        let mut out = eval::evaluate(&dag, &args).map_err(|e| {
            IrError::Eval(format!("subgraph of `{}`: {e}", net.node(g.anchor()).name))
        })?;
        if out.len() != 1 {
            return Err(IrError::Eval(format!(
                "subgraph of `{}` has {} outputs, expected 1",
                net.node(g.anchor()).name,
                out.len()
            )));
        }
        values.insert(g.output(), out.remove(0));
    }
    outputs
        .iter()
        .map(|o| {
            values.get(o).cloned().ok_or_else(|| {
                IrError::Eval(format!("output `{}` was never computed", net.node(*o).name))
            })
        })
        .collect()
}

/// Deterministic inputs for `net`: one buffer per [`Network::input_layers`], uniform in
/// `[-1, 1)` from a splitmix64 stream seeded with `seed` (as [`eval::random_inputs`]).
pub fn random_inputs(net: &Network, seed: u64) -> Vec<Vec<f32>> {
    let mut state = seed;
    net.input_layers()
        .into_iter()
        .map(|id| {
            let len: i64 = net.node(id).shape.iter().product();
            (0..len.max(0))
                .map(|_| {
                    let u = (eval::splitmix64(&mut state) >> 40) as f32 / (1u32 << 24) as f32;
                    2.0 * u - 1.0
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::networks::{self, partition, subgraph_dag};

    /// The network evaluator agrees with evaluating tiny-cnn's subgraphs by hand, one
    /// after the other (each subgraph reads the previous one's output).
    #[test]
    fn tiny_cnn_matches_its_subgraphs_chained_by_hand() {
        let net = networks::tiny_cnn(1).unwrap();
        let w = Weights::random(&net, 3);
        let x = random_inputs(&net, 4);
        let got = evaluate(&net, &w, &x).unwrap();
        // By hand: conv1 (+bias+relu) then conv2 reads conv1's output twice (conv input
        // and residual), and so on; weights from the store in binding order.
        let mut vals: HashMap<LayerId, Vec<f32>> = HashMap::new();
        vals.insert(net.input_layers()[0], x[0].clone());
        for g in partition(&net) {
            let (dag, binds) = subgraph_dag_bound(&net, &g).unwrap();
            assert_eq!(dag, subgraph_dag(&net, &g).unwrap());
            let args: Vec<Vec<f32>> = binds
                .iter()
                .map(|b| match b {
                    Binding::Activation(i) => vals[&view_source(&net, *i)].clone(),
                    Binding::Weight { layer, param } => {
                        w.get(&net.node(*layer).name, param).unwrap().data.clone()
                    }
                })
                .collect();
            let out = eval::evaluate(&dag, &args).unwrap();
            vals.insert(g.output(), out[0].clone());
        }
        let last = net.output_layers()[0];
        assert_eq!(got, vec![vals[&last].clone()]);
        // The dense head's outputs are not all equal (the network is not degenerate).
        assert!(got[0].iter().any(|&v| (v - got[0][0]).abs() > 1e-6));
    }

    #[test]
    fn bad_inputs_and_missing_weights_are_named() {
        let net = networks::tiny_cnn(1).unwrap();
        let w = Weights::random(&net, 3);
        let err = evaluate(&net, &w, &[]).unwrap_err().to_string();
        assert!(err.contains("takes 1 inputs, got 0"), "{err}");
        let err = evaluate(&net, &w, &[vec![0.0; 3]]).unwrap_err().to_string();
        assert!(
            err.contains("input `input`") && err.contains("got 3 values"),
            "{err}"
        );
        let x = random_inputs(&net, 1);
        let err = evaluate(&net, &Weights::new(), &x).unwrap_err().to_string();
        assert!(err.contains("has no weight"), "{err}");
    }

    #[test]
    fn every_subgraph_runs_after_what_it_reads() {
        for name in ["resnet50", "mobilenet-v2", "bert-base", "tiny-cnn"] {
            let net = networks::lookup(name, 1).unwrap();
            let order = execution_order(&net);
            assert_eq!(order.len(), partition(&net).len(), "{name}");
            let mut done: Vec<LayerId> = net.input_layers();
            for g in &order {
                for &l in &g.layers {
                    for i in net.inputs(l) {
                        let src = view_source(&net, i);
                        assert!(
                            g.layers.contains(&i) || done.contains(&src),
                            "{name}: {} reads {} too early",
                            net.node(l).name,
                            net.node(i).name
                        );
                    }
                }
                done.extend(g.layers.iter().copied());
            }
        }
    }
}
