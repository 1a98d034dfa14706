//! `tessel-codegen`: native code for Tessel's loop nests, through the Cranelift JIT.
//!
//! [`compile`] turns a [`tessel_ir::LoopNest`] (what lowering makes of a schedule) into a
//! [`Kernel`] that owns its machine code and runs safely on `f32` slices:
//!
//! * **serial** loops become counted loops, with index arithmetic laid out so that Cranelift's
//!   LICM/GVN hoists the loop-invariant parts and constant parts become address offsets;
//! * **unrolled** loops are fully unrolled: their variable is a constant, indices fold;
//! * **vectorized** loops become `f32x4` SIMD code (contiguous accesses as vector loads and
//!   stores, loop-invariant operands as splats, `acc + a*b` as `fma`, a scalar tail for
//!   extents that are not a multiple of 4, per-lane code for strided accesses);
//! * innermost **serial or unrolled** loops that are plain copies, fills or element-wise maps
//!   over contiguous memory (a cache-write stage's initialisation and write-back, a padding
//!   stage) become the same SIMD code ([`CompileOptions::auto_vectorize`]);
//! * **parallel** loops are outlined into their own function and run on a persistent thread
//!   pool ([`CompileOptions::threads`]);
//! * **local** buffers whose every access has a constant index after unrolling live in SSA
//!   registers (register tiles); other local buffers live on the (per-thread) stack.
//!
//! Memory safety does not depend on the loop nest being right: every access that a range
//! analysis cannot prove in bounds is clamped into its buffer.
//!
//! ```
//! use tessel_codegen::{compile, CompileOptions};
//! use tessel_codegen::builder::NestBuilder;
//! use tessel_ir::loop_nest::LoopKind;
//!
//! // out[i] = 2 * x[i] for i in 0..8, as two f32x4 lanes.
//! let mut b = NestBuilder::new("double");
//! let x = b.input("x", &[8]);
//! let out = b.output("out", &[8]);
//! b.for_("i", 8, LoopKind::Vectorized, |b, i| {
//!     let two = b.float(2.0);
//!     let xi = b.load(x, i);
//!     let v = b.mul(two, xi);
//!     b.store(out, i, v);
//! });
//! let kernel = compile(&b.finish(), &CompileOptions::default()).unwrap();
//! let input: Vec<f32> = (0..8).map(|v| v as f32).collect();
//! let mut result = vec![0.0f32; 8];
//! kernel.run(&[&input], &mut [&mut result]).unwrap();
//! assert_eq!(result[7], 14.0);
//! ```
#![warn(missing_docs)]

mod aligned;
mod analysis;
pub mod builder;
pub mod bulk;
pub mod contention;
mod emit;
pub mod epilogue;
mod pack;
mod runtime;
#[cfg(test)]
mod test_rng;
mod through;
pub mod ukernel;

pub use pack::{LayoutRewrite, ParseLayoutRewriteError};

/// The revision of the code this crate generates. It changes whenever the same schedule and
/// options compile to code of a different speed, so that timings measured by an older code
/// generator are not mixed with current ones (records carry it in their key):
/// 1. Cranelift loop nests with AVX2 micro-kernels for register tiles;
/// 2. plain innermost copies, fills and element-wise loops vectorized, packed weights and
///    temporaries 64-byte aligned;
/// 3. strips: tensorized tiles taller than a register tile call one kernel per block
///    (before, they fell back to plain loops);
/// 4. the same code, timed differently: the measurement retakes repeats during which the
///    kernel's threads waited for a CPU ([`contention`]), so a record's time is the kernel's
///    speed on the cores it runs on rather than the luck of the minutes it was measured in;
///    older searches' bests were up to 2× faster than any fresh process reproduced on a
///    shared machine (`docs/measurement.md`), so their times are not resumed;
/// 5. with micro-kernels, contiguous copies, fills and padding loops run as one call of a
///    routine at the target's vector width ([`bulk`]) instead of Cranelift's 128-bit code;
/// 6. elementwise (depthwise) kernels over a 3-tap window at stride 1 or 2 load each input
///    vector once for all its taps ([`ukernel`]'s sliding form): depthwise programs run
///    faster than their revision-5 records say, and their ranking changes;
/// 7. a padding computed in a micro-kernel call's tile is not copied on tiles whose block
///    lies inside the image: the calls read the image itself (read-through padding,
///    [`CompileOptions::read_through`]): depthwise programs with their padding at a column
///    tile run faster than their revision-6 records say;
/// 8. AVX-512 tiles whose width is an odd multiple of 8 (8, 24, 40, 56 columns) are
///    micro-kernels with a masked last vector ([`ukernel`]): programs tensorized at those
///    widths ran as plain Cranelift code before and run faster than their revision-7
///    records say;
/// 9. with micro-kernels, a cache-write tile's write-back that applies an elementwise chain
///    (bias, residual add, ReLU, ReLU6) runs at the target's vector width ([`epilogue`]):
///    inside the broadcast kernel call that computes the tile when it can (applied to
///    the register tile, which starts from zero and is stored straight into the output),
///    otherwise as one routine call after it: convolutions with fused epilogues run faster
///    than their revision-8 records say;
/// 10. the fused kernel call of 9 also folds in a reduction loop around the tensorized one
///     (a 3×3 or 7×7 convolution's window rows): those convolutions' tiles now start from
///     zero, stay in registers over the whole window and get their write-back in the
///     kernel, and run faster than their revision-9 records say;
/// 11. the read-through padding of 7 extends to the image's edges: an elementwise call
///     reads the image there too, through a guarded kernel that skips the taps falling in
///     the padding ([`CompileOptions::guarded_edges`]), and the padded block is never
///     copied: depthwise programs with their padding in the tile run faster than their
///     revision-10 records say;
/// 12. a vectorized loop whose body selects, under a condition its variable does not change,
///     a value that loads out of the proven range (a padding read through by a pool:
///     `max(acc, select(inside, X[..], -inf))`) is emitted once per outcome of the condition
///     (unswitched) instead of branching on every `f32x4` chunk: such programs (a max-pool
///     with its padding inlined) run faster than their revision-11 records say.
pub const REVISION: u32 = 12;

