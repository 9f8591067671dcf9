//! Executing a run: resume-aware, bounded concurrency, cancellable, shared with other
//! instances through chunk leases.
//!
//! One execution reads the run once and rebuilds its [`plan`] once; the lifecycle
//! (start, finish, the run span) lives here, the case loop in [`chunks`]. Around it,
//! tasks of their own: the [`claimer`] claims chunks ahead, the [`recorder`] persists
//! finished cases in batches, the [`leases`] heartbeat keeps claimed chunks ours. The
//! [`cases`] stream runs the pipeline per case; [`stop`] says why the loop ended.

mod budget;
mod cases;
mod chunks;
mod claimer;
mod eager_cache;
mod leases;
mod plan;
mod recorder;
mod slots;
mod source;
mod stop;

use std::sync::Arc;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use self::budget::BudgetGuard;
use self::cases::Shared;
use self::leases::{LeaseSet, heartbeat};
use self::slots::{Slots, keep_share, share_pool};
use self::stop::{FailureGuard, Stop};
use super::definition::RuntimeOptions;
use super::retry::retry;
use super::{Engine, EngineError};
use crate::model::{EventKind, NewEvent, Progress, RunId, RunRecord, RunStatus, Timestamp};
use crate::observe::{
    AttributeValue, ObservationRequest, Observers, Span, SpanStatus, TracingProvider,
};
use crate::store::{CommitBatch, CommitOutcome, StatusChange, StoreError};

/// How a caller can stop an execution.
#[derive(Debug, Clone, Default)]
pub struct RunControl {
    /// Stop and mark the run `cancelled` (finished cases are kept).
    pub cancel: CancellationToken,
    /// Stop without finishing the run: it stays `running` and resumes later.
    pub interrupt: CancellationToken,
}

impl Engine {
    /// Executes a run until it is completed, failed or cancelled, observed by
    /// `observers`. Cases are claimed in chunks under leases, so several instances can
    /// execute one run together and a run resumes after the cases already recorded.
    /// Returns the run as stored at the end.
    ///
    /// Every execution is counted in the store while it lasts: one that never ends (the
    /// process died in it) stays counted, and a run with `max_attempts` such executions
    /// is quarantined instead of executed again.
    pub async fn execute(
        &self,
        run_id: &RunId,
        observers: Observers,
        control: RunControl,
    ) -> Result<RunRecord, EngineError> {
        self.execute_with(run_id, Some(observers), control).await
    }

    /// [`Engine::execute`]; without `observers`, the run is observed as its runtime
    /// options ask, by the engine's instrumentation (what a resumed run gets).
    pub async fn execute_with(
        &self,
        run_id: &RunId,
        observers: Option<Observers>,
        control: RunControl,
    ) -> Result<RunRecord, EngineError> {
        let store = self.store();
        let patience = self.config().store_patience;
        // The one read of the run before its cases: everything below works from it.
        let record = retry(patience, "loading the run", || store.get_run(run_id))
            .await?
            .ok_or_else(|| EngineError::RunNotFound(run_id.clone()))?;
        if record.status.is_terminal() {
            return Ok(record);
        }
        // Stored by this service from the parsed request: it reads back.
        let mut runtime: RuntimeOptions =
            serde_json::from_value(record.runtime.clone()).unwrap_or_default();
        if let Some(tracing) = &mut runtime.tracing {
            for header in tracing.open(&self.config().sealer) {
                tracing::warn!(%run_id, header, "a tracing header sealed under another key is left out");
            }
        }
        let observers = observers.unwrap_or_else(|| {
            let request = ObservationRequest {
                tracing: runtime.tracing.as_ref(),
                subscribers: &runtime.subscribers,
                traceparent: runtime.traceparent.as_deref(),
            };
            self.instrumentation().observers(run_id, request)
        });
        let interrupted = retry(patience, "counting the execution", || {
            store.begin_attempt(run_id)
        })
        .await?;
        let result = self
            .execute_attempt(record, &runtime, interrupted, observers, control)
            .await;
        // Ended without taking the process down (finished, stopped for shutdown, or
        // failed): this execution does not count towards quarantine.
        if let Err(e) = retry(patience, "ending the execution", || {
            store.end_attempt(run_id)
        })
        .await
        {
            tracing::warn!(run_id = %run_id, error = %e, "could not record the end of an execution");
        }
        result
    }

