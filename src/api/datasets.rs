//! `/datasets`: upload a revision (JSONL or CSV, streamed), list datasets and their
//! revisions, page through a revision's cases, delete revisions no run uses.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::AppState;
use super::error::{ApiError, ApiPath, ApiQuery};
use super::runs::{cursor_given, index_cursor, page_limit};
use crate::engine::{CsvMapping, UploadFormat, check_dataset_id};
use crate::model::{DatasetRevision, DatasetSummary, Revision, Timestamp};
use crate::store::{DeleteRevisions, PutOutcome, RevisionCursor};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/datasets", get(list_datasets))
        .route(
            "/datasets/{dataset_id}",
            get(get_dataset).put(put_dataset).delete(delete_dataset),
        )
        .route("/datasets/{dataset_id}/cases", get(list_cases))
}

fn dataset_id(raw: String) -> Result<String, ApiError> {
    check_dataset_id(&raw)
        .map_err(|message| ApiError::bad_request("invalid_dataset_id", "dataset_id", message))?;
    Ok(raw)
}

fn revision(raw: Option<&str>) -> Result<Option<Revision>, ApiError> {
    raw.map(|r| {
        r.parse().map_err(|e: crate::model::InvalidRevision| {
            ApiError::bad_request("invalid_query", "revision", e.to_string())
        })
    })
    .transpose()
}

/// `404` for a dataset, or a revision of it, the store does not have.
fn missing(dataset_id: &str, revision: Option<&Revision>) -> ApiError {
    ApiError::NotFound(match revision {
        Some(r) => format!("dataset {dataset_id} has no revision {r}"),
        None => format!("no dataset {dataset_id}"),
    })
}

/// The body format from `Content-Type` (parameters such as `charset` are ignored).
fn upload_format(headers: &HeaderMap, mapping: CsvMapping) -> Result<UploadFormat, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/x-ndjson" | "application/jsonl" | "application/json-lines" => {
            if mapping != CsvMapping::default() {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    "query",
                    "column mappings apply to CSV uploads only",
                ));
            }
            Ok(UploadFormat::Jsonl)
        }
        "text/csv" => Ok(UploadFormat::Csv(mapping)),
        _ => Err(ApiError::UnsupportedMediaType(
            "send the cases as `Content-Type: application/x-ndjson` (one JSON case per line) or `text/csv`"
                .into(),
        )),
    }
}

async fn put_dataset(
    State(state): State<AppState>,
    ApiPath(raw_id): ApiPath<String>,
    ApiQuery(mapping): ApiQuery<CsvMapping>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let dataset_id = dataset_id(raw_id)?;
    let format = upload_format(&headers, mapping)?;
    let outcome = state
        .scheduler
        .engine()
        .put_dataset(
            &dataset_id,
            &format,
            state.upload_limits,
            body.into_data_stream(),
        )
        .await?;
    let status = match outcome {
        PutOutcome::Created(_) => StatusCode::CREATED,
        PutOutcome::Existing(_) => StatusCode::OK,
    };
    Ok((status, Json(RevisionView::from(outcome.revision().clone()))).into_response())
}

/// A revision as the API shows it.
#[derive(Debug, Serialize)]
pub(super) struct RevisionView {
    pub dataset_id: String,
    pub revision: Revision,
    pub case_count: u64,
    pub bytes: u64,
    pub created_at: Timestamp,
}

