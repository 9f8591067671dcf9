//! OpenAI's error body, `{"error": {"message", "type", "param", "code"}}`, for every
//! answer under `/v1`: the official SDKs map its status to their exception classes.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::engine::EngineError;
use crate::store::StoreError;

#[derive(Debug)]
pub(super) struct OpenAiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl OpenAiError {
    pub(super) fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        let param = param.into();
        OpenAiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: (!param.is_empty()).then_some(param),
            code: None,
        }
    }

    pub(super) fn not_found(message: impl Into<String>) -> Self {
        OpenAiError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
            kind: "invalid_request_error",
            param: None,
            code: Some("not_found"),
        }
    }

    pub(super) fn unauthorized() -> Self {
        OpenAiError {
            status: StatusCode::UNAUTHORIZED,
            message: "Incorrect or missing API key: send `Authorization: Bearer <key>` with one \
                      of the server's API keys"
                .into(),
            kind: "invalid_request_error",
            param: None,
            code: Some("invalid_api_key"),
        }
    }

    fn server(status: StatusCode, cause: &str) -> Self {
        tracing::error!(%status, cause, "request failed");
        OpenAiError {
            status,
            message: if status == StatusCode::SERVICE_UNAVAILABLE {
                "the database is unavailable".into()
            } else {
                "internal error".into()
            },
            kind: "server_error",
            param: None,
            code: None,
        }
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {
            "message": self.message, "type": self.kind, "param": self.param, "code": self.code,
        }});
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<EngineError> for OpenAiError {
    fn from(error: EngineError) -> Self {
        match error {
            EngineError::Invalid(problems) | EngineError::InvalidDataset(problems) => {
                let param = problems.first().map(|p| p.path.clone()).unwrap_or_default();
                let message = problems
                    .iter()
                    .map(|p| {
                        if p.path.is_empty() {
                            p.message.clone()
                        } else {
                            format!("{}: {}", p.path, p.message)
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                OpenAiError::invalid(param, message)
            }
            EngineError::NotFound(m) => OpenAiError::not_found(m),
            EngineError::RunNotFound(id) => OpenAiError::not_found(format!("run {id} not found")),
            EngineError::Conflict(m) => OpenAiError {
                status: StatusCode::CONFLICT,
                message: m,
                kind: "invalid_request_error",
                param: None,
                code: Some("conflict"),
            },
            EngineError::TooLarge(m) => OpenAiError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                message: m,
                kind: "invalid_request_error",
                param: None,
                code: None,
            },
            EngineError::Busy(m) => OpenAiError {
                status: StatusCode::TOO_MANY_REQUESTS,
                message: m,
                kind: "rate_limit_error",
                param: None,
                code: None,
            },
            EngineError::Store(StoreError::Unavailable(cause)) => {
                OpenAiError::server(StatusCode::SERVICE_UNAVAILABLE, &cause.to_string())
            }
            other => OpenAiError::server(StatusCode::INTERNAL_SERVER_ERROR, &other.to_string()),
        }
    }
}

impl From<StoreError> for OpenAiError {
    fn from(error: StoreError) -> Self {
        EngineError::Store(error).into()
    }
}
