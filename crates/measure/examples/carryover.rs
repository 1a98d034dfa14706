//! Does a worker that has measured a search's earlier candidates read a program faster than a
//! fresh worker does?
//!
//! `cargo run --release -p tessel-measure --example carryover -- <tessel binary> <records.jsonl>
//! <index> [--rounds N]` takes record `index` of a search's records file (the program in
//! question) and, `N` times: starts a worker (`<tessel binary> worker`), measures every
//! record before `index` in batches of 4 as the search did, then the program; and starts
//! another worker that measures only the program. It prints both readings per round, so that
//! host drift hits them alike. `docs/measurement.md` holds what it showed.

use tessel_measure::records::read_records;
use tessel_measure::runner::{LocalWorkerRunner, Runner, WorkerCommand};
use tessel_measure::MeasureOptions;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [exe, path, index, rest @ ..] = args.as_slice() else {
        return Err("usage: carryover <tessel binary> <records.jsonl> <index> [--rounds N]".into());
    };
    let index: usize = index.parse().map_err(|e| format!("index: {e}"))?;
    let rounds: usize = match rest {
        [flag, n] if flag == "--rounds" => n.parse().map_err(|e| format!("--rounds: {e}"))?,
        [] => 3,
        _ => return Err("unexpected arguments".into()),
    };
    let log = read_records(path).map_err(|e| e.to_string())?;
    let records = log.records;
    let target = records.get(index).ok_or("index past the end of the file")?;
    let options = MeasureOptions::with_threads(target.key.codegen.threads);
    let program = target.candidate();
    let before: Vec<_> = records[..index].iter().map(|r| r.candidate()).collect();
    let read = |runner: &mut LocalWorkerRunner| -> String {
        match runner.measure(std::slice::from_ref(&program)).pop() {
            Some(r) => match r.timing {
                Some(t) => format!("{:.4}", t.median * 1e3),
                None => format!("error {:?}", r.error),
            },
            None => "no result".into(),
        }
    };
    println!("round  after-{index}-candidates_ms  fresh-worker_ms");
    for round in 1..=rounds {
        let mut warm =
            LocalWorkerRunner::new(WorkerCommand::new(exe, &["worker"]), options.clone());
        for batch in before.chunks(4) {
            warm.measure(batch);
        }
        let after = read(&mut warm);
        drop(warm);
        let mut fresh =
            LocalWorkerRunner::new(WorkerCommand::new(exe, &["worker"]), options.clone());
        let alone = read(&mut fresh);
        println!("{round:5}  {after:>24}  {alone:>15}");
    }
    Ok(())
}
