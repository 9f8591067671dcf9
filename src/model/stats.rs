//! Aggregate statistics that are exact and independent of the order cases finish in.
//!
//! Sums use Shewchuk's exact floating-point summation (as Python's `math.fsum`): the
//! result is the correctly rounded sum whatever the order of the additions, so runs with
//! different concurrency report bit-identical aggregates.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where the price of a call came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PriceSource {
    /// The run's own `price` param.
    Run,
    /// The operator's price table (`--prices`).
    Operator,
    /// The bundled table of well-known hosted models.
    Default,
    /// Calls priced from more than one source (a sum).
    Mixed,
}

/// Token and request accounting for provider calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Of `prompt_tokens`, those the provider answered from its prompt cache (absent
    /// when zero).
    #[serde(default, skip_serializing_if = "is_zero_count")]
    pub cached_prompt_tokens: u64,
    /// Spend in USD for providers with a configured price, in whole nano-dollars (absent
    /// when zero).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cost_usd: f64,
    /// Where the price came from (absent when no price applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_source: Option<PriceSource>,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

impl Usage {
    pub fn add(&mut self, other: &Usage) {
        self.requests += other.requests;
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.cached_prompt_tokens += other.cached_prompt_tokens;
        self.price_source = match (self.price_source, other.price_source) {
            (None, x) | (x, None) => x,
            (Some(a), Some(b)) if a == b => Some(a),
            _ => Some(PriceSource::Mixed),
        };
        // Costs are whole nano-dollars: rounding each sum back to that grid makes the
        // total independent of the order cases finish in.
        self.cost_usd = ((self.cost_usd + other.cost_usd) * 1e9).round() / 1e9;
    }
}

/// Exact running sum of f64 values (Shewchuk's algorithm, partials without overlap).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct ExactSum {
    partials: Vec<f64>,
}

impl ExactSum {
    pub(crate) fn add(&mut self, mut x: f64) {
        let mut kept = 0;
        for i in 0..self.partials.len() {
            let mut y = self.partials[i];
            if x.abs() < y.abs() {
                std::mem::swap(&mut x, &mut y);
            }
            let hi = x + y;
            let lo = y - (hi - x);
            if lo != 0.0 {
                self.partials[kept] = lo;
                kept += 1;
            }
            x = hi;
        }
        self.partials.truncate(kept);
        self.partials.push(x);
    }

    /// The correctly rounded value of the sum.
    pub(crate) fn value(&self) -> f64 {
        let mut partials = self.partials.clone();
        let Some(mut hi) = partials.pop() else {
            return 0.0;
        };
        let mut lo = 0.0;
        while let Some(y) = partials.pop() {
            let x = hi;
            hi = x + y;
            let yr = hi - x;
            lo = y - yr;
            if lo != 0.0 {
                break;
            }
        }
        // Half-way correction, as in CPython's fsum.
        if let Some(&next) = partials.last()
            && ((lo < 0.0 && next < 0.0) || (lo > 0.0 && next > 0.0))
        {
            let y = lo * 2.0;
            let x = hi + y;
            if y == x - hi {
                hi = x;
            }
        }
        hi
    }
}

/// Streaming accumulator for one metric (overall or within one dataset).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Accumulator {
    pub n: u64,
    pub failures: u64,
    sum: ExactSum,
    sum_sq: ExactSum,
    /// Observations that were exactly 0 or 1. When all are, the interval is Wilson's
    /// (states stored before this field read 0 here and keep the t-interval).
    #[serde(default, skip_serializing_if = "is_zero_count")]
    binary: u64,
    /// Summed BLEU statistics of the scores that carried them (`builtin/bleu`): the
    /// corpus-level hook. Absent for every other metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bleu: Option<super::BleuStats>,
}

impl Accumulator {
    pub(crate) fn observe(&mut self, value: f64) {
        self.n += 1;
        if value == 0.0 || value == 1.0 {
            self.binary += 1;
        }
        self.sum.add(value);
        self.sum_sq.add(value * value);
    }

