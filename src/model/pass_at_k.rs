//! The unbiased pass@k estimator of Chen et al. (2021), "Evaluating Large Language
//! Models Trained on Code": with `n` samples of which `c` are correct,
//! `pass@k = 1 - C(n - c, k) / C(n, k)`, the probability that at least one of `k`
//! samples drawn without replacement is correct. The mean over cases is the run's pass@k.

/// pass@k for `n` samples with `c` correct; `None` when `k` is 0 or exceeds `n`, or
/// `c > n`. Computed as the paper's numerically stable product
/// `1 - prod_{i = n-c+1..=n} (1 - k / i)`, never with factorials.
pub(crate) fn pass_at_k(n: u64, c: u64, k: u64) -> Option<f64> {
    if k == 0 || k > n || c > n {
        return None;
    }
    if n - c < k {
        return Some(1.0);
    }
    let product: f64 = (n - c + 1..=n).map(|i| 1.0 - k as f64 / i as f64).product();
    Some(1.0 - product)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1 - C(n-c, k) / C(n, k) with exact integer binomials, for small numbers.
    fn by_binomials(n: u64, c: u64, k: u64) -> f64 {
        fn choose(n: u64, k: u64) -> f64 {
            if k > n {
                return 0.0;
            }
            (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
        }
        1.0 - choose(n - c, k) / choose(n, k)
    }

    #[test]
    fn matches_hand_worked_values() {
        // n = 5, c = 2, k = 1: c / n = 0.4.
        assert!((pass_at_k(5, 2, 1).unwrap() - 0.4).abs() < 1e-12);
        // n = 5, c = 2, k = 2: 1 - C(3,2)/C(5,2) = 1 - 3/10 = 0.7.
        assert!((pass_at_k(5, 2, 2).unwrap() - 0.7).abs() < 1e-12);
        // n = 10, c = 3, k = 5: 1 - C(7,5)/C(10,5) = 1 - 21/252 = 0.916666...
        assert!((pass_at_k(10, 3, 5).unwrap() - (1.0 - 21.0 / 252.0)).abs() < 1e-12);
        // Not enough incorrect samples to fill k draws: certain.
        assert_eq!(pass_at_k(4, 3, 2), Some(1.0));
        assert_eq!(pass_at_k(4, 0, 4), Some(0.0));
        assert_eq!(pass_at_k(3, 1, 4), None);
        assert_eq!(pass_at_k(3, 1, 0), None);
        for n in 1..=12 {
            for c in 0..=n {
                for k in 1..=n {
                    let a = pass_at_k(n, c, k).unwrap();
                    assert!((a - by_binomials(n, c, k)).abs() < 1e-12, "{n} {c} {k}");
                }
            }
        }
    }
}
