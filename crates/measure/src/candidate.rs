//! What is measured: a [`Candidate`] is a workload spec plus a step log (never code), so it
//! can cross a pipe or a network and be rebuilt exactly on the other side. A caller that has
//! already lowered the step log (the search's cost model does) passes the loop nest along
//! ([`Candidate::with_lowered`]): the builder then compiles it without replaying and lowering
//! again, in process and in a worker. Records keep the step log only.

use crate::error::HarnessError;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use tessel_ir::loop_nest::LoopNest;
use tessel_ir::{State, Step};
use tessel_workloads::Workload;

/// One schedule to measure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// The workload: a registry name or an `OP:key=value,...` spec (canonical specs are
    /// preferred: they do not depend on the registry).
    pub workload: String,
    /// The step log that, replayed on the workload's DAG, gives the schedule.
    pub steps: Vec<Step>,
    /// The sketch the state was sampled from, if any (kept for the records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sketch: Option<u32>,
    /// **Test only**: makes the measuring side misbehave on purpose (see [`Fault`]). Never
    /// set outside tests of the harness itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<Fault>,
    /// The lowering of `steps`, when the caller already has it: the builder compiles it
    /// directly instead of replaying and lowering the steps. It must be what
    /// `tessel_ir::lower::lower` makes of the replayed steps (the records keep only the
    /// steps); a worker receives it in the measure request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lowered: Option<Arc<LoopNest>>,
}

impl Candidate {
    /// A candidate for `steps` on `workload` (given as a name or spec).
    pub fn new(workload: impl Into<String>, steps: Vec<Step>) -> Candidate {
        Candidate {
            workload: workload.into(),
            steps,
            sketch: None,
            fault: None,
            lowered: None,
        }
    }

    /// The candidate of a state of `workload`: its canonical spec, step log and sketch id.
    pub fn from_state(workload: &Workload, state: &State) -> Candidate {
        Candidate {
            workload: workload.spec(),
            steps: state.steps().to_vec(),
            sketch: state.sketch_id(),
            fault: None,
            lowered: None,
        }
    }

    /// The same candidate carrying `nest`, the lowering of its steps (see
    /// [`Candidate::lowered`]); `None` leaves the lowering to the builder.
    pub fn with_lowered(mut self, nest: Option<Arc<LoopNest>>) -> Candidate {
        self.lowered = nest;
        self
    }

    /// The same candidate without its loop nest (what a worker gets when shipping the nest
    /// would cost more than lowering it there).
    pub fn without_lowered(&self) -> Candidate {
        Candidate {
            lowered: None,
            ..self.clone()
        }
    }

    /// The same candidate with a test-only fault injected.
    pub fn with_fault(mut self, fault: Fault) -> Candidate {
        self.fault = Some(fault);
        self
    }
}

/// **Test-only fault hooks.** Compiled in always so that the real worker binary can be
/// tested; a candidate carrying one is measured normally up to the point where the fault
/// fires. Nothing but tests of this crate and the driver should set them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// The worker aborts the process when it starts running the kernel (in-process runners
    /// report a runtime crash instead of aborting).
    Abort,
    /// The worker loops forever when it starts running the kernel (in-process runners report
    /// a timeout instead of hanging).
    Hang,
    /// The worker aborts the process while building this candidate (in-process runners report
    /// a compile error instead).
    AbortBuild,
    /// The kernel's call panics (caught: a runtime crash, the worker survives).
    Panic,
    /// One element of the first output is perturbed before verification.
    WrongAnswer,
}

/// A schedule file, as in `examples/schedules/*.json`:
/// `{"workload": "gmm-3", "description": "...", "steps": [...]}`. A bare JSON array of steps
/// is accepted too (then `workload` is `None`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScheduleFile {
    /// The workload the steps are for, if the file says.
    #[serde(default)]
    pub workload: Option<String>,
    /// What the schedule does.
    #[serde(default)]
    pub description: Option<String>,
    /// The step log.
    pub steps: Vec<Step>,
}

impl ScheduleFile {
    /// Parses a schedule file's text.
    pub fn parse(text: &str) -> Result<ScheduleFile, HarnessError> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| HarnessError::Format(format!("not JSON: {e}")))?;
        if value.is_array() {
            let steps: Vec<Step> = serde_json::from_value(value)
                .map_err(|e| HarnessError::Format(format!("bad step log: {e}")))?;
            return Ok(ScheduleFile {
                workload: None,
                description: None,
                steps,
            });
        }
        serde_json::from_value(value)
            .map_err(|e| HarnessError::Format(format!("bad schedule file: {e}")))
    }

    /// Reads and parses a schedule file.
    pub fn load(path: &Path) -> Result<ScheduleFile, HarnessError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| HarnessError::io(format!("cannot read {}", path.display()), e))?;
        ScheduleFile::parse(&text)
            .map_err(|e| HarnessError::Format(format!("{}: {e}", path.display())))
    }
}
