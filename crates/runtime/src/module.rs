//! [`Module`]: a network built into kernels, a weight arena, an activation arena and a list
//! of launches.

use crate::arena::{round_up, Arena};
use crate::plan::{BufferLife, MemoryPlan};
use crate::schedule::{self, Compiled, ScheduleSource, Wanted};
use crate::RuntimeError;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tessel_codegen::{contention, Kernel, PreparedCall};
use tessel_ir::target::Target;
use tessel_ir::{ComputeDag, State};
use tessel_measure::records::read_records;
use tessel_workloads::networks::{self, Binding, LayerId, Network, Weights};

/// Most inputs one kernel of a module may take (activations and weights).
pub const MAX_ARGS: usize = 16;

/// How one task of the network was built.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskReport {
    /// The task's name ([`networks::Task::name`]).
    pub name: String,
    /// Its workload key (what records are matched on).
    pub workload_key: String,
    /// Occurrences in the network.
    pub weight: usize,
    /// Anchor layers of the occurrences, in network order.
    pub occurrences: Vec<String>,
    /// Where its program came from.
    pub source: ScheduleSource,
    /// Records of this task that were not used, by reason, with counts.
    pub refused: Vec<(String, usize)>,
    /// Programs tried before the one used that did not build (a record's steps that do
    /// not replay, a default that does not lower), with why.
    pub failed: Vec<String>,
    /// Micro-kernel calls in its kernel.
    pub micro_kernel_calls: usize,
    /// Kernels compiled for it: one, or one per occurrence when the kernel keeps packed
    /// copies of its weights (layout rewrite).
    pub kernels: usize,
    /// Milliseconds replaying and lowering its schedule, and JIT-compiling its kernels.
    pub schedule_ms: f64,
    /// JIT compile time of all its kernels (ms).
    pub compile_ms: f64,
}

impl TaskReport {
    /// True when the task runs a default schedule (no record was used).
    pub fn fell_back(&self) -> bool {
        matches!(self.source, ScheduleSource::Default { .. })
    }

    /// The measured time of the record it runs (seconds), if it runs one.
    pub fn record_seconds(&self) -> Option<f64> {
        match self.source {
            ScheduleSource::Record { seconds, .. } => Some(seconds),
            ScheduleSource::Default { .. } => None,
        }
    }
}

/// Where the build time went.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BuildTimings {
    /// Partitioning the network and building its subgraph DAGs.
    pub graph: Duration,
    /// Reading the records file.
    pub records: Duration,
    /// Choosing, replaying and lowering schedules (default sketches included).
    pub schedule: Duration,
    /// JIT compilation of all kernels.
    pub compile: Duration,
    /// Copying the weights into their arena and packing them for the kernels.
    pub weights: Duration,
    /// Memory planning.
    pub plan: Duration,
    /// The whole build.
    pub total: Duration,
}

/// What [`Module::build`] did.
#[derive(Clone, Debug, PartialEq)]
pub struct BuildReport {
    /// One per task, in order of first occurrence.
    pub tasks: Vec<TaskReport>,
    /// Problems with the records file (corrupt lines, skipped with their line number).
    pub warnings: Vec<String>,
    /// Where the time went.
    pub timings: BuildTimings,
    /// Bytes of the activation arena (the planned peak).
    pub arena_bytes: usize,
    /// Bytes of all activation buffers if none shared memory.
    pub intermediates_bytes: usize,
    /// Bytes of the weight arena (packed copies made by kernels not included).
    pub weight_bytes: usize,
    /// Kernels compiled.
    pub kernels: usize,
    /// Kernel launches per inference.
    pub launches: usize,
}

impl BuildReport {
    /// The tasks that run a default schedule.
    pub fn fallbacks(&self) -> impl Iterator<Item = &TaskReport> {
        self.tasks.iter().filter(|t| t.fell_back())
    }

    /// The records' estimate of one inference, Σ weight × record time (seconds), over the
    /// tasks that run a record, and how many tasks that is.
    pub fn estimate(&self) -> (f64, usize) {
        let with: Vec<&TaskReport> = self
            .tasks
            .iter()
            .filter(|t| t.record_seconds().is_some())
            .collect();
        let sum = with
            .iter()
            .map(|t| t.weight as f64 * t.record_seconds().unwrap_or(0.0))
            .sum();
        (sum, with.len())
    }
}

