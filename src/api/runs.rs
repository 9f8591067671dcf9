//! `/runs`: create (idempotent), list, status, cancel, rejudge (results: `results.rs`).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AppState;
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery, JsonBytes};
use super::status_cache::Encoded;
use crate::engine::{ConcurrencyLimit, check_run_name, check_tag, parse_evaluation};
use crate::model::{
    MetricAggregate, Progress, RunId, RunKind, RunLabels, RunRecord, RunStatus, Spend, Timestamp,
    Usage,
};
use crate::observe::{TelemetryView, redact_runtime};
use crate::store::{CancelOutcome, CreateOutcome, RunCursor, RunQuery};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/runs", post(create_run).get(list_runs))
        .route("/runs/{run_id}", get(get_run))
        .route("/runs/{run_id}/cancel", post(cancel_run))
        .route("/runs/{run_id}/rejudge", post(rejudge_run))
}

/// Parses a run id from the path; a malformed one can never exist.
pub(super) fn parse_run_id(raw: &str) -> Result<RunId, ApiError> {
    raw.parse().map_err(|e: crate::model::InvalidRunId| {
        ApiError::bad_request("invalid_run_id", "run_id", e.to_string())
    })
}

/// A run as the API shows it.
#[derive(Debug, Serialize)]
pub(super) struct RunView {
    pub run_id: RunId,
    pub kind: RunKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_run_id: Option<RunId>,
    #[serde(flatten)]
    pub labels: RunLabels,
    pub status: RunStatus,
    pub progress: Progress,
    pub usage: Usage,
    /// Cost split into generation and judging, overall and by dataset, and the budget.
    pub spend: SpendView,
    pub aggregates: BTreeMap<String, MetricAggregate>,
    /// How the agent loops of its cases ended, by outcome (agent runs only).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub agent_outcomes: BTreeMap<String, u64>,
    pub error: Option<String>,
    pub cancel_requested: bool,
    pub last_event_seq: u64,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub updated_at: Timestamp,
    pub duration_ms: Option<u64>,
    #[serde(skip_serializing_if = "Value::is_null")]
    pub definition: Value,
    #[serde(skip_serializing_if = "Value::is_null")]
    pub runtime: Value,
    /// Span export and webhook delivery counters, when this instance knows any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<TelemetryView>,
    /// While this instance executes the run below the concurrency it asked for: how
    /// much it gets and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<ConcurrencyLimit>,
    pub links: Links,
}

/// A run's spend as the API shows it.
#[derive(Debug, Serialize)]
pub(super) struct SpendView {
    #[serde(flatten)]
    pub spend: Spend,
}

#[derive(Debug, Serialize)]
pub(super) struct Links {
    #[serde(rename = "self")]
    pub this: String,
    pub results: String,
    pub events: String,
}

impl RunView {
    /// The view of `record` with what the server's telemetry knows of it.
    fn new(record: RunRecord, state: &AppState) -> Self {
        let engine = state.scheduler.engine();
        let telemetry = engine.instrumentation().report(&record.run_id);
        let concurrency = engine.concurrency_limit(&record.run_id);
        Self::with_counters(record, telemetry, concurrency)
    }

    /// The view of `record` with these telemetry counters and concurrency limit.
    fn with_counters(
        record: RunRecord,
        telemetry: Option<TelemetryView>,
        concurrency: Option<ConcurrencyLimit>,
    ) -> Self {
        let base = format!("/runs/{}", record.run_id);
        let duration_ms = match (record.started_at, record.finished_at) {
            (Some(start), Some(end)) => Some(end.millis_since(start)),
            (Some(start), None) => Some(Timestamp::now().millis_since(start)),
            _ => None,
        };
        RunView {
            links: Links {
                results: format!("{base}/results"),
                events: format!("{base}/events"),
                this: base,
            },
            run_id: record.run_id,
            kind: record.kind,
            parent_run_id: record.parent_run_id,
            labels: record.labels,
            status: record.status,
            progress: record.progress,
            usage: record.usage,
            agent_outcomes: record.aggregates.agent_outcomes,
            spend: SpendView {
                spend: record.aggregates.spend,
            },
            aggregates: record.aggregates.metrics,
            error: record.error,
            cancel_requested: record.cancel_requested,
            last_event_seq: record.last_seq,
            created_at: record.created_at,
            started_at: record.started_at,
            finished_at: record.finished_at,
            updated_at: record.updated_at,
            duration_ms,
            definition: seeds_as_strings(record.definition),
            runtime: {
                let mut runtime = record.runtime;
                redact_runtime(&mut runtime);
                runtime
            },
            telemetry,
            concurrency,
        }
    }
}

