//! The measurement farm on loopback: a `nats-server -js` of each test's own (or the one
//! `.ci/run` starts, `TESSEL_NATS_URL`, where a test needs no restart) and farm workers run
//! as `tessel-measure-worker --nats` processes. Most use the deterministic fake measurement
//! (`--fake-ms`), so that results can be compared exactly.
//!
//! These tests FAIL, never skip, when there is no broker: install `nats-server`
//! (`apt-get install nats-server`; `.ci/run` does it).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tessel_measure::farm::{
    FakeMeasurer, FarmMeasurer, FarmRunnerConfig, LoopbackBroker, NatsRunner,
};
use tessel_measure::{Candidate, ErrorClass, Fault, MeasureOptions, Runner};

/// A broker for one test: a loopback `nats-server` of its own (which it can restart), or
/// the shared one `.ci/run` started.
struct Broker {
    url: String,
    own: Option<LoopbackBroker>,
}

impl Broker {
    /// A broker of this test's own; fails loudly without `nats-server`.
    fn own() -> Broker {
        let own = LoopbackBroker::start().unwrap_or_else(|e| {
            panic!("these tests need a NATS broker: {e} (`.ci/run` installs it)")
        });
        Broker {
            url: own.url(),
            own: Some(own),
        }
    }

    /// Its own broker if `nats-server` is installed, else the one `.ci/run` started.
    fn any() -> Broker {
        if LoopbackBroker::binary().is_some() {
            return Broker::own();
        }
        match std::env::var("TESSEL_NATS_URL") {
            Ok(url) if !url.is_empty() => Broker { url, own: None },
            _ => panic!(
                "no NATS broker: `nats-server` is not installed and TESSEL_NATS_URL is not set. \
                 Run `apt-get install nats-server` (`.ci/run` does and sets TESSEL_NATS_URL)."
            ),
        }
    }

    fn start(&mut self) {
        self.own
            .as_mut()
            .expect("a broker of the test's own")
            .restart()
            .expect("restart the broker");
    }

    /// Stops the broker gracefully (SIGTERM: it writes its store) and waits for it.
    fn stop(&mut self) {
        if let Some(b) = self.own.as_mut() {
            b.stop();
        }
    }
}

/// A farm worker process; killed when dropped.
struct Worker(Child);

