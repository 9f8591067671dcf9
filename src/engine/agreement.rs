//! How well a run's metrics and judges agree with the people who reviewed its cases,
//! and how well the people agree with each other.
//!
//! Per component, the people's verdict on a case is the median of each reviewer's latest
//! value (for labels, a tie between two different middle labels leaves the case out as
//! contested). Labels (binary and ordinal scales) get Cohen's kappa and a confusion
//! matrix, ordinal ones a quadratically weighted kappa and Spearman's rho too;
//! measurements get Pearson's r and Spearman's rho. Between reviewers: Cohen's kappa (or
//! Pearson's r for measurements) with two, Krippendorff's alpha with three or more.

use std::collections::BTreeMap;

use serde::Serialize;

use super::reviews::{ReviewTarget, record_of_many};
use super::{Engine, EngineError};
use crate::model::{CaseRecord, Review, ReviewScale, RunId, latest_per_reviewer};
use crate::stats::{
    BOOTSTRAP_SEED, Correlation, Level, Weights, bootstrap_ci95, cohen_kappa, confusion,
    correlation_ci95, krippendorff_alpha, pearson, spearman,
};

/// Most reviews an agreement reads (history included); past it, `truncated` is set.
const MAX_AGREEMENT_REVIEWS: usize = 100_000;

/// A statistic and its 95% interval (`null` when it cannot be estimated).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Estimate {
    pub value: f64,
    pub ci95: Option<[f64; 2]>,
}

/// Counts of (people's label, component's label): `matrix[human][component]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Confusion {
    pub labels: Vec<f64>,
    pub matrix: Vec<Vec<u64>>,
}

/// Agreement of one component with the people, and of the people with each other.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ComponentAgreement {
    pub id: String,
    pub kind: &'static str,
    pub scale: ReviewScale,
    /// Cases with both a people's verdict and a recorded score.
    pub n: u64,
    /// Cases left out because the reviewers' labels tied.
    pub contested: u64,
    pub kappa: Option<Estimate>,
    pub weighted_kappa: Option<Estimate>,
    pub pearson: Option<Estimate>,
    pub spearman: Option<Estimate>,
    pub confusion: Option<Confusion>,
    pub reviewers: ReviewerAgreement,
}

/// Agreement between the reviewers of one component.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ReviewerAgreement {
    /// Distinct reviewers who scored the component.
    pub count: u64,
    /// Cases two or more of them scored.
    pub shared_cases: u64,
    /// Two reviewers, labels.
    pub kappa: Option<Estimate>,
    /// Two reviewers, measurements.
    pub pearson: Option<Estimate>,
    /// Three or more reviewers.
    pub krippendorff_alpha: Option<Estimate>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Agreement {
    pub run_id: RunId,
    /// The run whose reviews these are (the generations' run).
    pub reviews_run_id: RunId,
    pub reviewed_cases: u64,
    pub reviewers: Vec<String>,
    /// More reviews than one agreement reads: the statistics cover the first ones.
    pub truncated: bool,
    pub components: Vec<ComponentAgreement>,
}

/// The people's verdict from their values, on `scale`: `None` for a contested label.
fn consensus(values: &mut [f64], scale: &ReviewScale) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return None;
    }
    if n % 2 == 1 {
        return Some(values[n / 2]);
    }
    let (a, b) = (values[n / 2 - 1], values[n / 2]);
    if a == b {
        Some(a)
    } else if scale.is_categorical() {
        None
    } else {
        Some((a + b) / 2.0)
    }
}

/// The position of `value` among the scale's labels.
fn label_index(scale: &ReviewScale, value: f64) -> Option<usize> {
    scale.labels().iter().position(|l| *l == value)
}

fn recorded_score(record: &CaseRecord, id: &str) -> Option<f64> {
    let metric = record
        .scores
        .iter()
        .find(|s| s.metric_id == id)
        .and_then(|s| s.score);
    metric.or_else(|| {
        record
            .judgments
            .iter()
            .find(|j| j.judge_id == id)
            .and_then(|j| j.score)
    })
}

fn kappa_estimate(pairs: &[(usize, usize)], k: usize, weights: Weights) -> Option<Estimate> {
    let value = cohen_kappa(pairs, k, weights)?;
    Some(Estimate {
        value,
        ci95: bootstrap_ci95(pairs, BOOTSTRAP_SEED, |s| cohen_kappa(s, k, weights)),
    })
}

fn correlation_estimate(pairs: &[(f64, f64)], kind: Correlation) -> Option<Estimate> {
    let value = match kind {
        Correlation::Pearson => pearson(pairs),
        Correlation::Spearman => spearman(pairs),
    }?;
    Some(Estimate {
        value,
        ci95: correlation_ci95(value, pairs.len(), kind),
    })
}

