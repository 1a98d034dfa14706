//! Random legal schedules, for property tests across the project.
//!
//! [`random_state`] applies random steps of every kind (non-dividing splits, fuse,
//! reorder, compute_at / inline / root, cache_write, cache_read, rfactor, annotations and
//! the auto-unroll pragma) to a DAG and keeps those the state accepts, so every result is
//! legal by construction. Lowering, the interpreter, codegen and the sketch rules all test
//! against the same oracle: "a legal schedule computes what the reference evaluator does".
//!
//! ```
//! use tessel_ir::{rng, testing, DagBuilder, Reducer};
//! let mut b = DagBuilder::new();
//! let a = b.placeholder("A", &[8, 8]);
//! let w = b.placeholder("B", &[8, 8]);
//! b.reduce("C", &[("i", 8), ("j", 8)], &[("k", 8)], Reducer::Sum, |v| {
//!     a.at([v[0].clone(), v[2].clone()]) * w.at([v[2].clone(), v[1].clone()])
//! });
//! let dag = std::sync::Arc::new(b.build().unwrap());
//! let state = testing::random_state(&dag, &mut rng::seeded(7), &testing::Limits::default());
//! assert!(state.is_concrete());
//! ```

use crate::dag::ComputeDag;
use crate::rng::TesselRng;
use crate::state::{Annotation, ComputeAt, IterKind, State, Step};
use rand::RngExt;
use std::sync::Arc;

/// How much a random schedule may do.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Number of loop-transform steps tried (accepted ones are fewer).
    pub attempts: usize,
    /// Chance of trying each stage-changing step (cache_write, rfactor, cache_read) first.
    pub stage_step_chance: f64,
    /// Largest extent a loop may have for an explicit `unroll` annotation.
    pub max_unroll_extent: i64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            attempts: 24,
            stage_step_chance: 0.35,
            max_unroll_extent: 16,
        }
    }
}

/// A random legal, concrete schedule of `dag`.
pub fn random_state(dag: &Arc<ComputeDag>, rng: &mut TesselRng, limits: &Limits) -> State {
    let mut s = State::new(dag.clone());
    stage_changing_steps(&mut s, rng, limits);
    for _ in 0..limits.attempts {
        if let Some(step) = random_step(&s, rng, limits) {
            // Illegal proposals are simply not taken: the state says no, with a reason.
            let _ = s.apply(step);
        }
    }
    s
}

fn compute_stages(s: &State) -> Vec<usize> {
    (0..s.stages().len())
        .filter(|&k| s.stage(k).is_compute && s.stage(k).compute_at != ComputeAt::Inline)
        .collect()
}

fn pick<T: Copy>(rng: &mut TesselRng, items: &[T]) -> Option<T> {
    if items.is_empty() {
        None
    } else {
        Some(items[rng.random_range(0..items.len())])
    }
}

