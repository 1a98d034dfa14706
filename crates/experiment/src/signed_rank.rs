//! The Wilcoxon signed-rank test for paired samples (PAPER.md §5: one per workload and
//! configuration, pairing each seed's run with the baseline's run of the same seed).
//!
//! Zero differences are dropped, tied magnitudes get their average rank, and the p-value is
//! exact: the null distribution of W+ (every sign equally likely) is counted over doubled
//! ranks, which are integers even with ties. With n pairs the smallest two-sided p-value is
//! 2 / 2ⁿ (0.0625 for 5 seeds: five seeds can never be "significant at 5%").
//!
//! ```
//! use tessel_experiment::signed_rank::signed_rank;
//! let t = signed_rank(&[0.1, 0.2, 0.05, 0.3, 0.15, 0.12]).unwrap();
//! assert_eq!((t.n, t.w_plus), (6, 21.0));
//! assert!((t.p_value - 2.0 / 64.0).abs() < 1e-12);
//! assert!(signed_rank(&[0.0, 0.0]).is_none());
//! ```

use serde::{Deserialize, Serialize};

/// The outcome of a signed-rank test.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SignedRank {
    /// Pairs with a non-zero difference.
    pub n: usize,
    /// Sum of the ranks of the positive differences.
    pub w_plus: f64,
    /// Exact two-sided p-value.
    pub p_value: f64,
}

/// Tests whether the paired `differences` are centred on 0; `None` when all are zero (or
/// there are more than 60, where the exact count would be slow and a normal approximation
/// belongs).
pub fn signed_rank(differences: &[f64]) -> Option<SignedRank> {
    let mut d: Vec<f64> = differences
        .iter()
        .copied()
        .filter(|x| x.is_finite() && *x != 0.0)
        .collect();
    let n = d.len();
    if n == 0 || n > 60 {
        return None;
    }
    d.sort_by(|a, b| a.abs().total_cmp(&b.abs()));
    // Doubled average ranks: a tie group at sorted positions i..=j (0-based) has rank
    // ((i + 1) + (j + 1)) / 2 each, doubled = i + j + 2.
    let mut ranks2 = vec![0usize; n];
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && d[j + 1].abs() == d[i].abs() {
            j += 1;
        }
        for r in &mut ranks2[i..=j] {
            *r = i + j + 2;
        }
        i = j + 1;
    }
    let w2: usize = d
        .iter()
        .zip(&ranks2)
        .filter(|(x, _)| **x > 0.0)
        .map(|(_, r)| r)
        .sum();
    // counts[s] = number of sign patterns whose doubled W+ is s.
    let total: usize = ranks2.iter().sum();
    let mut counts = vec![0f64; total + 1];
    counts[0] = 1.0;
    for &r in &ranks2 {
        for s in (r..=total).rev() {
            counts[s] += counts[s - r];
        }
    }
    let all = 2f64.powi(n as i32);
    let below: f64 = counts[..=w2].iter().sum::<f64>() / all;
    let above: f64 = counts[w2..].iter().sum::<f64>() / all;
    Some(SignedRank {
        n,
        w_plus: w2 as f64 / 2.0,
        p_value: (2.0 * below.min(above)).min(1.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_hand_counts() {
        // n = 3, all positive: W+ = 6, P(W+ >= 6) = 1/8, two-sided 1/4.
        let t = signed_rank(&[1.0, 2.0, 3.0]).expect("test");
        assert_eq!(t.w_plus, 6.0);
        assert!((t.p_value - 0.25).abs() < 1e-12);
        // Symmetric: the p-value of the mirrored sample is the same.
        let m = signed_rank(&[-1.0, -2.0, -3.0]).expect("test");
        assert_eq!(m.w_plus, 0.0);
        assert_eq!(m.p_value, t.p_value);
        // n = 4, W+ = 2 + 4 = 6: P(W+ >= 6) = 7/16, two-sided 14/16.
        let c = signed_rank(&[-1.0, 2.0, -3.0, 4.0]).expect("test");
        assert_eq!(c.w_plus, 6.0);
        assert!((c.p_value - 0.875).abs() < 1e-12);
    }

    #[test]
    fn ties_get_average_ranks_and_zeros_are_dropped() {
        let t = signed_rank(&[0.0, 1.0, -1.0, 2.0]).expect("test");
        assert_eq!(t.n, 3);
        // |1| and |-1| share rank 1.5; 2 has rank 3: W+ = 1.5 + 3.
        assert_eq!(t.w_plus, 4.5);
        // Doubled W+ over {3, 3, 6}: 0 3 3 6 6 9 9 12; P(W+ >= 4.5) = 3/8.
        assert!((t.p_value - 0.75).abs() < 1e-12);
    }
}
