//! The machine a program is compiled and searched for: its ISA level, vector unit, cores
//! and caches (TVM's `llvm -mcpu=...`).
//!
//! One [`Target`] is the single source of truth for everything that depends on the CPU:
//! which micro-kernel family the sketch rules tile for ([`crate::tensorize`]), which kernels
//! the code generator calls, and the records key (records of one ISA never resume into a
//! search for another). It is plain data; [`CpuFeatures::host`] is the one place Tessel
//! asks the CPU what it has.
//!
//! ```
//! use tessel_ir::target::{CpuFeatures, Isa, Target};
//! // A machine with AVX2 and FMA but no AVX-512 (a fake feature set, so this runs anywhere).
//! let cpu = CpuFeatures::from_names(["avx", "avx2", "fma"]);
//! assert_eq!(Target::parse("native", &cpu).unwrap().isa, Isa::Avx2);
//! assert_eq!(Target::parse("generic", &cpu).unwrap().isa, Isa::Generic);
//! let err = Target::parse("avx512", &cpu).unwrap_err();
//! assert!(err.to_string().contains("avx512f"), "{err}");
//! ```

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::sync::OnceLock;

/// The instruction-set level code is generated for: which micro-kernel family tensorized
/// loops call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isa {
    /// Plain Cranelift code (128-bit vectors), no micro-kernels.
    Generic,
    /// AVX2 + FMA micro-kernels (16 ymm registers of 8 `f32`).
    Avx2,
    /// AVX-512F micro-kernels (32 zmm registers of 16 `f32`).
    Avx512,
}

impl Isa {
    /// Every ISA level, lowest first.
    pub const ALL: [Isa; 3] = [Isa::Generic, Isa::Avx2, Isa::Avx512];

    /// The name `--target` takes and records store.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Generic => "generic",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// The CPU features (as `is_x86_feature_detected!` names them) its kernels need.
    pub fn required_features(self) -> &'static [&'static str] {
        match self {
            Isa::Generic => &[],
            Isa::Avx2 => &["avx2", "fma"],
            Isa::Avx512 => &["avx512f", "avx2", "fma"],
        }
    }

    /// Whether tensorized loops call micro-kernels (every level but [`Isa::Generic`]).
    pub fn has_micro_kernels(self) -> bool {
        self != Isa::Generic
    }

    /// `f32` lanes of one vector register the code uses (Cranelift's 128-bit vectors for
    /// generic code).
    pub fn lanes(self) -> i64 {
        match self {
            Isa::Generic => 4,
            Isa::Avx2 => 8,
            Isa::Avx512 => 16,
        }
    }

    /// Vector registers the kernels may hold values in.
    pub fn vector_registers(self) -> i64 {
        match self {
            Isa::Generic | Isa::Avx2 => 16,
            Isa::Avx512 => 32,
        }
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a target name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// The name is not a target Tessel knows.
    #[error("unknown target `{0}` (use native, generic, avx2 or avx512)")]
    UnknownName(String),
    /// The CPU lacks a feature the ISA's kernels need.
    #[error("target `{isa}` needs the CPU feature `{feature}`, which this CPU does not have")]
    MissingFeature {
        /// The ISA asked for.
        isa: Isa,
        /// The first feature it needs that the CPU lacks.
        feature: &'static str,
    },
}

/// A set of CPU feature names (`avx2`, `fma`, `avx512f`, ...).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuFeatures {
    names: BTreeSet<String>,
}

impl CpuFeatures {
    /// A feature set from names (tests use this to pretend to be another CPU).
    pub fn from_names<I, S>(names: I) -> CpuFeatures
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        CpuFeatures {
            names: names.into_iter().map(Into::into).collect(),
        }
    }

    /// The features of this CPU that Tessel's code generators may use (detected once).
    pub fn host() -> &'static CpuFeatures {
        static HOST: OnceLock<CpuFeatures> = OnceLock::new();
        HOST.get_or_init(detect_features)
    }

    /// Whether the set has `name`.
    pub fn has(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// The feature names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    /// `Ok` when these features run `isa`'s kernels, else the first missing feature.
    pub fn check(&self, isa: Isa) -> Result<(), TargetError> {
        match isa.required_features().iter().find(|f| !self.has(f)) {
            Some(&feature) => Err(TargetError::MissingFeature { isa, feature }),
            None => Ok(()),
        }
    }

    /// Whether these features run `isa`'s kernels.
    pub fn supports(&self, isa: Isa) -> bool {
        self.check(isa).is_ok()
    }

    /// The highest ISA level these features run.
    pub fn best_isa(&self) -> Isa {
        Isa::ALL
            .into_iter()
            .rev()
            .find(|&isa| self.supports(isa))
            .unwrap_or(Isa::Generic)
    }
}

