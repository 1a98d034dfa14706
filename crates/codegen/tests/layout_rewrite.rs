//! Layout rewrite modes on the example tensorized schedules (`examples/schedules/`): which
//! micro-kernel calls read packed `B` operands under each mode, and that every mode computes
//! exactly what `Off` computes (the micro-kernel does the same operations in the same order
//! whatever the layout of `B`), also when the inputs change between runs.

use std::path::Path;
use std::sync::Arc;
use tessel_codegen::{compile, ukernel, CompileOptions, Kernel, LayoutRewrite};
use tessel_ir::{eval, lower::lower, ComputeDag, LoopNest, State, Step};

/// The lowered nest and DAG of `examples/schedules/<name>.json`.
fn example(name: &str) -> (LoopNest, Arc<ComputeDag>) {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../examples/schedules/{name}.json"));
    let text = std::fs::read_to_string(&path).expect("example schedule");
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let steps: Vec<Step> = serde_json::from_value(v["steps"].clone()).expect("steps");
    let w = tessel_workloads::lookup(v["workload"].as_str().expect("workload")).expect("workload");
    let dag = Arc::new(w.dag);
    let state = State::replay(dag.clone(), &steps).expect("legal schedule");
    (lower(&state).expect("lowers"), dag)
}

fn run(kernel: &Kernel, nest: &LoopNest, inputs: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let mut outs: Vec<Vec<f32>> = nest.params[inputs.len()..]
        .iter()
        .map(|&p| vec![f32::NAN; nest.buffer(p).len() as usize])
        .collect();
    let ins: Vec<&[f32]> = inputs.iter().map(|v| v.as_slice()).collect();
    let mut o: Vec<&mut [f32]> = outs.iter_mut().map(|v| v.as_mut_slice()).collect();
    kernel.run(&ins, &mut o).expect("runs");
    outs
}

fn kernel(nest: &LoopNest, layout_rewrite: LayoutRewrite) -> Kernel {
    // The example schedules' tiles are AVX2 ones.
    let opts = CompileOptions {
        layout_rewrite,
        isa: tessel_codegen::Isa::Avx2,
        ..CompileOptions::with_threads(2)
    };
    compile(nest, &opts).expect("compiles")
}

/// (packed, packed per call) of every micro-kernel call of `name` under `mode`.
fn packing(name: &str, mode: LayoutRewrite) -> Vec<(bool, bool)> {
    let (nest, _) = example(name);
    kernel(&nest, mode)
        .micro_kernel_calls()
        .iter()
        .map(|c| (c.packed_b, c.packs_per_call))
        .collect()
}

#[test]
fn each_mode_packs_what_it_says() {
    if !ukernel::available(tessel_codegen::Isa::Avx2) {
        eprintln!("SKIPPED: this CPU has no AVX2+FMA, so nothing is packed");
        return;
    }
    // gmm: B is an operand, not a weight.
    assert_eq!(
        packing("gmm-3-tensorized", LayoutRewrite::Off),
        [(false, false)]
    );
    assert_eq!(
        packing("gmm-3-tensorized", LayoutRewrite::Weights),
        [(false, false)]
    );
    assert_eq!(
        packing("gmm-3-tensorized", LayoutRewrite::All),
        [(true, true)]
    );
    // c2d: B is the weight, packed once under both packing modes.
    assert_eq!(
        packing("c2d-3-tensorized", LayoutRewrite::Off),
        [(false, false)]
    );
    assert_eq!(
        packing("c2d-3-tensorized", LayoutRewrite::Weights),
        [(true, false)]
    );
    assert_eq!(
        packing("c2d-3-tensorized", LayoutRewrite::All),
        [(true, false)]
    );
}

#[test]
fn every_mode_computes_what_off_computes_as_inputs_change() {
    for name in ["gmm-3-tensorized", "c2d-3-tensorized"] {
        let (nest, dag) = example(name);
        let kernels = LayoutRewrite::MODES.map(|m| (m, kernel(&nest, m)));
        for seed in [1, 2, 3] {
            let inputs = eval::random_inputs(&dag, seed);
            let want = run(&kernels[0].1, &nest, &inputs);
            for (mode, k) in &kernels[1..] {
                if dag.inputs().iter().any(|&i| dag.is_constant(i)) {
                    // New weights: the fingerprint notices, `pack_weights` makes sure.
                    let ins: Vec<&[f32]> = inputs.iter().map(|v| v.as_slice()).collect();
                    k.pack_weights(&ins).expect("packs");
                }
                assert!(run(k, &nest, &inputs) == want, "{name} {mode} seed {seed}");
            }
        }
    }
}

