//! How candidates are built, verified and timed ([`MeasureOptions`]).
//!
//! The defaults follow TVM's `LocalBuilder`/`LocalRunner` (ANSOR.md §8) in spirit but are sized
//! for a fast search on a small machine: TVM times `number` 3 × `repeat` 1 with a minimum repeat
//! time of 100 ms; Tessel times **5 repeats of at least 5 ms each** (the number of calls per
//! repeat grows to reach 5 ms), after the verification call and **1 warm-up call**. Five repeats
//! give a median that ignores one or two noisy repeats and a coefficient of variation that shows
//! the noise; 5 ms repeats keep a fast kernel's measurement near 30 ms instead of TVM's 100+ ms.
//! The cache flush is off by default (as in TVM). Timeouts are TVM's: 15 s to build, 10 s to run.

use serde::{Deserialize, Serialize};
pub use tessel_codegen::LayoutRewrite;
pub use tessel_ir::target::Isa;

/// The code generator's options that change the generated code (part of a record's key).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "CodegenSettingsRepr")]
pub struct CodegenSettings {
    /// Threads that run parallel loops (the calling thread included).
    pub threads: usize,
    /// Contract `a + b*c` into fused multiply-adds.
    pub fma: bool,
    /// The target's ISA level: whose micro-kernels tensorized loops call
    /// (`CompileOptions::isa`); `generic` forces plain Cranelift code. Records of one ISA
    /// never resume into a search for another. Records written before the field read as
    /// `avx2` when their `micro_kernels` flag was on (or absent) and `generic` when off.
    pub isa: Isa,
    /// Which micro-kernel `B` operands read a packed copy (`CompileOptions::layout_rewrite`):
    /// `off`, `weights` (constant weights packed once, untimed) or `all` (also every other
    /// input, packed inside every timed call). Written as the mode's name. Older records
    /// read as follows: without the field, `off` (they predate it); `false`, `off`; `true`,
    /// `weights` (it packed constant weights once exactly as `weights` does; it also packed
    /// matmul operands once, untimed, which no mode does any more since it hid their
    /// packing cost, so those timings match no current mode).
    #[serde(default, with = "layout_rewrite_serde")]
    pub layout_rewrite: LayoutRewrite,
    /// The code generator's [`tessel_codegen::REVISION`]. Records without the field read as
    /// 0: they predate revisions, and their timings may not hold for today's code.
    #[serde(default)]
    pub revision: u32,
}

/// What a stored [`CodegenSettings`] may hold: today's fields, or the `micro_kernels` flag
/// of records written before the ISA was part of the key.
#[derive(Deserialize)]
struct CodegenSettingsRepr {
    threads: usize,
    fma: bool,
    #[serde(default)]
    isa: Option<Isa>,
    #[serde(default)]
    micro_kernels: Option<bool>,
    #[serde(default, with = "layout_rewrite_serde")]
    layout_rewrite: LayoutRewrite,
    #[serde(default)]
    revision: u32,
}

impl From<CodegenSettingsRepr> for CodegenSettings {
    fn from(r: CodegenSettingsRepr) -> CodegenSettings {
        let isa = r.isa.unwrap_or(if r.micro_kernels.unwrap_or(true) {
            Isa::Avx2
        } else {
            Isa::Generic
        });
        CodegenSettings {
            threads: r.threads,
            fma: r.fma,
            isa,
            layout_rewrite: r.layout_rewrite,
            revision: r.revision,
        }
    }
}

/// (De)serialisation of [`LayoutRewrite`] as its name, reading the old boolean too.
mod layout_rewrite_serde {
    use super::LayoutRewrite;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(mode: &LayoutRewrite, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(mode.name())
    }