use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_codegen::settings::{self, Configurable};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, Linkage, Module};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use tessel_ir::loop_nest::BufferScope;
pub use tessel_ir::target::Isa;
use tessel_ir::LoopNest;

/// Errors of compiling or running a kernel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodegenError {
    /// `Kernel::run` got the wrong number of input or output slices.
    #[error("expected {expected} {kind} buffers, got {got}")]
    BufferCount {
        /// `"input"` or `"output"`.
        kind: &'static str,
        /// Number the kernel takes.
        expected: usize,
        /// Number passed.
        got: usize,
    },
    /// `Kernel::run` got a slice of the wrong length.
    #[error("buffer `{name}` needs {expected} elements, got {got}")]
    BufferLength {
        /// The buffer's name.
        name: String,
        /// Its number of elements.
        expected: usize,
        /// The slice's length.
        got: usize,
    },
    /// [`Kernel::run_prepared`] got a call prepared by another kernel.
    #[error("the call was prepared for another kernel")]
    ForeignCall,
    /// The loop nest is malformed (bad ids, ill-typed expressions, variables out of scope).
    #[error("invalid loop nest: {0}")]
    InvalidNest(String),
    /// The loop nest is valid but uses something this code generator does not handle.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Cranelift rejected the generated code (a bug in this crate).
    #[error("cranelift: {0}")]
    Cranelift(String),
    /// The host ISA could not be set up.
    #[error("host ISA: {0}")]
    Isa(String),
}

/// Options of [`compile`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileOptions {
    /// Threads that run parallel loops (the calling thread included). 1 runs them as serial
    /// loops, with no thread pool.
    pub threads: usize,
    /// Contract `a + b*c` into fused multiply-adds (one rounding instead of two).
    pub fma: bool,
    /// Keep the optimized Cranelift IR text of every function ([`Kernel::ir_text`]).
    pub keep_ir: bool,
    /// Keep Cranelift's disassembly (VCode) of every function ([`Kernel::disasm`]).
    pub disasm: bool,
    /// The ISA level whose micro-kernels ([`ukernel`]) tensorized loops call (the
    /// [`Target`](tessel_ir::target::Target)'s): [`Isa::Generic`] forces the pure Cranelift
    /// code. A tile the level's family lacks, or a level this CPU cannot run, also compiles
    /// to the ordinary loops, so no program ever executes instructions the CPU lacks.
    pub isa: Isa,
    /// Which micro-kernel `B` operands read a packed copy (`[cols/NR][rows][NR]` panels):
    /// none, constant weights only (packed once, Ansor's layout rewrite), or also every other
    /// input (packed inside every [`Kernel::run`]). See [`LayoutRewrite`].
    pub layout_rewrite: LayoutRewrite,
    /// Emit serial and unrolled innermost loops as `f32x4` code when that computes exactly
    /// what the loop does with contiguous vector loads and stores only (copies, fills,
    /// element-wise maps: e.g. a cache-write stage's initialisation and write-back, or a
    /// padding stage). `false` emits them as the schedule says.
    pub auto_vectorize: bool,
    /// Let micro-kernel calls read a padding computed in their tile straight from its
    /// source on tiles whose block lies inside it, skipping the copy there (read-through
    /// padding: interior tiles of a depthwise convolution). `false` always copies.
    pub read_through: bool,
    /// With [`CompileOptions::read_through`], let the tiles at the image's edges read the
    /// source too, through the guarded elementwise kernels
    /// ([`ukernel::GuardedKernelFn`]: the taps that fall in the padding are skipped), so
    /// the padding copy is never made. `false` copies the padded block on edge tiles.
    pub guarded_edges: bool,
    /// With micro-kernels, run a tile's write-back that applies an elementwise chain (bias,
    /// residual add, ReLU, ReLU6) as one call of the target's epilogue routine
    /// ([`epilogue`]). `false` leaves it to the loop code.
    pub fuse_epilogues: bool,
}