    /// Adds a case's BLEU statistics to the corpus totals.
    pub(crate) fn observe_bleu(&mut self, stats: &super::BleuStats) {
        self.bleu.get_or_insert_with(Default::default).add(stats);
    }

    pub(crate) fn fail(&mut self) {
        self.failures += 1;
    }

    /// The summary of scores: the Wilson interval when every score was 0 or 1, else
    /// Student's t.
    pub(crate) fn summary(&self) -> MetricSummary {
        self.summary_with(self.binary == self.n)
    }

    /// The summary with Student's t-interval whatever the values (differences of
    /// paired scores, which are not proportions even when they are 0 or 1).
    pub(crate) fn t_summary(&self) -> MetricSummary {
        self.summary_with(false)
    }

    fn summary_with(&self, wilson: bool) -> MetricSummary {
        let n = self.n;
        if n == 0 {
            return MetricSummary {
                n,
                failures: self.failures,
                mean: None,
                stderr: None,
                ci95: None,
                corpus_bleu: None,
                ci95_bootstrap: None,
            };
        }
        let nf = n as f64;
        let mean = self.sum.value() / nf;
        let (stderr, ci95) = if n >= 2 {
            let variance = ((self.sum_sq.value() - self.sum.value() * mean) / (nf - 1.0)).max(0.0);
            let stderr = (variance / nf).sqrt();
            let ci95 = if wilson {
                wilson_95(mean, nf)
            } else {
                let half = student_t_975(n - 1) * stderr;
                [mean - half, mean + half]
            };
            (Some(stderr), Some(ci95))
        } else {
            (None, None)
        };
        MetricSummary {
            n,
            failures: self.failures,
            mean: Some(mean),
            stderr,
            ci95,
            corpus_bleu: self.bleu.map(|b| b.score(false)),
            ci95_bootstrap: None,
        }
    }
}

/// What dashboards show for a metric: mean, standard error of the mean and a 95%
/// Student-t confidence interval. `mean` is absent when nothing was scored; `stderr`
/// and `ci95` need at least two scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSummary {
    pub n: u64,
    pub failures: u64,
    pub mean: Option<f64>,
    pub stderr: Option<f64>,
    pub ci95: Option<[f64; 2]>,
    /// Corpus BLEU (0..1) for `builtin/bleu`: BLEU of the summed statistics of every
    /// scored case, as sacreBLEU's `corpus_bleu` (not the mean of sentence BLEU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corpus_bleu: Option<f64>,
    /// Seeded percentile bootstrap interval, only when asked for (`?ci=bootstrap`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci95_bootstrap: Option<[f64; 2]>,
}

/// Per metric (and judge): the overall summary and one per dataset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Aggregates {
    pub metrics: BTreeMap<String, MetricAggregate>,
    /// How agent loops ended, by outcome (`answered`, `max_turns`, ...): one count per
    /// candidate with a transcript.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub agent_outcomes: BTreeMap<String, u64>,
    /// Cost split into generation and judging, overall and by dataset (runs stored
    /// before spend was kept count only the cases recorded since).
    #[serde(default)]
    pub spend: super::Spend,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricAggregate {
    #[serde(flatten)]
    pub overall: MetricSummary,
    pub by_dataset: BTreeMap<String, MetricSummary>,
}

/// Mergeable accumulator state of a run, kept by the store beside the run and updated
/// in the same transaction as the case records it counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct AggregateState {
    metrics: BTreeMap<String, MetricState>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    agent_outcomes: BTreeMap<String, u64>,
    #[serde(default)]
    spend: super::Spend,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct MetricState {
    overall: Accumulator,
    by_dataset: BTreeMap<String, Accumulator>,
}