    /// A mode name, or the boolean older records hold.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Old(bool),
        Name(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<LayoutRewrite, D::Error> {
        match Repr::deserialize(d)? {
            Repr::Old(false) => Ok(LayoutRewrite::Off),
            Repr::Old(true) => Ok(LayoutRewrite::Weights),
            Repr::Name(n) => n.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl Default for CodegenSettings {
    /// One thread per available CPU, FMA on, micro-kernels of this CPU's highest ISA level
    /// (`--target native`), layout rewrite of every `B`
    /// operand ([`LayoutRewrite::All`]): packing per call is cheap next to the compute it
    /// speeds up (gmm-3-tensorized, 2 threads, best of 60 runs: 2.62-2.64 ms packing the
    /// 1 MB `B` inside every call against 2.59-2.66 ms with `B` packed once, untimed), while
    /// micro-kernels reading a row-major `B` lose up to half their speed on large matmuls
    /// (issue #10: ~100 against 203 GFLOP/s on gmm 1024³ after 64 trials).
    fn default() -> Self {
        CodegenSettings {
            threads: available_cores(),
            fma: true,
            isa: tessel_ir::target::CpuFeatures::host().best_isa(),
            layout_rewrite: LayoutRewrite::All,
            revision: tessel_codegen::REVISION,
        }
    }
}

impl CodegenSettings {
    /// The codegen crate's options for these settings.
    pub fn compile_options(&self) -> tessel_codegen::CompileOptions {
        tessel_codegen::CompileOptions {
            fma: self.fma,
            isa: self.isa,
            layout_rewrite: self.layout_rewrite,
            ..tessel_codegen::CompileOptions::with_threads(self.threads)
        }
    }
}

/// How a kernel is timed (part of a record's key).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimingSettings {
    /// Untimed calls after the verification call (which is always made, and is untimed).
    pub warmup: u32,
    /// The least number of calls per repeat; grown so that a repeat lasts `min_repeat_ms`.
    pub number: u32,
    /// Timed repeats; each gives one cost (its mean time per call). 0 means build and verify
    /// only: no costs (and with verification off, build only: the kernel is not called).
    pub repeat: u32,
    /// The least duration of one repeat, in milliseconds.
    pub min_repeat_ms: f64,
    /// Write over a buffer larger than the last-level cache before every repeat, and make
    /// one call per repeat (cold-cache timing, as TVM's `enable_cpu_cache_flush`).
    pub flush_cache: bool,
    /// Where the kernel's constant weights (the weight inputs and their packed copies) are
    /// when each timed call starts ([`Residence`]). Records without the field read as
    /// [`Residence::Warm`], and a warm record is written without it, so older keys stay equal.
    #[serde(default, skip_serializing_if = "Residence::is_warm")]
    pub weights: Residence,
    /// Where the kernel's other inputs (activations) are when each timed call starts; as
    /// `weights`, absent from records means warm.
    #[serde(default, skip_serializing_if = "Residence::is_warm")]
    pub activations: Residence,
    /// A repeat during which the kernel's threads waited on a run queue (another process had
    /// their core) for more than this share of their time is taken again, up to `retakes`
    /// times per candidate (`docs/measurement.md`: on a shared 2-core machine such repeats
    /// ran a 2-thread kernel at one-thread speed). Records without the field predate it and
    /// read as 1.0 (never retaken).
    #[serde(default = "never_contended")]
    pub max_contention: f64,
    /// Most repeats taken again per candidate because of contention; 0 turns retaking off.
    /// Records without the field read as 0.
    #[serde(default)]
    pub retakes: u32,
}

fn never_contended() -> f64 {
    1.0
}

impl TimingSettings {
    /// True when operands are moved before every call ([`TimingSettings::weights`] or
    /// [`TimingSettings::activations`] not warm).
    pub fn places_operands(&self) -> bool {
        !(self.weights.is_warm() && self.activations.is_warm())
    }
}

impl Default for TimingSettings {
    /// 1 warm-up call, 5 repeats of ≥ 5 ms, no flush; a repeat whose threads waited for a CPU
    /// more than 5 % of their time is taken again, at most 10 times per candidate.
    fn default() -> Self {
        TimingSettings {
            warmup: 1,
            number: 1,
            repeat: 5,
            min_repeat_ms: 5.0,
            flush_cache: false,
            weights: Residence::Warm,
            activations: Residence::Warm,
            max_contention: 0.05,
            retakes: 10,
        }
    }
}

/// Where a kernel's operands are when a timed call starts: its constant weights
/// ([`TimingSettings::weights`]) and its other inputs ([`TimingSettings::activations`]).
/// Part of a record's key.
///
/// A kernel timed alone, call after call, finds every operand in its own core's L1/L2. A
/// layer inside a network does not: its input was written by the previous layer's threads
/// (half of it on the other core) and its weights were last read an inference ago, so they
/// are in the shared last-level cache (MobileNet-V2's 14 MiB) or in memory (ResNet-50's 97
/// MiB). Measured on session 18's tuned networks (`docs/measurement.md`, session 19), the
/// sum of the tasks' warm times is 0.70–0.80 of the network's latency; with activations in
/// the shared cache and weights where the network keeps them it is 0.96–1.01.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Residence {
    /// Where the previous call left them (usually the core's own caches): the kernel alone,
    /// hot. The default, as in TVM's measurement.
    #[default]
    Warm,
    /// Moved out of the cores' private caches into the shared last-level cache before every
    /// call (`CLDEMOTE`). Needs a CPU with CLDEMOTE ([`Residence::supported`]).
    Shared,
    /// Evicted from every cache level of every core before every call (`CLFLUSHOPT`, or
    /// `CLFLUSH` where the CPU lacks it): read from memory.
    Memory,
}

impl Residence {
    /// True for [`Residence::Warm`].
    pub fn is_warm(&self) -> bool {
        *self == Residence::Warm
    }

    /// The name `--weights` and `--activations` take and records hold.
    pub fn name(self) -> &'static str {
        match self {
            Residence::Warm => "warm",
            Residence::Shared => "shared",
            Residence::Memory => "memory",
        }
    }

    /// Whether this CPU can place operands so: `Shared` needs the CLDEMOTE instruction (on a
    /// CPU without it the instruction is a no-op, and the operands would stay warm).
    pub fn supported(self) -> Result<(), String> {
        match self {
            Residence::Shared if !has_cldemote() => Err(
                "placing operands in the shared cache (`shared`) needs the CPU feature \
                 CLDEMOTE, which this CPU lacks (use `memory` or `warm`)"
                    .into(),
            ),
            _ => Ok(()),
        }
    }
}

impl std::str::FromStr for Residence {
    type Err = String;

