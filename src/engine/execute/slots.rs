//! A run's `concurrency` as slots: on a store one process serves, all of them are this
//! execution's; on a store several instances share, each instance leases its share of
//! the run's slots from the store ([`Store::lease_share`]) and the keeper renews it,
//! asking for more while cases wait and giving back what it cannot use, so the cases in
//! flight across all instances never exceed the run's `concurrency`.

use std::sync::{Arc, Mutex, PoisonError};
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
    state: Mutex<State>,
    /// The limit changed: the case loop looks again.
    changed: Notify,
    /// The case loop's needs changed: the keeper asks again.
    needs: Notify,
}

/// Read and written together: the keeper never lowers the limit below what the case
/// loop may fill on a limit it read before (its report and its read are one step).
struct State {
    limit: usize,
    running: usize,
    /// Cases may still come (the claimer has not run out of chunks).
    hungry: bool,
}

impl Slots {
    /// All of `concurrency`, for good.
    pub(crate) fn fixed(concurrency: usize) -> Arc<Self> {
        Arc::new(Slots::with_limit(concurrency))
    }

    fn with_limit(limit: usize) -> Self {
        Slots {
            state: Mutex::new(State {
                limit,
                running: 0,
                hungry: true,
            }),
            changed: Notify::new(),
            needs: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_limit(&self, limit: usize) {
        let old = std::mem::replace(&mut self.state().limit, limit);
        if old != limit {
            // One waiter (the case loop): a permit is kept if it is not waiting yet.
            self.changed.notify_one();
        }
    }

    /// The case loop reports what it runs and whether more may come, and learns how
    /// many it may run.
    pub(crate) fn note(&self, running: usize, hungry: bool) -> usize {
        let mut state = self.state();
        state.running = running;
        let was = std::mem::replace(&mut state.hungry, hungry);
        let limit = state.limit;
        drop(state);
        // Out of work and well under its share: what it holds could serve others.
        if was != hungry || (!hungry && running < limit / 2) {
            self.needs.notify_one();
        }
        limit
    }

    /// What to ask the store for: `(want, in_use)`. Out of work, the limit comes down to
    /// what runs (no case starts any more); otherwise the case loop may fill the limit
    /// in force until the answer arrives, so all of it counts as in use.
    fn needs(&self, concurrency: usize) -> (usize, usize) {
        let mut state = self.state();
        if !state.hungry {
            state.limit = state.limit.min(state.running);
            (state.running, state.running)
        } else {
            (concurrency, state.running.max(state.limit))
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
            // The grant in force was asked for then: by the store's clock it lasts at
            // least `lease` from a moment after this one.
            let mut asked_at = Instant::now();
            loop {
                let (want, in_use) = slots.needs(concurrency);
                let request = ShareRequest {
                    pool: &pool,
                    holder: &holder,
                    capacity: concurrency as u64,
                    want: want as u64,
                    in_use: in_use as u64,
                    lease,
                };
                let sent_at = Instant::now();
                let call = store.lease_share(&request);
                tokio::pin!(call);
                // A renewal this late (a store overloaded or out of reach): the grant may
                // run out before it comes and go to others, so no case starts until it
                // does. Cases in flight go on: the fence is on starting them.
                let answer = tokio::select! {
                    answer = &mut call => answer,
                    () = tokio::time::sleep_until(asked_at + lease * 2 / 3) => {
                        slots.set_limit(0);
                        tracing::warn!(pool, "the run's share of its concurrency is not renewed in time; starting no case until it is");
                        call.await
                    }
                };
                let wait = match answer {
                    Ok(grant) => {
                        asked_at = sent_at;
                        if grant.held < in_use as u64 {
                            tracing::warn!(
                                pool,
                                held = grant.held,
                                in_use,
                                "the run's share ran out before it was renewed: others may have taken slots this instance still fills"
                            );
                        }
                        slots.set_limit(grant.usable() as usize);
                        if grant.held != grant.target {
                            REBALANCE
                        } else {
                            renew
                        }
                    }
                    Err(e) => {
                        if asked_at.elapsed() >= lease * 2 / 3 {
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
