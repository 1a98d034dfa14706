//! Ansor's static access analysis of a [`ComputeDag`] (TVM's `AccessAnalyzer`).
//!
//! [`AccessAnalysis::new`] walks every compute op once, records the index expressions of
//! every read (`read_from` / `read_by`) and derives the per-op predicates the sketch rules
//! ask: simple access, strict inlineability, the need for multi-level tiling, whether the op
//! is an output, the number of common outer iterators of a producer/consumer pair, and
//! element-wise matching along a chain of single consumers. The definitions follow
//! `ANSOR.md` §2.1 (TVM v0.16.0, `src/auto_scheduler/compute_dag.cc`).
//!
//! ```
//! use tessel_ir::analysis::AccessAnalysis;
//! use tessel_ir::dag::{DagBuilder, Reducer};
//! let mut b = DagBuilder::new();
//! let a = b.placeholder("A", &[4, 8]);
//! let w = b.placeholder("B", &[8, 2]);
//! let c = b.reduce("C", &[("i", 4), ("j", 2)], &[("k", 8)], Reducer::Sum, |ax| {
//!     a.at([ax[0].clone(), ax[2].clone()]) * w.at([ax[2].clone(), ax[1].clone()])
//! });
//! let relu = b.compute("D", &[("i", 4), ("j", 2)], |ax| {
//!     c.at([ax[0].clone(), ax[1].clone()]).max(0.0f32)
//! });
//! let dag = b.build().unwrap();
//! let an = AccessAnalysis::new(&dag);
//! assert!(an.needs_multi_level_tiling(c.id));
//! assert!(an.is_strictly_inlineable(relu.id));
//! assert_eq!(an.num_common_outer_iterators(c.id, relu.id), 2);
//! ```

use crate::dag::{ComputeDag, OpKind};
use crate::expr::{BinOp, Expr, OpId};

/// How one multi-dimensional read relates to the axes of the op that reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessPattern {
    /// Every index is a constant or `axis ± constant` of one of the reader's spatial axes.
    pub simple: bool,
    /// Some spatial axis of the reader does not occur (only meaningful when `simple`).
    pub axis_missing: bool,
    /// Some spatial axis occurs in more than one index (only meaningful when `simple`).
    pub axis_duplicated: bool,
    /// The axes occur in the reader's axis order (only meaningful when `simple`).
    pub same_order: bool,
}

/// Per-op facts about one compute op (placeholders get fixed defaults).
#[derive(Clone, Debug, Default)]
struct OpFacts {
    is_compute: bool,
    is_simple_access: bool,
    is_strictly_inlineable: bool,
    needs_multi_level_tiling: bool,
    has_reduction: bool,
    is_injective: bool,
    has_expensive_op: bool,
    has_branch: bool,
}

/// The static access analysis of one DAG, computed once; queries are cheap lookups.
///
/// Op ids passed to the queries must belong to the analysed DAG; an id out of range is
/// treated as a placeholder-like op for which every predicate is `false`.
#[derive(Clone, Debug)]
pub struct AccessAnalysis {
    shapes: Vec<Vec<i64>>,
    facts: Vec<OpFacts>,
    /// `read_from[op]`: per producer (in order of first read), every index list read.
    read_from: Vec<Vec<(OpId, Vec<Vec<Expr>>)>>,
    /// `read_by[producer]`: consumers in topological order.
    read_by: Vec<Vec<OpId>>,
    /// `common_outer[consumer]`: per producer, the number of common outer iterators.
    common_outer: Vec<Vec<(OpId, usize)>>,
}

/// The spatial axis `n` when `e` is `axis_n`, `axis_n + c`, `c + axis_n` or `axis_n - c`.
fn const_shift_axis(e: &Expr) -> Option<u32> {
    match e {
        Expr::Axis(n) => Some(*n),
        Expr::Binary(BinOp::Add, a, b) => match (&**a, &**b) {
            (Expr::Axis(n), Expr::Int(_)) | (Expr::Int(_), Expr::Axis(n)) => Some(*n),
            _ => None,
        },
        Expr::Binary(BinOp::Sub, a, b) => match (&**a, &**b) {
            (Expr::Axis(n), Expr::Int(_)) => Some(*n),
            _ => None,
        },
        _ => None,
    }
}

