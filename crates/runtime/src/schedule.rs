//! Which program each task runs: its best usable record, or a default schedule.

use std::collections::BTreeMap;
use std::sync::Arc;
use tessel_codegen::{CompileOptions, Kernel};
use tessel_ir::state::{Annotation, IterKind};
use tessel_ir::target::Target;
use tessel_ir::{lower, ComputeDag, LoopNest, State};
use tessel_measure::records::best_n;
use tessel_measure::{CodegenSettings, Record};
use tessel_sketch::{generate_sketches, rules::is_tensorized, sample_initial, HardwareParams};

/// Where a task's program came from.
#[derive(Clone, Debug, PartialEq)]
pub enum ScheduleSource {
    /// The best usable record of the records file.
    Record {
        /// Its median time (seconds) when it was measured.
        seconds: f64,
        /// It is a final confirmation (measured again in a fresh process).
        confirmed: bool,
        /// Its rank among the task's usable records (0: the fastest; a later one is used
        /// when the faster ones did not build).
        rank: usize,
    },
    /// A default schedule: a tensorized sketch (when the task has one) with the tile chosen
    /// by [`default_schedule`]'s rule, because no record could be used.
    Default {
        /// Why no record was used.
        why: String,
        /// The sketch was tensorized (micro-kernel calls).
        tensorized: bool,
    },
}

/// The records of one task that the module may use, and what was refused.
#[derive(Debug, Default)]
pub(crate) struct Candidates {
    /// Usable records, fastest first.
    pub usable: Vec<Record>,
    /// Why other records of the task were not used: reason → count.
    pub refused: BTreeMap<String, usize>,
}

/// What a record must match to be used by a module.
pub(crate) struct Wanted<'a> {
    pub target: &'a Target,
    pub threads: usize,
    pub host: &'a tessel_measure::Target,
}

/// Why record `r` cannot be used by a module that wants `w`, or `None` when it can.
pub(crate) fn refusal(r: &Record, w: &Wanted) -> Option<String> {
    let c = &r.key.codegen;
    if c.isa != w.target.isa {
        return Some(format!(
            "measured for target {}, the module is built for {}",
            c.isa, w.target.isa
        ));
    }
    if c.threads != w.threads {
        return Some(format!(
            "measured with {} threads, the module runs {}",
            c.threads, w.threads
        ));
    }
    if c.revision != tessel_codegen::REVISION {
        return Some(format!(
            "measured with codegen revision {}, this code generator is revision {}",
            c.revision,
            tessel_codegen::REVISION
        ));
    }
    if r.key.target.arch != w.host.arch || r.key.target.cpu != w.host.cpu {
        return Some(format!(
            "measured on {} ({}), this machine is {} ({})",
            r.key.target.cpu, r.key.target.arch, w.host.cpu, w.host.arch
        ));
    }
    if r.cost().is_none() {
        return Some("failed or untimed".to_string());
    }
    None
}

/// Why a warm record is set aside when its task also has records measured with operands
/// placed (`--weights`/`--activations` not warm, as `tune-network` measures): the refusal
/// reason a task's report counts such records under.
pub const WARM_SET_ASIDE: &str =
    "measured warm; the task has records measured with its operands placed as in a network";

/// The records of `records` for the DAG whose workload key is `key`, sorted into usable
/// ones (fastest first, final confirmations preferred as [`best_n`] does) and refusals.
///
/// A task whose usable records include some measured with their operands placed
/// (`--weights`/`--activations` not warm, as `tune-network` measures) uses only those: a
/// layer in a network finds its operands out of the core's caches, and a warm reading of
/// the same program is 20–30 % faster than it runs there (`docs/measurement.md`, session 19),
/// so in a file that mixes both the warm ones would always win the ranking and the
/// estimate would be the optimistic one.
pub(crate) fn candidates(records: &[Record], key: &str, w: &Wanted) -> Candidates {
    let mut out = Candidates::default();
    let mut ok = Vec::new();
    for r in records.iter().filter(|r| r.key.workload_key == key) {
        match refusal(r, w) {
            Some(why) => *out.refused.entry(why).or_default() += 1,
            None => ok.push(r.clone()),
        }
    }
    if ok.iter().any(|r| r.key.timing.places_operands()) {
        let before = ok.len();
        ok.retain(|r| r.key.timing.places_operands());
        if ok.len() < before {
            *out.refused.entry(WARM_SET_ASIDE.to_string()).or_default() += before - ok.len();
        }
    }
    out.usable = best_n(&ok, usize::MAX).into_iter().cloned().collect();
    out
}

