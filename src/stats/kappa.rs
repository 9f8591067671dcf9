//! Agreement on labels: the confusion matrix and Cohen's kappa, unweighted for nominal
//! labels and quadratically weighted for ordered ones (Cohen 1968): disagreeing by two
//! steps counts four times as much as by one.

/// How much a disagreement between two labels counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Weights {
    /// Any disagreement counts 1.
    Nominal,
    /// `(i - j)^2 / (k - 1)^2` for labels `i`, `j` of `k` ordered ones.
    Quadratic,
}

/// Counts of `(rater a's label, rater b's label)`: `matrix[a][b]`. Labels are indices
/// below `k`; pairs outside are left out.
pub(crate) fn confusion(pairs: &[(usize, usize)], k: usize) -> Vec<Vec<u64>> {
    let mut matrix = vec![vec![0u64; k]; k];
    for &(a, b) in pairs {
        if a < k && b < k {
            matrix[a][b] += 1;
        }
    }
    matrix
}

/// Cohen's kappa of label pairs (indices below `k`): `1 - sum(w * observed) /
/// sum(w * expected)`, expected from the two raters' marginals. `None` when it is
/// undefined: no pairs, or chance alone would give no disagreement (both raters used
/// one label).
pub(crate) fn cohen_kappa(pairs: &[(usize, usize)], k: usize, weights: Weights) -> Option<f64> {
    if pairs.is_empty() || k < 2 {
        return None;
    }
    let matrix = confusion(pairs, k);
    let n: u64 = matrix.iter().flatten().sum();
    if n == 0 {
        return None;
    }
    let rows: Vec<f64> = matrix
        .iter()
        .map(|r| r.iter().sum::<u64>() as f64)
        .collect();
    let cols: Vec<f64> = (0..k)
        .map(|j| matrix.iter().map(|r| r[j]).sum::<u64>() as f64)
        .collect();
    let weight = |i: usize, j: usize| match weights {
        Weights::Nominal => f64::from(u8::from(i != j)),
        Weights::Quadratic => {
            let d = i as f64 - j as f64;
            d * d / ((k - 1) as f64).powi(2)
        }
    };
    let n = n as f64;
    let (mut observed, mut expected) = (0.0, 0.0);
    for i in 0..k {
        for j in 0..k {
            let w = weight(i, j);
            observed += w * matrix[i][j] as f64 / n;
            expected += w * rows[i] * cols[j] / (n * n);
        }
    }
    (expected > 0.0).then(|| 1.0 - observed / expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs_of(matrix: &[&[u64]]) -> Vec<(usize, usize)> {
        let mut pairs = Vec::new();
        for (i, row) in matrix.iter().enumerate() {
            for (j, &count) in row.iter().enumerate() {
                pairs.extend(std::iter::repeat_n((i, j), count as usize));
            }
        }
        pairs
    }

    #[test]
    fn cohen_kappa_hand_worked() {
        // [[20, 5], [10, 15]], n = 50: p_o = 35/50 = 0.7; the marginals are 25/25 and
        // 30/20, so p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5; kappa = (0.7 - 0.5) / 0.5 = 0.4.
        let pairs = pairs_of(&[&[20, 5], &[10, 15]]);
        let kappa = cohen_kappa(&pairs, 2, Weights::Nominal).expect("defined");
        assert!((kappa - 0.4).abs() < 1e-12, "{kappa}");
        assert_eq!(confusion(&pairs, 2), vec![vec![20, 5], vec![10, 15]]);
        // Two labels: the quadratic weights are the nominal ones.
        let weighted = cohen_kappa(&pairs, 2, Weights::Quadratic).expect("defined");
        assert!((weighted - 0.4).abs() < 1e-12);
    }

    #[test]
    fn weighted_kappa_hand_worked() {
        // Three ordered labels, n = 10, matrix [[3, 1, 0], [0, 2, 1], [1, 0, 2]].
        // Rows 4/3/3, columns 4/3/3. Weights (i-j)^2/4: 0.25 one step, 1 two steps.
        // Observed: 0.25 * (1 + 1) / 10 + 1 * (0 + 1) / 10 = 0.15.
        // Expected: sum w * r_i c_j / 100 = 0.25 * (4*3 + 3*4 + 3*3 + 3*3) / 100
        //           + 1 * (4*3 + 3*4) / 100 = 0.105 + 0.24 = 0.345.
        // Weighted kappa = 1 - 0.15 / 0.345 = 0.565217...
        let pairs = pairs_of(&[&[3, 1, 0], &[0, 2, 1], &[1, 0, 2]]);
        let kappa = cohen_kappa(&pairs, 3, Weights::Quadratic).expect("defined");
        assert!((kappa - (1.0 - 0.15 / 0.345)).abs() < 1e-12, "{kappa}");
        // Unweighted: p_o = 7/10, p_e = (16 + 9 + 9)/100 = 0.34; (0.7-0.34)/0.66 = 0.5454...
        let nominal = cohen_kappa(&pairs, 3, Weights::Nominal).expect("defined");
        assert!((nominal - 0.36 / 0.66).abs() < 1e-12, "{nominal}");
    }

    #[test]
    fn kappa_is_undefined_without_variation() {
        assert_eq!(cohen_kappa(&[(1, 1), (1, 1)], 2, Weights::Nominal), None);
        assert_eq!(cohen_kappa(&[], 2, Weights::Nominal), None);
        // Perfect agreement with variation is 1; systematic opposition is -1.
        assert_eq!(
            cohen_kappa(&[(0, 0), (1, 1)], 2, Weights::Nominal),
            Some(1.0)
        );
        assert_eq!(
            cohen_kappa(&[(0, 1), (1, 0)], 2, Weights::Nominal),
            Some(-1.0)
        );
    }
}
