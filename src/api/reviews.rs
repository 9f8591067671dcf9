//! `/runs/{id}/cases/{case_index}/reviews` (a person's verdict on a case, and the case's
//! review history) and `/runs/{id}/agreement` (how the run's metrics and judges agree
//! with the people).

use std::collections::BTreeMap;

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ApiJson, ApiQuery};
use super::runs::{index_cursor, page_limit, parse_run_id};
use crate::engine::{Agreement, MAX_COMMENT_BYTES, MAX_REVIEW_SCORES, ReviewInput, Reviewable};
use crate::model::{FieldError, Review, latest_per_reviewer};

/// Who a review is by when the server has no keys and the caller named nobody.
const ANONYMOUS: &str = "anonymous";

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/runs/{run_id}/cases/{case_index}/reviews",
            get(list_reviews).post(add_review),
        )
        .route("/runs/{run_id}/agreement", get(agreement))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewBody {
    scores: Map<String, Value>,
    #[serde(default)]
    comment: Option<String>,
}

/// The body as a [`ReviewInput`]: numbers for at most [`MAX_REVIEW_SCORES`] components,
/// a bounded comment. Whether each score fits its component is the engine's to say.
fn parse_review(body: ReviewBody) -> Result<ReviewInput, ApiError> {
    let mut problems = Vec::new();
    if body.scores.is_empty() {
        problems.push(FieldError {
            path: "scores".into(),
            message: "must score at least one metric or judge".into(),
        });
    }
    if body.scores.len() > MAX_REVIEW_SCORES {
        problems.push(FieldError {
            path: "scores".into(),
            message: format!("scores at most {MAX_REVIEW_SCORES} metrics and judges"),
        });
    }
    let mut scores = BTreeMap::new();
    for (id, value) in body.scores.iter().take(MAX_REVIEW_SCORES + 1) {
        match value.as_f64().filter(|v| v.is_finite()) {
            Some(v) => {
                scores.insert(id.clone(), v);
            }
            None => problems.push(FieldError {
                path: format!("scores.{id}"),
                message: "must be a number".into(),
            }),
        }
    }
    let comment = body.comment.filter(|c| !c.trim().is_empty());
    if comment
        .as_ref()
        .is_some_and(|c| c.len() > MAX_COMMENT_BYTES)
    {
        problems.push(FieldError {
            path: "comment".into(),
            message: format!("must be at most {MAX_COMMENT_BYTES} bytes"),
        });
    }
    if problems.is_empty() {
        Ok(ReviewInput { scores, comment })
    } else {
        Err(ApiError::InvalidReview(problems))
    }
}

fn parse_case_index(raw: &str) -> Result<u64, ApiError> {
    raw.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_case_index",
            "case_index",
            "must be a case index (a non-negative integer)",
        )
    })
}

/// `POST /runs/{id}/cases/{case_index}/reviews`: `201` with the stored review.
async fn add_review(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((run_id, case_index)): Path<(String, String)>,
    ApiJson(body): ApiJson<ReviewBody>,
) -> Result<(StatusCode, Json<Review>), ApiError> {
    let run_id = parse_run_id(&run_id)?;
    let case_index = parse_case_index(&case_index)?;
    let input = parse_review(body)?;
    let reviewer = caller.name.unwrap_or_else(|| ANONYMOUS.to_owned());
    let review = state
        .scheduler
        .engine()
        .add_review(&run_id, case_index, reviewer, input)
        .await?;
    Ok((StatusCode::CREATED, Json(review)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    cursor: Option<String>,
    limit: Option<u32>,
}

#[derive(Debug, Serialize)]
struct ReviewHistory {
    /// Oldest first: every review of the case on this page.
    reviews: Vec<Review>,
    /// The latest review of each reviewer among `reviews`: the ones that count.
    latest: Vec<Review>,
    next_cursor: Option<String>,
}

/// `GET /runs/{id}/cases/{case_index}/reviews`: the case's history, a page at a time.
async fn list_reviews(
    State(state): State<AppState>,
    Path((run_id, case_index)): Path<(String, String)>,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> Result<Json<ReviewHistory>, ApiError> {
    let run_id = parse_run_id(&run_id)?;
    let case_index = parse_case_index(&case_index)?;
    let limit = page_limit(query.limit, 100, 1_000)?;
    let after = index_cursor(query.cursor.as_deref())?;
    let mut reviews = state
        .scheduler
        .engine()
        .case_reviews(&run_id, case_index, after, limit.saturating_add(1))
        .await?;
    let more = reviews.len() > limit as usize;
    reviews.truncate(limit as usize);
    let next_cursor = more
        .then(|| reviews.last().map(|r| r.review_id.to_string()))
        .flatten();
    let latest = latest_per_reviewer(&reviews).into_iter().cloned().collect();
    Ok(Json(ReviewHistory {
        reviews,
        latest,
        next_cursor,
    }))
}

#[derive(Debug, Serialize)]
struct AgreementView {
    #[serde(flatten)]
    agreement: Agreement,
    /// What a reviewer can score on this run, and on which scale.
    reviewable: Vec<Reviewable>,
}

/// `GET /runs/{id}/agreement`.
async fn agreement(
    State(state): State<AppState>,
    Path(run_id): Path<String>,
) -> Result<Json<AgreementView>, ApiError> {
    let run_id = parse_run_id(&run_id)?;
    let engine = state.scheduler.engine();
    let reviewable = engine.review_target(&run_id).await?.components;
    let agreement = engine.agreement(&run_id).await?;
    Ok(Json(AgreementView {
        agreement,
        reviewable,
    }))
}