impl Default for CompileOptions {
    /// One thread per available CPU, FMA on, micro-kernels of this CPU's highest ISA level
    /// ([`CpuFeatures::best_isa`](tessel_ir::target::CpuFeatures::best_isa)), no layout rewrite
    /// ([`LayoutRewrite::Off`]), auto-vectorization, read-through padding and fused
    /// epilogues on, no IR text kept.
    fn default() -> Self {
        CompileOptions {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            fma: true,
            keep_ir: false,
            disasm: false,
            isa: tessel_ir::target::CpuFeatures::host().best_isa(),
            layout_rewrite: LayoutRewrite::Off,
            auto_vectorize: true,
            read_through: true,
            guarded_edges: true,
            fuse_epilogues: true,
        }
    }
}

impl CompileOptions {
    /// Default options with `threads` threads.
    pub fn with_threads(threads: usize) -> Self {
        CompileOptions {
            threads: threads.max(1),
            ..CompileOptions::default()
        }
    }
}

/// The host ISA (built once: `cranelift-native` features, `opt_level=speed`).
fn host_isa() -> Result<OwnedTargetIsa, CodegenError> {
    static ISA: OnceLock<Result<OwnedTargetIsa, String>> = OnceLock::new();
    ISA.get_or_init(|| {
        let mut flags = settings::builder();
        let set = |f: &mut settings::Builder, k: &str, v: &str| {
            f.set(k, v).map_err(|e| format!("setting {k}={v}: {e}"))
        };
        set(&mut flags, "opt_level", "speed")?;
        set(&mut flags, "is_pic", "false")?;
        set(&mut flags, "use_colocated_libcalls", "false")?;
        let verify = if cfg!(debug_assertions) {
            "true"
        } else {
            "false"
        };
        set(&mut flags, "enable_verifier", verify)?;
        let isa = cranelift_native::builder()
            .map_err(|e| e.to_string())?
            .finish(settings::Flags::new(flags))
            .map_err(|e| e.to_string())?;
        Ok(isa)
    })
    .clone()
    .map_err(CodegenError::Isa)
}

