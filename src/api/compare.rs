//! Comparing runs: `GET /runs/{candidate}/compare?baseline=...` (paired statistics, JSON or
//! Markdown), `GET /runs/{candidate}/compare/cases?baseline=...&filter=...` (changed cases,
//! paged) and `GET /compare?runs=A,B,C` (several runs against the first).

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::AppState;
use super::error::{ApiError, ApiPath, ApiQuery};
use super::runs::{index_cursor, page_limit};
use crate::engine::{CaseFilter, RunRef, render_markdown, render_runs_markdown, resolve_run};
use crate::model::RunId;

/// Most runs in one `GET /compare`.
pub(super) const MAX_COMPARED_RUNS: usize = 10;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/runs/{run_id}/compare", get(compare))
        .route("/runs/{run_id}/compare/cases", get(compare_cases))
        .route("/compare", get(compare_several))
}

/// A run named by its id or by a name only it has.
async fn run_named(state: &AppState, raw: Option<&str>, field: &str) -> Result<RunId, ApiError> {
    let raw = raw.ok_or_else(|| ApiError::bad_request("invalid_query", field, "is required"))?;
    let reference = RunRef::parse(raw)
        .map_err(|e| ApiError::bad_request("invalid_run_id", field, e.to_string()))?;
    let store = state.scheduler.engine().store();
    Ok(resolve_run(store.as_ref(), &reference).await?)
}

/// `json` (default) or `markdown`.
fn wants_markdown(format: Option<&str>) -> Result<bool, ApiError> {
    match format {
        None | Some("json") => Ok(false),
        Some("markdown") => Ok(true),
        Some(_) => Err(ApiError::bad_request(
            "invalid_query",
            "format",
            "must be `json` or `markdown`",
        )),
    }
}

fn markdown(text: String) -> Response {
    (
        [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
        text,
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompareQuery {
    baseline: Option<String>,
    format: Option<String>,
}

async fn compare(
    State(state): State<AppState>,
    ApiPath(run_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<CompareQuery>,
) -> Result<Response, ApiError> {
    let candidate = run_named(&state, Some(&run_id), "run_id").await?;
    let baseline = run_named(&state, query.baseline.as_deref(), "baseline").await?;
    let as_markdown = wants_markdown(query.format.as_deref())?;
    let report = state
        .scheduler
        .engine()
        .compare(&baseline, &candidate)
        .await?;
    Ok(if as_markdown {
        markdown(render_markdown(&report))
    } else {
        axum::Json(&*report).into_response()
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CasesQuery {
    baseline: Option<String>,
    filter: Option<String>,
    metric: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

async fn compare_cases(
    State(state): State<AppState>,
    ApiPath(run_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<CasesQuery>,
) -> Result<Response, ApiError> {
    let candidate = run_named(&state, Some(&run_id), "run_id").await?;
    let baseline = run_named(&state, query.baseline.as_deref(), "baseline").await?;
    let filter = match query.filter.as_deref() {
        None => CaseFilter::Changed,
        Some(raw) => CaseFilter::parse(raw).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query",
                "filter",
                "must be one of regressed, improved, changed",
            )
        })?,
    };
    let limit = page_limit(query.limit, 50, 200)?;
    let after = index_cursor(query.cursor.as_deref())?;
    let page = state
        .scheduler
        .engine()
        .changed_cases(
            &baseline,
            &candidate,
            filter,
            query.metric.as_deref(),
            after,
            limit,
        )
        .await?;
    Ok(axum::Json(page).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeveralQuery {
    runs: Option<String>,
    format: Option<String>,
}

async fn compare_several(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<SeveralQuery>,
) -> Result<Response, ApiError> {
    let raw = query
        .runs
        .as_deref()
        .filter(|r| !r.trim().is_empty())
        .ok_or_else(|| ApiError::bad_request("invalid_query", "runs", "is required"))?;
    let named: Vec<&str> = raw.split(',').map(str::trim).collect();
    if !(2..=MAX_COMPARED_RUNS).contains(&named.len()) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "runs",
            format!("list 2 to {MAX_COMPARED_RUNS} comma-separated run ids"),
        ));
    }
    let mut runs = Vec::with_capacity(named.len());
    for name in named {
        runs.push(run_named(&state, Some(name), "runs").await?);
    }
    if runs.iter().enumerate().any(|(i, r)| runs[..i].contains(r)) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "runs",
            "a run is listed twice",
        ));
    }
    let as_markdown = wants_markdown(query.format.as_deref())?;
    let table = state.scheduler.engine().compare_many(&runs).await?;
    Ok(if as_markdown {
        markdown(render_runs_markdown(&table))
    } else {
        axum::Json(table).into_response()
    })
}
