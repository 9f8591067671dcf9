//! `GET /runs/{id}/events`: the run's lifecycle events as server-sent events.
//!
//! History is replayed from the store, then live events follow. The store is the source
//! of truth: live events only wake the stream; whenever the stream is unsure (a gap, a
//! lagged channel, a quiet period) it reads the store again, so a slow client never
//! misses an event and never slows the run. The stream ends after the run's terminal
//! event.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use futures::{Stream, StreamExt};
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, broadcast};

use super::AppState;
use super::error::{ApiError, ApiQuery};
use super::runs::parse_run_id;
use crate::engine::{LiveMessage, SharedEvent, Subscription};
use crate::model::RunId;
use crate::observe::Meter;
use crate::store::Store;
use crate::telemetry::Metrics;

/// Events read from the store per query.
const PAGE: u32 = 1_000;
/// Longest wait for a live event before the store is checked anyway (events written by
/// another instance, or a wake-up that was missed).
const POLL: Duration = Duration::from_secs(1);

pub fn router() -> Router<AppState> {
    Router::new().route("/runs/{run_id}/events", get(stream_events))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    /// Resume after this sequence number (as `Last-Event-ID`).
    after: Option<u64>,
}

async fn stream_events(
    State(state): State<AppState>,
    Path(run_id): Path<String>,
    ApiQuery(query): ApiQuery<EventsQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let run_id = parse_run_id(&run_id)?;
    let last_event_id = match headers.get("last-event-id") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_last_event_id",
                        "Last-Event-ID",
                        "must be an event sequence number",
                    )
                })?,
        ),
    };
    // Each open stream holds a permit; beyond the server's cap, clients retry later.
    let permit = Arc::clone(&state.event_streams)
        .try_acquire_owned()
        .map_err(|_| {
            ApiError::Busy("too many open event streams on this server; retry later".into())
        })?;
    let engine = state.scheduler.engine();
    let store = engine.store().clone();
    // Only runs that exist get a live channel (an unknown id must not allocate one).
    let run = store
        .get_run_summary(&run_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no run {run_id}")))?;
    // The cursor reads the store before it waits on the channel, so events committed
    // between the summary and the subscription are not missed.
    let live = engine.hub().subscribe(&run_id);
    let after = last_event_id.or(query.after).unwrap_or(0);
    let cursor = EventCursor {
        store,
        run_id,
        after,
        live,
        pending: VecDeque::new(),
        finished: run.status.is_terminal() && after >= run.last_seq,
        _permit: permit,
        _client: OpenStream::new(state.metrics.clone()),
    };
    let stream = futures::stream::unfold(cursor, |mut cursor| async move {
        let event = cursor.next().await?;
        Some((Ok(to_sse(&event)), cursor))
    })
    // Shutdown ends every stream (clients reconnect with `Last-Event-ID`).
    .take_until(state.scheduler.stopping().cancelled_owned());
    Ok(Sse::new(stream).keep_alive(
        KeepAlive::new()
            .interval(Duration::from_secs(15))
            .text("keep-alive"),
    ))
}

fn to_sse(shared: &SharedEvent) -> Event {
    let event = &shared.event;
    Event::default()
        .id(event.seq.to_string())
        .event(event.event_type())
        .data(&shared.json)
}

struct EventCursor {
    store: Arc<dyn Store>,
    run_id: RunId,
    after: u64,
    live: Subscription,
    /// Events to send, with their JSON (shared with other streams when live).
    pending: VecDeque<Arc<SharedEvent>>,
    finished: bool,
    /// This stream's place under the server's cap, given back when the stream ends.
    _permit: OwnedSemaphorePermit,
    _client: OpenStream,
}

/// Counts an open stream in the operator's metrics for as long as it lives.
struct OpenStream(Arc<Metrics>);

impl OpenStream {
    fn new(metrics: Arc<Metrics>) -> Self {
        metrics.sse_clients(1);
        OpenStream(metrics)
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.sse_clients(-1);
    }
}

impl EventCursor {
    /// The next event after `self.after`, or `None` once the terminal event was sent
    /// (or the store failed, which ends the stream; the client reconnects with its
    /// `Last-Event-ID`).
    async fn next(&mut self) -> Option<Arc<SharedEvent>> {
        loop {
            if let Some(shared) = self.pending.pop_front() {
                self.after = shared.event.seq;
                if shared.event.kind.is_terminal() {
                    self.finished = true;
                    self.pending.clear();
                }
                return Some(shared);
            }
            if self.finished {
                return None;
            }
            match self
                .store
                .events_after(&self.run_id, self.after, PAGE)
                .await
            {
                Ok(events) if !events.is_empty() => {
                    self.pending
                        .extend(events.into_iter().map(|e| Arc::new(SharedEvent::new(e))));
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(run_id = %self.run_id, error = %e, "event stream stopped: store read failed");
                    return None;
                }
            }
            // Caught up with the store: wait for the next live event.
            match tokio::time::timeout(POLL, self.live.recv()).await {
                Ok(Ok(LiveMessage::Event(shared))) if shared.event.seq == self.after + 1 => {
                    self.pending.push_back(shared)
                }
                // Old news, a gap or a lagged channel: the store has the truth.
                Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) | Err(_) => {}
                Ok(Err(broadcast::error::RecvError::Closed)) => {
                    // The hub dropped the channel (the run finished): the store has the rest.
                    self.live.detach();
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
}