/// Compiles a loop nest into a runnable kernel.
pub fn compile(nest: &LoopNest, opts: &CompileOptions) -> Result<Kernel, CodegenError> {
    let start = Instant::now();
    let threads = opts.threads.max(1);
    let mut an = analysis::Analysis::new(
        nest,
        threads,
        opts.isa,
        opts.layout_rewrite,
        opts.auto_vectorize,
        opts.read_through,
        opts.fuse_epilogues,
    )?;
    through::keep_guardable_edges(&mut an, opts.guarded_edges);
    let mut jb = JITBuilder::with_isa(host_isa()?, default_libcall_names());
    // The register-tile kernels every tensorized tile (strips included) calls; the analysis
    // kept only tiles whose kernels all exist.
    let mut kernels: Vec<(ukernel::KernelShape, ukernel::KernelFn)> = an
        .tensorized
        .values()
        .filter_map(|m| {
            Some((
                m.kind,
                m.nr,
                ukernel::strip_kernels(opts.isa, m.kind, m.mr, m.nr)?,
            ))
        })
        .flat_map(|(kind, nr, blocks)| {
            blocks
                .into_iter()
                .map(move |(rows, f)| ((kind, rows, nr), f))
        })
        .collect();
    kernels.sort_unstable_by_key(|k| k.0);
    kernels.dedup_by_key(|k| k.0);
    let shapes: Vec<ukernel::KernelShape> = kernels.iter().map(|k| k.0).collect();
    for &((kind, mr, nr), f) in &kernels {
        jb.symbol(ukernel::symbol(opts.isa, kind, mr, nr), f.addr());
    }
    let mut zero: Vec<((i64, i64), ukernel::ElementwiseKernelFn)> = an
        .zero_init
        .keys()
        .filter_map(|k| {
            let m = &an.tensorized[k];
            Some((m.nr, ukernel::strip_zero_kernels(opts.isa, m.mr, m.nr)?))
        })
        .flat_map(|(nr, blocks)| blocks.into_iter().map(move |(rows, f)| ((rows, nr), f)))
        .collect();
    zero.sort_unstable_by_key(|z| z.0);
    zero.dedup_by_key(|z| z.0);
    for &((mr, nr), f) in &zero {
        jb.symbol(ukernel::zero_symbol(opts.isa, mr, nr), f as *const u8);
    }
    let run_fn = bulk::routine(opts.isa).filter(|_| !an.runs.is_empty());
    if let Some(f) = run_fn {
        jb.symbol(bulk::symbol(opts.isa), f as *const u8);
    }
    // Fused kernels (write-back inside the kernel) by register tile `(mr, nr)`.
    let mut fused: Vec<((i64, i64), epilogue::FusedKernelFn)> = an
        .kernel_epilogues
        .keys()
        .flat_map(|k| {
            let m = &an.tensorized[k];
            tessel_ir::tensorize::strip_blocks(opts.isa, m.mr, m.nr)
                .into_iter()
                .map(move |r| (r, m.nr))
        })
        .filter_map(|(r, nr)| Some(((r, nr), epilogue::fused_kernel(opts.isa, r, nr)?)))
        .collect();
    fused.sort_unstable_by_key(|f| f.0);
    fused.dedup_by_key(|f| f.0);
    for &((mr, nr), f) in &fused {
        jb.symbol(epilogue::fused_symbol(opts.isa, mr, nr), f as *const u8);
    }
    let epi_fn = epilogue::routine(opts.isa).filter(|_| !an.epilogues.is_empty());
    if let Some(f) = epi_fn {
        jb.symbol(epilogue::symbol(opts.isa), f as *const u8);
    }
    jb.symbol("tessel_expf", runtime::tessel_expf as *const u8);
    jb.symbol(
        "tessel_parallel_for",
        runtime::tessel_parallel_for as *const u8,
    );
    let mut module = JITModule::new(jb);
    let declared = declare_imports(&mut module);
    let declared = declared.and_then(|fns| {
        let mut uk = std::collections::HashMap::new();
        for &(kind, mr, nr) in &shapes {
            let sig = emit::ukernel_signature(&module, kind);
            let id = module
                .declare_function(
                    &ukernel::symbol(opts.isa, kind, mr, nr),
                    Linkage::Import,
                    &sig,
                )
                .map_err(|e| CodegenError::Cranelift(format!("{e:?}")))?;
            uk.insert((kind, mr, nr), id);
        }
        let mut zk = std::collections::HashMap::new();
        for &((mr, nr), _) in &zero {
            let sig = emit::ukernel_signature(&module, ukernel::KernelKind::Elementwise);
            let id = module
                .declare_function(
                    &ukernel::zero_symbol(opts.isa, mr, nr),
                    Linkage::Import,
                    &sig,
                )
                .map_err(|e| CodegenError::Cranelift(format!("{e:?}")))?;
            zk.insert((mr, nr), id);
        }
        let run = match run_fn {
            Some(_) => Some(
                module
                    .declare_function(
                        &bulk::symbol(opts.isa),
                        Linkage::Import,
                        &emit::run_signature(&module),
                    )
                    .map_err(|e| CodegenError::Cranelift(format!("{e:?}")))?,
            ),
            None => None,
        };
        let epi = match epi_fn {
            Some(_) => Some(
                module
                    .declare_function(
                        &epilogue::symbol(opts.isa),
                        Linkage::Import,
                        &emit::epilogue_signature(&module),
                    )
                    .map_err(|e| CodegenError::Cranelift(format!("{e:?}")))?,
            ),
            None => None,
        };
        let mut fk = std::collections::HashMap::new();
        for &((mr, nr), _) in &fused {
            let id = module
                .declare_function(
                    &epilogue::fused_symbol(opts.isa, mr, nr),
                    Linkage::Import,
                    &emit::fused_signature(&module),
                )
                .map_err(|e| CodegenError::Cranelift(format!("{e:?}")))?;
            fk.insert((mr, nr), id);
        }
        Ok((fns, uk, run, zk, epi, fk))
    });
    let ((exp_fn, par_fn), ukernels, run_fn, zero_kernels, epilogue_fn, fused_kernels) =
        match declared {
            Ok(x) => x,
            Err(e) => {
                // SAFETY: nothing from this module has been run or handed out.
                unsafe { module.free_memory() };
                return Err(e);
            }
        };
    let mut calls: Vec<MicroKernelCall> = an
        .tensorized
        .values()
        .map(|m| MicroKernelCall {
            loop_name: nest.lp(m.k_loop).name.clone(),
            kind: m.kind,
            mr: m.mr,
            nr: m.nr,
            blocks: tessel_ir::tensorize::strip_blocks(opts.isa, m.mr, m.nr),
            k: m.k,
            k2: an.folded_outer(m.k_loop).map_or(1, |o| o.extent),
            zero_start: an.zero_init.contains_key(&m.k_loop)
                || an.kernel_epilogues.contains_key(&m.k_loop),
            fused_write_back: an.kernel_epilogues.contains_key(&m.k_loop),
            reads_through: an.through.values().any(|p| p.calls.contains_key(&m.k_loop)),
            guarded_edges: an
                .through
                .values()
                .any(|p| p.edges.is_some() && p.calls.contains_key(&m.k_loop)),
            packed_b: an.packed_b.contains_key(&m.k_loop),
            packs_per_call: an
                .packed_b
                .get(&m.k_loop)
                .is_some_and(|&k| an.packs[k].per_call),
        })
        .collect();
    calls.sort_by(|a, b| a.loop_name.cmp(&b.loop_name));
    let mut runs: Vec<String> = match run_fn {
        Some(_) => an.runs.keys().map(|&l| nest.lp(l).name.clone()).collect(),
        None => Vec::new(),
    };
    runs.sort();
    let mut write_backs: Vec<epilogue::FusedWriteBack> = match epilogue_fn {
        Some(_) => an
            .epilogues
            .iter()
            .map(|(&l, p)| {
                let in_kernel = an.kernel_epilogues.values().any(|k| k.write_back == l);
                p.report(nest, l, in_kernel)
            })
            .collect(),
        None => Vec::new(),
    };
    write_backs.sort_by(|a, b| a.loop_name.cmp(&b.loop_name));
    // The programs the code points to live as long as the kernel.
    let programs: Vec<std::sync::Arc<epilogue::Program>> =
        an.epilogues.values().map(|p| p.program.clone()).collect();
    let packs = an.packs.clone();
    let mut c = emit::Compiler {
        nest,
        an,
        module,
        opts: CompileOptions {
            threads,
            ..opts.clone()
        },
        ctx: cranelift_codegen::Context::new(),
        exp_fn,
        par_fn,
        ukernels,
        run_fn,
        epilogue_fn,
        fused_kernels,
        zero_kernels,
        n_funcs: 0,
        ir_text: String::new(),
        disasm: String::new(),
    };
    let main = c.build_main().and_then(|id| {
        c.module
            .finalize_definitions()
            .map_err(|e| CodegenError::Cranelift(format!("{e:?}")))?;
        Ok(id)
    });
    let main = match main {
        Ok(id) => id,
        Err(e) => {
            // SAFETY: nothing from this module has been run or handed out.
            unsafe { c.module.free_memory() };
            return Err(e);
        }
    };
    let code = c.module.get_finalized_function(main);
    // SAFETY: `main` was defined by `build_main` with exactly this signature
    // (two pointer-sized integer parameters, no result, the platform's C calling convention).
    let entry: EntryFn = unsafe { std::mem::transmute::<*const u8, EntryFn>(code) };
    let order = emit::buffer_order(nest);
    let slots = order
        .iter()
        .map(|&b| {
            let buf = nest.buffer(b);
            Slot {
                id: b,
                name: buf.name.clone(),
                len: buf.len() as usize,
                scope: buf.scope,
                constant: buf.constant,
            }
        })
        .collect();
    Ok(Kernel {
        module: Some(c.module),
        entry,
        slots,
        runtime: runtime::Runtime::new(threads),
        scratch: Mutex::new(Vec::new()),
        id: next_id(),
        compile_time: start.elapsed(),
        ir_text: c.ir_text,
        disasm: c.disasm,
        calls,
        runs,
        write_backs,
        _programs: programs,
        packs: Mutex::new(Packs {
            owner: vec![0; packs.len()],
            copies: packs.into_iter().map(pack::Packed::new).collect(),
        }),
    })
}

