//! Window reductions (pools): a sketch that vectorizes the channel loop and keeps the
//! accumulators in registers.
//!
//! A pool (`maxpool`, `avgpool`, a global average) reduces a small window per output and
//! needs no multi-level tiling, so Ansor's rules leave its stage as it is: the reduction
//! loops are innermost, InitVectorization stops at them, and the program runs scalar. Its
//! padding stage (a `Select`, so not strictly inlineable) stays at the root or inside the
//! pool's loops and writes a padded copy of the whole input that the pool reads back. On
//! ResNet-50's max-pool (`maxpool:n=1,h=112,w=112,c=64,kernel=3,stride=2,pad=1`) the best of
//! 185 records of such programs, a hand-written schedule with its padding at the root, ran
//! 0.23 ms with its input in the shared cache (4× onnxruntime's 0.089 ms in the network); the
//! same pool reading its input through the padding's guard, vectorized over the channels and
//! accumulating in registers, 0.16 ms.
//!
//! [`WindowReduction`] offers that structure as a sketch of its own (the plain sketch stays).

use crate::rules::{step, Condition, Derived, SketchContext, SketchRule};
use crate::{util, SketchError};
use tessel_ir::state::{Annotation, IterKind, State, Step};
use tessel_ir::OpId;

/// Narrowest channel extent the rule vectorizes: one `f32x4`.
const MIN_LANES: i64 = 4;

/// The producers of `stage` that the window sketch inlines: computed, not outputs, without
/// reduction, injective (a padding, an element-wise map), without an expensive call, read
/// by `stage` only. Strictly inlineable ones are already inlined by AlwaysInline; this takes
/// the paddings, whose `Select` keeps them out of it.
fn inlined_producers(ctx: &SketchContext, state: &State, stage: usize) -> Vec<usize> {
    let an = ctx.analysis(state);
    an.producers(OpId(stage as u32), |o| util::is_inlined(state, o.index()))
        .into_iter()
        .map(|o| o.index())
        .filter(|&p| {
            let op = OpId(p as u32);
            state.stage(p).is_compute
                && !util::is_inlined(state, p)
                && !an.is_output(op)
                && !util::has_reduce_iter(state, p)
                && an.is_injective(op)
                && !an.has_expensive_op(op)
                && util::consumers(&an, state, p) == [stage]
        })
        .collect()
}

/// WindowReduction (Tessel's): a stage that reduces (a pool window), needs neither
/// multi-level tiling nor a cache-write stage of its own, is untouched (not tiled, not
/// rfactored), and whose last spatial axis (the channels of an NHWC pool) is read
/// contiguously by every operand and has a multiple of 4 iterations, gets a variant
/// (apply; the plain sketch continues too):
///
/// - its padding producers are inlined (the pool reads the input through the guard instead
///   of a padded copy written and read back);
/// - the accumulator is a register tile: with a single element-wise matched consumer (an
///   average's division) the stage is computed inside that consumer's channel tile, else a
///   `.local` cache-write stage is added and computed inside the output's channel tile;
/// - the output's channel loop is split (the inner length a hole), the stage follows that
///   split and moves its inner channel loop below the reduction loops, and both inner
///   channel loops are vectorized.
///
/// The random annotation then parallelizes the output's outer loops (InitParallel) and
/// draws the reduction's unrolling (InitUnroll).
#[derive(Clone, Debug, Default)]
pub struct WindowReduction;

impl SketchRule for WindowReduction {
    fn name(&self) -> &str {
        "WindowReduction"
    }

    fn condition(&self, ctx: &SketchContext, state: &State, stage: usize) -> Condition {
        let st = state.stage(stage);
        if !st.is_compute
            || util::is_inlined(state, stage)
            || !util::has_reduce_iter(state, stage)
            || util::is_tiled(state, stage)
            || ctx.needs_multi_level_tiling(state, stage)
            || util::has_cache_write_stage(state, stage)
            || st.compute_at != tessel_ir::state::ComputeAt::Root
        {
            return Condition::Skip;
        }
        let Some(c) = state.dag().op(OpId(stage as u32)).compute() else {
            return Condition::Skip;
        };
        let lanes_ok = c
            .axes
            .last()
            .is_some_and(|a| a.extent >= MIN_LANES && a.extent % MIN_LANES == 0);
        if lanes_ok && c.axes.len() >= 2 && util::columns_are_contiguous(c) {
            Condition::Apply
        } else {
            Condition::Skip
        }
    }

    fn apply(
        &self,
        ctx: &SketchContext,
        state: &State,
        stage: usize,
    ) -> Result<Vec<Derived>, SketchError> {
        let mut s = state.clone();
        for p in inlined_producers(ctx, state, stage) {
            step(self.name(), &mut s, Step::ComputeInline { stage: p })?;
        }
        // The stage that holds the result in memory and owns the channel tile.
        let outer = match ctx.single_elementwise_matched_consumer(&s, stage) {
            Some(consumer) if util::num_op_axes(&s, consumer) == s.stage(consumer).leaves.len() => {
                consumer
            }
            Some(_) => return Ok(Vec::new()),
            None => {
                step(
                    self.name(),
                    &mut s,
                    Step::CacheWrite {
                        stage,
                        scope: "local".into(),
                    },
                )?;
                stage + 1
            }
        };
        let n_outer = s.stage(outer).leaves.len();
        let n_space = {
            let st = s.stage(stage);
            st.leaves
                .iter()
                .filter(|&&l| st.iter(l).kind == IterKind::Spatial)
                .count()
        };
        let n_all = s.stage(stage).leaves.len();
        if n_outer == 0 || n_space == 0 || n_outer != n_space {
            return Ok(Vec::new());
        }
        // Output: [.., c] -> [.., c.o, c.i].
        step(
            self.name(),
            &mut s,
            Step::Split {
                stage: outer,
                iter: n_outer - 1,
                extent: None,
                lengths: vec![None],
            },
        )?;
        let split = s.steps().len() - 1;
        // The reduction: [.., c, r..] -> [.., c.o, c.i, r..] -> [.., c.o, r.., c.i].
        step(
            self.name(),
            &mut s,
            Step::FollowSplit {
                stage,
                iter: n_space - 1,
                src_step: split,
                n_split: 1,
            },
        )?;
        let mut order: Vec<usize> = (0..n_space).collect();
        order.extend(n_space + 1..n_all + 1);
        order.push(n_space);
        step(self.name(), &mut s, Step::Reorder { stage, order })?;
        step(
            self.name(),
            &mut s,
            Step::ComputeAt {
                stage,
                target_stage: outer,
                target_iter: n_outer - 1,
            },
        )?;
        step(
            self.name(),
            &mut s,
            Step::Annotate {
                stage: outer,
                iter: n_outer,
                annotation: Annotation::Vectorize,
            },
        )?;
        step(
            self.name(),
            &mut s,
            Step::Annotate {
                stage,
                iter: n_all,
                annotation: Annotation::Vectorize,
            },
        )?;
        Ok(vec![(s, stage.checked_sub(1))])
    }
}
