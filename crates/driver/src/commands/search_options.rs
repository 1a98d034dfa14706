//! Options shared by the commands that search (`tune`, `tune-network`): policies, seed,
//! threads, round and population sizes, isolation; and what they build from them.

use crate::error::DriverError;
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::Arc;
use tessel_cost_model::{CostModelError, GbdtModelParams, Pretrained};
use tessel_measure::options::{LayoutRewrite, Residence};
use tessel_measure::{
    HarnessError, InProcessRunner, LocalWorkerRunner, MeasureOptions, Runner, WorkerCommand,
};
use tessel_search::confirm::FinalConfirm;
use tessel_search::evolution::EvolutionParams;
use tessel_search::harness::Confirm;
use tessel_search::job::{RunnerFactory, TuneJob, TuneOptions};
use tessel_search::registry;
use tessel_search::tuner::TuneParams;
use tessel_sketch::{Isa, Target};

/// Where candidates run.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// In a persistent worker process: a crash or hang costs one candidate.
    Worker,
    /// In this process (faster start, no protection).
    None,
}

/// A runner for `options` with the chosen isolation (workers are `current_exe() worker`).
pub fn make_runner(
    isolation: Isolation,
    options: MeasureOptions,
) -> Result<Box<dyn Runner>, HarnessError> {
    Ok(match isolation {
        Isolation::Worker => Box::new(LocalWorkerRunner::new(
            WorkerCommand::current_exe(&["worker"])?,
            options,
        )),
        Isolation::None => Box::new(InProcessRunner::new(options)?),
    })
}

/// Kernel threads: the number given, or every core.
pub fn resolve_threads(threads: Option<usize>) -> usize {
    threads
        .unwrap_or_else(tessel_measure::options::available_cores)
        .max(1)
}

/// A workload name made safe as a file name (one home: the experiment crate).
pub use tessel_experiment::file_name;

/// A runner factory for the chosen isolation (workers are `current_exe() worker`), or for
/// the measurement farm when `measure` names a broker (`nats://HOST:PORT[?cpu=NAME&wait=S]`,
/// docs/farm.md): what a [`TuneJob`] makes its runners with.
pub fn runner_factory(isolation: Isolation, measure: Option<String>) -> RunnerFactory {
    Arc::new(move |options| match &measure {
        None => make_runner(isolation, options),
        Some(spec) => super::farm::farm_runner(spec, options),
    })
}

/// A tuning job's options for `target` measured with `isolation` (or on the farm at
/// `measure`): the defaults ([`TuneOptions::new`]) and the chosen runner; the layout rewrite
/// stays at the code generator's default.
pub fn job_options(target: Target, isolation: Isolation, measure: Option<&str>) -> TuneOptions {
    TuneOptions {
        runner: runner_factory(isolation, measure.map(str::to_string)),
        ..TuneOptions::new(target)
    }
}

/// How a search's cost model starts ([`SearchOptions::model_start`]).
#[derive(Clone, Debug)]
pub enum ModelStart {
    /// From a pre-trained model.
    Pretrained {
        /// The model.
        model: Arc<Pretrained>,
        /// Where it came from (a path, or `built-in, <target>`).
        origin: String,
    },
    /// Cold, and why.
    Cold(String),
}

impl std::fmt::Display for ModelStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelStart::Pretrained { model, origin } => write!(
                f,
                "pre-trained on {} programs ({origin})",
                model.n_samples()
            ),
            ModelStart::Cold(why) => write!(f, "cold ({why})"),
        }
    }
}

fn usage(e: impl std::fmt::Display) -> DriverError {
    DriverError::Usage(e.to_string())
}