/// The stored definition keeps seeds as numbers (its canonical JSON decides the run id);
/// the API writes them as strings like every seed it shows (see `model::u64_string`).
fn seeds_as_strings(mut definition: Value) -> Value {
    if let Some(seeds) = definition.get_mut("seeds").and_then(Value::as_array_mut) {
        for seed in seeds.iter_mut().filter(|s| s.is_u64()) {
            *seed = Value::String(seed.to_string());
        }
    }
    definition
}

/// 202 + `Location` for a new run, 200 for an existing one.
pub(super) fn created_response(outcome: CreateOutcome, state: &AppState) -> Response {
    let status = if outcome.was_created() {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    let mut record = outcome.into_record();
    record.definition = Value::Null;
    record.runtime = Value::Null;
    let location = format!("/runs/{}", record.run_id);
    let mut response = (status, Json(RunView::new(record, state))).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// A valid W3C `traceparent` header (an invalid one is ignored, as the spec asks).
fn traceparent(headers: &HeaderMap) -> Option<String> {
    let raw = headers.get("traceparent")?.to_str().ok()?.trim();
    crate::telemetry::parse_traceparent(raw).map(|_| raw.to_owned())
}

/// `POST /runs?dry_run=true`: validate and estimate, store nothing.
#[derive(Debug, Deserialize)]
struct CreateRunQuery {
    #[serde(default)]
    dry_run: bool,
}

async fn create_run(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<CreateRunQuery>,
    headers: HeaderMap,
    JsonBytes(body): JsonBytes,
) -> Result<Response, ApiError> {
    let engine = state.scheduler.engine();
    let (mut request, staged) = engine.parse_body(&body)?;
    drop(body);
    if query.dry_run {
        let estimate = engine.dry_run(&request, staged).await?;
        return Ok(Json(estimate).into_response());
    }
    request.runtime.traceparent = traceparent(&headers);
    let outcome = engine.submit_staged(&request, staged).await?;
    if !outcome.record().status.is_terminal() {
        // New, or interrupted and not executing here: (re)start it. No-op if running here.
        state
            .scheduler
            .enqueue(outcome.record().run_id.clone(), None);
    }
    Ok(created_response(outcome, &state))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListRunsQuery {
    status: Option<String>,
    kind: Option<String>,
    parent_run_id: Option<String>,
    name: Option<String>,
    tag: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

#[derive(Debug, Serialize)]
struct RunPage {
    runs: Vec<RunView>,
    next_cursor: Option<String>,
}

/// Cursors are `{created_at millis}.{run_id}`: the last run of the previous page.
fn encode_run_cursor(record: &RunRecord) -> String {
    format!("{}.{}", record.created_at.as_millis(), record.run_id)
}

fn decode_run_cursor(raw: &str) -> Result<RunCursor, ApiError> {
    let invalid = || {
        ApiError::bad_request(
            "invalid_cursor",
            "cursor",
            "not a cursor returned by this API",
        )
    };
    let (millis, run_id) = raw.split_once('.').ok_or_else(invalid)?;
    Ok(RunCursor {
        created_at: Timestamp::from_millis(millis.parse().map_err(|_| invalid())?),
        run_id: run_id.parse().map_err(|_| invalid())?,
    })
}

/// A `cursor` query parameter as given: empty (`cursor=`) is the first page, as absent.
pub(super) fn cursor_given(cursor: Option<&str>) -> Option<&str> {
    cursor.filter(|c| !c.is_empty())
}

/// A `cursor` that pages by case index, as this API hands it out: the stores index cases
/// with signed 64-bit integers, so a larger number is no cursor of ours.
pub(super) fn index_cursor(cursor: Option<&str>) -> Result<Option<u64>, ApiError> {
    cursor_given(cursor)
        .map(|c| {
            c.parse::<u64>()
                .ok()
                .filter(|i| i64::try_from(*i).is_ok())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_cursor",
                        "cursor",
                        "not a cursor returned by this API",
                    )
                })
        })
        .transpose()
}

pub(super) fn page_limit(limit: Option<u32>, default: u32, max: u32) -> Result<u32, ApiError> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::bad_request(
            "invalid_query",
            "limit",
            format!("must be from 1 to {max}"),
        )),
    }
}