    async fn execute_attempt(
        &self,
        mut record: RunRecord,
        runtime: &RuntimeOptions,
        interrupted: u64,
        observers: Observers,
        control: RunControl,
    ) -> Result<RunRecord, EngineError> {
        let run_id = &record.run_id.clone();
        let _executing = self.inner.live.executing(run_id);
        self.inner.live.update(&record);
        let cancel = &control.cancel;
        let store = self.store().clone();
        let config = self.config().clone();
        let patience = config.store_patience;
        if record.cancel_requested {
            cancel.cancel();
        }
        let tracer = observers.tracer.clone();
        // Shared with the case tasks, which all end before the span does.
        let run_span = Arc::new(tracer.start_span(
            "run",
            vec![
                ("run_id", run_id.as_str().into()),
                ("kind", record.kind.as_str().into()),
                ("total_cases", AttributeValue::from(record.progress.total)),
            ],
            None,
        ));

        let chunks = retry(patience, "reading chunk status", || {
            store.chunk_status(run_id, &config.instance_id)
        })
        .await?;
        // Executions that never ended while nobody else works on the run: each one took
        // its process down (or was killed) while running it.
        let quarantine = (interrupted >= config.max_attempts.max(1) && chunks.held_by_others == 0)
            .then(|| {
                format!(
                    "quarantined: execution was interrupted {interrupted} times (the process \
                     crashed or was killed while running it); it is not executed again"
                )
            });

        let concurrency = runtime
            .concurrency
            .unwrap_or(config.default_concurrency)
            .max(1);
        let limit =
            super::ConcurrencyLimit::of(&record.definition, concurrency, config.outbound_cap);
        let _limit_shown = limit
            .as_ref()
            .map(|limit| self.inner.limits.hold(run_id, limit.clone()));

        // Start the run, or join / resume it. The status check in the store decides
        // which instance writes `run_started`.
        let mut start = CommitBatch::new(run_id.clone());
        let resumed = record.status == RunStatus::Running;
        // Resuming work an instance left behind, while nobody else works on it; an
        // instance joining a run others execute stays quiet.
        let announce = !resumed || (chunks.abandoned > 0 && chunks.held_by_others == 0);
        let mut progress = record.progress;
        // What the run's row says now: a quarantined run may still be `queued`.
        let mut status_now = record.status;
        if announce && quarantine.is_none() {
            start.expect_status = Some(record.status);
            start.status = Some(StatusChange {
                status: RunStatus::Running,
                error: None,
                at: Timestamp::now(),
            });
            start.events.push(NewEvent::now(EventKind::RunStarted {
                total_cases: record.progress.total,
                resumed,
            }));
            if let Some(limit) = &limit {
                start.events.push(NewEvent::now(limit.event()));
            }
            match self.commit_and_publish(start, &observers).await {
                Ok(p) => {
                    progress = p;
                    status_now = RunStatus::Running;
                }
                Err(StoreError::RunFinished { .. }) => {
                    end_run_span(tracer.as_ref(), run_span, SpanStatus::Ok, None);
                    tracer.shutdown();
                    return self.current(run_id).await;
                }
                Err(e) => return Err(e.into()),
            }
        }

        // Keep the leases of chunks in progress alive while we work; the guard stops
        // the heartbeat however this function ends.
        let leases = Arc::new(LeaseSet::default());
        let heartbeat = heartbeat(
            store.clone(),
            run_id.clone(),
            config.instance_id.clone(),
            config.lease,
            leases.clone(),
        );

        // The run's concurrency: all of it here, or this instance's share of it when
        // other instances may execute the run too.
        let (slots, share) = if store.shared_by_instances() {
            let (slots, keeper) = keep_share(
                store.clone(),
                run_id,
                config.instance_id.clone(),
                concurrency,
                config.lease,
            );
            (slots, Some(keeper))
        } else {
            (Slots::fixed(concurrency), None)
        };

        let plan = match &quarantine {
            Some(reason) => Err(reason.clone()),
            // The plan's error is the run's failure message.
            None => self.plan(&record).await.map_err(|e| e.to_string()),
        };
        // The plan holds what it needs; the stored definition is not kept for the run.
        record.definition = Value::Null;
        if quarantine.is_some() {
            tracing::error!(run_id = %run_id, interrupted, "quarantining a run that keeps taking its process down");
        }
        let mut budget = None;
        let stop = match plan {
            Err(message) => Stop::Failed(message),
            Ok(plan) => {
                let cache = runtime.cache.unwrap_or(true).then(|| store.clone());
                let failures = FailureGuard {
                    policy: runtime.failure_policy,
                    ..FailureGuard::default()
                };
                budget = BudgetGuard::budget_of(runtime, config.max_run_budget_usd)
                    .map(|usd| Arc::new(BudgetGuard::new(usd, store.clone(), run_id.clone())));
                let shared = Shared {
                    run_id,
                    observers: &observers,
                    run_span: &run_span,
                    failures: &failures,
                    cache,
                    concurrency,
                    slots: &slots,
                    leases: &leases,
                    budget: budget.as_ref(),
                };
                let plan = Arc::new(plan);
                let (stop, last) = self.run_cases(&shared, &plan, &control).await;
                progress = last.unwrap_or(progress);
                stop
            }
        };
        heartbeat.stop().await;
        if let Some(share) = share {
            share.stop().await;
            // Its cases ended: the slots go back to the instances still working on the
            // run now, not when the lease runs out.
            let pool = share_pool(run_id);
            if let Err(e) = store.release_share(&pool, &config.instance_id).await {
                tracing::warn!(error = %e, "giving back the run's concurrency share failed");
            }
        }
        // Only this run's leases: other runs of this instance keep theirs.
        if matches!(
            stop,
            Stop::Interrupted | Stop::Cancelled | Stop::Failed(_) | Stop::Budget
        ) && let Err(e) = retry(patience, "releasing leases", || {
            store.release_leases(run_id, &config.instance_id)
        })
        .await
        {
            tracing::warn!(error = %e, "releasing chunk leases failed");
        }

        let mut finish = CommitBatch::new(run_id.clone());
        if let (Stop::Budget, Some(budget)) = (&stop, &budget) {
            // Cases other instances started under the budget are let finish too.
            self.await_reservations(run_id).await;
            finish.events.push(NewEvent::now(budget.event()));
        }
        let (status, kind, error) = match stop {
            Stop::Budget => {
                let message = budget
                    .as_ref()
                    .map_or_else(|| "budget exhausted".to_owned(), |budget| budget.reason());
                (
                    RunStatus::Failed,
                    EventKind::RunFailed {
                        error_message: message.clone(),
                        progress,
                    },
                    Some(message),
                )
            }
            Stop::Interrupted => {
                end_run_span(
                    tracer.as_ref(),
                    run_span,
                    SpanStatus::Error,
                    Some("interrupted by shutdown"),
                );
                tracer.shutdown();
                return self.current(run_id).await;
            }
            Stop::Finished => (
                RunStatus::Completed,
                EventKind::RunCompleted { progress },
                None,
            ),
            Stop::Cancelled => (
                RunStatus::Cancelled,
                EventKind::RunCancelled { progress },
                None,
            ),
            Stop::Failed(message) => (
                RunStatus::Failed,
                EventKind::RunFailed {
                    error_message: message.clone(),
                    progress,
                },
                Some(message),
            ),
        };
        finish.expect_status = Some(status_now);
        finish.events.push(NewEvent::now(kind));
        finish.status = Some(StatusChange {
            status,
            error: error.clone(),
            at: Timestamp::now(),
        });
        let span_status = if error.is_some() {
            SpanStatus::Error
        } else {
            SpanStatus::Ok
        };
        let finished = self.commit_and_publish(finish, &observers).await;
        end_run_span(tracer.as_ref(), run_span, span_status, error.as_deref());
        tracer.shutdown();
        match finished {
            Ok(_) | Err(StoreError::RunFinished { .. }) => self.current(run_id).await,
            Err(e) => Err(e.into()),
        }
    }

