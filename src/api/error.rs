//! The API's one error shape and the extractors that produce it.
//!
//! Every failure answers `{"error": {"code", "message", "details"}}`; `details` lists
//! `{path, message}` for each problem in the request. Server-side failures are logged
//! with their cause and answered with a generic message.

use axum::extract::rejection::{JsonRejection, JsonSyntaxError, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::engine::EngineError;
use crate::model::{FieldError, RunId};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("{message}")]
    BadRequest {
        code: &'static str,
        message: String,
        details: Vec<FieldError>,
    },
    #[error("the request is invalid")]
    Invalid(Vec<FieldError>),
    /// An uploaded dataset's problems, each naming its line.
    #[error("the dataset is invalid")]
    InvalidDataset(Vec<FieldError>),
    /// A review's problems, each naming its field.
    #[error("the review is invalid")]
    InvalidReview(Vec<FieldError>),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// A conflict caused by these runs (unfinished, derived, or using a revision):
    /// `details` names each one, so clients need not parse the message.
    #[error("{message}")]
    RunsInTheWay { message: String, runs: Vec<RunId> },
    #[error("{0}")]
    Unprocessable(String),
    #[error("this endpoint does not support that method")]
    MethodNotAllowed,
    #[error("the request body exceeds the size limit")]
    TooLarge,
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("a valid `Authorization: Bearer <key>` header is required")]
    Unauthorized,
    #[error("internal error")]
    Internal(String),
    #[error("the database is unavailable")]
    Unavailable(String),
    /// The server is at a capacity limit (open event streams): retry later.
    #[error("{0}")]
    Busy(String),
    /// Too many heavy reads at once on this instance: retry after a moment.
    #[error("{0}")]
    TooManyRequests(String),
}

impl ApiError {
    pub(crate) fn bad_request(code: &'static str, path: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError::BadRequest {
            code,
            details: vec![FieldError {
                path: path.to_owned(),
                message: message.clone(),
            }],
            message,
        }
    }

    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            ApiError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_definition"),
            ApiError::InvalidDataset(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_dataset"),
            ApiError::InvalidReview(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_review"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) | ApiError::RunsInTheWay { .. } => {
                (StatusCode::CONFLICT, "conflict")
            }
            ApiError::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            ApiError::TooManyRequests(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: String,
    details: &'a [FieldError],
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        match &self {
            ApiError::Internal(cause) | ApiError::Unavailable(cause) => {
                tracing::error!(%status, cause = %cause, "request failed");
            }
            _ => {}
        }
        let named_runs: Vec<FieldError>;
        let details: &[FieldError] = match &self {
            ApiError::BadRequest { details, .. }
            | ApiError::Invalid(details)
            | ApiError::InvalidDataset(details)
            | ApiError::InvalidReview(details) => details,
            ApiError::RunsInTheWay { runs, .. } => {
                named_runs = runs_in_the_way(runs);
                &named_runs
            }
            _ => &[],
        };
        let body = json!({"error": ErrorBody { code, message: self.to_string(), details }});
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if matches!(self, ApiError::Busy(_)) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if matches!(self, ApiError::TooManyRequests(_)) {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(crate::engine::RETRY_AFTER_SECS),
            );
        }
        response
    }
}

/// An error with its sources, for the log ("database error: ...: connection refused");
/// a source whose text its parent already quotes is not repeated.
fn cause_chain(error: &dyn std::error::Error) -> String {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !chain.contains(&text) {
            chain.push_str(": ");
            chain.push_str(&text);
        }
        source = cause.source();
    }
    chain
}

