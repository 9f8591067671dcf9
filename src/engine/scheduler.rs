//! The run queue: runs execute on tokio tasks, at most `max_running` at once; the rest
//! wait for a slot in submission order. Runs live in the store, so after a restart
//! [`Scheduler::resume_unfinished`] puts every queued or running run back in line.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use super::execute::RunControl;
use super::{Engine, EngineError};
use crate::model::RunId;
use crate::observe::Observers;
use crate::store::CancelOutcome;

pub struct Scheduler {
    engine: Engine,
    max_running: usize,
    slots: Arc<Semaphore>,
    active: Mutex<HashMap<RunId, RunControl>>,
    tasks: TaskTracker,
    shutdown: tokio_util::sync::CancellationToken,
}

impl Scheduler {
    pub fn new(engine: Engine, max_running: usize) -> Arc<Self> {
        Arc::new(Scheduler {
            engine,
            max_running: max_running.max(1),
            slots: Arc::new(Semaphore::new(max_running.max(1))),
            active: Mutex::new(HashMap::new()),
            tasks: TaskTracker::new(),
            shutdown: tokio_util::sync::CancellationToken::new(),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    fn active(&self) -> std::sync::MutexGuard<'_, HashMap<RunId, RunControl>> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a run for execution unless it is already queued or executing here.
    pub fn enqueue(self: &Arc<Self>, run_id: RunId, observers: Option<Observers>) {
        if self.shutdown.is_cancelled() {
            return;
        }
        let control = RunControl {
            cancel: Default::default(),
            interrupt: self.shutdown.child_token(),
        };
        {
            let mut active = self.active();
            if active.contains_key(&run_id) {
                return;
            }
            active.insert(run_id.clone(), control.clone());
        }
        let scheduler = Arc::clone(self);
        self.tasks.spawn(async move {
            let permit = tokio::select! {
                permit = scheduler.slots.clone().acquire_owned() => permit.ok(),
                () = control.interrupt.cancelled() => None,
            };
            if permit.is_some() {
                // Cases contain their own panics; this catches one anywhere else, so the
                // run leaves `active` and is retried (and counted, see `Engine::execute`)
                // instead of being stuck here.
                let execution = scheduler.engine.execute_with(&run_id, observers, control);
                match std::panic::AssertUnwindSafe(execution).catch_unwind().await {
                    Ok(Ok(record)) => {
                        if record.status.is_terminal() {
                            scheduler.engine.meter().run_finished(record.status);
                        }
                        tracing::info!(run_id = %run_id, status = record.status.as_str(), "run finished executing")
                    }
                    Ok(Err(e)) => tracing::error!(run_id = %run_id, error = %e, "run execution failed"),
                    Err(_) => tracing::error!(run_id = %run_id, "run execution panicked"),
                }
            }
            scheduler.active().remove(&run_id);
            drop(permit);
        });
    }

    /// Cancels a run: queued ones at once, executing ones promptly.
    pub async fn cancel(&self, run_id: &RunId) -> Result<CancelOutcome, EngineError> {
        let outcome = self.engine.request_cancel(run_id).await?;
        if let Some(control) = self.active().get(run_id) {
            control.cancel.cancel();
        }
        Ok(outcome)
    }

    /// Queues every run the store has as queued or running (after a restart or crash).
    pub async fn resume_unfinished(self: &Arc<Self>) -> Result<usize, EngineError> {
        let runs = self.engine.unfinished_runs().await?;
        let count = runs.len();
        for run_id in runs {
            self.enqueue(run_id, None);
        }
        Ok(count)
    }

    /// Number of runs queued or executing on this instance.
    pub fn active_count(&self) -> usize {
        self.active().len()
    }

    /// Runs executing here (holding an execution slot) and runs waiting for one.
    pub fn executing_and_queued(&self) -> (usize, usize) {
        let active = self.active_count();
        let executing = self.max_running - self.slots.available_permits();
        (executing, active.saturating_sub(executing))
    }

    /// Cancelled when the service starts shutting down: runs stop, and long-lived
    /// responses (event streams) end, so shutdown never waits on a client.
    pub fn stopping(&self) -> tokio_util::sync::CancellationToken {
        self.shutdown.clone()
    }

    /// Stops executing: runs in flight persist what finished and stay `running` in the
    /// store, to resume on the next start. Waits for their tasks to end.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}
