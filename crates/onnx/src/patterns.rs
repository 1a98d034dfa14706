//! Rewrites of exporters' decomposed operators into the one operator Tessel maps, before
//! import: PyTorch's layer norm before opset 17 (`ReduceMean`, `Sub`, `Pow`, `ReduceMean`,
//! `Add`, `Sqrt`, `Div`, `Mul`, `Add`) becomes `LayerNormalization`, and the exact GELU
//! (`Div` by √2, `Erf`, `Add` 1, `Mul` by x, `Mul` by 0.5, in either order) becomes
//! `Gelu` (opset 20's operator, `approximate = none`). A rewrite applies only when every
//! intermediate value is read by the pattern alone (and is no graph output).

use crate::proto::{AttributeProto, NodeProto};
use crate::tensor::{self, Const};
use std::collections::HashMap;

/// Constant values by name: initializers and the outputs of `Constant` nodes.
struct Consts<'a> {
    inits: &'a HashMap<String, Const>,
    nodes: HashMap<String, Const>,
}

impl Consts<'_> {
    fn get(&self, name: &str) -> Option<&Const> {
        self.inits.get(name).or_else(|| self.nodes.get(name))
    }

    /// The single value of a constant.
    fn scalar(&self, name: &str) -> Option<f32> {
        self.get(name).and_then(Const::scalar_f32)
    }
}

fn consts_of<'a>(nodes: &[NodeProto], inits: &'a HashMap<String, Const>) -> Consts<'a> {
    let mut out = HashMap::new();
    for n in nodes.iter().filter(|n| n.op_type == "Constant") {
        let (Some(o), Some(a)) = (n.output.first(), n.attribute.first()) else {
            continue;
        };
        let c = match a.name.as_str() {
            "value" => a.t.as_ref().and_then(|t| tensor::from_proto(t).ok()),
            "value_float" => Some(Const::floats(vec![], vec![a.f])),
            "value_floats" => Some(Const::floats(vec![a.floats.len() as i64], a.floats.clone())),
            "value_int" => Some(Const::ints(vec![], vec![a.i])),
            "value_ints" => Some(Const::ints(vec![a.ints.len() as i64], a.ints.clone())),
            _ => None,
        };
        if let Some(c) = c {
            out.insert(o.clone(), c);
        }
    }
    Consts { inits, nodes: out }
}

/// Who makes and who reads each value.
struct Graph<'a> {
    nodes: &'a [NodeProto],
    producer: HashMap<&'a str, usize>,
    uses: HashMap<&'a str, usize>,
}

impl<'a> Graph<'a> {
    fn new(nodes: &'a [NodeProto], outputs: &'a [String]) -> Graph<'a> {
        let mut producer = HashMap::new();
        let mut uses: HashMap<&str, usize> = HashMap::new();
        for (k, n) in nodes.iter().enumerate() {
            for o in &n.output {
                producer.insert(o.as_str(), k);
            }
            for i in n.input.iter().filter(|i| !i.is_empty()) {
                *uses.entry(i.as_str()).or_default() += 1;
            }
        }
        for o in outputs {
            *uses.entry(o.as_str()).or_default() += 1;
        }
        Graph {
            nodes,
            producer,
            uses,
        }
    }

    /// The node of the default domain that makes `value` with `op`.
    fn made_by(&self, value: &str, op: &str) -> Option<(usize, &'a NodeProto)> {
        let &k = self.producer.get(value)?;
        let n = &self.nodes[k];
        (n.op_type == op && n.domain.is_empty()).then_some((k, n))
    }

    fn uses(&self, value: &str) -> usize {
        self.uses.get(value).copied().unwrap_or(0)
    }

    /// The one reader of `value` (with its index), when it has exactly one.
    fn only_reader(&self, value: &str, op: &str) -> Option<(usize, &'a NodeProto)> {
        if self.uses(value) != 1 {
            return None;
        }
        self.nodes
            .iter()
            .enumerate()
            .find(|(_, n)| n.input.iter().any(|i| i == value))
            .filter(|(_, n)| n.op_type == op && n.domain.is_empty())
    }
}

fn input(n: &NodeProto, k: usize) -> &str {
    n.input.get(k).map_or("", String::as_str)
}

/// The other input of a binary node, when one of its two inputs is `value`.
fn other<'n>(n: &'n NodeProto, value: &str) -> Option<&'n str> {
    match (input(n, 0), input(n, 1)) {
        (a, b) if a == value => Some(b),
        (a, b) if b == value => Some(a),
        _ => None,
    }
}