/// One detail per run in the way: `runs[i]`, its id as the message.
fn runs_in_the_way(runs: &[RunId]) -> Vec<FieldError> {
    runs.iter()
        .enumerate()
        .map(|(i, run)| FieldError {
            path: format!("runs[{i}]"),
            message: run.as_str().to_owned(),
        })
        .collect()
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::RunNotFound(id) => ApiError::NotFound(format!("no run {id}")),
            StoreError::RunFinished { run_id, status } => {
                ApiError::Conflict(format!("run {run_id} is already {}", status.as_str()))
            }
            missing @ StoreError::MissingRevision { .. } => ApiError::Conflict(format!(
                "{missing}: it was deleted while the run was being created"
            )),
            database @ (StoreError::Database(_)
            | StoreError::Constraint(_)
            | StoreError::Migrate(_)
            | StoreError::UnsupportedUrl(_)) => ApiError::Unavailable(cause_chain(&database)),
            other => ApiError::Internal(cause_chain(&other)),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> Self {
        match error {
            EngineError::RunNotFound(id) => ApiError::NotFound(format!("no run {id}")),
            EngineError::Invalid(details) => ApiError::Invalid(details),
            EngineError::Conflict(message) => ApiError::Conflict(message),
            EngineError::Unprocessable(message) => ApiError::Unprocessable(message),
            EngineError::InvalidDataset(details) => ApiError::InvalidDataset(details),
            EngineError::TooLarge(_) => ApiError::TooLarge,
            EngineError::BadBody(message) => ApiError::bad_request("unreadable_body", "", message),
            EngineError::MalformedJson(message) => {
                ApiError::bad_request("malformed_json", "", message)
            }
            EngineError::Busy(message) => ApiError::TooManyRequests(message),
            EngineError::InvalidReview(details) => ApiError::InvalidReview(details),
            EngineError::NotFound(message) => ApiError::NotFound(message),
            EngineError::AmbiguousName { name, runs } => ApiError::RunsInTheWay {
                message: format!(
                    "{} runs are named `{name}`; give one of their ids",
                    runs.len()
                ),
                runs,
            },
            EngineError::Store(e) => e.into(),
            bug @ (EngineError::Task(_)
            | EngineError::Unusable(_)
            | EngineError::Panicked(_)
            | EngineError::Spool(_)) => ApiError::Internal(cause_chain(&bug)),
        }
    }
}

/// `axum::Json` with our error shape for malformed bodies.
pub(super) struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(
            "send the body as JSON with `Content-Type: application/json`".into(),
        ),
        JsonRejection::JsonSyntaxError(e) => out_of_range(&e)
            .unwrap_or_else(|| ApiError::bad_request("malformed_json", "", e.body_text())),
        JsonRejection::JsonDataError(e) => ApiError::bad_request("invalid_body", "", e.body_text()),
        JsonRejection::BytesRejection(e) => {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge
            } else {
                ApiError::bad_request("unreadable_body", "", e.body_text())
            }
        }
        other => ApiError::bad_request("invalid_body", "", other.body_text()),
    }
}

/// A number JSON can write but a 64-bit float cannot hold (`1e400`): serde_json refuses
/// it as a syntax error; answer it like any other out-of-range value, a 422 naming the
/// field (axum parses through `serde_path_to_error`, which knows where it was).
fn out_of_range(rejection: &JsonSyntaxError) -> Option<ApiError> {
    use std::error::Error;
    let error = rejection
        .source()?
        .source()?
        .downcast_ref::<serde_path_to_error::Error<serde_json::Error>>()?;
    if !error.inner().to_string().starts_with("number out of range") {
        return None;
    }
    let path = error.path().to_string();
    Some(ApiError::Invalid(vec![FieldError {
        path: if path == "." { String::new() } else { path },
        message: "is out of range: numbers must be finite 64-bit floats (|x| < 1.8e308)".to_owned(),
    }]))
}

/// A JSON request body as raw bytes, for handlers that parse it themselves (without
/// building the whole document as one tree): the content type and the body size limit
/// are checked as for [`ApiJson`].
pub(super) struct JsonBytes(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let essence = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase());
        let is_json = essence.is_some_and(|e| {
            e == "application/json" || (e.starts_with("application/") && e.ends_with("+json"))
        });
        if !is_json {
            return Err(ApiError::UnsupportedMediaType(
                "send the body as JSON with `Content-Type: application/json`".into(),
            ));
        }
        read_body(req).await.map(JsonBytes)
    }
}

