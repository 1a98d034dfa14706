//! Learned sketch selection (PAPER.md §3): a non-stationary multi-armed bandit per task whose
//! arms are the sketches and whose decision epoch is one search round.
//!
//! Rewards are the best normalized throughput a sketch's programs reached in the round
//! (extreme-value bandit: only the best program matters). Every policy mixes its choice
//! with a uniform floor `ε/K`, so no sketch starves, and uses the uniform distribution for
//! its first `warmup_rounds` rounds.
//!
//! [`DiscountedUcb`] also steers which candidates are *measured*
//! ([`SketchPolicy::measure_shares`]): without it, the cost model alone picks them, and in
//! the first rounds, before the model has learnt anything, a third to a half of the trials
//! go to sketches that are 5× slower than the best (the plain, non-tensorized ones).

use crate::SketchPolicy;
use rand::RngExt;
use serde_json::json;
use tessel_ir::rng::TesselRng;

/// Per-arm evidence gathered in the current round, folded in when the next round starts.
#[derive(Clone, Debug, Default)]
struct RoundBuffer {
    rewards: Vec<Vec<f64>>,
}

impl RoundBuffer {
    fn push(&mut self, sketch: u32, reward: f64, arms: usize) {
        if self.rewards.len() < arms {
            self.rewards.resize(arms, Vec::new());
        }
        if let Some(r) = self.rewards.get_mut(sketch as usize) {
            r.push(reward.clamp(0.0, 1.0));
        }
    }
}

/// Draws `n` arms from the distribution `probs`.
fn draw(probs: &[f64], n: usize, rng: &mut TesselRng) -> Vec<u32> {
    (0..n)
        .map(|_| {
            let mut x = rng.random_range(0.0..1.0);
            for (k, p) in probs.iter().enumerate() {
                if x < *p {
                    return k as u32;
                }
                x -= p;
            }
            (probs.len() - 1) as u32
        })
        .collect()
}

/// Mixes `probs` with the uniform floor `ε/K` (keeps the sum 1).
fn with_floor(probs: &[f64], eps: f64) -> Vec<f64> {
    let k = probs.len() as f64;
    probs.iter().map(|p| (1.0 - eps) * p + eps / k).collect()
}

fn uniform(k: usize) -> Vec<f64> {
    vec![1.0 / k as f64; k]
}

