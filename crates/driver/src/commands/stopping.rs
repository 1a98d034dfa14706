//! How a searching command stops early without losing what it measured.
//!
//! * SIGINT and SIGTERM set a flag ([`install_interrupt`]); the measurer checks it between
//!   chunks of candidates, so the chunk in flight is measured and its records written,
//!   then the search ends, the summary is printed and the command exits with code 130. A
//!   second signal exits at once (code 130) for a user who does not want to wait.
//! * A records file that cannot be written stops the search too ([`outcome`]): measuring
//!   on would only produce results that cannot be kept or resumed from. The summary is
//!   printed (with `records_error` in `--json`), the message goes to stderr and the exit
//!   code is 3.

use crate::error::DriverError;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tessel_search::harness::HarnessMeasurer;

/// A flag set by SIGINT or SIGTERM (the second signal terminates the process at once).
pub fn install_interrupt() -> Result<Arc<AtomicBool>, DriverError> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // Registered first, so it sees the flag as the earlier signal left it.
        signal_hook::flag::register_conditional_shutdown(sig, 130, flag.clone())
            .and_then(|_| signal_hook::flag::register(sig, flag.clone()))
            .map_err(|e| DriverError::Failed(format!("cannot install a signal handler: {e}")))?;
    }
    Ok(flag)
}

/// The JSON fields saying how the measurer stopped: `records_error` (the first write
/// failure, or null), `unsaved` (measurements not in the file), `interrupted`, and
/// `cut_short_by_run_limit` (candidates killed by the task's adaptive run-time limit).
pub fn json_fields(m: &HarnessMeasurer) -> serde_json::Value {
    serde_json::json!({
        "records_error": m.write_error,
        "unsaved": m.unsaved,
        "interrupted": m.interrupted(),
        "cut_short_by_run_limit": m.cut_short,
    })
}

/// The command's result after its summary is printed: an error when records could not be
/// written ([`DriverError::RecordsLost`]) or an interrupt stopped the run.
pub fn outcome(m: &HarnessMeasurer, records: &std::path::Path) -> Result<(), DriverError> {
    if let Some(e) = &m.write_error {
        return Err(DriverError::RecordsLost(format!(
            "records could not be written to {}: {e}; the run stopped ({} measurement(s) of \
             this run are not in the file)",
            records.display(),
            m.unsaved
        )));
    }
    if m.interrupted() {
        return Err(DriverError::Interrupted);
    }
    Ok(())
}