/// A fresh id for a kernel or a prepared call (never 0, which marks "no prepared call").
fn next_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Declares the runtime functions JIT code imports: `tessel_expf`, `tessel_parallel_for`.
fn declare_imports(
    module: &mut JITModule,
) -> Result<(cranelift_module::FuncId, cranelift_module::FuncId), CodegenError> {
    let err = |e: cranelift_module::ModuleError| CodegenError::Cranelift(format!("{e:?}"));
    let exp_sig = emit::exp_signature(module);
    let par_sig = emit::par_signature(module);
    let exp_fn = module
        .declare_function("tessel_expf", Linkage::Import, &exp_sig)
        .map_err(err)?;
    let par_fn = module
        .declare_function("tessel_parallel_for", Linkage::Import, &par_sig)
        .map_err(err)?;
    Ok((exp_fn, par_fn))
}

/// A tensorized loop that [`compile`] turned into one micro-kernel call (see [`ukernel`] and
/// [`tessel_ir::tensorize`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MicroKernelCall {
    /// Name of the tensorized reduction loop.
    pub loop_name: String,
    /// The kernel family (`A` broadcast, or read per column for depthwise convolutions).
    pub kind: ukernel::KernelKind,
    /// Rows of the tile (a strip when taller than a register tile).
    pub mr: i64,
    /// Columns of the tile.
    pub nr: i64,
    /// Rows of each register tile the tile is computed with, top to bottom: one kernel call
    /// per block ([`tessel_ir::tensorize::strip_blocks`]; `[mr]` for a register tile).
    pub blocks: Vec<i64>,
    /// Reduction steps per call.
    pub k: i64,
    /// Steps of the outer reduction loop folded into each call (elementwise kernels: a
    /// depthwise window's rows; fused broadcast kernels: a convolution window's rows; 1
    /// when nothing is folded).
    pub k2: i64,
    /// The call reads a packed copy of its `B` operand ([`CompileOptions::layout_rewrite`]).
    pub packed_b: bool,
    /// That copy is made again on every [`Kernel::run`] (`B` is not a constant weight;
    /// [`LayoutRewrite::All`]).
    pub packs_per_call: bool,
    /// The call starts its tile from zero: the fill right before it is fused into it (an
    /// elementwise kernel's zero-start form, [`ukernel::elementwise_zero_kernel`]).
    pub zero_start: bool,
    /// The call's `A` operand is a local copy (a padding computed in the tile) that it reads
    /// through to the copy's source on tiles whose block lies inside it; the copy is then
    /// not made (read-through padding).
    pub reads_through: bool,
    /// It reads the source on the image's edge tiles too, through the guarded elementwise
    /// kernels (the taps in the padding skipped: [`CompileOptions::guarded_edges`]), so the
    /// copy is never made.
    pub guarded_edges: bool,
    /// The call also applies the write-back after it (bias, residual add, ReLU/ReLU6) to its
    /// register tile and stores into the output ([`epilogue::FusedKernelFn`]); it starts
    /// from zero (`zero_start`).
    pub fused_write_back: bool,
}

/// The compiled entry point: `(buffer pointers, runtime)`.
type EntryFn = unsafe extern "C" fn(*const *mut f32, *const runtime::Runtime);

/// One entry of the buffer pointer array.
struct Slot {
    id: tessel_ir::loop_nest::BufferId,
    name: String,
    len: usize,
    scope: BufferScope,
    /// The buffer holds a constant weight.
    constant: bool,
}

