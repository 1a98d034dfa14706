//! The model learns: on random gmm and conv2d schedules (small shapes, sampled with a fixed
//! seed and measured in this process), a model trained on 80 % ranks the held-out 20 % clearly
//! better than chance, with the squared error (pack-sum and per program) and with the pairwise
//! ranking objective. Also: save/load keeps predictions (also the rank model's calibration),
//! warm-up is random.

use std::sync::Arc;
use tessel_cost_model::dataset::{split_by_candidate, Dataset, Sample};
use tessel_cost_model::eval::{pairwise_accuracy, recall_at_k};
use tessel_cost_model::{
    CostModel, Formulation, GbdtModel, GbdtModelParams, Pretrained, RandomModel,
};
use tessel_measure::{Candidate, InProcessRunner, MeasureOptions, Runner};
use tessel_sketch::{generate_sketches, sample_population, HardwareParams};

const WORKLOADS: [&str; 2] = [
    "gmm:b=1,n=128,m=128,k=128",
    "c2d:n=1,h=14,w=14,ci=32,co=32,kernel=3,stride=1,pad=1",
];

/// `n` random schedules of each workload, measured (1 thread, median of 3).
fn measured(n: usize, seed: u64) -> Dataset {
    let mut options = MeasureOptions::with_threads(1);
    options.builder_threads = 1;
    options.timing.warmup = 0;
    options.timing.repeat = 3;
    options.timing.min_repeat_ms = 0.5;
    let mut runner = InProcessRunner::new(options).expect("runner");
    let hw = HardwareParams::with_cores(1);
    let mut samples = Vec::new();
    for (k, spec) in WORKLOADS.iter().enumerate() {
        let w = tessel_workloads::lookup(spec).expect("workload");
        let sketches = generate_sketches(&Arc::new(w.dag.clone()), &hw).expect("sketches");
        let mut rng = tessel_ir::rng::seeded(seed + k as u64);
        let states = sample_population(&sketches, n, &hw, &mut rng);
        let cands: Vec<Candidate> = states
            .iter()
            .map(|s| Candidate::from_state(&w, s))
            .collect();
        let results = runner.measure(&cands);
        for (c, r) in cands.iter().zip(&results) {
            samples.push(Sample {
                workload: c.workload.clone(),
                steps: c.steps.clone(),
                cost: r.median(),
                threads: 1,
                codegen: tessel_cost_model::CodegenFlags::default(),
            });
        }
    }
    Dataset::build(&samples)
}

#[test]
fn gbdt_ranks_held_out_schedules_better_than_chance() {
    let ds = measured(200, 11);
    assert_eq!(ds.unusable, 0);
    let (train, test) = split_by_candidate(ds.len(), 0.2, 5);
    let (xtr, ytr, ttr) = ds.subset(&train);
    let (xte, yte, gte) = ds.subset(&test);
    let mut accs = Vec::new();
    let configs = [
        GbdtModelParams {
            formulation: Formulation::PackSum,
            ..GbdtModelParams::squared_error()
        },
        GbdtModelParams::squared_error(),
        GbdtModelParams::rank(),
    ];
    for params in configs {
        let mut m = GbdtModel::new(params);
        m.update_tasks(&xtr, &ytr, &ttr);
        let pred = m.predict(&xte);
        let acc = pairwise_accuracy(&pred, &yte, &gte).expect("pairs");
        let recall = recall_at_k(&pred, &yte, &gte, 10).expect("recall");
        eprintln!("{}: pairwise {acc:.3}, recall@10 {recall:.3}", m.name());
        accs.push(acc);
    }
    let random = RandomModel::new(3).predict(&xte);
    let racc = pairwise_accuracy(&random, &yte, &gte).expect("pairs");
    eprintln!("random: pairwise {racc:.3}");
    assert!(
        accs[0] >= 0.65,
        "pack-sum pairwise accuracy {:.3} < 0.65",
        accs[0]
    );
    assert!(
        accs[1] >= 0.65,
        "program-level pairwise accuracy {:.3} < 0.65",
        accs[1]
    );
    assert!(
        accs[2] >= 0.65,
        "pairwise-objective accuracy {:.3} < 0.65",
        accs[2]
    );
    assert!(racc < 0.6, "random model ranks too well: {racc:.3}");
}