/// Search options (flattened into each searching command).
#[derive(clap::Args, Debug, Clone)]
pub struct SearchOptions {
    /// Search policies: `rl` (discounted-UCB sketch selection; the default, the config the
    /// project's own experiment measures best: README, "The learned policies"), `baseline`
    /// (Ansor: uniform sketch choice, fixed mutation weights), `ml` (learned mutation-rule
    /// predictor) or `both`.
    #[arg(long, default_value = "rl")]
    pub policy: String,
    /// Overrides the sketch policy: uniform, ducb, thompson or egreedy.
    #[arg(long)]
    pub sketch_policy: Option<String>,
    /// Overrides the mutation policy: fixed or classifier.
    #[arg(long)]
    pub mutation_policy: Option<String>,
    /// The cost model: gbdt (the search's gradient-boosted trees), gbdt-rank (pairwise
    /// ranking), gbdt-packsum (Ansor's formulation) or random (ablation).
    #[arg(long, default_value = "gbdt")]
    pub cost_model: String,
    /// Start the `gbdt` cost model from a pre-trained model instead of cold (random until
    /// it has trained on 100 programs of this search): `builtin` (the one shipped for the
    /// target's ISA) or a file written by `tessel cost-model train`.
    #[arg(long)]
    pub pretrained: Option<String>,
    /// Seed of every random decision.
    #[arg(long, default_value_t = 0, value_parser = super::numbers::seed, allow_negative_numbers = true)]
    pub seed: u64,
    /// Threads the kernels run on (default: every core).
    #[arg(long, value_parser = super::numbers::positive, allow_negative_numbers = true)]
    pub threads: Option<usize>,
    /// Candidates measured per round.
    #[arg(long, default_value_t = 64, value_parser = super::numbers::positive, allow_negative_numbers = true)]
    pub measures_per_round: usize,
    /// Evolution population.
    #[arg(long, default_value_t = 2048, value_parser = super::numbers::positive, allow_negative_numbers = true)]
    pub population: usize,
    /// Where candidates run.
    #[arg(long, value_enum, default_value_t = Isolation::Worker)]
    pub isolation: Isolation,
    /// Measure on the farm: `nats://HOST:PORT[?cpu=NAME&wait=SECONDS]` (docs/farm.md).
    #[arg(long)]
    pub measure: Option<String>,
    /// Which micro-kernel `B` operands are packed into the panel layout: `off` (none),
    /// `weights` (constant weights, once, before the timed calls: Ansor's layout rewrite) or
    /// `all` (also every other input, inside every timed call). Records say which was used.
    #[arg(long, value_parser = parse_layout_rewrite, default_value = "all")]
    pub layout_rewrite: LayoutRewrite,
    /// Same as `--layout-rewrite off`.
    #[arg(long, conflicts_with = "layout_rewrite")]
    pub no_layout_rewrite: bool,
    /// Flush the CPU caches before every timed repeat, so that each candidate reads its
    /// weights and inputs cold as a layer inside a whole network does (TVM's
    /// `enable_cpu_cache_flush`). Part of the records key.
    #[arg(long)]
    pub flush_cache: bool,
    /// Where each candidate's constant weights (and their packed copies) are when a timed
    /// call starts: `warm` (left in the core's caches by the previous call), `shared` (moved
    /// to the shared last-level cache first, CLDEMOTE) or `memory` (evicted from every cache,
    /// CLFLUSHOPT). Default: `warm` for `tune`; for `tune-network`, where a network keeps them
    /// (see `--activations`). Part of the records key.
    #[arg(long, conflicts_with = "flush_cache")]
    pub weights: Option<Residence>,
    /// Where each candidate's other inputs (activations) are when a timed call starts:
    /// `warm`, `shared` or `memory`, as `--weights`. Default: `warm` for `tune`; for
    /// `tune-network`, as a layer of a network finds them: activations `shared` (the previous
    /// layer wrote them, half on the other core), weights `shared` when the network's weights
    /// fit in 32 MiB and `memory` when they do not (ResNet-50: 97 MiB), `warm` for either
    /// where the CPU lacks CLDEMOTE; its estimate is then what the built network runs at
    /// (docs/measurement.md). Part of the records key.
    #[arg(long, conflicts_with = "flush_cache")]
    pub activations: Option<Residence>,
    /// The target machine (`--target`, `--no-micro-kernels`).
    #[command(flatten)]
    pub target: TargetArgs,
    /// Further measurements of a candidate whose first reading is within 1 % of the best
    /// (it gets the median of all its repeats); 0 (the default) measures every
    /// candidate once.
    #[arg(long, default_value_t = 0, value_parser = super::numbers::non_negative, allow_negative_numbers = true)]
    pub confirm: usize,
    /// At the end, measure the search's N fastest programs again in a fresh worker, side by
    /// side (3 interleaved rounds each): the best reported and the records' `confirmed`
    /// figures are that re-measurement, not the search's luckiest reading. 0 turns it off.
    #[arg(long, default_value_t = 5)]
    pub final_confirm: usize,
}

impl SearchOptions {
    /// Kernel threads (every core by default).
    pub fn threads(&self) -> usize {
        resolve_threads(self.threads)
    }

    /// The target chosen (`--target`, or generic with `--no-micro-kernels`), with the
    /// kernel threads as its cores: the one value the sketch rules' hardware parameters
    /// and the code generator's settings both come from.
    pub fn target(&self) -> Target {
        self.target.resolve(self.threads())
    }

