//! Human reviews of a run's cases: who may score what on which scale, and reading the
//! reviews back (history, or the latest of each reviewer) beside the records.
//!
//! Reviews judge generations, so they are stored under the run that holds them (an
//! experiment or a retry): a rejudge of that run reads and writes the same reviews, and
//! every later rejudge sees them.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use serde::Serialize;
use serde_json::Value;

use super::{Engine, EngineError};
use crate::components::{ComponentKind, review_scale};
use crate::model::{
    CaseRecord, FieldError, NewReview, Review, ReviewScale, RunId, RunKind, RunRecord, Timestamp,
    latest_per_reviewer,
};
use crate::store::{CaseQuery, ReviewQuery, StoreError};

/// Most runs walked from a retry to the experiment whose evaluation it repeats.
const MAX_CHAIN: usize = 1_000;
/// Most reviews read at once from the store.
const REVIEW_PAGE: u32 = 1_000;
/// Most reviews read to annotate one page of results (history included).
const MAX_PAGE_REVIEWS: usize = 50_000;
/// Longest review comment, in bytes.
pub(crate) const MAX_COMMENT_BYTES: usize = 10_000;
/// Most components scored in one review.
pub(crate) const MAX_REVIEW_SCORES: usize = 64;

/// A component a person can score on a run, and its scale.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Reviewable {
    pub id: String,
    pub kind: &'static str,
    pub scale: ReviewScale,
}

/// A run's reviewable components, and where its reviews are kept.
#[derive(Debug, Clone)]
pub(crate) struct ReviewTarget {
    /// The run whose generations the reviews judge.
    pub generations: RunId,
    pub components: Vec<Reviewable>,
}

impl ReviewTarget {
    pub(crate) fn scale_of(&self, id: &str) -> Option<&ReviewScale> {
        self.components
            .iter()
            .find(|c| c.id == id)
            .map(|c| &c.scale)
    }
}

/// A review as a client sends it, parsed at the API boundary.
#[derive(Debug, Clone)]
pub(crate) struct ReviewInput {
    pub scores: BTreeMap<String, f64>,
    pub comment: Option<String>,
}

/// A case record with the latest review of each reviewer (none: the key is left out).
#[derive(Debug, Serialize)]
pub(crate) struct ReviewedRecord {
    #[serde(flatten)]
    pub record: CaseRecord,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reviews: Vec<Review>,
}

/// The metrics and judges an evaluation config names, with their scales.
fn reviewables(evaluation: &Value) -> Vec<Reviewable> {
    let mut out = Vec::new();
    for (key, kind, label) in [
        ("metrics", ComponentKind::Metric, "metric"),
        ("judges", ComponentKind::Judge, "judge"),
    ] {
        let Some(list) = evaluation.get(key).and_then(Value::as_array) else {
            continue;
        };
        for component in list {
            let (Some(id), Some(name)) = (
                component.get("id").and_then(Value::as_str),
                component.get("name").and_then(Value::as_str),
            ) else {
                continue;
            };
            let empty = serde_json::Map::new();
            let params = component
                .get("params")
                .and_then(Value::as_object)
                .unwrap_or(&empty);
            out.push(Reviewable {
                id: id.to_owned(),
                kind: label,
                scale: review_scale(kind, name, params),
            });
        }
    }
    out
}

impl Engine {
    /// What can be reviewed on `run_id` and where its reviews live.
    pub(crate) async fn review_target(&self, run_id: &RunId) -> Result<ReviewTarget, EngineError> {
        let store = self.store();
        let mut current = store
            .get_run(run_id)
            .await?
            .ok_or_else(|| EngineError::RunNotFound(run_id.clone()))?;
        let generations = generations_of(&current)?;
        // A retry repeats the evaluation of the run it retries.
        for _ in 0..MAX_CHAIN {
            if current.kind != RunKind::Retry {
                return Ok(ReviewTarget {
                    generations,
                    components: reviewables(&current.definition["evaluation"]),
                });
            }
            let parent = current.parent_run_id.clone().ok_or_else(|| {
                EngineError::Store(StoreError::Corrupt(format!(
                    "retry {} has no parent",
                    current.run_id
                )))
            })?;
            current = parent_run(self, &parent).await?;
        }
        Err(EngineError::Unusable(
            "the chain of derived runs is too long".into(),
        ))
    }

