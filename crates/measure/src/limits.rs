//! Limits on what a candidate or a measurement setting may ask for, checked before any work
//! (and on every path: in-process, worker, records read back).
//!
//! A step log, a workload spec or a records line comes from a user or from another process:
//! a 100,000-part split, `repeat = u32::MAX` or an unroll step of 2³²−1 must be an error, not
//! an allocation failure, a stack overflow or a hang.

/// The stack of each builder thread (replay, lowering, compilation run there): 16 MiB,
/// ample for the deepest loop nest the limits below allow (rayon's default is 2 MiB).
/// Kernels' parallel loops run on the codegen runtime's threads (32 MiB stacks) and on
/// the calling thread (the process's main thread: 8 MiB by default on Linux).
pub const BUILDER_STACK_BYTES: usize = 16 << 20;

/// The most timed repeats of one measurement.
pub const MAX_REPEAT: u32 = 1_000;
/// The most calls per repeat (`number` may grow to make a repeat last `min_repeat_ms`).
pub const MAX_NUMBER: u32 = 100_000_000;
/// The most untimed warm-up calls.
pub const MAX_WARMUP: u32 = 1_000;
/// The longest requested repeat (milliseconds).
pub const MAX_MIN_REPEAT_MS: f64 = 60_000.0;
/// The most costs one record may hold (repeats of the first reading and its confirmations).
pub const MAX_COSTS: usize = 100_000;
/// The most kernel threads.
pub const MAX_THREADS: usize = 1_024;

/// Checks a number against an inclusive range, naming the field on failure.
pub(crate) fn check_range<T: PartialOrd + std::fmt::Display + Copy>(
    field: &str,
    value: T,
    lo: T,
    hi: T,
) -> Result<(), String> {
    if value < lo || value > hi {
        Err(format!("field `{field}`: {value} is outside {lo}..={hi}"))
    } else {
        Ok(())
    }
}

/// Checks that `value` is a finite number in `lo..=hi`, naming the field on failure.
pub(crate) fn check_finite(field: &str, value: f64, lo: f64, hi: f64) -> Result<(), String> {
    if !value.is_finite() {
        return Err(format!("field `{field}`: {value} is not a finite number"));
    }
    check_range(field, value, lo, hi)
}

/// Checks timing settings: repeat, number, warm-up and retakes within their limits,
/// `min_repeat_ms` finite and within its limit, `max_contention` a share in `[0, 1]`.
pub fn check_timing_settings(t: &crate::options::TimingSettings) -> Result<(), String> {
    check_timing_settings_at("timing", t)
}

/// [`check_timing_settings`], naming the fields under `prefix`.
pub(crate) fn check_timing_settings_at(
    prefix: &str,
    t: &crate::options::TimingSettings,
) -> Result<(), String> {
    check_range(&format!("{prefix}.repeat"), t.repeat, 0, MAX_REPEAT)?;
    check_range(&format!("{prefix}.number"), t.number, 1, MAX_NUMBER)?;
    check_range(&format!("{prefix}.warmup"), t.warmup, 0, MAX_WARMUP)?;
    check_range(&format!("{prefix}.retakes"), t.retakes, 0, MAX_REPEAT)?;
    check_finite(
        &format!("{prefix}.max_contention"),
        t.max_contention,
        0.0,
        1.0,
    )?;
    check_finite(
        &format!("{prefix}.min_repeat_ms"),
        t.min_repeat_ms,
        0.0,
        MAX_MIN_REPEAT_MS,
    )
}

/// The most steps in one step log.
pub const MAX_STEPS: usize = 10_000;
/// The most inner lengths of one split (Ansor's CPU sketches use at most 3).
pub const MAX_SPLIT_PARTS: usize = 16;
/// The most stages of a state (cache and rfactor steps add stages).
pub const MAX_STAGES: usize = 256;
/// The most loops (iterators) of one stage.
pub const MAX_LOOPS_PER_STAGE: usize = 64;
/// The largest `auto_unroll_max_step` of a pragma (Ansor's CPU choices go up to 512).
pub const MAX_UNROLL_STEP: u32 = 4_096;
/// The most bytes of all the tensors of a workload (f32): inputs, intermediates, outputs.
pub const MAX_WORKLOAD_BYTES: u64 = 4 << 30;
/// The most floating-point operations of one call of a workload measured in process,
/// where no timeout can stop a kernel (a worker's run timeout bounds the others).
pub const MAX_IN_PROCESS_FLOP: u64 = 100_000_000_000;

