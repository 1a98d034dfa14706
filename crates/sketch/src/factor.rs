//! Divisors and the memoized enumeration of tile-size vectors (TVM's
//! `SplitFactorizationMemo`).

use std::collections::HashMap;
use std::sync::Arc;

/// The divisors of `n` in increasing order (`[1]` for `n <= 1`), found up to `√n`.
pub fn divisors(n: i64) -> Vec<i64> {
    if n <= 1 {
        return vec![1];
    }
    let mut small = Vec::new();
    let mut large = Vec::new();
    let step = if n % 2 == 0 { 1 } else { 2 };
    let mut i = 1;
    while i * i <= n {
        if n % i == 0 {
            small.push(i);
            if n / i != i {
                large.push(n / i);
            }
        }
        i += step;
    }
    small.extend(large.into_iter().rev());
    small
}

/// Every ordered way to pick `n_lengths` inner tile lengths for a loop of `extent`
/// iterations, each dividing what the inner ones leave (so the outer part, implied, is
/// exact), with the innermost at most `max_innermost`. Depth-first order, as TVM.
pub fn factorization_schemes(extent: i64, n_lengths: usize, max_innermost: i64) -> Vec<Vec<i64>> {
    fn dfs(
        now: usize,
        remaining: i64,
        n: usize,
        max_inner: i64,
        stack: &mut Vec<i64>,
        out: &mut Vec<Vec<i64>>,
    ) {
        if now == n {
            if stack.last().is_none_or(|&l| l <= max_inner) {
                out.push(stack.clone());
            }
            return;
        }
        for f in divisors(remaining) {
            stack.push(f);
            dfs(now + 1, remaining / f, n, max_inner, stack, out);
            stack.pop();
        }
    }
    let mut out = Vec::new();
    dfs(
        0,
        extent.max(1),
        n_lengths,
        max_innermost,
        &mut Vec::new(),
        &mut out,
    );
    out
}

/// A cache of [`factorization_schemes`] keyed by `(extent, n_lengths, max_innermost)`.
///
/// ```
/// use tessel_sketch::FactorizationMemo;
/// let mut memo = FactorizationMemo::default();
/// let schemes = memo.schemes(8, 2, 64);
/// assert_eq!(schemes.len(), 10); // ordered pairs (a, b) with a·b dividing 8
/// assert!(schemes.iter().all(|s| 8 % (s[0] * s[1]) == 0));
/// ```
#[derive(Clone, Debug, Default)]
pub struct FactorizationMemo {
    memory: HashMap<SchemeKey, Arc<Vec<Vec<i64>>>>,
}

/// `(extent, n_lengths, max_innermost)`.
type SchemeKey = (i64, usize, i64);

impl FactorizationMemo {
    /// The schemes for `(extent, n_lengths, max_innermost)`, computed on first use.
    pub fn schemes(
        &mut self,
        extent: i64,
        n_lengths: usize,
        max_innermost: i64,
    ) -> Arc<Vec<Vec<i64>>> {
        self.memory
            .entry((extent, n_lengths, max_innermost))
            .or_insert_with(|| Arc::new(factorization_schemes(extent, n_lengths, max_innermost)))
            .clone()
    }
}
