//! A small histogram gradient-boosted-tree trainer specialised for Ansor's objective.
//!
//! Why not a library: on this machine forust-ml 0.8 needs seconds for 100 trees on
//! 5,000 × 160 (CODEGEN.md §2, and `examples/compare_models.rs`), and none of the surveyed
//! crates accepts the per-program ("pack-sum") gradient of ANSOR.md §6.2. This trainer does
//! exactly what the cost model needs and nothing else:
//!
//! * features are bucketed once into at most [`GbdtParams::max_bins`] quantile bins
//!   (constant features are dropped), stored row-major as `u8`;
//! * trees grow leaf-wise (best gain first) up to [`GbdtParams::max_leaves`] leaves and
//!   [`GbdtParams::max_depth`]; a split's histogram is built for the smaller child only, the
//!   larger child's is the parent's minus it;
//! * rows are grouped into programs: the prediction of a program is the sum of its rows'
//!   predictions, and every row of a program gets its program's gradient and hessian;
//! * the objective ([`Objective`]) is either the weighted squared error — program gradient
//!   `(Σ pred − y)·w`, hessian `w`, where `w` is the program's weight (Ansor: `w = y`; one row
//!   per program gives the ordinary weighted squared error) — or a pairwise logistic
//!   ranking loss over programs of the same group (RankNet, XGBoost's `rank:pairwise`).
//!
//! Trees predict from raw feature values (`x <= threshold` goes left), so a trained
//! [`Booster`] needs no binning at prediction time and serializes compactly.

use serde::{Deserialize, Serialize};

/// Hyper-parameters of [`train`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GbdtParams {
    /// Boosting rounds (trees) at most.
    pub n_rounds: usize,
    /// Shrinkage applied to every leaf value (Ansor's XGBoost: 0.2).
    pub learning_rate: f32,
    /// Depth limit of a tree.
    pub max_depth: u32,
    /// Leaf limit of a tree (leaf-wise growth).
    pub max_leaves: usize,
    /// Minimum hessian sum of a child.
    pub min_child_weight: f64,
    /// L2 regularisation of leaf values.
    pub lambda: f64,
    /// Minimum gain of a split (Ansor's XGBoost: 0.001).
    pub gamma: f64,
    /// Number of quantile bins per feature (at most 256).
    pub max_bins: usize,
    /// Stop when the training loss has not improved by a relative 1e-4 for this many rounds
    /// (0: never stop early).
    pub early_stopping_rounds: usize,
    /// What the trees minimise.
    #[serde(default)]
    pub objective: Objective,
    /// Seed of the pair sampling of [`Objective::Pairwise`] and of the feature sampling.
    #[serde(default)]
    pub seed: u64,
    /// Fraction of the (non-constant) features each tree may split on, drawn at random per
    /// tree (XGBoost's `colsample_bytree`; 1: all).
    #[serde(default = "one")]
    pub colsample: f32,
}

fn one() -> f32 {
    1.0
}

/// The loss [`train`] minimises.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum Objective {
    /// `Σ_p w_p·(Σ pred − y_p)²` over programs `p` (Ansor's objective).
    #[default]
    SquaredError,
    /// RankNet's pairwise logistic loss `w·log(1 + exp(−(s_hi − s_lo)))` over pairs of
    /// programs of the same group whose labels differ (`hi` the one with the larger label,
    /// `s` the predictions). Every round each program is paired with `pairs_per_row`
    /// partners drawn at random from its group (both members of a pair get the pair's
    /// gradient and hessian), so a round costs `O(programs × pairs_per_row)` on top of the
    /// tree. The pair weight `w` is the better program's weight, times the label gap
    /// `y_hi − y_lo` when `gap_weighted` (LambdaRank-like: widely separated pairs matter
    /// more, pairs within the measurement noise hardly at all). Predictions are scores with
    /// an arbitrary offset and scale: only their order is meaningful.
    Pairwise {
        /// Partners drawn per program and round.
        pairs_per_row: u32,
        /// Multiply the pair weight by the label gap.
        gap_weighted: bool,
        /// Skip pairs whose larger label exceeds the smaller by at most this relative gap
        /// (0: only equal labels are skipped), e.g. 0.05 to ignore pairs within the
        /// measurement noise.
        #[serde(default)]
        min_gap: f32,
    },
}

