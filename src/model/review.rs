//! Human reviews of cases: a reviewer's verdict on one case, per metric or judge, kept
//! append-only (every review is history; the latest of each reviewer counts), and the
//! scale a person scores a component on.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{RunId, Timestamp};

/// A review as it is stored. `run_id` is the run whose generations were reviewed: a
/// rejudge's reviews live on the run it evaluates, so they survive any rejudge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Review {
    /// Increases with every review stored (the order of the history).
    pub review_id: u64,
    pub run_id: RunId,
    pub case_index: u64,
    pub reviewer: String,
    /// Component id (metric or judge) to the reviewer's value on its [`ReviewScale`].
    pub scores: BTreeMap<String, f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub created_at: Timestamp,
}

/// What `add_review` stores; the store assigns `review_id`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewReview {
    pub run_id: RunId,
    pub case_index: u64,
    pub reviewer: String,
    pub scores: BTreeMap<String, f64>,
    pub comment: Option<String>,
    pub created_at: Timestamp,
}

impl NewReview {
    pub fn into_review(self, review_id: u64) -> Review {
        Review {
            review_id,
            run_id: self.run_id,
            case_index: self.case_index,
            reviewer: self.reviewer,
            scores: self.scores,
            comment: self.comment,
            created_at: self.created_at,
        }
    }
}

/// The latest review of each reviewer among `history` (any order), by reviewer name.
pub fn latest_per_reviewer(history: &[Review]) -> Vec<&Review> {
    let mut latest: BTreeMap<&str, &Review> = BTreeMap::new();
    for review in history {
        let slot = latest.entry(review.reviewer.as_str()).or_insert(review);
        if review.review_id > slot.review_id {
            *slot = review;
        }
    }
    latest.into_values().collect()
}

/// How a person scores a component, and how its recorded scores (always in [0, 1]) map
/// onto the same scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReviewScale {
    /// Labels: `0` and `1` for pass/fail and exact-match style components.
    Binary,
    /// Whole numbers `min..=max` (an LLM judge's scale): ordered labels.
    Ordinal { min: i64, max: i64 },
    /// Any number in [0, 1] (overlap metrics, keyword shares).
    Continuous,
}

impl ReviewScale {
    /// Why `value` is not on this scale, if it is not.
    pub fn check(&self, value: f64) -> Result<(), String> {
        if !value.is_finite() {
            return Err("must be a finite number".into());
        }
        match *self {
            ReviewScale::Binary if value == 0.0 || value == 1.0 => Ok(()),
            ReviewScale::Binary => Err(format!("{value} is not a label of this scale (0 or 1)")),
            ReviewScale::Ordinal { min, max } => {
                if value.fract() != 0.0 || value < min as f64 || value > max as f64 {
                    Err(format!(
                        "{value} is not a label of this scale (a whole number {min}..{max})"
                    ))
                } else {
                    Ok(())
                }
            }
            ReviewScale::Continuous if (0.0..=1.0).contains(&value) => Ok(()),
            ReviewScale::Continuous => Err(format!("{value} is outside the range 0..1")),
        }
    }

    /// A recorded score (in [0, 1]) on this scale: labels are rounded to the nearest one.
    pub fn from_recorded(&self, score: f64) -> f64 {
        match *self {
            ReviewScale::Binary => score.clamp(0.0, 1.0).round(),
            ReviewScale::Ordinal { min, max } => {
                (min as f64 + score.clamp(0.0, 1.0) * (max - min) as f64).round()
            }
            ReviewScale::Continuous => score,
        }
    }

    /// Whether values are labels (kappa) rather than measurements (correlation).
    pub fn is_categorical(&self) -> bool {
        !matches!(self, ReviewScale::Continuous)
    }

    /// The labels in order, for categorical scales.
    pub fn labels(&self) -> Vec<f64> {
        match *self {
            ReviewScale::Binary => vec![0.0, 1.0],
            ReviewScale::Ordinal { min, max } => (min..=max).map(|v| v as f64).collect(),
            ReviewScale::Continuous => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(id: u64, reviewer: &str) -> Review {
        Review {
            review_id: id,
            run_id: RunId::from_digest(&[7; 16]),
            case_index: 0,
            reviewer: reviewer.into(),
            scores: BTreeMap::new(),
            comment: None,
            created_at: Timestamp::from_millis(0),
        }
    }

    #[test]
    fn the_latest_review_of_each_reviewer_counts() {
        let history = [
            review(3, "ana"),
            review(1, "bo"),
            review(2, "ana"),
            review(5, "bo"),
        ];
        let latest: Vec<u64> = latest_per_reviewer(&history)
            .iter()
            .map(|r| r.review_id)
            .collect();
        assert_eq!(latest, vec![3, 5]);
    }

    #[test]
    fn scales_check_labels_and_ranges() {
        assert!(ReviewScale::Binary.check(1.0).is_ok());
        assert!(ReviewScale::Binary.check(0.5).is_err());
        let five = ReviewScale::Ordinal { min: 1, max: 5 };
        assert!(five.check(3.0).is_ok());
        assert!(five.check(3.5).is_err());
        assert!(five.check(6.0).is_err());
        assert!(ReviewScale::Continuous.check(0.25).is_ok());
        assert!(ReviewScale::Continuous.check(1.5).is_err());
        assert!(ReviewScale::Continuous.check(f64::NAN).is_err());
        assert_eq!(five.from_recorded(0.75), 4.0);
        assert_eq!(ReviewScale::Binary.from_recorded(0.4), 0.0);
    }
}
