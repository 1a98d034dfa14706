//! `tessel worker` (internal): the measurement worker. It speaks the versioned JSON-lines
//! protocol of `tessel_measure::protocol` on stdin/stdout and is started by `tessel run`,
//! `tessel replay` (and later `tessel tune`) as `current_exe() worker`.

use super::run::{finish, CmdError};
use crate::error::DriverError;

/// Arguments of `tessel worker`: none, or `--nats` for the measurement farm.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The farm (`--nats nats://HOST:PORT`, see `docs/farm.md`).
    #[command(flatten)]
    pub farm: super::farm::WorkerArgs,
}

/// Serves measurement requests until stdin closes or a shutdown request comes; with
/// `--nats`, serves the measurement farm until killed.
pub fn run(args: &Args) -> Result<(), DriverError> {
    if args.farm.nats.is_some() {
        return super::farm::run_worker(&args.farm);
    }
    finish(tessel_measure::worker::serve_stdio().map_err(CmdError::from))
}
