//! Distribution functions the tests need: the normal tail and exact binomial tails.

/// `erfc(x)` to about 1e-15 relative error: a positive-term series below 3 (no
/// cancellation), Lentz's continued fraction above.
pub(super) fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x < 0.0 {
        return 2.0 - erfc(-x);
    }
    if x < 3.0 {
        // erf(x) = 2/sqrt(pi) * exp(-x^2) * sum_n 2^n x^(2n+1) / (1*3*...*(2n+1))
        let mut term = x;
        let mut sum = x;
        let mut n = 0.0;
        while term > sum * 1e-17 {
            n += 1.0;
            term *= 2.0 * x * x / (2.0 * n + 1.0);
            sum += term;
        }
        return 1.0 - std::f64::consts::FRAC_2_SQRT_PI * (-x * x).exp() * sum;
    }
    // erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + ...)))))
    let tiny = 1e-300;
    let mut f = x;
    let mut c = x;
    let mut d = 0.0;
    for i in 1..500 {
        let a = i as f64 / 2.0;
        d = x + a * d;
        d = if d.abs() < tiny { 1.0 / tiny } else { 1.0 / d };
        c = x + a / c;
        if c.abs() < tiny {
            c = tiny;
        }
        let delta = c * d;
        f *= delta;
        if (delta - 1.0).abs() < 1e-16 {
            break;
        }
    }
    (-x * x).exp() / (f * std::f64::consts::PI.sqrt())
}

/// Two-sided p-value of a standard normal statistic: `P(|Z| >= |z|)`.
pub(super) fn normal_two_sided(z: f64) -> f64 {
    erfc(z.abs() / std::f64::consts::SQRT_2).min(1.0)
}

/// Two-sided exact binomial test of `k` successes out of `n` at p = 1/2:
/// `min(1, 2 * P(X <= min(k, n - k)))`. Up to n = 1000 the tail is summed directly (small
/// cases come out exact, e.g. 2 / 2^6); above, relative to its largest term in log
/// space, so large `n` cannot overflow or underflow.
pub(super) fn binomial_half_two_sided(k: u64, n: u64) -> f64 {
    if n == 0 {
        return 1.0;
    }
    let low = k.min(n - k);
    if n <= 1000 {
        let mut term = 1.0f64;
        let mut sum = 1.0f64;
        for i in 1..=low {
            term = term * (n - i + 1) as f64 / i as f64;
            sum += term;
        }
        return (2.0 * sum * 0.5f64.powi(n as i32)).min(1.0);
    }
    // Terms relative to the largest (i = low), walking down: each ratio is i / (n - i + 1).
    let mut relative = 1.0f64;
    let mut sum = 1.0f64;
    for i in (1..=low).rev() {
        relative *= i as f64 / (n - i + 1) as f64;
        if relative < 1e-18 {
            break;
        }
        sum += relative;
    }
    let ln_c: f64 = (1..=low)
        .map(|i| ((n - i + 1) as f64).ln() - (i as f64).ln())
        .sum();
    let ln_p = ln_c - n as f64 * std::f64::consts::LN_2 + sum.ln();
    (2.0 * ln_p.exp()).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs()
    }

    #[test]
    fn erfc_matches_reference_values() {
        // Abramowitz & Stegun table 7.1 / Wolfram Alpha, to 15 digits.
        assert!(close(erfc(0.0), 1.0, 1e-15));
        assert!(close(erfc(0.5), 0.479_500_122_186_953_5, 1e-13));
        assert!(close(erfc(1.0), 0.157_299_207_050_285_1, 1e-13));
        assert!(close(erfc(2.0), 0.004_677_734_981_047_266, 1e-12));
        assert!(close(erfc(3.0), 2.209_049_699_858_544e-5, 1e-12));
        assert!(close(erfc(5.0), 1.537_459_794_428_035e-12, 1e-12));
        assert!(close(erfc(-1.0), 1.842_700_792_949_715, 1e-14));
    }

    #[test]
    fn normal_tail_at_the_975_quantile_is_five_percent() {
        assert!(close(normal_two_sided(1.959_963_984_540_054), 0.05, 1e-12));
        assert!(close(normal_two_sided(-1.959_963_984_540_054), 0.05, 1e-12));
    }

    #[test]
    fn binomial_tails_hand_worked() {
        // n = 5, k = 0: 2 * 1/32.
        assert!(close(binomial_half_two_sided(0, 5), 0.0625, 1e-14));
        // n = 10, k = 2: 2 * (1 + 10 + 45) / 1024 = 0.109375.
        assert!(close(binomial_half_two_sided(2, 10), 0.109_375, 1e-14));
        assert!(close(binomial_half_two_sided(8, 10), 0.109_375, 1e-14));
        // The middle is capped at 1.
        assert_eq!(binomial_half_two_sided(5, 10), 1.0);
        assert_eq!(binomial_half_two_sided(0, 6), 0.03125);
        // Large n (log-space branch): P(X <= 4950) for n = 10_000 is the normal tail at
        // z = (4950.5 - 5000) / 50 = -0.99 to within ~1e-3 (continuity-corrected).
        let p = binomial_half_two_sided(4950, 10_000);
        assert!((p - normal_two_sided(0.99)).abs() < 2e-3, "{p}");
        assert_eq!(binomial_half_two_sided(0, 100_000), 0.0);
        assert_eq!(binomial_half_two_sided(50_000, 100_000), 1.0);
        // Both sides of the switch at n = 1000 match the continuity-corrected normal.
        for n in [1000u64, 1001] {
            let z = (480.5 - n as f64 / 2.0) / ((n as f64).sqrt() / 2.0);
            let p = binomial_half_two_sided(480, n);
            assert!((p - normal_two_sided(z)).abs() < 3e-3, "{n}: {p}");
        }
    }
}