/// A query value that must be one of `options` (what `parse` accepts).
fn one_of<T>(
    raw: Option<&str>,
    field: &str,
    parse: fn(&str) -> Option<T>,
    options: &str,
) -> Result<Option<T>, ApiError> {
    raw.map(|value| {
        parse(value).ok_or_else(|| {
            ApiError::bad_request("invalid_query", field, format!("must be one of {options}"))
        })
    })
    .transpose()
}

async fn list_runs(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListRunsQuery>,
) -> Result<Json<RunPage>, ApiError> {
    let status = one_of(
        query.status.as_deref(),
        "status",
        RunStatus::parse,
        "queued, running, completed, failed, cancelled",
    )?;
    let kind = one_of(
        query.kind.as_deref(),
        "kind",
        RunKind::parse,
        "experiment, rejudge, retry",
    )?;
    let parent_run_id = query
        .parent_run_id
        .as_deref()
        .map(parse_run_id)
        .transpose()?;
    let checked = |value: Option<String>, field: &str, check: fn(&str) -> Result<(), String>| {
        value
            .map(|v| {
                check(&v)
                    .map(|()| v)
                    .map_err(|message| ApiError::bad_request("invalid_query", field, message))
            })
            .transpose()
    };
    let name = checked(query.name, "name", check_run_name)?;
    let tag = checked(query.tag, "tag", check_tag)?;
    let limit = page_limit(query.limit, 50, 200)?;
    let store_query = RunQuery {
        status,
        kind,
        parent_run_id,
        name,
        tag,
        before: cursor_given(query.cursor.as_deref())
            .map(decode_run_cursor)
            .transpose()?,
        limit: limit + 1,
    };
    let mut runs = state
        .scheduler
        .engine()
        .store()
        .list_runs(&store_query)
        .await?;
    let more = runs.len() > limit as usize;
    runs.truncate(limit as usize);
    let next_cursor = if more {
        runs.last().map(encode_run_cursor)
    } else {
        None
    };
    Ok(Json(RunPage {
        runs: runs.into_iter().map(|r| RunView::new(r, &state)).collect(),
        next_cursor,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GetRunQuery {
    /// `definition` adds the stored definition and runtime options.
    include: Option<String>,
    /// `bootstrap` adds seeded bootstrap intervals to the aggregates (reads the records).
    ci: Option<String>,
}

/// The body of `GET /runs/{id}` and its weak ETag: a digest of the serialised body, so
/// the tag changes whenever anything shown changes — the row, and the telemetry counters
/// that live outside it. One exception, by design: the `duration_ms` of a running run is
/// the clock at request time, not state; it is left out of the digest so polling a
/// running run still gets 304 while nothing happened (its `started_at` is in the body).
fn encode_view(mut view: RunView) -> Result<Encoded, ApiError> {
    let live_duration = if view.finished_at.is_none() {
        view.duration_ms.take()
    } else {
        None
    };
    Encoded::new(&view, live_duration.is_some())
}

/// [`encode_view`] for a view that may hold a definition and runtime options (user
/// keys after `duration_ms`): the body is serialised again with its duration.
fn encode_full_view(mut view: RunView) -> Result<Encoded, ApiError> {
    let live_duration = if view.finished_at.is_none() {
        view.duration_ms.take()
    } else {
        None
    };
    let encoded = Encoded::new(&view, false)?;
    match live_duration {
        Some(duration) => {
            view.duration_ms = Some(duration);
            let body = serde_json::to_vec(&view)
                .map_err(|e| ApiError::Internal(format!("serialising run: {e}")))?;
            Ok(encoded.with_body(body))
        }
        None => Ok(encoded),
    }
}

async fn get_run(
    State(state): State<AppState>,
    ApiPath(run_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<GetRunQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let run_id = parse_run_id(&run_id)?;
    let with_definition = match query.include.as_deref() {
        None => false,
        Some("definition") => true,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                "include",
                "the only value is `definition`",
            ));
        }
    };
    let bootstrap = match query.ci.as_deref() {
        None | Some("t") => false,
        Some("bootstrap") => true,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                "ci",
                "must be `t` (the default) or `bootstrap`",
            ));
        }
    };
    let engine = state.scheduler.engine();
    // A run executing here is answered from the engine's summary of it, without a
    // database round trip (status polling is most of a dashboard's requests), and its
    // encoding is kept until the summary or its counters change. A run executing
    // elsewhere (another instance on the same Postgres) or not at all is read from the
    // store at every request.
    let live = (!with_definition && !bootstrap)
        .then(|| engine.live_summary(&run_id))
        .flatten();
    let (encoded, live_duration) = match live {
        Some(summary) => {
            let encoded = state.status_cache.get_or_encode(
                &summary,
                engine.instrumentation().report(&run_id),
                engine.concurrency_limit(&run_id),
                |record, telemetry, concurrency| {
                    encode_view(RunView::with_counters(
                        record.clone(),
                        telemetry,
                        concurrency,
                    ))
                },
                |run_id| engine.live_summary(run_id).is_some(),
            )?;
            let duration = match (summary.started_at, summary.finished_at) {
                (Some(start), None) => Some(Timestamp::now().millis_since(start)),
                _ => None,
            };
            (encoded, duration)
        }
        None => {
            state.status_cache.forget(&run_id);
            let store = engine.store();
            let mut record = if with_definition {
                store.get_run(&run_id).await?
            } else {
                store.get_run_summary(&run_id).await?
            }
            .ok_or_else(|| ApiError::NotFound(format!("no run {run_id}")))?;
            if bootstrap {
                // The intervals are part of the body, so the body's digest (the ETag)
                // covers them.
                engine.add_bootstrap(&mut record).await?;
            }
            (encode_full_view(RunView::new(record, &state))?, None)
        }
    };
    let no_cache = HeaderValue::from_static("no-cache");
    if encoded.matches(headers.get(header::IF_NONE_MATCH)) {
        return Ok((
            StatusCode::NOT_MODIFIED,
            [
                (header::ETAG, encoded.tag),
                (header::CACHE_CONTROL, no_cache),
            ],
        )
            .into_response());
    }
    let json = HeaderValue::from_static("application/json");
    let body = encoded.body(live_duration);
    Ok((
        [
            (header::ETAG, encoded.tag),
            (header::CACHE_CONTROL, no_cache),
            (header::CONTENT_TYPE, json),
        ],
        body,
    )
        .into_response())
}

async fn cancel_run(
    State(state): State<AppState>,
    ApiPath(run_id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let run_id = parse_run_id(&run_id)?;
    let (status, record) = match state.scheduler.cancel(&run_id).await? {
        CancelOutcome::Cancelled(record, _) | CancelOutcome::AlreadyFinished(record) => {
            (StatusCode::OK, record)
        }
        CancelOutcome::Requested(record) => (StatusCode::ACCEPTED, record),
    };
    let mut record = record;
    record.definition = Value::Null;
    record.runtime = Value::Null;
    Ok((status, Json(RunView::new(record, &state))).into_response())
}

async fn rejudge_run(
    State(state): State<AppState>,
    ApiPath(run_id): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let run_id = parse_run_id(&run_id)?;
    let engine = state.scheduler.engine();
    let (evaluation, _, mut runtime) =
        parse_evaluation(&body, engine.registry()).map_err(ApiError::Invalid)?;
    runtime.traceparent = traceparent(&headers);
    let outcome = engine
        .submit_rejudge(&run_id, &evaluation, &runtime)
        .await?;
    if !outcome.record().status.is_terminal() {
        state
            .scheduler
            .enqueue(outcome.record().run_id.clone(), None);
    }
    Ok(created_response(outcome, &state))
}
