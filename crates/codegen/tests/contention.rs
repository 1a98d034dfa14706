//! The contention snapshot around real kernel runs: the pool counts every parallel-loop
//! iteration it hands out (by anyone, and by its workers), so the share of the work the
//! workers got to, which the measurement harness reads around every timed repeat, is exact.

use std::time::{Duration, Instant};
use tessel_codegen::builder::NestBuilder;
use tessel_codegen::contention::snapshot;
use tessel_codegen::{compile, CompileOptions};
use tessel_ir::loop_nest::LoopKind::{Parallel, Serial};

/// out[i, j] = 2·x[i, j] over `rows` parallel rows of `cols`.
fn doubling_kernel(rows: i64, cols: i64, threads: usize) -> tessel_codegen::Kernel {
    let mut b = NestBuilder::new("double");
    let x = b.input("x", &[rows, cols]);
    let out = b.output("out", &[rows, cols]);
    b.for_("i", rows, Parallel, |b, i| {
        b.for_("j", cols, Serial, |b, j| {
            let k = b.idx(i, cols, j);
            let v = b.load(x, k);
            let two = b.float(2.0);
            let y = b.mul(v, two);
            b.store(out, k, y);
        });
    });
    let nest = b.finish();
    compile(&nest, &CompileOptions::with_threads(threads)).expect("compiles")
}

#[test]
fn the_pool_counts_every_iteration_it_runs_and_contention_stays_in_range() {
    // Three threads: no other test of this binary uses that pool.
    let (rows, cols, calls) = (37i64, 64i64, 10i64);
    let kernel = doubling_kernel(rows, cols, 3);
    let x: Vec<f32> = (0..rows * cols).map(|v| v as f32).collect();
    let mut out = vec![0.0f32; x.len()];
    kernel.run(&[&x], &mut [&mut out]).expect("runs"); // starts the pool
    let before = snapshot(3);
    let start = Instant::now();
    for _ in 0..calls {
        kernel.run(&[&x], &mut [&mut out]).expect("runs");
    }
    let after = snapshot(3);
    assert_eq!(after.iterations - before.iterations, rows * calls);
    let by_workers = after.worker_iterations - before.worker_iterations;
    assert!((0..=rows * calls).contains(&by_workers), "{by_workers}");
    let c = before
        .contention_until(&after, 3, start.elapsed())
        .expect("a parallel loop ran, so contention is known");
    assert!((0.0..=1.0).contains(&c), "{c}");
    assert!(out.iter().zip(&x).all(|(o, v)| *o == 2.0 * v));
}

#[test]
fn a_one_thread_kernel_leaves_the_pools_alone() {
    let kernel = doubling_kernel(16, 8, 1);
    let x = vec![1.0f32; 128];
    let mut out = vec![0.0f32; 128];
    let before = snapshot(1);
    kernel.run(&[&x], &mut [&mut out]).expect("runs");
    let after = snapshot(1);
    assert_eq!((after.iterations, after.worker_iterations), (0, 0));
    // One thread: only the run-queue delay could say anything, and it is a share in [0, 1].
    if let Some(c) = before.contention_until(&after, 1, Duration::from_millis(1)) {
        assert!((0.0..=1.0).contains(&c), "{c}");
    }
}
