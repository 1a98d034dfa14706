//! Limits on every path: what would abort (allocation failure), overflow the stack or hang
//! is refused with a clear error before lowering or compiling, in process as in a worker.

use tessel_ir::Step;
use tessel_measure::limits::{self, MAX_SPLIT_PARTS, MAX_UNROLL_STEP};
use tessel_measure::{Candidate, ErrorClass, InProcessRunner, MeasureOptions, Runner};

const SMALL: &str = "gmm:b=1,n=64,m=64,k=64";

fn runner() -> InProcessRunner {
    let mut o = MeasureOptions::with_threads(1);
    o.timing.repeat = 1;
    o.timing.min_repeat_ms = 0.1;
    InProcessRunner::new(o).expect("runner")
}

/// Measures one candidate in process; returns its error message (panics if it ran).
fn refused(spec: &str, steps: Vec<Step>) -> String {
    let r = runner()
        .measure(&[Candidate::new(spec, steps)])
        .pop()
        .expect("one result");
    let e = r.error.expect("refused");
    assert_eq!(e.class, ErrorClass::InvalidSchedule, "{e}");
    e.message
}

fn split(iter: usize, parts: usize) -> Step {
    Step::Split {
        stage: 2,
        iter,
        extent: None,
        lengths: vec![Some(1); parts],
    }
}

#[test]
fn a_huge_workload_is_refused_before_any_allocation() {
    let why = refused("gmm:b=1,n=100000,m=100000,k=100000", vec![]);
    assert!(why.contains("in-process runner's limit"), "{why}");
    // The byte limit holds on every path (it is checked by the builder).
    let w = tessel_workloads::lookup("gmm:b=1,n=100000,m=100000,k=100000").expect("spec");
    let err = limits::check_workload(&w.dag).expect_err("too big");
    assert!(err.contains("GiB"), "{err}");
    let small = tessel_workloads::lookup(SMALL).expect("spec");
    assert!(limits::check_workload(&small.dag).is_ok());
}

#[test]
fn a_100000_part_split_is_refused_without_overflowing_the_stack() {
    let why = refused(SMALL, vec![split(0, 100_000)]);
    assert!(why.contains("100000 split lengths"), "{why}");
    assert!(refused(SMALL, vec![split(0, MAX_SPLIT_PARTS + 1)]).contains("split lengths"));
}

#[test]
fn a_deep_loop_nest_is_refused_before_lowering() {
    // Six 16-part splits of the same loop: 6 * 16 + 3 = 99 loops in one stage.
    let steps: Vec<Step> = (0..6).map(|_| split(0, MAX_SPLIT_PARTS)).collect();
    let why = refused(SMALL, steps);
    assert!(why.contains("loops"), "{why}");
}

#[test]
fn a_huge_unroll_step_is_refused_before_compiling() {
    let why = refused(
        SMALL,
        vec![Step::Pragma {
            stage: 2,
            iter: 0,
            auto_unroll_max_step: u32::MAX,
        }],
    );
    assert!(why.contains("auto_unroll_max_step 4294967295"), "{why}");
    // At the limit it builds and runs.
    let ok = runner()
        .measure(&[Candidate::new(
            SMALL,
            vec![Step::Pragma {
                stage: 2,
                iter: 0,
                auto_unroll_max_step: MAX_UNROLL_STEP,
            }],
        )])
        .pop()
        .expect("one result");
    assert!(ok.error.is_none(), "{:?}", ok.error);
}

#[test]
fn a_fully_unrolled_huge_loop_is_refused() {
    let w = tessel_workloads::lookup("gmm:b=1,n=8192,m=8,k=8").expect("spec");
    let steps = vec![Step::Annotate {
        stage: 2,
        iter: 1,
        annotation: tessel_ir::state::Annotation::Unroll,
    }];
    let why = refused(&w.spec(), steps);
    assert!(why.contains("is unrolled"), "{why}");
}

#[test]
fn out_of_bounds_timing_settings_are_refused_by_the_runner() {
    for (edit, field) in [
        (
            (|o: &mut MeasureOptions| o.timing.repeat = u32::MAX) as fn(&mut MeasureOptions),
            "timing.repeat",
        ),
        (|o| o.timing.number = 0, "timing.number"),
        (
            |o| o.timing.min_repeat_ms = f64::NAN,
            "timing.min_repeat_ms",
        ),
        (|o| o.timing.warmup = u32::MAX, "timing.warmup"),
        (|o| o.codegen.threads = 0, "codegen.threads"),
    ] {
        let mut o = MeasureOptions::with_threads(1);
        edit(&mut o);
        let err = InProcessRunner::new(o).expect_err("refused").to_string();
        assert!(err.contains(field), "{field}: {err}");
    }
}
