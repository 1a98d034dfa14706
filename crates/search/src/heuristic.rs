//! A simple hand-written schedule of any workload, measured in the first round so that
//! tuning never ends worse than it: inline strictly inlineable stages; in every other
//! stage, split the innermost output axis by 8 (or 4), move it innermost and vectorize
//! it, and run the outer output loops in parallel.

use crate::lowering::Lowerings;
use std::sync::Arc;
use tessel_ir::analysis::AccessAnalysis;
use tessel_ir::state::{Annotation, ComputeAt, IterKind};
use tessel_ir::{ComputeDag, OpId, State, Step};
use tessel_sketch::HardwareParams;

/// The heuristic schedule of `dag`, or `None` if it does not lower.
pub fn heuristic_state(dag: &Arc<ComputeDag>, hw: &HardwareParams) -> Option<State> {
    heuristic_state_with(dag, hw, None)
}

/// [`heuristic_state`], its lowering (the check that it lowers) kept in `lowerings` when
/// given, so that neither the measurer nor the scorer lowers it again.
pub fn heuristic_state_with(
    dag: &Arc<ComputeDag>,
    hw: &HardwareParams,
    lowerings: Option<&Lowerings>,
) -> Option<State> {
    let s = heuristic_schedule(dag, hw);
    let lowers = match lowerings {
        Some(l) => l.get_or_lower(&s).is_some(),
        None => tessel_ir::lower::lower(&s).is_ok(),
    };
    lowers.then_some(s)
}

/// The heuristic schedule of `dag`, unchecked.
fn heuristic_schedule(dag: &Arc<ComputeDag>, hw: &HardwareParams) -> State {
    let mut s = State::new(dag.clone());
    let analysis = AccessAnalysis::new(dag);
    for k in 0..dag.ops().len() {
        let op = OpId(k as u32);
        if dag.op(op).compute().is_some()
            && analysis.is_strictly_inlineable(op)
            && !analysis.is_output(op)
        {
            // Refused steps are simply not taken.
            let _ = s.apply(Step::ComputeInline { stage: k });
        }
    }
    for k in 0..s.stages().len() {
        let st = s.stage(k);
        if !st.is_compute || st.compute_at != ComputeAt::Root {
            continue;
        }
        let kinds: Vec<IterKind> = (0..st.leaves.len())
            .filter_map(|p| st.leaf(p).map(|i| i.kind))
            .collect();
        let Some(last) = kinds.iter().rposition(|&k| k == IterKind::Spatial) else {
            continue;
        };
        let extent = st.leaf(last).and_then(|i| i.extent).unwrap_or(1);
        if let Some(v) = [8, 4].into_iter().find(|v| extent % v == 0 && extent > *v) {
            let n = kinds.len() + 1;
            let mut order: Vec<usize> = (0..=last).collect();
            order.extend(last + 2..n);
            order.push(last + 1);
            let steps = [
                Step::Split {
                    stage: k,
                    iter: last,
                    extent: None,
                    lengths: vec![Some(v)],
                },
                Step::Reorder { stage: k, order },
                Step::Annotate {
                    stage: k,
                    iter: n - 1,
                    annotation: Annotation::Vectorize,
                },
            ];
            for step in steps {
                if s.apply(step).is_err() {
                    break;
                }
            }
        }
        let st = s.stage(k);
        let (mut count, mut product) = (0usize, 1i64);
        while count + 1 < st.leaves.len() && product < hw.max_parallel_degree() {
            match st.leaf(count) {
                Some(it) if it.kind == IterKind::Spatial && it.annotation == Annotation::None => {
                    product *= it.extent.unwrap_or(1);
                    count += 1;
                }
                _ => break,
            }
        }
        if count >= 2 {
            let _ = s.apply(Step::Fuse {
                stage: k,
                iters: (0..count).collect(),
            });
        }
        if count >= 1 {
            let _ = s.apply(Step::Annotate {
                stage: k,
                iter: 0,
                annotation: Annotation::Parallel,
            });
        }
    }
    s
}