/// A compiled loop nest. It owns its machine code (freed on drop) and runs on `f32` slices:
/// the inputs and outputs in the loop nest's parameter order.
pub struct Kernel {
    module: Option<JITModule>,
    entry: EntryFn,
    slots: Vec<Slot>,
    runtime: runtime::Runtime,
    /// Reused memory for global temporaries.
    scratch: Mutex<Vec<aligned::AlignedBuf>>,
    /// This kernel's id (what a [`PreparedCall`] is checked against).
    id: u64,
    compile_time: Duration,
    ir_text: String,
    disasm: String,
    calls: Vec<MicroKernelCall>,
    /// Loops that run as one call of the target's run routine ([`bulk`]).
    runs: Vec<String>,
    /// Write-backs that run as one call of the target's epilogue routine ([`epilogue`]).
    write_backs: Vec<epilogue::FusedWriteBack>,
    /// Their programs, whose addresses the code holds.
    _programs: Vec<std::sync::Arc<epilogue::Program>>,
    /// Packed copies of `B` operands (layout rewrite).
    packs: Mutex<Packs>,
}

/// A kernel's packed copies of `B` operands, and for each the prepared call whose input it
/// was last made from (0: made by [`Kernel::run`] or [`Kernel::pack_weights`]).
struct Packs {
    copies: Vec<pack::Packed>,
    owner: Vec<u64>,
}

/// One call of a kernel on fixed buffers, prepared once by [`Kernel::prepare`]: the
/// argument pointer array the compiled code reads (the parameters, then the kernel's global
/// temporaries and packed copies), so that [`Kernel::run_prepared`] checks no lengths and
/// allocates nothing.
#[derive(Debug)]
pub struct PreparedCall {
    /// This call's id.
    id: u64,
    /// The kernel it was prepared by.
    kernel: u64,
    /// The pointer array, as addresses.
    ptrs: Vec<usize>,
    /// Every packed copy: its index, and the address and length of the input it is made
    /// from.
    packs: Vec<(usize, usize, usize)>,
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernel")
            .field(
                "buffers",
                &self.slots.iter().map(|s| &s.name).collect::<Vec<_>>(),
            )
            .field("compile_time", &self.compile_time)
            .finish_non_exhaustive()
    }
}

impl Kernel {
    /// Runs the kernel. `inputs` are the loop nest's `Input` parameters and `outputs` its
    /// `Output` parameters, each in parameter order and with exactly the buffer's number of
    /// elements; anything else is an error and runs nothing.
    pub fn run(&self, inputs: &[&[f32]], outputs: &mut [&mut [f32]]) -> Result<(), CodegenError> {
        let mut ptrs = self.param_ptrs(inputs, outputs)?;
        let mut own;
        let mut guard = self.scratch.try_lock().ok();
        let scratch: &mut Vec<aligned::AlignedBuf> = match guard.as_deref_mut() {
            Some(s) => s,
            None => {
                own = Vec::new();
                &mut own
            }
        };
        self.fill_scratch(scratch);
        for g in scratch.iter_mut() {
            ptrs.push(g.as_mut_ptr());
        }
        // Held for the call: the code reads the packed copies. Per-call copies are made
        // here, inside the call (and so inside any timing of it).
        let mut packs = self.packs.lock().unwrap_or_else(|e| e.into_inner());
        let Packs { copies, owner } = &mut *packs;
        for (p, o) in copies.iter_mut().zip(owner.iter_mut()) {
            let k = self.input_position(p.plan.src);
            p.refresh(inputs[k], false, &self.runtime);
            *o = 0;
            ptrs.push(p.data.as_mut_ptr());
        }
        // SAFETY: the entry point was compiled for exactly this pointer array: one pointer
        // per parameter (checked above to have the buffer's length) then one per global
        // temporary (allocated with its length); every access the code makes is within its
        // buffer (proven or clamped at compile time). Inputs are only read. The slices stay
        // borrowed for the duration of the call, and the runtime outlives it.
        unsafe { (self.entry)(ptrs.as_ptr(), &self.runtime) };
        Ok(())
    }

    /// Prepares a call on `inputs` and `outputs` (checked as [`Kernel::run`] checks them):
    /// allocates the kernel's temporaries and packed copies, packs the constant weights,
    /// and fixes the argument pointer array. [`Kernel::run_prepared`] then runs the kernel
    /// on those buffers with no check and no allocation (what a runtime that places every
    /// buffer ahead of time, as `tessel-runtime` does, calls on every inference).
    pub fn prepare(
        &self,
        inputs: &[&[f32]],
        outputs: &mut [&mut [f32]],
    ) -> Result<PreparedCall, CodegenError> {
        let mut ptrs: Vec<usize> = self
            .param_ptrs(inputs, outputs)?
            .into_iter()
            .map(|p| p as usize)
            .collect();
        {
            let mut scratch = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
            self.fill_scratch(&mut scratch);
            ptrs.extend(scratch.iter_mut().map(|g| g.as_mut_ptr() as usize));
        }
        let id = next_id();
        let mut packs = self.packs.lock().unwrap_or_else(|e| e.into_inner());
        let Packs { copies, owner } = &mut *packs;
        let mut sources = Vec::with_capacity(copies.len());
        for (k, (p, o)) in copies.iter_mut().zip(owner.iter_mut()).enumerate() {
            let src = inputs[self.input_position(p.plan.src)];
            // Every copy is made now, so that its memory exists and stays where it is.
            p.refresh(src, true, &self.runtime);
            *o = id;
            ptrs.push(p.data.as_mut_ptr() as usize);
            sources.push((k, src.as_ptr() as usize, src.len()));
        }
        Ok(PreparedCall {
            id,
            kernel: self.id,
            ptrs,
            packs: sources,
        })
    }

