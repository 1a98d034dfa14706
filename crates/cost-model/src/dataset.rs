//! Measured programs as training data: replay → lower → features, labelled with normalized
//! throughput (ANSOR.md §6.2), and train/test splits.

use crate::features::{CodegenFlags, FeatureExtractor, ProgramFeatures};
use std::collections::BTreeMap;
use std::sync::Arc;
use tessel_ir::{ComputeDag, State, Step};

/// One measured schedule, independent of the record format that carried it.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Workload name or spec (`gmm-3`, `gmm:b=1,n=512,m=512,k=512`).
    pub workload: String,
    /// The step log.
    pub steps: Vec<Step>,
    /// Measured cost in seconds, `None` when the candidate failed.
    pub cost: Option<f64>,
    /// Threads the program ran on (labels are normalized per workload and setting).
    pub threads: usize,
    /// The code generator's options it was compiled with.
    pub codegen: CodegenFlags,
}

/// Featurised, labelled programs.
#[derive(Clone, Debug, Default)]
pub struct Dataset {
    /// Features of each program (empty when replay or lowering failed).
    pub programs: Vec<ProgramFeatures>,
    /// Normalized throughput `min_cost(workload) / cost`, 0 for failures.
    pub labels: Vec<f32>,
    /// Measured cost in seconds (`None` for failures).
    pub costs: Vec<Option<f64>>,
    /// Workload index of each program (into [`Dataset::workloads`]).
    pub groups: Vec<u32>,
    /// Workload names, in order of first appearance.
    pub workloads: Vec<String>,
    /// Task index of each program (into [`Dataset::tasks`]): a task is a workload measured
    /// in one setting (threads, codegen options), Ansor's workload + target. Labels are
    /// normalized per task and only programs of one task are compared with each other.
    pub task_of: Vec<u32>,
    /// Task names (`<workload> threads=<n> micro_kernels=<b> layout_rewrite=<b>`).
    pub tasks: Vec<String>,
    /// Samples whose workload could not be looked up or whose steps did not replay or lower.
    pub unusable: usize,
}

impl Dataset {
    /// Replays, lowers and featurises every sample, and labels them per task.
    pub fn build(samples: &[Sample]) -> Dataset {
        let mut ds = Dataset::default();
        let mut index: BTreeMap<String, u32> = BTreeMap::new();
        let mut task_index: BTreeMap<String, u32> = BTreeMap::new();
        let mut dags: Vec<Option<Arc<ComputeDag>>> = Vec::new();
        let mut fx = FeatureExtractor::new();
        for s in samples {
            let g = *index.entry(s.workload.clone()).or_insert_with(|| {
                ds.workloads.push(s.workload.clone());
                dags.push(
                    tessel_workloads::lookup(&s.workload)
                        .ok()
                        .map(|w| Arc::new(w.dag)),
                );
                (ds.workloads.len() - 1) as u32
            });
            let features = dags[g as usize]
                .as_ref()
                .and_then(|dag| State::replay(dag.clone(), &s.steps).ok())
                .and_then(|st| tessel_ir::lower::lower(&st).ok())
                .map(|nest| fx.extract_with(&nest, s.codegen));
            let features = match features {
                Some(f) => f,
                None => {
                    ds.unusable += 1;
                    ProgramFeatures::default()
                }
            };
            let task = format!(
                "{} threads={} micro_kernels={} layout_rewrite={}",
                s.workload, s.threads, s.codegen.micro_kernels, s.codegen.layout_rewrite
            );
            let t = *task_index.entry(task.clone()).or_insert_with(|| {
                ds.tasks.push(task);
                (ds.tasks.len() - 1) as u32
            });
            ds.programs.push(features);
            ds.groups.push(g);
            ds.task_of.push(t);
            ds.costs.push(s.cost.filter(|c| c.is_finite() && *c > 0.0));
        }
        ds.labels = normalized_throughput(&ds.costs, &ds.task_of);
        ds
    }

    /// Number of programs.
    pub fn len(&self) -> usize {
        self.programs.len()
    }

    /// True when there is no program.
    pub fn is_empty(&self) -> bool {
        self.programs.is_empty()
    }

    /// The programs, labels and tasks at `idx`.
    pub fn subset(&self, idx: &[usize]) -> (Vec<ProgramFeatures>, Vec<f32>, Vec<u32>) {
        (
            idx.iter().map(|&i| self.programs[i].clone()).collect(),
            idx.iter().map(|&i| self.labels[i]).collect(),
            idx.iter().map(|&i| self.task_of[i]).collect(),
        )
    }
}

/// `min_cost(group) / cost` for each program (0 for failures or a group without success).
pub fn normalized_throughput(costs: &[Option<f64>], groups: &[u32]) -> Vec<f32> {
    let mut best: BTreeMap<u32, f64> = BTreeMap::new();
    for (c, &g) in costs.iter().zip(groups) {
        if let Some(c) = c {
            let e = best.entry(g).or_insert(f64::INFINITY);
            *e = e.min(*c);
        }
    }
    costs
        .iter()
        .zip(groups)
        .map(|(c, g)| match (c, best.get(g)) {
            (Some(c), Some(b)) => (b / c) as f32,
            _ => 0.0,
        })
        .collect()
}

/// A deterministic shuffle (splitmix64-driven Fisher–Yates) of `0..n`.
pub fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    let mut s = seed;
    for i in (1..n).rev() {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        v.swap(i, (z % (i as u64 + 1)) as usize);
    }
    v
}

/// Splits `0..n` at random into (train, test) with about `test_fraction` in test.
pub fn split_by_candidate(n: usize, test_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let v = shuffled(n, seed);
    let n_test = ((n as f64) * test_fraction.clamp(0.0, 1.0)).round() as usize;
    let (test, train) = v.split_at(n_test.min(n));
    let (mut train, mut test) = (train.to_vec(), test.to_vec());
    train.sort_unstable();
    test.sort_unstable();
    (train, test)
}

/// Leave-one-workload-out folds: for every workload, (train = the others, test = it).
pub fn split_by_workload(groups: &[u32]) -> Vec<(u32, Vec<usize>, Vec<usize>)> {
    let mut ids: Vec<u32> = groups.to_vec();
    ids.sort_unstable();
    ids.dedup();
    if ids.len() < 2 {
        return Vec::new();
    }
    ids.into_iter()
        .map(|w| {
            let (test, train): (Vec<usize>, Vec<usize>) =
                (0..groups.len()).partition(|&i| groups[i] == w);
            (w, train, test)
        })
        .collect()
}
