//! Seeded percentile bootstrap of a mean.

/// Resamples drawn for a bootstrap interval.
pub(super) const BOOTSTRAP_RESAMPLES: usize = 1_000;
/// Fixed seed, so the same scores always give the same interval.
pub(crate) const BOOTSTRAP_SEED: u64 = 0x7468_656d_6973; // "themis"

/// SplitMix64 (Steele, Lea & Flood 2014): small, fast, and fully specified, so
/// intervals do not change with a dependency's version.
#[derive(Debug, Clone)]
pub(super) struct SplitMix64(u64);

impl SplitMix64 {
    pub(super) fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub(super) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform index below `n` (multiply-shift; the bias is below n / 2^64).
    pub(super) fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
}

/// 95% percentile bootstrap interval of the mean of `values`: [`BOOTSTRAP_RESAMPLES`]
/// resamples with replacement drawn from `SplitMix64(seed)`, bounds at the sorted
/// resample means of index `floor(0.025 B)` and `ceil(0.975 B) - 1`. `None` below two
/// values. Work is `values.len() * B`.
pub(crate) fn bootstrap_mean_ci95(values: &[f64], seed: u64) -> Option<[f64; 2]> {
    let n = values.len();
    if n < 2 {
        return None;
    }
    let mut rng = SplitMix64::new(seed);
    let mut means: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| {
            let sum: f64 = (0..n).map(|_| values[rng.below(n)]).sum();
            sum / n as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let b = BOOTSTRAP_RESAMPLES as f64;
    let lo = (0.025 * b).floor() as usize;
    let hi = ((0.975 * b).ceil() as usize).saturating_sub(1);
    Some([means[lo], means[hi]])
}

/// 95% percentile bootstrap interval of any statistic of `items`, resampled as
/// [`bootstrap_mean_ci95`] does; resamples where the statistic is undefined (`None`) are
/// left out. `None` below two items or when fewer than half the resamples are defined.
/// Work is `B` times the statistic's on `items.len()` items.
pub(crate) fn bootstrap_ci95<T: Clone>(
    items: &[T],
    seed: u64,
    statistic: impl Fn(&[T]) -> Option<f64>,
) -> Option<[f64; 2]> {
    let n = items.len();
    if n < 2 {
        return None;
    }
    let mut rng = SplitMix64::new(seed);
    let mut sample: Vec<T> = items.to_vec();
    let mut values: Vec<f64> = Vec::with_capacity(BOOTSTRAP_RESAMPLES);
    for _ in 0..BOOTSTRAP_RESAMPLES {
        for slot in sample.iter_mut() {
            *slot = items[rng.below(n)].clone();
        }
        if let Some(value) = statistic(&sample).filter(|v| v.is_finite()) {
            values.push(value);
        }
    }
    if values.len() * 2 < BOOTSTRAP_RESAMPLES {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let b = values.len() as f64;
    let lo = (0.025 * b).floor() as usize;
    let hi = ((0.975 * b).ceil() as usize).saturating_sub(1);
    Some([values[lo], values[hi]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_reference_sequence() {
        // First outputs for seed 0, as in the reference C implementation
        // (prng.di.unimi.it/splitmix64.c).
        let mut rng = SplitMix64::new(0);
        assert_eq!(rng.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(rng.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(rng.next_u64(), 0x06c4_5d18_8009_454f);
    }

    #[test]
    fn bootstrap_is_seeded_and_sensible() {
        let values: Vec<f64> = (0..200).map(|i| (i % 2) as f64).collect();
        let a = bootstrap_mean_ci95(&values, BOOTSTRAP_SEED).unwrap();
        let b = bootstrap_mean_ci95(&values, BOOTSTRAP_SEED).unwrap();
        assert_eq!(a, b, "same seed, same interval");
        // Mean 0.5, se = 0.5 / sqrt(200) = 0.0354: the 95% interval is about ±0.069.
        assert!(a[0] < 0.5 && a[1] > 0.5);
        assert!(
            (a[0] - 0.431).abs() < 0.02 && (a[1] - 0.569).abs() < 0.02,
            "{a:?}"
        );
        let constant = bootstrap_mean_ci95(&[0.25; 10], 1).unwrap();
        assert_eq!(constant, [0.25, 0.25]);
        assert_eq!(bootstrap_mean_ci95(&[1.0], 1), None);
    }

    #[test]
    fn a_bootstrap_of_any_statistic_is_seeded_and_brackets_it() {
        let values: Vec<f64> = (0..50).map(|i| f64::from(i % 7)).collect();
        let mean = |s: &[f64]| Some(s.iter().sum::<f64>() / s.len() as f64);
        let [lo, hi] = bootstrap_ci95(&values, 7, mean).expect("an interval");
        assert!(lo < 2.94 && 2.94 < hi, "{lo} {hi}");
        assert_eq!(bootstrap_ci95(&values, 7, mean), Some([lo, hi]));
        // Resamples where the statistic is undefined are left out; mostly undefined: none.
        assert_eq!(bootstrap_ci95(&values, 7, |_| None), None);
        assert_eq!(bootstrap_ci95(&values[..1], 7, mean), None);
    }
}
