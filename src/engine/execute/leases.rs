//! The chunk leases one execution of a run holds: the heartbeat that renews them, and
//! how losing one stops that chunk's work.
//!
//! Only chunks with work in progress are renewed, and only on the run they belong to: a
//! chunk whose lease this instance lost (it was taken over after the lease ran out) has
//! its cases abandoned at once, and the store discards anything of it committed late.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::model::RunId;
use crate::store::Store;

/// Chunks of one run this instance works on, each with a token that is cancelled when
/// its lease is lost.
#[derive(Default)]
pub(crate) struct LeaseSet {
    chunks: Mutex<HashMap<u64, CancellationToken>>,
}

impl LeaseSet {
    fn chunks(&self) -> std::sync::MutexGuard<'_, HashMap<u64, CancellationToken>> {
        self.chunks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A chunk was claimed: its work stops when `lost` is cancelled.
    pub(super) fn hold(&self, chunk: u64, lost: CancellationToken) {
        self.chunks().insert(chunk, lost);
    }

    /// A chunk is done (its last case is recorded): nothing to renew any more.
    pub(super) fn done(&self, chunk: u64) {
        self.chunks().remove(&chunk);
    }

    fn held(&self) -> Vec<u64> {
        let mut chunks: Vec<u64> = self.chunks().keys().copied().collect();
        chunks.sort_unstable();
        chunks
    }

    /// Of `asked`, those not in `still_held` were lost: stop their work.
    fn lose_missing(&self, asked: &[u64], still_held: &[u64]) -> Vec<u64> {
        let mut chunks = self.chunks();
        let mut lost = Vec::new();
        for chunk in asked {
            if still_held.binary_search(chunk).is_err()
                && let Some(token) = chunks.remove(chunk)
            {
                token.cancel();
                lost.push(*chunk);
            }
        }
        lost
    }
}

/// A task aborted when this handle is dropped: a heartbeat cannot outlive its execution,
/// whichever way (return, error, panic) the execution ends.
pub(crate) struct AbortOnDrop(JoinHandle<()>);

impl AbortOnDrop {
    pub(crate) fn new(task: JoinHandle<()>) -> Self {
        AbortOnDrop(task)
    }

    /// Aborts the task and waits until it is gone (with what it holds, the store).
    pub(crate) async fn stop(mut self) {
        self.0.abort();
        // Not the handle itself: `Drop` owns it. Awaiting a finished task is immediate.
        let handle = &mut self.0;
        let _ = handle.await;
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Renews the leases of `leases` every third of `lease` until the returned guard drops.
pub(crate) fn heartbeat(
    store: Arc<dyn Store>,
    run_id: RunId,
    owner: String,
    lease: Duration,
    leases: Arc<LeaseSet>,
) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        let mut tick = tokio::time::interval(lease / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // Chunks claimed after this snapshot are renewed on the next tick; their
            // claim gave them a full lease.
            let asked = leases.held();
            if asked.is_empty() {
                continue;
            }
            match store.renew_leases(&run_id, &owner, &asked, lease).await {
                Ok(still_held) => {
                    let lost = leases.lose_missing(&asked, &still_held);
                    if !lost.is_empty() {
                        tracing::warn!(run_id = %run_id, chunks = ?lost, "lost the lease of chunks; their work stops here");
                    }
                }
                // A store outage: the lease outlives a few missed renewals, and a
                // chunk nobody took over meanwhile is still ours afterwards.
                Err(e) => {
                    tracing::warn!(run_id = %run_id, error = %e, "renewing chunk leases failed")
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_asked_chunks_missing_from_the_answer_are_lost() {
        let leases = LeaseSet::default();
        let (a, b, c) = (
            CancellationToken::new(),
            CancellationToken::new(),
            CancellationToken::new(),
        );
        leases.hold(1, a.clone());
        leases.hold(2, b.clone());
        leases.hold(3, c.clone());
        // Chunk 3 was claimed after the heartbeat asked: it is not lost.
        let lost = leases.lose_missing(&[1, 2], &[2]);
        assert_eq!(lost, vec![1]);
        assert!(a.is_cancelled());
        assert!(!b.is_cancelled() && !c.is_cancelled());
        assert_eq!(leases.held(), vec![2, 3]);
        leases.done(2);
        assert_eq!(leases.held(), vec![3]);
    }

    #[tokio::test]
    async fn the_heartbeat_stops_when_its_guard_drops() {
        let stopped = Arc::new(tokio::sync::Notify::new());
        struct Flag(Arc<tokio::sync::Notify>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.notify_one();
            }
        }
        let flag = Flag(stopped.clone());
        let guard = AbortOnDrop(tokio::spawn(async move {
            let _flag = flag;
            std::future::pending::<()>().await;
        }));
        drop(guard);
        tokio::time::timeout(Duration::from_secs(5), stopped.notified())
            .await
            .expect("the task was aborted");
    }
}
