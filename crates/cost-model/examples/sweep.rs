//! Sweeps cost-model settings on measured records (split by candidate, seeded) and prints
//! pairwise accuracy per workload, over all pairs and over pairs beyond the noise.
//!
//! ```text
//! cargo run --release -p tessel-cost-model --example sweep -- FILE.jsonl... [--seed 0]
//! ```
use tessel_cost_model::dataset::{split_by_candidate, Dataset, Sample};
use tessel_cost_model::eval::evaluate;
use tessel_cost_model::{
    CodegenFlags, Formulation, GbdtModel, GbdtModelParams, GbdtParams, LabelTransform,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seed: u64 = std::env::var("SEED").map_or(Ok(0), |s| s.parse())?;
    let only: Option<String> = std::env::var("ONLY").ok();
    let mut samples = Vec::new();
    for f in &args {
        let log = tessel_measure::records::read_records(f)?;
        samples.extend(log.records.iter().map(|r| Sample {
            workload: r.key.workload.clone(),
            steps: r.steps.clone(),
            cost: r.cost(),
            threads: r.key.codegen.threads,
            codegen: CodegenFlags {
                micro_kernels: r.key.codegen.micro_kernels,
                layout_rewrite: r.key.codegen.layout_rewrite,
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
    let (train, test) = split_by_candidate(ds.len(), 0.2, seed);
    let base = GbdtModelParams {
        num_warmup_sample: 0,
        ..GbdtModelParams::default()
    };
    let t = |f: &dyn Fn(&mut GbdtParams)| {
        let mut p = base.clone();
        f(&mut p.trees);
        p
    };
    let mut configs: Vec<(String, GbdtModelParams)> = vec![("default".into(), base.clone())];
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
    for (name, p) in configs {
        if only
            .as_deref()
            .is_some_and(|o| !o.split(',').any(|o| name == o))
        {
            continue;
        }
        let mut m = GbdtModel::new(p);
        let r = evaluate(&mut m, &ds, &train, &test, "candidate", 30);
        let f = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.3}"));
        let per: Vec<String> = r
            .per_workload
            .iter()
            .map(|w| {
                format!(
                    "{} {}/{}",
                    &w.workload[..3],
                    f(w.pairwise_accuracy),
                    f(w.pairwise_beyond_noise)
                )
            })
            .collect();
        println!(
            "{:<32} all {}/{}  {}  rmse {:.4} train {:.3}s",
            name,
            f(r.pairwise_accuracy),
            f(r.pairwise_beyond_noise),
            per.join("  "),
            r.rmse,
            r.train_seconds
        );
    }
    Ok(())
}