impl Worker {
    fn start(url: &str, prefix: &str, extra: &[&str]) -> Worker {
        let child = Command::new(env!("CARGO_BIN_EXE_tessel-measure-worker"))
            .args([
                "--nats", url, "--prefix", prefix, "--cpu", "testcpu", "--quiet",
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start a farm worker");
        Worker(child)
    }

    /// Ended by a signal (SIGABRT of a poison candidate) rather than still running?
    fn exited(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(Some(_)))
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn runner(url: &str, prefix: &str, wait_s: u64) -> NatsRunner {
    let mut config = FarmRunnerConfig::new(url);
    config.prefix = prefix.to_string();
    config.cpu = Some("testcpu".to_string());
    config.no_worker_timeout = Duration::from_secs(wait_s);
    config.verbose = false;
    NatsRunner::connect(config, MeasureOptions::with_threads(1)).expect("connect")
}

fn candidates(n: usize, from: usize) -> Vec<Candidate> {
    (from..from + n)
        .map(|i| Candidate::new(format!("gmm:b=1,n={},m=8,k=8", 8 + i), vec![]))
        .collect()
}

/// Every result is the fake measurement of its own candidate.
fn assert_fake_results(batch: &[Candidate], results: &[tessel_measure::MeasureResult]) {
    assert_eq!(results.len(), batch.len());
    for (c, r) in batch.iter().zip(results) {
        assert!(r.is_ok(), "{}: {:?}", c.workload, r.error);
        assert_eq!(r.median(), Some(FakeMeasurer::cost(c)), "{}", c.workload);
    }
}

fn best(results: &[tessel_measure::MeasureResult]) -> usize {
    (0..results.len())
        .min_by(|&a, &b| {
            let m = |i: usize| results[i].median().unwrap_or(f64::INFINITY);
            m(a).total_cmp(&m(b))
        })
        .unwrap_or(0)
}

#[test]
fn farm_gives_the_local_results_and_takes_a_duplicate_once() {
    let broker = Broker::any();
    let p = "t_same";
    let _w1 = Worker::start(&broker.url, p, &["--fake-ms", "5"]);
    let _w2 = Worker::start(&broker.url, p, &["--fake-ms", "5", "--duplicate-results"]);
    let mut r = runner(&broker.url, p, 30);
    assert_eq!(
        r.wait_for_workers(2, Duration::from_secs(10)),
        2,
        "heartbeats"
    );
    let mut local = FakeMeasurer::default();
    let options = MeasureOptions::with_threads(1);
    let mut taken = 0;
    for round in 0..3 {
        let batch = candidates(10, 10 * round);
        let results = r.measure(&batch);
        assert_fake_results(&batch, &results);
        let local: Vec<_> = batch.iter().map(|c| local.measure(&options, c)).collect();
        assert_eq!(results, local, "round {round}");
        assert_eq!(best(&results), best(&local));
        taken += batch.len() as u64;
    }
    let stats = r.stats();
    assert_eq!((stats.published, stats.results), (taken, taken));
    // The second worker published each of its results twice; all but the last batch's
    // second copies were seen and dropped.
    assert!(stats.duplicates >= 1, "{stats:?}");
}

#[test]
fn a_worker_killed_mid_batch_loses_no_candidate_and_duplicates_no_result() {
    let broker = Broker::any();
    let p = "t_kill";
    let args = ["--fake-ms", "100", "--ack-wait-ms", "1000"];
    let mut victim = Worker::start(&broker.url, p, &args);
    let _w2 = Worker::start(&broker.url, p, &args);
    let _w3 = Worker::start(&broker.url, p, &args);
    let mut r = runner(&broker.url, p, 30);
    assert_eq!(r.wait_for_workers(3, Duration::from_secs(10)), 3);
    let batch = candidates(24, 0);
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(350));
        let _ = victim.0.kill(); // SIGKILL, mid-candidate
        let _ = victim.0.wait();
    });
    let results = r.measure(&batch);
    killer.join().unwrap();
    assert_fake_results(&batch, &results);
    let stats = r.stats();
    assert_eq!((stats.published, stats.results), (24, 24), "{stats:?}");
    assert_eq!(stats.duplicates, 0, "{stats:?}");
}

#[test]
fn a_broker_restart_mid_run_is_waited_out() {
    let mut broker = Broker::own();
    let p = "t_restart";
    let args = ["--fake-ms", "50", "--ack-wait-ms", "1500"];
    let _w1 = Worker::start(&broker.url, p, &args);
    let _w2 = Worker::start(&broker.url, p, &args);
    let mut r = runner(&broker.url, p, 60);
    assert_eq!(r.wait_for_workers(2, Duration::from_secs(10)), 2);
    let first = candidates(6, 0);
    assert_fake_results(&first, &r.measure(&first));
    let batch = candidates(30, 100);
    let results = std::thread::scope(|s| {
        let b = &mut broker;
        s.spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            b.stop();
            std::thread::sleep(Duration::from_millis(500));
            b.start();
        });
        r.measure(&batch)
    });
    assert_fake_results(&batch, &results);
    let after = candidates(4, 200);
    assert_fake_results(&after, &r.measure(&after));
    assert_eq!(r.stats().results, 40);
}