impl AggregateState {
    /// Counts one finished case: each metric score and judge score it holds is an
    /// observation, each missing one (errored or skipped) a failure.
    pub(crate) fn observe(&mut self, record: &crate::model::CaseRecord) {
        for transcript in record
            .candidates
            .iter()
            .filter_map(|c| c.transcript.as_ref())
        {
            *self
                .agent_outcomes
                .entry(transcript.outcome.as_str().to_owned())
                .or_default() += 1;
        }
        self.spend.observe(record);
        let scores = record
            .scores
            .iter()
            .map(|s| (&s.metric_id, s.score, &s.details));
        let judgments = record
            .judgments
            .iter()
            .map(|j| (&j.judge_id, j.score, &serde_json::Value::Null));
        for (id, score, details) in scores.chain(judgments) {
            let state = self.metrics.entry(id.clone()).or_default();
            let dataset = state
                .by_dataset
                .entry(record.key.dataset_id.clone())
                .or_default();
            match score {
                Some(value) if value.is_finite() => {
                    state.overall.observe(value);
                    dataset.observe(value);
                    // Only scores that carry BLEU statistics pay for this lookup's result.
                    if let Some(stats) = details.get(super::BLEU_DETAILS_KEY)
                        && let Ok(stats) = super::BleuStats::deserialize(stats)
                    {
                        state.overall.observe_bleu(&stats);
                        dataset.observe_bleu(&stats);
                    }
                }
                _ => {
                    state.overall.fail();
                    dataset.fail();
                }
            }
        }
    }

    /// What the run spent and reserved.
    pub(crate) fn spend_mut(&mut self) -> &mut super::Spend {
        &mut self.spend
    }

    pub(crate) fn summary(&self) -> Aggregates {
        Aggregates {
            metrics: self
                .metrics
                .iter()
                .map(|(id, state)| {
                    let aggregate = MetricAggregate {
                        overall: state.overall.summary(),
                        by_dataset: state
                            .by_dataset
                            .iter()
                            .map(|(dataset, acc)| (dataset.clone(), acc.summary()))
                            .collect(),
                    };
                    (id.clone(), aggregate)
                })
                .collect(),
            agent_outcomes: self.agent_outcomes.clone(),
            spend: self.spend.clone(),
        }
    }
}

fn is_zero_count(n: &u64) -> bool {
    *n == 0
}

/// The 95% Wilson score interval of a proportion `p` out of `n`: it stays within
/// [0, 1] and keeps its coverage near 0 and 1 and for small `n`, where the t-interval
/// of 0/1 scores runs past the bounds (0.75 of 4 would give [0.46, 1.04]).
fn wilson_95(p: f64, n: f64) -> [f64; 2] {
    const Z: f64 = 1.959_963_984_540_054;
    let z2 = Z * Z;
    let denominator = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denominator;
    let half = Z / denominator * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    [(centre - half).max(0.0), (centre + half).min(1.0)]
}