/// Classifies one read `indices` made by an op with `n_spatial` spatial axes (TVM's
/// `IsSimpleAccess`).
pub fn access_pattern(n_spatial: usize, indices: &[Expr]) -> AccessPattern {
    let mut order = Vec::with_capacity(indices.len());
    let mut count = vec![0usize; n_spatial];
    for e in indices {
        if matches!(e, Expr::Int(_)) {
            continue;
        }
        match const_shift_axis(e) {
            Some(n) if (n as usize) < n_spatial => {
                order.push(n);
                count[n as usize] += 1;
            }
            _ => {
                return AccessPattern {
                    simple: false,
                    axis_missing: false,
                    axis_duplicated: false,
                    same_order: false,
                }
            }
        }
    }
    AccessPattern {
        simple: true,
        axis_missing: count.contains(&0),
        axis_duplicated: count.iter().any(|&c| c > 1),
        same_order: order.windows(2).all(|w| w[0] <= w[1]),
    }
}

impl AccessAnalysis {
    /// Analyses every op of `dag`.
    pub fn new(dag: &ComputeDag) -> AccessAnalysis {
        let n = dag.ops().len();
        let mut read_from: Vec<Vec<(OpId, Vec<Vec<Expr>>)>> = vec![Vec::new(); n];
        let mut facts = vec![OpFacts::default(); n];
        let mut common_outer: Vec<Vec<(OpId, usize)>> = vec![Vec::new(); n];
        let shapes: Vec<Vec<i64>> = dag.ops().iter().map(|o| o.shape.clone()).collect();
        let read_by: Vec<Vec<OpId>> = (0..n)
            .map(|k| dag.consumers(OpId(k as u32)).to_vec())
            .collect();

        for (k, op) in dag.ops().iter().enumerate() {
            let c = match &op.kind {
                OpKind::Placeholder => continue,
                OpKind::Compute(c) => c,
            };
            let n_spatial = c.axes.len();

            // read_from, grouped by producer in order of first read.
            let reads = &mut read_from[k];
            for (t, idx) in c.body.reads() {
                match reads.iter_mut().find(|(p, _)| *p == t) {
                    Some((_, list)) => list.push(idx.to_vec()),
                    None => reads.push((t, vec![idx.to_vec()])),
                }
            }

            let mut has_expensive_op = false;
            let mut has_branch = false;
            c.body.visit(&mut |e| match e {
                Expr::Unary(u, _) if u.is_math_call() => has_expensive_op = true,
                Expr::Select(..) => has_branch = true,
                _ => {}
            });

            // Simple access and strict inlineability.
            let mut simple = true;
            let mut strict = true;
            'producers: for (_, list) in reads.iter() {
                for idx in list {
                    let p = access_pattern(n_spatial, idx);
                    if !p.simple {
                        simple = false;
                        strict = false;
                        break 'producers;
                    }
                    if !p.same_order || p.axis_duplicated {
                        strict = false;
                    }
                }
            }
            if has_expensive_op || has_branch {
                strict = false;
            }
            if reads.is_empty() {
                // A constant tensor is strictly inlineable.
                strict = true;
            }

            // Multi-level tiling: count producers that miss some output axis.
            let has_reduction = !c.reduce_axes.is_empty();
            let mut n_missing = 0;
            let mut mlt = false;
            for (_, list) in reads.iter() {
                let mut used = vec![false; n_spatial];
                for idx in list {
                    for e in idx {
                        e.visit(&mut |x| {
                            if let Expr::Axis(a) = x {
                                if let Some(u) = used.get_mut(*a as usize) {
                                    *u = true;
                                }
                            }
                        });
                    }
                }
                if c.axes.iter().zip(&used).any(|(ax, &u)| ax.extent > 1 && !u) {
                    n_missing += 1;
                }
                if n_missing >= 2 || (n_missing >= 1 && has_reduction) {
                    mlt = true;
                    break;
                }
            }

            // Common outer iterators with each producer.
            for (p, list) in reads.iter() {
                let pshape = &shapes[p.index()];
                let mut n_common = 0;
                while n_common < n_spatial.min(pshape.len())
                    && op.shape[n_common] == pshape[n_common]
                    && list
                        .iter()
                        .all(|idx| const_shift_axis(&idx[n_common]) == Some(n_common as u32))
                {
                    n_common += 1;
                }
                common_outer[k].push((*p, n_common));
            }

            facts[k] = OpFacts {
                is_compute: true,
                is_simple_access: simple,
                is_strictly_inlineable: strict,
                needs_multi_level_tiling: mlt,
                has_reduction,
                is_injective: !has_reduction,
                has_expensive_op,
                has_branch,
            };
        }
        // Placeholders count as simple access, as in TVM.
        for (k, op) in dag.ops().iter().enumerate() {
            if matches!(op.kind, OpKind::Placeholder) {
                facts[k].is_simple_access = true;
            }
        }

