//! One module per subcommand; each has an `Args` (clap) and a `run`.

pub mod cost_model;
pub mod dataset;
pub mod experiment;
pub mod farm;
pub mod network_source;
pub mod numbers;
pub mod records;
pub mod replay;
pub mod run;
pub mod run_network;
pub mod sample;
pub mod search_options;
pub mod show;
pub mod sketches;
pub mod stopping;
pub mod tasks;
pub mod tune;
pub mod tune_network;
pub mod worker;
pub mod workloads;
