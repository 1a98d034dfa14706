//! Schedule states: a DAG plus the loop structure that a log of [`Step`]s gives it.
//!
//! A [`State`] is *defined by* its step log: [`State::replay`] applies the steps to the
//! workload's DAG and reproduces the state exactly, which is how records, workers and
//! mutations rebuild programs. Each stage (one per op of the current DAG, placeholders
//! included, Ansor style) has its loop iterators, a compute location and pragmas.
//! Iterators are kept in a small arena per stage ([`IterId`]); the loop order is the list of
//! *leaf* iterators and the split/fuse history is a list of [`Relation`]s, from which
//! lowering recovers every original axis.
//!
//! An illegal step returns a [`StepError`] naming the step and the reason, and leaves the
//! state unchanged; nothing panics.
//!
//! ```
//! use tessel_ir::dag::{DagBuilder, Reducer};
//! use tessel_ir::state::{State, Step};
//! let mut b = DagBuilder::new();
//! let a = b.placeholder("A", &[8, 8]);
//! let w = b.placeholder("B", &[8, 8]);
//! b.reduce("C", &[("i", 8), ("j", 8)], &[("k", 8)], Reducer::Sum, |ax| {
//!     a.at([ax[0].clone(), ax[2].clone()]) * w.at([ax[2].clone(), ax[1].clone()])
//! });
//! let dag = std::sync::Arc::new(b.build().unwrap());
//! let mut s = State::new(dag.clone());
//! s.apply(Step::Split { stage: 2, iter: 0, extent: None, lengths: vec![Some(4)] }).unwrap();
//! assert_eq!(s.stage(2).leaf_names(), vec!["i.0", "i.1", "j", "k"]);
//! let again = State::replay(dag, s.steps()).unwrap();
//! assert_eq!(again.to_string(), s.to_string());
//! ```

pub(crate) mod apply;
mod print;
mod step;

pub use step::{Annotation, Step};

use crate::dag::ComputeDag;
use crate::expr::OpId;
use std::sync::Arc;

/// An iterator of a stage, by index in that stage's iterator arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IterId(pub u32);

impl IterId {
    /// The index as `usize`.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Spatial (an output axis, or made from them) or reduction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IterKind {
    /// Made from spatial axes.
    Spatial,
    /// Made from reduction axes.
    Reduce,
}

/// One loop iterator of a stage.
#[derive(Clone, Debug, PartialEq)]
pub struct Iter {
    /// Name (`i`, `i.0`, `i.0@j.0@`, ...).
    pub name: String,
    /// Extent over the whole op (lowering re-infers it inside `compute_at`); `None` while a
    /// split length is a sketch hole.
    pub extent: Option<i64>,
    /// Spatial or reduction.
    pub kind: IterKind,
    /// Loop annotation.
    pub annotation: Annotation,
}

/// How iterators were made from others.
#[derive(Clone, Debug, PartialEq)]
pub enum Relation {
    /// `parent` was split into `children` (outer first) with the given inner lengths
    /// (`children.len() - 1` of them).
    Split {
        /// The iterator that was split.
        parent: IterId,
        /// The new iterators, outer first.
        children: Vec<IterId>,
        /// Inner lengths (outer extent implied).
        lengths: Vec<Option<i64>>,
    },
    /// `parents` (outer first) were fused into `child`.
    Fuse {
        /// The fused iterators, outer first.
        parents: Vec<IterId>,
        /// The new iterator.
        child: IterId,
    },
}

/// Where a stage is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ComputeAt {
    /// At the top level, into its own buffer.
    Root,
    /// Substituted into its consumers.
    Inline,
    /// Inside loop `iter` of stage `stage` (a consumer).
    At {
        /// Target stage index.
        stage: usize,
        /// Target iterator.
        iter: IterId,
    },
}

/// The schedule of one op.
#[derive(Clone, Debug, PartialEq)]
pub struct Stage {
    /// The op it computes (equal to the stage's index).
    pub op: OpId,
    /// The op's name.
    pub name: String,
    /// Every iterator ever made for this stage; the first ones are the op's axes (spatial,
    /// then reduction).
    pub iters: Vec<Iter>,
    /// The loop order, outer first.
    pub leaves: Vec<IterId>,
    /// Split/fuse history, in order.
    pub relations: Vec<Relation>,
    /// Where it is computed.
    pub compute_at: ComputeAt,
    /// `auto_unroll_max_step` pragma, if set.
    pub auto_unroll_max_step: Option<u32>,
    /// False for placeholders (inputs), which have no loops.
    pub is_compute: bool,
}

impl Stage {
    /// The iterator behind an id.
    pub fn iter(&self, id: IterId) -> &Iter {
        &self.iters[id.index()]
    }

    /// The iterator at loop position `pos`.
    pub fn leaf(&self, pos: usize) -> Option<&Iter> {
        self.leaves.get(pos).map(|&id| self.iter(id))
    }

    /// Names of the loops, outer first.
    pub fn leaf_names(&self) -> Vec<&str> {
        self.leaves
            .iter()
            .map(|&id| self.iter(id).name.as_str())
            .collect()
    }

