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
}