/// True when a `ReduceMean` averages only the last axis, keeping it.
fn mean_over_last(n: &NodeProto, consts: &Consts) -> bool {
    let axes = n
        .attribute
        .iter()
        .find(|a| a.name == "axes")
        .map(|a| a.ints.clone())
        .or_else(|| {
            n.input
                .get(1)
                .and_then(|i| consts.get(i))
                .map(Const::to_i64)
        });
    let keep = n
        .attribute
        .iter()
        .find(|a| a.name == "keepdims")
        .is_none_or(|a| a.i == 1);
    keep && axes.as_deref() == Some(&[-1])
}

fn node(op: &str, name: &str, inputs: Vec<String>, output: String) -> NodeProto {
    NodeProto {
        input: inputs,
        output: vec![output],
        name: name.to_string(),
        op_type: op.to_string(),
        ..Default::default()
    }
}

fn float_attr(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        f: v,
        r#type: 1,
        ..Default::default()
    }
}

/// Replaces the nodes of `drop` by `new` at the position of the last of them.
fn splice(nodes: &mut [Option<NodeProto>], drop: &[usize], new: NodeProto) {
    let at = drop.iter().copied().max().unwrap_or(0);
    for &k in drop {
        nodes[k] = None;
    }
    nodes[at] = Some(new);
}

/// Nodes to drop, the node in their place, and a gamma of ones to make (name, width).
type Rewrite = (Vec<usize>, NodeProto, Option<(String, usize)>);

/// PyTorch's decomposed layer norm (before opset 17) as `LayerNormalization`.
pub(crate) fn fuse_layer_norms(
    nodes: Vec<NodeProto>,
    inits: &mut HashMap<String, Const>,
    outputs: &[String],
) -> Vec<NodeProto> {
    let mut rewrites: Vec<Rewrite> = Vec::new();
    {
        let consts = consts_of(&nodes, inits);
        let g = Graph::new(&nodes, outputs);
        for (kd, div) in nodes.iter().enumerate() {
            if div.op_type != "Div" || !div.domain.is_empty() {
                continue;
            }
            let (d, s) = (input(div, 0), input(div, 1));
            let Some((ks, sqrt)) = g.made_by(s, "Sqrt") else {
                continue;
            };
            let Some((ka, add)) = g.made_by(input(sqrt, 0), "Add") else {
                continue;
            };
            let (var, eps) = match (input(add, 0), input(add, 1)) {
                (a, b) if consts.scalar(b).is_some() => (a, consts.scalar(b)),
                (a, b) if consts.scalar(a).is_some() => (b, consts.scalar(a)),
                _ => continue,
            };
            let Some(eps) = eps else { continue };
            let Some((kv, vmean)) = g.made_by(var, "ReduceMean") else {
                continue;
            };
            let Some((kp, pow)) = g.made_by(input(vmean, 0), "Pow") else {
                continue;
            };
            if input(pow, 0) != d || consts.scalar(input(pow, 1)) != Some(2.0) {
                continue;
            }
            let Some((kb, sub)) = g.made_by(d, "Sub") else {
                continue;
            };
            let (x, m) = (input(sub, 0), input(sub, 1));
            let Some((km, mean)) = g.made_by(m, "ReduceMean") else {
                continue;
            };
            if input(mean, 0) != x
                || !mean_over_last(mean, &consts)
                || !mean_over_last(vmean, &consts)
            {
                continue;
            }
            let single = [m, input(vmean, 0), var, input(sqrt, 0), s];
            if single.iter().any(|v| g.uses(v) != 1) || g.uses(d) != 2 {
                continue;
            }
            let mut drop = vec![km, kb, kp, kv, ka, ks, kd];
            let mut out = div.output[0].clone();
            let mut gamma = None;
            let mut beta = None;
            if let Some((kg, mul)) = g.only_reader(&out, "Mul") {
                if let Some(gn) = other(mul, &out).filter(|v| consts.get(v).is_some()) {
                    gamma = Some(gn.to_string());
                    drop.push(kg);
                    out = mul.output[0].clone();
                    if let Some((kbeta, add)) = g.only_reader(&out, "Add") {
                        if let Some(bn) = other(add, &out).filter(|v| consts.get(v).is_some()) {
                            beta = Some(bn.to_string());
                            drop.push(kbeta);
                            out = add.output[0].clone();
                        }
                    }
                }
            }
            // The width of the normalised axis: from gamma, else beta, else unknown (a
            // gamma of ones made below needs it; without one the pattern stays).
            let width = gamma
                .as_deref()
                .or(beta.as_deref())
                .and_then(|v| consts.get(v))
                .map(Const::len);
            let name = if mean.name.is_empty() {
                format!("{out}::layer_norm")
            } else {
                mean.name.clone()
            };
            let mut fused_inputs = vec![x.to_string()];
            let mut made = None;
            match (gamma, width) {
                (Some(gm), _) => fused_inputs.push(gm),
                (None, Some(w)) => {
                    let gname = format!("{out}::ln_gamma");
                    made = Some((gname.clone(), w));
                    fused_inputs.push(gname);
                }
                (None, None) => continue,
            }
            if let Some(b) = beta {
                fused_inputs.push(b);
            }
            let mut n = node("LayerNormalization", &name, fused_inputs, out);
            n.attribute.push(float_attr("epsilon", eps));
            n.attribute.push(AttributeProto {
                name: "axis".into(),
                i: -1,
                r#type: 2,
                ..Default::default()
            });
            rewrites.push((drop, n, made));
        }
    }
    let mut slots: Vec<Option<NodeProto>> = nodes.into_iter().map(Some).collect();
    for (drop, n, made) in rewrites {
        if drop.iter().any(|&k| slots[k].is_none()) {
            continue;
        }
        if let Some((name, w)) = made {
            inits.insert(name, Const::floats(vec![w as i64], vec![1.0; w]));
        }
        splice(&mut slots, &drop, n);
    }
    slots.into_iter().flatten().collect()
}

