//! One tuning job: everything a search needs, built from one options struct.
//!
//! A [`TuneOptions`] holds the search space ([`SearchSpace`]: the target machine, the
//! sketch rules, the init rules and the mutation rules), the two policies, the cost model,
//! the tuning parameters and how candidates are measured; every part is replaceable from
//! outside the crates. A [`TuneJob`] turns it into the pieces of a run: the sketches of a
//! workload ([`TuneJob::problem`]), a scorer over the cost model ([`TuneJob::scorer`]), a
//! configured [`Tuner`] with fresh policies ([`TuneJob::tuner`]), random samples
//! ([`TuneJob::sample`]) and runners with the target's code generation settings
//! ([`TuneJob::runner`]). `tessel tune`, `tune-network`, `sample` and `experiment` are
//! wiring over it.
//!
//! The target is the one place the machine is described: the sketch rules' hardware
//! parameters ([`TuneJob::hardware`]) and the code generator's settings
//! ([`TuneJob::measure_options`]) both come from it, so a generic target (no micro-kernels)
//! reaches both.
//!
//! ```
//! use std::sync::Arc;
//! use tessel_search::job::{TuneJob, TuneOptions};
//! use tessel_search::tuner::{Measurement, Measurer};
//! use tessel_sketch::{Isa, Target};
//!
//! /// A fake measurer: time grows with the number of steps.
//! struct Steps;
//! impl Measurer for Steps {
//!     fn measure(&mut self, states: &[tessel_ir::State]) -> Vec<Measurement> {
//!         states.iter().map(|s| Measurement {
//!             seconds: Some(1e-3 * s.steps().len() as f64), error: None, compile_seconds: 0.0,
//!         }).collect()
//!     }
//! }
//!
//! let mut options = TuneOptions::new(Target::with_isa(Isa::Generic).with_cores(2));
//! options.params.trials = 8;
//! options.params.measures_per_round = 8;
//! options.params.evolution.population = 16;
//! let job = TuneJob::new(options);
//! let dag = Arc::new(tessel_workloads::lookup("gmm:b=1,n=16,m=16,k=16").unwrap().dag);
//! let problem = job.problem(dag).unwrap();
//! let result = job.tune(&problem, &mut Steps);
//! assert_eq!(result.trials, 8);
//! ```

use crate::harness::HarnessMeasurer;
use crate::lowering::Lowerings;
use crate::model::ModelScorer;
use crate::registry::{self, Factory, Preset, UnknownName};
use crate::tuner::{Measurer, TuneParams, TuneResult, Tuner};
use std::path::Path;
use std::sync::Arc;
use tessel_cost_model::model::CostModel;
use tessel_ir::rng::seeded;
use tessel_ir::{ComputeDag, State};
use tessel_measure::options::{LayoutRewrite, Residence};
use tessel_measure::{CodegenSettings, HarnessError, InProcessRunner, MeasureOptions, Runner};
use tessel_mutation_model::MutationPolicy;
use tessel_rl_policy::SketchPolicy;
use tessel_sketch::{
    generate_sketches_with, sample_population_with, HardwareParams, InitRules, MutationRegistry,
    Sketch, SketchError, SketchRules, Target,
};
use tessel_workloads::Workload;

