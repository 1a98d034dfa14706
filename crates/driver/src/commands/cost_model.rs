//! `tessel cost-model eval --records FILE... [--model M] [--json]`: how well the learned cost
//! model ranks measured schedules it has not seen.
//!
//! Every record is replayed on its workload's DAG, lowered and featurised; its label is the
//! normalized throughput `min_cost / cost` over the records of the same workload and setting
//! (threads, micro-kernels, layout rewrite; 0 for a failed record). The models are
//! trained on one part and tested on the rest, split two ways: by candidate (a seeded random
//! `--test-fraction` of all records) and by workload (each workload held out in turn, when
//! there are several). For each model and split the command prints pairwise ranking accuracy,
//! recall of the true top-k in the predicted top-k, RMSE, training and prediction time, and
//! pairwise accuracy per workload. Pairwise accuracy is given twice: over all pairs, and over
//! the pairs whose costs differ by more than the measurement noise
//! ([`tessel_cost_model::eval::NOISE`]).

use crate::error::DriverError;
use serde_json::json;
use std::io::Write;
use std::time::Instant;
use tessel_cost_model::dataset::{split_by_candidate, split_by_workload, Dataset, Sample};
use tessel_cost_model::eval::{evaluate, EvalReport, NOISE};
use tessel_cost_model::{
    CodegenFlags, CostModel, GbdtModel, GbdtModelParams, Pretrained, ProgramFeatures, GBDT_PRESETS,
};

/// Arguments of `tessel cost-model`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: Sub,
}

/// The subcommands of `tessel cost-model`.
#[derive(clap::Subcommand, Debug)]
pub enum Sub {
    /// Train on part of measured records, test on the rest, print accuracy and timing.
    Eval(EvalArgs),
    /// Train the search's model on measured records and save it as a pre-trained model
    /// for their target (the file `tune --pretrained` reads; the built-in one is made so).
    Train(TrainArgs),
}

/// Arguments of `tessel cost-model train`.
#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Record files (JSON lines), e.g. written by `tessel dataset`; all of one target.
    #[arg(long, num_args = 1.., required = true)]
    pub records: Vec<std::path::PathBuf>,
    /// Leave out the records of workloads whose spec contains one of these texts (hold out
    /// what the model will be evaluated on).
    #[arg(long, num_args = 1..)]
    pub exclude: Vec<String>,
    /// Where to write the model.
    #[arg(long)]
    pub out: std::path::PathBuf,
}

/// Arguments of `tessel cost-model eval`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// Record files (JSON lines written by the measurement harness).
    #[arg(long, num_args = 1.., required = true)]
    pub records: Vec<std::path::PathBuf>,
    /// The model to evaluate, a name of the search's cost-model registry (`gbdt`, the search's
    /// model; `gbdt-rank`; `gbdt-packsum`, Ansor's formulation; `random`), or `all` of them.
    /// GBDT variants are trained without the search's random warm-up.
    #[arg(long, default_value = "all")]
    pub model: String,
    /// Fraction of the records held out in the split by candidate.
    #[arg(long, default_value_t = 0.2)]
    pub test_fraction: f64,
    /// Seed of the split by candidate.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The k of recall@k.
    #[arg(long, default_value_t = 30)]
    pub k: usize,
    /// Boosting rounds of the GBDT models.
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Save the default model (`GbdtModelParams::default()`) trained on all records to this
    /// file.
    #[arg(long)]
    pub save_model: Option<std::path::PathBuf>,
    /// Also evaluate a pre-trained model (`builtin`: the one built in for this CPU's ISA, or a
    /// file saved by `cost-model train`) as it starts a search: predicting with its own trees
    /// only, never trained on these records (its rows are named `pretrained`). Evaluated on
    /// records of workloads it was not trained on, this is its held-out ranking accuracy.
    #[arg(long, value_name = "builtin|FILE")]
    pub pretrained: Option<String>,
    /// Also print one machine-readable JSON object as the last line.
    #[arg(long)]
    pub json: bool,
}

/// Runs the subcommand, writing to stdout.
pub fn run(args: &Args) -> Result<(), DriverError> {
    match &args.command {
        Sub::Eval(a) => eval(a),
        Sub::Train(a) => train(a),
    }
}

/// Makes a fresh, untrained model.
type Factory = Box<dyn Fn() -> Box<dyn CostModel>>;

