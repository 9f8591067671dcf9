//! `GET /metrics`: the operator's metrics in the Prometheus text format. Behind the API
//! key when keys are set, unless the operator made it public (`--metrics-public`).

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use super::AppState;
use crate::telemetry::METRICS_CONTENT_TYPE;

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    // Queue depth and executing runs are read now rather than counted as they change.
    let (executing, queued) = state.scheduler.executing_and_queued();
    state.metrics.set_runs(executing, queued);
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        state.metrics.encode(),
    )
}
