//! Responses that should outlive a crash of the case that received them (an agent's
//! turns before its answer), without a transaction each.
//!
//! They wait in one list shared by the cases of an execution and ride the next case
//! commit of any case (at a few hundred cases a second, within milliseconds). When no
//! commit comes within [`FLUSH_AFTER`] (one slow case, say), they are written on their
//! own. A crash loses at most the turns of that window, as it would lose any commit not
//! yet made; the case then re-runs and pays for those turns again.

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use serde_json::Value;

use crate::model::RunId;
use crate::store::{CacheWrite, Store};

/// How long a stored turn waits for a case commit before it is written on its own.
pub(super) const FLUSH_AFTER: Duration = Duration::from_millis(100);

/// The execution's responses waiting to be written.
pub(super) struct EagerCacheWrites {
    /// Held weakly: a pending flush never keeps the store open after its execution.
    store: Weak<dyn Store>,
    run_id: RunId,
    pending: Mutex<Vec<CacheWrite>>,
}

impl EagerCacheWrites {
    pub(super) fn new(store: &Arc<dyn Store>, run_id: RunId) -> Arc<Self> {
        Arc::new(EagerCacheWrites {
            store: Arc::downgrade(store),
            run_id,
            pending: Mutex::default(),
        })
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Vec<CacheWrite>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `response` under `key`; the first of a batch arms the fallback flush.
    pub(super) fn push(self: &Arc<Self>, key: &str, response: &str) {
        let first = {
            let mut pending = self.pending();
            pending.push(CacheWrite::Put {
                key: key.to_owned(),
                value: response.to_owned(),
            });
            pending.len() == 1
        };
        if first {
            let writes = Arc::downgrade(self);
            tokio::spawn(async move {
                tokio::time::sleep(FLUSH_AFTER).await;
                if let Some(writes) = writes.upgrade() {
                    writes.flush().await;
                }
            });
        }
    }

    /// Everything waiting, for a case commit to carry.
    pub(super) fn take(&self) -> Vec<CacheWrite> {
        std::mem::take(&mut *self.pending())
    }

    /// Writes what no case commit took in time, one entry at a time (the rare path).
    async fn flush(&self) {
        let writes = self.take();
        let Some(store) = self.store.upgrade() else {
            return;
        };
        for write in writes {
            let CacheWrite::Put { key, value } = write else {
                continue;
            };
            let written = match serde_json::from_str::<Value>(&value) {
                Ok(value) => store.cache_put(&key, &value, &self.run_id).await,
                Err(e) => {
                    tracing::warn!(error = %e, "not caching a provider response");
                    continue;
                }
            };
            if let Err(e) = written {
                tracing::warn!(error = %e, "response cache write failed; kept for a case commit");
                // Not re-armed: the next case commit of the run (its own case's, at the
                // latest) carries it.
                self.pending().push(CacheWrite::Put { key, value });
            }
        }
    }
}
