//! Mutation rules (ANSOR.md §5.1): each edits one step of a complete state's log and
//! replays it; a replay error means the mutation failed (`None`).
//!
//! Choosing a rule is not done here: [`MutationRegistry`] only lists the rules with Ansor's
//! default CPU weights, so a policy (fixed probabilities, a learned model...) can pick one
//! by name or index and call [`MutationRule::apply`].

use crate::factor::divisors;
use crate::hardware::HardwareParams;
use crate::init::{compute_location_candidates, kernel_shapes, tensorized_splits};
use crate::util;
use rand::RngExt;
use tessel_ir::analysis::AccessAnalysis;
use tessel_ir::rng::TesselRng;
use tessel_ir::state::{Annotation, IterKind, State, Step};
use tessel_ir::OpId;

/// The signature of a mutation: a legal state, or `None` when the rule does not apply or
/// its result would be illegal. The result keeps the input's `sketch_id`.
pub type MutateFn = fn(&State, &HardwareParams, &mut TesselRng) -> Option<State>;

/// One named mutation rule with its default weight.
#[derive(Clone, Copy, Debug)]
pub struct MutationRule {
    /// Name (Ansor's class name).
    pub name: &'static str,
    /// Ansor's default CPU selection weight.
    pub weight: f64,
    /// The mutation.
    pub apply: MutateFn,
}

impl MutationRule {
    /// Applies the rule to `state`.
    pub fn apply(&self, state: &State, hw: &HardwareParams, rng: &mut TesselRng) -> Option<State> {
        (self.apply)(state, hw, rng)
    }
}

/// The mutation rules by name, with Ansor's default CPU weights as data.
///
/// ```
/// use tessel_sketch::MutationRegistry;
/// let reg = MutationRegistry::cpu();
/// assert_eq!(reg.names(), ["MutateTileSize", "MutateAutoUnroll", "MutateComputeLocation", "MutateParallel", "MutateTensorizeShape"]);
/// assert_eq!(reg.get("MutateAutoUnroll").unwrap().weight, 0.04);
/// ```
#[derive(Clone, Debug)]
pub struct MutationRegistry {
    /// The rules, in Ansor's order.
    pub rules: Vec<MutationRule>,
}

impl MutationRegistry {
    /// Ansor's CPU rules: MutateTileSize 0.90, MutateAutoUnroll 0.04,
    /// MutateComputeLocation 0.05, MutateParallel 0.01; then Tessel's MutateTensorizeShape
    /// 0.05 (which fails on states that are not tensorized).
    pub fn cpu() -> MutationRegistry {
        MutationRegistry {
            rules: vec![
                MutationRule {
                    name: "MutateTileSize",
                    weight: 0.90,
                    apply: mutate_tile_size,
                },
                MutationRule {
                    name: "MutateAutoUnroll",
                    weight: 0.04,
                    apply: mutate_auto_unroll,
                },
                MutationRule {
                    name: "MutateComputeLocation",
                    weight: 0.05,
                    apply: mutate_compute_location,
                },
                MutationRule {
                    name: "MutateParallel",
                    weight: 0.01,
                    apply: mutate_parallel,
                },
                MutationRule {
                    name: "MutateTensorizeShape",
                    weight: 0.05,
                    apply: mutate_tensorize_shape,
                },
            ],
        }
    }

    /// The rule called `name`.
    pub fn get(&self, name: &str) -> Option<&MutationRule> {
        self.rules.iter().find(|r| r.name == name)
    }

    /// Rule names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.rules.iter().map(|r| r.name).collect()
    }

    /// The weights, in rule order.
    pub fn weights(&self) -> Vec<f64> {
        self.rules.iter().map(|r| r.weight).collect()
    }
}

impl Default for MutationRegistry {
    fn default() -> Self {
        MutationRegistry::cpu()
    }
}

fn pick<T: Copy>(rng: &mut TesselRng, items: &[T]) -> Option<T> {
    if items.is_empty() {
        None
    } else {
        Some(items[rng.random_range(0..items.len())])
    }
}