/// Checks a step log before it is replayed: its length, every split's number of parts and
/// lengths, every list's length, every pragma's unroll step.
pub fn check_steps(steps: &[tessel_ir::Step]) -> Result<(), String> {
    use tessel_ir::Step;
    if steps.len() > MAX_STEPS {
        return Err(format!(
            "the step log has {} steps (at most {MAX_STEPS})",
            steps.len()
        ));
    }
    for (k, step) in steps.iter().enumerate() {
        let at = |what: String| format!("step {k} ({}): {what}", step.name());
        match step {
            Step::Split { lengths, .. } => {
                if lengths.len() > MAX_SPLIT_PARTS {
                    return Err(at(format!(
                        "{} split lengths (at most {MAX_SPLIT_PARTS})",
                        lengths.len()
                    )));
                }
                if let Some(l) = lengths.iter().flatten().find(|&&l| l < 1) {
                    return Err(at(format!("split length {l} (at least 1)")));
                }
            }
            Step::FollowSplit { n_split, .. } if *n_split > MAX_SPLIT_PARTS => {
                return Err(at(format!("n_split {n_split} (at most {MAX_SPLIT_PARTS})")));
            }
            Step::FollowFusedSplit { src_steps, .. } if src_steps.len() > MAX_STEPS => {
                return Err(at(format!("{} source steps", src_steps.len())));
            }
            Step::Fuse { iters, .. } if iters.len() > MAX_LOOPS_PER_STAGE => {
                return Err(at(format!(
                    "fuses {} loops (at most {MAX_LOOPS_PER_STAGE})",
                    iters.len()
                )));
            }
            Step::Reorder { order, .. } if order.len() > MAX_LOOPS_PER_STAGE => {
                return Err(at(format!(
                    "reorders {} loops (at most {MAX_LOOPS_PER_STAGE})",
                    order.len()
                )));
            }
            Step::CacheRead { readers, .. } if readers.len() > MAX_STAGES => {
                return Err(at(format!(
                    "{} readers (at most {MAX_STAGES})",
                    readers.len()
                )));
            }
            Step::Pragma {
                auto_unroll_max_step,
                ..
            } if *auto_unroll_max_step > MAX_UNROLL_STEP => {
                return Err(at(format!(
                    "auto_unroll_max_step {auto_unroll_max_step} (at most {MAX_UNROLL_STEP})"
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks a replayed state before it is lowered: its number of stages and of loops per
/// stage (a deep loop nest would overflow the lowering's and the compiler's stacks).
pub fn check_state(state: &tessel_ir::State) -> Result<(), String> {
    let stages = state.stages();
    if stages.len() > MAX_STAGES {
        return Err(format!(
            "the state has {} stages (at most {MAX_STAGES})",
            stages.len()
        ));
    }
    for (k, s) in stages.iter().enumerate() {
        if s.leaves.len() > MAX_LOOPS_PER_STAGE || s.iters.len() > 16 * MAX_LOOPS_PER_STAGE {
            return Err(format!(
                "stage {k} has {} loops, {} iterators in its history (at most \
                 {MAX_LOOPS_PER_STAGE} and {})",
                s.leaves.len(),
                s.iters.len(),
                16 * MAX_LOOPS_PER_STAGE
            ));
        }
        for id in &s.leaves {
            let Some(it) = s.iters.get(id.0 as usize) else {
                continue;
            };
            let unrolled = it.annotation == tessel_ir::state::Annotation::Unroll;
            if unrolled && it.extent.is_some_and(|e| e > i64::from(MAX_UNROLL_STEP)) {
                return Err(format!(
                    "stage {k}: loop {} of extent {} is unrolled (at most {MAX_UNROLL_STEP} \
                     iterations)",
                    it.name,
                    it.extent.unwrap_or_default()
                ));
            }
        }
    }
    Ok(())
}

/// The most expression nodes of a loop nest given with a candidate.
pub const MAX_NEST_NODES: usize = 1 << 22;
/// The most statements (and, separately, loops and buffers) of a loop nest given with a
/// candidate.
pub const MAX_NEST_STMTS: usize = 1 << 20;
/// The deepest expression of a loop nest given with a candidate (lowering's indices are a
/// few dozen levels deep; the code generator recurses over them).
pub const MAX_EXPR_DEPTH: usize = 1_000;
/// The deepest statement nesting (loops, guards, allocations) of a loop nest given with a
/// candidate.
pub const MAX_NEST_DEPTH: usize = 1_024;

/// Checks a loop nest that came with a candidate (instead of being lowered here) before it
/// is compiled: its sizes, the depth of its expressions and statements (the code
/// generator recurses over both), its unrolled loops' extents, its buffers' bytes, and that
/// its parameters are the workload's inputs and outputs (count and sizes). Ids, the
/// statement tree and types are checked by the code generator.
pub fn check_nest(
    nest: &tessel_ir::loop_nest::LoopNest,
    dag: &tessel_ir::ComputeDag,
) -> Result<(), String> {
    use tessel_ir::loop_nest::{BufferScope, LoopKind, Node, Stmt};
    let nodes = nest.nodes();
    if nodes.len() > MAX_NEST_NODES {
        return Err(format!(
            "the loop nest has {} expression nodes (at most {MAX_NEST_NODES})",
            nodes.len()
        ));
    }
    for (what, n) in [
        ("statements", nest.stmts.len()),
        ("loops", nest.loops.len()),
        ("buffers", nest.buffers.len()),
    ] {
        if n > MAX_NEST_STMTS {
            return Err(format!(
                "the loop nest has {n} {what} (at most {MAX_NEST_STMTS})"
            ));
        }
    }
    // Children are older than their parents, so one pass gives every depth.
    let mut depth = vec![0usize; nodes.len()];
    for (k, node) in nodes.iter().enumerate() {
        let kids: &[tessel_ir::loop_nest::ExprId] = match node {
            Node::Load(_, i) | Node::Unary(_, i) => std::slice::from_ref(i),
            Node::Binary(_, a, b) => &[*a, *b],
            Node::Select(c, a, b) => &[*c, *a, *b],
            Node::Int(_) | Node::Float(_) | Node::Var(_) => &[],
        };
        let mut d = 1;
        for c in kids {
            match depth.get(c.index()) {
                Some(&cd) if c.index() < k => d = d.max(cd + 1),
                _ => return Err(format!("expression {k} has a child that is not older")),
            }
        }
        if d > MAX_EXPR_DEPTH {
            return Err(format!(
                "expression {k} is {d} levels deep (at most {MAX_EXPR_DEPTH})"
            ));
        }
        depth[k] = d;
    }
    // Statement depth, without recursion; every statement at most once.
    let mut seen = vec![false; nest.stmts.len()];
    let mut stack: Vec<(tessel_ir::loop_nest::StmtId, usize)> =
        nest.body.iter().map(|&s| (s, 1)).collect();
    while let Some((s, d)) = stack.pop() {
        if d > MAX_NEST_DEPTH {
            return Err(format!(
                "statements are nested {d} levels deep (at most {MAX_NEST_DEPTH})"
            ));
        }
        match seen.get_mut(s.index()) {
            Some(flag) if !*flag => *flag = true,
            Some(_) => return Err(format!("statement {} is reachable twice", s.0)),
            None => return Err(format!("unknown statement {}", s.0)),
        }
        match nest.stmt(s) {
            Stmt::For { body, .. } | Stmt::If { body, .. } | Stmt::Alloc { body, .. } => {
                stack.extend(body.iter().map(|&b| (b, d + 1)));
            }
            Stmt::Store { .. } => {}
        }
    }
    for lp in &nest.loops {
        if lp.extent < 1 {
            return Err(format!(
                "loop {} has extent {} (at least 1)",
                lp.name, lp.extent
            ));
        }
        if lp.kind == LoopKind::Unrolled && lp.extent > i64::from(MAX_UNROLL_STEP) {
            return Err(format!(
                "loop {} of extent {} is unrolled (at most {MAX_UNROLL_STEP} iterations)",
                lp.name, lp.extent
            ));
        }
    }
    let mut bytes: u64 = 0;
    for b in &nest.buffers {
        let n = b.shape.iter().try_fold(1u64, |n, &d| {
            u64::try_from(d).ok().and_then(|d| n.checked_mul(d))
        });
        bytes = match n.and_then(|n| bytes.checked_add(n.checked_mul(4)?)) {
            Some(t) => t,
            None => return Err(format!("buffer {} has a bad shape {:?}", b.name, b.shape)),
        };
    }
    // Temporaries come on top of the workload's own tensors: allow as much again.
    if bytes > 2 * MAX_WORKLOAD_BYTES {
        return Err(format!(
            "the loop nest's buffers take {:.1} GiB (at most {} GiB)",
            bytes as f64 / (1u64 << 30) as f64,
            2 * (MAX_WORKLOAD_BYTES >> 30)
        ));
    }
    let n_inputs = dag.inputs().len();
    let tensors: Vec<tessel_ir::OpId> = dag.inputs().into_iter().chain(dag.outputs()).collect();
    if nest.params.len() != tensors.len() {
        return Err(format!(
            "the loop nest has {} parameters; the workload has {} inputs and outputs",
            nest.params.len(),
            tensors.len()
        ));
    }
    for (k, (&p, &t)) in nest.params.iter().zip(&tensors).enumerate() {
        let Some(b) = nest.buffers.get(p.index()) else {
            return Err(format!("parameter {k} is an unknown buffer"));
        };
        let want = if k < n_inputs {
            BufferScope::Input
        } else {
            BufferScope::Output
        };
        let op = dag.op(t);
        if b.scope != want || b.len() != op.num_elements() {
            return Err(format!(
                "parameter {k} ({}, {:?}, {} elements) does not fit the workload's tensor {} \
                 ({} elements)",
                b.name,
                b.scope,
                b.len(),
                op.name,
                op.num_elements()
            ));
        }
    }
    Ok(())
}

/// The bytes of all the tensors of `dag` (f32), or `None` if the count overflows.
pub fn workload_bytes(dag: &tessel_ir::ComputeDag) -> Option<u64> {
    dag.ops().iter().try_fold(0u64, |acc, op| {
        let n = op.shape.iter().try_fold(1u64, |n, &d| {
            u64::try_from(d).ok().and_then(|d| n.checked_mul(d))
        })?;
        acc.checked_add(n.checked_mul(4)?)
    })
}

/// Checks a workload before any of its buffers is allocated: all its tensors together at
/// most [`MAX_WORKLOAD_BYTES`].
pub fn check_workload(dag: &tessel_ir::ComputeDag) -> Result<(), String> {
    match workload_bytes(dag) {
        Some(b) if b <= MAX_WORKLOAD_BYTES => Ok(()),
        Some(b) => Err(format!(
            "the workload's tensors take {:.1} GiB (at most {} GiB)",
            b as f64 / (1u64 << 30) as f64,
            MAX_WORKLOAD_BYTES >> 30
        )),
        None => Err("the workload's tensor sizes overflow".to_string()),
    }
}

/// Checks measurement options on every path (engine creation and option changes):
/// timing settings within their limits, threads 1..=[`MAX_THREADS`].
pub fn check_options(options: &crate::options::MeasureOptions) -> Result<(), String> {
    check_range("codegen.threads", options.codegen.threads, 1, MAX_THREADS)?;
    check_timing_settings(&options.timing)
}
