//! `tessel tune-network <network>`: tune every task of a built-in network with Ansor's task
//! scheduler and report the estimated network latency `Σ weight × best latency`.
//!
//! One cost model serves all tasks; one worker measures them; every measurement goes to one
//! records file (default `<network>.tessel.jsonl`), and an existing file resumes every task:
//! its records (in file order) become the task's first rounds, so a resumed run has no
//! warm-up for tasks with a valid record and the gradient continues from their history;
//! `--trials` counts the new trials only.
//!
//! At the end the tuned network is built from the records into one module and run
//! (`tessel_runtime`): the measured median latency is printed beside the estimate
//! (`--no-run` skips it; `--run-repeat` sets the timed inferences).

use super::search_options::{progress_bar, SearchOptions};
use crate::error::DriverError;
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tessel_measure::options::Residence;
use tessel_search::confirm::{confirm_leaders, Confirmation};
use tessel_search::harness::{resume_records, HarnessMeasurer};
use tessel_search::scheduler::{SchedulerParams, Strategy, TaskScheduler, TaskSpec};
use tessel_search::tuner::LEADERS;
use tessel_workloads::networks;

/// How trials are shared among tasks.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StrategyArg {
    /// Ansor's gradient-based allocation.
    Gradient,
    /// One round per task in turn.
    RoundRobin,
}

/// Arguments of `tessel tune-network`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A built-in network (resnet50, mobilenet-v2, bert-base) or an `.onnx` file.
    pub network: String,
    /// Input shapes of an `.onnx` model.
    #[command(flatten)]
    pub input: super::network_source::InputArgs,
    /// Batch size.
    #[arg(long, default_value_t = 1)]
    pub batch: i64,
    /// Measurement trials over all tasks (default: 64 per task).
    #[arg(long, value_parser = super::numbers::positive, allow_negative_numbers = true)]
    pub trials: Option<usize>,
    /// Stop starting new rounds after this many seconds (the warm-up included).
    #[arg(long, allow_negative_numbers = true)]
    pub time_budget: Option<f64>,
    /// Task scheduling strategy.
    #[arg(long, value_enum, default_value_t = StrategyArg::Gradient)]
    pub strategy: StrategyArg,
    /// The gradient's forward guess: a task with t rounds is guessed to lose 1/t^P of its
    /// latency in its next round (1: Ansor's; default: the scheduler's, 1.7).
    #[arg(long, value_name = "P")]
    pub forward_power: Option<f64>,
    /// The gradient's exploration floor: a task with fewer rounds than F × the mean of the
    /// live tasks is tuned first (0: off, Ansor's; default: the scheduler's, 0.85).
    #[arg(long, value_name = "F")]
    pub round_floor: Option<f64>,
    /// The gradient's forward guess removes 1/t^P of a task's whole latency (Ansor's), not
    /// of its room: its latency minus what it would take at its similarity group's best
    /// FLOP/s (the scheduler's default).
    #[arg(long)]
    pub no_group_room: bool,
    /// Records file (default `<network>.tessel.jsonl` here); an existing one resumes.
    #[arg(long)]
    pub records: Option<PathBuf>,
    /// Policies, seed, threads, sizes (a round measures at most min(per round, trials /
    /// tasks), as Ansor), isolation.
    #[command(flatten)]
    pub search: SearchOptions,
    /// Skip the end of the run that builds the tuned network into one module
    /// (`tessel_runtime`, as `tessel run-network` does) and times `--run-repeat` inferences,
    /// printing the measured latency beside the estimate.
    #[arg(long)]
    pub no_run: bool,
    /// Inferences timed at the end (after 3 untimed ones).
    #[arg(long, default_value_t = 20, value_parser = super::numbers::positive, allow_negative_numbers = true)]
    pub run_repeat: usize,
    /// Also print one machine-readable JSON object as the last line.
    #[arg(long)]
    pub json: bool,
}

/// The tuned network built and run at the end of `tune-network`.
struct Measured {
    /// Latency of the timed inferences.
    latency: super::run_network::Latency,
    /// The module's build time (ms).
    build_ms: f64,
    /// Tasks that found no usable record and ran a default schedule.
    fallbacks: Vec<String>,
}

