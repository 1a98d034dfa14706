//! `tessel-measure-worker`: the measurement worker as a stand-alone binary (the same
//! [`tessel_measure::worker::serve`] loop as `tessel worker`), so that this crate's tests can
//! start real worker processes.

use std::process::ExitCode;

fn main() -> ExitCode {
    match tessel_measure::worker::serve_stdio() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tessel-measure-worker: {e}");
            ExitCode::from(2)
        }
    }
}
