//! Measures the harness itself on gmm-3 (`examples/schedules/gmm-3.json`):
//!
//! 1. overhead per candidate outside the kernel's own calls (replay + lower + compile +
//!    verify against the cached reference + bookkeeping), in-process and through a worker
//!    (parent wall time per candidate minus the kernel calls);
//! 2. the worker's ping round trip;
//! 3. the builder: a batch of 32 compiles on 1 worker × 1 thread, 1 worker × 2 threads, and
//!    2 worker processes × 1 thread.
//!
//! `cargo build --release -p tessel-measure --bin tessel-measure-worker --example overhead &&
//!  target/release/examples/overhead [N] [KERNEL_THREADS]`

use std::path::PathBuf;
use std::time::Instant;
use tessel_measure::{
    Candidate, InProcessRunner, LocalWorkerRunner, MeasureOptions, Runner, ScheduleFile,
    WorkerCommand,
};

fn median(v: Vec<f64>) -> f64 {
    tessel_ir::stats::median(&v).unwrap_or(f64::NAN)
}

fn worker_command() -> WorkerCommand {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/examples/overhead → target/<profile>/tessel-measure-worker
    let bin = exe
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("tessel-measure-worker"))
        .expect("worker path");
    WorkerCommand::new(bin, &[])
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(30);
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/schedules/gmm-3.json");
    let file = ScheduleFile::load(&path).expect("gmm-3 schedule");
    let cand = Candidate::new("gmm-3", file.steps.clone());
    let threads: usize = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(tessel_measure::options::available_cores);
    let options = MeasureOptions::with_threads(threads);
    println!(
        "gmm-3, {} kernel threads, timing {:?}",
        options.codegen.threads, options.timing
    );

    // 1a. In-process.
    let mut inproc = InProcessRunner::new(options.clone()).expect("runner");
    let first = inproc.measure(std::slice::from_ref(&cand));
    assert!(first[0].is_ok(), "{:?}", first[0].error);
    let mut over = Vec::new();
    let mut parts = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let r = inproc.measure(std::slice::from_ref(&cand)).remove(0);
        assert!(r.is_ok(), "{:?}", r.error);
        over.push(r.phases.overhead_ms());
        parts.0.push(r.phases.replay_ms);
        parts.1.push(r.phases.lower_ms);
        parts.2.push(r.phases.compile_ms);
        parts.3.push(r.phases.verify_ms);
    }
    println!(
        "in-process overhead per candidate: median {:.3} ms (replay {:.3}, lower {:.3}, compile {:.3}, verify {:.3}); first candidate (reference evaluated) {:.1} ms",
        median(over),
        median(parts.0),
        median(parts.1),
        median(parts.2),
        median(parts.3),
        first[0].phases.overhead_ms()
    );

    // 1b. Through a worker: parent wall time minus the kernel calls and flushes.
    let mut worker = LocalWorkerRunner::new(worker_command(), options.clone());
    let warm = worker.measure(std::slice::from_ref(&cand));
    assert!(warm[0].is_ok(), "{:?}", warm[0].error);
    let mut over = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        let r = worker.measure(std::slice::from_ref(&cand)).remove(0);
        let wall = t.elapsed().as_secs_f64() * 1e3;
        assert!(r.is_ok(), "{:?}", r.error);
        over.push(wall - r.phases.run_ms - r.phases.flush_ms);
    }
    println!(
        "worker overhead per candidate (parent wall - kernel calls): median {:.3} ms",
        median(over)
    );

    // 2. Ping.
    let rtts: Vec<f64> = (0..200)
        .map(|_| worker.ping().expect("ping").as_secs_f64() * 1e3)
        .collect();
    println!("worker ping round trip: median {:.4} ms", median(rtts));
    drop(worker);

    // 3. Builder: 16 compiles, build only.
    let mut build_only = options.clone();
    build_only.timing.repeat = 0;
    build_only.timing.warmup = 0;
    build_only.verify.enabled = false;
    let batch: Vec<Candidate> = (0..32).map(|_| cand.clone()).collect();
    let configs = [(1usize, 1usize), (2, 1), (1, 2)];
    let mut pools: Vec<Vec<LocalWorkerRunner>> = configs
        .iter()
        .map(|&(threads, workers)| {
            let mut o = build_only.clone();
            o.builder_threads = threads;
            (0..workers)
                .map(|_| {
                    let mut r = LocalWorkerRunner::new(worker_command(), o.clone());
                    r.start().expect("worker");
                    r
                })
                .collect()
        })
        .collect();
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
    // Interleaved rounds, so that load from other processes hits every configuration alike.
    for _ in 0..9 {
        for (c, runners) in pools.iter_mut().enumerate() {
            let per = batch.len() / runners.len();
            let t = Instant::now();
            std::thread::scope(|s| {
                for (k, r) in runners.iter_mut().enumerate() {
                    let part = &batch[k * per..(k + 1) * per];
                    s.spawn(move || {
                        for res in r.measure(part) {
                            assert!(res.is_ok(), "{:?}", res.error);
                        }
                    });
                }
            });
            times[c].push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    for (&(threads, workers), t) in configs.iter().zip(times) {
        let min = t.iter().copied().fold(f64::INFINITY, f64::min);
        println!(
            "builder, 32 x gmm-3: {workers} worker(s) x {threads} thread(s): median {:.1} ms, min {:.1} ms ({:.2} ms per candidate, median), 9 rounds",
            median(t.clone()),
            min,
            median(t) / 32.0
        );
    }
}
