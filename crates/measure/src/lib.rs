//! `tessel-measure`: the truth. Builds, verifies, times and records schedule candidates.
//!
//! Candidates travel as step logs ([`Candidate`]: a workload spec plus steps, never code). A
//! [`Runner`] measures a batch and returns one [`MeasureResult`] per candidate: its
//! [`Timing`] (per-repeat costs, median, min, coefficient of variation) or a
//! [`MeasureError`] whose [`ErrorClass`] says what went wrong. Failures are data: no error
//! of a candidate stops a batch.
//!
//! * [`engine`]: the measuring side. The [`Builder`] replays, lowers and compiles a batch in
//!   parallel; each kernel then runs on seeded random inputs, is checked against the
//!   reference evaluator (cached per workload, [`verify`]) and timed ([`timing`]).
//! * [`runner`]: [`InProcessRunner`] and [`LocalWorkerRunner`], which measures in a
//!   persistent worker process ([`worker::serve`], spoken to with the versioned JSON-lines
//!   [`protocol`]) and restarts it when a candidate crashes or hangs it.
//! * [`farm`]: [`farm::NatsRunner`] measures on many machines through a NATS JetStream
//!   broker; [`farm::serve_farm`] is the measuring machines' loop (`tessel worker --nats`).
//! * [`records`]: versioned JSON-lines records with complete keys; a reader that never fails
//!   on a bad line; best-of and distill.
//!
//! ```
//! use tessel_measure::{Candidate, InProcessRunner, MeasureOptions, Runner};
//! use tessel_ir::State;
//! use std::sync::Arc;
//!
//! let w = tessel_workloads::lookup("gmm:b=1,n=8,m=8,k=8").unwrap();
//! let state = State::new(Arc::new(w.dag.clone())); // the naive schedule
//! let mut options = MeasureOptions::with_threads(1);
//! options.timing.min_repeat_ms = 0.1;
//! let mut runner = InProcessRunner::new(options).unwrap();
//! let results = runner.measure(&[Candidate::from_state(&w, &state)]);
//! assert!(results[0].is_ok(), "{:?}", results[0].error);
//! assert!(results[0].median().unwrap() > 0.0);
//! ```
#![warn(missing_docs)]

pub mod builder;
pub mod candidate;
pub mod engine;
pub mod error;
pub mod farm;
pub mod limits;
pub mod options;
pub mod protocol;
pub mod records;
pub mod result;
pub mod runner;
pub mod target;
pub mod timing;
pub mod validate;
pub mod verify;
pub mod worker;

pub use builder::Builder;
pub use candidate::{Candidate, Fault, ScheduleFile};
pub use engine::Engine;
pub use error::{ErrorClass, HarnessError, MeasureError};
pub use options::{CodegenSettings, MeasureOptions, TimingSettings, VerifySettings};
pub use records::{Record, RecordKey, RecordLog, RecordWriter};
pub use result::{MeasureResult, PhaseTimes, Timing};
pub use runner::{InProcessRunner, LocalWorkerRunner, Runner, WorkerCommand};
pub use target::Target;
