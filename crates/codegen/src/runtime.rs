//! What JIT code calls back into: math functions and the persistent thread pool that runs
//! outlined parallel loop bodies.
//!
//! A pool is created once per thread count and lives for the whole process; all kernels
//! compiled for that thread count share it. A call hands one job (body function, context
//! pointer, iteration count) to the pool; the caller takes part in the work and returns when
//! every worker has acknowledged the job, so the context (which lives in the caller's stack
//! frame) outlives every use. Workers spin briefly after a job before sleeping on a condition
//! variable, which keeps back-to-back short calls cheap.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

/// An outlined parallel loop body: runs iterations `start..end` with the given context.
pub(crate) type BodyFn = unsafe extern "C" fn(ctx: *const u8, start: i64, end: i64);

/// `expf`, imported by JIT code as `tessel_expf`.
pub(crate) extern "C" fn tessel_expf(x: f32) -> f32 {
    x.exp()
}

/// Runs `f(ctx, start, end)` over chunks covering `0..extent`, on the pool of `rt` when it has
/// one. Imported by JIT code as `tessel_parallel_for`.
///
/// # Safety
/// `rt` must point to a live [`Runtime`]; `f` must be safe to call concurrently on disjoint
/// ranges with `ctx`, and `ctx` must stay valid until this returns (it does: this function
/// returns only after all chunks are done).
pub(crate) unsafe extern "C" fn tessel_parallel_for(
    rt: *const Runtime,
    f: BodyFn,
    ctx: *const u8,
    extent: i64,
) {
    if extent <= 0 {
        return;
    }
    // SAFETY: the caller passes the runtime pointer that `Kernel::run` handed to the kernel.
    let pool = unsafe { rt.as_ref() }.and_then(|r| r.pool.as_deref());
    match pool {
        Some(pool) if extent > 1 => pool.run(Job {
            f,
            ctx: ctx as usize,
            extent,
        }),
        // SAFETY: forwarded from this function's contract.
        _ => unsafe { f(ctx, 0, extent) },
    }
}

/// Per-kernel runtime state passed to JIT code.
pub(crate) struct Runtime {
    pool: Option<Arc<Pool>>,
}

impl Runtime {
    /// A runtime using `threads` threads in total (the caller plus `threads - 1` workers).
    pub fn new(threads: usize) -> Runtime {
        Runtime {
            pool: (threads > 1).then(|| Pool::shared(threads)),
        }
    }
}

#[derive(Clone, Copy)]
struct Job {
    f: BodyFn,
    ctx: usize,
    extent: i64,
}

struct State {
    epoch: u64,
    job: Option<Job>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    done: Condvar,
    /// Mirrors `state.epoch` so that workers can spin without locking.
    epoch: AtomicU64,
    /// Next chunk to hand out.
    next: AtomicI64,
    /// Workers that have not finished the current job.
    pending: AtomicUsize,
    /// Iterations per chunk of the current job.
    chunk: AtomicI64,
}

/// A fixed set of worker threads.
pub(crate) struct Pool {
    shared: Arc<Shared>,
    workers: usize,
    /// One job at a time; a caller that finds the pool busy runs its job inline.
    submit: Mutex<()>,
}

/// Iterations of busy-waiting before a worker sleeps.
const SPIN: u32 = 1 << 15;

impl Pool {
    /// The process-wide pool for `threads` threads.
    fn shared(threads: usize) -> Arc<Pool> {
        static POOLS: OnceLock<Mutex<HashMap<usize, Arc<Pool>>>> = OnceLock::new();
        let pools = POOLS.get_or_init(|| Mutex::new(HashMap::new()));
        let mut pools = pools.lock().unwrap_or_else(|e| e.into_inner());
        pools
            .entry(threads)
            .or_insert_with(|| Arc::new(Pool::new(threads)))
            .clone()
    }

    fn new(threads: usize) -> Pool {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                epoch: 0,
                job: None,
            }),
            wake: Condvar::new(),
            done: Condvar::new(),
            epoch: AtomicU64::new(0),
            next: AtomicI64::new(0),
            pending: AtomicUsize::new(0),
            chunk: AtomicI64::new(1),
        });
        let mut workers = 0;
        for k in 1..threads {
            let s = shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("tessel-worker-{k}"))
                .stack_size(32 << 20)
                .spawn(move || worker(&s));
            if spawned.is_ok() {
                workers += 1;
            }
        }
        Pool {
            shared,
            workers,
            submit: Mutex::new(()),
        }
    }

    fn run(&self, job: Job) {
        let guard = match self.submit.try_lock() {
            Ok(g) if self.workers > 0 => g,
            // Busy (another kernel is using the pool) or no workers: run inline.
            _ => {
                // SAFETY: see `tessel_parallel_for`.
                unsafe { (job.f)(job.ctx as *const u8, 0, job.extent) };
                return;
            }
        };
        let s = &*self.shared;
        let threads = self.workers as i64 + 1;
        let chunk = (job.extent / (threads * 4)).max(1);
        s.chunk.store(chunk, Ordering::Relaxed);
        s.next.store(0, Ordering::Relaxed);
        s.pending.store(self.workers, Ordering::Relaxed);
        {
            let mut st = s.state.lock().unwrap_or_else(|e| e.into_inner());
            st.job = Some(job);
            st.epoch += 1;
            s.epoch.store(st.epoch, Ordering::Release);
        }
        s.wake.notify_all();
        run_chunks(s, job);
        let mut spins = 0u32;
        while s.pending.load(Ordering::Acquire) != 0 && spins < SPIN {
            std::hint::spin_loop();
            spins += 1;
        }
        if s.pending.load(Ordering::Acquire) != 0 {
            let mut st = s.state.lock().unwrap_or_else(|e| e.into_inner());
            while s.pending.load(Ordering::Acquire) != 0 {
                st = s.done.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        }
        drop(guard);
    }
}

fn run_chunks(s: &Shared, job: Job) {
    let chunk = s.chunk.load(Ordering::Relaxed);
    loop {
        let start = s.next.fetch_add(chunk, Ordering::Relaxed);
        if start >= job.extent {
            break;
        }
        let end = (start + chunk).min(job.extent);
        // SAFETY: see `tessel_parallel_for`; chunks are disjoint.
        unsafe { (job.f)(job.ctx as *const u8, start, end) };
    }
}

fn worker(s: &Shared) {
    let mut seen = 0u64;
    loop {
        let mut spins = 0u32;
        while s.epoch.load(Ordering::Acquire) == seen && spins < SPIN {
            std::hint::spin_loop();
            spins += 1;
        }
        let job = {
            let mut st = s.state.lock().unwrap_or_else(|e| e.into_inner());
            while st.epoch == seen {
                st = s.wake.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            seen = st.epoch;
            st.job
        };
        if let Some(job) = job {
            run_chunks(s, job);
        }
        if s.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _st = s.state.lock().unwrap_or_else(|e| e.into_inner());
            s.done.notify_all();
        }
    }
}
