//! Tutorial: add your own sketch rule to the search space.
//!
//! Sketch rules derive the high-level structures (sketches) of a program, stage by stage,
//! from the last stage up. This one adds a shallower tiling beside Ansor's `SSRSRS`
//! multi-level tiling: a stage that needs multi-level tiling also gets an `SRS` sketch
//! (one outer spatial tile, the reduction, one inner spatial tile), and the rules after it
//! still run, so the usual sketches stay. Put it in the job's `SearchSpace::sketch_rules`.
//!
//! Run it: `cargo run --release --example own_sketch_rule`.

use std::sync::Arc;
use tessel_ir::State;
use tessel_search::job::{TuneJob, TuneOptions};
use tessel_search::tuner::{TuneParams, TuneResult};
use tessel_sketch::rules::{multi_level_tiling, Condition, Derived, SketchContext};
use tessel_sketch::{SketchError, SketchRule, SketchRules};

/// An extra `SRS`-tiled sketch for every stage that needs multi-level tiling.
pub struct ShallowTiling;

impl SketchRule for ShallowTiling {
    fn name(&self) -> &str {
        "ShallowTiling"
    }

    fn condition(&self, ctx: &SketchContext, state: &State, stage: usize) -> Condition {
        if ctx.needs_multi_level_tiling(state, stage) {
            Condition::Apply
        } else {
            Condition::Skip
        }
    }

    fn apply(
        &self,
        _: &SketchContext,
        state: &State,
        stage: usize,
    ) -> Result<Vec<Derived>, SketchError> {
        let (tiled, _) = multi_level_tiling(state, stage, "SRS")?;
        Ok(vec![(tiled, stage.checked_sub(1))])
    }
}

/// The CPU rules with [`ShallowTiling`] before Ansor's multi-level tiling.
pub fn rules() -> SketchRules {
    let mut rules = SketchRules::cpu();
    rules.insert_before("MultiLevelTilingWithFusion", Box::new(ShallowTiling));
    rules
}

/// Tunes a small matrix multiplication for a few trials in the wider space; also returns
/// the number of sketches with and without the rule.
pub fn run() -> Result<(TuneResult, usize, usize), Box<dyn std::error::Error>> {
    let mut options = TuneOptions::new(tessel_sketch::Target::native().with_cores(1));
    options.params = TuneParams::quick(8);
    let workload = tessel_workloads::lookup("gmm:b=1,n=16,m=16,k=16")?;
    let dag = Arc::new(workload.dag.clone());
    let plain = TuneJob::new(options.clone())
        .problem(dag.clone())?
        .sketches
        .len();
    options.space.sketch_rules = Arc::new(rules());
    let job = TuneJob::new(options);
    let wider = job.problem(dag)?.sketches.len();
    Ok((job.tune_workload(&workload)?, plain, wider))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (result, plain, wider) = run()?;
    let best = result.best.map(|b| b.1 * 1e3);
    println!(
        "ShallowTiling: {plain} -> {wider} sketches; {} trials, best {best:?} ms",
        result.trials
    );
    Ok(())
}
