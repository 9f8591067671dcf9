//! Reading a run's results a page at a time: filtered pages (by a score threshold, on top
//! of the store's dataset and failed-only filters) and one case with the inputs its
//! definition gave it.
//!
//! A score filter cannot use an index (scores live inside the record), so a filtered page
//! scans at most [`MAX_SCANNED`] records and may come back short — even empty — with a
//! cursor to continue from: the cost of one request stays bounded on a 100,000-case run.

use serde::Serialize;

use super::{Engine, EngineError};
use crate::model::{Case, CaseRecord, Review, RunId, latest_per_reviewer};
use crate::store::{CaseQuery, Store};

/// Most records a filtered page reads before it answers.
pub(super) const MAX_SCANNED: u32 = 10_000;
/// Most reviews of one case read for its view (its latest per reviewer among them).
const MAX_CASE_REVIEWS: u32 = 10_000;
/// Records read from the store per query while scanning.
const SCAN_PAGE: u32 = 1_000;

/// Cases whose score (metric or judge `id`) is below `below`; unscored cases never match.
#[derive(Debug, Clone)]
pub(crate) struct ScoreBelow {
    pub id: String,
    pub below: f64,
}

impl ScoreBelow {
    fn keeps(&self, record: &CaseRecord) -> bool {
        let metric = record
            .scores
            .iter()
            .filter(|s| s.metric_id == self.id)
            .map(|s| s.score);
        let judge = record
            .judgments
            .iter()
            .filter(|j| j.judge_id == self.id)
            .map(|j| j.score);
        metric
            .chain(judge)
            .flatten()
            .any(|score| score < self.below)
    }
}

/// One page of case records; `next_cursor` is the case index to continue after.
#[derive(Debug)]
pub(crate) struct ResultsPage {
    pub results: Vec<CaseRecord>,
    pub next_cursor: Option<u64>,
}

/// Up to `limit` records after `query.after_index` that pass the store's filters and
/// `score_below`. Without a score filter this is one store query.
pub(crate) async fn results_page(
    store: &dyn Store,
    run_id: &RunId,
    mut query: CaseQuery,
    score_below: Option<&ScoreBelow>,
    limit: u32,
) -> Result<ResultsPage, EngineError> {
    let Some(filter) = score_below else {
        query.limit = limit.saturating_add(1);
        let mut results = store.case_records(run_id, &query).await?;
        let more = results.len() > limit as usize;
        results.truncate(limit as usize);
        let next_cursor = more
            .then(|| results.last().map(|r| r.key.case_index))
            .flatten();
        return Ok(ResultsPage {
            results,
            next_cursor,
        });
    };
    let mut results = Vec::new();
    let mut scanned = 0u32;
    loop {
        query.limit = SCAN_PAGE.min(MAX_SCANNED - scanned);
        let page = store.case_records(run_id, &query).await?;
        let exhausted = page.len() < query.limit as usize;
        for record in page {
            scanned += 1;
            query.after_index = Some(record.key.case_index);
            if filter.keeps(&record) {
                if results.len() == limit as usize {
                    // A match beyond the page: the next page starts after the last kept one.
                    let next_cursor = results.last().map(|r: &CaseRecord| r.key.case_index);
                    return Ok(ResultsPage {
                        results,
                        next_cursor,
                    });
                }
                results.push(record);
            }
        }
        if exhausted {
            return Ok(ResultsPage {
                results,
                next_cursor: None,
            });
        }
        if scanned >= MAX_SCANNED {
            // The scan budget is spent: continue after the last record read.
            return Ok(ResultsPage {
                results,
                next_cursor: query.after_index,
            });
        }
    }
}

/// A case record with the case its definition gave it (input, expected output,
/// metadata). `case` is `None` when that definition cannot be read any more.
#[derive(Debug, Serialize)]
pub(crate) struct CaseDetail {
    pub record: CaseRecord,
    pub case: Option<Case>,
    /// The latest review of each reviewer (left out when nobody reviewed the case).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reviews: Vec<Review>,
}

/// The record of the case at `case_index` and its inputs, or `None` when that case has no
/// record (yet). A rejudge's or retry's inputs are those of the experiment its chain
/// starts from; a stored dataset is read for the one case, never whole.
pub(crate) async fn case_detail(
    engine: &Engine,
    run_id: &RunId,
    case_index: u64,
) -> Result<Option<CaseDetail>, EngineError> {
    let query = CaseQuery {
        after_index: case_index.checked_sub(1),
        limit: 1,
        ..CaseQuery::default()
    };
    let Some(record) = engine
        .store()
        .case_records(run_id, &query)
        .await?
        .into_iter()
        .find(|r| r.key.case_index == case_index)
    else {
        return Ok(None);
    };
    let case = match engine.case_input(run_id, case_index).await {
        Ok(case) => case.map(|c| (*c).clone()),
        Err(message) => {
            tracing::warn!(run_id = %run_id, case_index, error = %message, "the inputs of a case cannot be read");
            None
        }
    };
    let history = engine
        .case_reviews(run_id, case_index, None, MAX_CASE_REVIEWS)
        .await?;
    let reviews = latest_per_reviewer(&history).into_iter().cloned().collect();
    Ok(Some(CaseDetail {
        record,
        case,
        reviews,
    }))
}
