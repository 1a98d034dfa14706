//! The end of a search: its fastest programs measured again in a fresh worker, side by side.
//!
//! A search keeps the fastest reading of hundreds of candidates, many of them near-equal
//! programs, each read once on a machine whose speed changes from minute to minute: its best
//! is partly the luckiest reading. TVM ends a tune with a final re-measurement for that
//! reason; so does Tessel. [`confirm_leaders`] takes the search's fastest distinct programs
//! ([`crate::tuner::TuneResult::leaders`]), measures them `rounds` times in batches that
//! interleave them (each round starts one place later, so every program takes every position),
//! each round with the next of the runners the caller starts fresh (new worker processes:
//! nothing carried over from the search's worker, and each round's buffers on other physical
//! pages: a memory-bound kernel such as dep-1 reads up to ±7 % apart from one placement to the
//! next, `docs/measurement.md`), pools each program's repeats over the rounds, and ranks them
//! by the pooled median. A program that fails in any round (wrong answer, crash, time-out) loses its
//! place. Picking the fastest of several near-equal medians is itself a selection that favours
//! a lucky one, so the figure reported is measured **after** the choice: the winner alone, in
//! `reporting` more fresh workers (and if it fails there, the next one is). That figure is
//! appended to the records as a [`Record::confirmed`] record, which `tessel records best` and
//! a resumed search then trust over the search's readings.
//!
//! ```
//! use std::sync::Arc;
//! use tessel_measure::{Candidate, MeasureOptions, MeasureResult, Runner, Timing};
//! use tessel_search::confirm::{confirm_leaders, FinalConfirm};
//!
//! /// Every program takes 2 ms in the fresh worker.
//! struct TwoMs(MeasureOptions);
//! impl Runner for TwoMs {
//!     fn measure(&mut self, batch: &[Candidate]) -> Vec<MeasureResult> {
//!         batch.iter().map(|_| MeasureResult {
//!             timing: Timing::from_costs(vec![2e-3; 3], 1),
//!             error: None,
//!             phases: Default::default(),
//!         }).collect()
//!     }
//!     fn options(&self) -> &MeasureOptions { &self.0 }
//!     fn name(&self) -> &'static str { "two-ms" }
//! }
//!
//! let w = tessel_workloads::lookup("gmm:b=1,n=8,m=8,k=8").unwrap();
//! let naive = tessel_ir::State::new(Arc::new(w.dag.clone()));
//! // The search read 1 ms (a lucky reading); the fresh worker says 2 ms.
//! let mut runners: Vec<Box<dyn Runner>> = vec![Box::new(TwoMs(MeasureOptions::default()))];
//! // Every round (3 ranking, 5 reporting) on that one runner.
//! let c = confirm_leaders(&w, &[(naive, 1e-3)], &mut runners, FinalConfirm::default(), None);
//! let best = c.best().unwrap();
//! assert_eq!((best.search_seconds, best.seconds), (1e-3, Some(2e-3)));
//! ```

use crate::evolution::state_key;
use std::collections::HashSet;
use tessel_ir::State;
use tessel_measure::{
    Candidate, ErrorClass, MeasureError, MeasureResult, Record, RecordWriter, Runner, Target,
};
use tessel_workloads::Workload;

/// How many of a search's fastest programs are confirmed, and how often.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FinalConfirm {
    /// The fastest distinct programs re-measured; 0 turns the confirmation off.
    pub top: usize,
    /// Interleaved ranking rounds: each program is measured this many times.
    pub rounds: usize,
    /// Measurements of the winner alone, after the ranking: the figure reported.
    pub reporting: usize,
}

impl FinalConfirm {
    /// No final confirmation: the search's own readings stand.
    pub const OFF: FinalConfirm = FinalConfirm {
        top: 0,
        rounds: 0,
        reporting: 0,
    };

    /// True when programs are confirmed.
    pub fn is_on(&self) -> bool {
        self.top > 0 && self.rounds > 0
    }

    /// Fresh runners the confirmation can use, one per round (ranking and reporting).
    pub fn runners(&self) -> usize {
        if self.is_on() {
            self.rounds + self.reporting
        } else {
            0
        }
    }
}

impl Default for FinalConfirm {
    /// The 5 fastest programs, 3 ranking rounds each, then the winner 5 more times: 20
    /// measurements in 8 fresh workers, about a third of one search round. (Five reporting
    /// workers because a worker's speed is itself a draw: AVX-512 kernels ran about 10 %
    /// slower in some processes than in others, `docs/measurement.md`.)
    fn default() -> FinalConfirm {
        FinalConfirm {
            top: 5,
            rounds: 3,
            reporting: 5,
        }
    }
}

/// One program of a confirmation.
#[derive(Clone, Debug)]
pub struct ConfirmedProgram {
    /// The program.
    pub state: State,
    /// What the search read for it (seconds).
    pub search_seconds: f64,
    /// The median of its repeats over every round (seconds); `None` when a round failed.
    pub seconds: Option<f64>,
    /// Each round's median (`None` for a failed round).
    pub rounds: Vec<Option<f64>>,
    /// Why it failed, when it did.
    pub error: Option<MeasureError>,
}

