//! Bench of the measurement farm on loopback (docs/farm.md):
//!
//! 1. broker overhead per candidate: one-candidate batches through the farm to one fake
//!    worker that does nothing (publish → result taken), against a ping round trip of the
//!    local worker process; median and p99 in ms;
//! 2. scaling: N = 1, 2, 4, 8, 16 fake workers whose "kernel" is a fixed sleep, candidates per
//!    second over a batch, and the ratio to N × the single worker's rate.
//!
//! ```sh
//! cargo build --release -p tessel-measure --bins --examples
//! target/release/examples/farm_bench [SLEEP_MS] [CANDIDATES]
//! ```
//!
//! It starts its own `nats-server -js` on a free loopback port ([`LoopbackBroker`]) and the workers as
//! `tessel-measure-worker --nats` processes from the same target folder.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tessel_measure::farm::{FarmRunnerConfig, LoopbackBroker, NatsRunner};
use tessel_measure::{Candidate, LocalWorkerRunner, MeasureOptions, Runner, WorkerCommand};

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let sleep_ms: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(20);
    let count: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(400);
    let dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent()?.parent().map(|d| d.to_path_buf()))
        .expect("target folder");
    let worker_bin = dir.join("tessel-measure-worker");
    assert!(
        worker_bin.is_file(),
        "build the worker first: cargo build --release -p tessel-measure --bins"
    );

    let broker = LoopbackBroker::start().expect("a loopback broker");
    let url = broker.url();
    let start_workers = |prefix: &str, n: usize, ms: u64| -> Vec<Kill> {
        (0..n)
            .map(|_| {
                Kill(
                    Command::new(&worker_bin)
                        .args(["--nats", &url, "--prefix", prefix, "--cpu", "bench"])
                        .args(["--fake-ms", &ms.to_string(), "--quiet"])
                        .stdout(Stdio::null())
                        .spawn()
                        .expect("worker"),
                )
            })
            .collect()
    };
    let runner = |prefix: &str| {
        let mut c = FarmRunnerConfig::new(&url);
        c.prefix = prefix.to_string();
        c.cpu = Some("bench".into());
        c.verbose = false;
        NatsRunner::connect(c, MeasureOptions::with_threads(1)).expect("connect")
    };
    let candidates = |n: usize| -> Vec<Candidate> {
        (0..n)
            .map(|i| Candidate::new(format!("gmm:b=1,n={},m=8,k=8", 8 + i), vec![]))
            .collect()
    };

    // 1. Overhead per candidate.
    let _w = start_workers("ovh", 1, 0);
    let mut r = runner("ovh");
    r.wait_for_workers(1, Duration::from_secs(10));
    let one = candidates(200);
    let mut farm: Vec<f64> = one
        .iter()
        .map(|c| {
            let t = Instant::now();
            let res = r.measure(std::slice::from_ref(c));
            assert!(res[0].is_ok());
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    farm.sort_by(f64::total_cmp);
    let mut local = LocalWorkerRunner::new(
        WorkerCommand::new(&worker_bin, &[]),
        MeasureOptions::with_threads(1),
    );
    let mut pings: Vec<f64> = (0..200)
        .map(|_| local.ping().expect("ping").as_secs_f64() * 1e3)
        .collect();
    pings.sort_by(f64::total_cmp);
    println!(
        "overhead per candidate (200 one-candidate batches, no-op fake kernel): farm median {:.3} ms p99 {:.3} ms; local worker ping median {:.3} ms p99 {:.3} ms",
        percentile(&farm, 0.5),
        percentile(&farm, 0.99),
        percentile(&pings, 0.5),
        percentile(&pings, 0.99)
    );
    drop(r);

    // 2. Scaling.
    let mut single = 0.0;
    for n in [1usize, 2, 4, 8, 16] {
        let prefix = format!("scale{n}");
        let _ws = start_workers(&prefix, n, sleep_ms);
        let mut r = runner(&prefix);
        r.wait_for_workers(n, Duration::from_secs(20));
        let batch = candidates(count);
        let t = Instant::now();
        let res = r.measure(&batch);
        let secs = t.elapsed().as_secs_f64();
        assert!(res.iter().all(|x| x.is_ok()));
        let rate = count as f64 / secs;
        if n == 1 {
            single = rate;
        }
        println!(
            "N={n}: {count} candidates of {sleep_ms} ms in {secs:.2} s = {rate:.1}/s, {:.2} x N x single",
            rate / (n as f64 * single)
        );
    }
}
