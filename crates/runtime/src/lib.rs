//! `tessel-runtime`: a whole network, tuned or not, built into one [`Module`] that runs
//! inference.
//!
//! [`Module::build`] takes a network graph and its [`Weights`](tessel_workloads::networks::Weights),
//! an optional records file, a [`Target`](tessel_ir::target::Target) and a thread count:
//!
//! * the network is partitioned into fused subgraphs ([`tessel_workloads::networks::partition`]),
//!   put in an order that runs, and grouped into tasks; each subgraph's DAG and the
//!   binding of its inputs come from [`tessel_workloads::networks::subgraph_dag_bound`], so any
//!   layer a subgraph can express runs without a change here;
//! * every task is compiled from its fastest usable record (same workload key, ISA,
//!   thread count, code generator revision and machine: a record that differs is refused,
//!   and [`TaskReport::refused`] says why; warm records are set aside when the task has
//!   records measured with its operands placed as in a network, [`WARM_SET_ASIDE`]); a
//!   task without one gets a default schedule
//!   ([`default_schedule`]: a tensorized sketch with a statically ranked tile, not the
//!   naive loop nest), and [`BuildReport::fallbacks`] lists it; corrupt records lines are
//!   skipped with a warning ([`BuildReport::warnings`]);
//! * the weights go once into one read-only, 64-byte-aligned arena, and every kernel
//!   packs the weights it reads in its layout (layout rewrite) at build time;
//! * activations are planned into one 64-byte-aligned arena by liveness over the
//!   execution order ([`MemoryPlan`], checked: no two live buffers overlap);
//! * an inference ([`Module::run`]) is one pass over a precomputed list of (kernel,
//!   argument ranges); kernels share the code generator's thread pool, and the module
//!   allocates nothing per inference on [`Module::run_into`].
//!
//! Build timings and one [`TaskReport`] per task are in [`Module::report`]; a per-launch
//! profile in [`Module::profile`] after [`Module::set_profiling`].
//!
//! ```
//! use tessel_workloads::networks::{self, Weights};
//! use tessel_ir::target::Target;
//! use tessel_runtime::Module;
//!
//! let net = networks::tiny_cnn(1).unwrap();
//! let weights = Weights::random(&net, 1);
//! // No records: every task runs its default schedule.
//! let mut module = Module::build(&net, &weights, None, &Target::native(), 1).unwrap();
//! assert_eq!(module.report().fallbacks().count(), module.report().tasks.len());
//! let x = networks::random_inputs(&net, 2);
//! let got = module.run(&[&x[0]]).unwrap();
//! let want = networks::evaluate(&net, &weights, &x).unwrap();
//! tessel_ir::testing::check_close(&got, &want, 1e-4, 1e-3).unwrap();
//! assert!(module.report().arena_bytes <= module.report().intermediates_bytes);
//! ```
#![warn(missing_docs)]

mod arena;
mod module;
pub mod plan;
mod schedule;

pub use module::{
    AloneTiming, BuildReport, BuildTimings, LaunchProfile, Module, TaskReport, TensorSlot,
    ALONE_RETAKES, MAX_ARGS, MAX_CONTENTION,
};
pub use plan::MemoryPlan;
pub use schedule::{default_options, default_schedule, ScheduleSource, WARM_SET_ASIDE};

/// Why a module could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The network or its weights are not valid (a missing or mis-shaped weight, a layer
    /// whose stages cannot be built).
    #[error("network: {0}")]
    Network(#[from] tessel_ir::IrError),
    /// The network graph cannot be run as given (an internal inconsistency).
    #[error("graph: {0}")]
    Graph(String),
    /// The records file cannot be read.
    #[error("cannot read records file {path}: {reason}")]
    Records {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// No program (neither a record nor a default schedule) builds for a task.
    #[error("no program builds for task `{task}`: {reasons}")]
    NoProgram {
        /// The task's name.
        task: String,
        /// What was tried and why it failed.
        reasons: String,
    },
    /// The memory plan is inconsistent (a bug: two live buffers overlap).
    #[error("memory plan: {0}")]
    Plan(String),
    /// `run` got the wrong number or size of inputs or outputs.
    #[error("{reason}")]
    Io {
        /// What is wrong.
        reason: String,
    },
    /// A kernel refused to run.
    #[error("running the kernel of `{layer}`: {source}")]
    Run {
        /// The anchor layer of the launch.
        layer: String,
        /// The kernel's error.
        source: tessel_codegen::CodegenError,
    },
}
