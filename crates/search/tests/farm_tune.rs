//! A whole tune on the measurement farm (issue #31): a loopback `nats-server`, two farm
//! workers with the deterministic fake measurement, and the same tuning job as a local run
//! with that measurement in process. The same seed must give the same candidates, the same
//! best program and the same records, whichever side measured them.
//!
//! This test FAILS, never skips, when `nats-server` is not installed (`.ci/run` installs it).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use tessel_measure::farm::{
    serve_farm, FakeMeasurer, FarmMeasurer, FarmRunnerConfig, FarmWorkerConfig, LoopbackBroker,
    NatsRunner,
};
use tessel_measure::records::read_records;
use tessel_measure::{Candidate, MeasureOptions, MeasureResult, Runner};
use tessel_search::evolution::EvolutionParams;
use tessel_search::job::{RunnerFactory, TuneJob, TuneOptions};
use tessel_search::tuner::TuneParams;
use tessel_sketch::{Isa, Target};

const SPEC: &str = "gmm:b=1,n=32,m=32,k=64";
const PREFIX: &str = "t_tune";
const CPU: &str = "testcpu";

/// The fake measurement, in this process.
struct LocalFake {
    options: MeasureOptions,
}

impl Runner for LocalFake {
    fn measure(&mut self, batch: &[Candidate]) -> Vec<MeasureResult> {
        let mut fake = FakeMeasurer::default();
        batch
            .iter()
            .map(|c| fake.measure(&self.options, c))
            .collect()
    }

    fn options(&self) -> &MeasureOptions {
        &self.options
    }

    fn name(&self) -> &'static str {
        "local fake"
    }
}

fn target() -> Target {
    Target::with_isa(Isa::Avx2).with_cores(1)
}

/// The job of a 64-trial tune, seed 5, measured by `runner`.
fn job(runner: RunnerFactory) -> TuneJob {
    let mut options = TuneOptions::new(target());
    options.params = TuneParams {
        trials: 64,
        measures_per_round: 16,
        evolution: EvolutionParams {
            population: 48,
            ..EvolutionParams::default()
        },
        seed: 5,
        ..TuneParams::default()
    };
    options.runner = runner;
    TuneJob::new(options)
}

/// Tunes SPEC with `job`, writing `records`; the best program's steps and cost.
fn tune(job: &TuneJob, records: &Path) -> (String, f64) {
    let workload = tessel_workloads::lookup(SPEC).expect("workload");
    let problem = job
        .problem(Arc::new(workload.dag.clone()))
        .expect("sketches");
    let mut measurer = job.measurer(&workload, Some(records)).expect("measurer");
    let result = job.tune(&problem, &mut measurer);
    assert_eq!(result.trials, 64);
    let (state, cost) = result.best.expect("a best program");
    (state.steps_json(), cost)
}

/// (steps, median cost) of every record, in file order.
fn recorded(path: &Path) -> Vec<(String, Option<f64>)> {
    let log = read_records(path).expect("records");
    assert!(log.problems.is_empty(), "{:?}", log.problems);
    log.records
        .iter()
        .map(|r| (serde_json::to_string(&r.steps).expect("steps"), r.cost()))
        .collect()
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tessel-farm-tune-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

#[test]
fn a_tune_on_the_farm_equals_the_local_tune() {
    let broker = LoopbackBroker::start()
        .unwrap_or_else(|e| panic!("this test needs a NATS broker: {e} (`.ci/run` installs it)"));
    let url = broker.url();
    for _ in 0..2 {
        let mut config = FarmWorkerConfig::new(&url, 1);
        config.prefix = PREFIX.to_string();
        config.cpu = Some(CPU.to_string());
        config.isa = target().isa;
        config.verbose = false;
        // Ends with an error when the broker goes away at the end of the test.
        std::thread::spawn(move || serve_farm(config, Box::new(FakeMeasurer::default())));
    }

    let farm_url = url.clone();
    let farm = job(Arc::new(move |options: MeasureOptions| {
        let mut config = FarmRunnerConfig::new(&farm_url);
        config.prefix = PREFIX.to_string();
        config.cpu = Some(CPU.to_string());
        config.verbose = false;
        NatsRunner::connect(config, options).map(|r| Box::new(r) as Box<dyn Runner>)
    }));
    let local = job(Arc::new(|options: MeasureOptions| {
        Ok(Box::new(LocalFake { options }) as Box<dyn Runner>)
    }));

    let (farm_records, local_records) = (temp("farm.jsonl"), temp("local.jsonl"));
    let farm_best = tune(&farm, &farm_records);
    let local_best = tune(&local, &local_records);
    assert_eq!(farm_best, local_best);
    let (on_farm, here) = (recorded(&farm_records), recorded(&local_records));
    assert_eq!(on_farm.len(), 64);
    assert_eq!(on_farm, here);
    let _ = std::fs::remove_dir_all(farm_records.parent().expect("temp dir"));
}
