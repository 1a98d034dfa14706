//! What JIT code calls back into: math functions and the persistent thread pool that runs
//! outlined parallel loop bodies.
//!
//! A pool is created once per thread count and lives for the whole process; all kernels
//! compiled for that thread count share it. A call publishes one job (body function, context
//! pointer, iteration count) split into chunks that threads claim from an atomic counter; the
//! caller claims chunks too and returns once every iteration is done, so the context (which
//! lives in the caller's stack frame) outlives every use. A worker that wakes late finds no
//! chunk left and does nothing, so a descheduled worker never delays a call by more than the
//! chunk it is running. Threads busy-wait for up to 50 µs before sleeping on a condition
//! variable, which keeps back-to-back short calls cheap.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

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

/// One call's work, shared by the caller and the workers that pick it up.
struct Work {
    job: Job,
    chunk: i64,
    /// Next iteration to hand out.
    next: AtomicI64,
    /// Iterations finished.
    done: AtomicI64,
}

impl Work {
    /// Claims and runs chunks until none is left. Once `next` has passed the extent nobody
    /// touches the job's context again, so a worker that picks the work up late is harmless.
    fn run_chunks(&self, shared: &Shared, by_worker: bool) {
        loop {
            let start = self.next.fetch_add(self.chunk, Ordering::Relaxed);
            if start >= self.job.extent {
                break;
            }
            let end = (start + self.chunk).min(self.job.extent);
            shared.iterations.fetch_add(end - start, Ordering::Relaxed);
            if by_worker {
                shared
                    .worker_iterations
                    .fetch_add(end - start, Ordering::Relaxed);
            }
            // SAFETY: see `tessel_parallel_for`; chunks are disjoint and the caller waits
            // until every claimed chunk is done.
            unsafe { (self.job.f)(self.job.ctx as *const u8, start, end) };
            let finished = self.done.fetch_add(end - start, Ordering::SeqCst) + end - start;
            if finished == self.job.extent && shared.caller_waiting.load(Ordering::SeqCst) {
                let _st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
                shared.done.notify_all();
            }
        }
    }
}

struct State {
    epoch: u64,
    work: Option<Arc<Work>>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    done: Condvar,
    /// Mirrors `state.epoch` so that workers can spin without locking.
    epoch: AtomicU64,
    /// Workers sleeping on `wake` (changed under the `state` lock).
    sleepers: AtomicUsize,
    /// The caller sleeps on `done`.
    caller_waiting: AtomicBool,
    /// The workers' kernel thread ids, as each worker starts (for [`crate::contention`]).
    thread_ids: Mutex<Vec<i64>>,
    /// Parallel-loop iterations run on this pool, by anyone ...
    iterations: AtomicI64,
    /// ... and by its workers (not the caller): how much of the work the workers got to.
    worker_iterations: AtomicI64,
}

/// The process-wide pools, by thread count.
fn pools() -> &'static Mutex<HashMap<usize, Arc<Pool>>> {
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<Pool>>>> = OnceLock::new();
    POOLS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The kernel thread ids of the workers of the pool for `threads` threads (empty when no
/// kernel of that thread count has run yet, or the platform has no thread ids).
pub(crate) fn pool_thread_ids(threads: usize) -> Vec<i64> {
    let pools = pools().lock().unwrap_or_else(|e| e.into_inner());
    pools.get(&threads).map_or_else(Vec::new, |p| {
        p.shared
            .thread_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    })
}

/// Parallel-loop iterations run so far on the pool for `threads` threads: `(all, by the
/// workers)` (zeros when the pool does not exist yet).
pub(crate) fn pool_iterations(threads: usize) -> (i64, i64) {
    let pools = pools().lock().unwrap_or_else(|e| e.into_inner());
    pools.get(&threads).map_or((0, 0), |p| {
        (
            p.shared.iterations.load(Ordering::Relaxed),
            p.shared.worker_iterations.load(Ordering::Relaxed),
        )
    })
}

/// A fixed set of worker threads.
pub(crate) struct Pool {
    shared: Arc<Shared>,
    workers: usize,
    /// One job at a time; a caller that finds the pool busy runs its job inline.
    submit: Mutex<()>,
}

/// How long a waiting thread busy-waits before sleeping on a condition variable.
const SPIN: Duration = Duration::from_micros(50);

/// Busy-waits until `ready()` or `SPIN` has passed; returns `ready()`.
fn spin_until(ready: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    loop {
        for _ in 0..64 {
            if ready() {
                return true;
            }
            std::hint::spin_loop();
        }
        if start.elapsed() > SPIN {
            return ready();
        }
    }
}

impl Pool {
    /// The process-wide pool for `threads` threads.
    fn shared(threads: usize) -> Arc<Pool> {
        let mut pools = pools().lock().unwrap_or_else(|e| e.into_inner());
        pools
            .entry(threads)
            .or_insert_with(|| Arc::new(Pool::new(threads)))
            .clone()
    }

    fn new(threads: usize) -> Pool {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                epoch: 0,
                work: None,
            }),
            wake: Condvar::new(),
            done: Condvar::new(),
            epoch: AtomicU64::new(0),
            sleepers: AtomicUsize::new(0),
            caller_waiting: AtomicBool::new(false),
            thread_ids: Mutex::new(Vec::new()),
            iterations: AtomicI64::new(0),
            worker_iterations: AtomicI64::new(0),
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
        let work = Arc::new(Work {
            job,
            chunk: (job.extent / (threads * 4)).max(1),
            next: AtomicI64::new(0),
            done: AtomicI64::new(0),
        });
        {
            let mut st = s.state.lock().unwrap_or_else(|e| e.into_inner());
            st.work = Some(work.clone());
            st.epoch += 1;
            s.epoch.store(st.epoch, Ordering::Release);
        }
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            s.wake.notify_all();
        }
        work.run_chunks(s, false);
        let finished = || work.done.load(Ordering::SeqCst) == job.extent;
        if !spin_until(finished) {
            let mut st = s.state.lock().unwrap_or_else(|e| e.into_inner());
            s.caller_waiting.store(true, Ordering::SeqCst);
            while !finished() {
                st = s.done.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            s.caller_waiting.store(false, Ordering::SeqCst);
        }
        drop(guard);
    }
}

fn worker(s: &Shared) {
    if let Some(tid) = crate::contention::current_thread_id() {
        s.thread_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(tid);
    }
    let mut seen = 0u64;
    loop {
        spin_until(|| s.epoch.load(Ordering::Acquire) != seen);
        let work = {
            let mut st = s.state.lock().unwrap_or_else(|e| e.into_inner());
            while st.epoch == seen {
                s.sleepers.fetch_add(1, Ordering::SeqCst);
                st = s.wake.wait(st).unwrap_or_else(|e| e.into_inner());
                s.sleepers.fetch_sub(1, Ordering::SeqCst);
            }
            seen = st.epoch;
            st.work.clone()
        };
        if let Some(w) = work {
            w.run_chunks(s, true);
        }
    }
}