impl Default for GbdtParams {
    /// Settings measured to retrain on 5,000 programs in well under 0.3 s (see the crate
    /// docs) with Ansor's learning rate.
    fn default() -> Self {
        GbdtParams {
            n_rounds: 100,
            learning_rate: 0.2,
            max_depth: 10,
            max_leaves: 32,
            min_child_weight: 1e-3,
            lambda: 1.0,
            gamma: 1e-3,
            max_bins: 64,
            early_stopping_rounds: 20,
            objective: Objective::SquaredError,
            seed: 0,
            colsample: 1.0,
        }
    }
}

/// Training data: rows of `n_features` floats, grouped into programs.
#[derive(Clone, Copy, Debug)]
pub struct TrainSet<'a> {
    /// Row-major feature matrix.
    pub x: &'a [f32],
    /// Number of features per row.
    pub n_features: usize,
    /// Program `p` owns rows `offsets[p]..offsets[p + 1]` (length `n_programs + 1`).
    pub offsets: &'a [usize],
    /// Label of each program.
    pub y: &'a [f32],
    /// Weight of each program.
    pub w: &'a [f32],
    /// Group of each program: [`Objective::Pairwise`] compares only programs of the same
    /// group (empty: all programs form one group; ignored by the squared error).
    pub group: &'a [u32],
}

/// A node of a [`Tree`]: a split (`feature < u32::MAX`) or a leaf.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TreeNode {
    /// Feature tested (`u32::MAX` for a leaf).
    pub feature: u32,
    /// Rows with `x[feature] <= threshold` go left.
    pub threshold: f32,
    /// Index of the left child.
    pub left: u32,
    /// Index of the right child.
    pub right: u32,
    /// Leaf value (learning rate applied).
    pub value: f32,
}

/// One regression tree; node 0 is the root.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    /// The nodes.
    pub nodes: Vec<TreeNode>,
}

impl Tree {
    /// The value of the leaf `row` falls into.
    #[inline]
    pub fn predict(&self, row: &[f32]) -> f32 {
        let mut k = 0usize;
        loop {
            let n = &self.nodes[k];
            if n.feature == u32::MAX {
                return n.value;
            }
            k = if row[n.feature as usize] <= n.threshold {
                n.left as usize
            } else {
                n.right as usize
            };
        }
    }
}

/// A trained ensemble: the prediction of a row is the sum of its trees' leaf values.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Booster {
    /// Number of features a row must have.
    pub n_features: usize,
    /// The trees.
    pub trees: Vec<Tree>,
    /// Total split gain per feature (an importance measure).
    pub gain: Vec<f64>,
}

impl Booster {
    /// The prediction for one row.
    #[inline]
    pub fn predict_row(&self, row: &[f32]) -> f32 {
        self.trees.iter().map(|t| t.predict(row)).sum()
    }
}

/// Per-feature bin boundaries: value `v` falls in the first bin `b` with `v <= thr[b]`
/// (the last bin has no upper bound).
struct Bins {
    /// Features kept (non-constant), in order.
    used: Vec<usize>,
    /// For each used feature: thresholds (`n_bins - 1` of them).
    thr: Vec<Vec<f32>>,
    /// For each used feature: offset of its first bin in a histogram.
    off: Vec<usize>,
    /// Total bins of all used features.
    total: usize,
}