    /// The layout rewrite mode chosen (`--no-layout-rewrite` is `off`).
    pub fn layout_rewrite(&self) -> LayoutRewrite {
        if self.no_layout_rewrite {
            LayoutRewrite::Off
        } else {
            self.layout_rewrite
        }
    }

    /// The sketch and mutation policy names chosen (the `--policy` preset's, unless
    /// overridden), checked against the registries.
    pub fn policy_names(&self) -> Result<(String, String), DriverError> {
        let preset = registry::preset(&self.policy).map_err(|e| {
            DriverError::Usage(format!(
                "unknown --policy `{}` (known: {})",
                self.policy,
                e.known.join(", ")
            ))
        })?;
        let s = self.sketch_policy.as_deref().unwrap_or(preset.sketch);
        let m = self.mutation_policy.as_deref().unwrap_or(preset.mutation);
        registry::sketch_policies().factory(s).map_err(usage)?;
        registry::mutation_policies().factory(m).map_err(usage)?;
        Ok((s.to_string(), m.to_string()))
    }

    /// The tuning job these flags describe, with a budget of `trials`: the target (and so
    /// the sketch rules' hardware and the code generator's ISA), the policies, the cost
    /// model, the sizes and seed, the layout rewrite and the runner.
    pub fn job(&self, trials: usize) -> Result<TuneJob, DriverError> {
        self.job_with_model_start(trials).map(|(job, _)| job)
    }

    /// [`SearchOptions::job`] and how its cost model starts (resolved once, for reporting).
    pub fn job_with_model_start(
        &self,
        trials: usize,
    ) -> Result<(TuneJob, ModelStart), DriverError> {
        let (sketch, mutation) = self.policy_names()?;
        let mut options = job_options(self.target(), self.isolation, self.measure.as_deref())
            .with_policies(&sketch, &mutation)
            .map_err(usage)?
            .with_cost_model(&self.cost_model)
            .map_err(usage)?;
        let start = self.model_start()?;
        if let ModelStart::Pretrained { model, .. } = &start {
            let (model, warmup) = (
                Arc::clone(model),
                GbdtModelParams::squared_error().num_warmup_sample,
            );
            options.cost_model = Arc::new(move |seed| Box::new(model.model(seed, warmup)));
        }
        options.params = TuneParams {
            trials,
            measures_per_round: self.measures_per_round.max(1),
            evolution: EvolutionParams {
                population: self.population.max(1),
                ..EvolutionParams::default()
            },
            seed: self.seed,
            ..TuneParams::default()
        };
        options.layout_rewrite = self.layout_rewrite();
        options.flush_cache = self.flush_cache;
        options.weights = self.weights.unwrap_or_default();
        options.activations = self.activations.unwrap_or_default();
        options.weights.supported().map_err(DriverError::Usage)?;
        options
            .activations
            .supported()
            .map_err(DriverError::Usage)?;
        Ok((TuneJob::new(options), start))
    }

    /// How the cost model starts: cold (the default, or another `--cost-model`, or a model
    /// made for other features or another target, or no built-in model for the target: that
    /// is said, not an error), or from `--pretrained builtin|FILE`. A file that cannot be
    /// read or is not a model is an error.
    fn model_start(&self) -> Result<ModelStart, DriverError> {
        let target = self.target().isa.name();
        let Some(choice) = &self.pretrained else {
            return Ok(ModelStart::Cold("the default".into()));
        };
        if self.cost_model != "gbdt" {
            return Err(usage("--pretrained starts the `gbdt` cost model only"));
        }
        let (parsed, origin) = if choice == "builtin" {
            match tessel_cost_model::builtin_pretrained(target) {
                Some(text) => (
                    Pretrained::parse(text, "the built-in model", target),
                    format!("built-in, {target}"),
                ),
                None => {
                    return Ok(ModelStart::Cold(format!(
                        "no built-in pre-trained model for {target}"
                    )))
                }
            }
        } else {
            (Pretrained::load(choice, target), choice.clone())
        };
        match parsed {
            Ok(model) => Ok(ModelStart::Pretrained {
                model: Arc::new(model),
                origin,
            }),
            Err(e @ CostModelError::Mismatch { .. }) => Ok(ModelStart::Cold(e.to_string())),
            Err(e) => Err(DriverError::failed(e)),
        }
    }

    /// How readings near the best are confirmed (`--confirm`).
    pub fn confirm(&self) -> Confirm {
        Confirm::with_extra(self.confirm)
    }

