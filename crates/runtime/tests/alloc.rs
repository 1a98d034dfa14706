//! Steady-state inference allocates nothing: a counting global allocator (this test binary's
//! own, so it counts every thread, the thread pool's workers included) sees no allocation
//! during `Module::run_into` once the module has run a few inferences.
//!
//! One test only in this binary: the test harness's other threads would be counted too.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tessel_ir::target::Target;
use tessel_runtime::Module;
use tessel_workloads::networks::{self, Network, Weights};

/// The system allocator, counting allocations (and reallocations) while `COUNTING` is on.
struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f`, on any thread.
fn allocations(f: impl FnOnce()) -> usize {
    ALLOCATIONS.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    f();
    COUNTING.store(false, Ordering::SeqCst);
    ALLOCATIONS.load(Ordering::SeqCst)
}

/// Builds `net` on `threads` threads (default schedules), warms it up and counts the
/// allocations of five more inferences; also checks the output still equals the first one.
fn steady_state_allocations(net: &Network, threads: usize) -> usize {
    let weights = Weights::random(net, 3);
    let mut module = Module::build(net, &weights, None, &Target::native(), threads).unwrap();
    let x = networks::random_inputs(net, 4);
    let refs: Vec<&[f32]> = x.iter().map(|v| v.as_slice()).collect();
    let first = module.run(&refs).unwrap();
    let mut outs: Vec<Vec<f32>> = module.outputs().iter().map(|o| vec![0.0; o.len]).collect();
    let mut o: Vec<&mut [f32]> = outs.iter_mut().map(|v| v.as_mut_slice()).collect();
    for _ in 0..3 {
        module.run_into(&refs, &mut o).unwrap();
    }
    let n = allocations(|| {
        for _ in 0..5 {
            module.run_into(&refs, &mut o).unwrap();
        }
    });
    drop(o);
    assert_eq!(outs, first, "{}: a later inference differs", net.name());
    n
}

#[test]
fn steady_state_inference_allocates_nothing() {
    // The counter counts: an allocation inside `allocations` is seen.
    assert!(allocations(|| drop(std::hint::black_box(vec![1u8; 10]))) >= 1);
    let tiny = networks::tiny_cnn(1).unwrap();
    let mbv2 = networks::mobilenet_v2(1).unwrap();
    for (net, threads) in [(&tiny, 1), (&tiny, 2), (&mbv2, 2)] {
        let n = steady_state_allocations(net, threads);
        assert_eq!(
            n,
            0,
            "{} on {threads} threads: {n} allocations in 5 inferences",
            net.name()
        );
    }
}