    fn from_str(s: &str) -> Result<Residence, String> {
        match s {
            "warm" => Ok(Residence::Warm),
            "shared" => Ok(Residence::Shared),
            "memory" => Ok(Residence::Memory),
            _ => Err(format!(
                "unknown operand residence `{s}` (expected warm, shared or memory)"
            )),
        }
    }
}

/// Whether the CPU has CLDEMOTE (CPUID leaf 7, ECX bit 25).
pub fn has_cldemote() -> bool {
    cpuid_leaf7().is_some_and(|(_, ecx)| ecx & (1 << 25) != 0)
}

/// Whether the CPU has CLFLUSHOPT (CPUID leaf 7, EBX bit 23): a flush of one line that is
/// not ordered with the flushes of other lines, so that flushing megabytes of weights
/// overlaps the lines' write-backs.
pub fn has_clflushopt() -> bool {
    cpuid_leaf7().is_some_and(|(ebx, _)| ebx & (1 << 23) != 0)
}

/// CPUID leaf 7 (sub-leaf 0) as `(ebx, ecx)`, read once; `None` where the CPU has no such
/// leaf or is not x86-64. (`tessel_ir::target::CpuFeatures` holds the SIMD features the code
/// generators use, which are part of a record's target; these two cache-control
/// instructions are not.)
fn cpuid_leaf7() -> Option<(u32, u32)> {
    static LEAF: std::sync::OnceLock<Option<(u32, u32)>> = std::sync::OnceLock::new();
    *LEAF.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            // CPUID is available on every x86-64 CPU (safe to call); leaf 7 is read only
            // where the CPU has it.
            use std::arch::x86_64::{__cpuid, __cpuid_count};
            (__cpuid(0).eax >= 7).then(|| {
                let r = __cpuid_count(7, 0);
                (r.ebx, r.ecx)
            })
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            None
        }
    })
}

/// How outputs are checked against the reference evaluator (part of a record's key).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VerifySettings {
    /// Compare the outputs of the first call with the reference's.
    pub enabled: bool,
    /// Seed of the random inputs (`tessel_ir::eval::random_inputs`).
    pub seed: u64,
    /// Absolute tolerance.
    pub atol: f32,
    /// Relative tolerance: an element passes when `|got - want| <= atol + rtol·|want|`.
    pub rtol: f32,
}

impl Default for VerifySettings {
    /// On, seed 0x7e55e1, tolerances 1e-3 + 1e-3·|want| (inputs are in [-1, 1), so an
    /// element is off by at most a few ulps per reduction term when the code is right).
    fn default() -> Self {
        VerifySettings {
            enabled: true,
            seed: 0x7e55e1,
            atol: 1e-3,
            rtol: 1e-3,
        }
    }
}

/// Everything that says how candidates are built, verified and timed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeasureOptions {
    /// Code generation.
    pub codegen: CodegenSettings,
    /// Timing.
    pub timing: TimingSettings,
    /// Verification.
    pub verify: VerifySettings,
    /// Threads of the builder (compiling a batch in parallel); 0 means one per core.
    pub builder_threads: usize,
    /// A worker that sends nothing for this long while building is killed (milliseconds).
    pub build_timeout_ms: u64,
    /// A worker that takes longer than this to verify and time one candidate is killed
    /// (milliseconds).
    pub run_timeout_ms: u64,
}

impl Default for MeasureOptions {
    /// The defaults of each part; builder on every core; 15 s build and 10 s run timeouts.
    fn default() -> Self {
        MeasureOptions {
            codegen: CodegenSettings::default(),
            timing: TimingSettings::default(),
            verify: VerifySettings::default(),
            builder_threads: 0,
            build_timeout_ms: 15_000,
            run_timeout_ms: 10_000,
        }
    }
}

impl MeasureOptions {
    /// Default options with `threads` kernel threads.
    pub fn with_threads(threads: usize) -> MeasureOptions {
        let mut o = MeasureOptions::default();
        o.codegen.threads = threads.max(1);
        o
    }

