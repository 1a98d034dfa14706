//! `tessel-experiment`: the paper's experiment (PAPER.md §5) — the same workloads tuned
//! under four policy configurations with the same seeds, the statistics that compare them,
//! and the report.
//!
//! * [`runs`]: the configurations ([`runs::Config`]), a traced tuning run and configs run
//!   in lockstep per seed, and the per-workload statistics ([`runs::summarize`]).
//! * [`cache`], [`remeasure`], [`signed_rank`]: the shared measurement cache, the
//!   side-by-side re-measurement and the Wilcoxon signed-rank test.
//! * [`operator`]: `tessel experiment <workload>...` — single operators, reported in
//!   GFLOP/s (report.md, summary.json, runs.json, SVG plots).
//! * [`network`]: `tessel experiment --network <net>` — whole networks tuned with the
//!   task scheduler, every run's tuned network built with the runtime and timed side by
//!   side.
//!
//! Every run is built through one [`tessel_search::job::TuneJob`]: the caller chooses the
//! target, the runner and the sizes; the experiment sets the seed and the policies.
//!
//! ```
//! use tessel_experiment::runs::Config;
//! let configs: Vec<&str> = Config::ALL.iter().map(|c| c.name()).collect();
//! assert_eq!(configs, ["baseline", "rl", "ml", "both"]);
//! assert_eq!(Config::parse("both").map(Config::sketch_policy), Some("ducb"));
//! ```
#![warn(missing_docs)]

pub mod cache;
pub mod network;
pub mod operator;
mod plots;
pub mod remeasure;
pub mod runs;
pub mod signed_rank;
mod tables;

use runs::Config;

/// What the experiment can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// The options are inconsistent (a message that names the option).
    #[error("{0}")]
    Usage(String),
    /// An IR-level error: a bad network or workload.
    #[error(transparent)]
    Ir(#[from] tessel_ir::IrError),
    /// The sketch rules failed on a workload.
    #[error(transparent)]
    Sketch(#[from] tessel_sketch::SketchError),
    /// A runner or a records file could not be set up.
    #[error(transparent)]
    Harness(#[from] tessel_measure::HarnessError),
    /// The task scheduler refused its tasks or parameters.
    #[error(transparent)]
    Scheduler(#[from] tessel_search::scheduler::SchedulerError),
    /// A tuned network could not be built or run.
    #[error("runtime: {0}")]
    Runtime(#[from] tessel_runtime::RuntimeError),
    /// Measurements could not be written to a run's records file: the experiment stopped.
    #[error("{0}")]
    RecordsLost(String),
    /// A plot could not be drawn.
    #[error("plot {path}: {reason}")]
    Plot {
        /// The SVG file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The summary could not be serialized.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// Writing the output failed.
    #[error("cannot write output: {0}")]
    Io(#[from] std::io::Error),
}

/// The configurations `names` asks for, baseline first and always present (it sets the
/// targets), without repeats; an unknown name is an error that lists the known ones.
///
/// ```
/// use tessel_experiment::{parse_configs, runs::Config};
/// let names = ["both".to_string(), "rl".to_string(), "both".to_string()];
/// assert_eq!(parse_configs(&names).unwrap(), [Config::Baseline, Config::Rl, Config::Both]);
/// assert!(parse_configs(&["fast".to_string()]).unwrap_err().to_string().contains("known: baseline"));
/// ```
pub fn parse_configs(names: &[String]) -> Result<Vec<Config>, ExperimentError> {
    let mut wanted = vec![Config::Baseline];
    for name in names.iter().filter(|n| !n.trim().is_empty()) {
        let c = Config::parse(name).ok_or_else(|| {
            ExperimentError::Usage(format!(
                "unknown config `{name}` (known: {})",
                Config::ALL.map(Config::name).join(", ")
            ))
        })?;
        if !wanted.contains(&c) {
            wanted.push(c);
        }
    }
    wanted.sort();
    Ok(wanted)
}

/// A workload or network name made safe as a file name (`gmm:b=1,...` → `gmm_b_1_...`).
pub fn file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