        AccessAnalysis {
            shapes,
            facts,
            read_from,
            read_by,
            common_outer,
        }
    }

    fn facts(&self, op: OpId) -> Option<&OpFacts> {
        self.facts.get(op.index())
    }

    /// Number of ops analysed.
    pub fn num_ops(&self) -> usize {
        self.facts.len()
    }

    /// Every index of every read is a constant or `axis ± constant` of one of the op's
    /// spatial axes (placeholders: `true`, as in TVM).
    pub fn is_simple_access(&self, op: OpId) -> bool {
        self.facts(op).is_some_and(|f| f.is_simple_access)
    }

    /// Simple access, reads in the op's axis order without a duplicated axis, no expensive
    /// math call (`exp`, `sqrt`) and no `Select`; an op reading nothing is strictly
    /// inlineable. Placeholders are not.
    pub fn is_strictly_inlineable(&self, op: OpId) -> bool {
        self.facts(op).is_some_and(|f| f.is_strictly_inlineable)
    }

    /// Counting, per producer, at most one spatial axis of extent > 1 that none of its read
    /// indices uses: true when two producers miss one, or one does and the op reduces
    /// (matmul, conv2d).
    pub fn needs_multi_level_tiling(&self, op: OpId) -> bool {
        self.facts(op).is_some_and(|f| f.needs_multi_level_tiling)
    }

    /// A compute op that no op reads.
    pub fn is_output(&self, op: OpId) -> bool {
        self.facts(op).is_some_and(|f| f.is_compute)
            && self.read_by.get(op.index()).is_some_and(|c| c.is_empty())
    }

    /// A compute op with reduction axes.
    pub fn has_reduction(&self, op: OpId) -> bool {
        self.facts(op).is_some_and(|f| f.has_reduction)
    }

    /// A compute op without reduction, whose reads are functions of its spatial axes only
    /// (element-wise, broadcast, transpose, padding, reshapes...). Placeholders are not.
    pub fn is_injective(&self, op: OpId) -> bool {
        self.facts(op).is_some_and(|f| f.is_injective)
    }

    /// The op's body calls an expensive math function (`exp`, `sqrt`).
    pub fn has_expensive_op(&self, op: OpId) -> bool {
        self.facts(op).is_some_and(|f| f.has_expensive_op)
    }

    /// The op's body contains a `Select`.
    pub fn has_branch(&self, op: OpId) -> bool {
        self.facts(op).is_some_and(|f| f.has_branch)
    }

    /// The index lists with which `op` reads `producer` (empty when it does not).
    pub fn reads(&self, op: OpId, producer: OpId) -> &[Vec<Expr>] {
        self.read_from
            .get(op.index())
            .and_then(|r| r.iter().find(|(p, _)| *p == producer))
            .map(|(_, l)| l.as_slice())
            .unwrap_or(&[])
    }

    /// Tensors that `op` reads, in order of first read.
    pub fn direct_producers(&self, op: OpId) -> Vec<OpId> {
        self.read_from
            .get(op.index())
            .map(|r| r.iter().map(|(p, _)| *p).collect())
            .unwrap_or_default()
    }

    /// Ops that read `op`, in topological order.
    pub fn direct_consumers(&self, op: OpId) -> &[OpId] {
        self.read_by
            .get(op.index())
            .map(|c| c.as_slice())
            .unwrap_or(&[])
    }

    /// Consumers of `op`, looking through ops for which `is_inlined` holds (their own
    /// consumers are taken instead). Sorted by id, without duplicates.
    pub fn consumers(&self, op: OpId, is_inlined: impl Fn(OpId) -> bool) -> Vec<OpId> {
        let mut out = Vec::new();
        let mut seen = vec![false; self.num_ops()];
        let mut stack = vec![op];
        while let Some(cur) = stack.pop() {
            for &c in self.direct_consumers(cur) {
                if std::mem::replace(&mut seen[c.index()], true) {
                    continue;
                }
                if is_inlined(c) {
                    stack.push(c);
                } else {
                    out.push(c);
                }
            }
        }
        out.sort();
        out
    }

    /// Producers of `op`, looking through ops for which `is_inlined` holds (their own
    /// producers are taken instead). Sorted by id, without duplicates.
    pub fn producers(&self, op: OpId, is_inlined: impl Fn(OpId) -> bool) -> Vec<OpId> {
        let mut out = Vec::new();
        let mut seen = vec![false; self.num_ops()];
        let mut stack = vec![op];
        while let Some(cur) = stack.pop() {
            for p in self.direct_producers(cur) {
                if std::mem::replace(&mut seen[p.index()], true) {
                    continue;
                }
                if is_inlined(p) {
                    stack.push(p);
                } else {
                    out.push(p);
                }
            }
        }
        out.sort();
        out
    }

    /// Common outer iterators of a direct producer/consumer pair, in either order: the
    /// length of the common prefix of their shapes where every read of the producer indexes
    /// that dimension with `axis + const` of the consumer's same axis.
    fn pair_common_outer(&self, consumer: OpId, producer: OpId) -> Option<usize> {
        self.common_outer
            .get(consumer.index())?
            .iter()
            .find(|(p, _)| *p == producer)
            .map(|(_, n)| *n)
    }

    /// Number of outer iterators `op` and `target` share (TVM's
    /// `GetNumCommonOuterIterator`): the minimum, over every consumer path between them, of
    /// the per-edge counts (see ANSOR.md §2.1). The two may be given in either order (`op`
    /// a producer of `target` or the reverse); `0` when neither reaches the other, and the
    /// op's number of dimensions when both are the same op.
    pub fn num_common_outer_iterators(&self, op: OpId, target: OpId) -> usize {
        let n = self.num_ops();
        if op.index() >= n || target.index() >= n {
            return 0;
        }
        let (from, to) = if op <= target {
            (op, target)
        } else {
            (target, op)
        };
        // best[x]: min over paths from `from` to x of the per-edge counts, None = unreached.
        let mut best: Vec<Option<usize>> = vec![None; n];
        best[from.index()] = Some(self.shapes[from.index()].len());
        for k in from.index()..to.index() {
            let Some(v) = best[k] else { continue };
            for &c in &self.read_by[k] {
                if c > to {
                    continue;
                }
                let edge = self.pair_common_outer(c, OpId(k as u32)).unwrap_or(0);
                let cand = v.min(edge);
                best[c.index()] = Some(best[c.index()].map_or(cand, |b| b.min(cand)));
            }
        }
        best[to.index()].unwrap_or(0)
    }

    /// Walking from `op` to `target` along single consumers, every step keeps the shape and
    /// reads the previous tensor element-wise (simple, complete, non-duplicated, same-order
    /// indices). True when `op == target`.
    pub fn element_wise_match(&self, op: OpId, target: OpId) -> bool {
        let mut cur = op;
        while cur != target {
            let next = match self.direct_consumers(cur) {
                [one] => *one,
                _ => return false,
            };
            let both_compute = self.facts(cur).is_some_and(|f| f.is_compute)
                && self.facts(next).is_some_and(|f| f.is_compute);
            if !both_compute || self.shapes[cur.index()] != self.shapes[next.index()] {
                return false;
            }
            let n_spatial = self.shapes[next.index()].len();
            for idx in self.reads(next, cur) {
                let p = access_pattern(n_spatial, idx);
                if !p.simple || p.axis_missing || p.axis_duplicated || !p.same_order {
                    return false;
                }
            }
            cur = next;
        }
        true
    }
}
