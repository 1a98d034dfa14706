//! Schedule states: replay, the JSON form of steps, and errors for illegal steps.

use std::sync::Arc;
use tessel_ir::dag::{DagBuilder, Reducer};
use tessel_ir::expr::Expr;
use tessel_ir::lower::lower;
use tessel_ir::state::{Annotation, State, Step};
use tessel_ir::{rng, testing, ComputeDag};

/// `C = A·B` (8×8×8) followed by a ReLU: stages A, B, C, relu.
fn matmul_relu() -> Arc<ComputeDag> {
    let mut b = DagBuilder::new();
    let a = b.placeholder("A", &[8, 8]);
    let w = b.placeholder("B", &[8, 8]);
    let c = b.reduce(
        "C",
        &[("i", 8), ("j", 8)],
        &[("k", 8)],
        Reducer::Sum,
        |ax| a.at([ax[0].clone(), ax[2].clone()]) * w.at([ax[2].clone(), ax[1].clone()]),
    );
    b.compute("relu", &[("i", 8), ("j", 8)], |ax| {
        c.at(ax.to_vec()).max(Expr::float(0.0))
    });
    Arc::new(b.build().expect("valid DAG"))
}

fn split(stage: usize, iter: usize, lengths: &[i64]) -> Step {
    Step::Split {
        stage,
        iter,
        extent: None,
        lengths: lengths.iter().map(|&l| Some(l)).collect(),
    }
}

#[test]
fn replay_reproduces_random_states_exactly() {
    let dag = matmul_relu();
    for seed in 0..200 {
        let s = testing::random_state(&dag, &mut rng::seeded(seed), &testing::Limits::default());
        let again = State::replay(dag.clone(), s.steps()).expect("a recorded log replays");
        assert_eq!(again.to_string(), s.to_string(), "seed {seed}");
        let (a, b) = (lower(&s), lower(&again));
        assert_eq!(
            a.map(|n| n.to_string()).ok(),
            b.map(|n| n.to_string()).ok(),
            "seed {seed}"
        );
    }
}

#[test]
fn steps_round_trip_through_json() {
    let dag = matmul_relu();
    for seed in 0..100 {
        let s = testing::random_state(&dag, &mut rng::seeded(seed), &testing::Limits::default());
        let json = s.steps_json();
        let back = State::from_steps_json(dag.clone(), &json).expect("own JSON parses");
        assert_eq!(back.steps(), s.steps());
        assert_eq!(back.to_string(), s.to_string());
    }
}