/// The models `--model` names, from the search's cost-model registry. A GBDT preset is built
/// from its parameters without warm-up (evaluation trains once, on every training sample) and
/// with `--rounds`; any other entry as the registry makes it.
fn models(args: &EvalArgs) -> Result<Vec<Factory>, DriverError> {
    let registry = tessel_search::registry::cost_models();
    let names: Vec<String> = if args.model == "all" {
        registry.names().into_iter().map(str::to_string).collect()
    } else {
        vec![args.model.clone()]
    };
    let rounds = args.rounds;
    names
        .into_iter()
        .map(|name| -> Result<Factory, DriverError> {
            if let Some(preset) = GBDT_PRESETS.iter().find(|p| p.name == name) {
                let make = preset.params;
                return Ok(Box::new(move || {
                    let mut p = GbdtModelParams {
                        num_warmup_sample: 0,
                        ..make()
                    };
                    if let Some(r) = rounds {
                        p.trees.n_rounds = r;
                    }
                    Box::new(GbdtModel::new(p)) as Box<dyn CostModel>
                }));
            }
            let make = registry
                .factory(&name)
                .map_err(|e| DriverError::Usage(format!("--model `{name}`: {e} (or `all`)")))?;
            Ok(Box::new(move || make(0)))
        })
        .collect()
}

/// A model that predicts with the pre-trained trees of `--pretrained` and never trains: its
/// warm-up is never reached.
struct PriorOnly(GbdtModel);

impl CostModel for PriorOnly {
    fn name(&self) -> String {
        "pretrained".to_string()
    }
    fn predict(&self, programs: &[ProgramFeatures]) -> Vec<f32> {
        self.0.predict(programs)
    }
    fn update(&mut self, _: &[ProgramFeatures], _: &[f32]) {}
}

/// The factory of `--pretrained builtin|FILE` for this CPU's ISA (the search's default target).
fn pretrained(choice: &str) -> Result<Factory, DriverError> {
    let target = tessel_ir::target::CpuFeatures::host().best_isa().name();
    let model = if choice == "builtin" {
        let text = tessel_cost_model::builtin_pretrained(target).ok_or_else(|| {
            DriverError::Usage(format!(
                "--pretrained builtin: no built-in model for {target}"
            ))
        })?;
        Pretrained::parse(text, "the built-in model", target)
    } else {
        Pretrained::load(choice, target)
    }
    .map_err(DriverError::failed)?;
    let model = std::sync::Arc::new(model);
    Ok(Box::new(move || {
        Box::new(PriorOnly(model.model(0, usize::MAX))) as Box<dyn CostModel>
    }))
}

fn eval(args: &EvalArgs) -> Result<(), DriverError> {
    if !(0.0..1.0).contains(&args.test_fraction) || args.test_fraction == 0.0 {
        return Err(DriverError::Usage(format!(
            "--test-fraction {} must be in (0, 1)",
            args.test_fraction
        )));
    }
    let mut factories = models(args)?;
    if let Some(choice) = &args.pretrained {
        factories.push(pretrained(choice)?);
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();

    let RecordSamples {
        samples, bad_lines, ..
    } = read_samples(&args.records, &[])?;
    let t0 = Instant::now();
    let ds = Dataset::build(&samples);
    let feature_seconds = t0.elapsed().as_secs_f64();
    if ds.len() < 4 {
        return Err(DriverError::Failed(format!(
            "{} usable records: need at least 4 to train and test",
            ds.len()
        )));
    }
    let n_ok = ds.costs.iter().filter(|c| c.is_some()).count();
    writeln!(
        out,
        "{} records ({} ok, {} failed; {} unusable; {} bad lines) of {} workloads; features in {:.3} s ({:.0} programs/s incl. replay and lowering)",
        ds.len(),
        n_ok,
        ds.len() - n_ok,
        ds.unusable,
        bad_lines,
        ds.workloads.len(),
        feature_seconds,
        ds.len() as f64 / feature_seconds.max(1e-9)
    )?;

    let mut reports: Vec<EvalReport> = Vec::new();
    let (train, test) = split_by_candidate(ds.len(), args.test_fraction, args.seed);
    for f in &factories {
        let mut m = f();
        reports.push(evaluate(
            m.as_mut(),
            &ds,
            &train,
            &test,
            "candidate",
            args.k,
        ));
    }
    for (w, train, test) in split_by_workload(&ds.groups) {
        let split = format!("workload:{}", ds.workloads[w as usize]);
        for f in &factories {
            let mut m = f();
            reports.push(evaluate(m.as_mut(), &ds, &train, &test, &split, args.k));
        }
    }

    writeln!(
        out,
        "\npairwise: over pairs of the same workload and setting; >noise: only pairs whose costs differ by more than {:.0} %",
        100.0 * NOISE
    )?;
    writeln!(
        out,
        "{:<28} {:<17} {:>6} {:>6} {:>9} {:>7} {:>9} {:>7} {:>9} {:>10}",
        "split",
        "model",
        "train",
        "test",
        "pairwise",
        ">noise",
        format!("recall@{}", args.k),
        "rmse",
        "train s",
        "predict s"
    )?;
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.3}"));
    for r in &reports {
        writeln!(
            out,
            "{:<28} {:<17} {:>6} {:>6} {:>9} {:>7} {:>9} {:>7.4} {:>9.3} {:>10.4}",
            r.split,
            r.model,
            r.n_train,
            r.n_test,
            opt(r.pairwise_accuracy),
            opt(r.pairwise_beyond_noise),
            opt(r.recall_at_k),
            r.rmse,
            r.train_seconds,
            r.predict_seconds
        )?;
        if r.per_workload.len() > 1 {
            for w in &r.per_workload {
                writeln!(
                    out,
                    "  {:<26} {:<17} {:>6} {:>6} {:>9} {:>7}",
                    short(&w.workload),
                    "",
                    "",
                    w.n_test,
                    opt(w.pairwise_accuracy),
                    opt(w.pairwise_beyond_noise)
                )?;
            }
        }
    }

    if let Some(path) = &args.save_model {
        let mut m = GbdtModel::new(GbdtModelParams {
            num_warmup_sample: 0,
            ..GbdtModelParams::default()
        });
        m.update_tasks(&ds.programs, &ds.labels, &ds.task_of);
        m.save(path).map_err(DriverError::failed)?;
        writeln!(
            out,
            "\nsaved the default model trained on all records to {}",
            path.display()
        )?;
    }

    if args.json {
        let v = json!({
            "records": ds.len(),
            "ok": n_ok,
            "unusable": ds.unusable,
            "bad_lines": bad_lines,
            "workloads": ds.workloads,
            "feature_seconds": feature_seconds,
            "reports": reports,
        });
        writeln!(out, "{v}")?;
    }
    Ok(())
}

