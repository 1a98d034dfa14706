//! The constants of a network: the weights its layers read.
//!
//! A [`Network`] says which weights each layer has ([`Layer::params`]: a name and a shape per
//! weight); a [`Weights`] store holds their values, keyed by (layer name, weight name). Built-in
//! networks get deterministic random weights ([`Weights::random`]); a model importer fills the
//! store from the model file. Everything that runs a whole network (the reference evaluator, the
//! runtime) reads its constants from here.
//!
//! ```
//! use tessel_workloads::networks::{self, Weights};
//! let net = networks::tiny_cnn(1).unwrap();
//! let weights = Weights::random(&net, 7);
//! weights.check(&net).unwrap();
//! let a = Weights::random(&net, 7);
//! assert_eq!(weights, a);
//! ```

use super::graph::Network;
use super::layers::Layer;
use rand::RngExt;
use std::collections::BTreeMap;
use tessel_ir::IrError;

/// One constant tensor: a row-major shape and its values.
#[derive(Clone, Debug, PartialEq)]
pub struct ConstTensor {
    /// Its shape.
    pub shape: Vec<i64>,
    /// Its values, row-major (`shape` product long).
    pub data: Vec<f32>,
}

impl ConstTensor {
    /// A tensor of `shape` holding `data`; an error when the lengths disagree.
    pub fn new(shape: Vec<i64>, data: Vec<f32>) -> Result<ConstTensor, IrError> {
        let want = element_count(&shape)?;
        if want != data.len() {
            return Err(IrError::Eval(format!(
                "a constant of shape {shape:?} needs {want} values, got {}",
                data.len()
            )));
        }
        Ok(ConstTensor { shape, data })
    }
}

/// The weights of a network, keyed by (layer name, weight name as in [`Layer::params`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Weights {
    tensors: BTreeMap<(String, String), ConstTensor>,
}

impl Weights {
    /// An empty store.
    pub fn new() -> Weights {
        Weights::default()
    }

    /// Deterministic random weights for every weight of every layer of `net`: uniform in
    /// `±1/√fan_in` (fan-in = elements per output channel), so activations stay of order one
    /// through deep networks; LayerNorm's `gamma` is one plus noise, biases and `beta` small.
    pub fn random(net: &Network, seed: u64) -> Weights {
        let mut rng = tessel_ir::rng::seeded(seed);
        let mut weights = Weights::new();
        for id in net.layers() {
            let node = net.node(id);
            for (param, shape) in layer_params(net, id) {
                let count: i64 = shape.iter().product();
                let fan_in = fan_in(&node.layer, &shape).max(1) as f32;
                let bound = 1.0 / fan_in.sqrt();
                let data = (0..count.max(0))
                    .map(|_| {
                        let u: f32 = rng.random_range(-1.0f32..1.0);
                        match param {
                            "gamma" => 1.0 + 0.1 * u,
                            "bias" | "beta" => 0.1 * u,
                            _ => bound * u,
                        }
                    })
                    .collect();
                weights.tensors.insert(
                    (node.name.clone(), param.to_string()),
                    ConstTensor { shape, data },
                );
            }
        }
        weights
    }

    /// Stores `tensor` as weight `param` of layer `layer`, replacing an earlier value.
    pub fn insert(&mut self, layer: &str, param: &str, tensor: ConstTensor) {
        self.tensors
            .insert((layer.to_string(), param.to_string()), tensor);
    }

    /// Weight `param` of layer `layer`.
    pub fn get(&self, layer: &str, param: &str) -> Option<&ConstTensor> {
        self.tensors.get(&(layer.to_string(), param.to_string()))
    }

    /// All weights, as ((layer, weight), tensor), in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&(String, String), &ConstTensor)> {
        self.tensors.iter()
    }

    /// Number of stored tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether the store holds nothing.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Total number of stored values.
    pub fn element_count(&self) -> usize {
        self.tensors.values().map(|t| t.data.len()).sum()
    }

    /// Checks that every weight of every layer of `net` is present with the shape the layer
    /// expects; the error names the first layer and weight that is missing or mis-shaped.
    pub fn check(&self, net: &Network) -> Result<(), IrError> {
        for id in net.layers() {
            let node = net.node(id);
            for (param, shape) in layer_params(net, id) {
                match self.get(&node.name, param) {
                    None => {
                        return Err(IrError::Eval(format!(
                            "layer `{}` has no weight `{param}` (shape {shape:?})",
                            node.name
                        )))
                    }
                    Some(t) if t.shape != shape => {
                        return Err(IrError::Eval(format!(
                        "weight `{param}` of layer `{}` has shape {:?}, the layer needs {shape:?}",
                        node.name, t.shape
                    )))
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(())
    }
}

/// The weights (name, shape) layer `id` of `net` reads.
pub fn layer_params(net: &Network, id: super::LayerId) -> Vec<(&'static str, Vec<i64>)> {
    let inputs = net.inputs(id);
    let shapes: Vec<&[i64]> = inputs
        .iter()
        .map(|&i| net.node(i).shape.as_slice())
        .collect();
    net.node(id).layer.params(&shapes)
}

/// Elements that feed one output value through this weight.
fn fan_in(layer: &Layer, shape: &[i64]) -> i64 {
    match layer {
        // (kh, kw, CI, CO) and depthwise (1, kh, kw, C): all but the output-channel axis.
        Layer::Conv2d { .. } => shape[..shape.len().saturating_sub(1)].iter().product(),
        Layer::DepthwiseConv2d { kernel, .. } => kernel * kernel,
        // (units, in)
        Layer::Dense { .. } => shape.last().copied().unwrap_or(1),
        _ => 1,
    }
}

fn element_count(shape: &[i64]) -> Result<usize, IrError> {
    let mut n: usize = 1;
    for &d in shape {
        let d = usize::try_from(d)
            .map_err(|_| IrError::Eval(format!("shape {shape:?} has a negative extent")))?;
        n = n
            .checked_mul(d)
            .ok_or_else(|| IrError::Eval(format!("shape {shape:?} is too large")))?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::networks;

    #[test]
    fn every_resnet_weight_is_made_with_its_shape() {
        let net = networks::resnet50(1).unwrap();
        let w = Weights::random(&net, 1);
        w.check(&net).unwrap();
        // 25.5 M parameters in ResNet-50 (conv + fc weights, fc bias, conv biases folded from BN).
        let n = w.element_count();
        assert!((25_000_000..26_000_000).contains(&n), "{n} parameters");
    }

    #[test]
    fn a_missing_or_misshaped_weight_is_named() {
        let net = networks::tiny_cnn(1).unwrap();
        let mut w = Weights::random(&net, 1);
        let ((layer, param), t) = w
            .iter()
            .next()
            .map(|(k, t)| (k.clone(), t.clone()))
            .unwrap();
        let bad = ConstTensor::new(vec![t.data.len() as i64 + 1], vec![0.0; t.data.len() + 1]);
        w.insert(&layer, &param, bad.unwrap());
        let err = w.check(&net).unwrap_err().to_string();
        assert!(err.contains(&layer) && err.contains(&param), "{err}");
        assert!(ConstTensor::new(vec![2, 3], vec![0.0; 5]).is_err());
    }
}