    /// Runs a call [`Kernel::prepare`]d by this kernel, on the buffers it was prepared with.
    /// It allocates nothing: it repacks the inputs packed on every call
    /// ([`LayoutRewrite::All`]), and a constant weight's copy only when another call or
    /// [`Kernel::run`] made it since (a kernel holds one copy per weight).
    ///
    /// # Safety
    /// Every buffer passed to `prepare` must still be allocated, with the same length, and
    /// for the duration of this call no one else may write the inputs or access the
    /// outputs (as if they were borrowed as `prepare` borrowed them).
    pub unsafe fn run_prepared(&self, call: &PreparedCall) -> Result<(), CodegenError> {
        if call.kernel != self.id {
            return Err(CodegenError::ForeignCall);
        }
        // Both held for the call: the code writes the temporaries and reads the copies.
        let _scratch = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        let mut packs = self.packs.lock().unwrap_or_else(|e| e.into_inner());
        let Packs { copies, owner } = &mut *packs;
        for &(k, addr, len) in &call.packs {
            let p = &mut copies[k];
            if p.plan.per_call || owner[k] != call.id {
                // SAFETY: the input prepared with this call is still allocated with this
                // length and not written during the call (the caller's contract).
                let src = unsafe { std::slice::from_raw_parts(addr as *const f32, len) };
                p.refresh(src, true, &self.runtime);
                owner[k] = call.id;
            }
        }
        // SAFETY: `prepare` made this pointer array with `param_ptrs` (one pointer per
        // parameter, of the buffer's length, still valid by the caller's contract), then
        // this kernel's temporaries and packed copies, which are never reallocated once
        // made (their lengths are fixed) and are locked for the call. See `run`.
        unsafe { (self.entry)(call.ptrs.as_ptr() as *const *mut f32, &self.runtime) };
        Ok(())
    }

    /// The parameters' pointers in slot order, after checking the number and lengths of
    /// `inputs` and `outputs`.
    fn param_ptrs(
        &self,
        inputs: &[&[f32]],
        outputs: &mut [&mut [f32]],
    ) -> Result<Vec<*mut f32>, CodegenError> {
        let params = self
            .slots
            .iter()
            .filter(|s| matches!(s.scope, BufferScope::Input | BufferScope::Output));
        let n_in = params
            .clone()
            .filter(|s| s.scope == BufferScope::Input)
            .count();
        let n_out = params.clone().count() - n_in;
        if inputs.len() != n_in {
            return Err(CodegenError::BufferCount {
                kind: "input",
                expected: n_in,
                got: inputs.len(),
            });
        }
        if outputs.len() != n_out {
            return Err(CodegenError::BufferCount {
                kind: "output",
                expected: n_out,
                got: outputs.len(),
            });
        }
        let mut ptrs: Vec<*mut f32> = Vec::with_capacity(self.slots.len());
        let (mut next_in, mut next_out) = (0, 0);
        for s in params {
            let (ptr, len) = if s.scope == BufferScope::Input {
                next_in += 1;
                let b = inputs[next_in - 1];
                (b.as_ptr() as *mut f32, b.len())
            } else {
                next_out += 1;
                let b = &mut outputs[next_out - 1];
                (b.as_mut_ptr(), b.len())
            };
            if len != s.len {
                return Err(CodegenError::BufferLength {
                    name: s.name.clone(),
                    expected: s.len,
                    got: len,
                });
            }
            ptrs.push(ptr);
        }
        Ok(ptrs)
    }

    /// Allocates the global temporaries in `scratch` unless they already are.
    fn fill_scratch(&self, scratch: &mut Vec<aligned::AlignedBuf>) {
        let globals = self.slots.iter().filter(|s| s.scope == BufferScope::Global);
        let fits = scratch.len() == globals.clone().count()
            && scratch
                .iter()
                .zip(globals.clone())
                .all(|(b, s)| b.len() == s.len.max(1));
        if !fits {
            *scratch = globals
                .map(|s| aligned::AlignedBuf::zeroed(s.len.max(1)))
                .collect();
        }
    }

