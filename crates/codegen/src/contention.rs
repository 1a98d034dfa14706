//! How much of a kernel's time its threads lost to other processes.
//!
//! A kernel compiled for `T` threads runs on the calling thread and the `T − 1` workers of a
//! process-wide pool. When another process wants the same cores, some of those threads wait
//! on a run queue while the others finish their chunks and wait for them: a 2-thread kernel
//! then runs at one-thread speed for as long as the episode lasts (`docs/measurement.md`).
//! The clock alone cannot tell such a run from a slow kernel. Two signals can, and a
//! [`Snapshot`] taken before and after a timed run holds both:
//!
//! - the run-queue delay the Linux scheduler accounts per thread
//!   (`/proc/self/task/<tid>/schedstat`, second field): time runnable but not running. It is
//!   booked when the thread gets its CPU back, so a wait still going on at the second
//!   snapshot is missed;
//! - the share of the parallel loops' iterations that the pool's workers ran: `(T − 1)/T`
//!   when they keep up, near 0 when the caller had to run their chunks itself because they
//!   did not get a CPU (this one sees the missed waits).
//!
//! `tessel_measure` takes a snapshot around every timed repeat.
//!
//! ```
//! use std::time::Duration;
//! use tessel_codegen::contention::snapshot;
//! let before = snapshot(2);
//! let after = snapshot(2);
//! // Nothing ran in between: no contention (or nothing known, off Linux).
//! assert!(before.contention_until(&after, 2, Duration::from_millis(1)).unwrap_or(0.0) < 1e-9);
//! ```

use std::time::Duration;

/// What the threads of kernels of one thread count went through, up to a point in time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// [`run_queue_delay`] at that time.
    pub run_queue_delay: Option<Duration>,
    /// Parallel-loop iterations the pool ran so far.
    pub iterations: i64,
    /// Of those, the ones its workers (not the caller) ran.
    pub worker_iterations: i64,
}

/// A [`Snapshot`] of the calling thread and the pool for `threads` threads, now.
pub fn snapshot(threads: usize) -> Snapshot {
    let (iterations, worker_iterations) = crate::runtime::pool_iterations(threads);
    Snapshot {
        run_queue_delay: run_queue_delay(threads),
        iterations,
        worker_iterations,
    }
}

impl Snapshot {
    /// The share of the time between this snapshot and `later` (`wall` apart) that kernels on
    /// `threads` threads lost to other processes, in `[0, 1]`: the larger of the run-queue
    /// delay ÷ (`threads` × `wall`) and the share of their expected iterations that the
    /// workers did not run. `None` when neither is known (no delay accounting and no
    /// parallel loop ran).
    pub fn contention_until(
        &self,
        later: &Snapshot,
        threads: usize,
        wall: Duration,
    ) -> Option<f64> {
        let threads = threads.max(1);
        let delay = match (self.run_queue_delay, later.run_queue_delay) {
            (Some(a), Some(b)) if !wall.is_zero() => {
                Some(b.saturating_sub(a).as_secs_f64() / (threads as f64 * wall.as_secs_f64()))
            }
            _ => None,
        };
        let iterations = later.iterations - self.iterations;
        let lost = (threads > 1 && iterations > 0).then(|| {
            let share =
                (later.worker_iterations - self.worker_iterations) as f64 / iterations as f64;
            let expected = (threads - 1) as f64 / threads as f64;
            1.0 - share / expected
        });
        match (delay, lost) {
            (None, None) => None,
            (d, l) => Some(d.unwrap_or(0.0).max(l.unwrap_or(0.0)).clamp(0.0, 1.0)),
        }
    }
}

/// The summed run-queue delay, so far, of the calling thread and the workers of the pool for
/// `threads` threads (those that exist: a pool starts with the first kernel of its thread
/// count). `None` where the platform does not account it.
pub fn run_queue_delay(threads: usize) -> Option<Duration> {
    let mut total = imp::own_delay_ns()?;
    if threads > 1 {
        for tid in crate::runtime::pool_thread_ids(threads) {
            total += imp::thread_delay_ns(tid).unwrap_or(0);
        }
    }
    Some(Duration::from_nanos(total))
}

/// The kernel thread id of the calling thread, where there is one.
pub(crate) fn current_thread_id() -> Option<i64> {
    imp::current_thread_id()
}

#[cfg(target_os = "linux")]
mod imp {
    /// The second field of a `schedstat` file: nanoseconds spent runnable but not running.
    fn parse_delay(text: &str) -> Option<u64> {
        text.split_whitespace().nth(1)?.parse().ok()
    }

    pub fn own_delay_ns() -> Option<u64> {
        parse_delay(&std::fs::read_to_string("/proc/thread-self/schedstat").ok()?)
    }

    pub fn thread_delay_ns(tid: i64) -> Option<u64> {
        parse_delay(&std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?)
    }

    pub fn current_thread_id() -> Option<i64> {
        // SAFETY: gettid has no preconditions.
        Some(i64::from(unsafe { libc::gettid() }))
    }

    #[cfg(test)]
    mod schedstat_tests {
        #[test]
        fn the_delay_is_the_second_field() {
            assert_eq!(super::parse_delay("123 456 7\n"), Some(456));
            assert_eq!(super::parse_delay("123"), None);
            assert_eq!(super::parse_delay(""), None);
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    pub fn own_delay_ns() -> Option<u64> {
        None
    }

    pub fn thread_delay_ns(_tid: i64) -> Option<u64> {
        None
    }

    pub fn current_thread_id() -> Option<i64> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(delay_us: Option<u64>, iterations: i64, worker_iterations: i64) -> Snapshot {
        Snapshot {
            run_queue_delay: delay_us.map(Duration::from_micros),
            iterations,
            worker_iterations,
        }
    }

    #[test]
    fn contention_is_the_larger_of_the_delay_and_the_missing_worker_share() {
        let ms = Duration::from_millis(1);
        let c = |a: Snapshot, b: Snapshot, t| a.contention_until(&b, t, ms);
        // Workers ran their half, no delay: none.
        assert_eq!(c(snap(Some(0), 0, 0), snap(Some(0), 100, 50), 2), Some(0.0));
        // The caller ran everything: all the workers' share lost, whatever the delay says.
        assert_eq!(c(snap(Some(0), 0, 0), snap(Some(0), 100, 0), 2), Some(1.0));
        // Half a millisecond of delay over 2 threads × 1 ms: a quarter.
        let q = c(snap(Some(0), 0, 0), snap(Some(500), 100, 50), 2).unwrap();
        assert!((q - 0.25).abs() < 1e-9, "{q}");
        // Three threads, the workers ran a third instead of two thirds: half lost.
        let h = c(snap(None, 0, 0), snap(None, 90, 30), 3).unwrap();
        assert!((h - 0.5).abs() < 1e-9, "{h}");
        // Nothing known: no parallel loop ran and no delay accounting.
        assert_eq!(c(snap(None, 5, 2), snap(None, 5, 2), 2), None);
        // One thread: only the delay counts.
        assert_eq!(c(snap(Some(0), 0, 0), snap(Some(0), 10, 0), 1), Some(0.0));
    }
}