/// Builds the network from the records at `path` for the target and threads it was tuned
/// for, runs 3 inferences untimed and times `args.run_repeat` more.
fn measure_module(args: &Args, path: &std::path::Path) -> Result<Measured, DriverError> {
    let (net, weights) =
        super::network_source::load_with_weights(&args.network, args.batch, &args.input)?;
    let weights = weights.unwrap_or_else(|| networks::Weights::random(&net, 1));
    let mut module = tessel_runtime::Module::build(
        &net,
        &weights,
        Some(path),
        &args.search.target(),
        args.search.threads(),
    )
    .map_err(DriverError::failed)?;
    let x = networks::random_inputs(&net, 2);
    let refs: Vec<&[f32]> = x.iter().map(|v| v.as_slice()).collect();
    super::run_network::time_inferences(&mut module, &refs, 3)?;
    let latency = super::run_network::time_inferences(&mut module, &refs, args.run_repeat)?;
    let r = module.report();
    Ok(Measured {
        latency,
        build_ms: r.timings.total.as_secs_f64() * 1e3,
        fallbacks: r.fallbacks().map(|t| t.name.clone()).collect(),
    })
}

/// Networks whose weights take more bytes than this find them in memory, not in the shared
/// cache, at every layer: the last-level cache a core can count on, measured on this
/// project's 2-vCPU machines (a 32 MiB array is read at cache speed, a 100 MiB one at memory
/// speed), not the size the CPU reports (480 MiB under KVM).
pub const SHARED_CACHE_BYTES: usize = 32 << 20;

/// Bytes of the constant weights `dag` reads.
fn weight_bytes_of(dag: &tessel_ir::ComputeDag) -> usize {
    dag.inputs()
        .into_iter()
        .filter(|&i| dag.is_constant(i))
        .map(|i| dag.op(i).num_elements().max(0) as usize * std::mem::size_of::<f32>())
        .sum()
}

/// Where `tune-network` measures each candidate's operands unless `--weights` and
/// `--activations` say, for a network whose weights take `weight_bytes`: as a layer of the
/// built network finds them (activations in the shared cache; weights there too when they
/// fit in [`SHARED_CACHE_BYTES`], else in memory), where the CPU can place them (without
/// CLDEMOTE: warm, except weights in memory). Measured on ResNet-50 and MobileNet-V2
/// (session 19, `docs/measurement.md`): the sum of the tasks' times so is 0.96–1.01 × the
/// built network's latency; warm, 0.70–0.80 ×.
pub(crate) fn network_residence(weight_bytes: usize) -> (Residence, Residence) {
    let shared = if Residence::Shared.supported().is_ok() {
        Residence::Shared
    } else {
        Residence::Warm
    };
    let weights = if weight_bytes > SHARED_CACHE_BYTES {
        Residence::Memory
    } else {
        shared
    };
    (weights, shared)
}

/// Bytes of the constant weights of the network made of `tasks` (each task's weights counted
/// once per use of the task).
pub(crate) fn network_weight_bytes(tasks: &[networks::Task]) -> usize {
    tasks
        .iter()
        .map(|t| t.weight * weight_bytes_of(&t.dag))
        .sum()
}