#[test]
fn prepared_calls_compute_what_run_computes_and_keep_their_own_weights() {
    for (name, mode) in [
        ("gmm-3-tensorized", LayoutRewrite::All),
        ("c2d-3-tensorized", LayoutRewrite::Weights),
    ] {
        let (nest, dag) = example(name);
        let k = kernel(&nest, mode);
        let reference = kernel(&nest, LayoutRewrite::Off);
        let inputs: Vec<Vec<Vec<f32>>> = (1..=2).map(|s| eval::random_inputs(&dag, s)).collect();
        let want: Vec<Vec<Vec<f32>>> = inputs.iter().map(|x| run(&reference, &nest, x)).collect();
        // Two calls on one kernel, each on its own inputs and outputs.
        let mut outs: Vec<Vec<Vec<f32>>> = want
            .iter()
            .map(|w| w.iter().map(|o| vec![f32::NAN; o.len()]).collect())
            .collect();
        let calls: Vec<tessel_codegen::PreparedCall> = inputs
            .iter()
            .zip(outs.iter_mut())
            .map(|(x, o)| {
                let ins: Vec<&[f32]> = x.iter().map(|v| v.as_slice()).collect();
                let mut o: Vec<&mut [f32]> = o.iter_mut().map(|v| v.as_mut_slice()).collect();
                k.prepare(&ins, &mut o).expect("prepares")
            })
            .collect();
        // Interleaved, and after a plain run on other inputs: each call still reads its own
        // weights (the kernel keeps one packed copy and repacks when another call made it).
        for &c in &[0, 1, 0, 0, 1] {
            // SAFETY: the buffers the call was prepared with are alive, unchanged in length
            // and not borrowed while it runs.
            unsafe { k.run_prepared(&calls[c]) }.expect("runs");
            assert!(outs[c] == want[c], "{name}: call {c}");
            let seed3 = eval::random_inputs(&dag, 3);
            let _ = run(&k, &nest, &seed3);
        }
        // A call of another kernel is refused.
        // SAFETY: refused before anything runs.
        let err = unsafe { reference.run_prepared(&calls[0]) }.unwrap_err();
        assert_eq!(err.to_string(), "the call was prepared for another kernel");
        // Wrong buffers are refused when preparing, as `run` refuses them.
        let ins: Vec<&[f32]> = inputs[0].iter().map(|v| &v[1..]).collect();
        let mut o: Vec<&mut [f32]> = outs[0].iter_mut().map(|v| v.as_mut_slice()).collect();
        assert!(k.prepare(&ins, &mut o).is_err());
    }
}

#[test]
fn weight_regions_are_the_constant_inputs_and_their_packed_copies_activations_the_rest() {
    if !ukernel::available(tessel_codegen::Isa::Avx2) {
        eprintln!("SKIPPED: this CPU has no AVX2+FMA, so nothing is packed");
        return;
    }
    let bytes = |n: usize| n * std::mem::size_of::<f32>();
    // c2d: the weight is a constant; packed once under `Weights`, read in place under `Off`.
    let (nest, dag) = example("c2d-3-tensorized");
    let inputs = eval::random_inputs(&dag, 1);
    let constant: Vec<usize> = (0..inputs.len())
        .filter(|&i| dag.is_constant(dag.inputs()[i]))
        .collect();
    assert_eq!(constant.len(), 1, "c2d has one weight");
    let weight = &inputs[constant[0]];
    let ins: Vec<&[f32]> = inputs.iter().map(|v| v.as_slice()).collect();
    let weight_region = (weight.as_ptr() as usize, bytes(weight.len()));

    let plain = kernel(&nest, LayoutRewrite::Off);
    run(&plain, &nest, &inputs);
    assert_eq!(plain.weight_regions(&ins), vec![weight_region]);
    let activations: Vec<(usize, usize)> = (0..inputs.len())
        .filter(|i| !constant.contains(i))
        .map(|i| (inputs[i].as_ptr() as usize, bytes(inputs[i].len())))
        .collect();
    assert_eq!(activations.len(), inputs.len() - 1);
    assert_eq!(plain.activation_regions(&ins), activations);

    let packed = kernel(&nest, LayoutRewrite::Weights);
    // No copy is listed before it exists.
    assert_eq!(packed.weight_regions(&ins), vec![weight_region]);
    packed.pack_weights(&ins).expect("packs");
    let regions = packed.weight_regions(&ins);
    assert_eq!(regions.len(), 2, "{regions:?}");
    assert_eq!(regions[0], weight_region);
    // The packed copy holds at least every weight (panels may pad the last one).
    let (copy, copy_bytes) = regions[1];
    assert!(copy_bytes >= bytes(weight.len()), "{regions:?}");
    assert!(copy + copy_bytes <= weight_region.0 || copy >= weight_region.0 + weight_region.1);

    // gmm: both operands are inputs, not weights: nothing to move, whatever is packed.
    let (nest, dag) = example("gmm-3-tensorized");
    let inputs = eval::random_inputs(&dag, 1);
    let ins: Vec<&[f32]> = inputs.iter().map(|v| v.as_slice()).collect();
    let all = kernel(&nest, LayoutRewrite::All);
    run(&all, &nest, &inputs);
    assert!(all.weight_regions(&ins).is_empty());
    let activations: Vec<(usize, usize)> = inputs
        .iter()
        .map(|x| (x.as_ptr() as usize, bytes(x.len())))
        .collect();
    assert_eq!(all.activation_regions(&ins), activations);
}
