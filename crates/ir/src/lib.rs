//! `tessel-ir`: what a tensor program is.
//!
//! This crate holds everything the rest of Tessel reasons about, and depends on no other
//! Tessel crate:
//!
//! * [`expr`]: tensor expressions (the scalar language of compute ops);
//! * [`dag`]: the [`ComputeDag`] of one task, built with a [`DagBuilder`];
//! * [`analysis`]: Ansor's static access analysis of a DAG (what the sketch rules ask);
//! * [`state`]: schedule states and their replayable, serializable step log;
//! * [`lower`]: lowering a state to a [`LoopNest`] (with [`simplify`] for index arithmetic,
//!   over the shared [`interval`] arithmetic);
//! * [`eval`]: the reference evaluator of a DAG, and [`interp`]: the interpreter of a loop nest;
//! * [`target`]: the machine code is generated for (ISA level, vector unit, cores, caches),
//!   and the one place CPU features are detected;
//! * [`affine`] and [`interval`]: the affine forms and integer ranges of index expressions
//!   that lowering, tensorization, code generation and the cost model share;
//! * [`tensorize`]: which loop nests match a micro-kernel of a target's family;
//! * [`rng`]: the one explicit RNG type; [`testing`]: random legal schedules for property tests.
//!
//! The operator library, the workload registry and the built-in networks live one crate up,
//! in `tessel-workloads`; here a DAG is built by hand:
//!
//! ```
//! use tessel_ir::{DagBuilder, Reducer};
//! let mut b = DagBuilder::new();
//! let a = b.placeholder("A", &[16, 16]);
//! let w = b.placeholder("B", &[16, 16]);
//! b.reduce("C", &[("i", 16), ("j", 16)], &[("k", 16)], Reducer::Sum, |v| {
//!     a.at([v[0].clone(), v[2].clone()]) * w.at([v[2].clone(), v[1].clone()])
//! });
//! let dag = b.build().unwrap();
//! assert_eq!(dag.flop_count(), 2 * 16 * 16 * 16);
//! ```
#![warn(missing_docs)]

pub mod affine;
pub mod analysis;
pub mod dag;
pub mod eval;
pub mod expr;
pub mod interp;
pub mod interval;
pub mod loop_nest;
pub mod lower;
pub mod rng;
pub mod simplify;
pub mod state;
pub mod stats;
pub mod target;
pub mod tensorize;
pub mod testing;

pub use dag::{ComputeDag, DagBuilder, Reducer, Tensor};
pub use expr::{Expr, OpId};
pub use loop_nest::LoopNest;
pub use state::{State, Step, StepError};

/// Errors of this crate that are not about a schedule step.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IrError {
    /// An op definition is malformed.
    #[error("invalid op `{op}`: {reason}")]
    InvalidOp {
        /// The op's name.
        op: String,
        /// What is wrong.
        reason: String,
    },
    /// A workload spec could not be understood.
    #[error("bad workload spec `{spec}`: {reason}")]
    BadSpec {
        /// The offending part of the spec.
        spec: String,
        /// What is wrong, naming the bad part.
        reason: String,
    },
    /// Evaluation was given the wrong inputs.
    #[error("evaluation error: {0}")]
    Eval(String),
}
