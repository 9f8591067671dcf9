//! `POST /runs/{id}/retry`: the failed cases of a finished run executed again, in a run
//! of their own (kind `retry`) that reuses the completed ones.

use axum::Router;
use axum::body::Bytes;
use serde::Deserialize;

use crate::engine::MAX_BUDGET_USD;
use axum::extract::State;
use axum::response::Response;
use axum::routing::post;

use super::AppState;
use super::error::{ApiError, ApiPath};
use super::runs::{created_response, parse_run_id};

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/runs/{run_id}/retry", post(retry_run))
}

/// The optional body (none, `null` or an object): `{"budget_usd": x}` runs the retry under a new budget (a run
/// stopped by its budget continues this way).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryBody {
    budget_usd: Option<f64>,
}

async fn retry_run(
    State(state): State<AppState>,
    ApiPath(run_id): ApiPath<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let run_id = parse_run_id(&run_id)?;
    let body: RetryBody = if body.iter().all(u8::is_ascii_whitespace) {
        RetryBody::default()
    } else {
        serde_json::from_slice::<Option<RetryBody>>(&body)
            .map_err(|e| ApiError::bad_request("invalid_body", "budget_usd", e.to_string()))?
            .unwrap_or_default()
    };
    if let Some(usd) = body.budget_usd
        && !(usd > 0.0 && usd <= MAX_BUDGET_USD)
    {
        return Err(ApiError::bad_request(
            "invalid_body",
            "budget_usd",
            format!("must be a number of USD above 0 and at most {MAX_BUDGET_USD}"),
        ));
    }
    let outcome = state
        .scheduler
        .engine()
        .submit_retry_with_budget(&run_id, None, body.budget_usd)
        .await?;
    if !outcome.record().status.is_terminal() {
        state
            .scheduler
            .enqueue(outcome.record().run_id.clone(), None);
    }
    Ok(created_response(outcome, &state))
}