/// One component against the people: `cases` maps a case to each reviewer's latest value.
fn component_agreement(
    id: &str,
    kind: &'static str,
    scale: &ReviewScale,
    cases: &BTreeMap<u64, BTreeMap<String, f64>>,
    records: &BTreeMap<u64, CaseRecord>,
) -> ComponentAgreement {
    let mut pairs: Vec<(f64, f64)> = Vec::new();
    let mut contested = 0;
    for (index, by_reviewer) in cases {
        let Some(score) = records.get(index).and_then(|r| recorded_score(r, id)) else {
            continue;
        };
        let mut values: Vec<f64> = by_reviewer.values().copied().collect();
        match consensus(&mut values, scale) {
            Some(human) => pairs.push((human, scale.from_recorded(score))),
            None => contested += 1,
        }
    }
    let mut out = ComponentAgreement {
        id: id.to_owned(),
        kind,
        scale: scale.clone(),
        n: pairs.len() as u64,
        contested,
        kappa: None,
        weighted_kappa: None,
        pearson: None,
        spearman: None,
        confusion: None,
        reviewers: reviewer_agreement(scale, cases),
    };
    if scale.is_categorical() {
        let labels = scale.labels();
        let k = labels.len();
        let indexed: Vec<(usize, usize)> = pairs
            .iter()
            .filter_map(|&(h, c)| Some((label_index(scale, h)?, label_index(scale, c)?)))
            .collect();
        out.kappa = kappa_estimate(&indexed, k, Weights::Nominal);
        if matches!(scale, ReviewScale::Ordinal { .. }) {
            out.weighted_kappa = kappa_estimate(&indexed, k, Weights::Quadratic);
            out.spearman = correlation_estimate(&pairs, Correlation::Spearman);
        }
        out.confusion = Some(Confusion {
            matrix: confusion(&indexed, k),
            labels,
        });
    } else {
        out.pearson = correlation_estimate(&pairs, Correlation::Pearson);
        out.spearman = correlation_estimate(&pairs, Correlation::Spearman);
    }
    out
}

fn reviewer_agreement(
    scale: &ReviewScale,
    cases: &BTreeMap<u64, BTreeMap<String, f64>>,
) -> ReviewerAgreement {
    let mut names: Vec<&str> = cases
        .values()
        .flat_map(|by| by.keys().map(String::as_str))
        .collect();
    names.sort_unstable();
    names.dedup();
    let shared: Vec<Vec<f64>> = cases
        .values()
        .filter(|by| by.len() >= 2)
        .map(|by| by.values().copied().collect())
        .collect();
    let mut out = ReviewerAgreement {
        count: names.len() as u64,
        shared_cases: shared.len() as u64,
        kappa: None,
        pearson: None,
        krippendorff_alpha: None,
    };
    if names.len() == 2 {
        let pairs: Vec<(f64, f64)> = shared.iter().map(|v| (v[0], v[1])).collect();
        if scale.is_categorical() {
            let weights = match scale {
                ReviewScale::Ordinal { .. } => Weights::Quadratic,
                _ => Weights::Nominal,
            };
            let indexed: Vec<(usize, usize)> = pairs
                .iter()
                .filter_map(|&(a, b)| Some((label_index(scale, a)?, label_index(scale, b)?)))
                .collect();
            out.kappa = kappa_estimate(&indexed, scale.labels().len(), weights);
        } else {
            out.pearson = correlation_estimate(&pairs, Correlation::Pearson);
        }
    } else if names.len() >= 3 {
        let level = match scale {
            ReviewScale::Binary => Level::Nominal,
            ReviewScale::Ordinal { .. } => Level::Ordinal,
            ReviewScale::Continuous => Level::Interval,
        };
        let units: Vec<Vec<f64>> = cases
            .values()
            .map(|by| by.values().copied().collect())
            .collect();
        out.krippendorff_alpha = krippendorff_alpha(&units, level).map(|value| Estimate {
            value,
            ci95: bootstrap_ci95(&units, BOOTSTRAP_SEED, |s| krippendorff_alpha(s, level)),
        });
    }
    out
}

/// Per component, each reviewed case's latest value of each reviewer.
fn latest_values(reviews: &[Review]) -> BTreeMap<String, BTreeMap<u64, BTreeMap<String, f64>>> {
    let mut by_case: BTreeMap<u64, Vec<Review>> = BTreeMap::new();
    for review in reviews {
        by_case
            .entry(review.case_index)
            .or_default()
            .push(review.clone());
    }
    let mut out: BTreeMap<String, BTreeMap<u64, BTreeMap<String, f64>>> = BTreeMap::new();
    for (index, history) in &by_case {
        for review in latest_per_reviewer(history) {
            for (id, value) in &review.scores {
                out.entry(id.clone())
                    .or_default()
                    .entry(*index)
                    .or_default()
                    .insert(review.reviewer.clone(), *value);
            }
        }
    }
    out
}