/// Discounted UCB1 that eliminates the arms clearly behind and shares evenly among the
/// rest (the default learned sketch policy).
///
/// Per arm: discounted count `N ← γN + n`, discounted reward sum `S ← γS + Σr`;
/// `U = S/N + c·sqrt(ln ΣN / N)` (`+∞` while `N = 0`). The arms whose `U` is within
/// [`margin`](DiscountedUcb::margin) of the largest stay in; `π = (1-ε)·uniform(in) + ε/K`.
/// Measurement shares follow `π`, the arms that stay in as one pool
/// ([`pool_leaders`](DiscountedUcb::pool_leaders)); the initial population is drawn from
/// `(1-f)·π + f/K` (`f` = [`population_floor`](DiscountedUcb::population_floor), 1 by
/// default: uniformly).
///
/// Why a pool: with a share each, a steered round gave every close sketch the same number
/// of measurements even when the cost model already knew which of them was better (dep-1,
/// round 2: the in-place sketch got 13–24 of 64 measurements steered, 37–51 when the model
/// picked alone). Pooled, the policy only removes the sketches clearly behind, which the
/// model, in its first rounds, does not. Median time to the baseline's final best, both
/// policies ÷ baseline, 1,000 trials × 5 seeds: gmm-3 0.50 → 0.44, c2d-3 0.70 → 0.44
/// (session 9's run against session 10's); dep-1, two runs in a row, not reached by 3 of 5
/// seeds → 0.92 with 3 of 5 reached.
///
/// Why not favour the leader among the arms that stay in: a sketch's early best says little
/// about how far its programs go. In session 9, dep-1's in-place sketch with the padding
/// inside the tile held the fastest programs (72–78 GFLOP/s against 64–66 for the in-place
/// sketch with the padding at the root, which the sketch rules no longer generate),
/// but its random programs are uneven; a softmax over `U` (temperature 0.25) steered the
/// first rounds to whichever led after the probe, and in one run 3 of 5 seeds ended in the
/// slower sketch while the baseline (the cost model alone choosing) ended in the faster one
/// in 5 of 5. What the rewards tell reliably is which sketches are far behind (the plain
/// ones, 2–5× slower).
#[derive(Clone, Debug)]
pub struct DiscountedUcb {
    /// Discount per round (0.9).
    pub gamma: f64,
    /// Exploration weight (0.5).
    pub c: f64,
    /// How far below the largest upper bound an arm's may be and stay in (0.3, in units of
    /// normalized throughput: with equal counts, a sketch whose best is 2× slower than the
    /// best sketch's is out, one 20 % slower is in).
    pub margin: f64,
    /// Uniform floor (0.1).
    pub eps: f64,
    /// Rounds that use the uniform distribution first (0: never-tried arms come first
    /// anyway, and the first round's probe gives every arm evidence).
    pub warmup_rounds: usize,
    /// Rounds whose measured candidates are steered by the same probabilities
    /// ([`SketchPolicy::measure_shares`]): 3, while the cost model is still learning
    /// what the sketches are worth (0 turns steering off).
    pub steer_rounds: usize,
    /// Uniform floor of the *initial population* ([`SketchPolicy::allocate`]) on top of
    /// `eps`: the population is drawn from `(1-f)·π + f/K`. 1.0 (the default): uniformly,
    /// as Ansor does, so the policy steers only what is measured. Population samples are
    /// only scored by the cost model, never measured, so a broad population costs little,
    /// while a skewed one can hide the best sketch from the evolution: a sketch's reward
    /// comes from the few random programs measured so far, and random programs of the best
    /// sketch can be slow. Measured on dep-1 (1,000 trials, 5 seeds, both policies against
    /// the baseline): with a floor of 0.4 and no steering (the allocation alone), 2 of 5
    /// seeds reached the baseline's final best, against 4 of 5 for the classifier alone in
    /// the same run; with steering, the median time to the baseline's final best was 0.49,
    /// 1.33 and 0.93 of the baseline's in three runs of the experiment with a floor
    /// of 0.4 (the classifier alone, same runs: 0.30, 1.03, 0.45), and 0.44 with 1.0 (5 of
    /// 5 seeds reached).
    pub population_floor: f64,
    /// Whether the sketches that stay in are picked as one pool
    /// ([`SketchPolicy::pools_leading_sketches`]; true): the policy only drops the sketches
    /// clearly behind, and the cost model ranks the programs of the rest together.
    pub pool_leaders: bool,
    counts: Vec<f64>,
    sums: Vec<f64>,
    round: usize,
    pending: RoundBuffer,
    last_probs: Vec<f64>,
}

impl Default for DiscountedUcb {
    fn default() -> DiscountedUcb {
        DiscountedUcb {
            gamma: 0.9,
            c: 0.5,
            margin: 0.3,
            eps: 0.1,
            warmup_rounds: 0,
            steer_rounds: 3,
            population_floor: 1.0,
            pool_leaders: true,
            counts: Vec::new(),
            sums: Vec::new(),
            round: 0,
            pending: RoundBuffer::default(),
            last_probs: Vec::new(),
        }
    }
}

impl DiscountedUcb {
    /// Folds the evidence gathered since the last fold into the discounted statistics: one
    /// decision epoch (a round, or the first round's probe).
    fn fold(&mut self, arms: usize) {
        self.counts.resize(arms, 0.0);
        self.sums.resize(arms, 0.0);
        if self.pending.rewards.iter().all(Vec::is_empty) {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        for k in 0..arms {
            let r = pending.rewards.get(k).map_or(&[][..], |v| v.as_slice());
            self.counts[k] = self.gamma * self.counts[k] + r.len() as f64;
            self.sums[k] = self.gamma * self.sums[k] + r.iter().sum::<f64>();
        }
    }

    /// Upper confidence bound of each arm (`None` = never tried: infinite).
    pub fn bounds(&self) -> Vec<Option<f64>> {
        let total: f64 = self.counts.iter().sum();
        self.counts
            .iter()
            .zip(&self.sums)
            .map(|(&n, &s)| (n > 1e-9).then(|| s / n + self.c * (total.max(1.0).ln() / n).sqrt()))
            .collect()
    }

    /// The distribution over `arms` for round `round` (uniform during the warm-up).
    fn probabilities(&self, arms: usize, round: usize) -> Vec<f64> {
        if round < self.warmup_rounds {
            return uniform(arms);
        }
        let bounds = self.bounds();
        let untried: Vec<usize> = (0..arms).filter(|&k| bounds[k].is_none()).collect();
        let base = if !untried.is_empty() {
            let mut p = vec![0.0; arms];
            for &k in &untried {
                p[k] = 1.0 / untried.len() as f64;
            }
            p
        } else {
            let u: Vec<f64> = bounds.iter().map(|b| b.unwrap_or(0.0)).collect();
            let max = u.iter().copied().fold(f64::MIN, f64::max);
            let stays: Vec<bool> = u.iter().map(|&x| x >= max - self.margin).collect();
            let n_in = stays.iter().filter(|&&k| k).count().max(1) as f64;
            stays
                .iter()
                .map(|&k| if k { 1.0 / n_in } else { 0.0 })
                .collect()
        };
        with_floor(&base, self.eps)
    }
}

impl SketchPolicy for DiscountedUcb {
    fn name(&self) -> &str {
        "ducb"
    }

