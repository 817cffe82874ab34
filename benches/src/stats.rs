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
}
