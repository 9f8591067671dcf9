//! Paired comparison of two runs' scores on the same cases.
//!
//! - `delta_ci95`: Student t-interval on the per-case differences (candidate − baseline).
//! - `p_value`: when every score on both sides is 0 or 1, the exact McNemar test (a
//!   two-sided binomial test at 1/2 on the discordant pairs); otherwise the two-sided
//!   Wilcoxon signed-rank test (zero differences dropped, tied |differences| get average
//!   ranks), exact (the permutation distribution of the signed ranks, ties included)
//!   up to [`WILCOXON_EXACT_MAX`] non-zero differences, else the normal approximation
//!   with tie correction and no continuity correction (scipy's defaults).
//!
//! Nothing here is random: the same pairs in the same order give bit-identical output.

use serde::{Deserialize, Serialize};

use super::dist::{binomial_half_two_sided, normal_two_sided};
use crate::model::{Accumulator, ExactSum};

/// Largest number of non-zero differences the signed-rank p-value is computed exactly for.
pub(crate) const WILCOXON_EXACT_MAX: usize = 50;

/// The test that produced a p-value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PairedTest {
    McnemarExact,
    WilcoxonExact,
    WilcoxonNormal,
}

impl PairedTest {
    pub fn as_str(&self) -> &'static str {
        match self {
            PairedTest::McnemarExact => "mcnemar_exact",
            PairedTest::WilcoxonExact => "wilcoxon_exact",
            PairedTest::WilcoxonNormal => "wilcoxon_normal",
        }
    }
}

/// The paired statistics of one metric over the cases both runs scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedStats {
    pub n_paired: u64,
    pub baseline_mean: Option<f64>,
    pub candidate_mean: Option<f64>,
    /// Mean of candidate − baseline.
    pub delta: Option<f64>,
    /// t-interval on the differences; needs two pairs.
    pub delta_ci95: Option<[f64; 2]>,
    pub p_value: Option<f64>,
    pub test: Option<PairedTest>,
    /// Cases where the candidate scored higher.
    pub wins: u64,
    /// Cases where the candidate scored lower.
    pub losses: u64,
    pub ties: u64,
}

/// Paired statistics of `(baseline, candidate)` score pairs (finite values).
pub(crate) fn paired(pairs: &[(f64, f64)]) -> PairedStats {
    let mut base = ExactSum::default();
    let mut cand = ExactSum::default();
    let mut diffs = Accumulator::default();
    let (mut wins, mut losses, mut ties) = (0, 0, 0);
    let mut binary = true;
    for &(b, c) in pairs {
        base.add(b);
        cand.add(c);
        diffs.observe(c - b);
        match c.partial_cmp(&b) {
            Some(std::cmp::Ordering::Greater) => wins += 1,
            Some(std::cmp::Ordering::Less) => losses += 1,
            _ => ties += 1,
        }
        binary &= (b == 0.0 || b == 1.0) && (c == 0.0 || c == 1.0);
    }
    let n = pairs.len() as u64;
    if n == 0 {
        return PairedStats {
            n_paired: 0,
            baseline_mean: None,
            candidate_mean: None,
            delta: None,
            delta_ci95: None,
            p_value: None,
            test: None,
            wins,
            losses,
            ties,
        };
    }
    let summary = diffs.t_summary();
    let (p_value, test) = if binary {
        (
            binomial_half_two_sided(wins.min(losses), wins + losses),
            PairedTest::McnemarExact,
        )
    } else {
        let differences: Vec<f64> = pairs.iter().map(|(b, c)| c - b).collect();
        wilcoxon(&differences)
    };
    PairedStats {
        n_paired: n,
        baseline_mean: Some(base.value() / n as f64),
        candidate_mean: Some(cand.value() / n as f64),
        delta: summary.mean,
        delta_ci95: summary.ci95,
        p_value: Some(p_value),
        test: Some(test),
        wins,
        losses,
        ties,
    }
}

