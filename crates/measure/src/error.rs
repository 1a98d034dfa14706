//! What can go wrong with a candidate ([`ErrorClass`], [`MeasureError`]: data, recorded) and
//! with the harness itself ([`HarnessError`]: a failure of the caller's request).

use serde::{Deserialize, Serialize};
use std::fmt;

/// The class of a failed measurement. Every failure of a candidate is one of these and is
/// recorded as data; none of them stops a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The workload spec is unknown, or a step cannot be applied (replay failed).
    InvalidSchedule,
    /// The state could not be lowered to a loop nest.
    Lowering,
    /// Code generation failed (or the worker died while compiling this candidate).
    Compile,
    /// The kernel failed or panicked while running, or killed the worker while running.
    RuntimeCrash,
    /// Building or running took longer than its timeout; the worker was killed.
    Timeout,
    /// The kernel's outputs differ from the reference evaluator's.
    WrongAnswer,
    /// The worker died or broke the protocol and the failure could not be charged to this
    /// candidate (for example, the worker could not be started).
    WorkerLost,
}

impl ErrorClass {
    /// Every class, in a stable order (for tables).
    pub const ALL: [ErrorClass; 7] = [
        ErrorClass::InvalidSchedule,
        ErrorClass::Lowering,
        ErrorClass::Compile,
        ErrorClass::RuntimeCrash,
        ErrorClass::Timeout,
        ErrorClass::WrongAnswer,
        ErrorClass::WorkerLost,
    ];

    /// The human name (`"wrong answer"`).
    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::InvalidSchedule => "invalid schedule",
            ErrorClass::Lowering => "lowering error",
            ErrorClass::Compile => "compile error",
            ErrorClass::RuntimeCrash => "runtime crash",
            ErrorClass::Timeout => "timeout",
            ErrorClass::WrongAnswer => "wrong answer",
            ErrorClass::WorkerLost => "worker lost",
        }
    }

    /// The serialized name (`"wrong_answer"`).
    pub fn key(self) -> &'static str {
        match self {
            ErrorClass::InvalidSchedule => "invalid_schedule",
            ErrorClass::Lowering => "lowering",
            ErrorClass::Compile => "compile",
            ErrorClass::RuntimeCrash => "runtime_crash",
            ErrorClass::Timeout => "timeout",
            ErrorClass::WrongAnswer => "wrong_answer",
            ErrorClass::WorkerLost => "worker_lost",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A failed measurement of one candidate: its class and a message saying what happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{class}: {message}")]
pub struct MeasureError {
    /// What kind of failure.
    pub class: ErrorClass,
    /// Details (the step error, the compiler's message, the mismatching element, ...).
    pub message: String,
}

impl MeasureError {
    /// An error of class `class`.
    pub fn new(class: ErrorClass, message: impl Into<String>) -> MeasureError {
        MeasureError {
            class,
            message: message.into(),
        }
    }
}

/// A failure of the harness itself rather than of a candidate: files, processes, protocol.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// Reading or writing a file or pipe failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done (`"cannot open records file x.jsonl"`).
        context: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file or message is not what it should be.
    #[error("{0}")]
    Format(String),
    /// The worker process could not be started or talked to.
    #[error("worker: {0}")]
    Worker(String),
    /// The measurement farm (NATS broker) failed or cannot be reached.
    #[error("measurement farm: {0}")]
    Farm(String),
    /// Another process holds the records file's lock (it is tuning into the same file).
    #[error(
        "records file {0} is in use by another process (another `tessel tune` writing to it?); \
         wait for it to finish or pass another --records file"
    )]
    Locked(String),
}

impl HarnessError {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> HarnessError {
        HarnessError::Io {
            context: context.into(),
            source,
        }
    }
}
