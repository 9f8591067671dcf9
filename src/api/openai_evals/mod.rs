//! `/v1`: OpenAI's Evals API (evals, eval runs, output items) and the files it reads, in
//! OpenAI's shapes, ids, cursor pages and error body, so code written for the official
//! SDKs runs unchanged with `base_url` pointing here. Keys are the server's API keys.

mod error;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Multipart, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::AppState;
use crate::engine::{EvalsPage, Listing, MAX_FILE_BYTES};
use crate::model::ListOrder;
use error::OpenAiError;

type Answer = Result<Json<Value>, OpenAiError>;

pub(super) fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/evals", post(create_eval).get(list_evals))
        .route(
            "/evals/{eval_id}",
            get(get_eval).post(update_eval).delete(delete_eval),
        )
        .route("/evals/{eval_id}/runs", post(create_run).get(list_runs))
        .route(
            "/evals/{eval_id}/runs/{run_id}",
            get(get_run).post(cancel_run).delete(delete_run),
        )
        .route("/evals/{eval_id}/runs/{run_id}/cancel", post(cancel_run))
        .route(
            "/evals/{eval_id}/runs/{run_id}/output_items",
            get(list_output_items),
        )
        .route(
            "/evals/{eval_id}/runs/{run_id}/output_items/{item_id}",
            get(get_output_item),
        )
        .route("/files", post(create_file).get(list_files))
        .route("/files/{file_id}", get(get_file).delete(delete_file))
        .route("/files/{file_id}/content", get(file_content))
        .route_layer(middleware::from_fn_with_state(state, require_key))
        .fallback(|| async { OpenAiError::not_found("no such endpoint under /v1") })
        .method_not_allowed_fallback(|| async {
            OpenAiError {
                status: StatusCode::METHOD_NOT_ALLOWED,
                message: "this endpoint does not support that method".into(),
                kind: "invalid_request_error",
                param: None,
                code: None,
            }
        })
}

/// The server's API keys, answered in OpenAI's error shape.
async fn require_key(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if !state.api_keys.is_empty() {
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if state.api_keys.identify(presented).is_none() {
            return OpenAiError::unauthorized().into_response();
        }
    }
    next.run(request).await
}

/// The query's pairs; `after`, `limit`, `order` and the listing's own filters.
struct ListQuery {
    page: EvalsPage,
    status: Option<String>,
}

fn list_query(raw: Option<String>, filters: &[&str]) -> Result<ListQuery, OpenAiError> {
    let mut page = EvalsPage {
        after: None,
        limit: 20,
        order: ListOrder::Asc,
    };
    let mut status = None;
    for pair in raw
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value)
            .ok_or_else(|| OpenAiError::invalid(key, "is not valid percent-encoded UTF-8"))?;
        match key {
            "after" => page.after = Some(value).filter(|v| !v.is_empty()),
            "limit" => {
                page.limit = value
                    .parse::<u32>()
                    .ok()
                    .filter(|l| (1..=100).contains(l))
                    .ok_or_else(|| {
                        OpenAiError::invalid("limit", "must be an integer from 1 to 100")
                    })?;
            }
            "order" => {
                page.order = match value.as_str() {
                    "asc" => ListOrder::Asc,
                    "desc" => ListOrder::Desc,
                    _ => return Err(OpenAiError::invalid("order", "must be `asc` or `desc`")),
                }
            }
            "order_by" if value == "created_at" => {}
            key if filters.contains(&key) => status = Some(value),
            other => {
                return Err(OpenAiError::invalid(
                    other,
                    format!("unknown query parameter `{other}`"),
                ));
            }
        }
    }
    Ok(ListQuery { page, status })
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn page_of(listing: Listing) -> Json<Value> {
    let id = |v: Option<&Value>| v.and_then(|v| v["id"].as_str()).map(str::to_owned);
    Json(json!({
        "object": "list",
        "first_id": id(listing.data.first()),
        "last_id": id(listing.data.last()),
        "has_more": listing.has_more,
        "data": listing.data,
    }))
}

fn json_body(body: Result<Bytes, BytesRejection>) -> Result<Value, OpenAiError> {
    let bytes = body.map_err(|e| OpenAiError {
        status: e.status(),
        message: e.body_text(),
        kind: "invalid_request_error",
        param: None,
        code: None,
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| OpenAiError::invalid("", format!("the body is not valid JSON: {e}")))
}

/// Where this server is reached, for `report_url`.
fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
        })
        .unwrap_or("localhost");
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
    {
        Some("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}")
}