#[test]
fn a_poison_candidate_stops_at_the_delivery_limit() {
    let broker = Broker::any();
    let p = "t_poison";
    let args = [
        "--fake-ms",
        "1",
        "--ack-wait-ms",
        "700",
        "--max-attempts",
        "2",
    ];
    let mut workers: Vec<Worker> = (0..3)
        .map(|_| Worker::start(&broker.url, p, &args))
        .collect();
    let mut r = runner(&broker.url, p, 30);
    assert_eq!(r.wait_for_workers(3, Duration::from_secs(10)), 3);
    let mut batch = candidates(4, 0);
    batch[1] = batch[1].clone().with_fault(Fault::Abort); // aborts every worker it reaches
    let results = r.measure(&batch);
    assert_fake_results(&[batch[0].clone()], &results[..1]);
    assert_fake_results(&batch[2..], &results[2..]);
    assert_eq!(results[1].error_class(), Some(ErrorClass::WorkerLost));
    let message = &results[1].error.as_ref().unwrap().message;
    assert!(message.contains("given up after 2 deliveries"), "{message}");
    // Each delivery that was measured took its worker down (a delivery can also go to a
    // pull request a dying worker left behind, so at least one died).
    let dead = workers
        .iter_mut()
        .map(|w| w.exited())
        .filter(|&d| d)
        .count();
    assert!((1..=2).contains(&dead), "{dead} workers died");
}

#[test]
fn no_worker_for_the_target_fails_the_batch_after_the_wait_and_withdraws_it() {
    let broker = Broker::any();
    let p = "t_none";
    let mut r = runner(&broker.url, p, 1);
    let t = Instant::now();
    let batch = candidates(3, 0);
    let results = r.measure(&batch);
    assert!(t.elapsed() >= Duration::from_secs(1));
    for res in &results {
        assert_eq!(res.error_class(), Some(ErrorClass::WorkerLost));
        let m = &res.error.as_ref().unwrap().message;
        assert!(m.contains("no farm worker served target testcpu"), "{m}");
    }
    assert_eq!(r.stats().abandoned, 3);
    // A worker that comes later measures only what is asked then.
    let _w = Worker::start(&broker.url, p, &["--fake-ms", "1"]);
    let later = candidates(2, 10);
    assert_fake_results(&later, &r.measure(&later));
    std::thread::sleep(Duration::from_millis(300));
    let again = candidates(1, 20);
    assert_fake_results(&again, &r.measure(&again));
    assert_eq!(r.stats().duplicates, 0);
    assert_eq!(r.stats().results, 3);
}

#[test]
fn a_real_worker_measures_in_its_isolated_process_and_survives_a_crash() {
    let broker = Broker::any();
    let p = "t_real";
    let _w = Worker::start(&broker.url, p, &[]);
    let r = runner(&broker.url, p, 30);
    assert_eq!(r.wait_for_workers(1, Duration::from_secs(10)), 1);
    let mut options = r.options().clone();
    options.timing.min_repeat_ms = 0.1;
    drop(r);
    let mut config = FarmRunnerConfig::new(&broker.url);
    config.prefix = p.to_string();
    config.cpu = Some("testcpu".to_string());
    config.verbose = false;
    let mut r = NatsRunner::connect(config, options).unwrap();
    let ok = Candidate::new("gmm:b=1,n=8,m=8,k=8", vec![]);
    // The last one carries its loop nest, which travels to the worker's measuring process.
    let dag = std::sync::Arc::new(tessel_workloads::lookup(&ok.workload).unwrap().dag);
    let nest = tessel_ir::lower::lower(&tessel_ir::State::new(dag)).unwrap();
    let lowered = ok.clone().with_lowered(Some(std::sync::Arc::new(nest)));
    let batch = vec![ok.clone(), ok.with_fault(Fault::Abort), lowered];
    let results = r.measure(&batch);
    assert!(results[0].is_ok(), "{:?}", results[0].error);
    assert!(results[0].median().unwrap() > 0.0);
    assert!(results[0].phases.lower_ms > 0.0);
    assert_eq!(results[1].error_class(), Some(ErrorClass::RuntimeCrash));
    assert!(results[2].is_ok(), "{:?}", results[2].error);
    assert_eq!(
        results[2].phases.lower_ms, 0.0,
        "compiled from the nest it was sent"
    );
    assert_eq!(
        r.last_target().map(|t| t.arch.as_str()),
        Some(std::env::consts::ARCH)
    );
    // Every result came from the worker, and says so (records are keyed by it).
    assert_eq!(r.machines().len(), batch.len());
    assert!(r.machines().iter().all(|m| m.as_ref() == r.last_target()));
}
