//! Errors of the driver: everything a subcommand can fail with.

use tessel_ir::IrError;

/// A failure of a subcommand, printed on stderr (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// An IR-level error: a bad workload spec, an invalid op, an evaluation error.
    #[error(transparent)]
    Ir(#[from] IrError),
    /// The command line is inconsistent.
    #[error("{0}")]
    Usage(String),
    /// A step of the work failed (the message says which).
    #[error("{0}")]
    Failed(String),
    /// Writing the output failed.
    #[error("cannot write output: {0}")]
    Io(#[from] std::io::Error),
    /// Measurements could not be written to the records file: the run stopped.
    #[error("{0}")]
    RecordsLost(String),
    /// SIGINT or SIGTERM stopped the run (what was measured is in the records file).
    #[error("interrupted: stopped after writing the records of every measured candidate")]
    Interrupted,
}

impl DriverError {
    /// A failed step of the work, said in words (`map_err(DriverError::failed)`).
    pub fn failed(e: impl std::fmt::Display) -> DriverError {
        DriverError::Failed(e.to_string())
    }

    /// The process exit code for this error: 130 for an interrupt (as a shell reports
    /// SIGINT), 3 for lost records, 2 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            DriverError::Interrupted => 130,
            DriverError::RecordsLost(_) => 3,
            _ => 2,
        }
    }
}