/// What a confirmation found.
#[derive(Clone, Debug, Default)]
pub struct Confirmation {
    /// The ranking: every program with its ranking rounds, fastest first, failed ones last.
    pub programs: Vec<ConfirmedProgram>,
    /// The winner measured again after the ranking (its `seconds` and `rounds` are the
    /// reporting rounds'): the figure to report. `None` when every program failed.
    pub reported: Option<ConfirmedProgram>,
    /// A problem writing the confirmation record, if any (the figures are still here).
    pub write_error: Option<String>,
}

impl Confirmation {
    /// The program to report, with the figure measured after it was chosen.
    pub fn best(&self) -> Option<&ConfirmedProgram> {
        self.reported.as_ref().filter(|p| p.seconds.is_some())
    }

    /// Programs that failed a ranking round.
    pub fn failed(&self) -> usize {
        self.programs.iter().filter(|p| p.seconds.is_none()).count()
    }
}

/// Confirms the fastest distinct programs of `leaders` (a search's programs with its readings,
/// fastest first) on `workload`, as `how` says. Ranking round `r` is measured by
/// `runners[r % n]` and reporting round `r` by `runners[(how.rounds + r) % n]`: give it
/// [`FinalConfirm::runners`] fresh ones (new workers) so that every round sees another
/// process. Appends the reported program's [`Record::confirmed`] record to `writer`.
/// Programs that fail (and a runner that cannot run at all fails every program) are
/// reported in the result; no runner, no confirmation.
pub fn confirm_leaders(
    workload: &Workload,
    leaders: &[(State, f64)],
    runners: &mut [Box<dyn Runner>],
    how: FinalConfirm,
    writer: Option<&mut RecordWriter>,
) -> Confirmation {
    if !how.is_on() || runners.is_empty() {
        return Confirmation::default();
    }
    let mut seen = HashSet::new();
    let picked: Vec<&(State, f64)> = leaders
        .iter()
        .filter(|(s, _)| seen.insert(state_key(s)))
        .take(how.top)
        .collect();
    let candidates: Vec<Candidate> = picked
        .iter()
        .map(|(s, _)| Candidate::from_state(workload, s))
        .collect();
    let ranked = measure_rounds(&candidates, runners, 0, how.rounds);
    let mut programs: Vec<ConfirmedProgram> = picked
        .iter()
        .zip(&ranked)
        .map(|(&(state, search_seconds), (result, rounds))| {
            program(state, *search_seconds, result, rounds)
        })
        .collect();
    programs.sort_by(|a, b| match (a.seconds, b.seconds) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    // The winner, measured again; the next one if it fails there.
    let mut reported = None;
    for p in programs.iter().filter(|p| p.seconds.is_some()) {
        let c = Candidate::from_state(workload, &p.state);
        let mut again = measure_rounds(
            std::slice::from_ref(&c),
            runners,
            how.rounds,
            how.reporting.max(1),
        );
        let (result, rounds) = again.remove(0);
        let mine = program(&p.state, p.search_seconds, &result, &rounds);
        if mine.seconds.is_some() {
            reported = Some((mine, c, result));
            break;
        }
    }
    let mut write_error = None;
    if let (Some(w), Some((_, c, Some(result)))) = (writer, reported.as_ref()) {
        let mut record = Record::new(c, result, runners[0].options(), &Target::host());
        record.confirmed = true;
        if let Err(e) = w.append(&[record]) {
            write_error = Some(e.to_string());
        }
    }
    Confirmation {
        programs,
        reported: reported.map(|(p, _, _)| p),
        write_error,
    }
}

/// A program's confirmation from its pooled result and round medians.
fn program(
    state: &State,
    search_seconds: f64,
    result: &Option<MeasureResult>,
    rounds: &[Option<f64>],
) -> ConfirmedProgram {
    ConfirmedProgram {
        state: state.clone(),
        search_seconds,
        seconds: result
            .as_ref()
            .filter(|r| r.error.is_none())
            .and_then(MeasureResult::median),
        rounds: rounds.to_vec(),
        error: result.as_ref().and_then(|r| r.error.clone()),
    }
}

/// Measures `candidates` in `count` interleaved rounds, round `r` with
/// `runners[(first + r) % n]`, each round starting one place later; per candidate, its
/// pooled result and each round's median.
fn measure_rounds(
    candidates: &[Candidate],
    runners: &mut [Box<dyn Runner>],
    first: usize,
    count: usize,
) -> Vec<(Option<MeasureResult>, Vec<Option<f64>>)> {
    let n = candidates.len();
    let mut out: Vec<(Option<MeasureResult>, Vec<Option<f64>>)> =
        vec![(None, Vec::with_capacity(count)); n];
    for round in 0..if n == 0 { 0 } else { count } {
        let order: Vec<usize> = (0..n).map(|k| (k + round) % n).collect();
        let batch: Vec<Candidate> = order.iter().map(|&k| candidates[k].clone()).collect();
        let runs = runners.len();
        let results = runners[(first + round) % runs].measure(&batch);
        for (pos, &k) in order.iter().enumerate() {
            let result = results
                .get(pos)
                .cloned()
                .unwrap_or_else(|| MeasureResult::error(ErrorClass::WorkerLost, "no result"));
            out[k]
                .1
                .push(result.median().filter(|_| result.error.is_none()));
            pool(&mut out[k].0, result);
        }
    }
    out
}

/// Pools a round's result into a program's ([`MeasureResult::pool`]; the first round's
/// result is taken as it is).
fn pool(into: &mut Option<MeasureResult>, result: MeasureResult) {
    match into.as_mut() {
        Some(acc) => acc.pool(result),
        None => *into = Some(result),
    }
}
