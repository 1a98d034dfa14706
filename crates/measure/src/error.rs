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

impl MeasureError {
    /// Reads back the text [`MeasureError`]'s `Display` makes (`"wrong answer: C[3] ..."`):
    /// the class by its human name before the first `": "`. Text that names no class (older
    /// files held free-form strings such as `"no result"`) is a [`ErrorClass::WorkerLost`]
    /// with the whole text as its message.
    pub fn from_display(text: &str) -> MeasureError {
        ErrorClass::ALL
            .iter()
            .find_map(|&c| {
                let rest = text.strip_prefix(c.name())?.strip_prefix(": ")?;
                Some(MeasureError::new(c, rest))
            })
            .unwrap_or_else(|| MeasureError::new(ErrorClass::WorkerLost, text))
    }

    /// A serde `deserialize_with` reader for an optional error stored either typed (an
    /// object with `class` and `message`, what is written now) or as its display text (what
    /// files written before the search carried typed errors hold): see
    /// [`MeasureError::from_display`].
    pub fn deserialize_typed_or_text<'de, D>(d: D) -> Result<Option<MeasureError>, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Stored {
            Typed(MeasureError),
            Text(String),
        }
        Ok(Option::<Stored>::deserialize(d)?.map(|s| match s {
            Stored::Typed(e) => e,
            Stored::Text(t) => MeasureError::from_display(&t),
        }))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Holder {
        #[serde(default, deserialize_with = "MeasureError::deserialize_typed_or_text")]
        error: Option<MeasureError>,
    }

    #[test]
    fn display_text_reads_back_as_the_same_error() {
        for c in ErrorClass::ALL {
            let e = MeasureError::new(c, "C[3]: 1 vs 2");
            assert_eq!(MeasureError::from_display(&e.to_string()), e);
        }
        assert_eq!(
            MeasureError::from_display("no result"),
            MeasureError::new(ErrorClass::WorkerLost, "no result")
        );
    }

    #[test]
    fn an_optional_error_reads_typed_as_text_or_absent() {
        let read = |json: &str| serde_json::from_str::<Holder>(json).map(|h| h.error);
        let crash = MeasureError::new(ErrorClass::RuntimeCrash, "fake");
        assert_eq!(
            read(r#"{"error": {"class": "runtime_crash", "message": "fake"}}"#).ok(),
            Some(Some(crash.clone()))
        );
        assert_eq!(
            read(r#"{"error": "runtime crash: fake"}"#).ok(),
            Some(Some(crash))
        );
        assert_eq!(read(r#"{"error": null}"#).ok(), Some(None));
        assert_eq!(read("{}").ok(), Some(None));
        assert!(read(r#"{"error": 3}"#).is_err());
    }
}
