//! `POST /runs/{id}/retry`: the failed cases of a finished run executed again, in a run
//! of their own (kind `retry`) that reuses the completed ones.

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::post;

use super::AppState;
use super::error::{ApiError, ApiPath};
use super::runs::{created_response, parse_run_id};

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/runs/{run_id}/retry", post(retry_run))
}

async fn retry_run(
    State(state): State<AppState>,
    ApiPath(run_id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let run_id = parse_run_id(&run_id)?;
    let outcome = state.scheduler.engine().submit_retry(&run_id, None).await?;
    if !outcome.record().status.is_terminal() {
        state
            .scheduler
            .enqueue(outcome.record().run_id.clone(), None);
    }
    Ok(created_response(outcome, &state))
}