fn stage_changing_steps(s: &mut State, rng: &mut TesselRng, limits: &Limits) {
    // rfactor: split a reduction iterator, then factor one part out.
    if rng.random_bool(limits.stage_step_chance) {
        let reducing: Vec<usize> = compute_stages(s)
            .into_iter()
            .filter(|&k| {
                s.dag()
                    .op(crate::OpId(k as u32))
                    .compute()
                    .is_some_and(|c| c.reducer.is_some())
            })
            .collect();
        if let Some(k) = pick(rng, &reducing) {
            let st = s.stage(k);
            let reduce_pos: Vec<usize> = (0..st.leaves.len())
                .filter(|&p| st.leaf(p).is_some_and(|i| i.kind == IterKind::Reduce))
                .collect();
            if let Some(p) = pick(rng, &reduce_pos) {
                let extent = st.leaf(p).and_then(|i| i.extent).unwrap_or(1);
                let n_sp = st.leaves.len() - reduce_pos.len();
                let mut trial = s.clone();
                let len = rng.random_range(1..=extent.max(1) + 1);
                let split = Step::Split {
                    stage: k,
                    iter: p,
                    extent: None,
                    lengths: vec![Some(len)],
                };
                let which = p + rng.random_range(0..2usize);
                let rf = Step::Rfactor {
                    stage: k,
                    iter: which,
                    factor_iter: rng.random_range(0..=n_sp),
                };
                if trial.apply(split).is_ok() && trial.apply(rf).is_ok() {
                    *s = trial;
                }
            }
        }
    }
    if rng.random_bool(limits.stage_step_chance) {
        if let Some(k) = pick(rng, &compute_stages(s)) {
            let _ = s.apply(Step::CacheWrite {
                stage: k,
                scope: "local".into(),
            });
        }
    }
    if rng.random_bool(limits.stage_step_chance / 2.0) {
        let k = rng.random_range(0..s.stages().len());
        let readers: Vec<usize> = s
            .dag()
            .consumers(crate::OpId(k as u32))
            .iter()
            .map(|c| c.index())
            .collect();
        if !readers.is_empty() {
            let _ = s.apply(Step::CacheRead {
                stage: k,
                scope: "shared".into(),
                readers,
            });
        }
    }
}

fn random_step(s: &State, rng: &mut TesselRng, limits: &Limits) -> Option<Step> {
    let k = pick(rng, &compute_stages(s))?;
    let st = s.stage(k);
    let n = st.leaves.len();
    if n == 0 {
        return None;
    }
    let pos = rng.random_range(0..n);
    let extent = st.leaf(pos).and_then(|i| i.extent).unwrap_or(1);
    Some(match rng.random_range(0..10u32) {
        0..=2 => {
            let parts = rng.random_range(1..=2usize);
            let lengths = (0..parts)
                .map(|_| Some(rng.random_range(1..=extent.clamp(1, 8) + 1)))
                .collect();
            Step::Split {
                stage: k,
                iter: pos,
                extent: None,
                lengths,
            }
        }
        3 => {
            let len = rng.random_range(1..=(n - pos).min(3));
            Step::Fuse {
                stage: k,
                iters: (pos..pos + len).collect(),
            }
        }
        4 => {
            let mut order: Vec<usize> = (0..n).collect();
            for i in (1..n).rev() {
                order.swap(i, rng.random_range(0..=i));
            }
            Step::Reorder { stage: k, order }
        }
        5 => {
            let consumers = crate::state::apply::consumers_through_inline(s, k);
            let target = pick(rng, &consumers)?;
            let tn = s.stage(target).leaves.len();
            if tn == 0 {
                return None;
            }
            Step::ComputeAt {
                stage: k,
                target_stage: target,
                target_iter: rng.random_range(0..tn),
            }
        }
        6 => match rng.random_range(0..2u32) {
            0 => Step::ComputeInline { stage: k },
            _ => Step::ComputeRoot { stage: k },
        },
        7 => Step::Annotate {
            stage: k,
            iter: n - 1,
            annotation: Annotation::Vectorize,
        },
        8 => {
            let annotation = match rng.random_range(0..2u32) {
                0 => Annotation::Parallel,
                _ if extent <= limits.max_unroll_extent => Annotation::Unroll,
                _ => Annotation::None,
            };
            Step::Annotate {
                stage: k,
                iter: pos,
                annotation,
            }
        }
        _ => Step::Pragma {
            stage: k,
            iter: 0,
            auto_unroll_max_step: [0u32, 16, 64, 512][rng.random_range(0..4usize)],
        },
    })
}

