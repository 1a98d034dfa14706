//! Re-measuring the final bests of several runs side by side: every round measures each
//! distinct program once, in one batch, starting one place later than the round before
//! (so that over the rounds every program takes every position of the batch), and the
//! result of a program is the median of its per-round medians. Programs measured in the
//! same minutes share the machine's load, unlike the runs that found them.
//!
//! ```
//! use std::sync::Arc;
//! use tessel_experiment::remeasure::remeasure;
//! use tessel_search::tuner::{Measurement, Measurer};
//! struct Fixed;
//! impl Measurer for Fixed {
//!     fn measure(&mut self, s: &[tessel_ir::State]) -> Vec<Measurement> {
//!         s.iter().map(|_| Measurement { seconds: Some(2e-3), error: None, compile_seconds: 0.0 }).collect()
//!     }
//! }
//! let w = tessel_workloads::lookup("gmm:b=1,n=8,m=8,k=8").unwrap();
//! let naive = tessel_ir::State::new(Arc::new(w.dag.clone()));
//! let r = remeasure(&[Some(naive), None], &mut Fixed, 3);
//! assert_eq!(r[0].as_ref().unwrap().seconds, Some(2e-3));
//! assert_eq!(r[0].as_ref().unwrap().rounds.len(), 3);
//! assert!(r[1].is_none());
//! ```

use crate::runs::{median, quantile};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use tessel_ir::State;
use tessel_search::evolution::state_key;
use tessel_search::tuner::{ErrorClass, MeasureError, Measurer};

/// One program's re-measurement.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Remeasurement {
    /// Median over the rounds of the per-round times (seconds); `None` if every round
    /// failed.
    pub seconds: Option<f64>,
    /// Each round's time (the harness's median over its repeats); `None` = failed.
    pub rounds: Vec<Option<f64>>,
    /// The fastest round.
    pub min: Option<f64>,
    /// Interquartile range of the rounds ÷ their median (the noise seen).
    pub spread: Option<f64>,
    /// The first error, if a round failed. Files written before errors were typed hold its
    /// text, which reads back by [`MeasureError::from_display`].
    #[serde(default, deserialize_with = "MeasureError::deserialize_typed_or_text")]
    pub error: Option<MeasureError>,
}

/// Re-measures `programs` (`None` entries are skipped) in `rounds` interleaved batches with
/// `measurer` (which should not be a cache); one result per entry, in order. Identical step
/// logs are measured once and share their result.
pub fn remeasure(
    programs: &[Option<State>],
    measurer: &mut dyn Measurer,
    rounds: usize,
) -> Vec<Option<Remeasurement>> {
    // Distinct programs, in order of first appearance.
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut distinct: Vec<State> = Vec::new();
    let slot: Vec<Option<usize>> = programs
        .iter()
        .map(|p| {
            p.as_ref().map(|s| {
                *index.entry(state_key(s)).or_insert_with(|| {
                    distinct.push(s.clone());
                    distinct.len() - 1
                })
            })
        })
        .collect();
    let n = distinct.len();
    let mut times: Vec<Vec<Option<f64>>> = vec![Vec::with_capacity(rounds); n];
    let mut errors: Vec<Option<MeasureError>> = vec![None; n];
    for round in 0..if n == 0 { 0 } else { rounds } {
        let order: Vec<usize> = (0..n).map(|k| (k + round) % n).collect();
        let batch: Vec<State> = order.iter().map(|&k| distinct[k].clone()).collect();
        let results = measurer.measure(&batch);
        for (k, &p) in order.iter().enumerate() {
            let m = results.get(k);
            times[p].push(m.and_then(|m| m.seconds));
            if let Some(e) = m.and_then(|m| m.error.clone()) {
                errors[p].get_or_insert(e);
            } else if m.is_none() {
                errors[p]
                    .get_or_insert_with(|| MeasureError::new(ErrorClass::WorkerLost, "no result"));
            }
        }
    }
    let results: Vec<Remeasurement> = times
        .into_iter()
        .zip(errors)
        .map(|(rounds, error)| {
            let ok: Vec<f64> = rounds.iter().flatten().copied().collect();
            let seconds = median(&ok);
            let spread = match (quantile(&ok, 0.25), quantile(&ok, 0.75), seconds) {
                (Some(q1), Some(q3), Some(m)) if m > 0.0 => Some((q3 - q1) / m),
                _ => None,
            };
            Remeasurement {
                seconds,
                min: ok.iter().copied().reduce(f64::min),
                spread,
                rounds,
                error,
            }
        })
        .collect();
    slot.into_iter()
        .map(|s| s.map(|k| results[k].clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tessel_search::tuner::Measurement;

    /// Answers by position in the batch (1, 2, 3 ms...), logging batch sizes.
    struct ByPosition(Vec<usize>);

    impl Measurer for ByPosition {
        fn measure(&mut self, s: &[State]) -> Vec<Measurement> {
            self.0.push(s.len());
            (0..s.len())
                .map(|k| Measurement {
                    seconds: Some(1e-3 * (k + 1) as f64),
                    error: None,
                    compile_seconds: 0.0,
                })
                .collect()
        }
    }

    #[test]
    fn errors_are_written_typed_and_older_text_errors_still_read() {
        let typed = Remeasurement {
            error: Some(MeasureError::new(ErrorClass::WrongAnswer, "C[0]: 1 vs 2")),
            ..Remeasurement::default()
        };
        let json = serde_json::to_string(&typed).expect("json");
        assert!(json.contains(r#""error":{"class":"wrong_answer","message":"C[0]: 1 vs 2"}"#));
        assert_eq!(
            serde_json::from_str::<Remeasurement>(&json).ok(),
            Some(typed.clone())
        );
        let old = r#"{"seconds":null,"rounds":[null],"min":null,"spread":null,
                      "error":"wrong answer: C[0]: 1 vs 2"}"#;
        let read: Remeasurement = serde_json::from_str(old).expect("old file");
        assert_eq!(read.error, typed.error);
        assert_eq!(read.rounds, vec![None]);
    }

    #[test]
    fn rounds_rotate_the_order_and_duplicates_are_measured_once() {
        let w = tessel_workloads::lookup("gmm:b=1,n=8,m=8,k=8").expect("workload");
        let dag = Arc::new(w.dag.clone());
        let hw = tessel_sketch::HardwareParams::with_cores(2);
        let sketches = tessel_sketch::generate_sketches(&dag, &hw).expect("sketches");
        let a = State::new(dag);
        let b = tessel_sketch::sample_initial(&sketches[0], &hw, &mut tessel_ir::rng::seeded(1))
            .expect("a sample");
        assert_ne!(state_key(&a), state_key(&b));
        let mut m = ByPosition(Vec::new());
        let r = remeasure(&[Some(a.clone()), Some(b), Some(a), None], &mut m, 4);
        assert_eq!(m.0, vec![2, 2, 2, 2], "two distinct programs per round");
        let ra = r[0].as_ref().expect("a");
        // a is first, then second, then first, then second: 1, 2, 1, 2 ms.
        assert_eq!(
            ra.rounds,
            vec![Some(1e-3), Some(2e-3), Some(1e-3), Some(2e-3)]
        );
        assert_eq!(ra.seconds, Some(1.5e-3));
        assert_eq!(ra.min, Some(1e-3));
        assert_eq!(r[2], r[0]);
        assert_eq!(r[1].as_ref().expect("b").seconds, Some(1.5e-3));
        assert!(r[3].is_none());
    }
}
