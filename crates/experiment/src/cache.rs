//! A measurement cache shared by several tuning runs of one workload (the systems and seeds
//! of an experiment): a candidate whose step log was measured before gets the earlier
//! result, so the same program has the same measured time in every run, and measurement
//! noise cannot favour one system over another on a program they both found.
//!
//! For a fair time axis a hit is not free: it is *charged* the time its first measurement
//! cost ([`Measurer::charged_seconds`]), and the tuner records that charge next to the wall
//! time ([`tessel_search::tuner::TimeSplit::measure_charged`]). A batch's wall time is split evenly
//! over the candidates it actually measured (they are built in parallel and timed one after
//! the other, so no per-candidate wall time exists); a hit is charged its share.
//!
//! ```
//! use std::sync::Arc;
//! use tessel_experiment::cache::{CachingMeasurer, MeasureCache};
//! use tessel_search::tuner::{ErrorClass, MeasureError, Measurement, Measurer};
//! struct Count(usize);
//! impl Measurer for Count {
//!     fn measure(&mut self, states: &[tessel_ir::State]) -> Vec<Measurement> {
//!         self.0 += states.len();
//!         states.iter().map(|_| Measurement { seconds: Some(1e-3), error: None, compile_seconds: 0.0 }).collect()
//!     }
//! }
//! let w = tessel_workloads::lookup("gmm:b=1,n=8,m=8,k=8").unwrap();
//! let state = tessel_ir::State::new(Arc::new(w.dag.clone()));
//! let cache = MeasureCache::shared();
//! let (mut a, mut b) = (Count(0), Count(0));
//! CachingMeasurer::new(&mut a, cache.clone()).measure(&[state.clone()]);
//! CachingMeasurer::new(&mut b, cache.clone()).measure(&[state]);
//! assert_eq!((a.0, b.0), (1, 0)); // the second run got the first run's result
//! assert_eq!(cache.borrow().hits(), 1);
//! ```

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Instant;
use tessel_ir::State;
use tessel_search::evolution::state_key;
use tessel_search::tuner::{ErrorClass, MeasureError, Measurement, Measurer};

/// A cached result and the seconds its measurement cost.
#[derive(Clone, Debug, PartialEq)]
pub struct CacheEntry {
    /// The result, as first measured.
    pub measurement: Measurement,
    /// Seconds charged for it (its share of the batch that measured it).
    pub charge: f64,
}

/// Results by canonical step log ([`state_key`]), with hit and miss counts.
#[derive(Debug, Default)]
pub struct MeasureCache {
    entries: HashMap<String, CacheEntry>,
    hits: usize,
    misses: usize,
}

/// A cache shared by the runs of one workload (runs are sequential, so `Rc<RefCell<_>>`).
pub type SharedCache = Rc<RefCell<MeasureCache>>;

impl MeasureCache {
    /// An empty cache, ready to share.
    pub fn shared() -> SharedCache {
        Rc::new(RefCell::new(MeasureCache::default()))
    }

    /// The entry of `state`, if it was measured.
    pub fn get(&self, state: &State) -> Option<&CacheEntry> {
        self.entries.get(&state_key(state))
    }

    /// Lookups answered from the cache.
    pub fn hits(&self) -> usize {
        self.hits
    }

    /// Lookups that had to be measured.
    pub fn misses(&self) -> usize {
        self.misses
    }

    /// Distinct step logs stored.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A [`Measurer`] that answers from a shared [`MeasureCache`] and measures only the rest
/// with `inner`.
pub struct CachingMeasurer<'a> {
    inner: &'a mut dyn Measurer,
    cache: SharedCache,
    charged: Option<f64>,
}

impl<'a> CachingMeasurer<'a> {
    /// Wraps `inner`; results go to (and come from) `cache`.
    pub fn new(inner: &'a mut dyn Measurer, cache: SharedCache) -> CachingMeasurer<'a> {
        CachingMeasurer {
            inner,
            cache,
            charged: None,
        }
    }
}

impl Measurer for CachingMeasurer<'_> {
    fn measure(&mut self, states: &[State]) -> Vec<Measurement> {
        let start = Instant::now();
        let keys: Vec<String> = states.iter().map(state_key).collect();
        // Distinct keys not in the cache, in order of first appearance.
        let mut todo: Vec<usize> = Vec::new();
        {
            let cache = self.cache.borrow();
            let mut seen = std::collections::HashSet::new();
            for (k, key) in keys.iter().enumerate() {
                if !cache.entries.contains_key(key) && seen.insert(key.as_str()) {
                    todo.push(k);
                }
            }
        }
        let mut hit_charge = 0.0;
        if !todo.is_empty() {
            let batch: Vec<State> = todo.iter().map(|&k| states[k].clone()).collect();
            let t = Instant::now();
            let results = self.inner.measure(&batch);
            let share = t.elapsed().as_secs_f64() / batch.len() as f64;
            let mut cache = self.cache.borrow_mut();
            for (&k, measurement) in todo.iter().zip(results) {
                cache.entries.insert(
                    keys[k].clone(),
                    CacheEntry {
                        measurement,
                        charge: share,
                    },
                );
            }
        }
        let mut cache = self.cache.borrow_mut();
        let mut fresh = todo.iter().copied().peekable();
        let out = keys
            .iter()
            .enumerate()
            .map(|(k, key)| {
                if fresh.peek() == Some(&k) {
                    fresh.next();
                    cache.misses += 1;
                } else {
                    cache.hits += 1;
                    hit_charge += cache.entries.get(key).map_or(0.0, |e| e.charge);
                }
                cache
                    .entries
                    .get(key)
                    .map(|e| e.measurement.clone())
                    .unwrap_or_else(|| {
                        Measurement::failed(MeasureError::new(
                            ErrorClass::WorkerLost,
                            "the measurer returned no result",
                        ))
                    })
            })
            .collect();
        self.charged = Some(start.elapsed().as_secs_f64() + hit_charge);
        out
    }