#[cfg(target_arch = "x86_64")]
fn detect_features() -> CpuFeatures {
    let mut names = Vec::new();
    macro_rules! probe {
        ($($name:tt),*) => {
            $( if std::arch::is_x86_feature_detected!($name) { names.push($name); } )*
        };
    }
    probe!(
        "sse4.1",
        "sse4.2",
        "popcnt",
        "avx",
        "avx2",
        "fma",
        "bmi1",
        "bmi2",
        "avx512f",
        "avx512bw",
        "avx512vl",
        "avx512vnni",
        "avx512bf16",
        "avx512fp16"
    );
    CpuFeatures::from_names(names)
}

#[cfg(target_arch = "aarch64")]
fn detect_features() -> CpuFeatures {
    let mut names = Vec::new();
    if std::arch::is_aarch64_feature_detected!("neon") {
        names.push("neon");
    }
    CpuFeatures::from_names(names)
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn detect_features() -> CpuFeatures {
    CpuFeatures::default()
}

/// Data-cache sizes in bytes (0 when unknown).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CacheSizes {
    /// Level-1 data cache of one core.
    pub l1d: u64,
    /// Level-2 cache of one core.
    pub l2: u64,
    /// Last-level (level-3) cache, shared.
    pub l3: u64,
}

impl CacheSizes {
    /// This CPU's caches (from CPUID's deterministic cache parameters; zeros elsewhere).
    pub fn host() -> CacheSizes {
        static HOST: OnceLock<CacheSizes> = OnceLock::new();
        *HOST.get_or_init(detect_caches)
    }
}

#[cfg(target_arch = "x86_64")]
fn detect_caches() -> CacheSizes {
    use std::arch::x86_64::{__cpuid, __cpuid_count};
    // Intel reports its caches in leaf 4, AMD in 0x8000_001D, with the same layout.
    let vendor_leaf = {
        // CPUID exists on every x86-64 CPU (the intrinsics are safe to call).
        let v = __cpuid(0);
        let amd = v.ebx == 0x6874_7541; // "Auth"enticAMD
        if amd {
            0x8000_001D
        } else {
            4
        }
    };
    // The highest extended or basic leaf: a cache leaf beyond it is not asked for.
    let max_leaf = __cpuid(vendor_leaf & 0x8000_0000).eax;
    let mut sizes = CacheSizes::default();
    if max_leaf < vendor_leaf {
        return sizes;
    }
    for sub in 0..16 {
        let r = __cpuid_count(vendor_leaf, sub);
        let kind = r.eax & 0x1f; // 0: no more caches, 1: data, 2: instruction, 3: unified
        if kind == 0 {
            break;
        }
        if kind == 2 {
            continue;
        }
        let level = (r.eax >> 5) & 0x7;
        let ways = u64::from((r.ebx >> 22) & 0x3ff) + 1;
        let partitions = u64::from((r.ebx >> 12) & 0x3ff) + 1;
        let line = u64::from(r.ebx & 0xfff) + 1;
        let sets = u64::from(r.ecx) + 1;
        let bytes = ways * partitions * line * sets;
        match level {
            1 => sizes.l1d = bytes,
            2 => sizes.l2 = bytes,
            3 => sizes.l3 = bytes,
            _ => {}
        }
    }
    sizes
}

#[cfg(not(target_arch = "x86_64"))]
fn detect_caches() -> CacheSizes {
    CacheSizes::default()
}

/// The machine code is generated and searched for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Target {
    /// The ISA level: which micro-kernel family tensorized loops call.
    pub isa: Isa,
    /// `f32` lanes of one vector register ([`Isa::lanes`]).
    pub lanes: i64,
    /// Vector registers ([`Isa::vector_registers`]).
    pub vector_registers: i64,
    /// Cores available to parallel loops.
    pub cores: i64,
    /// Data-cache sizes.
    pub caches: CacheSizes,
}