/// Two-sided Wilcoxon signed-rank test of the differences.
pub(super) fn wilcoxon(differences: &[f64]) -> (f64, PairedTest) {
    let mut nonzero: Vec<f64> = differences.iter().copied().filter(|d| *d != 0.0).collect();
    let n = nonzero.len();
    if n == 0 {
        return (1.0, PairedTest::WilcoxonExact);
    }
    nonzero.sort_by(|a, b| a.abs().total_cmp(&b.abs()));
    // Doubled average ranks stay integers: a tie group over 1-based ranks i..=j has
    // average rank (i + j) / 2, doubled i + j.
    let mut doubled = vec![0u64; n];
    let mut tie_term = 0.0; // sum of t^3 - t over tie groups
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && nonzero[j + 1].abs() == nonzero[i].abs() {
            j += 1;
        }
        let rank2 = (i + 1 + j + 1) as u64;
        doubled[i..=j].iter_mut().for_each(|r| *r = rank2);
        let t = (j - i + 1) as f64;
        tie_term += t * t * t - t;
        i = j + 1;
    }
    let w_plus2: u64 = nonzero
        .iter()
        .zip(&doubled)
        .filter(|(d, _)| **d > 0.0)
        .map(|(_, r)| *r)
        .sum();
    if n <= WILCOXON_EXACT_MAX {
        (
            exact_signed_rank(&doubled, w_plus2),
            PairedTest::WilcoxonExact,
        )
    } else {
        let nf = n as f64;
        let mean = nf * (nf + 1.0) / 4.0;
        let variance = nf * (nf + 1.0) * (2.0 * nf + 1.0) / 24.0 - tie_term / 48.0;
        if variance <= 0.0 {
            return (1.0, PairedTest::WilcoxonNormal);
        }
        let z = (w_plus2 as f64 / 2.0 - mean) / variance.sqrt();
        (normal_two_sided(z), PairedTest::WilcoxonNormal)
    }
}