    fn allocate(&mut self, n: usize, num_sketches: usize, rng: &mut TesselRng) -> Vec<u32> {
        if num_sketches == 0 {
            return Vec::new();
        }
        self.fold(num_sketches);
        let probs = self.probabilities(num_sketches, self.round);
        self.round += 1;
        let population = with_floor(&probs, self.population_floor.clamp(0.0, 1.0));
        let picks = draw(&population, n, rng);
        self.last_probs = probs;
        picks
    }

    fn measure_shares(&mut self, num_sketches: usize) -> Option<Vec<f64>> {
        // `round` already counts the round being picked.
        if self.round > self.steer_rounds || num_sketches == 0 {
            return None;
        }
        self.fold(num_sketches);
        // The shares follow the warm-up of the allocation that sampled this round.
        let probs = self.probabilities(num_sketches, self.round.saturating_sub(1));
        self.last_probs.clone_from(&probs);
        Some(probs)
    }

    fn pools_leading_sketches(&self) -> bool {
        self.pool_leaders
    }

    fn reward(&mut self, sketch: u32, reward: f64) {
        let arms = self.counts.len().max(sketch as usize + 1);
        self.pending.push(sketch, reward, arms);
    }

    fn state_json(&self) -> serde_json::Value {
        json!({"policy": "ducb", "round": self.round, "counts": self.counts, "sums": self.sums,
               "probabilities": self.last_probs, "population_floor": self.population_floor})
    }
}

/// Thompson sampling with a discounted Beta posterior per arm (a reward in `[0, 1]` counts
/// as a fractional success): each sample picks the arm with the largest draw from its
/// posterior, then the uniform floor is mixed in.
#[derive(Clone, Debug)]
pub struct Thompson {
    /// Discount per round (0.9).
    pub gamma: f64,
    /// Uniform floor (0.1).
    pub eps: f64,
    /// Rounds that use the uniform distribution first (2).
    pub warmup_rounds: usize,
    alpha: Vec<f64>,
    beta: Vec<f64>,
    round: usize,
    pending: RoundBuffer,
}

impl Default for Thompson {
    fn default() -> Thompson {
        Thompson {
            gamma: 0.9,
            eps: 0.1,
            warmup_rounds: 2,
            alpha: Vec::new(),
            beta: Vec::new(),
            round: 0,
            pending: RoundBuffer::default(),
        }
    }
}

/// A Gamma(shape, 1) draw (Marsaglia and Tsang; shape < 1 by boosting).
fn gamma_draw(shape: f64, rng: &mut TesselRng) -> f64 {
    if shape < 1.0 {
        let u: f64 = rng.random_range(f64::EPSILON..1.0);
        return gamma_draw(shape + 1.0, rng) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        // A standard normal by Box–Muller.
        let u1: f64 = rng.random_range(f64::EPSILON..1.0);
        let u2: f64 = rng.random_range(0.0..1.0);
        let x = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u: f64 = rng.random_range(f64::EPSILON..1.0);
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

/// A Beta(a, b) draw.
pub fn beta_draw(a: f64, b: f64, rng: &mut TesselRng) -> f64 {
    let x = gamma_draw(a, rng);
    let y = gamma_draw(b, rng);
    if x + y > 0.0 {
        x / (x + y)
    } else {
        0.5
    }
}

impl SketchPolicy for Thompson {
    fn name(&self) -> &str {
        "thompson"
    }

    fn allocate(&mut self, n: usize, num_sketches: usize, rng: &mut TesselRng) -> Vec<u32> {
        if num_sketches == 0 {
            return Vec::new();
        }
        self.alpha.resize(num_sketches, 1.0);
        self.beta.resize(num_sketches, 1.0);
        let pending = std::mem::take(&mut self.pending);
        for k in 0..num_sketches {
            let r = pending.rewards.get(k).map_or(&[][..], |v| v.as_slice());
            let success: f64 = r.iter().sum();
            // Discount towards the Beta(1, 1) prior.
            self.alpha[k] = 1.0 + self.gamma * (self.alpha[k] - 1.0) + success;
            self.beta[k] = 1.0 + self.gamma * (self.beta[k] - 1.0) + (r.len() as f64 - success);
        }
        let warm = self.round < self.warmup_rounds;
        self.round += 1;
        (0..n)
            .map(|_| {
                if warm || rng.random_bool(self.eps) {
                    return rng.random_range(0..num_sketches) as u32;
                }
                (0..num_sketches)
                    .map(|k| (k, beta_draw(self.alpha[k], self.beta[k], rng)))
                    .max_by(|a, b| a.1.total_cmp(&b.1))
                    .map_or(0, |(k, _)| k as u32)
            })
            .collect()
    }

    fn reward(&mut self, sketch: u32, reward: f64) {
        let arms = self.alpha.len().max(sketch as usize + 1);
        self.pending.push(sketch, reward, arms);
    }

    fn state_json(&self) -> serde_json::Value {
        json!({"policy": "thompson", "round": self.round, "alpha": self.alpha, "beta": self.beta})
    }
}

/// ε-greedy over incrementally learned values `Q ← Q + α(r − Q)` (the "Q-learning over
/// sketches" variant): each sample takes the best arm, or with probability ε (decaying from
/// `eps_start` to `eps_end` by `eps_decay` per round) a uniform one.
#[derive(Clone, Debug)]
pub struct EpsilonGreedy {
    /// Learning rate (0.3).
    pub alpha: f64,
    /// First exploration rate (0.3).
    pub eps_start: f64,
    /// Final exploration rate (0.05).
    pub eps_end: f64,
    /// Factor applied to the exploration rate each round (0.8).
    pub eps_decay: f64,
    q: Vec<f64>,
    tried: Vec<bool>,
    round: usize,
}

impl Default for EpsilonGreedy {
    fn default() -> EpsilonGreedy {
        EpsilonGreedy {
            alpha: 0.3,
            eps_start: 0.3,
            eps_end: 0.05,
            eps_decay: 0.8,
            q: Vec::new(),
            tried: Vec::new(),
            round: 0,
        }
    }
}

impl EpsilonGreedy {
    /// The exploration rate of the current round.
    pub fn epsilon(&self) -> f64 {
        (self.eps_start * self.eps_decay.powi(self.round as i32)).max(self.eps_end)
    }
}

impl SketchPolicy for EpsilonGreedy {
    fn name(&self) -> &str {
        "egreedy"
    }

    fn allocate(&mut self, n: usize, num_sketches: usize, rng: &mut TesselRng) -> Vec<u32> {
        if num_sketches == 0 {
            return Vec::new();
        }
        self.q.resize(num_sketches, 0.0);
        self.tried.resize(num_sketches, false);
        let eps = self.epsilon();
        self.round += 1;
        // Untried arms come first (optimistic); then the best value.
        let best = (0..num_sketches)
            .find(|&k| !self.tried[k])
            .unwrap_or_else(|| {
                (0..num_sketches)
                    .max_by(|&a, &b| self.q[a].total_cmp(&self.q[b]))
                    .unwrap_or(0)
            });
        (0..n)
            .map(|_| {
                if rng.random_bool(eps) {
                    rng.random_range(0..num_sketches) as u32
                } else {
                    best as u32
                }
            })
            .collect()
    }

    fn reward(&mut self, sketch: u32, reward: f64) {
        let k = sketch as usize;
        if k >= self.q.len() {
            self.q.resize(k + 1, 0.0);
            self.tried.resize(k + 1, false);
        }
        let r = reward.clamp(0.0, 1.0);
        self.q[k] = if self.tried[k] {
            self.q[k] + self.alpha * (r - self.q[k])
        } else {
            r
        };
        self.tried[k] = true;
    }

    fn state_json(&self) -> serde_json::Value {
        json!({"policy": "egreedy", "round": self.round, "q": self.q, "epsilon": self.epsilon()})
    }
}
