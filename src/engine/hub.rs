//! Live fan-out of committed events to in-process listeners (SSE streams).
//!
//! The store is the source of truth; the hub only wakes listeners quickly. A listener
//! that falls behind (the channel overflowed) reads the missed events from the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::model::{RunEvent, RunId};

/// Events buffered per run for live listeners before a slow one must catch up from the store.
const LIVE_BUFFER: usize = 4_096;

/// A committed event with its JSON, serialised once for every listener.
#[derive(Debug)]
pub struct SharedEvent {
    pub event: RunEvent,
    pub json: String,
}

impl SharedEvent {
    pub fn new(event: RunEvent) -> Self {
        let json = serde_json::to_string(&event).unwrap_or_else(|_| "{}".to_owned());
        SharedEvent { event, json }
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

#[derive(Default)]
pub struct EventHub {
    channels: Mutex<HashMap<RunId, broadcast::Sender<LiveMessage>>>,
}

impl EventHub {
    pub fn new() -> Self {
        Self::default()
    }

    /// Live events of a run committed from now on.
    pub fn subscribe(&self, run_id: &RunId) -> broadcast::Receiver<LiveMessage> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels
            .entry(run_id.clone())
            .or_insert_with(|| broadcast::channel(LIVE_BUFFER).0)
            .subscribe()
    }

    /// Tells a run's listeners that another process committed to it.
    pub fn wake(&self, run_id: &RunId) {
        let channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sender) = channels.get(run_id) {
            let _ = sender.send(LiveMessage::Wake);
        }
    }

    /// Hands committed events (in sequence order) to the run's listeners.
    pub fn publish(&self, run_id: &RunId, events: &[RunEvent]) {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        let Some(sender) = channels.get(run_id) else {
            return;
        };
        for event in events {
            // An error only means nobody listens right now.
            let _ = sender.send(LiveMessage::Event(Arc::new(SharedEvent::new(
                event.clone(),
            ))));
        }
        let finished = events.last().is_some_and(|e| e.kind.is_terminal());
        if finished || sender.receiver_count() == 0 {
            // Listeners keep what was sent; later ones find the rest in the store.
            channels.remove(run_id);
        }
    }
}
