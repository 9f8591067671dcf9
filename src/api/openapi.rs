//! `GET /openapi.yaml`: the API description, compiled into the binary.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use super::AppState;

/// The OpenAPI 3.1 document of this API (`openapi.yaml` at the repository root).
pub(super) const OPENAPI_YAML: &str = include_str!("../../openapi.yaml");

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/openapi.yaml", get(openapi))
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI_YAML)
}
