//! Offline replay of the task scheduler on recorded tuning runs of a network: how the
//! estimated network latency `Σ weight × best` falls with the trials spent, for round-robin
//! and for the gradient strategy, without measuring anything.
//!
//! ```text
//! cargo run --release -p tessel-search --example schedule_replay -- \
//!     --records /work/bench2/r50-grad.jsonl --records /work/bench2/r50-rr2.jsonl \
//!     [--network resnet50] [--batch 1] [--trials 5400] [--at 1728,2500,3000,3780,5400] \
//!     [--alpha 0.2] [--beta 2] [--window 3] [--forward-power 2] [--per-round 64] [--seed 0] \
//!     [--round-floor 0.85] [--group-room true] [--rounds]
//! ```
//!
//! Each task's curve is the list of latencies the records hold for its workload, in
//! measurement order, taken from the file that gave the task the most trials (the files are
//! expected to share their warm-up, e.g. one run resumed from the first rounds of another).
//! The real [`TaskScheduler`] is run with a fake measurer that hands a task the next recorded
//! latencies of its curve, in order, whatever programs the task's session proposes (the
//! sessions search a small stand-in matmul to have programs to propose, and a fixed hash
//! stands in for the cost model). Replayed: round-robin, Ansor's gradient (forward power 1,
//! no exploration floor, no group room), the gradient with `--forward-power` (default: the
//! scheduler's) alone and, when `--round-floor` is not 0 or `--group-room` is true
//! (defaults: the scheduler's), with them. Round-robin's final estimate is the target whose
//! reach is reported, also for a clairvoyant allocation (the fewest whole rounds after the
//! warm-up that reach it, knowing every curve); the per-task table compares round-robin with
//! the last strategy.
//!
//! Limitations: past its recorded trials a task's curve is flat (its measurements fail), so a
//! strategy is not credited for trials beyond what some recorded run gave a task; the curves
//! are one noisy realisation each; and the shared cost model's cross-task effect (trials of
//! one task training the model that searches the others) is ignored.

use std::collections::HashMap;
use std::sync::Arc;
use tessel_ir::dag::fnv1a;
use tessel_ir::State;
use tessel_search::evolution::{state_key, EvolutionParams};
use tessel_search::scheduler::*;
use tessel_search::tuner::*;
use tessel_sketch::{generate_sketches, HardwareParams};
use tessel_workloads::networks;

/// The programs the sessions search: any workload with a large schedule space will do.
const STAND_IN: &str = "gmm:b=1,n=128,m=128,k=128";

/// Scores are a fixed hash of the step log.
struct HashScorer;

impl Scorer for HashScorer {
    fn predict(&mut self, states: &[State]) -> Vec<f32> {
        states
            .iter()
            .map(|s| (fnv1a(state_key(s).as_bytes()) % 1000) as f32 / 1000.0)
            .collect()
    }
    fn update(&mut self, _states: &[State], _throughputs: &[f32]) {}
}

struct Options {
    records: Vec<String>,
    network: String,
    batch: i64,
    trials: usize,
    at: Vec<usize>,
    per_round: usize,
    alpha: f64,
    beta: f64,
    window: usize,
    seed: u64,
    rounds: bool,
    power: f64,
    floor: f64,
    room: bool,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        records: Vec::new(),
        network: "resnet50".into(),
        batch: 1,
        trials: 5400,
        at: vec![1728, 2500, 3000, 3780, 5400],
        per_round: 64,
        alpha: 0.2,
        beta: 2.0,
        window: 3,
        seed: 0,
        rounds: false,
        power: SchedulerParams::default().forward_power,
        floor: SchedulerParams::default().round_floor,
        room: SchedulerParams::default().group_room,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let flag = args[i].as_str();
        if flag == "--rounds" {
            o.rounds = true;
            i += 1;
            continue;
        }
        let value = args
            .get(i + 1)
            .ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag {
            "--records" => o.records.push(value.clone()),
            "--network" => o.network = value.clone(),
            "--batch" => o.batch = value.parse().map_err(|e| bad(&e))?,
            "--trials" => o.trials = value.parse().map_err(|e| bad(&e))?,
            "--per-round" => o.per_round = value.parse().map_err(|e| bad(&e))?,
            "--alpha" => o.alpha = value.parse().map_err(|e| bad(&e))?,
            "--beta" => o.beta = value.parse().map_err(|e| bad(&e))?,
            "--window" => o.window = value.parse().map_err(|e| bad(&e))?,
            "--forward-power" => o.power = value.parse().map_err(|e| bad(&e))?,
            "--round-floor" => o.floor = value.parse().map_err(|e| bad(&e))?,
            "--group-room" => o.room = value.parse().map_err(|e| bad(&e))?,
            "--seed" => o.seed = value.parse().map_err(|e| bad(&e))?,
            "--at" => {
                o.at = value
                    .split(',')
                    .map(|s| s.parse().map_err(|e| bad(&e)))
                    .collect::<Result<_, _>>()?
            }
            _ => return Err(format!("unknown option {flag}")),
        }
        i += 2;
    }
    if o.records.is_empty() {
        return Err("give at least one --records FILE".into());
    }
    Ok(o)
}

