//! One module per subcommand; each has an `Args` (clap) and a `run`.

pub mod cost_model;
pub mod sketches;
pub mod workloads;