impl From<DatasetRevision> for RevisionView {
    fn from(r: DatasetRevision) -> Self {
        RevisionView {
            dataset_id: r.dataset_id,
            revision: r.revision,
            case_count: r.case_count,
            bytes: r.bytes,
            created_at: r.created_at,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    cursor: Option<String>,
    limit: Option<u32>,
}

#[derive(Debug, Serialize)]
struct DatasetView {
    dataset_id: String,
    latest: RevisionView,
    revisions: u64,
}

#[derive(Debug, Serialize)]
struct DatasetPage {
    datasets: Vec<DatasetView>,
    next_cursor: Option<String>,
}

async fn list_datasets(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<DatasetPage>, ApiError> {
    let limit = page_limit(query.limit, 50, 200)?;
    let store = state.scheduler.engine().store();
    let mut datasets = store
        .list_datasets(cursor_given(query.cursor.as_deref()), limit + 1)
        .await?;
    let more = datasets.len() > limit as usize;
    datasets.truncate(limit as usize);
    let next_cursor = more
        .then(|| datasets.last().map(|d| d.dataset_id.clone()))
        .flatten();
    Ok(Json(DatasetPage {
        datasets: datasets
            .into_iter()
            .map(|d: DatasetSummary| DatasetView {
                dataset_id: d.dataset_id,
                latest: d.latest.into(),
                revisions: d.revisions,
            })
            .collect(),
        next_cursor,
    }))
}

#[derive(Debug, Serialize)]
struct RevisionPage {
    dataset_id: String,
    revisions: Vec<RevisionView>,
    next_cursor: Option<String>,
}

/// Revision cursors are `{created_at millis}.{revision}`: the last of the previous page.
fn decode_revision_cursor(raw: &str) -> Result<RevisionCursor, ApiError> {
    let invalid = || {
        ApiError::bad_request(
            "invalid_cursor",
            "cursor",
            "not a cursor returned by this API",
        )
    };
    let (millis, revision) = raw.split_once('.').ok_or_else(invalid)?;
    Ok(RevisionCursor {
        created_at: Timestamp::from_millis(millis.parse().map_err(|_| invalid())?),
        revision: revision.parse().map_err(|_| invalid())?,
    })
}

async fn get_dataset(
    State(state): State<AppState>,
    ApiPath(raw_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<RevisionPage>, ApiError> {
    let dataset_id = dataset_id(raw_id)?;
    let limit = page_limit(query.limit, 50, 200)?;
    let before = cursor_given(query.cursor.as_deref())
        .map(decode_revision_cursor)
        .transpose()?;
    let store = state.scheduler.engine().store();
    let mut revisions = store
        .list_revisions(&dataset_id, before.as_ref(), limit + 1)
        .await?;
    if revisions.is_empty() && before.is_none() {
        return Err(ApiError::NotFound(format!("no dataset {dataset_id}")));
    }
    let more = revisions.len() > limit as usize;
    revisions.truncate(limit as usize);
    let next_cursor = more
        .then(|| {
            revisions
                .last()
                .map(|r| format!("{}.{}", r.created_at.as_millis(), r.revision))
        })
        .flatten();
    Ok(Json(RevisionPage {
        dataset_id,
        revisions: revisions.into_iter().map(RevisionView::from).collect(),
        next_cursor,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CasesQuery {
    revision: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

#[derive(Debug, Serialize)]
struct CasePage {
    dataset_id: String,
    revision: Revision,
    /// The stored canonical JSON of each case, as it is.
    cases: Vec<Box<RawValue>>,
    next_cursor: Option<String>,
}

async fn list_cases(
    State(state): State<AppState>,
    ApiPath(raw_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<CasesQuery>,
) -> Result<Json<CasePage>, ApiError> {
    let dataset_id = dataset_id(raw_id)?;
    let wanted = revision(query.revision.as_deref())?;
    let limit = page_limit(query.limit, 100, 1_000)?;
    let start = index_cursor(query.cursor.as_deref())?.unwrap_or(0);
    let store = state.scheduler.engine().store();
    let found = store
        .get_revision(&dataset_id, wanted.as_ref())
        .await?
        .ok_or_else(|| missing(&dataset_id, wanted.as_ref()))?;
    let end = start.saturating_add(u64::from(limit)).min(found.case_count);
    let stored = store.revision_cases(&found.revision, start..end).await?;
    let cases = stored
        .into_iter()
        .map(|case| {
            RawValue::from_string(case.json)
                .map_err(|e| ApiError::Internal(format!("stored case is not JSON: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(CasePage {
        dataset_id,
        revision: found.revision,
        cases,
        next_cursor: (end < found.case_count).then(|| end.to_string()),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteQuery {
    revision: Option<String>,
}

#[derive(Debug, Serialize)]
struct Deleted {
    dataset_id: String,
    deleted: Vec<Revision>,
}

async fn delete_dataset(
    State(state): State<AppState>,
    ApiPath(raw_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<DeleteQuery>,
) -> Result<Json<Deleted>, ApiError> {
    let dataset_id = dataset_id(raw_id)?;
    let wanted = revision(query.revision.as_deref())?;
    let store = state.scheduler.engine().store();
    match store.delete_revisions(&dataset_id, wanted.as_ref()).await? {
        DeleteRevisions::Deleted(deleted) => Ok(Json(Deleted {
            dataset_id,
            deleted,
        })),
        DeleteRevisions::InUse(runs) => Err(ApiError::RunsInTheWay {
            message: format!(
                "runs use {}: {} (delete those runs first)",
                wanted.map_or_else(|| format!("dataset {dataset_id}"), |r| r.to_string()),
                runs.iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            runs,
        }),
        DeleteRevisions::NotFound => Err(missing(&dataset_id, wanted.as_ref())),
    }
}