    /// Position of an iterator in the loop order.
    pub fn position(&self, id: IterId) -> Option<usize> {
        self.leaves.iter().position(|&l| l == id)
    }

    /// Number of original axes (spatial + reduction): ids `0..n` are the root iterators.
    pub fn num_root_iters(&self) -> usize {
        self.iters.len()
            - self
                .relations
                .iter()
                .map(|r| match r {
                    Relation::Split { children, .. } => children.len(),
                    Relation::Fuse { .. } => 1,
                })
                .sum::<usize>()
    }

    /// True when some split of this stage still has a hole.
    pub fn has_holes(&self) -> bool {
        self.relations.iter().any(|r| match r {
            Relation::Split { lengths, .. } => lengths.iter().any(|l| l.is_none()),
            Relation::Fuse { .. } => false,
        })
    }
}

/// Why a step could not be applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("step #{index} `{step}` is illegal: {reason}")]
pub struct StepError {
    /// Position of the step in the log (the length of the log when it was applied).
    pub index: usize,
    /// The step, as JSON.
    pub step: String,
    /// Why.
    pub reason: String,
}

/// A schedule: the workload's DAG, the current DAG (after cache and rfactor steps), the
/// stages and the step log that made them.
#[derive(Clone, Debug)]
pub struct State {
    original: Arc<ComputeDag>,
    dag: Arc<ComputeDag>,
    stages: Vec<Stage>,
    steps: Vec<Step>,
    sketch: Option<u32>,
}

impl PartialEq for State {
    fn eq(&self, other: &State) -> bool {
        self.steps == other.steps && *self.original == *other.original
    }
}

impl State {
    /// The initial state of a DAG: every op computed at the root with its natural loops.
    pub fn new(dag: Arc<ComputeDag>) -> State {
        let stages = (0..dag.ops().len())
            .map(|k| apply::fresh_stage(&dag, OpId(k as u32)))
            .collect();
        State {
            original: dag.clone(),
            dag,
            stages,
            steps: Vec::new(),
            sketch: None,
        }
    }

    /// The index of the sketch this state was sampled from, if any. It is carried along by
    /// [`apply`](Self::apply) and clones (so mutations keep it) but is not part of the step
    /// log: records store it beside the steps.
    pub fn sketch_id(&self) -> Option<u32> {
        self.sketch
    }

    /// Marks the sketch this state came from.
    pub fn set_sketch_id(&mut self, sketch: Option<u32>) {
        self.sketch = sketch;
    }

    /// Rebuilds a state by applying `steps` to the initial state of `dag`.
    pub fn replay(dag: Arc<ComputeDag>, steps: &[Step]) -> Result<State, StepError> {
        let mut s = State::new(dag);
        for step in steps {
            s.apply(step.clone())?;
        }
        Ok(s)
    }

    /// Applies one step and appends it to the log; on error the state is unchanged (every
    /// step checks its legality before it changes anything).
    pub fn apply(&mut self, step: Step) -> Result<(), StepError> {
        match apply::apply_step(self, &step) {
            Ok(recorded) => {
                self.steps.push(recorded);
                Ok(())
            }
            Err(reason) => Err(StepError {
                index: self.steps.len(),
                step: step.to_string(),
                reason,
            }),
        }
    }

    /// The workload's DAG (what replay starts from).
    pub fn original_dag(&self) -> &Arc<ComputeDag> {
        &self.original
    }

    /// The current DAG (one op per stage).
    pub fn dag(&self) -> &Arc<ComputeDag> {
        &self.dag
    }

    /// All stages; stage `i` computes op `i` of [`dag`](Self::dag).
    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// One stage.
    pub fn stage(&self, index: usize) -> &Stage {
        &self.stages[index]
    }

    /// Index of the stage named `name`.
    pub fn stage_index(&self, name: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.name == name)
    }

    /// The step log.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// True when no split length is a hole, i.e. the state can be lowered.
    pub fn is_concrete(&self) -> bool {
        !self
            .stages
            .iter()
            .any(|s| s.has_holes() || s.iters.iter().any(|it| it.extent.is_none()))
    }

    /// Stages attached to `iter` of stage `stage`, in stage order.
    pub fn attached_at(&self, stage: usize, iter: IterId) -> Vec<usize> {
        (0..self.stages.len())
            .filter(|&k| self.stages[k].compute_at == ComputeAt::At { stage, iter })
            .collect()
    }

    /// The step log as JSON (an array of step objects).
    pub fn steps_json(&self) -> String {
        serde_json::to_string(&self.steps).unwrap_or_default()
    }

    /// Parses a step log written by [`steps_json`](Self::steps_json) and replays it.
    pub fn from_steps_json(dag: Arc<ComputeDag>, json: &str) -> Result<State, StepError> {
        let steps: Vec<Step> = serde_json::from_str(json).map_err(|e| StepError {
            index: 0,
            step: "<json>".into(),
            reason: format!("the step log is not valid JSON: {e}"),
        })?;
        State::replay(dag, &steps)
    }
}