impl Target {
    /// The names [`Target::parse`] takes.
    pub const NAMES: [&'static str; 4] = ["native", "generic", "avx2", "avx512"];

    /// A target of ISA `isa` with this machine's cores and caches (not checked against the
    /// CPU: see [`Target::parse`]).
    pub fn with_isa(isa: Isa) -> Target {
        Target {
            isa,
            lanes: isa.lanes(),
            vector_registers: isa.vector_registers(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get() as i64),
            caches: CacheSizes::host(),
        }
    }

    /// This machine at its highest ISA level (`--target native`).
    pub fn native() -> Target {
        Target::with_isa(CpuFeatures::host().best_isa())
    }

    /// The target named `name` (`native`, `generic`, `avx2`, `avx512`) on a CPU with
    /// features `cpu`: an error names the missing feature when the CPU cannot run the ISA,
    /// so a program is never compiled for instructions the CPU lacks.
    pub fn parse(name: &str, cpu: &CpuFeatures) -> Result<Target, TargetError> {
        let isa = match name.trim().to_ascii_lowercase().as_str() {
            "native" => cpu.best_isa(),
            "generic" => Isa::Generic,
            "avx2" => Isa::Avx2,
            "avx512" | "avx-512" => Isa::Avx512,
            _ => return Err(TargetError::UnknownName(name.to_string())),
        };
        cpu.check(isa)?;
        Ok(Target::with_isa(isa))
    }

    /// [`Target::parse`] against this CPU.
    pub fn parse_host(name: &str) -> Result<Target, TargetError> {
        Target::parse(name, CpuFeatures::host())
    }

    /// The same target with `cores` cores.
    pub fn with_cores(self, cores: i64) -> Target {
        Target {
            cores: cores.max(1),
            ..self
        }
    }
}

impl Default for Target {
    /// [`Target::native`].
    fn default() -> Target {
        Target::native()
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({} f32 lanes, {} vector registers, {} cores, L1d {} KiB, L2 {} KiB, L3 {} KiB)",
            self.isa,
            self.lanes,
            self.vector_registers,
            self.cores,
            self.caches.l1d / 1024,
            self.caches.l2 / 1024,
            self.caches.l3 / 1024
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_against_a_fake_cpu_and_missing_features_are_named() {
        let none = CpuFeatures::default();
        let avx2 = CpuFeatures::from_names(["avx", "avx2", "fma"]);
        let avx2_no_fma = CpuFeatures::from_names(["avx", "avx2"]);
        let avx512 = CpuFeatures::from_names(["avx", "avx2", "fma", "avx512f"]);
        assert_eq!(
            Target::parse("native", &none).map(|t| t.isa),
            Ok(Isa::Generic)
        );
        assert_eq!(Target::parse("native", &avx2).map(|t| t.isa), Ok(Isa::Avx2));
        assert_eq!(
            Target::parse("native", &avx512).map(|t| t.isa),
            Ok(Isa::Avx512)
        );
        assert_eq!(Target::parse("AVX2", &avx512).map(|t| t.isa), Ok(Isa::Avx2));
        assert_eq!(
            Target::parse("generic", &avx512).map(|t| t.isa),
            Ok(Isa::Generic)
        );
        assert_eq!(
            Target::parse("avx512", &avx2),
            Err(TargetError::MissingFeature {
                isa: Isa::Avx512,
                feature: "avx512f"
            })
        );
        assert_eq!(
            Target::parse("avx2", &avx2_no_fma),
            Err(TargetError::MissingFeature {
                isa: Isa::Avx2,
                feature: "fma"
            })
        );
        let msg = Target::parse("avx2", &none).unwrap_err().to_string();
        assert!(
            msg.contains("`avx2`") && msg.contains("CPU feature"),
            "{msg}"
        );
        assert!(matches!(
            Target::parse("sse9", &avx512),
            Err(TargetError::UnknownName(n)) if n == "sse9"
        ));
    }

    #[test]
    fn a_target_carries_its_isa_vector_unit() {
        let t = Target::with_isa(Isa::Avx512);
        assert_eq!((t.lanes, t.vector_registers), (16, 32));
        let t = Target::with_isa(Isa::Avx2).with_cores(3);
        assert_eq!((t.lanes, t.vector_registers, t.cores), (8, 16, 3));
        let json = serde_json::to_string(&Isa::Avx512).expect("writes");
        assert_eq!(json, r#""avx512""#);
    }

    #[test]
    fn the_host_supports_its_best_isa() {
        let host = CpuFeatures::host();
        assert!(host.supports(host.best_isa()));
        assert_eq!(Target::native().isa, host.best_isa());
        eprintln!("host target: {}", Target::native());
    }
}