/// MutateTileSize: picks a split step (known extent, innermost length at most
/// `max_innermost_split_factor`, extent > 1) and moves a random divisor of one tile length
/// to another position of its tile vector, keeping the innermost within the limit.
pub fn mutate_tile_size(state: &State, hw: &HardwareParams, rng: &mut TesselRng) -> Option<State> {
    let max_inner = hw.max_innermost_split_factor;
    let steps = state.steps();
    let candidates: Vec<usize> = steps
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match s {
            Step::Split {
                extent: Some(_),
                lengths,
                ..
            } if lengths.iter().all(|l| l.is_some())
                && lengths
                    .last()
                    .copied()
                    .flatten()
                    .is_some_and(|l| l <= max_inner) =>
            {
                Some(i)
            }
            _ => None,
        })
        .collect();
    if candidates.is_empty() {
        return None;
    }
    let mut retry = 0;
    let (step_id, extent) = loop {
        let id = pick(rng, &candidates)?;
        let e = match &steps[id] {
            Step::Split { extent, .. } => extent.unwrap_or(0),
            _ => 0,
        };
        retry += 1;
        if e > 1 || retry >= candidates.len() * 4 {
            break (id, e);
        }
    };
    if extent <= 1 {
        return None;
    }
    let Step::Split {
        stage,
        iter,
        lengths,
        ..
    } = &steps[step_id]
    else {
        return None;
    };
    let inner: Vec<i64> = lengths.iter().map(|l| l.unwrap_or(1)).collect();
    let mut tiles = Vec::with_capacity(inner.len() + 1);
    tiles.push(extent / inner.iter().product::<i64>().max(1));
    tiles.extend(&inner);
    // In a tensorized state, the innermost tiles of the tensorized stage are the kernel's
    // shape (MR, NR, the reduction): they stay, so the state keeps matching its kernel.
    let fixed_inner = tensorized_splits(state)
        .is_some_and(|(_, splits)| splits.iter().any(|&(i, _)| i == step_id));
    let m = tiles.len() - usize::from(fixed_inner);
    if m < 2 {
        return None;
    }
    let mut perm: Vec<usize> = (0..m).collect();
    for i in (1..m).rev() {
        perm.swap(i, rng.random_range(0..=i));
    }
    for i in 0..m {
        let src = perm[i];
        let length = tiles[src];
        if length <= 1 {
            continue;
        }
        let dst = perm[(i + 1) % m];
        let factors = divisors(length);
        let factor = if dst == tiles.len() - 1 {
            let allowed = factors[1..]
                .iter()
                .take_while(|&&f| f * tiles[dst] <= max_inner)
                .count();
            if allowed == 0 {
                continue;
            }
            factors[1 + rng.random_range(0..allowed)]
        } else {
            factors[1 + rng.random_range(0..factors.len() - 1)]
        };
        let mut new_tiles = tiles.clone();
        new_tiles[src] /= factor;
        new_tiles[dst] *= factor;
        let mut new_steps = steps.to_vec();
        new_steps[step_id] = Step::Split {
            stage: *stage,
            iter: *iter,
            extent: Some(extent),
            lengths: new_tiles[1..].iter().map(|&l| Some(l)).collect(),
        };
        return util::replay_like(state, &new_steps);
    }
    None
}

/// MutateTensorizeShape (Tessel's): in a tensorized state, changes the micro-kernel tile
/// `MR`×`NR` to another shape of the target's family ([`HardwareParams::isa`]) that divides the row and column axes (changing one
/// of the two, or both when no single change fits), moving factors between the tile levels
/// of each changed axis: its innermost tile becomes the new size and the other levels keep
/// as much of their lengths as still divides (the outermost takes the rest). Fails on states
/// that are not tensorized or have no other shape.
pub fn mutate_tensorize_shape(
    state: &State,
    hw: &HardwareParams,
    rng: &mut TesselRng,
) -> Option<State> {
    let (stage, splits) = tensorized_splits(state)?;
    let n_space = state.dag().op(OpId(stage as u32)).compute()?.axes.len();
    let steps = state.steps();
    let axis_tiles = |k: usize| -> Option<(usize, i64, Vec<i64>)> {
        let (i, extent) = splits[k];
        match &steps[i] {
            Step::Split { lengths, .. } => {
                Some((i, extent, lengths.iter().map(|l| l.unwrap_or(1)).collect()))
            }
            _ => None,
        }
    };
    let (row, col) = (axis_tiles(n_space - 2)?, axis_tiles(n_space - 1)?);
    let (mr, nr) = (*row.2.last()?, *col.2.last()?);
    let mut shapes: Vec<(i64, i64)> = kernel_shapes(hw.isa, row.1, col.1)
        .into_iter()
        .filter(|&s| s != (mr, nr))
        .collect();
    // Prefer changing one dimension (a small move in the space), as MutateTileSize does.
    let one: Vec<(i64, i64)> = shapes
        .iter()
        .copied()
        .filter(|&(m, n)| m == mr || n == nr)
        .collect();
    if !one.is_empty() {
        shapes = one;
    }
    let (new_mr, new_nr) = pick(rng, &shapes)?;
    let mut new_steps = steps.to_vec();
    for ((i, extent, lengths), size) in [(row, new_mr), (col, new_nr)] {
        if lengths.last() == Some(&size) {
            continue;
        }
        let mut rest = extent / size;
        let mut new_lengths = vec![0; lengths.len()];
        *new_lengths.last_mut()? = size;
        for (slot, &old) in new_lengths.iter_mut().zip(&lengths).rev().skip(1) {
            let g = gcd(old, rest);
            *slot = g;
            rest /= g;
        }
        let Step::Split { stage, iter, .. } = steps[i] else {
            return None;
        };
        new_steps[i] = Step::Split {
            stage,
            iter,
            extent: Some(extent),
            lengths: new_lengths.into_iter().map(Some).collect(),
        };
    }
    util::replay_like(state, &new_steps)
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a.abs().max(1)
    } else {
        gcd(b, a % b)
    }
}