    /// Makes the packed copies of constant weights from `inputs` now (layout rewrite; see
    /// [`LayoutRewrite::Weights`]), so that no later [`Kernel::run`] packs them. Copies of
    /// other inputs ([`LayoutRewrite::All`]) are made by every `run` anyway and are left
    /// alone. Inputs are checked like `run` checks them.
    pub fn pack_weights(&self, inputs: &[&[f32]]) -> Result<(), CodegenError> {
        let expected = self.inputs();
        if inputs.len() != expected.len() {
            return Err(CodegenError::BufferCount {
                kind: "input",
                expected: expected.len(),
                got: inputs.len(),
            });
        }
        for ((name, len), x) in expected.iter().zip(inputs) {
            if x.len() != *len {
                return Err(CodegenError::BufferLength {
                    name: name.to_string(),
                    expected: *len,
                    got: x.len(),
                });
            }
        }
        let mut packs = self.packs.lock().unwrap_or_else(|e| e.into_inner());
        let Packs { copies, owner } = &mut *packs;
        for (p, o) in copies.iter_mut().zip(owner.iter_mut()) {
            if !p.plan.per_call {
                p.refresh(inputs[self.input_position(p.plan.src)], true, &self.runtime);
                *o = 0;
            }
        }
        Ok(())
    }

    /// The memory holding constant weights that a call on `inputs` reads: every constant
    /// input and every packed copy made from one, as `(address, bytes)`, in no particular
    /// order (empty ranges left out). A copy not made yet is not listed: call after the
    /// first [`Kernel::run`] or [`Kernel::pack_weights`]. What a timing that places weights
    /// away from the core moves before every call (`tessel-measure`'s `Residence`), so that
    /// the kernel reads them as a layer of a network does.
    pub fn weight_regions(&self, inputs: &[&[f32]]) -> Vec<(usize, usize)> {
        let mut regions = self.input_regions(inputs, true);
        let packs = self.packs.lock().unwrap_or_else(|e| e.into_inner());
        for p in &packs.copies {
            let from_constant = self.slots.iter().any(|s| s.id == p.plan.src && s.constant);
            let data = p.data.as_slice();
            if from_constant && !data.is_empty() {
                regions.push((data.as_ptr() as usize, std::mem::size_of_val(data)));
            }
        }
        regions
    }

    /// The inputs a call on `inputs` reads that are not constant weights (activations), as
    /// `(address, bytes)`, empty ones left out: what a timing that places activations in the
    /// shared cache moves there before every call (`tessel-measure`).
    pub fn activation_regions(&self, inputs: &[&[f32]]) -> Vec<(usize, usize)> {
        self.input_regions(inputs, false)
    }

    /// The non-empty inputs that are (`constant`) or are not constant weights, as
    /// `(address, bytes)`.
    fn input_regions(&self, inputs: &[&[f32]], constant: bool) -> Vec<(usize, usize)> {
        self.slots
            .iter()
            .filter(|s| s.scope == BufferScope::Input)
            .zip(inputs)
            .filter(|(s, x)| s.constant == constant && !x.is_empty())
            .map(|(_, x)| (x.as_ptr() as usize, std::mem::size_of_val(*x)))
            .collect()
    }

    /// The position among the inputs of input buffer `b`.
    fn input_position(&self, b: tessel_ir::loop_nest::BufferId) -> usize {
        self.slots
            .iter()
            .take_while(|s| s.id != b)
            .filter(|s| s.scope == BufferScope::Input)
            .count()
    }

    /// Name and number of elements of each input `run` expects, in order.
    pub fn inputs(&self) -> Vec<(&str, usize)> {
        self.param_info(BufferScope::Input)
    }

    /// Name and number of elements of each output `run` expects, in order.
    pub fn outputs(&self) -> Vec<(&str, usize)> {
        self.param_info(BufferScope::Output)
    }

    fn param_info(&self, scope: BufferScope) -> Vec<(&str, usize)> {
        self.slots
            .iter()
            .filter(|s| s.scope == scope)
            .map(|s| (s.name.as_str(), s.len))
            .collect()
    }

    /// The tensorized loops that run as micro-kernel calls (empty when none matched, the CPU
    /// cannot run [`CompileOptions::isa`]'s kernels or it is [`Isa::Generic`]).
    pub fn micro_kernel_calls(&self) -> &[MicroKernelCall] {
        &self.calls
    }

    /// The names of the loops that run as one call of the target's copy/fill routine
    /// ([`bulk`]: padding, copies, tile initialisation), sorted; empty for the generic
    /// target.
    pub fn bulk_runs(&self) -> &[String] {
        &self.runs
    }

    /// The write-backs that run as one call of the target's epilogue routine
    /// ([`epilogue`]: bias, residual add, ReLU/ReLU6 applied at the target's vector width),
    /// sorted by loop name; empty for the generic target.
    pub fn fused_write_backs(&self) -> &[epilogue::FusedWriteBack] {
        &self.write_backs
    }

    /// Wall time `compile` took for this kernel.
    pub fn compile_time(&self) -> Duration {
        self.compile_time
    }

    /// The optimized Cranelift IR of every function of the kernel (the entry point and the
    /// outlined parallel bodies), if [`CompileOptions::keep_ir`] was set.
    pub fn ir_text(&self) -> Option<&str> {
        (!self.ir_text.is_empty()).then_some(self.ir_text.as_str())
    }

    /// Cranelift's disassembly (VCode text) of every function, if [`CompileOptions::disasm`]
    /// was set.
    pub fn disasm(&self) -> Option<&str> {
        (!self.disasm.is_empty()).then_some(self.disasm.as_str())
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        if let Some(m) = self.module.take() {
            // SAFETY: the only pointer into this module's code is `entry`, which dies with
            // `self`; no call is running since `run` borrows `self`.
            unsafe { m.free_memory() };
        }
    }
}
