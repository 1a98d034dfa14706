//! The extension tutorials of `examples/` run here, and a tune with an outside cost model
//! and an outside sketch policy goes through the public API only (issue #27).
//!
//! Each tutorial implements one extension point from outside the crates (a cost model, a
//! sketch policy, a mutation policy, a sketch rule) and runs a short tune with it: a few
//! trials of a 16×16×16 matrix multiplication, measured in-process for real.

#[allow(dead_code)] // `main` is the example's; the test calls `run`
#[path = "../examples/own_cost_model.rs"]
mod own_cost_model;
#[allow(dead_code)]
#[path = "../examples/own_mutation_policy.rs"]
mod own_mutation_policy;
#[allow(dead_code)]
#[path = "../examples/own_sketch_policy.rs"]
mod own_sketch_policy;
#[allow(dead_code)]
#[path = "../examples/own_sketch_rule.rs"]
mod own_sketch_rule;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use tessel_search::job::{TuneJob, TuneOptions};
use tessel_search::registry::{cost_models, sketch_policies};
use tessel_search::tuner::TuneResult;

/// Every tutorial's tune spent its budget and found a correct program.
fn check(result: &TuneResult, what: &str) {
    assert_eq!(result.trials, 8, "{what}: trials");
    assert!(result.valid > 0, "{what}: no correct program");
    assert!(result.best.is_some(), "{what}: no best");
}

#[test]
fn the_cost_model_tutorial_tunes() {
    check(&own_cost_model::run().expect("tune"), "own cost model");
}

#[test]
fn the_sketch_policy_tutorial_tunes() {
    check(
        &own_sketch_policy::run().expect("tune"),
        "own sketch policy",
    );
}

#[test]
fn the_mutation_policy_tutorial_tunes() {
    let result = own_mutation_policy::run().expect("tune");
    check(&result, "own mutation policy");
    let tried: usize = result
        .rounds
        .iter()
        .flat_map(|r| &r.evolution.mutations_tried)
        .sum();
    assert!(tried > 0, "the evolution mutated with the policy");
}

#[test]
fn the_sketch_rule_tutorial_widens_the_space_and_tunes() {
    let (result, plain, wider) = own_sketch_rule::run().expect("tune");
    check(&result, "own sketch rule");
    assert!(
        wider > plain,
        "ShallowTiling adds sketches: {plain} -> {wider}"
    );
}

/// Counts calls into the outside cost model and sketch policy.
#[derive(Default)]
struct Calls {
    predictions: usize,
    updates: usize,
    allocations: usize,
    rewards: usize,
}

/// An outside cost model: fewer stores score higher; counts its calls.
struct FewerStores(Arc<Mutex<Calls>>);

impl tessel_cost_model::model::CostModel for FewerStores {
    fn name(&self) -> String {
        "fewer-stores".into()
    }
    fn predict(&self, programs: &[tessel_cost_model::features::ProgramFeatures]) -> Vec<f32> {
        self.0.lock().expect("calls").predictions += programs.len();
        programs
            .iter()
            .map(|p| 1.0 / (1.0 + p.n_stores() as f32))
            .collect()
    }
    fn update(&mut self, _: &[tessel_cost_model::features::ProgramFeatures], _: &[f32]) {
        self.0.lock().expect("calls").updates += 1;
    }
}

/// An outside sketch policy: always the last sketch; counts calls.
struct LastSketch(Arc<Mutex<Calls>>);

impl tessel_rl_policy::SketchPolicy for LastSketch {
    fn name(&self) -> &str {
        "last"
    }
    fn allocate(
        &mut self,
        n: usize,
        sketches: usize,
        _: &mut tessel_ir::rng::TesselRng,
    ) -> Vec<u32> {
        self.0.lock().expect("calls").allocations += 1;
        vec![sketches.saturating_sub(1) as u32; n]
    }
    fn reward(&mut self, _: u32, _: f64) {
        self.0.lock().expect("calls").rewards += 1;
    }
}

#[test]
fn an_outside_cost_model_and_sketch_policy_drive_a_tune_through_the_public_api() {
    let calls = Arc::new(Mutex::new(Calls::default()));
    // Registered by name beside the built-in ones: no match to edit anywhere.
    let mut models = cost_models();
    let c = Arc::clone(&calls);
    models.register("fewer-stores", "outside test model", move |_| {
        Box::new(FewerStores(Arc::clone(&c)))
    });
    let mut policies = sketch_policies();
    let c = Arc::clone(&calls);
    policies.register("last", "outside test policy", move |_| {
        Box::new(LastSketch(Arc::clone(&c)))
    });
    let target = tessel_sketch::Target::native().with_cores(1);
    let mut options = TuneOptions::new(target);
    options.cost_model = models.factory("fewer-stores").expect("registered");
    options.sketch_policy = policies.factory("last").expect("registered");
    options.params = tessel_search::tuner::TuneParams::quick(8);
    let job = TuneJob::new(options);
    let workload = tessel_workloads::lookup("gmm:b=1,n=16,m=16,k=16").expect("workload");
    let problem = job
        .problem(Arc::new(workload.dag.clone()))
        .expect("sketches");
    let last = problem.sketches.len() as u32 - 1;
    // Which sketches the measured programs came from.
    let seen: Rc<RefCell<Vec<Option<u32>>>> = Rc::default();
    let mut measurer = job.measurer(&workload, None).expect("runner");
    let mut scorer = job.scorer(0);
    let result = job.tuner(&problem, 0).run(
        &mut RecordingSketches {
            inner: &mut measurer,
            seen: Rc::clone(&seen),
        },
        &mut scorer,
    );
    assert_eq!(result.trials, 8);
    assert!(result.best.is_some());
    let calls = calls.lock().expect("calls");
    assert!(
        calls.predictions > 0 && calls.updates >= 2,
        "the model scored and learned"
    );
    assert!(
        calls.allocations >= 2 && calls.rewards > 0,
        "the policy chose and heard back"
    );
    // Every sampled program came from the policy's sketch; only the first round's
    // hand-written heuristic schedule has none.
    let seen = seen.borrow();
    assert!(
        seen.iter()
            .filter(|s| s.is_some())
            .all(|&s| s == Some(last)),
        "{seen:?}"
    );
}

/// Passes measurements through and notes each candidate's sketch.
struct RecordingSketches<'a> {
    inner: &'a mut dyn tessel_search::tuner::Measurer,
    seen: Rc<RefCell<Vec<Option<u32>>>>,
}

impl tessel_search::tuner::Measurer for RecordingSketches<'_> {
    fn measure(&mut self, states: &[tessel_ir::State]) -> Vec<tessel_search::tuner::Measurement> {
        self.seen
            .borrow_mut()
            .extend(states.iter().map(|s| s.sketch_id()));
        self.inner.measure(states)
    }
}
