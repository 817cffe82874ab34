//! Minimum, median and maximum over repeated runs, and ratios of medians.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub min: f64,
    pub median: f64,
    pub max: f64,
    /// How many values (runs) it summarises.
    pub n: usize,
}

/// The summary of the finite values, or None when there are none.
pub fn summarize(values: &[f64]) -> Option<Summary> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(Summary {
        min: v[0],
        median: median_of_sorted(&v),
        max: v[v.len() - 1],
        n: v.len(),
    })
}

/// The median of sorted values: the middle one, or the mean of the two middle ones.
fn median_of_sorted(v: &[f64]) -> f64 {
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// `a / b` of two medians; None when either is missing or `b` is zero.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 && a.is_finite() && b.is_finite() => Some(a / b),
        _ => None,
    }
}

/// Per-run ratios `a[i] / b[i]` where both runs have a value: how stable a ratio is when the
/// machine drifts between runs (both were measured side by side within each run).
pub fn paired_ratios(a: &[Option<f64>], b: &[Option<f64>]) -> Option<Summary> {
    let ratios: Vec<f64> = a.iter().zip(b).filter_map(|(x, y)| ratio(*x, *y)).collect();
    summarize(&ratios)
}

/// A median with a distribution-free 95% confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MedianCi {
    pub median: f64,
    /// The interval's bounds: order statistics of the values (sign test, binomial with p = ½),
    /// covering the true median with at least 95% probability.
    pub low: f64,
    pub high: f64,
    pub n: usize,
}

/// The median of the finite values and its 95% interval; None with fewer than 6 values (no
/// interval of order statistics reaches 95% then).
pub fn median_ci(values: &[f64]) -> Option<MedianCi> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    let n = v.len();
    if n < 6 {
        return None;
    }
    v.sort_by(f64::total_cmp);
    // The largest k with P(X <= k - 1) <= 2.5%, X ~ Binomial(n, 1/2): then
    // [x_(k), x_(n+1-k)] (1-based) covers the median with probability >= 95%.
    let ln2 = std::f64::consts::LN_2;
    let mut ln_choose = 0.0_f64; // ln C(n, i)
    let mut cumulative = 0.0_f64;
    let mut k = 0;
    for i in 0..n {
        if i > 0 {
            ln_choose += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        cumulative += (ln_choose - n as f64 * ln2).exp();
        if cumulative > 0.025 {
            break;
        }
        k = i + 1;
    }
    let k = k.max(1);
    Some(MedianCi {
        median: median_of_sorted(&v),
        low: v[k - 1],
        high: v[n - k],
        n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_and_even_medians() {
        let s = summarize(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.min, s.median, s.max, s.n), (1.0, 2.0, 3.0, 3));
        let s = summarize(&[4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!(s.median, 2.5);
        assert_eq!(summarize(&[]), None);
        assert_eq!(summarize(&[f64::NAN]), None);
        assert_eq!(summarize(&[f64::NAN, 5.0]).unwrap().median, 5.0);
    }

    #[test]
    fn ratios() {
        assert_eq!(ratio(Some(6.0), Some(3.0)), Some(2.0));
        assert_eq!(ratio(Some(6.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(1.0)), None);
        let p = paired_ratios(
            &[Some(2.0), None, Some(9.0)],
            &[Some(1.0), Some(1.0), Some(3.0)],
        )
        .unwrap();
        assert_eq!((p.min, p.max, p.n), (2.0, 3.0, 2));
    }

    #[test]
    fn median_intervals_are_order_statistics() {
        assert_eq!(median_ci(&[1.0, 2.0, 3.0, 4.0, 5.0]), None);
        // n = 6: only [min, max] reaches 95% (1 - 2/64).
        let ci = median_ci(&[6.0, 1.0, 5.0, 2.0, 4.0, 3.0]).unwrap();
        assert_eq!((ci.low, ci.median, ci.high, ci.n), (1.0, 3.5, 6.0, 6));
        // n = 20: the 6th and 15th values (P(X <= 5) = 2.07%, P(X <= 6) = 5.77%).
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        let ci = median_ci(&v).unwrap();
        assert_eq!((ci.low, ci.high), (6.0, 15.0));
        // n = 100: the 40th and 61st (the usual n/2 ± 1.96 √n / 2, rounded outwards).
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let ci = median_ci(&v).unwrap();
        assert_eq!((ci.low, ci.high), (40.0, 61.0));
    }
}