#[test]
fn saved_model_predicts_the_same_and_bad_files_are_errors() {
    let ds = measured(60, 21);
    for params in [GbdtModelParams::squared_error(), GbdtModelParams::rank()] {
        let mut m = GbdtModel::new(GbdtModelParams {
            num_warmup_sample: 0,
            ..params
        });
        m.update_tasks(&ds.programs, &ds.labels, &ds.task_of);
        saves_and_loads(&m, &ds);
    }
}

fn saves_and_loads(m: &GbdtModel, ds: &Dataset) {
    let dir = std::env::temp_dir().join(format!(
        "tessel-cost-model-{}-{}",
        std::process::id(),
        m.name()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("model.json");
    m.save(&path).expect("save");
    let loaded = GbdtModel::load(&path).expect("load");
    assert_eq!(m.predict(&ds.programs), loaded.predict(&ds.programs));
    std::fs::write(&path, "{\"format\":\"nope\"}").expect("write");
    assert!(GbdtModel::load(&path).is_err());
    assert!(GbdtModel::load(dir.join("missing.json")).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn warm_up_predicts_at_random_and_failed_programs_score_minus_infinity() {
    let ds = measured(20, 31);
    let mut m = GbdtModel::new(GbdtModelParams::default()); // warm-up: 100 samples
    m.update(&ds.programs[..10], &ds.labels[..10]);
    assert!(m.booster().is_none());
    let p = m.predict(&ds.programs);
    assert!(p.iter().all(|&x| (0.0..1.0).contains(&x)));
    let empty = tessel_cost_model::ProgramFeatures::default();
    assert_eq!(m.predict(&[empty]), vec![f32::NEG_INFINITY]);
}

#[test]
fn a_pretrained_model_is_the_prior_until_the_search_has_its_own_samples() {
    let ds = measured(60, 41);
    let mut trained = GbdtModel::new(GbdtModelParams {
        num_warmup_sample: 0,
        ..GbdtModelParams::squared_error()
    });
    trained.update(&ds.programs, &ds.labels);
    let dir = std::env::temp_dir().join(format!("tessel-pretrained-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("model.json");
    trained.save_for(&path, "avx512").expect("save");

    // Round trip: the prior predicts what the trained model predicted, through clear().
    let pre = Pretrained::load(&path, "avx512").expect("load");
    assert_eq!(pre.n_samples(), ds.programs.len());
    let mut m = pre.model(7, 100);
    assert_eq!(m.predict(&ds.programs), trained.predict(&ds.programs));
    m.clear();
    m.update(&ds.programs[..10], &ds.labels[..10]);
    assert!(m.booster().is_none(), "still in its own warm-up");
    assert_eq!(m.predict(&ds.programs), trained.predict(&ds.programs));

    // Refusals name the file and what differs.
    let err = Pretrained::load(&path, "avx2").expect_err("another target");
    let text = err.to_string();
    assert!(
        text.contains("for target avx512") && text.contains("target avx2"),
        "{text}"
    );
    let text = std::fs::read_to_string(&path).expect("read");
    let other = text.replace(&tessel_cost_model::feature_set_id(), "r0-0000000000000000");
    let err = Pretrained::parse(&other, "m.json", "avx512").expect_err("other features");
    assert!(err.to_string().contains("feature set r0-"), "{err}");
    trained.save(&path).expect("save without target");
    let err = Pretrained::load(&path, "avx512").expect_err("no target");
    assert!(err.to_string().contains("no named target"), "{err}");
    let err = Pretrained::parse("{\"format\":", "m.json", "avx512").expect_err("corrupt");
    assert!(
        err.to_string()
            .contains("m.json is not a Tessel cost model"),
        "{err}"
    );
    let untrained = GbdtModel::new(GbdtModelParams::squared_error());
    untrained.save_for(&path, "avx512").expect("save");
    let err = Pretrained::load(&path, "avx512").expect_err("no trees");
    assert!(err.to_string().contains("no trained trees"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_built_in_model_matches_the_current_feature_set() {
    let text = tessel_cost_model::builtin_pretrained("avx512").expect("an avx512 model ships");
    let model = Pretrained::parse(text, "the built-in model", "avx512").unwrap_or_else(|e| {
        panic!(
            "{e}: the features changed since the built-in model was trained; rebuild it \
             (docs/cost-model.md, `tessel dataset` then `tessel cost-model train`)"
        )
    });
    assert!(model.n_samples() >= 1000);
    assert!(tessel_cost_model::builtin_pretrained("generic").is_none());
}