    /// How the search's fastest programs are confirmed at its end (`--final-confirm`).
    pub fn final_confirm(&self) -> FinalConfirm {
        FinalConfirm {
            top: self.final_confirm,
            ..FinalConfirm::default()
        }
    }
}

/// Parses a `--target` value against this CPU (`native`, `generic`, `avx2`, `avx512`): an
/// ISA the CPU lacks is an error naming the missing feature.
pub fn parse_target(s: &str) -> Result<Target, String> {
    Target::parse_host(s).map_err(|e| e.to_string())
}

/// The target options of every command that compiles or searches.
#[derive(clap::Args, Debug, Clone)]
pub struct TargetArgs {
    /// The machine to compile and search for: `native` (this CPU's highest ISA level),
    /// `avx512` (AVX-512F micro-kernels), `avx2` (AVX2+FMA micro-kernels) or `generic`
    /// (plain Cranelift code). An ISA this CPU lacks is refused, naming the missing feature.
    #[arg(long, value_parser = parse_target, default_value = "native")]
    pub target: Target,
    /// Same as `--target generic` (plain Cranelift code, no micro-kernels).
    #[arg(long, conflicts_with = "target")]
    pub no_micro_kernels: bool,
}

impl TargetArgs {
    /// The target chosen, with `threads` cores (generic with `--no-micro-kernels`).
    pub fn resolve(&self, threads: usize) -> Target {
        let target = if self.no_micro_kernels {
            Target::with_isa(Isa::Generic)
        } else {
            self.target
        };
        target.with_cores(threads as i64)
    }
}

/// Parses a `--layout-rewrite` value (`off`, `weights` or `all`).
pub fn parse_layout_rewrite(s: &str) -> Result<LayoutRewrite, String> {
    s.parse()
        .map_err(|e: tessel_codegen::ParseLayoutRewriteError| e.to_string())
}

/// A progress bar over `trials` (drawn on stderr; hidden when it is not a terminal).
pub fn progress_bar(trials: usize) -> ProgressBar {
    let bar = ProgressBar::new(trials as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {bar:30} {pos}/{len} trials  {msg}  ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// The `--time-budget` argument as a duration: a positive, finite number of seconds.
pub fn time_budget(seconds: Option<f64>) -> Result<Option<std::time::Duration>, DriverError> {
    seconds
        .map(|s| {
            std::time::Duration::try_from_secs_f64(s)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    DriverError::Usage(format!(
                        "--time-budget must be a positive number of seconds, not {s}"
                    ))
                })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        search: SearchOptions,
    }

    fn mode(args: &[&str]) -> Result<LayoutRewrite, clap::Error> {
        let argv = std::iter::once("tessel").chain(args.iter().copied());
        Cli::try_parse_from(argv).map(|c| c.search.layout_rewrite())
    }

    #[test]
    fn layout_rewrite_flag_parses_with_all_as_default_and_the_old_alias() {
        assert_eq!(mode(&[]).expect("default"), LayoutRewrite::All);
        for m in LayoutRewrite::MODES {
            assert_eq!(mode(&["--layout-rewrite", m.name()]).expect("mode"), m);
        }
        assert_eq!(
            mode(&["--no-layout-rewrite"]).expect("alias"),
            LayoutRewrite::Off
        );
        assert!(mode(&["--layout-rewrite", "sometimes"]).is_err());
        assert!(mode(&["--no-layout-rewrite", "--layout-rewrite", "all"]).is_err());
    }

    #[test]
    fn flush_cache_reaches_the_measured_timing() {
        let job = |args: &[&str]| {
            let argv = std::iter::once("tessel").chain(args.iter().copied());
            let cli = Cli::try_parse_from(argv).expect("parses");
            cli.search.job(8).expect("job").measure_options()
        };
        assert!(!job(&[]).timing.flush_cache);
        assert!(job(&["--flush-cache"]).timing.flush_cache);
        assert_eq!(job(&[]).timing.weights, Residence::Warm);
        assert_eq!(
            job(&["--weights", "memory"]).timing.weights,
            Residence::Memory
        );
        assert_eq!(job(&[]).timing.activations, Residence::Warm);
        assert_eq!(
            job(&["--activations", "memory"]).timing.activations,
            Residence::Memory
        );
        assert!(Cli::try_parse_from(["tessel", "--weights", "memory", "--flush-cache"]).is_err());
        let bad = Cli::try_parse_from(["tessel", "--weights", "cold"])
            .err()
            .expect("refused");
        assert!(
            bad.to_string().contains("expected warm, shared or memory"),
            "{bad}"
        );
    }
}
