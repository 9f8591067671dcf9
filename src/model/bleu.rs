//! BLEU sufficient statistics and the score computed from them, as sacreBLEU does.
//!
//! Sentence BLEU and corpus BLEU differ only in what is summed: `builtin/bleu` records
//! each case's statistics in its score details, and the aggregates add them up so the
//! run reports corpus BLEU (the sum of statistics, not the mean of sentence scores).
//! Integer sums make corpus BLEU independent of the order cases finish in.

use serde::{Deserialize, Serialize};

/// The key of [`BleuStats`] in a score's details: scores carrying it are summed into
/// the aggregate's `corpus_bleu`.
pub(crate) const BLEU_DETAILS_KEY: &str = "bleu_stats";

/// Highest n-gram order (sacreBLEU's default, 4).
pub(crate) const BLEU_MAX_ORDER: usize = 4;

/// Matched and total n-gram counts per order, hypothesis length and the closest
/// reference length.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BleuStats {
    pub correct: [u64; BLEU_MAX_ORDER],
    pub total: [u64; BLEU_MAX_ORDER],
    pub sys_len: u64,
    pub ref_len: u64,
}

impl BleuStats {
    pub(crate) fn add(&mut self, other: &BleuStats) {
        for n in 0..BLEU_MAX_ORDER {
            self.correct[n] = self.correct[n].saturating_add(other.correct[n]);
            self.total[n] = self.total[n].saturating_add(other.total[n]);
        }
        self.sys_len = self.sys_len.saturating_add(other.sys_len);
        self.ref_len = self.ref_len.saturating_add(other.ref_len);
    }

    /// BLEU in 0..1 (sacreBLEU's score / 100) with sacreBLEU's `exp` smoothing: the
    /// k-th order with no match counts as `1 / (2^k * total)`. `effective_order` (used
    /// for sentence BLEU) averages only over the orders the hypothesis is long enough
    /// to have; corpus BLEU uses all four.
    pub(crate) fn score(&self, effective_order: bool) -> f64 {
        if self.sys_len == 0 || self.correct.iter().all(|c| *c == 0) {
            return 0.0;
        }
        let mut log_sum = 0.0;
        let mut smooth = 1.0;
        let mut order = BLEU_MAX_ORDER;
        let mut used = 0;
        for n in 0..BLEU_MAX_ORDER {
            if self.total[n] == 0 {
                break;
            }
            used = n + 1;
            let precision = if self.correct[n] == 0 {
                smooth *= 2.0;
                1.0 / (smooth * self.total[n] as f64)
            } else {
                self.correct[n] as f64 / self.total[n] as f64
            };
            log_sum += precision.ln();
        }
        if effective_order {
            order = used;
        } else if used < BLEU_MAX_ORDER {
            // An order with no n-grams at all has precision 0: BLEU is 0.
            return 0.0;
        }
        let brevity = if self.sys_len < self.ref_len {
            (1.0 - self.ref_len as f64 / self.sys_len as f64).exp()
        } else {
            1.0
        };
        brevity * (log_sum / order as f64).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scoring_matches_sacrebleu() {
        // sacrebleu test/test_bleu.py, test_case_scoring: compute_bleu([9,7,5,3],
        // [10,8,6,4], 11, 11) == 0.8375922397 (score / 100).
        let stats = BleuStats {
            correct: [9, 7, 5, 3],
            total: [10, 8, 6, 4],
            sys_len: 11,
            ref_len: 11,
        };
        assert!((stats.score(false) - 0.837_592_239_7).abs() < 1e-8);
        // No match at all is 0 (sacreBLEU issue #141).
        let none = BleuStats {
            total: [4, 3, 2, 1],
            sys_len: 4,
            ref_len: 2,
            ..Default::default()
        };
        assert_eq!(none.score(true), 0.0);
    }
}