fn make_bins(set: &TrainSet, max_bins: usize) -> Bins {
    let n_rows = set.x.len() / set.n_features.max(1);
    let step = (n_rows / 20_000).max(1);
    let mut used = Vec::new();
    let mut thr = Vec::new();
    let mut vals: Vec<f32> = Vec::with_capacity(n_rows / step + 1);
    for f in 0..set.n_features {
        vals.clear();
        vals.extend(
            (0..n_rows)
                .step_by(step)
                .map(|r| set.x[r * set.n_features + f]),
        );
        vals.sort_unstable_by(|a, b| a.total_cmp(b));
        vals.dedup();
        if vals.len() < 2 {
            continue;
        }
        let t: Vec<f32> = if vals.len() <= max_bins {
            vals.windows(2).map(|w| 0.5 * (w[0] + w[1])).collect()
        } else {
            // Quantiles of the distinct values (features are log-scaled, so this spreads well).
            let mut t: Vec<f32> = (1..max_bins)
                .map(|k| {
                    let i = k * vals.len() / max_bins;
                    0.5 * (vals[i - 1] + vals[i])
                })
                .collect();
            t.dedup();
            t
        };
        used.push(f);
        thr.push(t);
    }
    let mut off = Vec::with_capacity(used.len());
    let mut total = 0;
    for t in &thr {
        off.push(total);
        total += t.len() + 1;
    }
    Bins {
        used,
        thr,
        off,
        total,
    }
}

fn bin_of(thr: &[f32], v: f32) -> u8 {
    thr.partition_point(|&t| t < v) as u8
}

/// A candidate split of a leaf.
#[derive(Clone, Copy, Debug, Default)]
struct Split {
    gain: f64,
    /// Index into `Bins::used`.
    feat: usize,
    /// Rows with bin `<= bin` go left.
    bin: u8,
    gl: f64,
    hl: f64,
}

struct Leaf {
    start: usize,
    end: usize,
    depth: u32,
    g: f64,
    h: f64,
    slot: usize,
    node: usize,
    split: Option<Split>,
}

/// Trains a booster on `set` (see the module docs for the objective).
pub fn train(set: &TrainSet, params: &GbdtParams) -> Booster {
    train_scored(set, params).0
}

