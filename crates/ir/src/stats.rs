//! Order statistics of measured values: the one home of `median` and `quantile` for every
//! crate (timings, reports, experiments, examples).
//!
//! ```
//! use tessel_ir::stats::{median, quantile};
//! assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
//! assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
//! assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.25), Some(2.0));
//! assert_eq!(median(&[]), None);
//! assert_eq!(median(&[f64::NAN, 1.0]), Some(1.0));
//! ```

/// The `q`-quantile of `values` (`q` clamped to `[0, 1]`) with linear interpolation between
/// neighbours, NaNs left out; `None` when nothing is left or the quantile is infinite (an
/// infinite value stands for "never": a target most seeds never reached has no median).
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let x = if lo == hi {
        v[lo]
    } else {
        v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
    };
    x.is_finite().then_some(x)
}

/// The median of `values`: the middle one, or the mean of the two middle ones for an even
/// count; NaNs left out; `None` when nothing is left or the median is infinite.
pub fn median(values: &[f64]) -> Option<f64> {
    quantile(values, 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_and_skip_nan() {
        let v = [5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(quantile(&v, 0.0), Some(1.0));
        assert_eq!(quantile(&v, 1.0), Some(5.0));
        assert_eq!(quantile(&v, 0.75), Some(4.0));
        assert_eq!(quantile(&[1.0, 2.0], 0.25), Some(1.25));
        assert_eq!(quantile(&[f64::NAN], 0.5), None);
        assert_eq!(median(&[1.0, f64::INFINITY, f64::INFINITY]), None);
        assert_eq!(median(&[1.0, 2.0, f64::INFINITY]), Some(2.0));
        assert_eq!(median(&[7.0]), Some(7.0));
    }
}
