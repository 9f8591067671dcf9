//! The case loop of an execution: passes that claim and run chunks until none is left,
//! then waiting on chunks other instances hold, until every chunk is done or the run
//! stops.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::RunControl;
use super::cases::{CaseTasks, Shared};
use super::plan::Plan;
use super::recorder::{RecorderMsg, record_cases};
use super::stop::{Stop, stop_on_store_error};
use crate::engine::Engine;
use crate::engine::retry::retry;
use crate::model::Progress;

impl Engine {
    /// Claims and executes chunks until none is left, then waits for chunks other
    /// instances hold (taking over those whose lease expires) until every chunk is done.
    pub(super) async fn run_cases(
        &self,
        shared: &Shared<'_>,
        plan: &Arc<Plan>,
        control: &RunControl,
    ) -> (Stop, Option<Progress>) {
        let store = self.store().clone();
        let config = self.config().clone();
        let mut progress = None;
        loop {
            let (stop, last) = self.run_claimed_chunks(shared, plan, control).await;
            progress = last.or(progress);
            if shared.failures.tripped.is_cancelled() {
                return (Stop::Failed(shared.failures.reason()), progress);
            }
            if !matches!(stop, Stop::Finished) {
                return (stop, progress);
            }
            // Nothing left to claim: done, or others still hold chunks.
            let patience = config.store_patience;
            let status = match retry(patience, "reading chunk status", || {
                store.chunk_status(shared.run_id, &config.instance_id)
            })
            .await
            {
                Ok(status) => status,
                Err(e) => return (stop_on_store_error(e), progress),
            };
            if status.unfinished == 0 {
                return (Stop::Finished, progress);
            }
            match retry(patience, "reading the run", || {
                store.get_run_summary(shared.run_id)
            })
            .await
            {
                Ok(Some(run)) if run.status.is_terminal() => return (Stop::Interrupted, progress),
                Ok(Some(run)) if run.cancel_requested => return (Stop::Cancelled, progress),
                Ok(_) => {}
                Err(e) => return (stop_on_store_error(e), progress),
            }
            // Abandoned chunks can be claimed at once; otherwise wait for the leases
            // others hold (or a chunk of ours whose claim got lost in a store outage)
            // to end.
            if status.held_by_others > 0 || status.abandoned == 0 {
                tokio::select! {
                    () = control.interrupt.cancelled() => return (Stop::Interrupted, progress),
                    () = control.cancel.cancelled() => return (Stop::Cancelled, progress),
                    () = tokio::time::sleep(config.lease / 3) => {}
                }
            }
        }
    }

    /// One pass: claims chunks one after another and runs their pending cases with
    /// bounded concurrency; a recorder task persists them as they finish.
    async fn run_claimed_chunks(
        &self,
        shared: &Shared<'_>,
        plan: &Arc<Plan>,
        control: &RunControl,
    ) -> (Stop, Option<Progress>) {
        let store = self.store().clone();
        let config = self.config().clone();
        let cancel = &control.cancel;
        let (tx, rx) = mpsc::channel::<RecorderMsg>(config.max_batch * 2);
        let recorder = tokio::spawn(record_cases(
            self.clone(),
            shared.run_id.clone(),
            rx,
            shared.observers.clone(),
            cancel.clone(),
            shared.failures.clone(),
            shared.leases.clone(),
        ));
        let (items, claimer) = self.spawn_claimer(
            shared.run_id.clone(),
            plan.clone(),
            tx.clone(),
            claim_lookahead(shared.concurrency, config.max_batch),
            shared.leases.clone(),
        );
        let mut cases = CaseTasks::new(shared, plan, items, &tx);
        // Watch for cancel requests made elsewhere on a task of its own: awaiting the store
        // here would stall the case stream, which may hold the store's last connection.
        let watcher = tokio::spawn({
            let store = store.clone();
            let run_id = shared.run_id.clone();
            let cancel = cancel.clone();
            let interval = config.cancel_poll_interval;
            let live = self.inner.live.clone();
            async move {
                loop {
                    tokio::time::sleep(interval).await;
                    if let Ok(Some(run)) = store.get_run_summary(&run_id).await {
                        // What others changed shows in status reads within an interval.
                        live.update(&run);
                        if run.cancel_requested {
                            cancel.cancel();
                            return;
                        }
                    }
                }
            }
        });
        let stop = loop {
            tokio::select! {
                biased;
                () = control.interrupt.cancelled() => break Stop::Interrupted,
                () = cancel.cancelled() => break Stop::Cancelled,
                () = shared.failures.tripped.cancelled() => break Stop::Failed(shared.failures.reason()),
                next = cases.next() => match next {
                    None if shared.budget.is_some_and(|b| b.exhausted.is_cancelled()) => {
                        break Stop::Budget;
                    }
                    None => break Stop::Finished,
                    Some(Err(e)) => break stop_on_store_error(e),
                    // The chunk's lease was lost: its work belongs to another instance.
                    Some(Ok(None)) => {}
                    Some(Ok(Some(commit))) => {
                        if tx.send(RecorderMsg::Case(Box::new(commit))).await.is_err() {
                            break Stop::Failed("the recorder stopped".to_owned());
                        }
                    }
                },
            }
        };
        // Cases in flight are abandoned; finished ones are still queued for the
        // recorder, which drains the channel before it returns.
        watcher.abort();
        claimer.abort();
        cases.shutdown().await;
        // Both hold the store: once this pass returns nothing of it may (an aborted task
        // lives on until the runtime next gets to it; a SQLite store still held keeps
        // its file locked against the next open).
        let _ = watcher.await;
        let _ = claimer.await;
        drop(tx);
        match recorder.await {
            Ok(Ok(progress)) => (stop, progress),
            Ok(Err(e)) if e.is_transient() => (stop_on_store_error(e), None),
            Ok(Err(e)) => (
                Stop::Failed(format!("persisting results failed: {e}")),
                None,
            ),
            Err(e) => (Stop::Failed(format!("the recorder crashed: {e}")), None),
        }
    }
}

/// Cases claimed ahead of execution. A claim is a write: it waits for the writer's turn
/// behind the commit in progress, which at engine-only rates takes as long as executing
/// the batch it records. Claiming only the run's concurrency ahead let case slots run dry
/// behind every commit; a commit's worth more keeps them fed (issue 12: engine-only
/// 16.0–16.7k → 16.6–17.6k cases/s). Claimed chunks are leased and renewed, so another
/// instance sharing the run finds at most this many more cases taken.
fn claim_lookahead(concurrency: usize, max_batch: usize) -> usize {
    concurrency.saturating_add(max_batch)
}
