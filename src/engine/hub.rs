//! Live fan-out of committed events to in-process listeners (SSE streams).
//!
//! The store is the source of truth; the hub only wakes listeners quickly. A listener
//! that falls behind (the channel overflowed) reads the missed events from the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use tokio::sync::broadcast;

use crate::model::{RunEvent, RunId};

/// Events buffered per run for live listeners before a slow one must catch up from the store.
const LIVE_BUFFER: usize = 4_096;

/// A committed event with its server-sent-events frame, encoded once and shared (as
/// reference-counted bytes) by every stream that sends it: a thousand followers cost
/// one serialisation, not a thousand.
#[derive(Debug)]
pub struct SharedEvent {
    pub event: RunEvent,
    /// `id: <seq>\nevent: <type>\ndata: <json>\n\n`
    pub frame: Bytes,
}

impl SharedEvent {
    pub fn new(event: RunEvent) -> Self {
        // Compact JSON has no newline, so it fits one `data:` line.
        let json = serde_json::to_string(&event).unwrap_or_else(|_| "{}".to_owned());
        let frame = format!(
            "id: {}\nevent: {}\ndata: {json}\n\n",
            event.seq,
            event.event_type()
        );
        SharedEvent {
            event,
            frame: Bytes::from(frame),
        }
    }
}

/// What live listeners receive.
#[derive(Debug, Clone)]
pub enum LiveMessage {
    /// An event committed by this process.
    Event(Arc<SharedEvent>),
    /// Something was committed elsewhere (another instance): read the store.
    Wake,
}

/// Live channels per run. A channel exists only while someone listens to the run: it is
/// created by the first [`EventHub::subscribe`] (callers check that the run exists
/// first), removed when its last [`Subscription`] is dropped, and removed when the run
/// ends. Runs nobody watches cost nothing here.
#[derive(Default)]
pub struct EventHub {
    channels: Mutex<HashMap<RunId, broadcast::Sender<LiveMessage>>>,
}

/// A listener's end of a run's live channel; dropping the last one frees the channel.
pub struct Subscription {
    hub: Arc<EventHub>,
    run_id: RunId,
    receiver: broadcast::Receiver<LiveMessage>,
}

impl Subscription {
    pub async fn recv(&mut self) -> Result<LiveMessage, broadcast::error::RecvError> {
        self.receiver.recv().await
    }

    /// A message already waiting, without waiting for one.
    pub fn try_recv(&mut self) -> Result<LiveMessage, broadcast::error::TryRecvError> {
        self.receiver.try_recv()
    }

    /// Follows the run's channel again after it was closed (the run ended): a new one if
    /// others listen, or none (a receiver that never yields) until then.
    pub fn detach(&mut self) {
        self.receiver = broadcast::channel(1).1;
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut channels = self.hub.lock();
        // Swap our receiver out first so the count below no longer includes it.
        drop(std::mem::replace(
            &mut self.receiver,
            broadcast::channel(1).1,
        ));
        if channels
            .get(&self.run_id)
            .is_some_and(|sender| sender.receiver_count() == 0)
        {
            channels.remove(&self.run_id);
        }
    }
}

impl EventHub {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RunId, broadcast::Sender<LiveMessage>>> {
        self.channels.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Live events of a run committed from now on. Only subscribe to runs that exist:
    /// the channel lives until the returned subscription (and every other) is dropped.
    pub fn subscribe(self: &Arc<Self>, run_id: &RunId) -> Subscription {
        let receiver = self
            .lock()
            .entry(run_id.clone())
            .or_insert_with(|| broadcast::channel(LIVE_BUFFER).0)
            .subscribe();
        Subscription {
            hub: Arc::clone(self),
            run_id: run_id.clone(),
            receiver,
        }
    }

    /// Live channels open now (one per run with listeners).
    pub fn channel_count(&self) -> usize {
        self.lock().len()
    }

    /// Tells a run's listeners that another process committed to it.
    pub fn wake(&self, run_id: &RunId) {
        let channels = self.lock();
        if let Some(sender) = channels.get(run_id) {
            let _ = sender.send(LiveMessage::Wake);
        }
    }

    /// Hands committed events (in sequence order) to the run's listeners.
    pub fn publish(&self, run_id: &RunId, events: &[RunEvent]) {
        if events.is_empty() || !self.lock().contains_key(run_id) {
            return;
        }
        // Encoded outside the lock: subscribers and other runs' publishers don't wait on it.
        let shared: Vec<_> = events
            .iter()
            .map(|event| Arc::new(SharedEvent::new(event.clone())))
            .collect();
        let mut channels = self.lock();
        let Some(sender) = channels.get(run_id) else {
            return;
        };
        for event in shared {
            // An error only means nobody listens right now.
            let _ = sender.send(LiveMessage::Event(event));
        }
        let finished = events.last().is_some_and(|e| e.kind.is_terminal());
        if finished || sender.receiver_count() == 0 {
            // Listeners keep what was sent; later ones find the rest in the store.
            channels.remove(run_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_live_as_long_as_their_listeners() {
        let hub = Arc::new(EventHub::new());
        let run: RunId = "run_00000000000000000000000000000001"
            .parse()
            .expect("a run id");
        let first = hub.subscribe(&run);
        let second = hub.subscribe(&run);
        assert_eq!(hub.channel_count(), 1);
        drop(first);
        assert_eq!(hub.channel_count(), 1, "one listener is left");
        drop(second);
        assert_eq!(hub.channel_count(), 0);
        hub.wake(&run);
        assert_eq!(hub.channel_count(), 0, "waking creates nothing");
    }
}
