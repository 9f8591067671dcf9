//! Agreement on measurements: Pearson's r, Spearman's rho (Pearson's r of average
//! ranks, so ties are handled), and their 95% intervals through Fisher's z.

/// Pearson's correlation of `(x, y)` pairs; `None` below two pairs or when either side
/// is constant.
pub(crate) fn pearson(pairs: &[(f64, f64)]) -> Option<f64> {
    let n = pairs.len();
    if n < 2 {
        return None;
    }
    let mean_x = pairs.iter().map(|p| p.0).sum::<f64>() / n as f64;
    let mean_y = pairs.iter().map(|p| p.1).sum::<f64>() / n as f64;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for &(x, y) in pairs {
        let (dx, dy) = (x - mean_x, y - mean_y);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    (sxx > 0.0 && syy > 0.0).then(|| (sxy / (sxx * syy).sqrt()).clamp(-1.0, 1.0))
}

/// 1-based ranks, ties sharing the mean of the ranks they span.
pub(crate) fn average_ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        // Positions start..end hold ranks start+1..=end: their mean.
        let rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        start = end;
    }
    ranks
}

/// Spearman's rank correlation (ties at their average rank).
pub(crate) fn spearman(pairs: &[(f64, f64)]) -> Option<f64> {
    let xs: Vec<f64> = pairs.iter().map(|p| p.0).collect();
    let ys: Vec<f64> = pairs.iter().map(|p| p.1).collect();
    let ranked: Vec<(f64, f64)> = average_ranks(&xs)
        .into_iter()
        .zip(average_ranks(&ys))
        .collect();
    pearson(&ranked)
}

/// What a correlation's interval is for: Spearman's z has a larger variance
/// (Fieller, Hartley & Pearson 1957: 1.06 / (n - 3)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Correlation {
    Pearson,
    Spearman,
}

/// The 95% interval of a correlation `r` of `n` pairs through Fisher's
/// `z = atanh(r)`, normal with standard error `1/sqrt(n - 3)`; `None` for n <= 3.
pub(crate) fn correlation_ci95(r: f64, n: usize, kind: Correlation) -> Option<[f64; 2]> {
    if n <= 3 || !r.is_finite() {
        return None;
    }
    let variance = match kind {
        Correlation::Pearson => 1.0,
        Correlation::Spearman => 1.06,
    } / (n - 3) as f64;
    // atanh(±1) is infinite: a perfect correlation's interval is the point.
    let z = r.clamp(-1.0 + 1e-12, 1.0 - 1e-12).atanh();
    let half = 1.959_963_984_540_054 * variance.sqrt();
    Some([(z - half).tanh(), (z + half).tanh()])
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAIRS: [(f64, f64); 5] = [(1.0, 2.0), (2.0, 4.0), (3.0, 5.0), (4.0, 4.0), (5.0, 5.0)];

    #[test]
    fn pearson_hand_worked() {
        // Means 3 and 4; deviations x: -2 -1 0 1 2, y: -2 0 1 0 1.
        // Sxy = 4 + 0 + 0 + 0 + 2 = 6, Sxx = 10, Syy = 6: r = 6 / sqrt(60).
        let r = pearson(&PAIRS).expect("defined");
        assert!((r - 6.0 / 60f64.sqrt()).abs() < 1e-12, "{r}");
        assert_eq!(pearson(&[(1.0, 1.0), (2.0, 1.0)]), None);
    }

    #[test]
    fn spearman_hand_worked_with_ties() {
        // y = 2 4 5 4 5 ranks 1, 2.5, 4.5, 2.5, 4.5 (mean 3); x ranks 1..5.
        // Deviations: y -2 -0.5 1.5 -0.5 1.5; Sxy = 4 + 0.5 + 0 - 0.5 + 3 = 7,
        // Sxx = 10, Syy = 4 + 0.25 + 2.25 + 0.25 + 2.25 = 9: rho = 7 / sqrt(90).
        assert_eq!(
            average_ranks(&[2.0, 4.0, 5.0, 4.0, 5.0]),
            vec![1.0, 2.5, 4.5, 2.5, 4.5]
        );
        let rho = spearman(&PAIRS).expect("defined");
        assert!((rho - 7.0 / 90f64.sqrt()).abs() < 1e-12, "{rho}");
    }

    #[test]
    fn fisher_interval_hand_worked() {
        // r = 0.5, n = 28: z = atanh(0.5) = 0.549306, se = 1/5 = 0.2,
        // z ± 1.96 se = 0.157314 .. 0.941299, back: tanh = 0.156028 .. 0.735818.
        let [lo, hi] = correlation_ci95(0.5, 28, Correlation::Pearson).expect("defined");
        assert!((lo - 0.156_028).abs() < 1e-5, "{lo}");
        assert!((hi - 0.735_818).abs() < 1e-5, "{hi}");
        let [slo, shi] = correlation_ci95(0.5, 28, Correlation::Spearman).expect("defined");
        assert!(slo < lo && shi > hi, "Spearman's interval is wider");
        assert_eq!(correlation_ci95(0.5, 3, Correlation::Pearson), None);
    }
}