    /// The builder's thread count (`builder_threads`, or the number of cores for 0).
    pub fn builder_threads(&self) -> usize {
        if self.builder_threads == 0 {
            available_cores()
        } else {
            self.builder_threads
        }
    }
}

/// The number of CPUs this process may use (at least 1).
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_placement_is_in_the_key_only_when_not_warm() {
        let warm = TimingSettings::default();
        let text = serde_json::to_string(&warm).expect("serializes");
        assert!(!text.contains("weights"), "{text}");
        let shared = TimingSettings {
            weights: Residence::Shared,
            ..TimingSettings::default()
        };
        let text = serde_json::to_string(&shared).expect("serializes");
        assert!(text.contains(r#""weights":"shared""#), "{text}");
        let back: TimingSettings = serde_json::from_str(&text).expect("reads");
        assert_eq!(back, shared);
        assert_ne!(back, warm);
        for w in [Residence::Warm, Residence::Shared, Residence::Memory] {
            assert_eq!(w.name().parse::<Residence>(), Ok(w));
        }
        let err = "cold".parse::<Residence>().expect_err("unknown");
        assert!(err.contains("expected warm, shared or memory"), "{err}");
        // Warm and memory work on any CPU; shared is refused by name where CLDEMOTE is missing.
        assert!(Residence::Warm.supported().is_ok() && Residence::Memory.supported().is_ok());
        match Residence::Shared.supported() {
            Ok(()) => assert!(has_cldemote()),
            Err(e) => assert!(!has_cldemote() && e.contains("CLDEMOTE"), "{e}"),
        }
    }

    #[test]
    fn codegen_flags_reach_the_compile_options_and_old_records_still_read() {
        let s = CodegenSettings {
            isa: Isa::Generic,
            layout_rewrite: LayoutRewrite::Weights,
            ..CodegenSettings::default()
        };
        let o = s.compile_options();
        assert!(o.isa == Isa::Generic && o.layout_rewrite == LayoutRewrite::Weights);
        // A record key written before the two flags existed.
        let old: CodegenSettings =
            serde_json::from_str(r#"{"threads":2,"fma":true}"#).expect("old key reads");
        assert!(old.isa == Isa::Avx2 && old.layout_rewrite == LayoutRewrite::Off);
        assert_eq!(old.revision, 0);
        let d = CodegenSettings::default();
        assert_eq!(d.isa, tessel_ir::target::CpuFeatures::host().best_isa());
        assert_eq!(d.layout_rewrite, LayoutRewrite::All);
        assert_eq!(d.revision, tessel_codegen::REVISION);
    }

    #[test]
    fn the_isa_round_trips_and_old_micro_kernel_flags_read_as_avx2_or_generic() {
        for isa in Isa::ALL {
            let s = CodegenSettings {
                isa,
                ..CodegenSettings::default()
            };
            let json = serde_json::to_string(&s).expect("writes");
            assert!(json.contains(&format!(r#""isa":"{isa}""#)), "{json}");
            assert!(!json.contains("micro_kernels"), "{json}");
            let back: CodegenSettings = serde_json::from_str(&json).expect("reads");
            assert_eq!(back, s);
        }
        let read = |flag: &str| -> Isa {
            serde_json::from_str::<CodegenSettings>(&format!(
                r#"{{"threads":2,"fma":true,"micro_kernels":{flag},"layout_rewrite":"all"}}"#
            ))
            .expect("old key reads")
            .isa
        };
        assert_eq!(read("true"), Isa::Avx2);
        assert_eq!(read("false"), Isa::Generic);
        let unknown =
            serde_json::from_str::<CodegenSettings>(r#"{"threads":2,"fma":true,"isa":"avx1024"}"#);
        assert!(unknown.is_err());
    }

    #[test]
    fn layout_rewrite_mode_round_trips_and_old_booleans_read() {
        for mode in LayoutRewrite::MODES {
            let s = CodegenSettings {
                layout_rewrite: mode,
                ..CodegenSettings::default()
            };
            let json = serde_json::to_string(&s).expect("writes");
            assert!(
                json.contains(&format!(r#""layout_rewrite":"{mode}""#)),
                "{json}"
            );
            let back: CodegenSettings = serde_json::from_str(&json).expect("reads");
            assert_eq!(back, s);
        }
        let read = |v: &str| -> Result<CodegenSettings, _> {
            serde_json::from_str(&format!(
                r#"{{"threads":2,"fma":true,"micro_kernels":true,"layout_rewrite":{v}}}"#
            ))
        };
        let mode = |v: &str| read(v).expect("reads").layout_rewrite;
        assert_eq!(mode("false"), LayoutRewrite::Off);
        assert_eq!(mode("true"), LayoutRewrite::Weights);
        assert_eq!(mode(r#""all""#), LayoutRewrite::All);
        assert!(read(r#""sometimes""#).is_err());
        assert!(read("3").is_err());
    }
}
