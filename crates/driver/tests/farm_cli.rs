//! `tessel worker --nats` and `tessel tune --measure nats://...` end to end (issue #31): two
//! worker processes of the driver on a loopback broker measure a small tune for real. With a
//! budget inside the cost model's random warm-up the candidates do not depend on the
//! timings, so the farm's records hold the same programs, in the same order, as a local tune
//! of the same seed, each measured by a worker and named by its machine.
//!
//! This test FAILS, never skips, when `nats-server` is not installed (`.ci/run` installs it).

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use tessel_measure::farm::LoopbackBroker;
use tessel_measure::records::read_records;

const SPEC: &str = "gmm:b=1,n=16,m=16,k=16";

/// A `tessel worker --nats` process; killed when dropped.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn worker(url: &str) -> Worker {
    let child = Command::new(env!("CARGO_BIN_EXE_tessel"))
        .args([
            "worker",
            "--nats",
            url,
            "--cpu",
            "testcpu",
            "--threads",
            "1",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tessel worker starts");
    Worker(child)
}

/// The step logs of the search's records (the final confirmation is off), in file order.
fn programs(path: &Path) -> Vec<String> {
    let log = read_records(path).expect("records");
    assert!(log.problems.is_empty(), "{:?}", log.problems);
    log.records
        .iter()
        .map(|r| {
            assert!(r.cost().is_some_and(|c| c > 0.0), "a measured program");
            serde_json::to_string(&r.steps).expect("steps")
        })
        .collect()
}

#[test]
fn driver_workers_measure_a_tune_as_the_local_runner_does() {
    let broker = LoopbackBroker::start()
        .unwrap_or_else(|e| panic!("this test needs a NATS broker: {e} (`.ci/run` installs it)"));
    let url = broker.url();
    let _workers = [worker(&url), worker(&url)];
    let dir = std::env::temp_dir().join(format!("tessel-farm-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (farm, local) = (dir.join("farm.jsonl"), dir.join("local.jsonl"));
    let measure = format!("{url}?cpu=testcpu&wait=60");
    let tune = |records: &Path, extra: &[&str]| {
        let records = records.to_str().expect("utf-8 path");
        let mut args = vec![
            "tune",
            SPEC,
            "--trials",
            "24",
            "--threads",
            "1",
            "--seed",
            "3",
            "--records",
            records,
            "--final-confirm",
            "0",
        ];
        args.extend_from_slice(extra);
        common::tessel_stdout(&args)
    };
    tune(&farm, &["--measure", &measure]);
    tune(&local, &[]);
    let (on_farm, here) = (programs(&farm), programs(&local));
    assert_eq!(on_farm.len(), 24);
    assert_eq!(on_farm, here);
    let _ = std::fs::remove_dir_all(&dir);
}