/// A compiled program of one task and how it was made.
pub(crate) struct Compiled {
    pub kernel: Kernel,
    pub nest: LoopNest,
    pub opts: CompileOptions,
    pub source: ScheduleSource,
    /// Milliseconds replaying + lowering, and compiling.
    pub schedule_ms: f64,
    pub compile_ms: f64,
}

/// Lowers `state` and compiles it with `opts`.
pub(crate) fn build_steps(
    state: State,
    opts: &CompileOptions,
    source: ScheduleSource,
    t0: std::time::Instant,
) -> Result<Compiled, String> {
    let nest = lower::lower(&state).map_err(|e| format!("does not lower: {e}"))?;
    let schedule_ms = t0.elapsed().as_secs_f64() * 1e3;
    let t1 = std::time::Instant::now();
    let kernel =
        tessel_codegen::compile(&nest, opts).map_err(|e| format!("does not compile: {e}"))?;
    Ok(Compiled {
        kernel,
        nest,
        opts: opts.clone(),
        source,
        schedule_ms,
        compile_ms: t1.elapsed().as_secs_f64() * 1e3,
    })
}

/// The code generation options of a default schedule: the target's ISA, `threads`, FMA,
/// and the layout rewrite a search measures with by default.
pub fn default_options(target: &Target, threads: usize) -> CompileOptions {
    CodegenSettings {
        threads,
        isa: target.isa,
        ..CodegenSettings::default()
    }
    .compile_options()
}

/// Default schedules of `dag`, best first: Ansor's sketches for `target` with `threads`
/// cores, tensorized ones first; from each, up to 8 states drawn with a fixed seed (so a
/// build is reproducible), ranked by a static rule: a parallel extent of at least
/// `threads` first, then the largest micro-kernel tile (rows × columns under the
/// tensorized loop), then the larger parallel extent (up to 16 × `threads`). The naive
/// loop nest comes last, for a DAG no sketch lowers.
pub fn default_schedule(dag: &Arc<ComputeDag>, target: &Target, threads: usize) -> Vec<State> {
    let hw = HardwareParams::for_target(&(*target).with_cores(threads as i64));
    let mut out: Vec<(bool, (bool, i64, i64), State)> = Vec::new();
    if let Ok(sketches) = generate_sketches(dag, &hw) {
        let mut rng = tessel_ir::rng::seeded(0x7e55e1);
        let any_tensorized = sketches.iter().any(|s| is_tensorized(&s.state));
        for sk in &sketches {
            let tensorized = is_tensorized(&sk.state);
            if any_tensorized && !tensorized {
                continue;
            }
            for _ in 0..8 {
                if let Some(s) = sample_initial(sk, &hw, &mut rng) {
                    if out.iter().any(|(_, _, o)| o.steps() == s.steps()) {
                        continue;
                    }
                    let score = score(&s, threads as i64);
                    out.push((tensorized, score, s));
                }
            }
        }
    }
    out.sort_by_key(|b| std::cmp::Reverse(b.1));
    let mut states: Vec<State> = out.into_iter().map(|(_, _, s)| s).collect();
    states.push(State::new(dag.clone()));
    states
}

/// The static rank of a default schedule (see [`default_schedule`]).
fn score(s: &State, threads: i64) -> (bool, i64, i64) {
    let mut parallel = 1i64;
    let mut tile = 0i64;
    for st in s.stages() {
        let leaves: Vec<_> = (0..st.leaves.len()).filter_map(|p| st.leaf(p)).collect();
        for it in &leaves {
            if it.annotation == Annotation::Parallel {
                parallel = parallel.saturating_mul(it.extent.unwrap_or(1));
            }
        }
        if let Some(p) = leaves
            .iter()
            .position(|it| it.annotation == Annotation::Tensorize)
        {
            let t: i64 = leaves[p + 1..]
                .iter()
                .filter(|it| it.kind == IterKind::Spatial)
                .map(|it| it.extent.unwrap_or(1))
                .product();
            tile = tile.max(t);
        }
    }
    (parallel >= threads, tile, parallel.min(16 * threads))
}