#[test]
fn step_json_form_is_stable() {
    let step = Step::Split {
        stage: 2,
        iter: 0,
        extent: Some(512),
        lengths: vec![Some(8), None],
    };
    assert_eq!(
        step.to_string(),
        r#"{"step":"split","stage":2,"iter":0,"extent":512,"lengths":[8,null]}"#
    );
    let ann = Step::Annotate {
        stage: 3,
        iter: 1,
        annotation: Annotation::Vectorize,
    };
    assert_eq!(
        ann.to_string(),
        r#"{"step":"annotate","stage":3,"iter":1,"annotation":"vectorize"}"#
    );
    let parsed: Step =
        serde_json::from_str(r#"{"step":"compute_at","stage":2,"target_stage":3,"target_iter":1}"#)
            .expect("parses");
    assert_eq!(
        parsed,
        Step::ComputeAt {
            stage: 2,
            target_stage: 3,
            target_iter: 1
        }
    );
}

#[test]
fn split_names_extents_and_overshooting_lengths() {
    let dag = matmul_relu();
    let mut s = State::new(dag);
    s.apply(split(2, 0, &[3, 2])).expect("legal");
    let st = s.stage(2);
    assert_eq!(st.leaf_names(), vec!["i.0", "i.1", "i.2", "j", "k"]);
    let ext: Vec<Option<i64>> = (0..3).map(|p| st.leaf(p).and_then(|i| i.extent)).collect();
    // 8 = ceil(ceil(8/2)/3) · 3 · 2 with a guard: extents 2, 3, 2.
    assert_eq!(ext, vec![Some(2), Some(3), Some(2)]);
    // A length larger than the extent is cut to it.
    let mut t = State::new(matmul_relu());
    t.apply(split(2, 1, &[32])).expect("legal");
    let ext: Vec<Option<i64>> = (1..3)
        .map(|p| t.stage(2).leaf(p).and_then(|i| i.extent))
        .collect();
    assert_eq!(ext, vec![Some(1), Some(8)]);
}

/// Applies `setup`, then checks that `bad` fails with a message containing `needle` and
/// leaves the state as it was.
fn assert_illegal(setup: &[Step], bad: Step, needle: &str) {
    let mut s = State::new(matmul_relu());
    for st in setup {
        s.apply(st.clone()).expect("setup steps are legal");
    }
    let before = s.to_string();
    let n = s.steps().len();
    let e = s.apply(bad.clone()).expect_err("the step must be rejected");
    let text = e.to_string();
    assert!(text.contains(bad.name()), "error names the step: {text}");
    assert!(text.contains(needle), "error says why ({needle}): {text}");
    assert_eq!(e.index, n);
    assert_eq!(s.to_string(), before, "a failed step changes nothing");
    assert_eq!(s.steps().len(), n);
}

#[test]
fn illegal_steps_give_clear_errors() {
    assert_illegal(&[], split(9, 0, &[2]), "stage 9 does not exist");
    assert_illegal(&[], split(0, 0, &[2]), "placeholder");
    assert_illegal(&[], split(2, 7, &[2]), "no iterator at position 7");
    assert_illegal(&[], split(2, 0, &[0]), "not positive");
    assert_illegal(
        &[],
        Step::Fuse {
            stage: 2,
            iters: vec![1, 2],
        },
        "cannot fuse spatial and reduction",
    );
    assert_illegal(
        &[],
        Step::Fuse {
            stage: 2,
            iters: vec![0, 2],
        },
        "not consecutive",
    );
    assert_illegal(
        &[],
        Step::Reorder {
            stage: 2,
            order: vec![0, 0, 1],
        },
        "not a permutation",
    );
    assert_illegal(
        &[],
        Step::Annotate {
            stage: 2,
            iter: 0,
            annotation: Annotation::Vectorize,
        },
        "only the innermost loop",
    );
    assert_illegal(
        &[],
        Step::Annotate {
            stage: 2,
            iter: 2,
            annotation: Annotation::Parallel,
        },
        "cannot parallelize reduction",
    );
    assert_illegal(&[], Step::ComputeInline { stage: 2 }, "has a reduction");
    assert_illegal(&[], Step::ComputeInline { stage: 3 }, "is an output");
    assert_illegal(
        &[],
        Step::ComputeAt {
            stage: 3,
            target_stage: 2,
            target_iter: 0,
        },
        "is an output",
    );
    assert_illegal(
        &[split(2, 0, &[2])],
        Step::CacheWrite {
            stage: 2,
            scope: "local".into(),
        },
        "must come before loop transforms",
    );
    assert_illegal(
        &[],
        Step::Rfactor {
            stage: 2,
            iter: 0,
            factor_iter: 0,
        },
        "not a reduction iterator",
    );
    assert_illegal(
        &[split(2, 0, &[2])],
        Step::FollowSplit {
            stage: 3,
            iter: 0,
            src_step: 0,
            n_split: 5,
        },
        "n_split 5",
    );
    assert_illegal(
        &[Step::ComputeRoot { stage: 2 }],
        Step::FollowSplit {
            stage: 3,
            iter: 0,
            src_step: 0,
            n_split: 1,
        },
        "not a split",
    );
    assert_illegal(
        &[],
        Step::CacheRead {
            stage: 0,
            scope: "local".into(),
            readers: vec![3],
        },
        "does not read stage 0",
    );
}

#[test]
fn compute_at_attachment_follows_split_and_fuse_of_the_target() {
    let mut s = State::new(matmul_relu());
    // C computed inside relu's loop j; then relu's j is split: C follows the innermost part.
    s.apply(Step::ComputeAt {
        stage: 2,
        target_stage: 3,
        target_iter: 1,
    })
    .expect("legal");
    s.apply(split(3, 1, &[4])).expect("legal");
    let text = s.to_string();
    assert!(text.contains("for j.1 (0,4)\n      for i (0,1)"), "{text}");
    // Fusing j.0 (which has nothing attached) with j.1 keeps the attachment.
    s.apply(Step::Fuse {
        stage: 3,
        iters: vec![1, 2],
    })
    .expect("legal");
    assert!(
        s.to_string()
            .contains("for j.0@j.1@ (0,8)\n    for i (0,1)"),
        "{s}"
    );
    // Fusing an iterator that has stages attached, as a non-last one, is illegal.
    let mut t = State::new(matmul_relu());
    t.apply(Step::ComputeAt {
        stage: 2,
        target_stage: 3,
        target_iter: 0,
    })
    .expect("legal");
    let e = t
        .apply(Step::Fuse {
            stage: 3,
            iters: vec![0, 1],
        })
        .expect_err("illegal");
    assert!(e.to_string().contains("has stages computed at it"), "{e}");
}

#[test]
fn a_sketch_with_holes_cannot_be_lowered() {
    let mut s = State::new(matmul_relu());
    s.apply(Step::Split {
        stage: 2,
        iter: 0,
        extent: None,
        lengths: vec![None, Some(2)],
    })
    .expect("holes are legal in sketches");
    assert!(!s.is_concrete());
    let e = lower(&s).expect_err("not concrete");
    assert!(e.to_string().contains("undecided split lengths"), "{e}");
}

#[test]
fn failed_steps_leave_random_states_unchanged() {
    use rand::RngExt;
    let dag = matmul_relu();
    let mut failures = 0;
    for seed in 0..300 {
        let mut s =
            testing::random_state(&dag, &mut rng::seeded(seed), &testing::Limits::default());
        let mut r = rng::seeded(seed + 1_000_000);
        for _ in 0..20 {
            // Random, mostly illegal, proposals.
            let stage = r.random_range(0..5usize);
            let iter = r.random_range(0..8usize);
            let step = match r.random_range(0..6u32) {
                0 => split(stage, iter, &[r.random_range(0..4i64)]),
                1 => Step::Fuse {
                    stage,
                    iters: vec![iter, iter + r.random_range(0..3usize)],
                },
                2 => Step::ComputeAt {
                    stage,
                    target_stage: r.random_range(0..5usize),
                    target_iter: iter,
                },
                3 => Step::Rfactor {
                    stage,
                    iter,
                    factor_iter: r.random_range(0..3usize),
                },
                4 => Step::CacheWrite {
                    stage,
                    scope: "local".into(),
                },
                _ => Step::Annotate {
                    stage,
                    iter,
                    annotation: Annotation::Vectorize,
                },
            };
            let (text, steps) = (s.to_string(), s.steps().to_vec());
            if s.apply(step).is_err() {
                failures += 1;
                assert_eq!(s.to_string(), text, "seed {seed}");
                assert_eq!(s.steps(), &steps[..], "seed {seed}");
            }
        }
    }
    assert!(
        failures > 1000,
        "the proposals should mostly fail ({failures})"
    );
}
