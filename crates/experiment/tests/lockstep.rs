//! `run_lockstep`: the configurations of one seed advance one round each in turn, find what
//! they would find alone, and each run's clock counts only its own rounds.

mod common;

use common::FakeScorer;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tessel_experiment::runs::{run_lockstep, run_traced, Config, Problem, RunParts};
use tessel_ir::dag::fnv1a;
use tessel_ir::State;
use tessel_search::evolution::{state_key, EvolutionParams};
use tessel_search::tuner::{Measurement, Measurer, TuneParams};

/// Times are a fixed function of the step log. Every batch is logged (with its config) in a
/// log shared by all measurers, and takes at least `pause`.
struct LoggingMeasurer {
    config: Config,
    log: Rc<RefCell<Vec<Config>>>,
    pause: Duration,
    batches: usize,
}

impl Measurer for LoggingMeasurer {
    fn measure(&mut self, states: &[State]) -> Vec<Measurement> {
        self.log.borrow_mut().push(self.config);
        self.batches += 1;
        std::thread::sleep(self.pause);
        states
            .iter()
            .map(|s| Measurement {
                seconds: Some(1e-3 * (1.0 + (fnv1a(state_key(s).as_bytes()) % 1000) as f64)),
                error: None,
                compile_seconds: 0.0,
            })
            .collect()
    }
}

fn problem() -> Problem {
    let (dag, sketches, hw) = common::problem_parts("gmm:b=1,n=64,m=64,k=64");
    Problem { dag, sketches, hw }
}

fn params() -> TuneParams {
    TuneParams {
        trials: 96,
        measures_per_round: 16,
        evolution: EvolutionParams {
            population: 64,
            ..EvolutionParams::default()
        },
        seed: 3,
        ..TuneParams::default()
    }
}

#[test]
fn lockstep_runs_alternate_rounds_find_what_they_find_alone_and_keep_their_own_clocks() {
    let p = problem();
    let configs = [Config::Baseline, Config::Both];
    let log: Rc<RefCell<Vec<Config>>> = Rc::default();
    let pause = Duration::from_millis(3);
    let mut measurers: Vec<LoggingMeasurer> = configs
        .iter()
        .map(|&config| LoggingMeasurer {
            config,
            log: Rc::clone(&log),
            // Only the baseline's measurements take time.
            pause: if config == Config::Baseline {
                pause
            } else {
                Duration::ZERO
            },
            batches: 0,
        })
        .collect();
    let mut scorers: Vec<FakeScorer> = configs.iter().map(|_| FakeScorer::default()).collect();
    let mut parts: Vec<RunParts> = measurers
        .iter_mut()
        .zip(scorers.iter_mut())
        .map(|(m, s)| RunParts {
            config: m.config,
            measurer: m,
            scorer: s,
        })
        .collect();
    let start = Instant::now();
    let traces = run_lockstep(&common::job(params()), &p, &mut parts, None);
    let elapsed = start.elapsed().as_secs_f64();
    drop(parts);

    // Round by round: the log never shows one config's round twice before the other's
    // (a round may measure twice: both's first round probes every sketch first).
    let rounds: Vec<usize> = traces.iter().map(|t| t.rounds.len()).collect();
    assert!(rounds.iter().all(|&r| r >= 3), "{rounds:?}");
    let mut switches = 0;
    for w in log.borrow().windows(2) {
        switches += usize::from(w[0] != w[1]);
    }
    let shorter = *rounds.iter().min().expect("two runs");
    assert!(
        switches >= 2 * shorter - 1,
        "{switches} switches over rounds {rounds:?}: {:?}",
        log.borrow()
    );

    // Without a shared cache, each run finds exactly what it finds alone.
    for (trace, &config) in traces.iter().zip(&configs) {
        assert_eq!(trace.config, config);
        let mut alone = LoggingMeasurer {
            config,
            log: Rc::default(),
            pause: Duration::ZERO,
            batches: 0,
        };
        let solo = run_traced(
            &common::job(params()),
            &p,
            config,
            &mut alone,
            &mut FakeScorer::default(),
            None,
        );
        assert_eq!(trace.trials, solo.trials, "{}", config.name());
        assert_eq!(trace.best_steps, solo.best_steps, "{}", config.name());
        let bests = |t: &tessel_experiment::runs::RunTrace| -> Vec<Option<f64>> {
            t.rounds.iter().map(|r| r.best_seconds).collect()
        };
        assert_eq!(bests(trace), bests(&solo), "{}", config.name());
    }

    // Clocks: the baseline's counts its own pauses, and the two never overlap.
    let (base, both) = (&traces[0], &traces[1]);
    let paused = measurers[0].batches as f64 * pause.as_secs_f64();
    assert!(
        base.wall_seconds >= paused,
        "{} < {paused}",
        base.wall_seconds
    );
    assert!(
        base.wall_seconds + both.wall_seconds <= elapsed,
        "{} + {} > {elapsed}",
        base.wall_seconds,
        both.wall_seconds
    );
    for t in &traces {
        assert!(t.rounds.windows(2).all(|w| w[0].seconds <= w[1].seconds));
        assert!(t.rounds.last().is_some_and(|r| r.seconds <= t.wall_seconds));
    }
}