    /// Records a review of the case at `case_index` of `run_id` by `reviewer`. Every
    /// score must name a component of the run and be on its scale; the case must have
    /// a record.
    pub(crate) async fn add_review(
        &self,
        run_id: &RunId,
        case_index: u64,
        reviewer: String,
        input: ReviewInput,
    ) -> Result<Review, EngineError> {
        let target = self.review_target(run_id).await?;
        let mut problems = Vec::new();
        for (id, value) in &input.scores {
            let path = format!("scores.{id}");
            match target.scale_of(id) {
                None => problems.push(FieldError {
                    path,
                    message: format!(
                        "is not a metric or judge of this run (it has: {})",
                        target
                            .components
                            .iter()
                            .map(|c| c.id.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                }),
                Some(scale) => {
                    if let Err(message) = scale.check(*value) {
                        problems.push(FieldError { path, message });
                    }
                }
            }
        }
        if !problems.is_empty() {
            return Err(EngineError::InvalidReview(problems));
        }
        if record_of(self, run_id, case_index).await?.is_none() {
            return Err(EngineError::NotFound(format!(
                "run {run_id} has no record of case {case_index}"
            )));
        }
        let review = NewReview {
            run_id: target.generations,
            case_index,
            reviewer,
            scores: input.scores,
            comment: input.comment,
            created_at: Timestamp::now(),
        };
        Ok(self.store().add_review(review).await?)
    }

    /// The reviews of one case of `run_id`, oldest first, after `after`, at most `limit`.
    pub(crate) async fn case_reviews(
        &self,
        run_id: &RunId,
        case_index: u64,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<Review>, EngineError> {
        let generations = self.reviews_run(run_id).await?;
        let mut query = ReviewQuery::case(case_index, limit);
        query.after = after;
        Ok(self.store().reviews(&generations, &query).await?)
    }

    /// Every review of `run_id`'s cases in `cases` (history included), oldest first, at
    /// most `max`; the flag says whether there were more.
    pub(crate) async fn reviews_in(
        &self,
        generations: &RunId,
        cases: Range<u64>,
        max: usize,
    ) -> Result<(Vec<Review>, bool), EngineError> {
        let mut out: Vec<Review> = Vec::new();
        let mut query = ReviewQuery {
            cases,
            after: None,
            limit: REVIEW_PAGE,
        };
        loop {
            let page = self.store().reviews(generations, &query).await?;
            let exhausted = page.len() < query.limit as usize;
            query.after = page.last().map(|r| r.review_id).or(query.after);
            out.extend(page);
            if out.len() > max {
                out.truncate(max);
                return Ok((out, true));
            }
            if exhausted {
                return Ok((out, false));
            }
        }
    }

    /// The run `run_id`'s reviews are stored under, read from its summary (a run's
    /// definition can hold its datasets: results pages must not read it).
    pub(crate) async fn reviews_run(&self, run_id: &RunId) -> Result<RunId, EngineError> {
        let run = self
            .store()
            .get_run_summary(run_id)
            .await?
            .ok_or_else(|| EngineError::RunNotFound(run_id.clone()))?;
        generations_of(&run)
    }

    /// `records` (of `run_id`, in case order) each with its latest review per reviewer.
    pub(crate) async fn with_reviews(
        &self,
        run_id: &RunId,
        records: Vec<CaseRecord>,
    ) -> Result<Vec<ReviewedRecord>, EngineError> {
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return Ok(Vec::new());
        };
        let range = first.key.case_index..last.key.case_index.saturating_add(1);
        let generations = self.reviews_run(run_id).await?;
        let (reviews, _) = self
            .reviews_in(&generations, range, MAX_PAGE_REVIEWS)
            .await?;
        let mut by_case: HashMap<u64, Vec<Review>> = HashMap::new();
        for review in reviews {
            by_case.entry(review.case_index).or_default().push(review);
        }
        Ok(records
            .into_iter()
            .map(|record| {
                let reviews = by_case
                    .get(&record.key.case_index)
                    .map(|history| latest_per_reviewer(history).into_iter().cloned().collect())
                    .unwrap_or_default();
                ReviewedRecord { record, reviews }
            })
            .collect())
    }
}

/// The run whose generations `run` evaluates: a rejudge's parent (the run it was
/// created over), any other run itself.
fn generations_of(run: &RunRecord) -> Result<RunId, EngineError> {
    match run.kind {
        RunKind::Rejudge => run.parent_run_id.clone().ok_or_else(|| {
            EngineError::Store(StoreError::Corrupt(format!(
                "rejudge {} has no parent",
                run.run_id
            )))
        }),
        RunKind::Experiment | RunKind::Retry => Ok(run.run_id.clone()),
    }
}

async fn parent_run(engine: &Engine, run_id: &RunId) -> Result<RunRecord, EngineError> {
    engine
        .store()
        .get_run(run_id)
        .await?
        .ok_or_else(|| EngineError::RunNotFound(run_id.clone()))
}

/// The record of one case of a run, if it has one.
pub(crate) async fn record_of(
    engine: &Engine,
    run_id: &RunId,
    case_index: u64,
) -> Result<Option<CaseRecord>, EngineError> {
    let query = CaseQuery {
        after_index: case_index.checked_sub(1),
        limit: 1,
        ..CaseQuery::default()
    };
    Ok(engine
        .store()
        .case_records(run_id, &query)
        .await?
        .into_iter()
        .find(|r| r.key.case_index == case_index))
}

/// The records of `run_id` at the case indices `wanted` (ascending), by index: a read
/// per stretch of consecutive records, never the whole run.
pub(crate) async fn record_of_many(
    engine: &Engine,
    run_id: &RunId,
    wanted: &[u64],
) -> Result<BTreeMap<u64, CaseRecord>, EngineError> {
    let mut out = BTreeMap::new();
    let mut next = 0;
    while let Some(&start) = wanted.get(next) {
        // Only as far as the last wanted case within a page's reach: scattered reviews
        // read a record or a few each, not a page.
        let reach = wanted[next..]
            .iter()
            .take_while(|&&i| i - start < u64::from(REVIEW_PAGE))
            .last()
            .map_or(1, |&last| last - start + 1);
        let query = CaseQuery {
            after_index: start.checked_sub(1),
            limit: u32::try_from(reach).unwrap_or(REVIEW_PAGE),
            ..CaseQuery::default()
        };
        let page = engine.store().case_records(run_id, &query).await?;
        let end = page.last().map(|r| r.key.case_index);
        for record in page {
            if wanted.binary_search(&record.key.case_index).is_ok() {
                out.insert(record.key.case_index, record);
            }
        }
        // Past what the page covered (or the run's end).
        match end {
            Some(end) if end >= start => {
                while wanted.get(next).is_some_and(|&i| i <= end) {
                    next += 1;
                }
            }
            _ => break,
        }
    }
    Ok(out)
}