/// MutateAutoUnroll: picks an `auto_unroll_max_step` pragma step and sets it to a value
/// drawn uniformly from `auto_unroll_configs` (which may equal the old value, as in Ansor).
pub fn mutate_auto_unroll(
    state: &State,
    hw: &HardwareParams,
    rng: &mut TesselRng,
) -> Option<State> {
    let steps = state.steps();
    let pragmas: Vec<usize> = (0..steps.len())
        .filter(|&i| matches!(steps[i], Step::Pragma { .. }))
        .collect();
    let id = pick(rng, &pragmas)?;
    let value = pick(rng, &hw.auto_unroll_configs)?;
    let Step::Pragma { stage, iter, .. } = steps[id] else {
        return None;
    };
    let mut new_steps = steps.to_vec();
    new_steps[id] = Step::Pragma {
        stage,
        iter,
        auto_unroll_max_step: value,
    };
    util::replay_like(state, &new_steps)
}

/// MutateComputeLocation: picks a compute_at step whose stage is neither tiled nor needs
/// multi-level tiling, draws a new location among the stage's compute-location candidates
/// and replays the log with it. Fails when disabled, when nothing qualifies, or when the
/// replay fails.
pub fn mutate_compute_location(
    state: &State,
    hw: &HardwareParams,
    rng: &mut TesselRng,
) -> Option<State> {
    if hw.disable_change_compute_location {
        return None;
    }
    let an = AccessAnalysis::new(state.dag());
    let steps = state.steps();
    let candidates: Vec<(usize, usize)> = steps
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let Step::ComputeAt { stage, .. } = s else {
                return None;
            };
            let now = util::stage_in_state(steps, i, *stage);
            let ok = now < state.stages().len()
                && !util::is_tiled(state, now)
                && !an.needs_multi_level_tiling(OpId(now as u32));
            ok.then_some((i, now - stage))
        })
        .collect();
    let (step_id, inc) = pick(rng, &candidates)?;
    let Step::ComputeAt { stage, .. } = steps[step_id] else {
        return None;
    };
    let locations = compute_location_candidates(&an, state, stage + inc);
    let (target, pos) = pick(rng, &locations)?;
    let mut new_steps = steps.to_vec();
    new_steps[step_id] = Step::ComputeAt {
        stage,
        target_stage: target.checked_sub(inc)?,
        target_iter: pos,
    };
    let s = util::replay_like(state, &new_steps)?;
    // Moving a stage can make bound inference fail; Ansor rejects such mutants too.
    tessel_ir::lower::lower(&s).ok()?;
    Some(s)
}

/// MutateParallel: picks a parallel annotation of loop 0 that directly follows a fuse
/// starting at loop 0, and re-fuses a different number of leading fusible loops (spatial,
/// un-annotated, without attached stages); later annotate/pragma steps of that stage get
/// their loop positions shifted, and any other later step on that stage makes it fail.
pub fn mutate_parallel(state: &State, _: &HardwareParams, rng: &mut TesselRng) -> Option<State> {
    let steps = state.steps();
    let parallel: Vec<usize> = (1..steps.len())
        .filter(|&s| {
            matches!(
                steps[s],
                Step::Annotate {
                    iter: 0,
                    annotation: Annotation::Parallel,
                    ..
                }
            ) && matches!(&steps[s - 1], Step::Fuse { iters, .. } if iters.first() == Some(&0))
        })
        .collect();
    let step_id = pick(rng, &parallel)?;
    let Step::Fuse { stage, iters: old } = &steps[step_id - 1] else {
        return None;
    };
    let stage = *stage;
    let mut s = util::replay_like(state, &steps[..step_id - 1])?;
    let st = s.stage(stage);
    let mut max_fusible = 0;
    while max_fusible < st.leaves.len() {
        let it = st.leaf(max_fusible)?;
        if it.kind == IterKind::Reduce
            || it.annotation != Annotation::None
            || util::attached_at_pos(&s, stage, max_fusible)
        {
            break;
        }
        max_fusible += 1;
    }
    if max_fusible == 0 {
        return None;
    }
    let count = 1 + rng.random_range(0..max_fusible);
    let old_last = *old.last()? as isize;
    let offset = old_last - (count as isize - 1);
    if offset == 0 {
        return None;
    }
    s.apply(Step::Fuse {
        stage,
        iters: (0..count).collect(),
    })
    .ok()?;
    s.apply(steps[step_id].clone()).ok()?;
    for step in &steps[step_id + 1..] {
        if step.changes_stages() {
            return None;
        }
        let shifted = |iter: usize| -> Option<usize> {
            if iter == 0 {
                Some(0)
            } else {
                usize::try_from(iter as isize + offset).ok()
            }
        };
        let step = if step.stage() == stage {
            match step {
                Step::Annotate {
                    stage,
                    iter,
                    annotation,
                } => Step::Annotate {
                    stage: *stage,
                    iter: shifted(*iter)?,
                    annotation: *annotation,
                },
                Step::Pragma {
                    stage,
                    iter,
                    auto_unroll_max_step,
                } => Step::Pragma {
                    stage: *stage,
                    iter: shifted(*iter)?,
                    auto_unroll_max_step: *auto_unroll_max_step,
                },
                _ => return None,
            }
        } else {
            step.clone()
        };
        s.apply(step).ok()?;
    }
    Some(s)
}
