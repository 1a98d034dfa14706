//! Limits on what a candidate or a measurement setting may ask for, checked before any work
//! (and on every path: in-process, worker, records read back).
//!
//! A step log, a workload spec or a records line comes from a user or from another process:
//! a 100,000-part split, `repeat = u32::MAX` or an unroll step of 2³²−1 must be an error, not
//! an allocation failure, a stack overflow or a hang.

/// The most timed repeats of one measurement.
pub const MAX_REPEAT: u32 = 1_000;
/// The most calls per repeat (`number` may grow to make a repeat last `min_repeat_ms`).
pub const MAX_NUMBER: u32 = 100_000_000;
/// The most untimed warm-up calls.
pub const MAX_WARMUP: u32 = 1_000;
/// The longest requested repeat (milliseconds).
pub const MAX_MIN_REPEAT_MS: f64 = 60_000.0;
/// The most costs one record may hold (repeats of the first reading and its confirmations).
pub const MAX_COSTS: usize = 100_000;
/// The most kernel threads.
pub const MAX_THREADS: usize = 1_024;

/// Checks a number against an inclusive range, naming the field on failure.
pub(crate) fn check_range<T: PartialOrd + std::fmt::Display + Copy>(
    field: &str,
    value: T,
    lo: T,
    hi: T,
) -> Result<(), String> {
    if value < lo || value > hi {
        Err(format!("field `{field}`: {value} is outside {lo}..={hi}"))
    } else {
        Ok(())
    }
}

/// Checks that `value` is a finite number in `lo..=hi`, naming the field on failure.
pub(crate) fn check_finite(field: &str, value: f64, lo: f64, hi: f64) -> Result<(), String> {
    if !value.is_finite() {
        return Err(format!("field `{field}`: {value} is not a finite number"));
    }
    check_range(field, value, lo, hi)
}

/// Checks timing settings: repeat, number and warm-up within their limits, `min_repeat_ms`
/// finite and within its limit.
pub fn check_timing_settings(t: &crate::options::TimingSettings) -> Result<(), String> {
    check_timing_settings_at("timing", t)
}

/// [`check_timing_settings`], naming the fields under `prefix`.
pub(crate) fn check_timing_settings_at(
    prefix: &str,
    t: &crate::options::TimingSettings,
) -> Result<(), String> {
    check_range(&format!("{prefix}.repeat"), t.repeat, 0, MAX_REPEAT)?;
    check_range(&format!("{prefix}.number"), t.number, 1, MAX_NUMBER)?;
    check_range(&format!("{prefix}.warmup"), t.warmup, 0, MAX_WARMUP)?;
    check_finite(
        &format!("{prefix}.min_repeat_ms"),
        t.min_repeat_ms,
        0.0,
        MAX_MIN_REPEAT_MS,
    )
}