/// Per workload, the recorded latencies (`None`: failed) of the file with the most of them.
fn curves(files: &[String]) -> Result<HashMap<String, Vec<Option<f64>>>, String> {
    let mut best: HashMap<String, Vec<Option<f64>>> = HashMap::new();
    for f in files {
        let log = tessel_measure::records::read_records(f).map_err(|e| format!("{f}: {e}"))?;
        let mut here: HashMap<String, Vec<Option<f64>>> = HashMap::new();
        for r in &log.records {
            here.entry(r.key.workload.clone())
                .or_default()
                .push(r.cost());
        }
        for (w, c) in here {
            let slot = best.entry(w).or_default();
            if c.len() > slot.len() {
                *slot = c;
            }
        }
    }
    Ok(best)
}

/// One task of the replay.
struct Task {
    name: String,
    weight: f64,
    flop: u64,
    tag: &'static str,
    curve: Vec<Option<f64>>,
}

fn replay(tasks: &[Task], params: SchedulerParams) -> SchedulerResult {
    let hw = HardwareParams::with_cores(2);
    let dag = Arc::new(tessel_workloads::lookup(STAND_IN).expect("stand-in").dag);
    let sketches = generate_sketches(&dag, &hw).expect("sketches");
    let mut scorer = HashScorer;
    let specs: Vec<TaskSpec> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let p = TuneParams {
                trials: usize::MAX,
                evolution: EvolutionParams {
                    population: 128,
                    ..EvolutionParams::default()
                },
                seed: i as u64,
                ..TuneParams::default()
            };
            let session = Tuner::new(dag.clone(), sketches.clone(), hw.clone())
                .params(p)
                .start(&mut scorer);
            TaskSpec::new(&t.name, t.weight, t.flop, session).with_tag(t.tag)
        })
        .collect();
    let mut next = vec![0usize; tasks.len()];
    let mut measurer = |task: usize, states: &[State]| -> Vec<Measurement> {
        states
            .iter()
            .map(|_| {
                let seconds = tasks[task].curve.get(next[task]).copied().flatten();
                next[task] += 1;
                Measurement {
                    seconds,
                    error: seconds.is_none().then(|| {
                        MeasureError::new(ErrorClass::WorkerLost, "failed or past the records")
                    }),
                    compile_seconds: 0.0,
                }
            })
            .collect()
    };
    let mut sched = TaskScheduler::new(specs, params).expect("scheduler");
    sched.run(&mut measurer, &mut scorer)
}

/// A task's best latency after each round of `per_round` of its recorded trials (`∞` while
/// none is valid), from its warm-up round on.
fn best_by_round(curve: &[Option<f64>], per_round: usize) -> Vec<f64> {
    let mut best = f64::INFINITY;
    curve
        .chunks(per_round.max(1))
        .map(|round| {
            best = round.iter().flatten().fold(best, |b, &s| b.min(s));
            best
        })
        .collect()
}

/// The fewest trials after which some allocation of whole rounds, knowing every curve in
/// advance, has an estimate of at most `target`: the warm-up (one round per task) and the
/// fewest further rounds (a knapsack over the tasks' recorded rounds); `None` when even all
/// recorded rounds do not reach it.
fn clairvoyant(tasks: &[Task], per_round: usize, target: f64) -> Option<usize> {
    // best[r]: the lowest estimate with r rounds after the warm-up.
    let mut best = vec![0.0f64];
    for t in tasks {
        let curve = best_by_round(&t.curve, per_round);
        if curve.is_empty() {
            return None;
        }
        let mut next = vec![f64::INFINITY; best.len() + curve.len() - 1];
        for (r, &b) in best.iter().enumerate() {
            for (k, &g) in curve.iter().enumerate() {
                next[r + k] = next[r + k].min(b + t.weight * g);
            }
        }
        best = next;
    }
    best.iter()
        .position(|&e| e <= target * (1.0 + 1e-12))
        .map(|r| (tasks.len() + r) * per_round)
}

/// The estimate after the last round ending at or before `trials`.
fn estimate_at(r: &SchedulerResult, trials: usize) -> Option<f64> {
    r.history
        .iter()
        .take_while(|h| h.trials <= trials)
        .filter_map(|h| h.objective)
        .last()
}

/// Trials after the first round whose estimate is at most `target`.
fn reach(r: &SchedulerResult, target: f64) -> Option<usize> {
    r.history
        .iter()
        .find(|h| h.objective.is_some_and(|o| o <= target * (1.0 + 1e-12)))
        .map(|h| h.trials)
}

