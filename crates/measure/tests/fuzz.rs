//! Fuzzing as part of the suite: seeded, generated inputs from outside (step logs, workload
//! specs, records lines) may be refused but never panic, abort or hang.
//!
//! A hand-rolled SplitMix64 generator (no dependency, the same cases on every run) makes
//! 10,000 step logs (random steps, and mutations of real schedules: fields set to 0,
//! negative or huge values, steps dropped or repeated), 10,000 workload specs (known ops
//! with random, zero, negative and huge keys, and junk) and 10,000 records lines (a valid
//! line with fields replaced by random JSON values, bytes flipped, lines cut). Each goes
//! through the path a real one takes: the limits, replay, state checks and lowering; the
//! spec lookup and the workload limit; the records reader and its validation.

use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tessel_ir::state::Annotation;
use tessel_ir::{lower, rng, testing, State, Step};
use tessel_measure::limits;
use tessel_measure::records::parse_records;
use tessel_measure::{
    Candidate, MeasureOptions, MeasureResult, PhaseTimes, Record, Target, Timing,
};

/// SplitMix64: a tiny, seeded, deterministic generator.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
    /// Mostly small, sometimes a boundary value.
    fn int(&mut self) -> i64 {
        match self.below(10) {
            0 => *self.pick(&[0, -1, i64::MIN, i64::MAX, 1 << 31, 1 << 40, 100_000]),
            1..=2 => self.below(1_000) as i64,
            _ => self.below(8) as i64,
        }
    }
    fn index(&mut self) -> usize {
        match self.below(12) {
            0 => *self.pick(&[usize::MAX, 1 << 20, 1_000]),
            _ => self.below(8) as usize,
        }
    }
}

fn random_step(g: &mut Gen) -> Step {
    let stage = g.index();
    let iter = g.index();
    match g.below(13) {
        0 => Step::Split {
            stage,
            iter,
            extent: g.chance(0.3).then(|| g.int()),
            lengths: (0..if g.chance(0.02) { 40 } else { g.below(5) })
                .map(|_| g.chance(0.8).then(|| g.int()))
                .collect(),
        },
        1 => Step::FollowSplit {
            stage,
            iter,
            src_step: g.index(),
            n_split: g.index(),
        },
        2 => Step::FollowFusedSplit {
            stage,
            iter,
            src_steps: (0..g.below(4)).map(|_| g.index()).collect(),
            level: g.index(),
            factor_or_nparts: g.chance(0.5),
        },
        3 => Step::Fuse {
            stage,
            iters: (0..g.below(5)).map(|_| g.index()).collect(),
        },
        4 => Step::Reorder {
            stage,
            order: (0..g.below(8)).map(|_| g.index()).collect(),
        },
        5 => Step::ComputeAt {
            stage,
            target_stage: g.index(),
            target_iter: g.index(),
        },
        6 => Step::ComputeInline { stage },
        7 => Step::ComputeRoot { stage },
        8 => Step::CacheWrite {
            stage,
            scope: g.pick(&["local", "shared", "", "x"]).to_string(),
        },
        9 => Step::CacheRead {
            stage,
            scope: "local".into(),
            readers: (0..g.below(3)).map(|_| g.index()).collect(),
        },
        10 => Step::Rfactor {
            stage,
            iter,
            factor_iter: g.index(),
        },
        11 => Step::Annotate {
            stage,
            iter,
            annotation: *g.pick(&[
                Annotation::None,
                Annotation::Parallel,
                Annotation::Vectorize,
                Annotation::Unroll,
                Annotation::Tensorize,
            ]),
        },
        _ => Step::Pragma {
            stage,
            iter,
            auto_unroll_max_step: *g.pick(&[0, 16, 64, 512, 4096, 4097, u32::MAX]),
        },
    }
}

/// A step log: random steps, or a real schedule mutated.
fn step_log(g: &mut Gen, real: &[Vec<Step>]) -> Vec<Step> {
    if g.chance(0.3) {
        return (0..g.below(8)).map(|_| random_step(g)).collect();
    }
    let mut steps = g.pick(real).clone();
    for _ in 0..1 + g.below(3) {
        let k = g.below(steps.len() as u64 + 1) as usize;
        match g.below(4) {
            0 if k < steps.len() => {
                steps.remove(k);
            }
            1 if k < steps.len() => {
                // A field of a real step set to a random value, through its JSON form.
                let mut v = serde_json::to_value(&steps[k]).unwrap_or(Value::Null);
                if let Some(m) = v.as_object_mut() {
                    let keys: Vec<String> = m.keys().cloned().collect();
                    let key = g.pick(&keys).clone();
                    if key != "step" {
                        m.insert(key, json!(g.int()));
                    }
                }
                if let Ok(s) = serde_json::from_value(v) {
                    steps[k] = s;
                }
            }
            2 if k < steps.len() => {
                let s = steps[k].clone();
                steps.insert(k, s);
            }
            _ => steps.insert(k, random_step(g)),
        }
    }
    steps
}