    fn charged_seconds(&self) -> Option<f64> {
        self.charged
    }

    fn halted(&self) -> bool {
        self.inner.halted()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    /// Sleeps `delay` per batch and answers `1 ms × (number of steps + 1) × call number`,
    /// so a repeated measurement of the same state would differ.
    struct Slow {
        delay: Duration,
        calls: usize,
        measured: usize,
    }

    impl Measurer for Slow {
        fn measure(&mut self, states: &[State]) -> Vec<Measurement> {
            std::thread::sleep(self.delay);
            self.calls += 1;
            self.measured += states.len();
            states
                .iter()
                .map(|s| Measurement {
                    seconds: Some(1e-3 * (s.steps().len() + 1) as f64 * self.calls as f64),
                    error: None,
                    compile_seconds: 0.0,
                })
                .collect()
        }
    }

    fn states() -> Vec<State> {
        let w = tessel_workloads::lookup("gmm:b=1,n=16,m=16,k=16").expect("workload");
        let dag = Arc::new(w.dag.clone());
        let hw = tessel_sketch::HardwareParams::with_cores(2);
        let sketches = tessel_sketch::generate_sketches(&dag, &hw).expect("sketches");
        let mut rng = tessel_ir::rng::seeded(3);
        let mut out = vec![State::new(dag)];
        let mut seen: std::collections::HashSet<String> = out.iter().map(state_key).collect();
        for k in 0..64 {
            if let Some(s) =
                tessel_sketch::sample_initial(&sketches[k % sketches.len()], &hw, &mut rng)
            {
                if seen.insert(state_key(&s)) {
                    out.push(s);
                }
            }
            if out.len() == 3 {
                break;
            }
        }
        assert_eq!(out.len(), 3);
        out
    }

    #[test]
    fn a_hit_returns_the_first_result_and_is_charged_its_original_time() {
        let s = states();
        let cache = MeasureCache::shared();
        let mut first = Slow {
            delay: Duration::from_millis(60),
            calls: 0,
            measured: 0,
        };
        let a = {
            let mut m = CachingMeasurer::new(&mut first, cache.clone());
            let a = m.measure(&s[..2]);
            let charged = m.charged_seconds().expect("a charge");
            assert!(charged >= 0.06, "{charged}");
            a
        };
        // A second run (its own inner measurer, which would answer differently) asks for
        // one old and one new state.
        let mut second = Slow {
            delay: Duration::from_millis(20),
            calls: 10,
            measured: 0,
        };
        let mut m = CachingMeasurer::new(&mut second, cache.clone());
        let b = m.measure(&[s[1].clone(), s[2].clone()]);
        assert_eq!(b[0], a[1], "the same steps get the same result");
        assert_ne!(b[1].seconds, a[1].seconds);
        let charged = m.charged_seconds().expect("a charge");
        // 20 ms of real measuring for s[2] plus the 30 ms share s[1] cost the first time.
        let original = cache.borrow().get(&s[1]).expect("cached").charge;
        assert!((0.029..0.2).contains(&original), "{original}");
        assert!(charged >= 0.02 + original, "{charged} vs {original}");
        drop(m);
        assert_eq!(second.measured, 1, "only the new state was measured");
        let c = cache.borrow();
        assert_eq!((c.hits(), c.misses(), c.len()), (1, 3, 3));
    }

    #[test]
    fn an_all_hit_batch_is_not_measured_and_duplicates_are_measured_once() {
        let s = states();
        let cache = MeasureCache::shared();
        let mut inner = Slow {
            delay: Duration::from_millis(10),
            calls: 0,
            measured: 0,
        };
        let mut m = CachingMeasurer::new(&mut inner, cache.clone());
        let a = m.measure(&[s[0].clone(), s[0].clone()]);
        assert_eq!(a[0], a[1]);
        let b = m.measure(&[s[0].clone()]);
        assert_eq!(b[0], a[0]);
        drop(m);
        assert_eq!((inner.calls, inner.measured), (1, 1));
        assert_eq!(cache.borrow().hits(), 2);
    }
}
