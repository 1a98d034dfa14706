//! One module per subcommand; each has an `Args` (clap) and a `run`.

pub mod sketches;
pub mod tasks;
pub mod workloads;
