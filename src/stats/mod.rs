//! Pure statistics for comparing runs and raters: paired tests and intervals,
//! multiple-comparison correction, a seeded bootstrap, and agreement (kappa,
//! correlations, Krippendorff's alpha). No I/O; deterministic for the same input.

mod alpha;
mod bootstrap;
mod correlation;
mod dist;
mod kappa;
mod paired;

pub(crate) use alpha::{Level, krippendorff_alpha};
pub(crate) use bootstrap::{BOOTSTRAP_SEED, bootstrap_ci95, bootstrap_mean_ci95};
pub(crate) use correlation::{Correlation, correlation_ci95, pearson, spearman};
pub(crate) use kappa::{Weights, cohen_kappa, confusion};
pub use paired::{PairedStats, PairedTest};
pub(crate) use paired::{WILCOXON_EXACT_MAX, paired};

/// Holm's step-down adjustment of p-values (family-wise error control), in input order:
/// sorted ascending, `p_(i)` becomes `max_{j <= i} min(1, (m - j + 1) p_(j))`.
pub(crate) fn holm(p_values: &[f64]) -> Vec<f64> {
    let m = p_values.len();
    let mut order: Vec<usize> = (0..m).collect();
    // Stable sort on (p, index): ties keep input order, so output is deterministic.
    order.sort_by(|&a, &b| p_values[a].total_cmp(&p_values[b]).then(a.cmp(&b)));
    let mut adjusted = vec![0.0; m];
    let mut running = 0.0f64;
    for (rank, &index) in order.iter().enumerate() {
        let value = ((m - rank) as f64 * p_values[index]).min(1.0);
        running = running.max(value);
        adjusted[index] = running;
    }
    adjusted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holm_hand_worked() {
        // Sorted 0.005, 0.01, 0.03, 0.04 -> 4*0.005 = 0.02, 3*0.01 = 0.03,
        // 2*0.03 = 0.06, max(0.06, 1*0.04) = 0.06 (as statsmodels multipletests 'holm').
        let adjusted = holm(&[0.01, 0.04, 0.03, 0.005]);
        let expected = [0.03, 0.06, 0.06, 0.02];
        for (a, e) in adjusted.iter().zip(expected) {
            assert!((a - e).abs() < 1e-15, "{adjusted:?}");
        }
        assert_eq!(holm(&[0.5, 0.9]), vec![1.0, 1.0]);
        assert!(holm(&[]).is_empty());
    }
}
