//! Krippendorff's alpha between any number of raters, with missing ratings
//! (Krippendorff 2011, "Computing Krippendorff's alpha-reliability"): `1 - D_o / D_e`,
//! observed disagreement within units over the disagreement expected by chance among
//! every pairable value.

/// How different two values are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    /// Labels: any two distinct values differ by 1.
    Nominal,
    /// Ordered labels: by how many values lie between them (the ordinal metric).
    Ordinal,
    /// Measurements: by their squared difference.
    Interval,
}

/// Alpha of `units`, each the values its raters gave (units with fewer than two values
/// are not pairable and left out). `None` when nothing is pairable or every pairable
/// value is the same (no disagreement to expect).
pub(crate) fn krippendorff_alpha(units: &[Vec<f64>], level: Level) -> Option<f64> {
    let pairable: Vec<&Vec<f64>> = units.iter().filter(|u| u.len() >= 2).collect();
    // The distinct values, ascending, and how often each is pairable (n_c).
    let mut values: Vec<f64> = pairable.iter().flat_map(|u| u.iter().copied()).collect();
    let n = values.len();
    if n < 2 {
        return None;
    }
    values.sort_by(f64::total_cmp);
    values.dedup();
    let index = |v: f64| values.partition_point(|&x| x < v);
    let mut counts = vec![0.0f64; values.len()];
    for unit in &pairable {
        for &v in unit.iter() {
            counts[index(v)] += 1.0;
        }
    }
    // Squared distance between the values at indices c <= k.
    let cumulative: Vec<f64> = counts
        .iter()
        .scan(0.0, |sum, c| {
            *sum += c;
            Some(*sum)
        })
        .collect();
    let delta = |c: usize, k: usize| -> f64 {
        let (c, k) = (c.min(k), c.max(k));
        match level {
            Level::Nominal => f64::from(u8::from(c != k)),
            Level::Interval => (values[c] - values[k]).powi(2),
            Level::Ordinal => {
                if c == k {
                    return 0.0;
                }
                let below = if c == 0 { 0.0 } else { cumulative[c - 1] };
                let span = cumulative[k] - below - (counts[c] + counts[k]) / 2.0;
                span * span
            }
        }
    };
    let n = n as f64;
    let mut observed = 0.0;
    for unit in &pairable {
        let m = unit.len() as f64;
        let idx: Vec<usize> = unit.iter().map(|&v| index(v)).collect();
        let mut within = 0.0;
        for (i, &a) in idx.iter().enumerate() {
            for (j, &b) in idx.iter().enumerate() {
                if i != j {
                    within += delta(a, b);
                }
            }
        }
        observed += within / (m - 1.0);
    }
    observed /= n;
    let mut expected = 0.0;
    for (c, &nc) in counts.iter().enumerate() {
        for (k, &nk) in counts.iter().enumerate() {
            expected += nc * nk * delta(c, k);
        }
    }
    expected /= n * (n - 1.0);
    (expected > 0.0).then(|| 1.0 - observed / expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpha_hand_worked() {
        // Units (0, 0, 0) and (1, 1, 0): n = 6 pairable values, four 0s and two 1s.
        // Coincidences: the first unit adds 6 ordered 0-0 pairs / (3 - 1) = 3; the second
        // adds 1-1: 2/2 = 1, 1-0: 2/2 = 1, 0-1: 2/2 = 1. D_o = (1 + 1) / 6 = 1/3;
        // D_e = (6^2 - 4^2 - 2^2) / (6 * 5) = 16/30; alpha = 1 - (1/3) / (16/30) = 0.375.
        let units = vec![vec![0.0, 0.0, 0.0], vec![1.0, 1.0, 0.0]];
        let alpha = krippendorff_alpha(&units, Level::Nominal).expect("defined");
        assert!((alpha - 0.375).abs() < 1e-12, "{alpha}");
        // Two values: every metric is the nominal one up to scale, so alpha is the same.
        let interval = krippendorff_alpha(&units, Level::Interval).expect("defined");
        assert!((interval - 0.375).abs() < 1e-12, "{interval}");
    }

    /// Krippendorff (2011)'s worked example: 4 observers, 12 units, missing values;
    /// the paper gives alpha = 0.743 (nominal), 0.815 (ordinal), 0.849 (interval).
    #[test]
    fn alpha_matches_krippendorffs_example() {
        let rows: [[Option<f64>; 12]; 4] = {
            let (a, b, c, d, e) = (Some(1.0), Some(2.0), Some(3.0), Some(4.0), Some(5.0));
            [
                [a, b, c, c, b, a, d, a, b, None, None, None],
                [a, b, c, c, b, b, d, a, b, e, None, c],
                [None, c, c, c, b, c, d, b, b, e, a, None],
                [a, b, c, c, b, d, d, a, b, e, a, None],
            ]
        };
        let units: Vec<Vec<f64>> = (0..12)
            .map(|u| rows.iter().filter_map(|r| r[u]).collect())
            .collect();
        for (level, expected) in [
            (Level::Nominal, 0.743),
            (Level::Ordinal, 0.815),
            (Level::Interval, 0.849),
        ] {
            let alpha = krippendorff_alpha(&units, level).expect("defined");
            assert!((alpha - expected).abs() < 5e-4, "{level:?}: {alpha}");
        }
    }

    #[test]
    fn alpha_is_undefined_without_pairable_variation() {
        assert_eq!(krippendorff_alpha(&[vec![1.0]], Level::Nominal), None);
        assert_eq!(krippendorff_alpha(&[vec![1.0, 1.0]], Level::Nominal), None);
        assert_eq!(
            krippendorff_alpha(&[vec![0.0, 0.0], vec![1.0, 1.0]], Level::Nominal),
            Some(1.0)
        );
    }
}
