//! Sweeps cost-model settings on measured records (split by candidate, 20 % held out, one
//! split per seed) and prints pairwise accuracy per workload, over all pairs and over pairs
//! beyond the noise, averaged over the seeds (and per seed).
//!
//! ```text
//! cargo run --release -p tessel-cost-model --example sweep -- FILE.jsonl...
//! ```
//! Environment: `SEEDS=0,1,2` split seeds, `ONLY=name,name` configurations, `NOKERNEL`
//! blanks the micro-kernel features, `COST=min` trains on labels from the fastest repeat
//! (tests use the median unless `TEST=min`), `CONFIGS='key=value,...;...'` replaces the
//! built-in list by changes to the default (keys in [`parse_config`]), e.g.
//! `CONFIGS='rounds=50,form=program,colsample=1;pairs=16'`.
use tessel_cost_model::dataset::{normalized_throughput, split_by_candidate, Dataset, Sample};
use tessel_cost_model::eval::evaluate_with_train_labels;
use tessel_cost_model::{
    CodegenFlags, Formulation, GbdtModel, GbdtModelParams, GbdtParams, LabelTransform, Objective,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seeds: Vec<u64> = std::env::var("SEEDS")
        .unwrap_or_else(|_| "0,1,2".to_string())
        .split(',')
        .map(|s| s.parse())
        .collect::<Result<_, _>>()?;
    let min_cost = std::env::var("COST").is_ok_and(|c| c == "min");
    let mut mins: Vec<Option<f64>> = Vec::new();
    let only: Option<String> = std::env::var("ONLY").ok();
    let mut samples = Vec::new();
    for f in &args {
        let log = tessel_measure::records::read_records(f)?;
        mins.extend(log.records.iter().map(|r| {
            r.cost()
                .and(r.timing.as_ref().map(|t| t.min))
                .filter(|c| c.is_finite() && *c > 0.0)
        }));
        samples.extend(log.records.iter().map(|r| Sample {
            workload: r.key.workload.clone(),
            steps: r.steps.clone(),
            cost: r.cost(),
            threads: r.key.codegen.threads,
            codegen: CodegenFlags {
                micro_kernels: r.key.codegen.isa.has_micro_kernels(),
                layout_rewrite: r.key.codegen.layout_rewrite
                    != tessel_measure::options::LayoutRewrite::Off,
            },
        }));
    }
    let mut ds = Dataset::build(&samples);
    if std::env::var("NOKERNEL").is_ok() {
        // Ablation: blank the micro-kernel features.
        let t = tessel_cost_model::features::TENSORIZE_OFFSET;
        for p in &mut ds.programs {
            for row in p.data.chunks_exact_mut(tessel_cost_model::FEATURE_LEN) {
                row[t..].fill(0.0);
            }
        }
    }
    eprintln!("{} programs, {} tasks", ds.len(), ds.tasks.len());
    if std::env::var("TEST").is_ok_and(|c| c == "min") {
        // Test against the fastest repeat too (the noise is load-induced, one-sided).
        ds.costs = mins.clone();
        ds.labels = normalized_throughput(&mins, &ds.task_of);
    }
    let train_labels = if min_cost {
        normalized_throughput(&mins, &ds.task_of)
    } else {
        ds.labels.clone()
    };
    let base = GbdtModelParams {
        num_warmup_sample: 0,
        ..GbdtModelParams::default()
    };
    let t = |f: &dyn Fn(&mut GbdtParams)| {
        let mut p = base.clone();
        f(&mut p.trees);
        p
    };
    let mut configs: Vec<(String, GbdtModelParams)> = vec![
        ("default".into(), base.clone()),
        (
            "squared".into(),
            GbdtModelParams {
                num_warmup_sample: 0,
                ..GbdtModelParams::squared_error()
            },
        ),
    ];
    configs.push((
        "packsum".into(),
        GbdtModelParams {
            formulation: Formulation::PackSum,
            ..base.clone()
        },
    ));
    for floor in [0.0, 0.2, 1.0] {
        configs.push((
            format!("floor={floor}"),
            GbdtModelParams {
                weight_floor: floor,
                ..base.clone()
            },
        ));
    }
    for (n, label) in [("sqrt", LabelTransform::Sqrt), ("log", LabelTransform::Log)] {
        for floor in [0.05, 1.0] {
            for formulation in [Formulation::PackSum, Formulation::Program] {
                configs.push((
                    format!("{n} floor={floor} {formulation:?}"),
                    GbdtModelParams {
                        label,
                        weight_floor: floor,
                        formulation,
                        ..base.clone()
                    },
                ));
            }
        }
    }
    for (name, k, gap, floor) in [
        ("rank", 8, false, 1.0),
        ("rank floor=0.2", 8, false, 0.2),
        ("rank floor=0", 8, false, 0.0),
        ("rank gap", 8, true, 1.0),
        ("rank floor=0.05", 8, false, 0.05),
        ("rank gap floor=0.05", 8, true, 0.05),
        ("rank pairs=16", 16, false, 1.0),
        ("rank pairs=4", 4, false, 1.0),
    ] {
        let mut p = base.clone();
        p.trees.objective = Objective::Pairwise {
            pairs_per_row: k,
            gap_weighted: gap,
            min_gap: 0.0,
        };
        p.weight_floor = floor;
        configs.push((name.into(), p.clone()));
        if name == "rank" {
            p.formulation = Formulation::PackSum;
            configs.push(("rank packsum".into(), p.clone()));
            p.formulation = Formulation::Program;
            p.trees.n_rounds = 200;
            configs.push(("rank rounds=200".into(), p.clone()));
            p.trees.learning_rate = 0.1;
            configs.push(("rank lr=0.1 rounds=200".into(), p.clone()));
            p.trees.n_rounds = 100;
            p.trees.learning_rate = 0.2;
            p.trees.max_leaves = 64;
            configs.push(("rank leaves=64".into(), p.clone()));
            p.trees.max_leaves = 32;
            p.trees.n_rounds = 50;
            configs.push(("rank rounds=50".into(), p.clone()));
            p.trees.learning_rate = 0.3;
            configs.push(("rank rounds=50 lr=0.3".into(), p.clone()));
            p.trees.learning_rate = 0.2;
            for (name, k, gap) in [
                ("rank rounds=50 pairs=4", 4, 0.0),
                ("rank rounds=50 min_gap=0.02", 8, 0.02),
                ("rank rounds=50 min_gap=0.05", 8, 0.05),
            ] {
                let mut q = p.clone();
                q.trees.objective = Objective::Pairwise {
                    pairs_per_row: k,
                    gap_weighted: false,
                    min_gap: gap,
                };
                configs.push((name.into(), q));
            }
            p.trees.learning_rate = 0.2;
            p.trees.n_rounds = 100;
            p.trees.max_bins = 32;
            configs.push(("rank bins=32".into(), p.clone()));
            p.trees.max_bins = 64;
            for c in [0.3, 0.5, 0.7] {
                p.trees.colsample = c;
                configs.push((format!("rank colsample={c}"), p.clone()));
            }
            p.trees.colsample = 1.0;
        }
    }
    configs.push(("rounds=200".into(), t(&|p| p.n_rounds = 200)));
    configs.push((
        "lr=0.1 rounds=200".into(),
        t(&|p| {
            p.n_rounds = 200;
            p.learning_rate = 0.1
        }),
    ));
    configs.push(("leaves=64".into(), t(&|p| p.max_leaves = 64)));
    configs.push(("leaves=16".into(), t(&|p| p.max_leaves = 16)));
    configs.push(("mcw=1".into(), t(&|p| p.min_child_weight = 1.0)));
    configs.push(("lambda=0.1".into(), t(&|p| p.lambda = 0.1)));
    configs.push(("bins=128".into(), t(&|p| p.max_bins = 128)));
    if let Ok(spec) = std::env::var("CONFIGS") {
        // Ad-hoc configurations: `key=value,key=value;...` on top of the default.
        configs.clear();
        for c in spec.split(';').filter(|c| !c.trim().is_empty()) {
            configs.push((c.trim().to_string(), parse_config(&base, c)?));
        }
    }
    for (name, p) in configs {
        if only
            .as_deref()
            .is_some_and(|o| !o.split(',').any(|o| name == o))
        {
            continue;
        }
        let f = |v: f64| format!("{v:.3}");
        let (mut all, mut beyond, mut per_seed) = (0.0, 0.0, Vec::new());
        let mut per: Vec<(String, f64, f64)> = Vec::new();
        let (mut train_s, mut recall) = (0.0, 0.0);
        for &seed in &seeds {
            let (train, test) = split_by_candidate(ds.len(), 0.2, seed);
            let mut m = GbdtModel::new(p.clone());
            let r = evaluate_with_train_labels(
                &mut m,
                &ds,
                &train_labels,
                &train,
                &test,
                "candidate",
                30,
            );
            all += r.pairwise_accuracy.unwrap_or(0.0);
            beyond += r.pairwise_beyond_noise.unwrap_or(0.0);
            train_s += r.train_seconds;
            recall += r.recall_at_k.unwrap_or(0.0);
            let mut this = Vec::new();
            for (k, w) in r.per_workload.iter().enumerate() {
                if per.len() <= k {
                    per.push((w.workload[..3].to_string(), 0.0, 0.0));
                }
                per[k].1 += w.pairwise_accuracy.unwrap_or(0.0);
                per[k].2 += w.pairwise_beyond_noise.unwrap_or(0.0);
                this.push(f(w.pairwise_accuracy.unwrap_or(0.0)));
            }
            per_seed.push(this.join("/"));
        }
        let n = seeds.len() as f64;
        let per: Vec<String> = per
            .iter()
            .map(|(w, a, b)| format!("{w} {}/{}", f(a / n), f(b / n)))
            .collect();
        println!(
            "{:<26} all {}/{}  {}  recall@30 {}  seeds [{}] train {:.3}s",
            name,
            f(all / n),
            f(beyond / n),
            per.join("  "),
            f(recall / n),
            per_seed.join(" "),
            train_s / n
        );
    }
    Ok(())
}

