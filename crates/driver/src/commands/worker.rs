//! `tessel worker` (internal): the measurement worker. It speaks the versioned JSON-lines
//! protocol of `tessel_measure::protocol` on stdin/stdout and is started by `tessel run`,
//! `tessel replay` (and later `tessel tune`) as `current_exe() worker`.

use super::run::{finish, CmdError};
use crate::error::DriverError;

/// Arguments of `tessel worker` (none).
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Serves measurement requests until stdin closes or a shutdown request comes.
pub fn run(_args: &Args) -> Result<(), DriverError> {
    finish(tessel_measure::worker::serve_stdio().map_err(CmdError::from))
}