/// [`train`], also returning the booster's prediction for every program of `set` (the sum of
/// its rows' predictions), which training computes anyway.
pub fn train_scored(set: &TrainSet, params: &GbdtParams) -> (Booster, Vec<f64>) {
    let nf = set.n_features;
    let n_rows = set.x.len().checked_div(nf).unwrap_or(0);
    let n_prog = set.y.len();
    let mut booster = Booster {
        n_features: nf,
        trees: Vec::new(),
        gain: vec![0.0; nf],
    };
    if n_rows == 0 || n_prog == 0 {
        return (booster, vec![0.0; n_prog]);
    }
    let max_bins = params.max_bins.clamp(2, 256);
    let bins = make_bins(set, max_bins);
    let nu = bins.used.len();
    if nu == 0 {
        return (booster, vec![0.0; n_prog]);
    }
    // Row-major binned matrix.
    let mut binned = vec![0u8; n_rows * nu];
    for r in 0..n_rows {
        let row = &set.x[r * nf..(r + 1) * nf];
        let out = &mut binned[r * nu..(r + 1) * nu];
        for (j, &f) in bins.used.iter().enumerate() {
            out[j] = bin_of(&bins.thr[j], row[f]);
        }
    }
    let mut row_prog = vec![0u32; n_rows];
    for p in 0..n_prog {
        row_prog[set.offsets[p]..set.offsets[p + 1]].fill(p as u32);
    }
    let mut pred_row = vec![0.0f64; n_rows];
    let mut pred_prog = vec![0.0f64; n_prog];
    let mut gh_prog = vec![0.0f64; 2 * n_prog];
    let members = group_members(set, n_prog);
    let n_feats = ((params.colsample.clamp(0.0, 1.0) * nu as f32).ceil() as usize).clamp(1, nu);
    let mut feats: Vec<usize> = Vec::with_capacity(nu);
    let mut rng = SplitMix(params.seed ^ 0x9A12_B5E5_0F5E_ED00);
    let mut gh = vec![0.0f32; 2 * n_rows];
    let mut idx: Vec<u32> = Vec::with_capacity(n_rows);
    let max_leaves = params.max_leaves.max(2);
    let mut pool: Vec<Vec<f32>> = (0..max_leaves + 1)
        .map(|_| vec![0.0; 2 * bins.total])
        .collect();
    let mut free: Vec<usize> = Vec::new();
    let mut leaves: Vec<Leaf> = Vec::with_capacity(max_leaves);
    let mut best_loss = f64::INFINITY;
    let mut since_best = 0;

    for _round in 0..params.n_rounds {
        // Gradients.
        for (p, pp) in pred_prog.iter_mut().enumerate() {
            *pp = (set.offsets[p]..set.offsets[p + 1])
                .map(|r| pred_row[r])
                .sum();
        }
        let loss = match params.objective {
            Objective::SquaredError => {
                let mut loss = 0.0;
                for p in 0..n_prog {
                    let w = set.w[p] as f64;
                    let d = pred_prog[p] - set.y[p] as f64;
                    gh_prog[2 * p] = d * w;
                    gh_prog[2 * p + 1] = w;
                    loss += w * d * d;
                }
                loss
            }
            Objective::Pairwise {
                pairs_per_row,
                gap_weighted,
                min_gap,
            } => pairwise_gradients(
                set,
                &members,
                &pred_prog,
                (pairs_per_row as usize, gap_weighted, min_gap),
                &mut rng,
                &mut gh_prog,
                params.early_stopping_rounds > 0,
            ),
        };
        for r in 0..n_rows {
            let p = row_prog[r] as usize;
            gh[2 * r] = gh_prog[2 * p] as f32;
            gh[2 * r + 1] = gh_prog[2 * p + 1] as f32;
        }
        if params.early_stopping_rounds > 0 {
            if loss < best_loss * (1.0 - 1e-4) {
                best_loss = loss;
                since_best = 0;
            } else {
                since_best += 1;
                if since_best >= params.early_stopping_rounds {
                    break;
                }
            }
        }

        // Grow one tree, on a sample of the features.
        feats.clear();
        feats.extend(0..nu);
        if n_feats < nu {
            for i in 0..n_feats {
                let k = i + rng.below(nu - i);
                feats.swap(i, k);
            }
            feats.truncate(n_feats);
            feats.sort_unstable();
        }
        idx.clear();
        idx.extend(0..n_rows as u32);
        free.clear();
        free.extend((0..pool.len()).rev());
        leaves.clear();
        let mut tree = Tree::default();
        tree.nodes.push(leaf_node(0.0));
        let slot = free.pop().unwrap_or(0);
        build_hist(&mut pool[slot], &idx, &binned, nu, &bins, &feats, &gh);
        let (g, h) = (0..n_rows).fold((0.0f64, 0.0f64), |(g, h), r| {
            (g + gh[2 * r] as f64, h + gh[2 * r + 1] as f64)
        });
        let mut root = Leaf {
            start: 0,
            end: n_rows,
            depth: 0,
            g,
            h,
            slot,
            node: 0,
            split: None,
        };
        root.split = best_split(&pool[slot], &bins, &feats, g, h, params);
        leaves.push(root);
        while leaves.len() < max_leaves {
            let Some((li, _)) = leaves
                .iter()
                .enumerate()
                .filter(|(_, l)| l.split.is_some() && l.depth < params.max_depth)
                .map(|(i, l)| (i, l.split.map_or(0.0, |s| s.gain)))
                .max_by(|a, b| a.1.total_cmp(&b.1))
            else {
                break;
            };
            let leaf = leaves.swap_remove(li);
            let Some(sp) = leaf.split else { break };
            // Partition rows: bin <= sp.bin to the left.
            let seg = &mut idx[leaf.start..leaf.end];
            let mut i = 0;
            let mut j = seg.len();
            while i < j {
                if binned[seg[i] as usize * nu + sp.feat] <= sp.bin {
                    i += 1;
                } else {
                    j -= 1;
                    seg.swap(i, j);
                }
            }
            let mid = leaf.start + i;
            let f = bins.used[sp.feat];
            booster.gain[f] += sp.gain;
            let ln = tree.nodes.len();
            tree.nodes.push(leaf_node(0.0));
            tree.nodes.push(leaf_node(0.0));
            tree.nodes[leaf.node] = TreeNode {
                feature: f as u32,
                threshold: bins.thr[sp.feat][sp.bin as usize],
                left: ln as u32,
                right: ln as u32 + 1,
                value: 0.0,
            };
            let (gl, hl) = (sp.gl, sp.hl);
            let (gr, hr) = (leaf.g - gl, leaf.h - hl);
            let left_small = mid - leaf.start <= leaf.end - mid;
            let small_slot = free.pop().unwrap_or(leaf.slot);
            {
                let (s, e) = if left_small {
                    (leaf.start, mid)
                } else {
                    (mid, leaf.end)
                };
                build_hist(
                    &mut pool[small_slot],
                    &idx[s..e],
                    &binned,
                    nu,
                    &bins,
                    &feats,
                    &gh,
                );
            }
            // Parent minus the small child = the large child (in the parent's slot).
            if small_slot != leaf.slot {
                let (a, b) = if small_slot < leaf.slot {
                    let (lo, hi) = pool.split_at_mut(leaf.slot);
                    (&mut hi[0], &lo[small_slot])
                } else {
                    let (lo, hi) = pool.split_at_mut(small_slot);
                    (&mut lo[leaf.slot], &hi[0])
                };
                for (x, y) in a.iter_mut().zip(b.iter()) {
                    *x -= *y;
                }
            }
            let (ls, rs) = if left_small {
                (small_slot, leaf.slot)
            } else {
                (leaf.slot, small_slot)
            };
            let mut l = Leaf {
                start: leaf.start,
                end: mid,
                depth: leaf.depth + 1,
                g: gl,
                h: hl,
                slot: ls,
                node: ln,
                split: None,
            };
            let mut r = Leaf {
                start: mid,
                end: leaf.end,
                depth: leaf.depth + 1,
                g: gr,
                h: hr,
                slot: rs,
                node: ln + 1,
                split: None,
            };
            if leaves.len() + 2 < max_leaves {
                l.split = best_split(&pool[ls], &bins, &feats, gl, hl, params);
                r.split = best_split(&pool[rs], &bins, &feats, gr, hr, params);
            }
            leaves.push(l);
            leaves.push(r);
        }
        // Leaf values and prediction update.
        for leaf in &leaves {
            let v = -leaf.g / (leaf.h + params.lambda) * params.learning_rate as f64;
            tree.nodes[leaf.node].value = v as f32;
            for &r in &idx[leaf.start..leaf.end] {
                pred_row[r as usize] += v;
            }
        }
        booster.trees.push(tree);
    }
    for (p, pp) in pred_prog.iter_mut().enumerate() {
        *pp = (set.offsets[p]..set.offsets[p + 1])
            .map(|r| pred_row[r])
            .sum();
    }
    (booster, pred_prog)
}

