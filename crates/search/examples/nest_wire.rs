//! What it costs a measurement worker to get a candidate's loop nest over the pipe instead of
//! lowering the step log itself (issue #27): for random programs of each workload, the
//! worker's replay and lowering against the JSON bytes of the nest, the parent's encoding,
//! the worker's decoding and the pipe (the lines written through a `cat` child to
//! `/dev/null`).
//!
//! ```text
//! cargo run --release -p tessel-search --example nest_wire -- [--count 200] [gmm-3 c2d-3 ...]
//! ```
//!
//! Prints per workload the medians per candidate (µs), the bytes of a candidate's JSON
//! line without and with its nest, and the memo's estimate of a nest's memory
//! ([`tessel_search::lowering::nest_bytes`]).

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;
use tessel_ir::target::Target;
use tessel_ir::State;
use tessel_measure::Candidate;
use tessel_search::job::{TuneJob, TuneOptions};

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

/// Seconds to write `lines` through a pipe to a `cat` child writing to /dev/null.
fn pipe_seconds(lines: &[String]) -> f64 {
    let mut child = Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("cat");
    let mut stdin = child.stdin.take().expect("stdin");
    let t = Instant::now();
    for l in lines {
        stdin.write_all(l.as_bytes()).expect("write");
        stdin.write_all(b"\n").expect("write");
    }
    stdin.flush().expect("flush");
    drop(stdin);
    child.wait().expect("wait");
    t.elapsed().as_secs_f64()
}

fn main() {
    let mut count = 200usize;
    let mut names = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--count" {
            count = args.next().and_then(|c| c.parse().ok()).expect("--count N");
        } else {
            names.push(a);
        }
    }
    if names.is_empty() {
        names = vec!["gmm-3".into(), "c2d-3".into()];
    }
    let job = TuneJob::new(TuneOptions::new(Target::native()));
    println!(
        "{:<8} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10} {:>10} {:>10}",
        "workload",
        "n",
        "replay",
        "lower",
        "encode",
        "decode",
        "pipe+",
        "ship",
        "bytes",
        "+nest",
        "max+nest",
        "memory"
    );
    for name in &names {
        let w = tessel_workloads::lookup(name).expect("workload");
        let dag = Arc::new(w.dag.clone());
        let problem = job.problem(dag.clone()).expect("sketches");
        let states: Vec<State> = job.sample(&problem, count, 1);
        let (mut replay, mut lower, mut encode, mut decode) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut plain_bytes, mut nest_bytes) = (Vec::new(), Vec::new());
        let mut memory = Vec::new();
        let (mut plain_lines, mut nest_lines) = (Vec::new(), Vec::new());
        for s in &states {
            // The worker without a nest: replay, then lower.
            let t = Instant::now();
            let again = State::replay(dag.clone(), s.steps()).expect("replays");
            replay.push(t.elapsed().as_secs_f64() * 1e6);
            let t = Instant::now();
            let Ok(nest) = tessel_ir::lower::lower(&again) else {
                continue;
            };
            lower.push(t.elapsed().as_secs_f64() * 1e6);
            memory.push(tessel_search::lowering::nest_bytes(&nest) as f64);
            let plain = Candidate::from_state(&w, s);
            let with = plain.clone().with_lowered(Some(Arc::new(nest)));
            let plain_line = serde_json::to_string(&plain).expect("encodes");
            // The parent encodes the candidate with its nest; the worker decodes it.
            let t = Instant::now();
            let line = serde_json::to_string(&with).expect("encodes");
            encode.push(t.elapsed().as_secs_f64() * 1e6);
            let t = Instant::now();
            let back: Candidate = serde_json::from_str(&line).expect("decodes");
            decode.push(t.elapsed().as_secs_f64() * 1e6);
            assert_eq!(back.lowered, with.lowered);
            plain_bytes.push(plain_line.len() as f64);
            nest_bytes.push(line.len() as f64);
            plain_lines.push(plain_line);
            nest_lines.push(line);
        }
        let n = nest_lines.len().max(1) as f64;
        // Pipe: the extra time of the lines with nests over those without, paired A B A B.
        let mut extra = Vec::new();
        for _ in 0..3 {
            let a = pipe_seconds(&plain_lines);
            let b = pipe_seconds(&nest_lines);
            extra.push((b - a) / n * 1e6);
        }
        let pipe = median(&mut extra);
        let (mut ship_parts, max_nest) = (
            Vec::new(),
            nest_bytes.iter().copied().fold(0.0f64, f64::max),
        );
        for k in 0..decode.len() {
            ship_parts.push(encode[k] + decode[k]);
        }
        let ship = median(&mut ship_parts) + pipe;
        println!(
            "{:<8} {:>5} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>10.0} {:>10.0} {:>10.0} {:>10.0}",
            name,
            nest_lines.len(),
            median(&mut replay),
            median(&mut lower),
            median(&mut encode),
            median(&mut decode),
            pipe,
            ship,
            median(&mut plain_bytes),
            median(&mut nest_bytes),
            max_nest,
            median(&mut memory)
        );
    }
    println!(
        "µs per candidate (medians): replay and lower = the worker's work without a nest; \
         encode (parent) + decode (worker) + pipe+ (extra pipe time of the nest) = ship; \
         bytes of the candidate's JSON without and with its nest (median, max); memory: the \
         memo's estimate of a nest (median bytes)"
    );
}
