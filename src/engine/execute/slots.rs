//! A run's `concurrency` as slots: on a store one process serves, all of them are this
//! execution's; on a store several instances share, each instance leases its share of
//! the run's slots from the store ([`Store::lease_share`]) and the keeper renews it,
//! asking for more while cases wait and giving back what it cannot use, so the cases in
//! flight across all instances never exceed the run's `concurrency`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::leases::AbortOnDrop;
use crate::model::RunId;
use crate::store::{ShareRequest, Store};

/// How soon a holder asks again while its grant differs from its fair share (it waits
/// for slots, or holds more than its share): how fast slots move between instances.
const REBALANCE: Duration = Duration::from_millis(200);

/// The slots one execution may fill, and what it needs of them.
pub(crate) struct Slots {
    limit: AtomicUsize,
    running: AtomicUsize,
    /// Cases may still come (the claimer has not run out of chunks).
    hungry: AtomicBool,
    /// The limit changed: the case loop looks again.
    changed: Notify,
    /// The case loop's needs changed: the keeper asks again.
    needs: Notify,
}

impl Slots {
    /// All of `concurrency`, for good.
    pub(crate) fn fixed(concurrency: usize) -> Arc<Self> {
        Arc::new(Slots::with_limit(concurrency))
    }

    fn with_limit(limit: usize) -> Self {
        Slots {
            limit: AtomicUsize::new(limit),
            running: AtomicUsize::new(0),
            hungry: AtomicBool::new(true),
            changed: Notify::new(),
            needs: Notify::new(),
        }
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit.load(Ordering::Acquire)
    }

    fn set_limit(&self, limit: usize) {
        if self.limit.swap(limit, Ordering::AcqRel) != limit {
            // One waiter (the case loop): a permit is kept if it is not waiting yet.
            self.changed.notify_one();
        }
    }

    /// The case loop reports what it runs and whether more may come.
    pub(crate) fn note(&self, running: usize, hungry: bool) {
        self.running.store(running, Ordering::Release);
        let was = self.hungry.swap(hungry, Ordering::AcqRel);
        // Out of work and well under its share: what it holds could serve others.
        if was != hungry || (!hungry && running < self.limit() / 2) {
            self.needs.notify_one();
        }
    }

    /// Resolves when the limit changes (or changed since the last call).
    pub(crate) async fn changed(&self) {
        self.changed.notified().await;
    }
}

/// Leases this instance's share of a run's `concurrency` from a store several instances
/// share, until the guard drops (then the share is given back by the caller's
/// [`Store::release_share`], or runs out with the lease if the process died). The slots
/// start at zero: no case starts before the first grant.
pub(crate) fn keep_share(
    store: Arc<dyn Store>,
    run_id: &RunId,
    holder: String,
    concurrency: usize,
    lease: Duration,
) -> (Arc<Slots>, AbortOnDrop) {
    let slots = Arc::new(Slots::with_limit(0));
    let pool = share_pool(run_id);
    let keeper = tokio::spawn({
        let slots = slots.clone();
        async move {
            let renew = lease / 3;
            let mut granted_at = Instant::now();
            loop {
                let running = slots.running.load(Ordering::Acquire);
                let want = if slots.hungry.load(Ordering::Acquire) {
                    concurrency
                } else {
                    running
                };
                let request = ShareRequest {
                    pool: &pool,
                    holder: &holder,
                    capacity: concurrency as u64,
                    want: want as u64,
                    in_use: running as u64,
                    lease,
                };
                let wait = match store.lease_share(&request).await {
                    Ok(grant) => {
                        granted_at = Instant::now();
                        slots.set_limit(grant.usable() as usize);
                        if grant.held != grant.target {
                            REBALANCE
                        } else {
                            renew
                        }
                    }
                    Err(e) => {
                        // The grant may have run out meanwhile and gone to others: start
                        // nothing new until the store answers again.
                        if granted_at.elapsed() >= renew * 2 {
                            slots.set_limit(0);
                        }
                        tracing::warn!(error = %e, "renewing the run's share of its concurrency failed");
                        REBALANCE
                    }
                };
                let asked = Instant::now();
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = slots.needs.notified() => {}
                }
                // At most one request per `REBALANCE`, however often the needs change.
                tokio::time::sleep_until(asked + REBALANCE).await;
            }
        }
    });
    (slots, AbortOnDrop::new(keeper))
}

/// The pool of a run's concurrency slots.
pub(crate) fn share_pool(run_id: &RunId) -> String {
    format!("run/{run_id}")
}