/// The programs of each group, in order (one group when `set.group` is empty).
fn group_members(set: &TrainSet, n_prog: usize) -> Vec<Vec<u32>> {
    if set.group.len() != n_prog {
        return vec![(0..n_prog as u32).collect()];
    }
    let mut members: Vec<Vec<u32>> = Vec::new();
    for (p, &g) in set.group.iter().enumerate() {
        let g = g as usize;
        if members.len() <= g {
            members.resize_with(g + 1, Vec::new);
        }
        members[g].push(p as u32);
    }
    members
}

/// A splitmix64 generator (deterministic pair sampling).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (((self.next() >> 32) * n as u64) >> 32) as usize
    }
}

/// RankNet gradients and hessians of [`Objective::Pairwise`] per program (into `gh`,
/// interleaved) over freshly sampled pairs; returns the loss of those pairs when `with_loss`
/// (only early stopping needs it), else 0.
fn pairwise_gradients(
    set: &TrainSet,
    members: &[Vec<u32>],
    pred: &[f64],
    (pairs_per_row, gap_weighted, min_gap): (usize, bool, f32),
    rng: &mut SplitMix,
    gh: &mut [f64],
    with_loss: bool,
) -> f64 {
    gh.iter_mut().for_each(|v| *v = 0.0);
    let mut loss = 0.0;
    for m in members {
        if m.len() < 2 {
            continue;
        }
        for &i in m {
            let i = i as usize;
            for _ in 0..pairs_per_row {
                let j = m[rng.below(m.len())] as usize;
                let (yi, yj) = (set.y[i], set.y[j]);
                if yi == yj || yi.max(yj) <= yi.min(yj) * (1.0 + min_gap) {
                    continue;
                }
                let (hi, lo) = if yi > yj { (i, j) } else { (j, i) };
                let mut w = set.w[hi] as f64;
                if gap_weighted {
                    w *= (set.y[hi] - set.y[lo]) as f64;
                }
                // d loss / d s_hi = −ρ·w, d loss / d s_lo = ρ·w, hessian ρ(1 − ρ)·w, with
                // ρ = 1 / (1 + e^m) from one exponential e^−|m| (stable for both signs).
                let margin = pred[hi] - pred[lo];
                let e = (-margin.abs()).exp();
                let rho = if margin >= 0.0 {
                    e / (1.0 + e)
                } else {
                    1.0 / (1.0 + e)
                };
                let h = (rho * (1.0 - rho)).max(1e-6) * w;
                gh[2 * hi] -= rho * w;
                gh[2 * lo] += rho * w;
                gh[2 * hi + 1] += h;
                gh[2 * lo + 1] += h;
                if with_loss {
                    // log(1 + e^−m).
                    loss += w * ((-margin).max(0.0) + e.ln_1p());
                }
            }
        }
    }
    loss
}

