//! Behaviour preservation of `tessel experiment` (issue #27; moved here from the search
//! crate's `tests/behaviour.rs` with the experiment): with a deterministic
//! fake runner and the real cost model, the same seed gives the same candidates, in the same
//! order, as before the tuning job was introduced. Each test pins a digest (FNV-1a over the
//! step logs of every measured candidate, in measurement order) taken from the code before
//! the change; a change of search behaviour changes the digest.
//!
//! The set-up mirrors the driver's wiring: the baseline and `both` configurations in
//! lockstep over one tuning job.

use std::sync::Arc;
use tessel_search::testing::{LoggingMeasurer, PINNED_TRIALS};

/// The deterministic fake runner of the behaviour tests.
type FakeRunner = LoggingMeasurer;

const GMM: &str = "gmm:b=1,n=32,m=32,k=64";

fn dag(spec: &str) -> Arc<tessel_ir::ComputeDag> {
    Arc::new(tessel_workloads::lookup(spec).expect("spec").dag)
}

/// The set-up, written as the driver wires it: over one tuning job.
mod setups {
    use super::*;
    use tessel_experiment::runs::{run_lockstep, Config, RunParts};
    use tessel_search::testing::pinned_job as job;

    /// `tessel experiment SPEC --configs baseline,both --seeds 1 --no-cache`:
    /// the fake runners of the two configurations.
    pub fn experiment(spec: &str, seed: u64) -> (FakeRunner, FakeRunner) {
        let job = job("baseline", PINNED_TRIALS, 0).with_seed(seed);
        let problem = job.problem(dag(spec)).expect("sketches");
        let (mut a, mut b) = (FakeRunner::default(), FakeRunner::default());
        let (mut sa, mut sb) = (job.scorer(seed), job.scorer(seed));
        let mut parts = [
            RunParts {
                config: Config::Baseline,
                measurer: &mut a,
                scorer: &mut sa,
            },
            RunParts {
                config: Config::Both,
                measurer: &mut b,
                scorer: &mut sb,
            },
        ];
        run_lockstep(&job, &problem, &mut parts, None);
        (a, b)
    }
}

#[test]
fn experiment_baseline_and_both_are_unchanged() {
    let (baseline, both) = setups::experiment(GMM, 1);
    assert_eq!(baseline.digest(), (144, 10591327427349787194), "baseline");
    assert_eq!(both.digest(), (144, 10809888868521849653), "both");
}
