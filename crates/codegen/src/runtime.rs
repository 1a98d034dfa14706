//! What JIT code calls back into: math functions and the persistent thread pool that runs
//! outlined parallel loop bodies.
//!
//! A pool is created once per thread count and lives for the whole process; all kernels
//! compiled for that thread count share it. A call publishes one job (body function, context
//! pointer, iteration count). The iterations are cut into one contiguous share per thread
//! (the caller is thread 0), as TVM's and OpenMP's static schedules do, and each share into
//! chunks claimed from an atomic counter: a thread runs its own share first, then takes what is
//! left of the others'. The caller returns once every iteration is done, so the context (which
//! lives in the caller's stack frame) outlives every use.
//!
//! Why shares and not one counter for all: with one counter, which thread runs which chunk
//! was a race, decided by which thread finished its previous chunk first. The programs a
//! search finds often have few, large parallel iterations (four blocks of 512×512 for a
//! 1024³ matmul); whether a thread's two blocks shared an operand panel or not changed the
//! time by 10 %, and a process kept the same outcome for most of its calls, so fresh processes
//! of the same program read two different speeds (docs/measurement.md). With shares the
//! assignment is fixed while no thread is held up; a thread that wakes late or is descheduled
//! still costs at most the chunk it is running, as the others take the rest of its share.
//! Threads busy-wait for up to 50 µs before sleeping on a condition variable, which keeps
//! back-to-back short calls cheap.

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
    /// One contiguous share of the iterations per thread (the caller's first).
    shares: Vec<Share>,
    /// Iterations finished.
    done: AtomicI64,
}

/// A contiguous range of a job's iterations, handed out chunk by chunk.
struct Share {
    /// Next iteration to hand out.
    next: AtomicI64,
    /// End of the range (exclusive).
    end: i64,
}

impl Work {
    /// The work of `job` for `threads` threads: `threads` contiguous shares as equal as
    /// whole iterations allow, each handed out in chunks of about a quarter of a share.
    #[cfg(test)]
    fn new(job: Job, threads: i64) -> Work {
        let mut w = Work::empty(job);
        w.reset(job, threads);
        w
    }

    /// Work with no shares (nothing to run until [`Work::reset`]).
    fn empty(job: Job) -> Work {
        Work {
            job,
            chunk: 1,
            shares: Vec::new(),
            done: AtomicI64::new(0),
        }
    }

    /// Makes this the work of `job` for `threads` threads (contiguous shares, chunks of a quarter share), reusing the
    /// shares' memory: once a pool has run a job, the next ones allocate nothing.
    fn reset(&mut self, job: Job, threads: i64) {
        let bound = |t: i64| job.extent * t / threads;
        self.job = job;
        self.chunk = (job.extent / (threads * 4)).max(1);
        self.shares.clear();
        self.shares.extend((0..threads).map(|t| Share {
            next: AtomicI64::new(bound(t)),
            end: bound(t + 1),
        }));
        *self.done.get_mut() = 0;
    }

    /// Thread `me` claims and runs chunks of its own share, then of the others' shares in
    /// turn, until none is left. Once every share's `next` has passed its end nobody touches
    /// the job's context again, so a worker that picks the work up late is harmless.
    fn run_chunks(&self, shared: &Shared, me: usize) {
        let n = self.shares.len();
        for k in 0..n {
            let share = &self.shares[(me + k) % n];
            loop {
                let start = share.next.fetch_add(self.chunk, Ordering::Relaxed);
                if start >= share.end {
                    break;
                }
                let end = (start + self.chunk).min(share.end);
                self.run_chunk(shared, start, end, me != 0);
            }
        }
    }

    /// Runs iterations `start..end` (claimed by the caller, or by a worker when `by_worker`).
    fn run_chunk(&self, shared: &Shared, start: i64, end: i64, by_worker: bool) {
        shared.iterations.fetch_add(end - start, Ordering::Relaxed);
        if by_worker {
            shared
                .worker_iterations
                .fetch_add(end - start, Ordering::Relaxed);
        }
        // SAFETY: see `tessel_parallel_for`; chunks are disjoint (each share's counter hands
        // out each of its iterations once) and the caller waits until every claimed chunk is
        // done.
        unsafe { (self.job.f)(self.job.ctx as *const u8, start, end) };
        let finished = self.done.fetch_add(end - start, Ordering::SeqCst) + end - start;
        if finished == self.job.extent && shared.caller_waiting.load(Ordering::SeqCst) {
            let _st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            shared.done.notify_all();
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
    /// Workers that have started (registered their id): [`Pool::new`] waits for all of them,
    /// so that no worker's start-up (which allocates) falls into a later kernel call.
    started: AtomicUsize,
    /// Parallel-loop iterations run on this pool, by anyone ...
    iterations: AtomicI64,
    /// ... and by its workers (not the caller): how much of the work the workers got to.
    worker_iterations: AtomicI64,
}

impl Shared {
    /// A pool's shared state before any job: no work, nobody waiting, no iterations run.
    fn new() -> Shared {
        Shared {
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
            started: AtomicUsize::new(0),
            iterations: AtomicI64::new(0),
            worker_iterations: AtomicI64::new(0),
        }
    }
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
    /// One job at a time; a caller that finds the pool busy runs its job inline. It guards
    /// the work descriptors the pool reuses.
    submit: Mutex<Spares>,
}

/// Work descriptors of past jobs, reused so that a job allocates nothing once the pool has
/// run a few. A descriptor is reused only when nobody else holds it: the pool's state keeps
/// the last job's until the next job replaces it, and a worker that woke late may still hold
/// an older one (it finds nothing left to run in it and drops it).
#[derive(Default)]
struct Spares(Vec<Arc<Work>>);

/// Descriptors kept for reuse (the last job's is still held by the state, a late worker may
/// hold another; the rest are free).
const SPARES: usize = 4;

impl Spares {
    /// A descriptor for `job` on `threads` threads: a free spare reset for it, else a new one
    /// (kept as a spare while there are fewer than [`SPARES`]).
    fn take(&mut self, job: Job, threads: i64) -> Arc<Work> {
        for w in self.0.iter_mut() {
            if let Some(free) = Arc::get_mut(w) {
                free.reset(job, threads);
                return w.clone();
            }
        }
        let mut w = Work::empty(job);
        w.reset(job, threads);
        let w = Arc::new(w);
        if self.0.len() < SPARES {
            self.0.push(w.clone());
        }
        w
    }
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
        let shared = Arc::new(Shared::new());
        let mut workers = 0;
        for k in 1..threads {
            let s = shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("tessel-worker-{k}"))
                .stack_size(32 << 20)
                .spawn(move || worker(&s, k));
            if spawned.is_ok() {
                workers += 1;
            }
        }
        // Every worker registers before the pool is used (a worker's start-up allocates;
        // a steady-state inference must not). A worker that never starts is not waited for
        // past the deadline: the caller runs what it does not take.
        let deadline = Instant::now() + Duration::from_secs(5);
        while shared.started.load(Ordering::Acquire) < workers && Instant::now() < deadline {
            std::thread::yield_now();
        }
        Pool {
            shared,
            workers,
            submit: Mutex::new(Spares::default()),
        }
    }

