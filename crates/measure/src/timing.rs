//! Timing a kernel: warm-up, `number` calls per repeat grown to a minimum repeat time,
//! `repeat` repeats, optional cache flush, weights moved away from the core before every
//! call ([`time_calls`], [`CacheFlusher`], [`Residence`]).
//!
//! Every repeat also reads how long the kernel's threads waited for a CPU
//! ([`tessel_codegen::contention`]); a repeat contended beyond
//! [`TimingSettings::max_contention`] is taken again (at most
//! [`TimingSettings::retakes`] times per candidate), so that a candidate's costs are its
//! speed on the cores it runs on, not the luck of the minutes it was measured in.

use crate::error::MeasureError;
use crate::options::{has_clflushopt, Residence, TimingSettings};
use crate::result::Timing;
use std::time::{Duration, Instant};
use tessel_codegen::contention::Snapshot;

/// Bytes written by [`CacheFlusher::flush`]: 1.5 × the 32 MiB L3 of the reference machine, so
/// that every line of a kernel's data is evicted from every cache level.
pub const FLUSH_BYTES: usize = 48 << 20;

/// Most calls in one repeat, however fast the kernel.
const MAX_NUMBER: u32 = 1 << 20;

/// Evicts the CPU caches by writing over a buffer larger than the last-level cache
/// ([`CacheFlusher::flush`]), or moves a kernel's operands away from the core
/// ([`CacheFlusher::place`]).
#[derive(Debug, Default)]
pub struct CacheFlusher {
    buf: Vec<u8>,
    round: u8,
    weights: Vec<(usize, usize)>,
    activations: Vec<(usize, usize)>,
}

impl CacheFlusher {
    /// A flusher; its buffer is allocated on the first flush.
    pub fn new() -> CacheFlusher {
        CacheFlusher::default()
    }

    /// Writes over the whole buffer (a different byte every time, so it cannot be skipped).
    pub fn flush(&mut self) {
        if self.buf.len() != FLUSH_BYTES {
            self.buf = vec![0; FLUSH_BYTES];
        }
        self.round = self.round.wrapping_add(1);
        self.buf.fill(self.round);
        std::hint::black_box(&mut self.buf);
    }

    /// Sets the memory [`CacheFlusher::place`] moves, as `(address, bytes)` ranges: a
    /// kernel's weights (`Kernel::weight_regions`) and its other inputs. The caller keeps
    /// them allocated until it sets others.
    pub fn set_operands(&mut self, weights: Vec<(usize, usize)>, activations: Vec<(usize, usize)>) {
        self.weights = weights;
        self.activations = activations;
    }

    /// Bytes of weights and of activations [`CacheFlusher::place`] moves.
    pub fn operand_bytes(&self) -> (usize, usize) {
        let total = |r: &[(usize, usize)]| r.iter().map(|&(_, bytes)| bytes).sum();
        (total(&self.weights), total(&self.activations))
    }

    /// Moves every cache line of the weights to `weights` and of the activations to
    /// `activations` (set by [`CacheFlusher::set_operands`]): [`Residence::Shared`] demotes
    /// each line from the cores' private caches to the shared last-level cache (`CLDEMOTE`),
    /// [`Residence::Memory`] writes it back and invalidates it in every cache of every core
    /// (`CLFLUSHOPT`, or `CLFLUSH` where the CPU lacks it), [`Residence::Warm`] leaves it.
    /// Then waits for the lines to move. A no-op off x86-64.
    pub fn place(&self, weights: Residence, activations: Residence) {
        move_lines(&self.weights, weights);
        move_lines(&self.activations, activations);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a fence has no memory operands.
        unsafe {
            std::arch::x86_64::_mm_mfence()
        };
    }
}

