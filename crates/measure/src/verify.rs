//! Verification against the reference evaluator: seeded random inputs and the reference's
//! outputs, computed once per workload and seed and cached ([`ReferenceCache`]).

use crate::error::{ErrorClass, MeasureError};
use std::collections::VecDeque;
use std::sync::Arc;
use tessel_ir::{eval, ComputeDag};

/// Inputs of a workload and, when verification is on, what the reference evaluator makes of
/// them.
#[derive(Debug)]
pub struct Reference {
    /// One buffer per `dag.inputs()`, in order.
    pub inputs: Vec<Vec<f32>>,
    /// One buffer per `dag.outputs()`, in order; `None` when only inputs were asked for.
    pub outputs: Option<Vec<Vec<f32>>>,
}

/// A small cache of [`Reference`]s keyed by workload key and seed (evaluating a 512³ matmul
/// costs ~0.3 s; a search measures the same workload thousands of times). The least recently
/// used entry goes when more than `capacity` workloads are cached.
#[derive(Debug)]
pub struct ReferenceCache {
    entries: VecDeque<(String, u64, Arc<Reference>)>,
    capacity: usize,
}

impl Default for ReferenceCache {
    /// A cache of 8 workloads.
    fn default() -> Self {
        ReferenceCache::new(8)
    }
}

impl ReferenceCache {
    /// A cache holding at most `capacity` (≥ 1) workloads.
    pub fn new(capacity: usize) -> ReferenceCache {
        ReferenceCache {
            entries: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Number of cached workloads.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True when the reference outputs of workload `key` on inputs of `seed` are cached.
    pub fn contains(&self, key: &str, seed: u64) -> bool {
        self.position(key, seed, true).is_some()
    }

    /// Where the entry of workload `key` on inputs of `seed` is (with reference outputs when
    /// `outputs`).
    fn position(&self, key: &str, seed: u64, outputs: bool) -> Option<usize> {
        self.entries
            .iter()
            .position(|(k, s, r)| k == key && *s == seed && (!outputs || r.outputs.is_some()))
    }

    /// The reference of `dag` (whose workload key is `key`) on inputs of `seed`; with
    /// `outputs`, the reference outputs too (evaluated now if the cached entry lacks them).
    pub fn get(
        &mut self,
        dag: &ComputeDag,
        key: &str,
        seed: u64,
        outputs: bool,
    ) -> Result<Arc<Reference>, MeasureError> {
        if let Some(pos) = self.position(key, seed, outputs) {
            let entry = self.entries.remove(pos).ok_or_else(|| {
                MeasureError::new(ErrorClass::WorkerLost, "reference cache is inconsistent")
            })?;
            let r = entry.2.clone();
            self.entries.push_front(entry);
            return Ok(r);
        }
        let inputs = eval::random_inputs(dag, seed);
        let outs = if outputs {
            Some(eval::evaluate(dag, &inputs).map_err(|e| {
                MeasureError::new(
                    ErrorClass::InvalidSchedule,
                    format!("the reference evaluator failed on this workload: {e}"),
                )
            })?)
        } else {
            None
        };
        let r = Arc::new(Reference {
            inputs,
            outputs: outs,
        });
        self.entries.retain(|(k, s, _)| !(k == key && *s == seed));
        self.entries.push_front((key.to_string(), seed, r.clone()));
        self.entries.truncate(self.capacity);
        Ok(r)
    }
}

/// Compares a kernel's outputs with the reference's; a mismatch is a
/// [`ErrorClass::WrongAnswer`] naming the first bad element.
pub fn check_outputs(
    got: &[Vec<f32>],
    want: &[Vec<f32>],
    atol: f32,
    rtol: f32,
) -> Result<(), MeasureError> {
    tessel_ir::testing::check_close(got, want, atol, rtol)
        .map_err(|m| MeasureError::new(ErrorClass::WrongAnswer, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_evaluates_once_and_evicts_the_oldest() {
        let a = tessel_workloads::lookup("gmm:b=1,n=4,m=4,k=4").unwrap();
        let b = tessel_workloads::lookup("gmm:b=1,n=8,m=4,k=4").unwrap();
        let (ka, kb) = (a.dag.workload_key(), b.dag.workload_key());
        let mut cache = ReferenceCache::new(1);
        let r1 = cache.get(&a.dag, &ka, 1, true).unwrap();
        let r2 = cache.get(&a.dag, &ka, 1, false).unwrap();
        assert!(Arc::ptr_eq(&r1, &r2));
        cache.get(&b.dag, &kb, 1, true).unwrap();
        assert_eq!(cache.len(), 1);
        let r3 = cache.get(&a.dag, &ka, 1, true).unwrap();
        assert!(!Arc::ptr_eq(&r1, &r3));
        assert_eq!(r1.outputs, r3.outputs);
    }

    #[test]
    fn a_perturbed_element_is_a_wrong_answer() {
        let want = vec![vec![1.0, 2.0, 3.0]];
        let mut got = want.clone();
        assert!(check_outputs(&got, &want, 1e-3, 1e-3).is_ok());
        got[0][1] += 0.5;
        let e = check_outputs(&got, &want, 1e-3, 1e-3).unwrap_err();
        assert_eq!(e.class, ErrorClass::WrongAnswer);
        assert!(e.message.contains("[1]"), "{e}");
        got[0][1] = f32::NAN;
        assert!(check_outputs(&got, &want, 1e-3, 1e-3).is_err());
    }
}