/// The exact GELU, `x·0.5·(1 + erf(x/√2))` as exporters write it, as `Gelu`.
pub(crate) fn fuse_gelus(
    nodes: Vec<NodeProto>,
    inits: &HashMap<String, Const>,
    outputs: &[String],
) -> Vec<NodeProto> {
    let near = |v: Option<f32>, want: f32| v.is_some_and(|v| (v - want).abs() < 1e-4);
    let mut rewrites: Vec<(Vec<usize>, NodeProto)> = Vec::new();
    {
        let consts = consts_of(&nodes, inits);
        let g = Graph::new(&nodes, outputs);
        for (ke, erf) in nodes.iter().enumerate() {
            if erf.op_type != "Erf" || !erf.domain.is_empty() {
                continue;
            }
            let q = input(erf, 0);
            // x / √2 or x · (1/√2)
            let (kq, x) = if let Some((k, div)) = g.made_by(q, "Div") {
                if !near(consts.scalar(input(div, 1)), std::f32::consts::SQRT_2) {
                    continue;
                }
                (k, input(div, 0))
            } else if let Some((k, mul)) = g.made_by(q, "Mul") {
                match (input(mul, 0), input(mul, 1)) {
                    (a, b) if near(consts.scalar(b), std::f32::consts::FRAC_1_SQRT_2) => (k, a),
                    (a, b) if near(consts.scalar(a), std::f32::consts::FRAC_1_SQRT_2) => (k, b),
                    _ => continue,
                }
            } else {
                continue;
            };
            if g.uses(q) != 1 || consts.get(x).is_some() {
                continue;
            }
            let e = &erf.output[0];
            let Some((ka, add)) = g.only_reader(e, "Add") else {
                continue;
            };
            if !near(other(add, e).and_then(|o| consts.scalar(o)), 1.0) {
                continue;
            }
            let a = &add.output[0];
            let Some((km, mul)) = g.only_reader(a, "Mul") else {
                continue;
            };
            let Some(factor) = other(mul, a) else {
                continue;
            };
            let t = &mul.output[0];
            let drop_and_out = if factor == x {
                // (x · (1 + erf)) · 0.5
                g.only_reader(t, "Mul").and_then(|(kh, half)| {
                    near(other(half, t).and_then(|o| consts.scalar(o)), 0.5)
                        .then(|| (vec![kq, ke, ka, km, kh], half.output[0].clone()))
                })
            } else {
                // (x · 0.5) · (1 + erf)
                g.made_by(factor, "Mul").and_then(|(kh, half)| {
                    (g.uses(factor) == 1
                        && other(half, x).is_some_and(|o| near(consts.scalar(o), 0.5)))
                    .then(|| (vec![kh, kq, ke, ka, km], t.clone()))
                })
            };
            let Some((drop, out)) = drop_and_out else {
                continue;
            };
            let name = if erf.name.is_empty() {
                format!("{out}::gelu")
            } else {
                erf.name.clone()
            };
            rewrites.push((drop, node("Gelu", &name, vec![x.to_string()], out)));
        }
    }
    let mut slots: Vec<Option<NodeProto>> = nodes.into_iter().map(Some).collect();
    for (drop, n) in rewrites {
        if drop.iter().any(|&k| slots[k].is_none()) {
            continue;
        }
        splice(&mut slots, &drop, n);
    }
    slots.into_iter().flatten().collect()
}
