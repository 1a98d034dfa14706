//! The machine a measurement was made on ([`Target`]): part of every record's key, since a
//! cost means nothing on another CPU.

use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

/// The CPU a measurement ran on.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Target {
    /// The architecture (`x86_64`, `aarch64`).
    pub arch: String,
    /// The CPU model name (from `/proc/cpuinfo`; `"unknown"` elsewhere).
    pub cpu: String,
    /// The SIMD features the code generator may use that this CPU has, sorted.
    pub features: Vec<String>,
    /// Logical CPUs available to the process.
    pub cores: usize,
}

impl Target {
    /// The host (computed once per process).
    pub fn host() -> Target {
        static HOST: OnceLock<Target> = OnceLock::new();
        HOST.get_or_init(|| Target {
            arch: std::env::consts::ARCH.to_string(),
            cpu: cpu_model(),
            features: features(),
            cores: crate::options::available_cores(),
        })
        .clone()
    }
}

/// The first `model name` of `/proc/cpuinfo`.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name") || l.starts_with("Model"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

/// The features a record key lists (the same list as before the ISA joined the key, so
/// that the keys of this machine's records stay equal).
const KEY_FEATURES: [&str; 11] = [
    "avx", "avx2", "avx512f", "avx512vl", "bmi1", "bmi2", "fma", "neon", "popcnt", "sse4.1",
    "sse4.2",
];

/// The host's CPU features that a record key lists, from
/// [`tessel_ir::target::CpuFeatures::host`] (the one place Tessel detects them), sorted.
fn features() -> Vec<String> {
    tessel_ir::target::CpuFeatures::host()
        .names()
        .filter(|f| KEY_FEATURES.contains(f))
        .map(str::to_string)
        .collect()
}
