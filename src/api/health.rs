//! Liveness and readiness probes (never behind authentication).

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// The process is up.
async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// The database answers: the instance can take work.
async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state
        .scheduler
        .engine()
        .store()
        .ping()
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(Json(
        json!({"status": "ready", "active_runs": state.scheduler.active_count()}),
    ))
}
