//! `/runs/{id}/results` (a page, filtered, or a streamed export) and
//! `/runs/{id}/cases/{case_index}` (one case with its inputs).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::{ApiError, ApiPath, ApiQuery};
use super::runs::{index_cursor, page_limit, parse_run_id};
use crate::engine::{CaseDetail, ReviewedRecord, ScoreBelow, case_detail, results_page};
use crate::store::CaseQuery;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/runs/{run_id}/results", get(list_results))
        .route("/runs/{run_id}/cases/{case_index}", get(get_case))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResultsQuery {
    dataset_id: Option<String>,
    failed_only: Option<bool>,
    cursor: Option<String>,
    limit: Option<u32>,
    /// `csv` or `jsonl`: stream every matching record instead of a page.
    format: Option<String>,
    /// With `score_below`: the metric or judge id whose score is compared.
    metric: Option<String>,
    /// Only cases whose `metric` score is below this (scans a bounded stretch per page).
    score_below: Option<f64>,
}

/// `metric` and `score_below` come together; the threshold must be a finite number.
fn score_filter(query: &ResultsQuery) -> Result<Option<ScoreBelow>, ApiError> {
    match (&query.metric, query.score_below) {
        (None, None) => Ok(None),
        (Some(id), Some(below)) if below.is_finite() && !id.is_empty() => Ok(Some(ScoreBelow {
            id: id.clone(),
            below,
        })),
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "invalid_query",
            "score_below",
            "must be a finite number, with a non-empty `metric`",
        )),
        (None, Some(_)) => Err(ApiError::bad_request(
            "invalid_query",
            "metric",
            "is required with `score_below` (the metric or judge id whose score is compared)",
        )),
        (Some(_), None) => Err(ApiError::bad_request(
            "invalid_query",
            "score_below",
            "is required with `metric`",
        )),
    }
}

#[derive(Debug, Serialize)]
struct ResultsPage {
    results: Vec<ReviewedRecord>,
    next_cursor: Option<String>,
}

async fn list_results(
    State(state): State<AppState>,
    ApiPath(run_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<ResultsQuery>,
) -> Result<Response, ApiError> {
    let run_id = parse_run_id(&run_id)?;
    let store = state.scheduler.engine().store();
    let Some(run) = store.get_run_summary(&run_id).await? else {
        return Err(ApiError::NotFound(format!("no run {run_id}")));
    };
    let score_below = score_filter(&query)?;
    if let Some(format) = query.format.as_deref() {
        if score_below.is_some() {
            return Err(ApiError::bad_request(
                "invalid_query",
                "score_below",
                "an export streams every record: filter it with `dataset_id` and `failed_only`",
            ));
        }
        let format = super::export::ExportFormat::parse(format)?;
        if query.cursor.is_some() || query.limit.is_some() {
            let field = if query.cursor.is_some() {
                "cursor"
            } else {
                "limit"
            };
            return Err(ApiError::bad_request(
                "invalid_query",
                field,
                "an export streams every record: `cursor` and `limit` do not apply",
            ));
        }
        let failed_only = query.failed_only.unwrap_or(false);
        let reviews = export_reviews(&state, &run).await?;
        return Ok(super::export::export(
            store.clone(),
            &run,
            query.dataset_id,
            failed_only,
            format,
            reviews,
        ));
    }
    let limit = page_limit(query.limit, 100, 1_000)?;
    let case_query = CaseQuery {
        after_index: index_cursor(query.cursor.as_deref())?,
        dataset_id: query.dataset_id,
        failed_only: query.failed_only.unwrap_or(false),
        limit,
    };
    let page = results_page(
        store.as_ref(),
        &run_id,
        case_query,
        score_below.as_ref(),
        limit,
    )
    .await?;
    let results = state
        .scheduler
        .engine()
        .with_reviews(&run_id, page.results)
        .await?;
    Ok(Json(ResultsPage {
        results,
        next_cursor: page.next_cursor.map(|i| i.to_string()),
    })
    .into_response())
}

/// Where the run's reviews are, when it has any (an export then shows them).
async fn export_reviews(
    state: &AppState,
    run: &crate::model::RunRecord,
) -> Result<Option<super::export::ExportReviews>, ApiError> {
    let engine = state.scheduler.engine();
    let generations = engine.reviews_run(&run.run_id).await?;
    let any = crate::store::ReviewQuery {
        cases: 0..u64::MAX,
        after: None,
        limit: 1,
    };
    if engine.store().reviews(&generations, &any).await?.is_empty() {
        return Ok(None);
    }
    // A human column beside each score column.
    Ok(Some(super::export::ExportReviews {
        run_id: generations,
        components: run.aggregates.metrics.keys().cloned().collect(),
    }))
}

/// `GET /runs/{id}/cases/{case_index}`: one case record with the case's inputs.
async fn get_case(
    State(state): State<AppState>,
    ApiPath((run_id, case_index)): ApiPath<(String, String)>,
) -> Result<Json<CaseDetail>, ApiError> {
    let run_id = parse_run_id(&run_id)?;
    let case_index: u64 = case_index.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_case_index",
            "case_index",
            "must be a case index (a non-negative integer)",
        )
    })?;
    let store = state.scheduler.engine().store();
    if store.get_run_summary(&run_id).await?.is_none() {
        return Err(ApiError::NotFound(format!("no run {run_id}")));
    }
    // Stores index cases with signed 64-bit integers: no case sits beyond that.
    if i64::try_from(case_index).is_err() {
        return Err(ApiError::NotFound(format!(
            "run {run_id} has no record of case {case_index}"
        )));
    }
    case_detail(state.scheduler.engine(), &run_id, case_index)
        .await?
        .map(Json)
        .ok_or_else(|| {
            ApiError::NotFound(format!("run {run_id} has no record of case {case_index}"))
        })
}
