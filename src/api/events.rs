//! `GET /runs/{id}/events`: the run's lifecycle events as server-sent events.
//!
//! History is replayed from the store, then live events follow. The store is the source
//! of truth: live events only wake the stream; whenever the stream is unsure (a gap, a
//! lagged channel, a quiet period) it reads the store again, so a slow client never
//! misses an event and never slows the run. The stream ends after the run's terminal
//! event.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use axum::routing::get;
use futures::StreamExt;
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, broadcast};
use tokio::time::Instant;

use super::AppState;
use super::error::{ApiError, ApiPath, ApiQuery};
use super::runs::parse_run_id;
use crate::engine::{Frames, LiveMessage, Subscription};
use crate::model::RunId;
use crate::observe::Meter;
use crate::store::Store;
use crate::telemetry::Metrics;

/// Events read from the store per query.
const PAGE: u32 = 1_000;
/// Longest wait for a live event before the store is checked anyway (events written by
/// another instance, or a wake-up that was missed).
const POLL: Duration = Duration::from_secs(1);
/// A comment frame after this long without a write: proxies keep the connection and
/// the server notices a client that went away.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
const KEEP_ALIVE_FRAME: &[u8] = b":keep-alive\n\n";

pub(super) fn router() -> Router<AppState> {
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
    ApiPath(run_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<EventsQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
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
        stale: true,
        // Events this process committed before the subscription are in the store or
        // the run's frame cache, and later ones reach the subscription; only other
        // instances' are unknown here, and a wake-up or the poll brings those.
        unsure_since: None,
        last_write: Instant::now(),
        _permit: permit,
        _client: OpenStream::new(state.metrics.clone()),
    };
    let stream = futures::stream::unfold(cursor, |mut cursor| async move {
        let chunk = cursor.next_chunk().await?;
        Some((Ok::<_, std::convert::Infallible>(chunk), cursor))
    })
    // Shutdown ends every stream (clients reconnect with `Last-Event-ID`).
    .take_until(state.scheduler.stopping().cancelled_owned());
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// Follows one run for one client. Frames come encoded from the hub, shared with the
/// run's other streams (live batches, and history read once from the store); a stream
/// only copies when it joins several of them into one write.
struct EventCursor {
    store: Arc<dyn Store>,
    run_id: RunId,
    after: u64,
    live: Subscription,
    /// Consecutive frames to send (shared with other streams).
    pending: VecDeque<Frames>,
    finished: bool,
    /// The live channel may have missed something (start, a gap, a lagged channel, a
    /// quiet period): read the store before trusting it again.
    stale: bool,
    /// Since then, events may have been committed that this process did not publish
    /// (by another instance, or a wake-up was missed): only a store read started later
    /// may end the catching up.
    unsure_since: Option<std::time::Instant>,
    last_write: Instant,
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
    /// Everything ready to send after `self.after`, as one write; a keep-alive comment
    /// after a quiet period; `None` once the terminal event was sent (or the store
    /// failed, which ends the stream; the client reconnects with its `Last-Event-ID`).
    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            self.take_ready();
            if !self.pending.is_empty() {
                self.last_write = Instant::now();
                return Some(self.drain_pending());
            }
            if self.finished {
                return None;
            }
            if self.stale {
                match self
                    .live
                    .history(self.store.as_ref(), self.after, PAGE, self.unsure_since)
                    .await
                {
                    Ok(Some(frames)) => {
                        self.pending.push_back(frames);
                        continue;
                    }
                    Ok(None) => {
                        self.stale = false;
                        self.unsure_since = None;
                    }
                    Err(e) => {
                        tracing::warn!(run_id = %self.run_id, error = %e, "event stream stopped: store read failed");
                        return None;
                    }
                }
            }
            // Caught up: wait for the next live event.
            match tokio::time::timeout(POLL, self.live.recv()).await {
                Ok(Err(broadcast::error::RecvError::Closed)) => {
                    self.closed();
                    // Nothing wakes a detached stream: look at the store again shortly.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Ok(message) => self.accept(message),
                Err(_) => {
                    self.unsure();
                    if self.last_write.elapsed() >= KEEP_ALIVE {
                        self.last_write = Instant::now();
                        return Some(Bytes::from_static(KEEP_ALIVE_FRAME));
                    }
                }
            }
        }
    }

    /// Live events that are already waiting join the pending ones (one write for all).
    fn take_ready(&mut self) {
        while !self.stale && !self.finished {
            match self.live.try_recv() {
                Ok(message) => self.accept(Ok(message)),
                Err(broadcast::error::TryRecvError::Empty) => return,
                Err(broadcast::error::TryRecvError::Lagged(_)) => self.stale = true,
                Err(broadcast::error::TryRecvError::Closed) => self.closed(),
            }
        }
    }

    /// Events that continue the sequence are queued (a whole batch as the hub encoded
    /// it, or the part of it this stream does not have yet); old news is dropped;
    /// anything else (a gap, a wake-up from another instance, a lagged channel) sends
    /// us to the cache or the store.
    fn accept(&mut self, message: Result<LiveMessage, broadcast::error::RecvError>) {
        let next = self.pending.back().map_or(self.after, |f| f.last) + 1;
        match message {
            Ok(LiveMessage::Events(batch)) if batch.whole.first == next => {
                self.pending.push_back(batch.whole.clone())
            }
            Ok(LiveMessage::Events(batch)) if batch.whole.first < next => {
                let new = batch.each.iter().filter(|f| f.first >= next).cloned();
                self.pending.extend(new);
            }
            Ok(LiveMessage::Wake) => self.unsure(),
            Ok(LiveMessage::Events(_)) | Err(broadcast::error::RecvError::Lagged(_)) => {
                self.stale = true
            }
            Err(broadcast::error::RecvError::Closed) => self.closed(),
        }
    }

    /// The hub dropped the channel (the run finished): the store has the rest.
    fn closed(&mut self) {
        self.live.detach();
        self.unsure();
    }

    /// Events this process did not publish may exist: only the store can tell.
    fn unsure(&mut self) {
        self.stale = true;
        self.unsure_since
            .get_or_insert_with(std::time::Instant::now);
    }

    /// The pending frames up to the terminal event, joined.
    fn drain_pending(&mut self) -> Bytes {
        let mut chunks = Vec::with_capacity(self.pending.len());
        while let Some(frames) = self.pending.pop_front() {
            self.after = frames.last;
            chunks.push(frames.bytes);
            if frames.terminal {
                self.finished = true;
                self.pending.clear();
            }
        }
        match chunks.as_slice() {
            [one] => one.clone(),
            many => Bytes::from(many.concat()),
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::Semaphore;

    use super::*;
    use crate::engine::EventHub;
    use crate::model::RunEvent;
    use crate::model::sample_event;
    use crate::store::MemoryStore;

    fn event(run_id: &RunId, seq: u64, total: u64) -> RunEvent {
        sample_event(run_id, seq, seq == total)
    }

    fn run() -> RunId {
        "run_00000000000000000000000000000001"
            .parse()
            .expect("a run id")
    }

    /// A stream on an empty store: whatever it sends came from the hub.
    fn cursor(hub: &Arc<EventHub>, after: u64, stale: bool) -> EventCursor {
        let run_id = run();
        EventCursor {
            store: Arc::new(MemoryStore::new()),
            live: hub.subscribe(&run_id),
            run_id,
            after,
            pending: VecDeque::new(),
            finished: false,
            stale,
            unsure_since: None,
            last_write: Instant::now(),
            _client: OpenStream::new(Arc::new(crate::telemetry::Metrics::new())),
            _permit: Arc::new(Semaphore::new(1))
                .try_acquire_owned()
                .expect("a permit"),
        }
    }

    /// The frames of `events` as the protocol spells them.
    fn frames(events: &[RunEvent]) -> Vec<u8> {
        events
            .iter()
            .flat_map(|e| {
                let json = serde_json::to_string(e).expect("json");
                format!("id: {}\nevent: {}\ndata: {json}\n\n", e.seq, e.event_type()).into_bytes()
            })
            .collect()
    }

    /// Live events waiting for a stream leave in one write, each frame as the protocol
    /// spells it, in order; the stream ends after the terminal event.
    #[tokio::test]
    async fn waiting_live_frames_are_joined_into_one_write() {
        let hub = Arc::new(EventHub::new());
        let mut cursor = cursor(&hub, 0, false);
        let events: Vec<RunEvent> = (1..=50).map(|seq| event(&run(), seq, 50)).collect();
        hub.publish(&run(), &events[..20]);
        hub.publish(&run(), &events[20..]);
        let chunk = cursor.next_chunk().await.expect("a write");
        assert_eq!(chunk.as_ref(), frames(&events).as_slice());
        assert!(
            cursor.next_chunk().await.is_none(),
            "ends after the terminal event"
        );
    }

    /// A stream that already has the start of a batch sends only the rest of it.
    #[tokio::test]
    async fn a_batch_that_overlaps_what_was_sent_is_sent_from_the_next_event() {
        let hub = Arc::new(EventHub::new());
        let mut cursor = cursor(&hub, 3, false);
        let events: Vec<RunEvent> = (1..=5).map(|seq| event(&run(), seq, 5)).collect();
        hub.publish(&run(), &events);
        let chunk = cursor.next_chunk().await.expect("a write");
        assert_eq!(chunk.as_ref(), frames(&events[3..]).as_slice());
        assert!(cursor.next_chunk().await.is_none());
    }

    /// History another stream of the run already has is not read from the store again
    /// (this store is empty: the frames can only come from the hub's cache).
    #[tokio::test]
    async fn history_comes_from_frames_the_run_streams_share() {
        let hub = Arc::new(EventHub::new());
        let _following = cursor(&hub, 0, false);
        let events: Vec<RunEvent> = (1..=3).map(|seq| event(&run(), seq, 10)).collect();
        hub.publish(&run(), &events);
        let mut joining = cursor(&hub, 1, true);
        let chunk = joining.next_chunk().await.expect("a write");
        assert_eq!(chunk.as_ref(), frames(&events[1..]).as_slice());
        assert_eq!(joining.after, 3);
    }
}