    fn run(&self, job: Job) {
        let mut guard = match self.submit.try_lock() {
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
        let work = guard.take(job, threads);
        {
            let mut st = s.state.lock().unwrap_or_else(|e| e.into_inner());
            st.work = Some(work.clone());
            st.epoch += 1;
            s.epoch.store(st.epoch, Ordering::Release);
        }
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            s.wake.notify_all();
        }
        work.run_chunks(s, 0);
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

/// Worker `index` (1 ..= workers; the caller is thread 0) of a pool.
fn worker(s: &Shared, index: usize) {
    if let Some(tid) = crate::contention::current_thread_id() {
        s.thread_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(tid);
    }
    s.started.fetch_add(1, Ordering::Release);
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
            w.run_chunks(s, index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a test body records: every iteration it ran, in order.
    struct Log(Mutex<Vec<i64>>);

    unsafe extern "C" fn record(ctx: *const u8, start: i64, end: i64) {
        // SAFETY: the tests pass a pointer to a `Log` that outlives the job.
        let log = unsafe { &*(ctx as *const Log) };
        log.0.lock().unwrap().extend(start..end);
    }

    fn job(log: &Log, extent: i64) -> Job {
        Job {
            f: record,
            ctx: log as *const Log as usize,
            extent,
        }
    }

    #[test]
    fn shares_are_contiguous_and_cover_the_extent() {
        let log = Log(Mutex::new(Vec::new()));
        for (extent, threads) in [(4, 2), (7, 2), (3, 4), (1000, 3), (1, 2)] {
            let w = Work::new(job(&log, extent), threads);
            let bounds: Vec<(i64, i64)> = w
                .shares
                .iter()
                .map(|s| (s.next.load(Ordering::Relaxed), s.end))
                .collect();
            assert_eq!(bounds.first().map(|b| b.0), Some(0));
            assert_eq!(bounds.last().map(|b| b.1), Some(extent));
            for pair in bounds.windows(2) {
                assert_eq!(pair[0].1, pair[1].0, "{bounds:?}");
            }
            let lens: Vec<i64> = bounds.iter().map(|b| b.1 - b.0).collect();
            let (lo, hi) = (lens.iter().min().unwrap(), lens.iter().max().unwrap());
            assert!(hi - lo <= 1, "unequal shares {lens:?}");
        }
    }

    #[test]
    fn a_thread_runs_its_own_share_first_then_takes_the_rest() {
        // A thread alone (the others held up) runs every iteration once: its own share first,
        // in order, then the following shares.
        let log = Log(Mutex::new(Vec::new()));
        let w = Work::new(job(&log, 10), 2);
        let shared = Shared::new();
        w.run_chunks(&shared, 1);
        let ran = log.0.lock().unwrap().clone();
        assert_eq!(ran, vec![5, 6, 7, 8, 9, 0, 1, 2, 3, 4]);
        assert_eq!(w.done.load(Ordering::SeqCst), 10);
        assert_eq!(shared.worker_iterations.load(Ordering::Relaxed), 10);
        // The caller, arriving late, finds nothing left.
        w.run_chunks(&shared, 0);
        assert_eq!(log.0.lock().unwrap().len(), 10);
    }

    #[test]
    fn a_pool_runs_every_iteration_exactly_once() {
        let pool = Pool::new(3);
        for extent in [2, 3, 5, 64, 1001] {
            let log = Log(Mutex::new(Vec::new()));
            pool.run(job(&log, extent));
            let mut ran = log.0.lock().unwrap().clone();
            ran.sort_unstable();
            assert_eq!(ran, (0..extent).collect::<Vec<_>>());
        }
    }
}