/// The two-sided 97.5% quantile of Student's t with `df` degrees of freedom.
///
/// Exact table values up to 30 degrees of freedom, then the Cornish-Fisher expansion
/// around the normal quantile (error below 1e-4 from there on).
pub(super) fn student_t_975(df: u64) -> f64 {
    const TABLE: [f64; 30] = [
        12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157,
        2.228139, 2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905, 2.109816, 2.100922,
        2.093024, 2.085963, 2.079614, 2.073873, 2.068658, 2.063899, 2.059539, 2.055529, 2.051831,
        2.048407, 2.045230, 2.042272,
    ];
    if df == 0 {
        return f64::NAN;
    }
    if let Some(&t) = TABLE.get((df - 1) as usize) {
        return t;
    }
    let z: f64 = 1.959_963_984_540_054;
    let d = df as f64;
    let z3 = z.powi(3);
    let z5 = z.powi(5);
    let z7 = z.powi(7);
    let z9 = z.powi(9);
    z + (z3 + z) / (4.0 * d)
        + (5.0 * z5 + 16.0 * z3 + 3.0 * z) / (96.0 * d * d)
        + (3.0 * z7 + 19.0 * z5 + 17.0 * z3 - 15.0 * z) / (384.0 * d.powi(3))
        + (79.0 * z9 + 776.0 * z7 + 1482.0 * z5 - 1920.0 * z3 - 945.0 * z) / (92160.0 * d.powi(4))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_sum_is_order_independent() {
        let values = [1e16, 1.0, -1e16, 0.1, 0.2, 0.3, 1e-10, 3.0];
        let mut forward = ExactSum::default();
        values.iter().for_each(|v| forward.add(*v));
        let mut backward = ExactSum::default();
        values.iter().rev().for_each(|v| backward.add(*v));
        assert_eq!(forward.value(), backward.value());
        assert_eq!(forward.value(), 4.6000000001);
    }

    #[test]
    fn summary_matches_hand_computation() {
        let mut acc = Accumulator::default();
        for v in [2.0, 0.0, 2.0, 2.0] {
            acc.observe(v);
        }
        acc.fail();
        let s = acc.summary();
        assert_eq!(s.n, 4);
        assert_eq!(s.failures, 1);
        assert_eq!(s.mean, Some(1.5));
        // sample sd = 1, stderr = 0.5, t(3) = 3.182446
        assert!((s.stderr.unwrap() - 0.5).abs() < 1e-12);
        let [lo, hi] = s.ci95.unwrap();
        assert!((lo - (1.5 - 3.182446 * 0.5)).abs() < 1e-9);
        assert!((hi - (1.5 + 3.182446 * 0.5)).abs() < 1e-9);
    }

    #[test]
    fn zero_one_scores_get_the_wilson_interval_inside_the_bounds() {
        let summary = |values: &[f64]| {
            let mut acc = Accumulator::default();
            values.iter().for_each(|v| acc.observe(*v));
            acc.summary()
        };
        // 3 of 4: Wilson [0.3006, 0.9544] where the t-interval was [0.46, 1.04].
        let s = summary(&[1.0, 0.0, 1.0, 1.0]);
        assert!(
            (s.stderr.unwrap() - 0.25).abs() < 1e-12,
            "stderr is unchanged"
        );
        let [lo, hi] = s.ci95.unwrap();
        assert!(
            (lo - 0.30064).abs() < 1e-4 && (hi - 0.95442).abs() < 1e-4,
            "{lo} {hi}"
        );
        // All correct: not the degenerate [1, 1].
        let [lo, hi] = summary(&[1.0; 5]).ci95.unwrap();
        assert!((lo - 0.56552).abs() < 1e-4 && hi == 1.0, "{lo} {hi}");
        let [lo, hi] = summary(&[0.0; 5]).ci95.unwrap();
        assert!(lo == 0.0 && (hi - 0.43448).abs() < 1e-4, "{lo} {hi}");
        // One score that is not 0 or 1 brings the t-interval back.
        let [_, hi] = summary(&[1.0, 1.0, 1.0, 0.5]).ci95.unwrap();
        assert!(hi > 1.0, "{hi}");
    }

    #[test]
    fn states_stored_before_the_binary_count_keep_the_t_interval() {
        let mut acc = Accumulator::default();
        for v in [1.0, 0.0, 1.0, 1.0] {
            acc.observe(v);
        }
        let mut stored = serde_json::to_value(&acc).unwrap();
        stored.as_object_mut().unwrap().remove("binary");
        let old: Accumulator = serde_json::from_value(stored).unwrap();
        let [lo, hi] = old.summary().ci95.unwrap();
        assert!((lo - (0.75 - 3.182446 * 0.25)).abs() < 1e-9);
        assert!((hi - (0.75 + 3.182446 * 0.25)).abs() < 1e-9);
    }

    #[test]
    fn single_observation_has_no_interval() {
        let mut acc = Accumulator::default();
        acc.observe(1.0);
        let s = acc.summary();
        assert_eq!(s.mean, Some(1.0));
        assert_eq!(s.stderr, None);
        assert_eq!(s.ci95, None);
    }

    #[test]
    fn t_quantile_is_continuous_past_the_table() {
        assert!((student_t_975(31) - 2.039513).abs() < 1e-4);
        assert!((student_t_975(100) - 1.983972).abs() < 1e-4);
        assert!((student_t_975(1_000_000) - 1.959966).abs() < 1e-4);
    }
}