fn leaf_node(value: f32) -> TreeNode {
    TreeNode {
        feature: u32::MAX,
        threshold: 0.0,
        left: 0,
        right: 0,
        value,
    }
}

/// Gradient and hessian sums per bin of the features `feats` over `rows` (other features'
/// bins are left at 0).
fn build_hist(
    hist: &mut [f32],
    rows: &[u32],
    binned: &[u8],
    nu: usize,
    bins: &Bins,
    feats: &[usize],
    gh: &[f32],
) {
    hist.iter_mut().for_each(|v| *v = 0.0);
    let all = feats.len() == nu;
    for &r in rows {
        let r = r as usize;
        let (g, h) = (gh[2 * r], gh[2 * r + 1]);
        let b = &binned[r * nu..(r + 1) * nu];
        if all {
            for (&off, &bin) in bins.off.iter().zip(b) {
                let k = 2 * (off + bin as usize);
                hist[k] += g;
                hist[k + 1] += h;
            }
        } else {
            for &j in feats {
                let k = 2 * (bins.off[j] + b[j] as usize);
                hist[k] += g;
                hist[k + 1] += h;
            }
        }
    }
}

fn best_split(
    hist: &[f32],
    bins: &Bins,
    feats: &[usize],
    g: f64,
    h: f64,
    p: &GbdtParams,
) -> Option<Split> {
    let parent = g * g / (h + p.lambda);
    let mut best: Option<Split> = None;
    for &j in feats {
        let off = bins.off[j];
        let nb = bins.thr[j].len() + 1;
        let (mut gl, mut hl) = (0.0, 0.0);
        for b in 0..nb - 1 {
            gl += hist[2 * (off + b)] as f64;
            hl += hist[2 * (off + b) + 1] as f64;
            let (gr, hr) = (g - gl, h - hl);
            if hl < p.min_child_weight || hr < p.min_child_weight {
                continue;
            }
            let gain = gl * gl / (hl + p.lambda) + gr * gr / (hr + p.lambda) - parent;
            if gain > p.gamma && best.is_none_or(|s| gain > s.gain) {
                best = Some(Split {
                    gain,
                    feat: j,
                    bin: b as u8,
                    gl,
                    hl,
                });
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows of 4 uniform features; the label ranks by `x0 + 2·x1` within each of two groups,
    /// through different monotone maps (group 1's labels are cubed and tiny): the order is
    /// one function, the values are not.
    fn planted(n: usize, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<u32>) {
        let mut rng = SplitMix(seed);
        let mut u = || (rng.next() >> 40) as f32 / (1u64 << 24) as f32;
        let (mut x, mut y, mut g) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..n {
            let row = [u(), u(), u(), u()];
            let s = (row[0] + 2.0 * row[1]) / 3.0;
            x.extend_from_slice(&row);
            let group = (i % 2) as u32;
            y.push(if group == 0 { s } else { 1e-3 * s * s * s });
            g.push(group);
        }
        (x, y, g)
    }

    fn accuracy(pred: &[f32], y: &[f32], g: &[u32]) -> f64 {
        let (mut right, mut total) = (0, 0);
        for i in 0..y.len() {
            for j in i + 1..y.len() {
                if g[i] == g[j] && y[i] != y[j] {
                    total += 1;
                    if (pred[i] > pred[j]) == (y[i] > y[j]) {
                        right += 1;
                    }
                }
            }
        }
        right as f64 / total as f64
    }

    #[test]
    fn pairwise_objective_learns_a_planted_ranking() {
        let (x, y, g) = planted(1000, 7);
        let offsets: Vec<usize> = (0..=y.len()).collect();
        let w = vec![1.0; y.len()];
        let set = TrainSet {
            x: &x,
            n_features: 4,
            offsets: &offsets,
            y: &y,
            w: &w,
            group: &g,
        };
        let rank = GbdtParams {
            objective: Objective::Pairwise {
                pairs_per_row: 8,
                gap_weighted: false,
                min_gap: 0.0,
            },
            seed: 3,
            ..GbdtParams::default()
        };
        let (xt, yt, gt) = planted(400, 8);
        let predict =
            |b: &Booster| -> Vec<f32> { xt.chunks_exact(4).map(|r| b.predict_row(r)).collect() };
        let acc_rank = accuracy(&predict(&train(&set, &rank)), &yt, &gt);
        assert!(acc_rank > 0.9, "pairwise: {acc_rank:.3}");
        let sampled = GbdtParams {
            colsample: 0.5,
            ..rank.clone()
        };
        let acc_sampled = accuracy(&predict(&train(&set, &sampled)), &yt, &gt);
        assert!(
            acc_sampled > 0.9,
            "pairwise, half the features: {acc_sampled:.3}"
        );
        // Randomly permuted labels leave nothing to learn.
        let mut shuffled = y.clone();
        shuffled.reverse();
        let noise = TrainSet {
            y: &shuffled,
            ..set
        };
        let acc_noise = accuracy(&predict(&train(&noise, &rank)), &yt, &gt);
        assert!(acc_noise < 0.6, "pairwise on noise: {acc_noise:.3}");
        // Deterministic for a fixed seed.
        assert_eq!(train(&set, &rank), train(&set, &rank));
        // The training scores are the booster's predictions.
        let (booster, scores) = train_scored(&set, &rank);
        for (row, s) in x.chunks_exact(4).zip(&scores) {
            assert!((booster.predict_row(row) as f64 - s).abs() < 1e-4);
        }
    }
}