/// `min(1, 2 * min(P(S <= w), P(S >= w)))` where S is the sum of a random subset of the
/// (doubled) ranks, each in or out with probability 1/2: the null distribution of W+.
fn exact_signed_rank(doubled: &[u64], w_plus2: u64) -> f64 {
    let total: u64 = doubled.iter().sum();
    // counts[s] = number of sign assignments with doubled W+ = s (at most 2^50: exact in f64).
    let mut counts = vec![0.0f64; total as usize + 1];
    counts[0] = 1.0;
    let mut reach = 0usize;
    for &r in doubled {
        let r = r as usize;
        for s in (0..=reach).rev() {
            let c = counts[s];
            if c != 0.0 {
                counts[s + r] += c;
            }
        }
        reach += r;
    }
    let all = 2f64.powi(doubled.len() as i32);
    let w = w_plus2 as usize;
    let low: f64 = counts[..=w].iter().sum();
    let high: f64 = counts[w..].iter().sum();
    (2.0 * low.min(high) / all).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs_from_diffs(diffs: &[f64]) -> Vec<(f64, f64)> {
        diffs.iter().map(|d| (0.5, 0.5 + d)).collect()
    }

    #[test]
    fn wilcoxon_exact_hand_worked() {
        // All five positive: W+ = 15 is the single most extreme of 2^5 sign patterns,
        // p = 2/32 (scipy.stats.wilcoxon([1,2,3,4,5]).pvalue == 0.0625).
        let (p, test) = wilcoxon(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(test, PairedTest::WilcoxonExact);
        assert!((p - 0.0625).abs() < 1e-15);
        // W+ = 13 (rank 2 negative): subsets of {1..5} with sum >= 13 are the complements
        // of those with sum <= 2 ({}, {1}, {2}): p = 2 * 3/32 = 0.1875.
        let (p, _) = wilcoxon(&[1.0, -2.0, 3.0, 4.0, 5.0]);
        assert!((p - 0.1875).abs() < 1e-15);
        // Symmetric in sign.
        let (q, _) = wilcoxon(&[-1.0, 2.0, -3.0, -4.0, -5.0]);
        assert_eq!(p, q);
        // Zeros are dropped: same as the five non-zero differences.
        let (z, _) = wilcoxon(&[0.0, 1.0, 2.0, 0.0, 3.0, 4.0, 5.0]);
        assert!((z - 0.0625).abs() < 1e-15);
    }

    #[test]
    fn wilcoxon_exact_with_ties_hand_worked() {
        // |d| = 1, 1, 2: ranks 1.5, 1.5, 3 (doubled 3, 3, 6), all positive: W+ = 6,
        // the maximum, reached by 1 of 8 sign patterns: p = 2/8.
        let (p, _) = wilcoxon(&[1.0, -1.0, 2.0].map(f64::abs));
        assert!((p - 0.25).abs() < 1e-15);
        // d = 1, -1, 2: W+ = 1.5 + 3 = 4.5 (doubled 9 of 12). Doubled sums of
        // subsets of {3, 3, 6}: 0, 3, 3, 6, 6, 9, 9, 12; P(S >= 9) = 3/8, P(S <= 9) = 7/8.
        let (p, _) = wilcoxon(&[1.0, -1.0, 2.0]);
        assert!((p - 0.75).abs() < 1e-15);
    }

    #[test]
    fn wilcoxon_normal_approximation_agrees_with_exact_near_the_switch() {
        // 60 differences, mixed signs, no ties: the normal approximation's p must be close
        // to the exact permutation p computed by the same DP.
        let diffs: Vec<f64> = (1..=60)
            .map(|i| if i % 3 == 0 { -(i as f64) } else { i as f64 })
            .collect();
        let (approx, test) = wilcoxon(&diffs);
        assert_eq!(test, PairedTest::WilcoxonNormal);
        let doubled: Vec<u64> = (1..=60).map(|i| 2 * i).collect();
        let w_plus2: u64 = (1..=60u64).filter(|i| i % 3 != 0).map(|i| 2 * i).sum();
        let exact = exact_signed_rank(&doubled, w_plus2);
        assert!((approx - exact).abs() < 0.005, "{approx} vs {exact}");
    }

    #[test]
    fn mcnemar_on_binary_scores_hand_worked() {
        // 2 wins (0 -> 1), 8 losses (1 -> 0), 5 ties: binomial(10, 1/2) two-sided at 2:
        // 2 * (1 + 10 + 45) / 1024 = 0.109375 (scipy.stats.binomtest(2, 10).pvalue).
        let mut pairs = vec![(0.0, 1.0); 2];
        pairs.extend(vec![(1.0, 0.0); 8]);
        pairs.extend(vec![(1.0, 1.0); 3]);
        pairs.extend(vec![(0.0, 0.0); 2]);
        let s = paired(&pairs);
        assert_eq!(s.test, Some(PairedTest::McnemarExact));
        assert_eq!((s.wins, s.losses, s.ties), (2, 8, 5));
        assert!((s.p_value.unwrap() - 0.109_375).abs() < 1e-15);
        assert_eq!(s.n_paired, 15);
        assert!((s.baseline_mean.unwrap() - 11.0 / 15.0).abs() < 1e-15);
        assert!((s.candidate_mean.unwrap() - 5.0 / 15.0).abs() < 1e-15);
        assert!((s.delta.unwrap() - (-6.0 / 15.0)).abs() < 1e-15);
    }

    #[test]
    fn t_interval_on_differences_hand_worked() {
        // Differences 1, 2, 3, 4: mean 2.5, sd = sqrt(5/3), se = sd / 2,
        // t(3) = 3.182446 (t table): half-width = 3.182446 * 0.6454972 = 2.0542601.
        let s = paired(&pairs_from_diffs(&[1.0, 2.0, 3.0, 4.0]));
        assert!((s.delta.unwrap() - 2.5).abs() < 1e-12);
        let [lo, hi] = s.delta_ci95.unwrap();
        let half = 3.182446 * (5.0f64 / 3.0).sqrt() / 2.0;
        assert!((lo - (2.5 - half)).abs() < 1e-9 && (hi - (2.5 + half)).abs() < 1e-9);
        assert!((half - 2.054_260_1).abs() < 1e-6);
        assert_eq!(s.test, Some(PairedTest::WilcoxonExact));
        // All four positive: p = 2/16.
        assert!((s.p_value.unwrap() - 0.125).abs() < 1e-15);
    }

    #[test]
    fn nothing_paired_has_no_statistics() {
        let s = paired(&[]);
        assert_eq!(s.n_paired, 0);
        assert_eq!(s.delta, None);
        assert_eq!(s.p_value, None);
    }

    #[test]
    fn identical_runs_have_p_one() {
        let s = paired(&[(0.3, 0.3), (0.7, 0.7)]);
        assert_eq!(s.p_value, Some(1.0));
        assert_eq!(s.delta, Some(0.0));
        assert_eq!(s.ties, 2);
    }
}