/// The body in one buffer, within the router's `DefaultBodyLimit`. Each chunk is
/// appended to a buffer sized from `Content-Length` and freed at once: collecting the
/// chunks first and then joining them (axum's `Bytes` extractor) held the body up to
/// three times over (issue 13: a 100,000-case `POST /runs` peaked at 5× its body).
const MAX_RESERVE: usize = 256 * 1024 * 1024;

async fn read_body(req: Request) -> Result<axum::body::Bytes, ApiError> {
    use axum::RequestExt;
    use futures::StreamExt;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let mut chunks = req.with_limited_body().into_body().into_data_stream();
    let mut body: Vec<u8> = Vec::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| {
            if over_limit(&e) {
                ApiError::TooLarge
            } else {
                ApiError::bad_request(
                    "unreadable_body",
                    "",
                    format!("reading the body failed: {e}"),
                )
            }
        })?;
        // Sized on the first chunk, which the limit checked `Content-Length` against;
        // capped all the same, so a declared length never reserves more than that.
        if body.capacity() == 0 {
            body.reserve_exact(declared.unwrap_or(0).min(MAX_RESERVE).max(chunk.len()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(axum::body::Bytes::from(body))
}

fn over_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// `axum::extract::Query` with our error shape.
pub(super) struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => Err(ApiError::bad_request(
                "invalid_query",
                "query",
                e.body_text(),
            )),
            Err(other) => Err(ApiError::bad_request(
                "invalid_query",
                "query",
                other.body_text(),
            )),
        }
    }
}

/// `axum::extract::Path` with our error shape: a segment that is not UTF-8 once
/// percent-decoded (`%ff`) is a `400` naming the path, never axum's plain-text answer.
pub(super) struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::rejection::PathRejection;
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(ApiPath(value)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                // The message is fixed: axum's quotes the segment, which may be long.
                let message = match e.kind() {
                    axum::extract::path::ErrorKind::InvalidUtf8InPathParam { .. } => {
                        "a path segment is not UTF-8 once percent-decoded"
                    }
                    _ => "a path segment is not what this endpoint takes",
                };
                Err(ApiError::bad_request("invalid_path", "path", message))
            }
            Err(other) => Err(ApiError::Internal(other.body_text())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(error: StoreError) -> (StatusCode, &'static str) {
        ApiError::from(error).parts()
    }

    #[test]
    fn store_errors_map_to_the_same_responses() {
        assert_eq!(
            status(StoreError::Database(sqlx::Error::RowNotFound)),
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        );
        assert_eq!(
            status(StoreError::Constraint(sqlx::Error::RowNotFound)),
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        );
        assert_eq!(
            status(StoreError::Unavailable(sqlx::Error::PoolTimedOut)),
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        );
        assert_eq!(
            status(StoreError::Corrupt("x".into())),
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        );
    }

    #[test]
    fn server_errors_keep_the_cause_chain_for_the_log() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let ApiError::Internal(cause) =
            ApiError::from(StoreError::Unavailable(sqlx::Error::Io(io)))
        else {
            panic!("not internal");
        };
        assert!(cause.starts_with("database unavailable: "), "{cause}");
        assert!(cause.contains("refused"), "{cause}");
        // The response says nothing of it.
        let response = ApiError::Internal(cause).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    /// A fault of the machine and the engine's bugs answer `500 internal` with a generic
    /// message; the log keeps what happened.
    #[test]
    fn engine_faults_and_bugs_are_internal_with_their_cause() {
        let disk = std::io::Error::new(std::io::ErrorKind::StorageFull, "no space left");
        for (error, logged) in [
            (
                EngineError::Spool(disk),
                "spooling the cases failed: no space left",
            ),
            (
                EngineError::Unusable("retry without a parent run".into()),
                "retry without a parent run",
            ),
            (
                EngineError::Panicked("index out of bounds".into()),
                "index out of bounds",
            ),
        ] {
            let api = ApiError::from(error);
            assert_eq!(api.parts(), (StatusCode::INTERNAL_SERVER_ERROR, "internal"));
            assert_eq!(api.to_string(), "internal error");
            let ApiError::Internal(cause) = api else {
                panic!("not internal");
            };
            assert_eq!(cause, logged);
        }
    }
}