fn main() -> Result<(), String> {
    let o = options()?;
    let net = networks::lookup(&o.network, o.batch).map_err(|e| e.to_string())?;
    let all = curves(&o.records)?;
    let tasks: Vec<Task> = networks::extract_tasks(&net)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|t| {
            let key = format!("{}@{}/{}", o.network, o.batch, t.name);
            Task {
                curve: all.get(&key).cloned().unwrap_or_default(),
                weight: t.weight as f64,
                flop: t.flop(),
                tag: t.anchor_kind,
                name: t.name,
            }
        })
        .collect();
    println!(
        "{} tasks; recorded trials per task: {:?}",
        tasks.len(),
        tasks.iter().map(|t| t.curve.len()).collect::<Vec<_>>()
    );
    let base = SchedulerParams {
        total_trials: o.trials,
        measures_per_round: o.per_round,
        alpha: o.alpha,
        beta: o.beta,
        backward_window: o.window,
        seed: o.seed,
        ..SchedulerParams::default()
    };
    let mut runs = Vec::new();
    // (name, strategy, forward power, exploration floor, group room)
    let gradient = |name: String, power: f64, floor: f64, room: bool| {
        (name, Strategy::Gradient, power, floor, room)
    };
    let mut variants = vec![
        (
            "round-robin".to_string(),
            Strategy::RoundRobin,
            1.0,
            0.0,
            false,
        ),
        gradient("ansor p=1".into(), 1.0, 0.0, false),
    ];
    if o.power != 1.0 {
        variants.push(gradient(format!("p={}", o.power), o.power, 0.0, false));
    }
    if o.floor != 0.0 || o.room {
        let name = format!(
            "p={} f={}{}",
            o.power,
            o.floor,
            if o.room { " room" } else { "" }
        );
        variants.push(gradient(name, o.power, o.floor, o.room));
    }
    for (name, strategy, forward_power, round_floor, group_room) in variants {
        let r = replay(
            &tasks,
            SchedulerParams {
                strategy,
                forward_power,
                round_floor,
                group_room,
                ..base.clone()
            },
        );
        runs.push((name, r));
    }
    let last = runs.len() - 1;
    let target = runs[0].1.estimated_seconds.unwrap_or(f64::NAN);
    let per_round = o.per_round.min(o.trials / tasks.len().max(1)).max(1);
    println!(
        "clairvoyant (whole rounds, every curve known in advance) reaches RR's final at {}",
        clairvoyant(&tasks, per_round, target).map_or("never".into(), |c| format!(
            "{c} trials ({:.2}× {})",
            c as f64 / o.trials as f64,
            o.trials
        ))
    );
    print!("{:<18}", "strategy");
    for t in &o.at {
        print!(" {:>9}", format!("@{t}"));
    }
    println!("  reaches RR's final {:.3} ms at", target * 1e3);
    for (s, r) in &runs {
        print!("{s:<18}");
        for &t in &o.at {
            let e = estimate_at(r, t).map_or("-".into(), |e| format!("{:.3}", e * 1e3));
            print!(" {e:>9}");
        }
        let hit = reach(r, target);
        // Trials a strategy spent past a task's records: flat by construction.
        let past: usize = r
            .tasks
            .iter()
            .zip(&tasks)
            .map(|(rt, t)| rt.trials.saturating_sub(t.curve.len()))
            .sum();
        println!(
            "  {}; {past} trials past the records",
            hit.map_or("never".into(), |h| format!(
                "{h} trials ({:.2}× {})",
                h as f64 / o.trials as f64,
                o.trials
            ))
        );
    }
    println!(
        "\n{:>3} {:>6} {:>9} {:>9} {:>9}   {:>9} {:>9}  task",
        "#", "weight", "recorded", "rr", "last", "rr ms", "last ms"
    );
    for (i, t) in tasks.iter().enumerate() {
        let (a, b) = (&runs[0].1.tasks[i], &runs[last].1.tasks[i]);
        let ms = |x: Option<f64>| x.map_or("-".into(), |s| format!("{:.4}", s * 1e3));
        println!(
            "{i:>3} {:>6} {:>9} {:>9} {:>9}   {:>9} {:>9}  {}",
            t.weight,
            t.curve.len(),
            a.trials,
            b.trials,
            ms(a.best_seconds),
            ms(b.best_seconds),
            t.name.chars().take(48).collect::<String>()
        );
    }
    if o.rounds {
        let order: Vec<usize> = runs[last]
            .1
            .history
            .iter()
            .filter(|h| !h.warmup)
            .map(|h| h.task)
            .collect();
        println!("\n{}'s rounds after the warm-up: {order:?}", runs[last].0);
    }
    Ok(())
}