/// Time spent in one launch (one occurrence of a task) over the profiled runs.
#[derive(Clone, Debug, PartialEq)]
pub struct LaunchProfile {
    /// The anchor layer of the occurrence.
    pub layer: String,
    /// Index of its task in [`BuildReport::tasks`].
    pub task: usize,
    /// Total time in its kernel.
    pub total: Duration,
}

/// Most share of a call's time its threads may lose to other processes for
/// [`Module::profile_alone_timings`] to count it (a measurement's default,
/// `tessel_measure`'s `max_contention`).
pub const MAX_CONTENTION: f64 = 0.05;

/// Extra calls [`Module::profile_alone_timings`] makes per launch, per timed call asked
/// for, to replace contended ones.
pub const ALONE_RETAKES: usize = 10;

/// One launch timed alone ([`Module::profile_alone_timings`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AloneTiming {
    /// Median time of its uncontended calls (of its contended ones when all were).
    pub median: Duration,
    /// Uncontended calls timed.
    pub timed: usize,
    /// Calls not counted because its threads lost more than [`MAX_CONTENTION`] of their
    /// time to other processes.
    pub contended: usize,
}

/// Where one input or output of the network lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSlot {
    /// The layer's name.
    pub name: String,
    /// Its shape.
    pub shape: Vec<i64>,
    /// Offset in the activation arena (floats).
    offset: usize,
    /// Number of floats.
    pub len: usize,
}

/// Which arena an argument lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Activations,
    Weights,
}

/// One kernel call of an inference, with its buffers resolved to arena ranges.
#[derive(Clone, Debug)]
struct Launch {
    kernel: usize,
    task: usize,
    layer: String,
    args: Vec<(Source, usize, usize)>,
    out: (usize, usize),
}

/// A network built for one target and thread count: one compiled kernel per task (per
/// occurrence when it packs its weights), the weights in one read-only arena, the
/// activations in one planned arena, and the list of launches an inference runs.
///
/// `run` takes `&mut self` (the activation arena is reused by every call, so a module runs
/// one inference at a time). A module is `Send`: to run inferences on several threads,
/// build one module per thread (or move one to each), or share one behind a `Mutex`.
///
/// ```
/// fn send<T: Send>() {}
/// send::<tessel_runtime::Module>();
/// ```
pub struct Module {
    name: String,
    kernels: Vec<Kernel>,
    launches: Vec<Launch>,
    /// One prepared kernel call per launch, on the arenas' memory (which never moves: the
    /// arenas are allocated once, at build).
    calls: Vec<PreparedCall>,
    weights: Arena,
    arena: Arena,
    inputs: Vec<TensorSlot>,
    outputs: Vec<TensorSlot>,
    plan: MemoryPlan,
    report: BuildReport,
    threads: usize,
    profiling: bool,
    profile: Vec<Duration>,
    profiled_runs: u64,
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("name", &self.name)
            .field("kernels", &self.kernels.len())
            .field("launches", &self.launches.len())
            .field("arena_floats", &self.arena.len())
            .finish_non_exhaustive()
    }
}

/// One occurrence of a task: a subgraph in execution order.
struct Occurrence {
    task: usize,
    layer: String,
    bindings: Vec<Binding>,
    output: LayerId,
    out_len: usize,
}

