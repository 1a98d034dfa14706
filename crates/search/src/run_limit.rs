//! The run-time limit of a task's candidates, adapted to the task: a candidate hundreds of
//! times slower than the task's best is hopeless, and waiting the fixed worker timeout
//! (10 s) for each one wasted more than half of a ResNet-50 tuning run.
//!
//! The limit is `factor ×` the run time a candidate as fast as the best would take under
//! the timing settings (its verification and warm-up calls and every timed repeat), at
//! least `floor_ms` and at most the runner's fixed timeout (the ceiling). A candidate killed
//! by it is recorded as a timeout that names the limit, and trains the cost model as a
//! failure: throughput 0, the slowest possible.

use tessel_measure::TimingSettings;

/// How the run-time limit adapts (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RunLimit {
    /// Multiple of the best candidate's expected run time.
    pub factor: f64,
    /// The least limit (milliseconds): room for the run's fixed costs and the noise of a
    /// shared machine.
    pub floor_ms: u64,
}

impl Default for RunLimit {
    /// 50 × the best's run time, at least 1 s.
    fn default() -> RunLimit {
        RunLimit {
            factor: 50.0,
            floor_ms: 1_000,
        }
    }
}

/// The run time (ms) of a candidate taking `seconds` per call under `timing`: the untimed
/// verification and warm-up calls, then `repeat` repeats of at least `min_repeat_ms` and
/// `number` calls each, and as many again as `retakes` allows (repeats taken again because
/// another process held a core: a good candidate measured in a contended minute must not be
/// killed for it).
pub fn expected_run_ms(seconds: f64, timing: &TimingSettings) -> f64 {
    let call_ms = seconds.max(0.0) * 1e3;
    let untimed = (1 + u64::from(timing.warmup)) as f64 * call_ms;
    let repeat_ms = timing
        .min_repeat_ms
        .max(f64::from(timing.number.max(1)) * call_ms);
    untimed + f64::from(timing.repeat.saturating_add(timing.retakes)) * repeat_ms
}

impl RunLimit {
    /// The limit (ms) for a task whose best time so far is `best` seconds (`None`: the
    /// ceiling), never above `ceiling_ms`.
    pub fn timeout_ms(&self, best: Option<f64>, timing: &TimingSettings, ceiling_ms: u64) -> u64 {
        let Some(best) = best.filter(|b| b.is_finite() && *b > 0.0) else {
            return ceiling_ms;
        };
        let want = self.factor * expected_run_ms(best, timing);
        let want = if want.is_finite() {
            want.ceil().min(u64::MAX as f64) as u64
        } else {
            u64::MAX
        };
        want.max(self.floor_ms).min(ceiling_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_a_multiple_of_the_best_run_between_floor_and_ceiling() {
        // 1 warm-up, 5 repeats of >= 5 ms, none retaken.
        let timing = TimingSettings {
            retakes: 0,
            ..TimingSettings::default()
        };
        let l = RunLimit::default();
        assert_eq!(l.timeout_ms(None, &timing, 10_000), 10_000);
        // 1 ms per call: 2 ms untimed + 5 × 5 ms = 27 ms; × 50 = 1350 ms.
        assert!((expected_run_ms(1e-3, &timing) - 27.0).abs() < 1e-9);
        assert_eq!(l.timeout_ms(Some(1e-3), &timing, 10_000), 1_350);
        // Up to 10 repeats taken again: 2 ms + 15 × 5 ms = 77 ms; × 50 = 3850 ms.
        let retaking = TimingSettings::default();
        assert!((expected_run_ms(1e-3, &retaking) - 77.0).abs() < 1e-9);
        assert_eq!(l.timeout_ms(Some(1e-3), &retaking, 10_000), 3_850);
        // A fast best: 50 × the 5 repeats of 5 ms (and a little more).
        assert_eq!(l.timeout_ms(Some(1e-6), &timing, 10_000), 1_251);
        // Short repeats: the floor.
        let short = TimingSettings {
            min_repeat_ms: 1.0,
            ..timing.clone()
        };
        assert_eq!(l.timeout_ms(Some(1e-6), &short, 10_000), 1_000);
        // A slow best: the ceiling.
        assert_eq!(l.timeout_ms(Some(0.5), &timing, 10_000), 10_000);
        // Nonsense bests fall back to the ceiling.
        assert_eq!(l.timeout_ms(Some(f64::NAN), &timing, 10_000), 10_000);
        assert_eq!(l.timeout_ms(Some(-1.0), &timing, 10_000), 10_000);
    }
}