/// Runs the subcommand.
pub fn run(args: &Args) -> Result<(), DriverError> {
    let (sketch_name, mutation_name) = args.search.policy_names()?;
    let forward_power = match args.forward_power {
        Some(p) if !(p.is_finite() && p > 0.0) => {
            return Err(DriverError::Usage(format!(
                "--forward-power must be a positive number, not {p}"
            )))
        }
        Some(p) => p,
        None => SchedulerParams::default().forward_power,
    };
    let round_floor = match args.round_floor {
        Some(f) if !(f.is_finite() && (0.0..=1.0).contains(&f)) => {
            return Err(DriverError::Usage(format!(
                "--round-floor must be a number from 0 to 1, not {f}"
            )))
        }
        Some(f) => f,
        None => SchedulerParams::default().round_floor,
    };
    let net = super::network_source::load(&args.network, args.batch, &args.input)?;
    let tasks = networks::extract_tasks(&net)?;
    let path = args
        .records
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.tessel.jsonl", args.network)));
    let trials = args.trials.unwrap_or(64 * tasks.len());
    // Every task's tuner has an unbounded budget: the scheduler decides.
    // A network's layers find their weights out of the core's caches: measure them so
    // (`--weights`), so that the estimate is what the built network runs at.
    let weight_bytes = network_weight_bytes(&tasks);
    let (weights, activations) = network_residence(weight_bytes);
    let mut search = args.search.clone();
    search.weights.get_or_insert(weights);
    search.activations.get_or_insert(activations);
    let job = search.job(usize::MAX)?;
    let mut scorer = job.scorer(job.seed());
    let mut specs = Vec::with_capacity(tasks.len());
    let mut task_workloads = Vec::with_capacity(tasks.len());
    let mut resumed = 0;
    // Only records measured under this run's code generation settings and cache conditions
    // resume.
    let measure_options = job.measure_options();
    for (i, t) in tasks.iter().enumerate() {
        let w = super::network_source::task_workload(&args.network, &net, t)?;
        let problem = job
            .problem(Arc::new(w.dag.clone()))
            .map_err(DriverError::failed)?;
        let previous = resume_records(&path, &w, &problem.dag, &measure_options)
            .map_err(DriverError::failed)?
            .states;
        resumed += previous.len();
        // The resumed latencies, in record order, rebuild the task's rounds for the gradient.
        let latencies: Vec<Option<f64>> = previous.iter().map(|p| p.1).collect();
        let session = job
            .tuner(&problem, job.seed().wrapping_add(i as u64))
            .resume_from(previous)
            .start(&mut scorer);
        specs.push(
            TaskSpec::new(&t.name, t.weight as f64, t.flop(), session)
                .with_tag(t.anchor_kind)
                .with_resumed(latencies),
        );
        task_workloads.push(w);
    }
    let task_workloads_for_confirm = task_workloads.clone();
    let mut measurer = HarnessMeasurer::for_tasks(
        task_workloads,
        job.runner().map_err(DriverError::failed)?,
        Some(&path),
    )
    .map_err(DriverError::failed)?
    .lowerings(job.lowerings().clone())
    .confirming(args.search.confirm())
    .interruptible(super::stopping::install_interrupt()?);
    let params = SchedulerParams {
        strategy: match args.strategy {
            StrategyArg::Gradient => Strategy::Gradient,
            StrategyArg::RoundRobin => Strategy::RoundRobin,
        },
        total_trials: trials,
        measures_per_round: args.search.measures_per_round.max(1),
        seed: args.search.seed,
        time_budget: super::search_options::time_budget(args.time_budget)?,
        forward_power,
        round_floor,
        group_room: !args.no_group_room,
        ..SchedulerParams::default()
    };
    let bar = progress_bar(trials);
    let hook = bar.clone();
    let names: Vec<String> = tasks.iter().map(|t| t.name.clone()).collect();
    let start = Instant::now();
    let mut scheduler = TaskScheduler::new(specs, params)
        .map_err(DriverError::failed)?
        .on_round(move |r| {
            hook.set_position(r.trials as u64);
            let est = r
                .objective
                .map_or("-".into(), |s| format!("{:.2} ms", s * 1e3));
            hook.set_message(format!(
                "task {} ({})  network {est}",
                r.task,
                names[r.task].chars().take(24).collect::<String>()
            ));
        });
    let result = scheduler.run(&mut measurer, &mut scorer);
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    // Every task's fastest programs measured again in a fresh worker (`--final-confirm`):
    // the figures reported below, and the estimate, are those.
    let how = args.search.final_confirm();
    // Not after an interrupt or a failed records write (see `tune`).
    let confirmations: Option<Vec<Confirmation>> = if how.is_on() && !measurer.is_halted() {
        // One new worker per round, shared by the tasks (see `tune`).
        let mut runners = (0..how.runners())
            .map(|_| job.runner())
            .collect::<Result<Vec<_>, _>>()
            .map_err(DriverError::failed)?;
        Some(
            (0..tasks.len())
                .map(|i| {
                    let leaders = scheduler
                        .session(i)
                        .map(|s| s.leaders(LEADERS))
                        .unwrap_or_default();
                    confirm_leaders(
                        &task_workloads_for_confirm[i],
                        &leaders,
                        &mut runners,
                        how,
                        measurer.writer_mut(),
                    )
                })
                .collect(),
        )
    } else {
        None
    };
    let confirm_seconds = start.elapsed().as_secs_f64() - seconds;
    let task_best = |i: usize| -> Option<f64> {
        match &confirmations {
            Some(c) => c[i].best().and_then(|p| p.seconds),
            None => result.tasks[i].best_seconds,
        }
    };
    let estimated: Option<f64> = (0..tasks.len())
        .map(|i| task_best(i).map(|s| s * result.tasks[i].weight))
        .sum();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(
        out,
        "{} (batch {}): {} tasks, {} trials in {seconds:.1} s; measured with the weights ({:.1} MiB) {} and the activations {}{}",
        args.network,
        args.batch,
        tasks.len(),
        result.trials,
        weight_bytes as f64 / (1 << 20) as f64,
        measure_options.timing.weights.name(),
        measure_options.timing.activations.name(),
        if resumed > 0 {
            format!(", {resumed} records resumed")
        } else {
            String::new()
        }
    )?;
    writeln!(
        out,
        "{:>3} {:>6} {:>7} {:>11} {:>9} {:>10}  task",
        "#", "weight", "trials", "best ms", "GFLOP/s", "search ms"
    )?;
    for (i, t) in result.tasks.iter().enumerate() {
        let best = task_best(i);
        let ms = best.map_or("-".to_string(), |s| format!("{:.4}", s * 1e3));
        let gf = best.map_or("-".to_string(), |s| {
            format!("{:.1}", t.flop as f64 / s / 1e9)
        });
        let read = t
            .best_seconds
            .map_or("-".to_string(), |s| format!("{:.4}", s * 1e3));
        writeln!(
            out,
            "{i:>3} {:>6} {:>7} {ms:>11} {gf:>9} {read:>10}  {}",
            t.weight, t.trials, t.name
        )?;
    }
    if let Some(c) = &confirmations {
        let failed: usize = c.iter().map(Confirmation::failed).sum();
        writeln!(
            out,
            "best ms: each task's {} best programs re-measured in fresh workers, {} rounds side by side, then the fastest {} more times ({confirm_seconds:.1} s{}); search ms: the search's own reading",
            how.top,
            how.rounds,
            how.reporting,
            if failed > 0 { format!(", {failed} programs failed") } else { String::new() }
        )?;
    }
    match estimated {
        Some(s) => writeln!(
            out,
            "estimated network latency {:.3} ms (Σ weight × best latency)",
            s * 1e3
        )?,
        None => writeln!(
            out,
            "estimated network latency: not every task has a valid program yet"
        )?,
    }
    // The tuned network, built and run: the estimate's check.
    let measured = if args.no_run || measurer.is_halted() {
        None
    } else {
        out.flush()?;
        Some(measure_module(args, &path))
    };
    match &measured {
        Some(Ok(m)) => {
            let ratio = estimated.map_or(String::new(), |e| {
                format!("; measured ÷ estimate {:.2}", m.latency.median / e)
            });
            writeln!(
                out,
                "measured network latency {:.3} ms (median of {} inferences, p90 {:.3} ms, of \
                 the module built from the records in {:.0} ms{}){ratio}",
                m.latency.median * 1e3,
                args.run_repeat,
                m.latency.p90 * 1e3,
                m.build_ms,
                if m.fallbacks.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; {} tasks on default schedules: {}",
                        m.fallbacks.len(),
                        m.fallbacks.join(", ")
                    )
                }
            )?;
        }
        Some(Err(e)) => writeln!(out, "measured network latency: not measured ({e})")?,
        None => {}
    }
    writeln!(
        out,
        "stopped {:?}; records {}",
        result.stop_reason,
        path.display()
    )?;
    if args.json {
        let summary = json!({
            "network": args.network,
            "batch": args.batch,
            "tasks": result.tasks.iter().enumerate().map(|(i, t)| json!({"name": t.name, "weight": t.weight, "flop": t.flop,
                "trials": t.trials, "best_latency_ms": task_best(i).map(|s| s * 1e3),
                "best_gflops": task_best(i).map(|s| t.flop as f64 / s / 1e9),
                "search_best_latency_ms": t.best_seconds.map(|s| s * 1e3)})).collect::<Vec<_>>(),
            "trials": result.trials,
            "estimated_latency_ms": estimated.map(|s| s * 1e3),
            "search_estimated_latency_ms": result.estimated_seconds.map(|s| s * 1e3),
            "confirmation": confirmations.as_ref().map(|_| json!({"top": how.top, "rounds": how.rounds, "reporting": how.reporting, "seconds": confirm_seconds})),
            "search_seconds": seconds,
            "stop_reason": format!("{:?}", result.stop_reason),
            "strategy": format!("{:?}", args.strategy),
            "policies": {"sketch": sketch_name, "mutation": mutation_name},
            "records": path.display().to_string(),
            "weights": measure_options.timing.weights.name(),
            "activations": measure_options.timing.activations.name(),
            "resumed": resumed,
            "history": result.history.iter().filter_map(|r| r.objective.map(|o| json!({"trials": r.trials, "seconds": r.seconds, "estimated_latency_ms": o * 1e3}))).collect::<Vec<_>>(),
        });
        let mut summary = summary;
        if let Some(Ok(m)) = &measured {
            summary["measured"] = json!({
                "median_ms": m.latency.median * 1e3,
                "p90_ms": m.latency.p90 * 1e3,
                "min_ms": m.latency.min * 1e3,
                "repeat": args.run_repeat,
                "build_ms": m.build_ms,
                "fallbacks": m.fallbacks,
                "over_estimate": estimated.map(|e| m.latency.median / e),
            });
        }
        summary["stopped"] = super::stopping::json_fields(&measurer);
        writeln!(out, "{summary}")?;
    }
    super::stopping::outcome(&measurer, &path)
}