impl Module {
    /// Builds `net` with `weights` for `target` running `threads` threads.
    ///
    /// Every task runs its fastest usable record of the records file at `records` (same
    /// workload key, ISA, thread count, code generator revision and machine; the others
    /// are refused and [`BuildReport::tasks`] says why; warm records give way to records
    /// measured with the operands placed, [`crate::WARM_SET_ASIDE`]); a task without one runs a default
    /// schedule ([`crate::default_schedule`]). Corrupt lines of the records file are
    /// skipped with a warning. An unreadable records file, missing or mis-shaped weights,
    /// or a task that no program builds for, is an error.
    pub fn build(
        net: &Network,
        weights: &Weights,
        records: Option<&Path>,
        target: &Target,
        threads: usize,
    ) -> Result<Module, RuntimeError> {
        let start = Instant::now();
        let threads = threads.max(1);
        let mut timings = BuildTimings::default();
        weights.check(net)?;

        // The graph: subgraphs in execution order, grouped into tasks.
        let t = Instant::now();
        let tasks = networks::extract_tasks(net)?;
        let task_of: HashMap<String, usize> = tasks
            .iter()
            .enumerate()
            .map(|(k, t)| (t.dag.canonical_text(), k))
            .collect();
        let mut occurrences = Vec::new();
        for g in networks::execution_order(net) {
            let (dag, bindings) = networks::subgraph_dag_bound(net, &g)?;
            let task = *task_of.get(&dag.canonical_text()).ok_or_else(|| {
                RuntimeError::Graph(format!(
                    "the subgraph of `{}` is in no task",
                    net.node(g.anchor()).name
                ))
            })?;
            let out_len = elements(&net.node(g.output()).shape);
            occurrences.push(Occurrence {
                task,
                layer: net.node(g.anchor()).name.clone(),
                bindings,
                output: g.output(),
                out_len,
            });
        }
        timings.graph = t.elapsed();

        // The records.
        let t = Instant::now();
        let mut warnings = Vec::new();
        let log = match records {
            Some(path) => {
                let log = read_records(path).map_err(|e| RuntimeError::Records {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
                for p in &log.problems {
                    warnings.push(format!(
                        "{}: line {} skipped: {}",
                        path.display(),
                        p.line,
                        p.reason
                    ));
                }
                log.records
            }
            None => Vec::new(),
        };
        timings.records = t.elapsed();

        // One program per task.
        let host = tessel_measure::Target::host();
        let wanted = Wanted {
            target,
            threads,
            host: &host,
        };
        let mut compiled: Vec<Compiled> = Vec::with_capacity(tasks.len());
        let mut reports = Vec::with_capacity(tasks.len());
        for task in &tasks {
            let dag = Arc::new(task.dag.clone());
            let key = dag.workload_key();
            let cands = schedule::candidates(&log, &key, &wanted);
            let mut failed = Vec::new();
            let mut chosen = None;
            for (rank, r) in cands.usable.iter().enumerate() {
                let t0 = Instant::now();
                let state = match State::replay(dag.clone(), &r.steps) {
                    Ok(s) => s,
                    Err(e) => {
                        failed.push(format!("record #{rank}: steps do not replay: {e}"));
                        continue;
                    }
                };
                let source = ScheduleSource::Record {
                    seconds: r.cost().unwrap_or(f64::NAN),
                    confirmed: r.confirmed,
                    rank,
                };
                let opts = r.key.codegen.compile_options();
                match schedule::build_steps(state, &opts, source, t0) {
                    Ok(c) => match check_kernel(&c.kernel, &task.dag) {
                        Ok(()) => {
                            chosen = Some(c);
                            break;
                        }
                        Err(e) => failed.push(format!("record #{rank}: {e}")),
                    },
                    Err(e) => failed.push(format!("record #{rank}: {e}")),
                }
            }
            if chosen.is_none() {
                let why = if records.is_none() {
                    "no records file".to_string()
                } else if !cands.usable.is_empty() {
                    format!("none of its {} usable records built", cands.usable.len())
                } else if cands.refused.is_empty() {
                    "no record for this task".to_string()
                } else {
                    let reasons: Vec<String> = cands
                        .refused
                        .iter()
                        .map(|(why, n)| format!("{n} {why}"))
                        .collect();
                    format!("no usable record ({})", reasons.join("; "))
                };
                let t0 = Instant::now();
                let defaults = schedule::default_schedule(&dag, target, threads);
                let opts = schedule::default_options(target, threads);
                for (k, state) in defaults.into_iter().enumerate() {
                    let source = ScheduleSource::Default {
                        why: why.clone(),
                        tensorized: tessel_sketch::rules::is_tensorized(&state),
                    };
                    match schedule::build_steps(state, &opts, source, t0) {
                        Ok(c) => match check_kernel(&c.kernel, &task.dag) {
                            Ok(()) => {
                                chosen = Some(c);
                                break;
                            }
                            Err(e) => failed.push(format!("default #{k}: {e}")),
                        },
                        Err(e) => failed.push(format!("default #{k}: {e}")),
                    }
                }
            }
            let c = chosen.ok_or_else(|| RuntimeError::NoProgram {
                task: task.name.clone(),
                reasons: failed.join("; "),
            })?;
            reports.push(TaskReport {
                name: task.name.clone(),
                workload_key: key,
                weight: task.weight,
                occurrences: task.occurrences.clone(),
                source: c.source.clone(),
                refused: cands.refused.into_iter().collect(),
                failed,
                micro_kernel_calls: c.kernel.micro_kernel_calls().len(),
                kernels: 1,
                schedule_ms: c.schedule_ms,
                compile_ms: c.compile_ms,
            });
            compiled.push(c);
        }

        // Kernels: the task's own for its first occurrence; a copy per further occurrence
        // when the kernel keeps packed copies of its weights (each occurrence has its own).
        let mut kernels: Vec<Option<Kernel>> = Vec::new();
        let mut first_kernel: Vec<Option<usize>> = vec![None; tasks.len()];
        let mut kernel_of = Vec::with_capacity(occurrences.len());
        let mut compiled: Vec<Option<Compiled>> = compiled.into_iter().map(Some).collect();
        let mut nests = Vec::with_capacity(tasks.len());
        for c in compiled.iter() {
            let c = c.as_ref().map(|c| (c.nest.clone(), c.opts.clone()));
            nests.push(c);
        }
        for occ in &occurrences {
            let k = match first_kernel[occ.task] {
                None => {
                    let c = compiled[occ.task].take().ok_or_else(|| {
                        RuntimeError::Graph("a task's kernel was used twice".into())
                    })?;
                    kernels.push(Some(c.kernel));
                    first_kernel[occ.task] = Some(kernels.len() - 1);
                    kernels.len() - 1
                }
                Some(k) => {
                    let packs = kernels[k].as_ref().is_some_and(packs_weights);
                    if packs {
                        let (nest, opts) = nests[occ.task]
                            .as_ref()
                            .ok_or_else(|| RuntimeError::Graph("a task has no loop nest".into()))?;
                        let t1 = Instant::now();
                        let kernel = tessel_codegen::compile(nest, opts).map_err(|e| {
                            RuntimeError::NoProgram {
                                task: tasks[occ.task].name.clone(),
                                reasons: format!("a second copy does not compile: {e}"),
                            }
                        })?;
                        let ms = t1.elapsed().as_secs_f64() * 1e3;
                        reports[occ.task].compile_ms += ms;
                        reports[occ.task].kernels += 1;
                        kernels.push(Some(kernel));
                        kernels.len() - 1
                    } else {
                        k
                    }
                }
            };
            kernel_of.push(k);
        }
        let kernels: Vec<Kernel> = kernels.into_iter().flatten().collect();
        timings.schedule =
            Duration::from_secs_f64(reports.iter().map(|r| r.schedule_ms).sum::<f64>() / 1e3);
        timings.compile =
            Duration::from_secs_f64(reports.iter().map(|r| r.compile_ms).sum::<f64>() / 1e3);

        // Activation buffers and their lifetimes over the launches.
        let t = Instant::now();
        let n_steps = occurrences.len();
        let mut buffer_of: HashMap<LayerId, usize> = HashMap::new();
        let mut lives: Vec<BufferLife> = Vec::new();
        for id in net.input_layers() {
            buffer_of.insert(id, lives.len());
            lives.push(BufferLife {
                name: net.node(id).name.clone(),
                len: elements(&net.node(id).shape),
                first: 0,
                last: 0,
            });
        }
        for (s, occ) in occurrences.iter().enumerate() {
            for b in &occ.bindings {
                if let Binding::Activation(i) = b {
                    let src = networks::view_source(net, *i);
                    let k = *buffer_of.get(&src).ok_or_else(|| {
                        RuntimeError::Graph(format!(
                            "`{}` reads `{}` before it is computed",
                            occ.layer,
                            net.node(*i).name
                        ))
                    })?;
                    lives[k].last = lives[k].last.max(s);
                }
            }
            buffer_of.insert(occ.output, lives.len());
            lives.push(BufferLife {
                name: net.node(occ.output).name.clone(),
                len: occ.out_len,
                first: s,
                last: s,
            });
        }
        let mut outputs = Vec::new();
        for id in net.output_layers() {
            let src = networks::view_source(net, id);
            let k = *buffer_of.get(&src).ok_or_else(|| {
                RuntimeError::Graph(format!("output `{}` is never computed", net.node(id).name))
            })?;
            lives[k].last = n_steps;
            outputs.push((id, k));
        }
        let plan = MemoryPlan::new(lives);
        plan.check().map_err(RuntimeError::Plan)?;
        timings.plan = t.elapsed();

        // The weight arena: every weight a launch reads, once, 64-byte aligned.
        let t = Instant::now();
        let mut weight_at: BTreeMap<(LayerId, &'static str), (usize, usize)> = BTreeMap::new();
        let mut weight_len = 0;
        for occ in &occurrences {
            for b in &occ.bindings {
                if let Binding::Weight { layer, param } = b {
                    weight_at.entry((*layer, param)).or_insert_with(|| {
                        let node = net.node(*layer);
                        let len = weights.get(&node.name, param).map_or(0, |t| t.data.len());
                        let at = weight_len;
                        weight_len += round_up(len.max(1));
                        (at, len)
                    });
                }
            }
        }
        let mut warena = Arena::zeroed(weight_len);
        for (&(layer, param), &(at, len)) in &weight_at {
            let node = net.node(layer);
            let w = weights.get(&node.name, param).ok_or_else(|| {
                RuntimeError::Graph(format!("layer `{}` has no weight `{param}`", node.name))
            })?;
            warena.as_mut_slice()[at..at + len].copy_from_slice(&w.data);
        }

        // The launches.
        let mut launches = Vec::with_capacity(n_steps);
        for (s, occ) in occurrences.iter().enumerate() {
            let mut args = Vec::with_capacity(occ.bindings.len());
            for b in &occ.bindings {
                args.push(match b {
                    Binding::Activation(i) => {
                        let k = buffer_of[&networks::view_source(net, *i)];
                        let p = &plan.buffers[k];
                        (Source::Activations, p.offset, p.life.len)
                    }
                    Binding::Weight { layer, param } => {
                        let (at, len) = weight_at[&(*layer, *param)];
                        (Source::Weights, at, len)
                    }
                });
            }
            if args.len() > MAX_ARGS {
                return Err(RuntimeError::Graph(format!(
                    "the subgraph of `{}` takes {} inputs; a module takes at most {MAX_ARGS}",
                    occ.layer,
                    args.len()
                )));
            }
            let out = &plan.buffers[buffer_of[&occ.output]];
            launches.push(Launch {
                kernel: kernel_of[s],
                task: occ.task,
                layer: occ.layer.clone(),
                args,
                out: (out.offset, out.life.len),
            });
        }
        let mut arena = Arena::zeroed(plan.arena_len);
        // Prepare every launch's kernel call on the arenas: its argument pointers fixed and
        // the weights it reads packed now (layout rewrite), so that no inference packs
        // weights or allocates.
        let mut calls = Vec::with_capacity(launches.len());
        let act_len = arena.len();
        let base = arena.as_mut_slice().as_mut_ptr();
        for l in &launches {
            let (at, len) = l.out;
            let in_arena = |at: usize, len: usize| at + len <= act_len;
            if !in_arena(at, len)
                || l.args
                    .iter()
                    .any(|&(src, at, len)| src == Source::Activations && !in_arena(at, len))
            {
                return Err(RuntimeError::Plan(format!(
                    "a buffer of `{}` lies outside the activation arena",
                    l.layer
                )));
            }
            let ins: Vec<&[f32]> = l
                .args
                .iter()
                .map(|&(src, at, len)| match src {
                    Source::Weights => &warena.as_slice()[at..at + len],
                    // SAFETY: in the arena (checked above); nothing else borrows it here.
                    Source::Activations => unsafe { std::slice::from_raw_parts(base.add(at), len) },
                })
                .collect();
            // SAFETY: in the arena (checked above) and, by the memory plan (checked), apart
            // from every buffer live at this launch, its arguments included.
            let out: &mut [f32] = unsafe { std::slice::from_raw_parts_mut(base.add(at), len) };
            let call =
                kernels[l.kernel]
                    .prepare(&ins, &mut [out])
                    .map_err(|e| RuntimeError::Run {
                        layer: l.layer.clone(),
                        source: e,
                    })?;
            calls.push(call);
        }
        timings.weights = t.elapsed();

        let slot = |id: LayerId, k: usize| TensorSlot {
            name: net.node(id).name.clone(),
            shape: net.node(id).shape.clone(),
            offset: plan.buffers[k].offset,
            len: plan.buffers[k].life.len,
        };
        let inputs: Vec<TensorSlot> = net
            .input_layers()
            .into_iter()
            .map(|id| slot(id, buffer_of[&id]))
            .collect();
        let outputs: Vec<TensorSlot> = outputs.into_iter().map(|(id, k)| slot(id, k)).collect();
        timings.total = start.elapsed();
        let report = BuildReport {
            tasks: reports,
            warnings,
            timings,
            arena_bytes: plan.arena_len * 4,
            intermediates_bytes: plan.total_len() * 4,
            weight_bytes: warena.len() * 4,
            kernels: kernels.len(),
            launches: launches.len(),
        };
        let n = launches.len();
        Ok(Module {
            name: net.name().to_string(),
            kernels,
            launches,
            calls,
            weights: warena,
            arena,
            inputs,
            outputs,
            plan,
            report,
            threads,
            profiling: false,
            profile: vec![Duration::ZERO; n],
            profiled_runs: 0,
        })
    }

    /// Runs one inference: `inputs` one slice per network input ([`Module::inputs`], in
    /// order); returns one buffer per output ([`Module::outputs`]).
    pub fn run(&mut self, inputs: &[&[f32]]) -> Result<Vec<Vec<f32>>, RuntimeError> {
        let mut outs: Vec<Vec<f32>> = self.outputs.iter().map(|o| vec![0.0; o.len]).collect();
        let mut refs: Vec<&mut [f32]> = outs.iter_mut().map(|o| o.as_mut_slice()).collect();
        self.run_into(inputs, &mut refs)?;
        Ok(outs)
    }

    /// [`Module::run`] writing the outputs into `outputs` (one slice per output, of its
    /// length). Nothing is allocated on this path once the module has run an inference
    /// (the first call may still set up the code generator's thread pool): every kernel
    /// call was prepared at build ([`tessel_codegen::Kernel::prepare`]).
    pub fn run_into(
        &mut self,
        inputs: &[&[f32]],
        outputs: &mut [&mut [f32]],
    ) -> Result<(), RuntimeError> {
        check_io("input", &self.inputs, inputs.iter().map(|x| x.len()))?;
        check_io("output", &self.outputs, outputs.iter().map(|x| x.len()))?;
        let Module {
            kernels,
            launches,
            calls,
            arena,
            inputs: in_slots,
            outputs: out_slots,
            profiling,
            profile,
            profiled_runs,
            ..
        } = self;
        let act = arena.as_mut_slice();
        for (slot, x) in in_slots.iter().zip(inputs) {
            act[slot.offset..slot.offset + slot.len].copy_from_slice(x);
        }
        for (k, (l, call)) in launches.iter().zip(calls.iter()).enumerate() {
            let t = profiling.then(Instant::now);
            // SAFETY: the call was prepared at build on ranges of the two arenas, which
            // this module owns and never reallocates; `&mut self` keeps anyone else from
            // them for this inference, and the memory plan (checked at build) keeps the
            // launch's output apart from every buffer live at its step.
            unsafe { kernels[l.kernel].run_prepared(call) }.map_err(|e| RuntimeError::Run {
                layer: l.layer.clone(),
                source: e,
            })?;
            if let Some(t) = t {
                profile[k] += t.elapsed();
            }
        }
        if *profiling {
            *profiled_runs += 1;
        }
        let act = arena.as_slice();
        for (slot, y) in out_slots.iter().zip(outputs.iter_mut()) {
            y.copy_from_slice(&act[slot.offset..slot.offset + slot.len]);
        }
        Ok(())
    }

    /// Runs one inference on `inputs` launch by launch, each launch's kernel called
    /// `repeat` times back to back (after one untimed call) on the buffers the inference
    /// gives it, and returns every launch's median time, in execution order (see
    /// [`Module::profile_alone_timings`], which also says how many calls were retaken).
    pub fn profile_alone(
        &mut self,
        inputs: &[&[f32]],
        outputs: &mut [&mut [f32]],
        repeat: usize,
    ) -> Result<Vec<Duration>, RuntimeError> {
        Ok(self
            .profile_alone_timings(inputs, outputs, repeat)?
            .into_iter()
            .map(|t| t.median)
            .collect())
    }

    /// [`Module::profile_alone`] with, per launch, how many calls were contended.
    ///
    /// A launch then finds its weights and inputs in cache as a tuning measurement does (the
    /// kernel alone, hot), so the difference from its time inside an inference
    /// ([`Module::profile`]) is what the network around it costs: weights and activations
    /// read cold, data another thread wrote. As a measurement does, a call during which the
    /// kernel's threads lost more than [`MAX_CONTENTION`] of their time to other processes
    /// ([`tessel_codegen::contention`]: run-queue delay, or the pool's workers running
    /// fewer of the parallel iterations than their share) is not counted and is taken
    /// again, up to [`ALONE_RETAKES`] × `repeat` extra calls; a launch whose calls were all
    /// contended gets the median of those. Without this, a two-thread kernel whose worker
    /// thread waited for a CPU reads at one-thread speed: on a loaded machine that made
    /// MobileNet-V2's depthwise 14×14×384 launches read 3.6 × their record (docs/runtime.md).
    /// Each launch's output is rewritten with the same values (a launch's output never
    /// overlaps its arguments), so the inference's result, written to `outputs` as
    /// [`Module::run_into`] writes it, stays right.
    pub fn profile_alone_timings(
        &mut self,
        inputs: &[&[f32]],
        outputs: &mut [&mut [f32]],
        repeat: usize,
    ) -> Result<Vec<AloneTiming>, RuntimeError> {
        check_io("input", &self.inputs, inputs.iter().map(|x| x.len()))?;
        check_io("output", &self.outputs, outputs.iter().map(|x| x.len()))?;
        let act = self.arena.as_mut_slice();
        for (slot, x) in self.inputs.iter().zip(inputs) {
            act[slot.offset..slot.offset + slot.len].copy_from_slice(x);
        }
        let repeat = repeat.max(1);
        let threads = self.threads;
        let mut times = Vec::with_capacity(repeat);
        let mut contended_times = Vec::new();
        let mut out = Vec::with_capacity(self.launches.len());
        for (l, call) in self.launches.iter().zip(&self.calls) {
            let kernel = &self.kernels[l.kernel];
            let run = || {
                // SAFETY: as in `run_into`.
                unsafe { kernel.run_prepared(call) }.map_err(|e| RuntimeError::Run {
                    layer: l.layer.clone(),
                    source: e,
                })
            };
            times.clear();
            contended_times.clear();
            run()?;
            let mut extra = 0;
            while times.len() < repeat {
                let before = contention::snapshot(threads);
                let t = Instant::now();
                run()?;
                let wall = t.elapsed();
                let after = contention::snapshot(threads);
                let lost = before
                    .contention_until(&after, threads, wall)
                    .unwrap_or(0.0);
                if lost <= MAX_CONTENTION {
                    times.push(wall);
                } else {
                    contended_times.push(wall);
                    extra += 1;
                    if extra > ALONE_RETAKES * repeat {
                        break;
                    }
                }
            }
            let timed = times.len();
            let median = median_duration(if times.is_empty() {
                &contended_times
            } else {
                &times
            });
            out.push(AloneTiming {
                median,
                timed,
                contended: contended_times.len(),
            });
        }
        let act = self.arena.as_slice();
        for (slot, y) in self.outputs.iter().zip(outputs.iter_mut()) {
            y.copy_from_slice(&act[slot.offset..slot.offset + slot.len]);
        }
        Ok(out)
    }

    /// Turns the per-launch profile on or off (off after a build). Timing a launch costs
    /// two clock reads.
    pub fn set_profiling(&mut self, on: bool) {
        self.profiling = on;
    }

    /// Forgets the profile gathered so far.
    pub fn reset_profile(&mut self) {
        self.profile.iter_mut().for_each(|d| *d = Duration::ZERO);
        self.profiled_runs = 0;
    }

    /// The profile: time per launch (in execution order) summed over the profiled runs,
    /// and the number of runs.
    pub fn profile(&self) -> (Vec<LaunchProfile>, u64) {
        let p = self
            .launches
            .iter()
            .zip(&self.profile)
            .map(|(l, &total)| LaunchProfile {
                layer: l.layer.clone(),
                task: l.task,
                total,
            })
            .collect();
        (p, self.profiled_runs)
    }

    /// The network's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Threads the kernels run on.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The network inputs `run` takes, in order.
    pub fn inputs(&self) -> &[TensorSlot] {
        &self.inputs
    }

    /// The network outputs `run` returns, in order.
    pub fn outputs(&self) -> &[TensorSlot] {
        &self.outputs
    }

    /// What the build did.
    pub fn report(&self) -> &BuildReport {
        &self.report
    }

    /// The memory plan of the activation arena.
    pub fn memory_plan(&self) -> &MemoryPlan {
        &self.plan
    }

    /// The weight arena (read only: every launch reads its weights from here).
    pub fn weight_arena(&self) -> &[f32] {
        self.weights.as_slice()
    }
}

/// Whether `k` keeps packed copies of constant weights (made once, then reused).
fn packs_weights(k: &Kernel) -> bool {
    k.micro_kernel_calls()
        .iter()
        .any(|c| c.packed_b && !c.packs_per_call)
}

/// The kernel takes the DAG's inputs and one output of the right lengths.
fn check_kernel(k: &Kernel, dag: &ComputeDag) -> Result<(), String> {
    let ins: Vec<usize> = dag
        .inputs()
        .iter()
        .map(|&i| elements(&dag.op(i).shape))
        .collect();
    let outs: Vec<usize> = dag
        .outputs()
        .iter()
        .map(|&i| elements(&dag.op(i).shape))
        .collect();
    let got_in: Vec<usize> = k.inputs().iter().map(|x| x.1).collect();
    let got_out: Vec<usize> = k.outputs().iter().map(|x| x.1).collect();
    if got_in != ins || got_out != outs || outs.len() != 1 {
        return Err(format!(
            "the kernel takes inputs {got_in:?} and outputs {got_out:?}, the subgraph has \
             {ins:?} and {outs:?} (one output expected)"
        ));
    }
    Ok(())
}

fn check_io(
    kind: &'static str,
    slots: &[TensorSlot],
    lens: impl ExactSizeIterator<Item = usize>,
) -> Result<(), RuntimeError> {
    if lens.len() != slots.len() {
        return Err(RuntimeError::Io {
            reason: format!(
                "the network has {} {kind}s, got {}",
                slots.len(),
                lens.len()
            ),
        });
    }
    for (s, n) in slots.iter().zip(lens) {
        if n != s.len {
            return Err(RuntimeError::Io {
                reason: format!(
                    "{kind} `{}` has shape {:?} ({} values), got {n}",
                    s.name, s.shape, s.len
                ),
            });
        }
    }
    Ok(())
}

/// The median of `v` ([`tessel_ir::stats::median`]); zero when empty.
fn median_duration(v: &[Duration]) -> Duration {
    let secs: Vec<f64> = v.iter().map(Duration::as_secs_f64).collect();
    tessel_ir::stats::median(&secs).map_or(Duration::ZERO, Duration::from_secs_f64)
}

fn elements(shape: &[i64]) -> usize {
    shape.iter().map(|&d| d.max(0) as usize).product()
}
