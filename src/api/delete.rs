//! `DELETE /runs/{id}`: a finished run with its records, events and the cached provider
//! responses only it used; `?cascade=true` also deletes the rejudges and retries made
//! from it (without it, their existence is a 409 naming them).

use axum::extract::State;
use axum::routing::delete;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::{ApiError, ApiPath, ApiQuery};
use super::runs::parse_run_id;
use crate::model::RunId;
use crate::store::DeleteRun;

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/runs/{run_id}", delete(delete_run))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteQuery {
    cascade: Option<bool>,
}

#[derive(Debug, Serialize)]
struct Deleted {
    deleted: Vec<RunId>,
}

fn listed(runs: &[RunId]) -> String {
    runs.iter()
        .map(RunId::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

async fn delete_run(
    State(state): State<AppState>,
    ApiPath(run_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<DeleteQuery>,
) -> Result<Json<Deleted>, ApiError> {
    let run_id = parse_run_id(&run_id)?;
    let cascade = query.cascade.unwrap_or(false);
    match state
        .scheduler
        .engine()
        .delete_run(&run_id, cascade)
        .await?
    {
        DeleteRun::Deleted(deleted) => Ok(Json(Deleted { deleted })),
        DeleteRun::NotFound => Err(ApiError::NotFound(format!("no run {run_id}"))),
        DeleteRun::Unfinished(runs) => Err(ApiError::RunsInTheWay {
            message: format!(
                "not finished: {} (cancel first, or wait for the end)",
                listed(&runs)
            ),
            runs,
        }),
        DeleteRun::HasChildren(runs) => Err(ApiError::RunsInTheWay {
            message: format!(
                "runs were derived from {run_id}: {} (delete them first, or pass cascade=true)",
                listed(&runs)
            ),
            runs,
        }),
    }
}