async fn create_eval(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Answer {
    Ok(Json(state.evals.create_eval(&json_body(body)?).await?))
}

async fn list_evals(State(state): State<AppState>, RawQuery(raw): RawQuery) -> Answer {
    let query = list_query(raw, &[])?;
    Ok(page_of(state.evals.list_evals(&query.page).await?))
}

async fn get_eval(State(state): State<AppState>, Path(id): Path<String>) -> Answer {
    Ok(Json(state.evals.get_eval(&id).await?))
}

async fn update_eval(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    Ok(Json(state.evals.update_eval(&id, &json_body(body)?).await?))
}

async fn delete_eval(State(state): State<AppState>, Path(id): Path<String>) -> Answer {
    Ok(Json(state.evals.delete_eval(&id).await?))
}

async fn create_run(
    State(state): State<AppState>,
    Path(eval_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    let body = json_body(body)?;
    let created = state
        .evals
        .create_run(&eval_id, &body, &base_url(&headers))
        .await?;
    state.scheduler.enqueue(created.run_id, None);
    Ok(Json(created.view))
}

async fn list_runs(
    State(state): State<AppState>,
    Path(eval_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Answer {
    let query = list_query(raw, &["status"])?;
    if let Some(status) = &query.status
        && !["queued", "in_progress", "completed", "canceled", "failed"].contains(&status.as_str())
    {
        return Err(OpenAiError::invalid(
            "status",
            "must be queued, in_progress, completed, canceled or failed",
        ));
    }
    Ok(page_of(
        state
            .evals
            .list_runs(&eval_id, &query.page, query.status.as_deref())
            .await?,
    ))
}

async fn get_run(
    State(state): State<AppState>,
    Path((eval_id, run_id)): Path<(String, String)>,
) -> Answer {
    Ok(Json(state.evals.get_run(&eval_id, &run_id).await?))
}

async fn cancel_run(
    State(state): State<AppState>,
    Path((eval_id, run_id)): Path<(String, String)>,
) -> Answer {
    Ok(Json(state.evals.cancel_run(&eval_id, &run_id).await?))
}

async fn delete_run(
    State(state): State<AppState>,
    Path((eval_id, run_id)): Path<(String, String)>,
) -> Answer {
    Ok(Json(state.evals.delete_run(&eval_id, &run_id).await?))
}

async fn list_output_items(
    State(state): State<AppState>,
    Path((eval_id, run_id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Answer {
    let query = list_query(raw, &["status"])?;
    if let Some(status) = &query.status
        && !["pass", "fail"].contains(&status.as_str())
    {
        return Err(OpenAiError::invalid("status", "must be `pass` or `fail`"));
    }
    Ok(page_of(
        state
            .evals
            .list_output_items(&eval_id, &run_id, &query.page, query.status.as_deref())
            .await?,
    ))
}

async fn get_output_item(
    State(state): State<AppState>,
    Path((eval_id, run_id, item_id)): Path<(String, String, String)>,
) -> Answer {
    Ok(Json(
        state
            .evals
            .get_output_item(&eval_id, &run_id, &item_id)
            .await?,
    ))
}

async fn create_file(
    State(state): State<AppState>,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Answer {
    let mut multipart = multipart.map_err(|e| OpenAiError::invalid("", e.body_text()))?;
    let (mut purpose, mut file) = (None, None);
    let bad = |e: axum::extract::multipart::MultipartError| OpenAiError {
        status: e.status(),
        message: e.body_text(),
        kind: "invalid_request_error",
        param: None,
        code: None,
    };
    while let Some(field) = multipart.next_field().await.map_err(bad)? {
        match field.name() {
            Some("purpose") => purpose = Some(field.text().await.map_err(bad)?),
            Some("file") => {
                let name = field.file_name().unwrap_or("upload.jsonl").to_owned();
                let bytes = field.bytes().await.map_err(bad)?;
                if bytes.len() > MAX_FILE_BYTES {
                    return Err(OpenAiError::invalid(
                        "file",
                        format!("files are at most {MAX_FILE_BYTES} bytes"),
                    ));
                }
                let text = String::from_utf8(bytes.to_vec())
                    .map_err(|_| OpenAiError::invalid("file", "an evals file is UTF-8 JSONL"))?;
                file = Some((name, text));
            }
            _ => {}
        }
    }
    let purpose = purpose.ok_or_else(|| OpenAiError::invalid("purpose", "is required"))?;
    let (name, text) = file.ok_or_else(|| OpenAiError::invalid("file", "is required"))?;
    Ok(Json(state.evals.create_file(&name, &purpose, text).await?))
}

async fn list_files(State(state): State<AppState>, RawQuery(raw): RawQuery) -> Answer {
    let query = list_query(raw, &["purpose"])?;
    Ok(page_of(state.evals.list_files(&query.page).await?))
}

async fn get_file(State(state): State<AppState>, Path(id): Path<String>) -> Answer {
    Ok(Json(state.evals.get_file(&id).await?))
}

async fn file_content(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, OpenAiError> {
    let content = state.evals.file_content(&id).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        content,
    )
        .into_response())
}

async fn delete_file(State(state): State<AppState>, Path(id): Path<String>) -> Answer {
    Ok(Json(state.evals.delete_file(&id).await?))
}
