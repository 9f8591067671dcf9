//! Live fan-out of committed events to in-process listeners (SSE streams).
//!
//! The store is the source of truth; the hub only wakes listeners quickly. A listener
//! that falls behind (the channel overflowed) reads the missed events from the store, or
//! from the frames the run's other listeners already read and encoded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::broadcast;

use super::frames::{EncodedBatch, FrameCache, Frames, Lookup};
use crate::model::{RunEvent, RunId};
use crate::store::{Store, StoreResult};

/// Messages (committed batches) buffered per run for live listeners before a slow one
/// must catch up from the cache or the store.
const LIVE_BUFFER: usize = 1_024;

/// What live listeners receive.
#[derive(Debug, Clone)]
pub enum LiveMessage {
    /// Events committed together by this process, encoded once for every listener:
    /// one message (one wake-up per listener) per commit, not per event.
    Events(Arc<EncodedBatch>),
    /// Something was committed elsewhere (another instance): read the store.
    Wake,
}

/// What the streams of one run share for as long as any of them lives.
#[derive(Default)]
struct Followed {
    frames: FrameCache,
    /// Held by the one stream reading history from the store, so the others wait for
    /// its page in the cache instead of reading (and encoding) the same events again.
    reading: tokio::sync::Mutex<()>,
}

struct Channel {
    sender: broadcast::Sender<LiveMessage>,
    followed: Arc<Followed>,
}

/// Live channels per run. A channel exists only while someone listens to the run: it is
/// created by the first [`EventHub::subscribe`] (callers check that the run exists
/// first), removed when its last [`Subscription`] is dropped, and removed when the run
/// ends. Runs nobody watches cost nothing here.
#[derive(Default)]
pub struct EventHub {
    channels: Mutex<HashMap<RunId, Channel>>,
}

/// A listener's end of a run's live channel; dropping the last one frees the channel.
pub struct Subscription {
    hub: Arc<EventHub>,
    run_id: RunId,
    receiver: broadcast::Receiver<LiveMessage>,
    followed: Arc<Followed>,
}

impl Subscription {
    /// Up to `limit` committed frames after `after`, consecutive; `None` once nothing
    /// follows yet (this subscription receives what does). They come from what the
    /// run's other streams already encoded when they can; otherwise one stream at a time
    /// reads the store and leaves what it read for the others. A caller `unsure_since`
    /// a moment (it heard that another instance committed, or went a while without
    /// news) is only told that nothing follows by a store read started after it.
    pub async fn history(
        &self,
        store: &dyn Store,
        after: u64,
        limit: u32,
        unsure_since: Option<Instant>,
    ) -> StoreResult<Option<Frames>> {
        let cache = &self.followed.frames;
        let known = |lookup| match lookup {
            Lookup::Frames(frames) => Some(Some(frames)),
            Lookup::Nothing => Some(None),
            Lookup::Unknown => None,
        };
        if let Some(answer) = known(cache.after(after, limit as usize, unsure_since)) {
            return Ok(answer);
        }
        // Another stream may be reading these very events: wait for it, then look again.
        let _reading = self.followed.reading.lock().await;
        if let Some(answer) = known(cache.after(after, limit as usize, unsure_since)) {
            return Ok(answer);
        }
        let started = Instant::now();
        let events = store.events_after(&self.run_id, after, limit).await?;
        if events.len() < limit as usize {
            let last = events.last().map_or(after, |e| e.seq);
            cache.store_ended(started, last);
        }
        let Some(batch) = EncodedBatch::encode_first(&events) else {
            return Ok(None);
        };
        cache.insert(&batch);
        Ok(Some(batch.whole.clone()))
    }

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
            .is_some_and(|channel| channel.sender.receiver_count() == 0)
        {
            channels.remove(&self.run_id);
        }
    }
}

impl EventHub {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RunId, Channel>> {
        self.channels.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Live events of a run committed from now on. Only subscribe to runs that exist:
    /// the channel lives until the returned subscription (and every other) is dropped.
    pub fn subscribe(self: &Arc<Self>, run_id: &RunId) -> Subscription {
        let mut channels = self.lock();
        let channel = channels.entry(run_id.clone()).or_insert_with(|| Channel {
            sender: broadcast::channel(LIVE_BUFFER).0,
            followed: Arc::default(),
        });
        Subscription {
            hub: Arc::clone(self),
            run_id: run_id.clone(),
            receiver: channel.sender.subscribe(),
            followed: Arc::clone(&channel.followed),
        }
    }

    /// Live channels open now (one per run with listeners).
    pub fn channel_count(&self) -> usize {
        self.lock().len()
    }

    /// Whether anyone listens to the run now. A listener that arrives after this said
    /// no reads what was committed before from the store.
    pub fn is_followed(&self, run_id: &RunId) -> bool {
        self.lock().contains_key(run_id)
    }

    /// Tells a run's listeners that another process committed to it.
    pub fn wake(&self, run_id: &RunId) {
        let channels = self.lock();
        if let Some(channel) = channels.get(run_id) {
            let _ = channel.sender.send(LiveMessage::Wake);
        }
    }

    /// Hands committed events (in sequence order) to the run's listeners.
    pub fn publish(&self, run_id: &RunId, events: &[RunEvent]) {
        if events.is_empty() || !self.lock().contains_key(run_id) {
            return;
        }
        // Encoded outside the lock: subscribers and other runs' publishers don't wait on it.
        let batches: Vec<_> = EncodedBatch::encode_all(events).map(Arc::new).collect();
        let mut channels = self.lock();
        let Some(channel) = channels.get(run_id) else {
            return;
        };
        for batch in batches {
            channel.followed.frames.insert_published(&batch);
            // An error only means nobody listens right now.
            let _ = channel.sender.send(LiveMessage::Events(batch));
        }
        let finished = events.last().is_some_and(|e| e.kind.is_terminal());
        if finished || channel.sender.receiver_count() == 0 {
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