/// How many times the suite's counts to run: `TESSEL_FUZZ_SCALE` (default 1), so that a long
/// run (`TESSEL_FUZZ_SCALE=100 cargo test --release -p tessel-measure --test fuzz`: a million
/// step logs) uses the same generators.
fn scale() -> usize {
    std::env::var("TESSEL_FUZZ_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n >= 1)
        .unwrap_or(1)
}

#[test]
fn ten_thousand_step_logs_never_panic_or_hang() {
    let start = Instant::now();
    let scale = scale();
    let specs = [
        "gmm:b=1,n=32,m=32,k=32",
        "c2d:n=1,h=8,w=8,ci=8,co=8,kernel=3,stride=1,pad=1",
        "maxpool:n=1,h=8,w=8,c=8,kernel=3,stride=2,pad=1",
        "nrm:b=1,m=16,n=16",
        "dep:n=1,h=8,w=8,c=8,kernel=3,stride=1,pad=1",
    ];
    let mut g = Gen(26);
    let (mut replayed, mut lowered) = (0, 0);
    for (k, spec) in specs.iter().enumerate() {
        let w = tessel_workloads::lookup(spec).expect("spec");
        let dag = Arc::new(w.dag);
        let real: Vec<Vec<Step>> = (0..20)
            .map(|s| {
                testing::random_state(&dag, &mut rng::seeded(s), &testing::Limits::default())
                    .steps()
                    .to_vec()
            })
            .collect();
        for i in 0..2_000 * scale {
            let steps = step_log(&mut g, &real);
            if limits::check_steps(&steps).is_err() {
                continue;
            }
            let Ok(state) = State::replay(dag.clone(), &steps) else {
                continue;
            };
            replayed += 1;
            if limits::check_state(&state).is_ok() && (i % 4 == k % 4) {
                // Lowering every fourth keeps the suite fast; all of them replay.
                if lower::lower(&state).is_ok() {
                    lowered += 1;
                }
            }
        }
    }
    assert!(replayed > 1_000, "too few logs replayed: {replayed}");
    assert!(lowered > 100, "too few logs lowered: {lowered}");
    assert!(
        start.elapsed() < Duration::from_secs(60 * scale as u64),
        "{:?}",
        start.elapsed()
    );
    eprintln!(
        "{} step logs: {replayed} replayed, {lowered} lowered, in {:?}",
        10_000 * scale,
        start.elapsed()
    );
}

#[test]
fn ten_thousand_workload_specs_never_panic() {
    let templates = [
        "c1d:n=1,l=64,ci=8,co=8,kernel=3,stride=1,pad=1",
        "c2d:n=1,h=8,w=8,ci=8,co=8,kernel=3,stride=1,pad=1",
        "grp:n=1,h=8,w=8,ci=8,co=8,kernel=3,stride=1,pad=1",
        "dil:n=1,h=8,w=8,ci=8,co=8,kernel=3,stride=1,pad=1",
        "c3d:n=1,d=4,h=8,w=8,ci=8,co=8,kernel=3,stride=1,pad=1",
        "gmm:b=1,n=8,m=8,k=8",
        "dep:n=1,h=8,w=8,c=8,kernel=3,stride=1,pad=1",
        "t2d:n=1,h=8,w=8,ci=8,co=8,kernel=3,stride=1,pad=1",
        "cap:n=1,h=8,w=8,ci=8,co=8,kernel=3,stride=1,pad=1",
        "nrm:b=1,m=8,n=8",
        "convlayer:n=1,h=8,w=8,ci=8,co=8,kernel=3,stride=1,pad=1",
        "tbg:b=1,seq=8,heads=2,dim=8",
        "matmul:n=8,m=8,k=8",
        "dense:n=1,in=8,out=8",
        "softmax:m=8,n=8",
        "maxpool:n=1,h=8,w=8,c=8,kernel=3,stride=2,pad=1",
        "maxpool-nchw:n=1,h=8,w=8,c=8,pad=1",
        "avgpool:n=1,h=8,w=8,c=8",
        "avgpool-nchw:n=1,h=8,w=8,c=8",
        "c2d-nchw:n=1,h=8,w=8,ci=8,co=8,kernel=3,stride=1,pad=1",
    ];
    let mut g = Gen(7);
    let mut ok = 0;
    for _ in 0..10_000 {
        let template = g.pick(&templates);
        let (op, rest) = template.split_once(':').unwrap_or((template, ""));
        let mut parts: Vec<String> = Vec::new();
        for part in rest.split(',') {
            let key = part.split_once('=').map_or(part, |(k, _)| k);
            match g.below(24) {
                0 => {}
                1 => parts.push(format!("{key}=x")),
                2 => parts.push(key.to_string()),
                3 => parts.push(format!("{key}=99999999999999999999999")),
                4..=6 => parts.push(format!("{key}={}", g.int())),
                7 => {
                    parts.push(part.to_string());
                    parts.push(part.to_string());
                }
                8 => parts.push(format!("zz={}", g.int())),
                _ => parts.push(part.to_string()),
            }
        }
        let spec = match g.below(40) {
            0 => parts.join(","),
            1 => op.to_string(),
            _ => format!("{op}:{}", parts.join(",")),
        };
        if let Ok(w) = tessel_workloads::lookup(&spec) {
            ok += 1;
            let _ = limits::check_workload(&w.dag);
            let _ = w.dag.flop_count();
        }
    }
    assert!(ok > 1_000, "too few specs were valid: {ok}");
}

fn random_json(g: &mut Gen, depth: u32) -> Value {
    match g.below(if depth > 2 { 7 } else { 9 }) {
        0 => Value::Null,
        1 => json!(g.chance(0.5)),
        2 => json!(g.int()),
        3 => json!(*g.pick(&[-1.0, 0.0, 1e-300, 1e300, -0.0, 0.5, 1e-3])),
        4 => json!(u64::MAX),
        5 => json!(g.pick(&["", "1", "local", "\u{0}", "ok"]).to_string()),
        6 => json!(g.below(3)),
        7 => Value::Array((0..g.below(4)).map(|_| random_json(g, depth + 1)).collect()),
        _ => {
            let mut m = serde_json::Map::new();
            for _ in 0..g.below(3) {
                m.insert(
                    g.pick(&["v", "costs", "x", "median"]).to_string(),
                    random_json(g, depth + 1),
                );
            }
            Value::Object(m)
        }
    }
}

/// Every path to a leaf of `v`, as keys and indices.
fn paths(v: &Value, prefix: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                prefix.push(json!(k));
                out.push(prefix.clone());
                paths(x, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(xs) => {
            for (i, x) in xs.iter().enumerate() {
                prefix.push(json!(i));
                out.push(prefix.clone());
                paths(x, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn set_path(v: &mut Value, path: &[Value], new: Value) {
    let mut cur = v;
    for p in path {
        cur = match (p, cur) {
            (Value::String(k), Value::Object(m)) => match m.get_mut(k) {
                Some(x) => x,
                None => return,
            },
            (Value::Number(i), Value::Array(xs)) => {
                match i.as_u64().and_then(|i| xs.get_mut(i as usize)) {
                    Some(x) => x,
                    None => return,
                }
            }
            _ => return,
        };
    }
    *cur = new;
}

#[test]
fn ten_thousand_records_lines_never_panic_and_accepted_costs_are_sane() {
    let w = tessel_workloads::lookup("gmm:b=1,n=16,m=16,k=16").expect("spec");
    let dag = Arc::new(w.dag.clone());
    let state = testing::random_state(&dag, &mut rng::seeded(3), &testing::Limits::default());
    let c = Candidate::from_state(&w, &state);
    let result = MeasureResult {
        timing: Timing::from_costs(vec![1e-3, 1.1e-3, 0.9e-3], 10),
        error: None,
        phases: PhaseTimes::default(),
    };
    let good = Record::new(
        &c,
        &result,
        &MeasureOptions::with_threads(1),
        &Target::host(),
    );
    // A fixed timestamp: the line's length, and so every mutation below, must not depend on
    // the clock.
    let good = Record {
        timestamp: 1.7e9,
        ..good
    };
    let base: Value = serde_json::from_str(&good.to_line()).expect("json");
    let mut all_paths = Vec::new();
    paths(&base, &mut Vec::new(), &mut all_paths);
    let mut g = Gen(1);
    let mut bytes = Vec::new();
    for _ in 0..10_000 {
        let mut v = base.clone();
        for _ in 0..1 + g.below(3) {
            let path = g.pick(&all_paths).clone();
            let new = random_json(&mut g, 0);
            set_path(&mut v, &path, new);
        }
        let mut line = v.to_string().into_bytes();
        match g.below(10) {
            // Cut, but never to nothing: an empty line is no record and no problem.
            0 => line.truncate(1 + g.below(line.len().max(2) as u64 - 1) as usize),
            1 => {
                let k = g.below(line.len() as u64) as usize;
                line[k] = match g.below(256) as u8 {
                    b'\n' => b'x',
                    b => b,
                };
            }
            _ => {}
        }
        bytes.extend_from_slice(&line);
        bytes.push(b'\n');
    }
    let log = parse_records(&bytes);
    assert_eq!(log.records.len() + log.problems.len(), 10_000);
    assert!(log.problems.len() > 5_000, "most mutated lines are refused");
    for r in &log.records {
        if let Some(t) = &r.timing {
            assert!(t.median.is_finite() && t.median > 0.0, "{t:?}");
            assert!(t.costs.iter().all(|c| c.is_finite() && *c > 0.0), "{t:?}");
        }
        // An accepted line replays or is refused as an invalid schedule, never a panic.
        if limits::check_steps(&r.steps).is_ok() {
            let _ = State::replay(dag.clone(), &r.steps);
        }
    }
    for p in &log.problems {
        assert!(!p.reason.is_empty());
    }
}