/// What setting up a job's run can fail with.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The sketch rules failed on the workload.
    #[error(transparent)]
    Sketch(#[from] SketchError),
    /// The runner or the records could not be set up.
    #[error(transparent)]
    Harness(#[from] HarnessError),
}

/// Makes the runner candidates are measured with, for the given options.
pub type RunnerFactory =
    Arc<dyn Fn(MeasureOptions) -> Result<Box<dyn Runner>, HarnessError> + Send + Sync>;

/// The search space: the machine and the rules that derive, fill and mutate schedules.
#[derive(Clone)]
pub struct SearchSpace {
    /// The machine programs are tuned for (ISA level, cores, caches): the sketch rules'
    /// hardware parameters and the code generator's settings both come from it.
    pub target: Target,
    /// The sketch rules ([`SketchRules::cpu`] by default).
    pub sketch_rules: Arc<SketchRules>,
    /// The init rules that fill a sketch into a complete program ([`InitRules::cpu`]).
    pub init_rules: Arc<InitRules>,
    /// The mutation rules of the evolution ([`MutationRegistry::cpu`]).
    pub mutations: MutationRegistry,
}

impl SearchSpace {
    /// Ansor's CPU rules (with Tessel's tensorized ones) for `target`.
    pub fn cpu(target: Target) -> SearchSpace {
        SearchSpace {
            target,
            sketch_rules: Arc::new(SketchRules::cpu()),
            init_rules: Arc::new(InitRules::cpu()),
            mutations: MutationRegistry::cpu(),
        }
    }

    /// The sketch rules' hardware parameters for the target.
    pub fn hardware(&self) -> HardwareParams {
        HardwareParams::for_target(&self.target)
    }
}

/// Everything a tuning job is made of.
#[derive(Clone)]
pub struct TuneOptions {
    /// The search space.
    pub space: SearchSpace,
    /// Makes a fresh sketch policy (one per tuned workload) from the run's seed.
    pub sketch_policy: Factory<dyn SketchPolicy>,
    /// Makes a fresh mutation policy (one per tuned workload) from the run's seed.
    pub mutation_policy: Factory<dyn MutationPolicy>,
    /// Makes a fresh cost model from the run's seed.
    pub cost_model: Factory<dyn CostModel>,
    /// Budgets, round and population sizes, seed.
    pub params: TuneParams,
    /// Which micro-kernel operands are packed into the panel layout when measuring.
    pub layout_rewrite: LayoutRewrite,
    /// Flush the CPU caches before every timed repeat, so that a kernel reads its weights and
    /// inputs cold, as one layer of a whole network does (TVM's `enable_cpu_cache_flush`).
    pub flush_cache: bool,
    /// Where each candidate's constant weights are when a timed call starts: warm (the
    /// default), or moved to the shared cache or to memory first, as a layer of a network
    /// finds them ([`tessel_measure::options::Residence`]).
    pub weights: Residence,
    /// Where each candidate's other inputs (activations) are when a timed call starts.
    pub activations: Residence,
    /// Makes the runner candidates are measured with (in-process by default).
    pub runner: RunnerFactory,
}

impl TuneOptions {
    /// Ansor's defaults for `target`: the CPU rules, the `baseline` policies, the `gbdt`
    /// cost model, [`TuneParams::default`], the code generator's default layout rewrite, an
    /// in-process runner.
    pub fn new(target: Target) -> TuneOptions {
        let preset = &registry::PRESETS[0];
        TuneOptions {
            space: SearchSpace::cpu(target),
            sketch_policy: registry::sketch_policies()
                .factory(preset.sketch)
                .expect("the baseline sketch policy is registered"),
            mutation_policy: registry::mutation_policies()
                .factory(preset.mutation)
                .expect("the baseline mutation policy is registered"),
            cost_model: registry::cost_models()
                .factory("gbdt")
                .expect("the gbdt cost model is registered"),
            params: TuneParams::default(),
            layout_rewrite: CodegenSettings::default().layout_rewrite,
            flush_cache: false,
            weights: Residence::Warm,
            activations: Residence::Warm,
            runner: Arc::new(|options| {
                InProcessRunner::new(options).map(|r| Box::new(r) as Box<dyn Runner>)
            }),
        }
    }

    /// The same options with the policies registered as `sketch` and `mutation` in the
    /// built-in registries.
    pub fn with_policies(mut self, sketch: &str, mutation: &str) -> Result<Self, UnknownName> {
        self.sketch_policy = registry::sketch_policies().factory(sketch)?;
        self.mutation_policy = registry::mutation_policies().factory(mutation)?;
        Ok(self)
    }

    /// The same options with the policies of `preset`.
    pub fn with_preset(self, preset: &Preset) -> Result<Self, UnknownName> {
        self.with_policies(preset.sketch, preset.mutation)
    }

    /// The same options with the cost model registered as `name`.
    pub fn with_cost_model(mut self, name: &str) -> Result<Self, UnknownName> {
        self.cost_model = registry::cost_models().factory(name)?;
        Ok(self)
    }
}

/// What is tuned: a workload's DAG, its sketches and the hardware parameters.
#[derive(Clone)]
pub struct Problem {
    /// The workload's DAG.
    pub dag: Arc<ComputeDag>,
    /// Its sketches.
    pub sketches: Vec<Sketch>,
    /// The target's parameters.
    pub hw: HardwareParams,
}

/// A tuning job (see the module docs).
#[derive(Clone)]
pub struct TuneJob {
    options: TuneOptions,
    hw: HardwareParams,
    /// Loop nests shared by the job's scorers and measurers (clones of the job share it:
    /// a lowering depends on the workload and the step log alone).
    lowerings: Lowerings,
}

impl TuneJob {
    /// The job `options` describe.
    pub fn new(options: TuneOptions) -> TuneJob {
        let hw = options.space.hardware();
        TuneJob {
            options,
            hw,
            lowerings: Lowerings::default(),
        }
    }

    /// Its options.
    pub fn options(&self) -> &TuneOptions {
        &self.options
    }

    /// The sketch rules' hardware parameters (from the target).
    pub fn hardware(&self) -> &HardwareParams {
        &self.hw
    }

    /// The same job with seed `seed`.
    pub fn with_seed(&self, seed: u64) -> TuneJob {
        let mut job = self.clone();
        job.options.params.seed = seed;
        job
    }

    /// The same job with the policies of `preset` (from the built-in registries).
    pub fn with_preset(&self, preset: &Preset) -> Result<TuneJob, UnknownName> {
        Ok(TuneJob {
            options: self.options.clone().with_preset(preset)?,
            hw: self.hw.clone(),
            lowerings: self.lowerings.clone(),
        })
    }

    /// The seed of the tuning parameters.
    pub fn seed(&self) -> u64 {
        self.options.params.seed
    }

    /// The measurement options of the target: its cores as kernel threads, its ISA level,
    /// the layout rewrite chosen.
    pub fn measure_options(&self) -> MeasureOptions {
        let target = &self.options.space.target;
        let mut options = MeasureOptions::with_threads(target.cores.max(1) as usize);
        options.codegen.isa = target.isa;
        options.codegen.layout_rewrite = self.options.layout_rewrite;
        options.timing.flush_cache = self.options.flush_cache;
        options.timing.weights = self.options.weights;
        options.timing.activations = self.options.activations;
        options
    }

    /// A new runner with [`TuneJob::measure_options`].
    pub fn runner(&self) -> Result<Box<dyn Runner>, HarnessError> {
        (self.options.runner)(self.measure_options())
    }

    /// The sketches of `dag` under the job's sketch rules.
    pub fn problem(&self, dag: Arc<ComputeDag>) -> Result<Problem, SketchError> {
        let sketches = generate_sketches_with(&dag, &self.hw, &self.options.space.sketch_rules)?;
        Ok(Problem {
            dag,
            sketches,
            hw: self.hw.clone(),
        })
    }

    /// A scorer over a fresh cost model made from `seed`, leaving its loop nests in the
    /// job's [`Lowerings`] (which the job's measurers send with the candidates).
    pub fn scorer(&self, seed: u64) -> ModelScorer {
        ModelScorer::with_model((self.options.cost_model)(seed))
            .with_lowerings(self.lowerings.clone())
    }

    /// The job's memo of loop nests, shared by its scorers and measurers: a candidate is
    /// lowered once, by whichever needs it first. A measurer made elsewhere joins with
    /// [`HarnessMeasurer::lowerings`].
    pub fn lowerings(&self) -> &Lowerings {
        &self.lowerings
    }

    /// A tuner of `problem` with the job's rules, parameters (seeded with `seed`) and
    /// fresh policies made from `seed`.
    pub fn tuner(&self, problem: &Problem, seed: u64) -> Tuner {
        let params = TuneParams {
            seed,
            ..self.options.params.clone()
        };
        Tuner::new(
            problem.dag.clone(),
            problem.sketches.clone(),
            problem.hw.clone(),
        )
        .params(params)
        .init_rules(Arc::clone(&self.options.space.init_rules))
        .mutation_rules(self.options.space.mutations.clone())
        .sketch_policy((self.options.sketch_policy)(seed))
        .mutation_policy((self.options.mutation_policy)(seed))
        .lowerings(self.lowerings.clone())
    }

    /// Tunes `problem` with `measurer` and a fresh cost model, both seeded with the job's
    /// seed, until a budget is spent.
    pub fn tune(&self, problem: &Problem, measurer: &mut dyn Measurer) -> TuneResult {
        let mut scorer = self.scorer(self.seed());
        self.tuner(problem, self.seed()).run(measurer, &mut scorer)
    }

    /// A measurer of `workload` with a new runner, appending every result to `records`
    /// when given.
    pub fn measurer(
        &self,
        workload: &Workload,
        records: Option<&Path>,
    ) -> Result<HarnessMeasurer, HarnessError> {
        Ok(
            HarnessMeasurer::new(workload.clone(), self.runner()?, records)?
                .lowerings(self.lowerings.clone()),
        )
    }

    /// Tunes `workload` with a new runner (no records written) until a budget is spent:
    /// the shortest way from options to a result.
    pub fn tune_workload(&self, workload: &Workload) -> Result<TuneResult, JobError> {
        let problem = self.problem(Arc::new(workload.dag.clone()))?;
        let mut measurer = self.measurer(workload, None)?;
        Ok(self.tune(&problem, &mut measurer))
    }

    /// Up to `count` distinct random programs of `problem` (a sketch drawn uniformly for
    /// each, filled by the init rules): the random search `tessel sample` measures.
    pub fn sample(&self, problem: &Problem, count: usize, seed: u64) -> Vec<State> {
        sample_population_with(
            &problem.sketches,
            count,
            &self.options.space.init_rules,
            &problem.hw,
            &mut seeded(seed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessel_sketch::Isa;

    #[test]
    fn measure_options_follow_the_job_options() {
        let target = Target::with_isa(Isa::Avx2).with_cores(3);
        let job = TuneJob::new(TuneOptions::new(target));
        let plain = job.measure_options();
        assert_eq!(plain.codegen.threads, 3);
        assert_eq!(plain.codegen.isa, Isa::Avx2);
        assert!(!plain.timing.flush_cache);
        let cold = TuneJob::new(TuneOptions {
            flush_cache: true,
            ..TuneOptions::new(target)
        })
        .measure_options();
        assert!(cold.timing.flush_cache);
        // Everything else is the same: the flush is the only difference in the records key.
        assert_eq!(cold.codegen, plain.codegen);
        let shared = TuneJob::new(TuneOptions {
            weights: Residence::Shared,
            ..TuneOptions::new(target)
        })
        .measure_options();
        assert_eq!(shared.timing.weights, Residence::Shared);
        assert!(!shared.timing.flush_cache);
        assert_eq!(plain.timing.weights, Residence::Warm);
        assert_ne!(shared.timing, plain.timing);
    }
}