/// One small shape of every operator kind Tessel builds, as workload specs: property tests
/// run every kind through the same oracle.
pub const SMALL_SPECS: &[&str] = &[
    "c1d:n=1,l=9,ci=4,co=6,kernel=3,stride=2,pad=1",
    "c2d:n=1,h=6,w=6,ci=4,co=8,kernel=3,stride=1,pad=1",
    "c3d:n=1,d=3,h=4,w=4,ci=2,co=4,kernel=3,stride=1,pad=1",
    "gmm:b=2,n=6,m=5,k=7",
    "grp:n=1,h=6,w=6,ci=8,co=8,kernel=3,stride=2,pad=1",
    "dil:n=1,h=8,w=8,ci=4,co=4,kernel=3,stride=1,pad=1",
    "dep:n=1,h=6,w=6,c=8,kernel=3,stride=1,pad=1",
    "t2d:n=1,h=3,w=3,ci=4,co=4,kernel=4,stride=2,pad=1",
    "cap:n=1,h=4,w=4,ci=2,co=2,kernel=3,stride=2,pad=1",
    "nrm:b=2,m=5,n=7",
    "convlayer:n=1,h=5,w=5,ci=4,co=8,kernel=3,stride=1,pad=1",
    "tbg:b=1,seq=5,heads=2,dim=3",
    "dense:n=3,in=8,out=5",
    "softmax:m=3,n=7",
    "maxpool:n=1,h=7,w=7,c=3,kernel=3,stride=2,pad=1",
    "avgpool:n=1,h=5,w=5,c=3",
    "c2d-nchw:n=1,h=6,w=6,ci=3,co=4,kernel=3,stride=2,pad=1",
];

/// Runs a loop nest with the interpreter on `inputs` (in `nest.params` order) and returns
/// its outputs.
pub fn run_interp(
    nest: &crate::LoopNest,
    inputs: &[Vec<f32>],
) -> Result<Vec<Vec<f32>>, crate::IrError> {
    let mut args: Vec<Vec<f32>> = nest
        .params
        .iter()
        .enumerate()
        .map(|(k, &p)| match inputs.get(k) {
            Some(v) => v.clone(),
            None => vec![0.0; nest.buffer(p).len() as usize],
        })
        .collect();
    crate::interp::run(nest, &mut args)?;
    Ok(args.split_off(inputs.len()))
}

/// Checks that `got` equals `want` element by element within `abs + rel·|want|`, and says
/// where it does not.
pub fn check_close(got: &[Vec<f32>], want: &[Vec<f32>], abs: f32, rel: f32) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{} outputs, expected {}", got.len(), want.len()));
    }
    for (o, (g, w)) in got.iter().zip(want).enumerate() {
        if g.len() != w.len() {
            return Err(format!(
                "output {o} has {} elements, expected {}",
                g.len(),
                w.len()
            ));
        }
        for (i, (a, b)) in g.iter().zip(w).enumerate() {
            let ok = (a - b).abs() <= abs + rel * b.abs();
            if !ok {
                return Err(format!("output {o}[{i}] = {a}, expected {b}"));
            }
        }
    }
    Ok(())
}

/// Whether golden files are to be rewritten: `TESSEL_BLESS` set to anything but empty or
/// `0`.
pub fn blessing() -> bool {
    std::env::var_os("TESSEL_BLESS").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Golden-text testing, the one helper of every crate's golden tests: compares `actual`
/// with the file at `path`, or rewrites the file (creating its folder) when
/// [`blessing`] (`TESSEL_BLESS=1`). Panics with both texts when they differ, and with how
/// to create the file when it is missing.
///
/// ```
/// let path = std::env::temp_dir().join(format!("tessel-golden-doc-{}.txt", std::process::id()));
/// std::fs::write(&path, "a\n").unwrap();
/// tessel_ir::testing::check_golden(&path, "a\n"); // the same text: passes
/// # std::fs::remove_file(&path).ok();
/// ```
pub fn check_golden(path: &std::path::Path, actual: &str) {
    if blessing() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        }
        std::fs::write(path, actual)
            .unwrap_or_else(|e| panic!("cannot write golden {}: {e}", path.display()));
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with TESSEL_BLESS=1 to create it)",
            path.display()
        )
    });
    if expected != actual {
        panic!(
            "text differs from {} (TESSEL_BLESS=1 rewrites it if intended)\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display()
        );
    }
}
