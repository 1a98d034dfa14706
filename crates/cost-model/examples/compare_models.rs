//! Compares cost models on measured records (split by candidate): the own histogram GBDT
//! with Ansor's pack-sum objective, the same trainer on one row per program, forust-ml 0.8
//! (program-level rows, weighted squared error: it has no pack-sum objective) and random.
//!
//! ```text
//! cargo run --release -p tessel-cost-model --example compare_models -- FILE.jsonl... [--seed 0]
//! ```
use std::time::Instant;
use tessel_cost_model::dataset::{split_by_candidate, Dataset, Sample};
use tessel_cost_model::eval::{pairwise_accuracy, recall_at_k, rmse};
use tessel_cost_model::{CostModel, Formulation, GbdtModel, GbdtModelParams, RandomModel};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seed: u64 = args
        .iter()
        .position(|a| a == "--seed")
        .and_then(|i| args.get(i + 1))
        .map_or(Ok(0), |s| s.parse())?;
    let files: Vec<&String> = args
        .iter()
        .enumerate()
        .filter(|(i, a)| !a.starts_with("--") && (*i == 0 || args[i - 1] != "--seed"))
        .map(|(_, a)| a)
        .collect();
    let mut samples = Vec::new();
    for f in files {
        let log = tessel_measure::records::read_records(f)?;
        samples.extend(log.records.iter().map(|r| Sample {
            workload: r.key.workload.clone(),
            steps: r.steps.clone(),
            cost: r.cost(),
            threads: r.key.codegen.threads,
            codegen: tessel_cost_model::CodegenFlags {
                micro_kernels: r.key.codegen.isa.has_micro_kernels(),
                layout_rewrite: r.key.codegen.layout_rewrite
                    != tessel_measure::options::LayoutRewrite::Off,
            },
        }));
    }
    let ds = Dataset::build(&samples);
    let (train, test) = split_by_candidate(ds.len(), 0.2, seed);
    let (xtr, ytr, _) = ds.subset(&train);
    let (xte, yte, gte) = ds.subset(&test);
    println!(
        "{} programs: {} train, {} test",
        ds.len(),
        train.len(),
        test.len()
    );
    println!(
        "{:<34} {:>9} {:>9} {:>7} {:>9}",
        "model", "pairwise", "recall@30", "rmse", "fit s"
    );
    let report = |name: &str, pred: &[f32], fit: f64| {
        println!(
            "{:<34} {:>9.3} {:>9.3} {:>7.4} {:>9.3}",
            name,
            pairwise_accuracy(pred, &yte, &gte).unwrap_or(f64::NAN),
            recall_at_k(pred, &yte, &gte, 30).unwrap_or(f64::NAN),
            rmse(pred, &yte),
            fit
        );
    };
    for (name, formulation) in [
        ("own GBDT, pack-sum (Ansor)", Formulation::PackSum),
        ("own GBDT, program-level", Formulation::Program),
    ] {
        for (rounds, lambda, leaves, floor) in [
            (100, 1.0, 32, 0.05),
            (100, 0.1, 32, 0.05),
            (100, 1.0, 32, 0.0),
            (100, 1.0, 32, 1.0),
        ] {
            let mut p = GbdtModelParams {
                formulation,
                num_warmup_sample: 0,
                ..Default::default()
            };
            p.trees.n_rounds = rounds;
            p.trees.lambda = lambda;
            p.trees.max_leaves = leaves;
            p.weight_floor = floor;
            let mut m = GbdtModel::new(p);
            let t = Instant::now();
            m.update(&xtr, &ytr);
            let fit = t.elapsed().as_secs_f64();
            let nt = m.booster().map_or(0, |b| b.trees.len());
            report(
                &format!("{name}, λ={lambda} w≥{floor} ({nt} trees)"),
                &m.predict(&xte),
                fit,
            );
        }
    }
    // forust-ml on program-level rows (column-major f64).
    let to_matrix = |xs: &[tessel_cost_model::ProgramFeatures]| {
        let n = Formulation::Program.row_len();
        let mut rows = Vec::new();
        let mut keep = Vec::new();
        for (i, p) in xs.iter().enumerate() {
            let before = rows.len();
            Formulation::Program.rows_into(p, &mut rows);
            if rows.len() > before {
                keep.push(i);
            }
        }
        let r = keep.len();
        let mut col = vec![0f64; r * n];
        for i in 0..r {
            for j in 0..n {
                col[j * r + i] = rows[i * n + j] as f64;
            }
        }
        (col, r, n, keep)
    };
    let (ctr, rtr, n, ktr) = to_matrix(&xtr);
    let y: Vec<f64> = ktr.iter().map(|&i| ytr[i] as f64).collect();
    let w: Vec<f64> = y.iter().map(|&v| v.max(0.05)).collect();
    let (cte, rte, _, kte) = to_matrix(&xte);
    for (depth, iters) in [(6usize, 100usize), (10, 100)] {
        let mut gb = forust_ml::GradientBooster::default()
            .set_objective_type(forust_ml::objective::ObjectiveType::SquaredLoss)
            .set_iterations(iters)
            .set_learning_rate(0.2)
            .set_max_depth(depth)
            .set_nbins(64)
            .set_parallel(false);
        let t = Instant::now();
        gb.fit(&forust_ml::Matrix::new(&ctr, rtr, n), &y, &w, None)?;
        let fit = t.elapsed().as_secs_f64();
        let pr = gb.predict(&forust_ml::Matrix::new(&cte, rte, n), false);
        let mut pred = vec![f32::NEG_INFINITY; xte.len()];
        for (k, &i) in kte.iter().enumerate() {
            pred[i] = pr[k] as f32;
        }
        report(
            &format!("forust-ml 0.8, program, depth {depth}, {iters} it"),
            &pred,
            fit,
        );
    }
    let r = RandomModel::new(1);
    report("random", &r.predict(&xte), 0.0);
    Ok(())
}