/// `base` changed by `key=value` pairs separated by commas (keys: rounds, lr, leaves, depth,
/// mcw, lambda, gamma, bins, colsample, pairs, gap, min_gap, floor, form, label).
fn parse_config(base: &GbdtModelParams, spec: &str) -> Result<GbdtModelParams, String> {
    let mut p = base.clone();
    for kv in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (k, v) = kv
            .split_once('=')
            .ok_or(format!("`{kv}`: expected key=value"))?;
        let num = |v: &str| v.parse::<f64>().map_err(|e| format!("`{kv}`: {e}"));
        let t = &mut p.trees;
        let (mut pairs, mut gap, mut min_gap) = match t.objective {
            Objective::Pairwise {
                pairs_per_row,
                gap_weighted,
                min_gap,
            } => (pairs_per_row, gap_weighted, min_gap),
            Objective::SquaredError => (8, false, 0.0),
        };
        match k {
            "rounds" => t.n_rounds = num(v)? as usize,
            "lr" => t.learning_rate = num(v)? as f32,
            "leaves" => t.max_leaves = num(v)? as usize,
            "depth" => t.max_depth = num(v)? as u32,
            "mcw" => t.min_child_weight = num(v)?,
            "lambda" => t.lambda = num(v)?,
            "gamma" => t.gamma = num(v)?,
            "bins" => t.max_bins = num(v)? as usize,
            "colsample" => t.colsample = num(v)? as f32,
            "pairs" => pairs = num(v)? as u32,
            "gap" => gap = v == "1" || v == "true",
            "min_gap" => min_gap = num(v)? as f32,
            "floor" => p.weight_floor = num(v)? as f32,
            "form" => {
                p.formulation = match v {
                    "packsum" => Formulation::PackSum,
                    "program" => Formulation::Program,
                    "program-main" => Formulation::ProgramMain,
                    _ => return Err(format!("`{kv}`: unknown formulation")),
                }
            }
            "label" => {
                p.label = match v {
                    "identity" => LabelTransform::Identity,
                    "sqrt" => LabelTransform::Sqrt,
                    "log" => LabelTransform::Log,
                    _ => return Err(format!("`{kv}`: unknown label transform")),
                }
            }
            "squared" => t.objective = Objective::SquaredError,
            _ => return Err(format!("`{kv}`: unknown key")),
        }
        if matches!(k, "pairs" | "gap" | "min_gap") {
            t.objective = Objective::Pairwise {
                pairs_per_row: pairs,
                gap_weighted: gap,
                min_gap,
            };
        }
    }
    Ok(p)
}