/// A workload name cut to fit the table's first column.
fn short(name: &str) -> String {
    if name.chars().count() <= 26 {
        name.to_string()
    } else {
        let cut: String = name.chars().take(25).collect();
        format!("{cut}…")
    }
}

/// What [`read_samples`] read.
struct RecordSamples {
    samples: Vec<Sample>,
    bad_lines: usize,
    /// The ISA levels the kept records were measured with.
    isas: std::collections::BTreeSet<&'static str>,
}

/// The samples of the records in `paths` (bad lines warned about and counted), leaving out
/// workloads whose spec contains one of `exclude`, read once.
fn read_samples(
    paths: &[std::path::PathBuf],
    exclude: &[String],
) -> Result<RecordSamples, DriverError> {
    let mut read = RecordSamples {
        samples: Vec::new(),
        bad_lines: 0,
        isas: std::collections::BTreeSet::new(),
    };
    for path in paths {
        let log = tessel_measure::records::read_records(path).map_err(DriverError::failed)?;
        read.bad_lines += log.problems.len();
        for p in log.problems.iter().take(3) {
            eprintln!("warning: {}:{}: {}", path.display(), p.line, p.reason);
        }
        for r in log
            .records
            .iter()
            .filter(|r| !exclude.iter().any(|x| r.key.workload.contains(x.as_str())))
        {
            read.isas.insert(r.key.codegen.isa.name());
            read.samples.push(Sample {
                workload: r.key.workload.clone(),
                steps: r.steps.clone(),
                cost: r.cost(),
                threads: r.key.codegen.threads,
                codegen: CodegenFlags {
                    micro_kernels: r.key.codegen.isa.has_micro_kernels(),
                    layout_rewrite: r.key.codegen.layout_rewrite
                        != tessel_codegen::LayoutRewrite::Off,
                },
            });
        }
    }
    Ok(read)
}

fn train(args: &TrainArgs) -> Result<(), DriverError> {
    let RecordSamples {
        samples,
        bad_lines,
        isas,
    } = read_samples(&args.records, &args.exclude)?;
    // A pre-trained model is for one target.
    let target = match isas.len() {
        1 => isas.into_iter().next().unwrap_or_default(),
        0 => return Err(DriverError::Failed("no usable records to train on".into())),
        _ => {
            return Err(DriverError::Usage(format!(
                "the records are of several targets ({}): train one model per target",
                isas.into_iter().collect::<Vec<_>>().join(", ")
            )))
        }
    };
    let t0 = Instant::now();
    let ds = Dataset::build(&samples);
    if ds.len() < 4 {
        return Err(DriverError::Failed(format!(
            "{} usable records: need at least 4 to train",
            ds.len()
        )));
    }
    let feature_seconds = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let mut model = GbdtModel::new(GbdtModelParams {
        num_warmup_sample: 0,
        ..GbdtModelParams::squared_error()
    });
    model.update_tasks(&ds.programs, &ds.labels, &ds.task_of);
    model
        .save_for(&args.out, target)
        .map_err(DriverError::failed)?;
    println!(
        "trained {} on {} programs of {} workloads ({} bad lines), target {target}: features {:.1} s, training {:.1} s\nwrote {}",
        model.name(),
        ds.len(),
        ds.workloads.len(),
        bad_lines,
        feature_seconds,
        t1.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(())
}
