//! Timing a kernel: warm-up, `number` calls per repeat grown to a minimum repeat time,
//! `repeat` repeats, optional cache flush ([`time_calls`], [`CacheFlusher`]).

use crate::error::MeasureError;
use crate::options::TimingSettings;
use crate::result::Timing;
use std::time::{Duration, Instant};

/// Bytes written by [`CacheFlusher::flush`]: 1.5 × the 32 MiB L3 of the reference machine, so
/// that every line of a kernel's data is evicted from every cache level.
pub const FLUSH_BYTES: usize = 48 << 20;

/// Most calls in one repeat, however fast the kernel.
const MAX_NUMBER: u32 = 1 << 20;

/// Evicts the CPU caches by writing over a buffer larger than the last-level cache.
#[derive(Debug, Default)]
pub struct CacheFlusher {
    buf: Vec<u8>,
    round: u8,
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
}

/// What [`time_calls`] spent.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TimingSpent {
    /// In calls of the kernel (timed or not).
    pub run: Duration,
    /// In cache flushes.
    pub flush: Duration,
}

/// Times `call` (one call of the kernel) as `settings` say, after `settings.warmup` untimed
/// calls. `last_call` is the duration of an untimed call already made (the verification
/// call), used with the warm-ups to choose the number of calls per repeat. Returns `None`
/// costs for `repeat` 0.
pub fn time_calls(
    settings: &TimingSettings,
    last_call: Option<Duration>,
    flusher: &mut CacheFlusher,
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
    let number = if settings.flush_cache {
        1
    } else {
        let min = settings.min_repeat_ms.max(0.0) / 1e3;
        let per_call = last.as_secs_f64().max(1e-9);
        let wanted = (min / per_call).ceil().min(MAX_NUMBER as f64) as u32;
        wanted.max(settings.number).max(1)
    };
    let mut costs = Vec::with_capacity(settings.repeat as usize);
    for _ in 0..settings.repeat {
        if settings.flush_cache {
            let t = Instant::now();
            flusher.flush();
            spent.flush += t.elapsed();
        }
        let t = Instant::now();
        for _ in 0..number {
            call()?;
        }
        let d = t.elapsed();
        spent.run += d;
        costs.push(d.as_secs_f64() / number as f64);
    }
    Ok((Timing::from_costs(costs, number), spent))
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
        };
        let mut calls = 0u32;
        // The warm-up call's own duration decides `number`; a loaded machine may stretch the
        // 200 µs sleep, so the expected `number` is derived from what it actually took.
        let mut warmup_call = None;
        let (timing, spent) = time_calls(&settings, None, &mut CacheFlusher::new(), || {
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
        assert_eq!(calls, 1 + 3 * timing.number);
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
        };
        let mut calls = 0u32;
        let (timing, spent) = time_calls(
            &settings,
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
        let err = time_calls(&settings, None, &mut CacheFlusher::new(), || {
            Err(MeasureError::new(crate::ErrorClass::RuntimeCrash, "boom"))
        });
        assert!(err.is_err());
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
