//! WindowReduction: a pool gets a sketch that reads through its padding, vectorizes its
//! channel loop and accumulates in a register tile; its programs compute what the
//! reference evaluator computes.

use std::sync::Arc;
use tessel_ir::loop_nest::{LoopKind, Stmt};
use tessel_ir::lower::lower;
use tessel_ir::state::{Annotation, ComputeAt};
use tessel_ir::{eval, interp, Step};
use tessel_sketch::{generate_sketches, sample_initial, HardwareParams, Sketch};

fn hw() -> HardwareParams {
    HardwareParams {
        isa: tessel_sketch::Isa::Avx512,
        ..HardwareParams::with_cores(2)
    }
}

fn sketches_of(spec: &str) -> Vec<Sketch> {
    let w = tessel_workloads::lookup(spec).expect("known workload");
    generate_sketches(&Arc::new(w.dag), &hw()).expect("sketches")
}

fn is_window(s: &Sketch) -> bool {
    s.state.steps().iter().any(|st| {
        matches!(
            st,
            Step::Annotate {
                annotation: Annotation::Vectorize,
                ..
            }
        )
    })
}

/// The innermost loop kinds of every store of the lowered nest, by stored buffer name.
fn innermost_kinds(state: &tessel_ir::State) -> Vec<(String, LoopKind)> {
    let nest = lower(state).expect("lowers");
    let mut out = Vec::new();
    let mut stack: Vec<(tessel_ir::loop_nest::StmtId, Option<LoopKind>)> =
        nest.body.iter().map(|&s| (s, None)).collect();
    while let Some((s, kind)) = stack.pop() {
        match nest.stmt(s) {
            Stmt::For { lp, body, .. } => {
                let k = nest.lp(*lp).kind;
                stack.extend(body.iter().map(|&b| (b, Some(k))));
            }
            Stmt::If { body, .. } | Stmt::Alloc { body, .. } => {
                stack.extend(body.iter().map(|&b| (b, kind)))
            }
            Stmt::Store { buf, .. } => {
                if let Some(k) = kind {
                    out.push((nest.buffer(*buf).name.clone(), k));
                }
            }
        }
    }
    out
}

#[test]
fn resnet50_maxpool_reads_through_its_padding_with_vectorized_channels() {
    let spec = "maxpool:n=1,h=112,w=112,c=64,kernel=3,stride=2,pad=1";
    let sk = sketches_of(spec);
    let window: Vec<&Sketch> = sk.iter().filter(|s| is_window(s)).collect();
    assert_eq!(window.len(), 1, "one window sketch among {}", sk.len());
    assert!(sk.len() >= 2, "the plain sketch stays");
    let s = &window[0].state;
    let names: Vec<&str> = s.stages().iter().map(|st| st.name.as_str()).collect();
    assert_eq!(names, ["data", "pad_temp", "pool_max.local", "pool_max"]);
    assert_eq!(s.stage(1).compute_at, ComputeAt::Inline, "padding inlined");
    // The accumulator lives in the output's channel tile, its channels innermost.
    assert!(matches!(
        s.stage(2).compute_at,
        ComputeAt::At { stage: 3, .. }
    ));
    assert_eq!(
        s.stage(2).leaf_names(),
        ["ax0", "ax1", "ax2", "ax3.0", "rv0", "rv1", "ax3.1"]
    );
    assert_eq!(
        s.stage(3).leaf_names(),
        ["ax0", "ax1", "ax2", "ax3.0", "ax3.1"]
    );

    // Sampled programs: the padding is gone, both channel loops are vectorized, and the
    // program computes the max-pool.
    let mut rng = tessel_ir::rng::seeded(3);
    let sampled: Vec<_> = (0..40)
        .filter_map(|_| sample_initial(window[0], &hw(), &mut rng))
        .collect();
    assert!(!sampled.is_empty());
    let mut wide = 0;
    for st in &sampled {
        let kinds = innermost_kinds(st);
        assert!(!kinds.iter().any(|(b, _)| b == "pad_temp"), "{st}");
        // The drawn channel tile: a loop of one lane is lowered away, not vectorized.
        let out = st.stage(3);
        let lanes = out
            .leaf(out.leaves.len() - 1)
            .and_then(|it| it.extent)
            .expect("channel tile");
        if lanes >= 4 {
            wide += 1;
            assert!(
                kinds.iter().all(|(_, k)| *k == LoopKind::Vectorized),
                "{kinds:?}\n{st}"
            );
        }
    }
    assert!(wide > 0, "no sample with a channel tile of 4 or more");
}

#[test]
fn window_programs_match_the_reference() {
    for spec in [
        "maxpool:n=1,h=9,w=9,c=8,kernel=3,stride=2,pad=1",
        "avgpool:n=1,h=7,w=7,c=32",
    ] {
        let w = tessel_workloads::lookup(spec).expect("known workload");
        let dag = Arc::new(w.dag);
        let sk = generate_sketches(&dag, &hw()).expect("sketches");
        let window = sk.iter().find(|s| is_window(s)).expect("a window sketch");
        let inputs = eval::random_inputs(&dag, 5);
        let want = eval::evaluate(&dag, &inputs).expect("reference");
        let mut rng = tessel_ir::rng::seeded(11);
        let mut checked = 0;
        for _ in 0..30 {
            let Some(st) = sample_initial(window, &hw(), &mut rng) else {
                continue;
            };
            let nest = lower(&st).expect("lowers");
            let mut args: Vec<Vec<f32>> = inputs.clone();
            args.extend(want.iter().map(|o| vec![0.0; o.len()]));
            interp::run(&nest, &mut args).expect("runs");
            for (k, w) in want.iter().enumerate() {
                for (a, b) in args[inputs.len() + k].iter().zip(w) {
                    assert!(
                        (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                        "{spec}: {a} vs {b}\n{st}"
                    );
                }
            }
            checked += 1;
        }
        assert!(checked > 0, "{spec}: no sample");
    }
}

#[test]
fn avgpool_sums_inside_its_division_tile() {
    let sk = sketches_of("avgpool:n=1,h=7,w=7,c=2048");
    let window: Vec<&Sketch> = sk.iter().filter(|s| is_window(s)).collect();
    assert_eq!(window.len(), 1);
    let s = &window[0].state;
    // No cache-write stage: the element-wise division owns the tile.
    assert_eq!(s.stages().len(), 3);
    assert!(matches!(
        s.stage(1).compute_at,
        ComputeAt::At { stage: 2, .. }
    ));
    assert_eq!(
        s.stage(1).leaf_names(),
        ["ax0", "ax1", "ax2", "ax3.0", "rv0", "rv1", "ax3.1"]
    );
}

#[test]
fn reductions_over_the_last_axis_get_no_window_sketch() {
    // A softmax's max and a dense layer read their reduction axis last: not a pool.
    for spec in [
        "softmax:m=4,n=32",
        "dense:n=1,in=64,out=32",
        "nrm:b=1,m=16,n=16",
    ] {
        assert!(
            !sketches_of(spec)
                .iter()
                .any(|s| s.state.steps().iter().any(|st| matches!(
                    st,
                    Step::Annotate {
                        annotation: Annotation::Vectorize,
                        ..
                    }
                ))),
            "{spec}"
        );
    }
}
