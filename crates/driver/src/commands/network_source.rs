//! Where a command's network comes from: a built-in name (`resnet50`) or an `.onnx` file.
//!
//! Every command that takes a network calls [`load`]; a path ending in `.onnx` is imported
//! with `tessel-onnx` (symbolic input shapes given with `--input name:1x3x224x224`, see
//! [`InputArgs`]), and the import time and every layout change are reported on stderr.
//! [`task_workload`] names a task so that measurement workers, which find workloads by
//! name, can rebuild it: a built-in network's task as `NETWORK@BATCH/TASK`; an imported
//! task as its registry spec when it is a single op, else as the equal task of a built-in
//! network (same DAG, so the same workload key and shared records).

use crate::error::DriverError;
use std::time::Instant;
use tessel_workloads::networks::{self, Network, Task, Weights};
use tessel_workloads::Workload;

/// The `--input` option of commands that take a network.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct InputArgs {
    /// Shape of an input of an `.onnx` model, in the model's axis order
    /// (`--input input:1x3x224x224`); needed where the model's shape is symbolic.
    /// Repeat for several inputs.
    #[arg(long = "input", value_name = "NAME:SHAPE")]
    pub inputs: Vec<String>,
}

/// True when `network` names an ONNX file rather than a built-in network.
pub fn is_onnx(network: &str) -> bool {
    network.to_ascii_lowercase().ends_with(".onnx")
}

/// Parses `name:1x3x224x224`.
pub fn parse_input(text: &str) -> Result<(String, Vec<i64>), DriverError> {
    let bad = || {
        DriverError::Usage(format!(
            "--input {text}: expected NAME:SHAPE with SHAPE like 1x3x224x224"
        ))
    };
    let (name, shape) = text.rsplit_once(':').ok_or_else(bad)?;
    let dims: Vec<i64> = shape
        .split(['x', 'X'])
        .map(|d| d.trim().parse::<i64>().ok().filter(|&v| v > 0))
        .collect::<Option<_>>()
        .ok_or_else(bad)?;
    if name.is_empty() || dims.is_empty() {
        return Err(bad());
    }
    Ok((name.to_string(), dims))
}

/// The network `network` names: a built-in one at `batch`, or the model of an `.onnx`
/// file (whose batch is the model's; `--batch` must then be 1 or agree with it).
pub fn load(network: &str, batch: i64, inputs: &InputArgs) -> Result<Network, DriverError> {
    load_with_weights(network, batch, inputs).map(|(net, _)| net)
}

/// As [`load`], with the model's weights for an `.onnx` file (`None` for a built-in network,
/// whose weights are made up: [`tessel_workloads::networks::Weights::random`]).
pub fn load_with_weights(
    network: &str,
    batch: i64,
    inputs: &InputArgs,
) -> Result<(Network, Option<Weights>), DriverError> {
    if !is_onnx(network) {
        if !inputs.inputs.is_empty() {
            return Err(DriverError::Usage(format!(
                "--input is for .onnx models; `{network}` is a built-in network (use --batch)"
            )));
        }
        return Ok((networks::lookup(network, batch)?, None));
    }
    let opts = tessel_onnx::ImportOptions {
        input_shapes: inputs
            .inputs
            .iter()
            .map(|s| parse_input(s))
            .collect::<Result<_, _>>()?,
        name: None,
    };
    let start = Instant::now();
    let model = tessel_onnx::import_file(network, &opts)
        .map_err(|e| DriverError::Failed(format!("{network}: {e}")))?;
    let seconds = start.elapsed().as_secs_f64();
    if batch != 1 && batch != model.network.batch() {
        return Err(DriverError::Usage(format!(
            "{network} has batch {}; give an ONNX model's shapes with --input NAME:SHAPE, not --batch",
            model.network.batch()
        )));
    }
    eprintln!(
        "imported {network} in {seconds:.3} s: {} layers, {:.2} M weights, opset {}",
        model.network.len(),
        model.weights.element_count() as f64 / 1e6,
        model.opset
    );
    for line in &model.layout_changes {
        eprintln!("  layout: {line}");
    }
    let (net, weights) = model.into_parts();
    Ok((net, Some(weights)))
}

/// The workload of task `t` of `net` (loaded from `network` by [`load`]), named so that a
/// measurement worker can rebuild it: a registry spec or a built-in network's task where the
/// DAG is the same (so records are shared with it), else the task's own subgraph spec
/// ([`networks::task_subgraph_spec`]).
pub fn task_workload(network: &str, net: &Network, t: &Task) -> Result<Workload, DriverError> {
    if !is_onnx(network) {
        return Ok(tessel_workloads::lookup(&format!(
            "{network}@{}/{}",
            net.batch(),
            t.name
        ))?);
    }
    let key = t.workload_key();
    if let Some(spec) = &t.spec {
        let w = tessel_workloads::lookup(spec)?;
        if w.dag.workload_key() == key {
            return Ok(w);
        }
    }
    for &builtin in networks::NAMES {
        let Ok(other) = networks::lookup(builtin, net.batch()) else {
            continue;
        };
        let tasks = networks::extract_tasks(&other)?;
        if let Some(same) = tasks.iter().find(|o| o.workload_key() == key) {
            return Ok(tessel_workloads::lookup(&format!(
                "{builtin}@{}/{}",
                net.batch(),
                same.name
            ))?);
        }
    }
    // A task only this model has travels as its own description.
    Ok(tessel_workloads::lookup(&networks::task_subgraph_spec(
        net, t,
    )?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_shapes_parse_and_bad_ones_are_named() {
        assert_eq!(
            parse_input("input:1x3x224x224").unwrap(),
            ("input".to_string(), vec![1, 3, 224, 224])
        );
        assert_eq!(
            parse_input("a:b:2X3").unwrap(),
            ("a:b".to_string(), vec![2, 3])
        );
        for bad in ["input", "input:", ":1x3", "x:1x0", "x:1xa"] {
            let e = parse_input(bad).unwrap_err().to_string();
            assert!(e.contains("expected NAME:SHAPE"), "{bad}: {e}");
        }
        assert!(is_onnx("dir/Model.ONNX") && !is_onnx("resnet50"));
    }

    #[test]
    fn an_onnx_task_is_named_by_its_builtin_equal() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/onnx/");
        let path = format!("{dir}conv_bias_relu.onnx");
        let net = load(&path, 1, &InputArgs::default()).unwrap();
        let tasks = networks::extract_tasks(&net).unwrap();
        // conv + bias + relu of a shape no built-in network has: measured under its own
        // subgraph spec, which rebuilds its DAG.
        let w = task_workload(&path, &net, &tasks[0]).unwrap();
        assert_eq!(w.op, networks::SUBGRAPH_OP);
        assert_eq!(w.dag.workload_key(), tasks[0].workload_key());
        // The residual model's max pool is a registry op: its spec names it.
        let path = format!("{dir}residual.onnx");
        let net = load(&path, 1, &InputArgs::default()).unwrap();
        let tasks = networks::extract_tasks(&net).unwrap();
        let pool = tasks
            .iter()
            .find(|t| t.anchor_kind == "max_pool2d")
            .unwrap();
        let w = task_workload(&path, &net, pool).unwrap();
        assert_eq!(w.dag.workload_key(), pool.workload_key());
        let e = load(
            "resnet50",
            1,
            &InputArgs {
                inputs: vec!["x:1x2".into()],
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("--input is for .onnx models"), "{e}");
        let e = load(&format!("{dir}missing.onnx"), 1, &InputArgs::default()).unwrap_err();
        assert!(e.to_string().contains("cannot read"), "{e}");
    }
}