/// Moves every cache line of `regions` to `to` (see [`CacheFlusher::place`]).
fn move_lines(regions: &[(usize, usize)], to: Residence) {
    #[cfg(target_arch = "x86_64")]
    {
        if to == Residence::Warm {
            return;
        }
        let flush_opt = has_clflushopt();
        for &(start, bytes) in regions {
            let first = start & !(CACHE_LINE - 1);
            for line in (first..start + bytes).step_by(CACHE_LINE) {
                // SAFETY: `line` lies in (or, for the first, shares its cache line with) a
                // region the caller keeps allocated (`set_operands`). Neither instruction
                // reads or changes data: they only move the line between caches.
                unsafe {
                    if to == Residence::Shared {
                        std::arch::asm!(
                            "cldemote [{line}]",
                            line = in(reg) line,
                            options(nostack, preserves_flags)
                        );
                    } else if flush_opt {
                        std::arch::asm!(
                            "clflushopt [{line}]",
                            line = in(reg) line,
                            options(nostack, preserves_flags)
                        );
                    } else {
                        std::arch::x86_64::_mm_clflush(line as *const u8);
                    }
                }
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (regions, to);
}

/// Bytes per cache line.
const CACHE_LINE: usize = 64;

/// What [`time_calls`] spent.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TimingSpent {
    /// In calls of the kernel (timed or not).
    pub run: Duration,
    /// In cache flushes.
    pub flush: Duration,
}

/// Times `call` (one call of a kernel that runs on `threads` threads) as `settings` say,
/// after `settings.warmup` untimed calls. `last_call` is the duration of an untimed call
/// already made (the verification call), used with the warm-ups to choose the number of
/// calls per repeat. Returns `None` costs for `repeat` 0.
pub fn time_calls(
    settings: &TimingSettings,
    threads: usize,
    last_call: Option<Duration>,
    flusher: &mut CacheFlusher,
    call: impl FnMut() -> Result<(), MeasureError>,
) -> Result<(Option<Timing>, TimingSpent), MeasureError> {
    let mut probe = || tessel_codegen::contention::snapshot(threads);
    time_calls_probed(settings, threads, last_call, flusher, &mut probe, call)
}

/// [`time_calls`] with the kernel threads' [`Snapshot`]s taken by `probe` (a repeat whose
/// contention is unknown is never retaken).
pub fn time_calls_probed(
    settings: &TimingSettings,
    threads: usize,
    last_call: Option<Duration>,
    flusher: &mut CacheFlusher,
    probe: &mut dyn FnMut() -> Snapshot,
    mut call: impl FnMut() -> Result<(), MeasureError>,
) -> Result<(Option<Timing>, TimingSpent), MeasureError> {
    let mut spent = TimingSpent::default();
    let mut last = last_call;
    for _ in 0..settings.warmup {
        let t = Instant::now();
        call()?;
        let d = t.elapsed();
        spent.run += d;
        last = Some(d);
    }
    if settings.repeat == 0 {
        return Ok((None, spent));
    }
    let last = match last {
        Some(d) => d,
        None => {
            let t = Instant::now();
            call()?;
            let d = t.elapsed();
            spent.run += d;
            d
        }
    };
    let placing = settings.places_operands();
    // Placing the operands before every call costs time too (flushing 9 MiB of weights takes
    // milliseconds): a repeat of calls and placements lasts `min_repeat_ms`, so that a kernel
    // with large weights is not measured ten times longer than it runs.
    let place_time = if placing {
        let t = Instant::now();
        flusher.place(settings.weights, settings.activations);
        let d = t.elapsed();
        spent.flush += d;
        d
    } else {
        Duration::ZERO
    };
    let number = if settings.flush_cache {
        1
    } else {
        let min = settings.min_repeat_ms.max(0.0) / 1e3;
        let per_call = (last + place_time).as_secs_f64().max(1e-9);
        let wanted = (min / per_call).ceil().min(MAX_NUMBER as f64) as u32;
        wanted.max(settings.number).max(1)
    };
    let mut costs = Vec::with_capacity(settings.repeat as usize);
    let mut contention = Vec::with_capacity(settings.repeat as usize);
    let mut retaken = 0u32;
    while costs.len() < settings.repeat as usize {
        if settings.flush_cache {
            let t = Instant::now();
            flusher.flush();
            spent.flush += t.elapsed();
        }
        let waited_before = probe();
        let wall = Instant::now();
        let d = if !placing {
            for _ in 0..number {
                call()?;
            }
            wall.elapsed()
        } else {
            // Every call finds its operands where `settings` says; only the calls are timed.
            let mut calls = Duration::ZERO;
            for _ in 0..number {
                let t = Instant::now();
                flusher.place(settings.weights, settings.activations);
                spent.flush += t.elapsed();
                let t = Instant::now();
                call()?;
                calls += t.elapsed();
            }
            calls
        };
        spent.run += d;
        let share = waited_before.contention_until(&probe(), threads, wall.elapsed());
        if share.is_some_and(|c| c > settings.max_contention) && retaken < settings.retakes {
            retaken += 1;
            continue;
        }
        costs.push(d.as_secs_f64() / number as f64);
        contention.extend(share);
    }
    let timing = Timing::from_costs(costs, number).map(|mut t| {
        if contention.len() == t.costs.len() {
            t.contention = contention;
        }
        t.retaken = retaken;
        t
    });
    Ok((timing, spent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_grows_to_the_minimum_repeat_time() {
        let settings = TimingSettings {
            warmup: 1,
            number: 1,
            repeat: 3,
            min_repeat_ms: 2.0,
            flush_cache: false,
            ..TimingSettings::default()
        };
        let mut calls = 0u32;
        // The warm-up call's own duration decides `number`; a loaded machine may stretch the
        // 200 µs sleep, so the expected `number` is derived from what it actually took.
        let mut warmup_call = None;
        let (timing, spent) = time_calls(&settings, 1, None, &mut CacheFlusher::new(), || {
            calls += 1;
            let t = Instant::now();
            std::thread::sleep(Duration::from_micros(200));
            warmup_call.get_or_insert(t.elapsed());
            Ok(())
        })
        .unwrap();
        let timing = timing.unwrap();
        let first = warmup_call.unwrap().as_secs_f64();
        // `time_calls` times the call from outside, so it sees at least `first`.
        let most = (2e-3 / first).ceil().max(1.0) as u32;
        assert_eq!(timing.costs.len(), 3);
        assert!(
            timing.number <= most && timing.number + 1 >= most * 9 / 10,
            "number {} for a first call of {first} s: {timing:?}",
            timing.number
        );
        if first < 1e-3 {
            assert!(timing.number >= 2, "{timing:?}");
        }
        // A repeat that waited for a CPU (a loaded machine) is taken again.
        assert_eq!(calls, 1 + (3 + timing.retaken) * timing.number);
        assert!(timing.min >= 2e-4 && timing.min <= timing.median);
        assert!(timing.cv >= 0.0);
        assert!(spent.run >= Duration::from_micros(200 * calls as u64));
    }

    #[test]
    fn flushing_makes_one_call_per_repeat_and_an_error_stops_timing() {
        let settings = TimingSettings {
            warmup: 0,
            number: 4,
            repeat: 2,
            min_repeat_ms: 100.0,
            flush_cache: true,
            ..TimingSettings::default()
        };
        let mut calls = 0u32;
        let (timing, spent) = time_calls(
            &settings,
            1,
            Some(Duration::from_micros(1)),
            &mut CacheFlusher::new(),
            || {
                calls += 1;
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(timing.unwrap().number, 1);
        assert_eq!(calls, 2);
        assert!(spent.flush > Duration::ZERO);
        let err = time_calls(&settings, 1, None, &mut CacheFlusher::new(), || {
            Err(MeasureError::new(crate::ErrorClass::RuntimeCrash, "boom"))
        });
        assert!(err.is_err());
    }

    #[test]
    fn moved_operands_keep_every_call_and_their_values() {
        // 4 MiB of "weights" and 1 MiB of "activations": moved out of the core's caches before
        // each of the calls.
        let weights: Vec<f32> = (0..1 << 20).map(|i| i as f32).collect();
        let activations: Vec<f32> = (0..1 << 18).map(|i| -(i as f32)).collect();
        for (w, a) in [
            (Residence::Memory, Residence::Shared),
            (Residence::Shared, Residence::Shared),
            (Residence::Warm, Residence::Memory),
        ] {
            let settings = TimingSettings {
                warmup: 0,
                number: 3,
                repeat: 2,
                min_repeat_ms: 0.0,
                weights: w,
                activations: a,
                ..TimingSettings::default()
            };
            let mut flusher = CacheFlusher::new();
            let bytes = |v: &[f32]| std::mem::size_of_val(v);
            flusher.set_operands(
                // Not line-aligned: its first line is moved too.
                vec![(weights.as_ptr() as usize + 4, bytes(&weights) - 4)],
                vec![(activations.as_ptr() as usize, bytes(&activations))],
            );
            assert_eq!(flusher.operand_bytes(), ((4 << 20) - 4, 1 << 20));
            let mut calls = 0u32;
            let mut sum = 0.0f64;
            let (timing, spent) = time_calls(&settings, 1, None, &mut flusher, || {
                calls += 1;
                sum += weights.iter().step_by(4096).map(|&x| x as f64).sum::<f64>();
                Ok(())
            })
            .unwrap();
            // Unlike a flush, moving operands keeps `number` calls per repeat.
            let timing = timing.unwrap();
            assert_eq!(timing.number, 3, "{w:?} {a:?}");
            assert_eq!(calls, 1 + (2 + timing.retaken) * 3, "{w:?} {a:?}");
            if cfg!(target_arch = "x86_64") {
                assert!(spent.flush > Duration::ZERO, "{w:?} {a:?}");
            }
            // Moving a line between caches changes no value.
            assert!(weights.iter().enumerate().all(|(i, &x)| x == i as f32));
            assert!(activations
                .iter()
                .enumerate()
                .all(|(i, &x)| x == -(i as f32)));
            let per_call: f64 = (0..1 << 20).step_by(4096).map(|i| i as f64).sum();
            assert_eq!(sum, per_call * calls as f64);
        }
    }

    /// A probe that reports `waits[k]` of run-queue delay during repeat `k` (each repeat of a
    /// 1 ms call), so repeats can be made contended at will.
    fn scripted(waits: Vec<u64>) -> impl FnMut() -> Snapshot {
        let (mut reads, mut total) = (0usize, 0u64);
        move || {
            // Reads come in pairs around each repeat: the second of a pair adds that
            // repeat's delay.
            if reads % 2 == 1 {
                total += waits.get(reads / 2).copied().unwrap_or(0);
            }
            reads += 1;
            Snapshot {
                run_queue_delay: Some(Duration::from_micros(total)),
                ..Snapshot::default()
            }
        }
    }

    #[test]
    fn contended_repeats_are_taken_again_within_the_limit() {
        let settings = TimingSettings {
            warmup: 0,
            number: 1,
            repeat: 3,
            min_repeat_ms: 0.0,
            flush_cache: false,
            weights: Residence::Warm,
            activations: Residence::Warm,
            max_contention: 0.05,
            retakes: 2,
        };
        // Calls take ≥ 1 ms on two threads. The second repeat's threads wait 1.5 ms for a
        // CPU (far over 5 % of 2 × its wall time): it is taken again; the others wait 0.
        let call = || {
            std::thread::sleep(Duration::from_millis(1));
            Ok(())
        };
        // The timing of `call` with the kernel threads' snapshots taken by `probe`.
        let time = |probe: &mut dyn FnMut() -> Snapshot| {
            time_calls_probed(&settings, 2, None, &mut CacheFlusher::new(), probe, call)
                .expect("times")
                .0
                .expect("a timing")
        };
        let t = time(&mut scripted(vec![0, 1500, 0, 0]));
        assert_eq!(t.retaken, 1, "{t:?}");
        assert_eq!(t.costs.len(), 3);
        assert_eq!(t.contention.len(), 3);
        assert!(t.contention.iter().all(|&c| c <= 0.05), "{t:?}");
        // Every repeat contended: two retakes, then the contended repeats are kept, and
        // their contention says so.
        let t = time(&mut scripted(vec![5000; 10]));
        assert_eq!(t.retaken, 2);
        assert_eq!(t.costs.len(), 3);
        assert!(t.contention.iter().all(|&c| c > 0.05), "{t:?}");
        // Unknown delay: nothing is retaken and no contention is reported.
        let t = time(&mut Snapshot::default);
        assert_eq!((t.retaken, t.contention.len()), (0, 0));
    }

    #[test]
    fn statistics() {
        let t = Timing::from_costs(vec![3.0, 1.0, 2.0, 10.0], 1).unwrap();
        assert_eq!(t.median, 2.5);
        assert_eq!(t.min, 1.0);
        assert!((t.cv - (12.5f64).sqrt() / 4.0).abs() < 1e-12);
        assert!(Timing::from_costs(vec![], 1).is_none());
    }
}
