//! The target description and the search-space knobs every rule reads.

use tessel_ir::target::{CpuFeatures, Isa, Target};

/// What the rules know about the target CPU, plus Ansor's search-space parameters
/// (`SketchPolicy` params in TVM) that the sketch, init and mutation rules read.
///
/// [`HardwareParams::detect`] fills `num_cores` from the machine; every field is public so a
/// caller (or a test that needs machine-independent results) can override it.
///
/// ```
/// use tessel_sketch::HardwareParams;
/// let hw = HardwareParams { num_cores: 4, ..HardwareParams::detect() };
/// assert_eq!(hw.max_parallel_degree(), 64);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HardwareParams {
    /// Number of cores used by parallel loops (Ansor: machine concurrency).
    pub num_cores: i64,
    /// Bytes of one SIMD register. 16: Tessel's Cranelift x64 backend emits 128-bit vectors
    /// only (CODEGEN.md §1a). Ansor's CPU default is 64.
    pub vector_unit_bytes: i64,
    /// Bytes of one cache line (Ansor: 64).
    pub cache_line_bytes: i64,
    /// Largest innermost split length (Ansor `max_innermost_split_factor`, 64).
    pub max_innermost_split_factor: i64,
    /// Largest product of extents that InitVectorization fuses into one vectorized loop
    /// (Ansor `max_vectorize_size`, 16). Default 8: two `f32x4` registers per vectorized
    /// loop, the NR = 8 of the best register tile measured in CODEGEN.md (4×8, 8 accumulators);
    /// 16 lanes would be four registers per row, and tiles of 12+ accumulators spill.
    pub max_vectorize_size: i64,
    /// Values InitUnroll and MutateAutoUnroll draw `auto_unroll_max_step` from (CPU: 0, 16,
    /// 64, 512).
    pub auto_unroll_configs: Vec<u32>,
    /// Ansor's `disable_change_compute_location`: InitChangeComputeLocation does nothing and
    /// MutateComputeLocation always fails.
    pub disable_change_compute_location: bool,
    /// The ISA level of the target ([`Target::isa`]): unless it is [`Isa::Generic`], the
    /// `MultiLevelTilingTensorized` rule offers tensorized sketches whose register tiles are
    /// drawn from this level's micro-kernel family ([`tessel_ir::tensorize::kernel_nr`]).
    /// [`HardwareParams::with_cores`] and [`HardwareParams::detect`] take this CPU's highest
    /// level; [`HardwareParams::for_target`] a chosen target's; set it yourself for
    /// machine-independent results.
    pub isa: Isa,
}

impl HardwareParams {
    /// Parameters of this machine: `num_cores` from [`std::thread::available_parallelism`]
    /// (1 if unknown), the rest at their defaults.
    pub fn detect() -> HardwareParams {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as i64);
        HardwareParams::with_cores(cores)
    }

    /// Defaults with a given number of cores (machine-independent except `isa`, which is
    /// this CPU's highest level; tests that need fixed results set it).
    pub fn with_cores(num_cores: i64) -> HardwareParams {
        HardwareParams {
            num_cores: num_cores.max(1),
            vector_unit_bytes: 16,
            cache_line_bytes: 64,
            max_innermost_split_factor: 64,
            max_vectorize_size: 8,
            auto_unroll_configs: vec![0, 16, 64, 512],
            disable_change_compute_location: false,
            isa: CpuFeatures::host().best_isa(),
        }
    }

    /// Defaults for `target`: its cores and ISA level (the one place the search space
    /// learns what the code generator will call).
    pub fn for_target(target: &Target) -> HardwareParams {
        HardwareParams {
            isa: target.isa,
            ..HardwareParams::with_cores(target.cores)
        }
    }

    /// Whether the search space includes tensorized sketches (the ISA has micro-kernels).
    pub fn micro_kernels(&self) -> bool {
        self.isa.has_micro_kernels()
    }

    /// InitParallel's cap on the fused parallel extent: `num_cores * 16`.
    pub fn max_parallel_degree(&self) -> i64 {
        self.num_cores * 16
    }
}

impl Default for HardwareParams {
    /// Same as [`HardwareParams::detect`].
    fn default() -> HardwareParams {
        HardwareParams::detect()
    }
}