    /// Waits until no case of the run holds a reservation (every instance sharing it has
    /// recorded what it started), at most a lease: a reservation of an instance that
    /// died is never released, and its chunks' cases stay unrecorded.
    async fn await_reservations(&self, run_id: &RunId) {
        let deadline = tokio::time::Instant::now() + self.config().lease;
        while tokio::time::Instant::now() < deadline {
            match self.store().get_run_summary(run_id).await {
                Ok(Some(run)) if run.aggregates.spend.reserved_usd > 0.0 => {}
                _ => return,
            }
            tokio::time::sleep(self.config().lease / 10).await;
        }
    }

    async fn current(&self, run_id: &RunId) -> Result<RunRecord, EngineError> {
        let store = self.store();
        retry(self.config().store_patience, "loading the run", || {
            store.get_run(run_id)
        })
        .await?
        .ok_or_else(|| EngineError::RunNotFound(run_id.clone()))
    }

    /// Commits a batch, then hands its events to live listeners and subscribers.
    async fn commit_and_publish(
        &self,
        batch: CommitBatch,
        observers: &Observers,
    ) -> Result<Progress, StoreError> {
        let store = self.store();
        let outcome = retry(self.config().store_patience, "committing", || {
            store.commit(&batch)
        })
        .await?;
        publish(self, &batch, &outcome, observers);
        Ok(outcome.progress)
    }
}

/// Ends the run span; by then every case task (each held a share of it) has ended.
fn end_run_span(
    tracer: &dyn TracingProvider,
    span: Arc<Span>,
    status: SpanStatus,
    message: Option<&str>,
) {
    match Arc::try_unwrap(span) {
        Ok(span) => tracer.end_span(span, status, message),
        Err(_) => tracing::warn!("the run span is still shared at the end of the run: not ended"),
    }
}

/// Hands the events a commit of `batch` wrote to live listeners and lifecycle
/// subscribers, building their copies only when someone is there to read them.
fn publish(engine: &Engine, batch: &CommitBatch, outcome: &CommitOutcome, observers: &Observers) {
    engine.inner.live.update(&outcome.run);
    if observers.subscribers.is_empty() && !engine.hub().is_followed(&batch.run_id) {
        return;
    }
    let events = outcome.events(batch);
    engine.hub().publish(&batch.run_id, &events);
    for event in &events {
        observers.notify(|s| s.on_event(event));
    }
}
