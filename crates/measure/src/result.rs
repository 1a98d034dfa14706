//! What measuring one candidate gives: [`MeasureResult`], with its [`Timing`] or its
//! [`MeasureError`], and where the time went ([`PhaseTimes`]).

use crate::error::{ErrorClass, MeasureError};
use serde::{Deserialize, Serialize};

/// The costs of a kernel that ran and was verified.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// One cost per repeat: the mean time of one call in that repeat, in seconds.
    pub costs: Vec<f64>,
    /// Calls per repeat.
    pub number: u32,
    /// Median of `costs` (seconds): the figure to rank candidates by.
    pub median: f64,
    /// Least of `costs` (seconds).
    pub min: f64,
    /// Coefficient of variation of `costs` (standard deviation / mean): the noise.
    pub cv: f64,
    /// For each repeat in `costs`, the run-queue delay of the kernel's threads ÷ (threads ×
    /// the repeat's wall time): the share of the time they waited for a CPU that another
    /// process held. Empty where the platform does not account it, and in older records.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contention: Vec<f64>,
    /// Repeats taken again because they were contended (see
    /// [`crate::TimingSettings::max_contention`]); their costs are not in `costs`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retaken: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Timing {
    /// Statistics of per-repeat costs (seconds per call); `None` for no costs.
    pub fn from_costs(costs: Vec<f64>, number: u32) -> Option<Timing> {
        if costs.is_empty() {
            return None;
        }
        let mut sorted = costs.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = tessel_ir::stats::median(&sorted).unwrap_or(f64::INFINITY);
        let mean = costs.iter().sum::<f64>() / n as f64;
        let var = costs.iter().map(|c| (c - mean) * (c - mean)).sum::<f64>() / n as f64;
        let cv = if mean > 0.0 { var.sqrt() / mean } else { 0.0 };
        Some(Timing {
            costs,
            number,
            median,
            min: sorted[0],
            cv,
            contention: Vec::new(),
            retaken: 0,
        })
    }
}

/// Wall time of each phase of measuring one candidate, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseTimes {
    /// Looking up the workload and replaying the step log.
    pub replay_ms: f64,
    /// Lowering to a loop nest.
    pub lower_ms: f64,
    /// Code generation.
    pub compile_ms: f64,
    /// Getting the reference (cached per workload: usually ~0) and comparing outputs.
    pub verify_ms: f64,
    /// Every call of the kernel: the verification call, warm-ups and timed repeats.
    pub run_ms: f64,
    /// Flushing the cache between repeats.
    pub flush_ms: f64,
    /// Everything, as seen by the side that measured (the worker, or the in-process runner).
    pub total_ms: f64,
}

impl PhaseTimes {
    /// Time spent outside the kernel's own calls and the cache flush: the harness overhead.
    pub fn overhead_ms(&self) -> f64 {
        (self.total_ms - self.run_ms - self.flush_ms).max(0.0)
    }
}

/// The result of measuring one candidate: a timing, or an error (never both); with neither,
/// the candidate was built and verified but not timed (`repeat` 0).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeasureResult {
    /// The costs, when the candidate ran, was verified and was timed.
    pub timing: Option<Timing>,
    /// Why it failed, when it did.
    pub error: Option<MeasureError>,
    /// Where the time went.
    pub phases: PhaseTimes,
}

impl PhaseTimes {
    /// Adds another measurement's phase times to these.
    pub fn add(&mut self, other: &PhaseTimes) {
        self.replay_ms += other.replay_ms;
        self.lower_ms += other.lower_ms;
        self.compile_ms += other.compile_ms;
        self.verify_ms += other.verify_ms;
        self.run_ms += other.run_ms;
        self.flush_ms += other.flush_ms;
        self.total_ms += other.total_ms;
    }
}

impl MeasureResult {
    /// Adds a later measurement of the same candidate to this one: the costs join (median,
    /// min and spread recomputed, each repeat's contention kept, retakes added up) and the
    /// phase times add up. A later measurement that failed, or gave no timing, fails this
    /// result with its error: a kernel that crashes or hangs once is not a result to keep.
    /// A result that has already failed, or was never timed, stays as it is.
    pub fn pool(&mut self, later: MeasureResult) {
        let Some(first) = self.timing.as_ref().filter(|_| self.error.is_none()) else {
            return;
        };
        let later_timing = match (later.error, later.timing) {
            (Some(e), _) => {
                self.timing = None;
                self.error = Some(e);
                return;
            }
            (None, None) => {
                self.timing = None;
                self.error = Some(MeasureError::new(
                    ErrorClass::WorkerLost,
                    "a later measurement gave no timing",
                ));
                return;
            }
            (None, Some(t)) => t,
        };
        let mut costs = first.costs.clone();
        costs.extend(&later_timing.costs);
        let mut contention = first.contention.clone();
        contention.extend(&later_timing.contention);
        let retaken = first.retaken + later_timing.retaken;
        self.timing =
            Timing::from_costs(costs, first.number.min(later_timing.number)).map(|mut t| {
                if contention.len() == t.costs.len() {
                    t.contention = contention;
                }
                t.retaken = retaken;
                t
            });
        self.phases.add(&later.phases);
    }

    /// A failed result.
    pub fn failed(error: MeasureError, phases: PhaseTimes) -> MeasureResult {
        MeasureResult {
            timing: None,
            error: Some(error),
            phases,
        }
    }

    /// A failed result of class `class` with no phase times.
    pub fn error(class: ErrorClass, message: impl Into<String>) -> MeasureResult {
        MeasureResult::failed(MeasureError::new(class, message), PhaseTimes::default())
    }

    /// True when the candidate did not fail.
    pub fn is_ok(&self) -> bool {
        self.error.is_none()
    }

    /// The error's class, if it failed.
    pub fn error_class(&self) -> Option<ErrorClass> {
        self.error.as_ref().map(|e| e.class)
    }

    /// The median cost in seconds, if it was timed.
    pub fn median(&self) -> Option<f64> {
        self.timing.as_ref().map(|t| t.median)
    }
}