impl Engine {
    /// The agreement of `run_id`'s metrics and judges with its reviews.
    pub(crate) async fn agreement(&self, run_id: &RunId) -> Result<Agreement, EngineError> {
        let ReviewTarget {
            generations,
            components,
        } = self.review_target(run_id).await?;
        let (reviews, truncated) = self
            .reviews_in(&generations, 0..u64::MAX, MAX_AGREEMENT_REVIEWS)
            .await?;
        let mut reviewed: Vec<u64> = reviews.iter().map(|r| r.case_index).collect();
        reviewed.sort_unstable();
        reviewed.dedup();
        let records = record_of_many(self, run_id, &reviewed).await?;
        let mut reviewers: Vec<String> = reviews.iter().map(|r| r.reviewer.clone()).collect();
        reviewers.sort_unstable();
        reviewers.dedup();
        let values = latest_values(&reviews);
        let empty = BTreeMap::new();
        let components = components
            .iter()
            .map(|c| {
                let cases = values.get(&c.id).unwrap_or(&empty);
                component_agreement(&c.id, c.kind, &c.scale, cases, &records)
            })
            .collect();
        Ok(Agreement {
            run_id: run_id.clone(),
            reviews_run_id: generations,
            reviewed_cases: reviewed.len() as u64,
            reviewers,
            truncated,
            components,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn judged(index: u64, score: f64) -> CaseRecord {
        serde_json::from_value(json!({
            "run_id": RunId::from_digest(&[1; 16]), "case_index": index, "dataset_id": "d",
            "case_id": format!("c{index}"), "seed": "1", "status": "completed", "candidates": [],
            "reduced": null, "parsed": null, "parse_steps": [], "scores": [],
            "judgments": [{"judge_id": "j", "score": score}], "error": null, "stages": [],
            "usage": {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0},
            "started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:00:00Z",
        }))
        .expect("a case record")
    }

    #[test]
    fn an_ordinal_judge_against_people_hand_worked() {
        // People 1 3 5 4; the judge's recorded 0, 0.5, 1, 0.5 on 1..5 are 1 3 5 3.
        // Label indices (people, judge): (0,0) (2,2) (4,4) (3,2). Rows 1 0 1 1 1, columns
        // 1 0 2 0 1 over 4 cases. Kappa: p_o = 3/4, p_e = (1 + 2 + 1)/16 = 1/4: 2/3.
        // Quadratic weights (i-j)^2/16: observed (1/16)/4 = 4/256; expected
        // sum w r_i c_j / 16 = (24 + 8 + 12 + 24)/16 / 16 = 68/256: 1 - 4/68 = 16/17.
        // Spearman: ranks 1 2 4 3 and 1 2.5 4 2.5: 4.5 / sqrt(5 * 4.5).
        let scale = ReviewScale::Ordinal { min: 1, max: 5 };
        let people = [1.0, 3.0, 5.0, 4.0];
        let recorded = [0.0, 0.5, 1.0, 0.5];
        let mut cases = BTreeMap::new();
        let mut records = BTreeMap::new();
        for (i, (p, r)) in people.iter().zip(recorded).enumerate() {
            cases.insert(i as u64, BTreeMap::from([("ana".to_owned(), *p)]));
            records.insert(i as u64, judged(i as u64, r));
        }
        let a = component_agreement("j", "judge", &scale, &cases, &records);
        assert_eq!(a.n, 4);
        let close =
            |e: &Option<Estimate>, v: f64| (e.as_ref().expect("defined").value - v).abs() < 1e-12;
        assert!(close(&a.kappa, 2.0 / 3.0), "{:?}", a.kappa);
        assert!(
            close(&a.weighted_kappa, 16.0 / 17.0),
            "{:?}",
            a.weighted_kappa
        );
        assert!(close(&a.spearman, 4.5 / 22.5f64.sqrt()), "{:?}", a.spearman);
        assert_eq!(a.pearson, None);
        let confusion = a.confusion.expect("labels have a matrix");
        assert_eq!(confusion.labels, vec![1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(confusion.matrix[3], vec![0, 0, 1, 0, 0]);
        assert_eq!(a.reviewers.count, 1);
        assert_eq!(a.reviewers.krippendorff_alpha, None);
    }

    #[test]
    fn the_people_agree_on_the_median_and_ties_of_labels_are_contested() {
        assert_eq!(
            consensus(&mut [1.0, 0.0, 1.0], &ReviewScale::Binary),
            Some(1.0)
        );
        assert_eq!(consensus(&mut [1.0, 0.0], &ReviewScale::Binary), None);
        assert_eq!(
            consensus(&mut [0.2, 0.6], &ReviewScale::Continuous),
            Some(0.4)
        );
        let five = ReviewScale::Ordinal { min: 1, max: 5 };
        assert_eq!(consensus(&mut [4.0, 4.0, 2.0, 5.0], &five), Some(4.0));
    }
}
