//! Validation of a record read back from a file: a line that parses is still checked field
//! by field (costs finite and positive, repeat and number within [`crate::limits`], the
//! shape of the outcome), so that a hand-edited or corrupted line (`"median": -1.0`) cannot
//! become the best program of a workload.

use crate::limits::{self, check_finite, check_range, MAX_COSTS, MAX_NUMBER, MAX_THREADS};
use crate::records::Record;

/// The longest cost a record may hold (seconds): a day.
const MAX_COST: f64 = 86_400.0;

/// Checks a parsed record; the error names the field and the value that is wrong.
pub fn validate_record(r: &Record) -> Result<(), String> {
    let key = &r.key;
    check_range("key.codegen.threads", key.codegen.threads, 1, MAX_THREADS)?;
    limits::check_timing_settings_at("key.timing", &key.timing)?;
    if key.timing.repeat == 0 {
        return Err("field `key.timing.repeat`: 0 (a record is a timed measurement)".into());
    }
    check_finite("key.verify.atol", f64::from(key.verify.atol), 0.0, 1e30)?;
    check_finite("key.verify.rtol", f64::from(key.verify.rtol), 0.0, 1e30)?;
    check_finite("timestamp", r.timestamp, 0.0, 1e12)?;
    let p = &r.phases;
    for (name, v) in [
        ("phases.replay_ms", p.replay_ms),
        ("phases.lower_ms", p.lower_ms),
        ("phases.compile_ms", p.compile_ms),
        ("phases.verify_ms", p.verify_ms),
        ("phases.run_ms", p.run_ms),
        ("phases.flush_ms", p.flush_ms),
        ("phases.total_ms", p.total_ms),
    ] {
        check_finite(name, v, 0.0, 1e12)?;
    }
    match (&r.timing, &r.error) {
        (Some(_), Some(_)) => Err("fields `timing` and `error`: both are set".into()),
        (None, None) => Err("fields `timing` and `error`: neither is set".into()),
        (None, Some(_)) => Ok(()),
        (Some(t), None) => {
            if t.costs.is_empty() || t.costs.len() > MAX_COSTS {
                return Err(format!(
                    "field `timing.costs`: {} costs (1..={MAX_COSTS} expected)",
                    t.costs.len()
                ));
            }
            for (i, &c) in t.costs.iter().enumerate() {
                check_cost(&format!("timing.costs[{i}]"), c)?;
            }
            check_cost("timing.median", t.median)?;
            check_cost("timing.min", t.min)?;
            check_range("timing.number", t.number, 1, MAX_NUMBER)?;
            check_finite("timing.cv", t.cv, 0.0, 1e6)?;
            if !t.contention.is_empty() && t.contention.len() != t.costs.len() {
                return Err(format!(
                    "field `timing.contention`: {} values for {} costs",
                    t.contention.len(),
                    t.costs.len()
                ));
            }
            for (i, &c) in t.contention.iter().enumerate() {
                check_finite(&format!("timing.contention[{i}]"), c, 0.0, 1.0)?;
            }
            check_range("timing.retaken", t.retaken, 0, MAX_COSTS as u32)?;
            if t.min > t.median {
                return Err(format!(
                    "field `timing.min`: {} is above the median {}",
                    t.min, t.median
                ));
            }
            Ok(())
        }
    }
}

/// A cost: a finite, positive number of seconds, at most [`MAX_COST`].
fn check_cost(field: &str, c: f64) -> Result<(), String> {
    if !(c.is_finite() && c > 0.0) {
        return Err(format!(
            "field `{field}`: {c} is not a finite, positive time"
        ));
    }
    check_range(field, c, f64::MIN_POSITIVE, MAX_COST)
}
