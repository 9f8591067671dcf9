//! Executing a run: resume-aware, bounded concurrency, cancellable, with a recorder task
//! that persists finished cases in batches and publishes their events.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures::{FutureExt, Stream, StreamExt};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::definition::{
    Dataset, Evaluators, Experiment, FailurePolicy, Pipeline, RuntimeOptions, parse_evaluation,
    parse_experiment,
};
use super::leases::{LeaseSet, heartbeat};
use super::observe::Observers;
use super::pipeline::{CaseInput, panic_message, panicked_case, rejudge_case, run_case};
use super::retry::retry;
use super::{Engine, EngineError, generation_source};
use crate::components::{CallNote, CallObserver, ResponseCache};
use crate::model::{
    Case, CaseKey, CaseRecord, EventKind, NewEvent, Progress, RunEvent, RunId, RunKind, RunRecord,
    RunStatus, Stage, Timestamp,
};
use crate::store::{CaseCommit, CaseQuery, Chunk, CommitBatch, StatusChange, Store, StoreError};
use crate::telemetry::{AttributeValue, Span, SpanStatus};

/// What a run executes, rebuilt from its stored definition.
enum Plan {
    Experiment {
        experiment: Box<Experiment>,
        pipeline: Pipeline,
        /// (dataset, case) positions of every case in enumeration order.
        positions: Vec<(usize, usize)>,
    },
    Rejudge {
        source: RunId,
        cases: Vec<Case>,
        seeds: usize,
        evaluators: Evaluators,
    },
}

/// What every case of one execution shares.
struct Shared<'a> {
    run_id: &'a RunId,
    observers: &'a Observers,
    run_span: &'a Span,
    failures: &'a FailureGuard,
    cache: Option<&'a dyn ResponseCache>,
    concurrency: usize,
    /// The chunks this execution holds, renewed by its heartbeat.
    leases: &'a Arc<LeaseSet>,
}

/// Trips when the run's failure policy is exceeded (checked on every commit). Exactly
/// `max_ratio` does not trip it; the commit that exceeds it is the run's last.
#[derive(Clone, Default)]
struct FailureGuard {
    policy: Option<FailurePolicy>,
    tripped: CancellationToken,
    reason: Arc<std::sync::OnceLock<String>>,
}

impl FailureGuard {
    fn check(&self, progress: &Progress) {
        let Some(policy) = self.policy else { return };
        let finished = progress.finished();
        if finished >= policy.min_cases
            && progress.failed as f64 > policy.max_ratio * finished as f64
        {
            let _ = self.reason.set(format!(
                "stopped: {} of {finished} finished cases failed, more than the failure policy's max_ratio {}",
                progress.failed, policy.max_ratio
            ));
            self.tripped.cancel();
        }
    }

    fn reason(&self) -> String {
        self.reason
            .get()
            .cloned()
            .unwrap_or_else(|| "failure policy exceeded".to_owned())
    }
}

/// Why the case loop ended.
enum Stop {
    Finished,
    Cancelled,
    /// The service is shutting down: the run stays `running` and resumes on next start.
    Interrupted,
    Failed(String),
}

/// How an execution stops on a store error it could not ride out: a transient one (the
/// store stayed unreachable for the whole retry patience) leaves the run `running`, to
/// resume once the store is back; any other fails the run.
fn stop_on_store_error(error: StoreError) -> Stop {
    if error.is_transient() {
        tracing::error!(%error, "the store stayed unavailable; the run stops here and resumes later");
        Stop::Interrupted
    } else {
        Stop::Failed(error.to_string())
    }
}

/// How a caller can stop an execution.
#[derive(Debug, Clone, Default)]
pub struct RunControl {
    /// Stop and mark the run `cancelled` (finished cases are kept).
    pub cancel: CancellationToken,
    /// Stop without finishing the run: it stays `running` and resumes later.
    pub interrupt: CancellationToken,
}

/// What the recorder persists: finished cases, loose events (provider notes), and
/// which chunk each case completes.
enum RecorderMsg {
    /// A chunk was claimed; `pending` cases will complete it.
    ChunkClaimed {
        chunk_index: u64,
        pending: usize,
    },
    Case(ChunkCommit),
    Event(NewEvent),
}

/// A finished case and the chunk it belongs to.
struct ChunkCommit {
    chunk_index: u64,
    commit: CaseCommit,
}

/// Turns a case's provider notes into run events. Notes are best effort: when the
/// recorder is saturated they are dropped rather than slowing the case.
struct CaseNotes {
    key: CaseKey,
    tx: mpsc::Sender<RecorderMsg>,
}

impl CallObserver for CaseNotes {
    fn note(&self, note: CallNote) {
        let case = self.key.clone();
        let kind = match note {
            CallNote::Retry {
                provider,
                attempt,
                delay_ms,
                reason,
            } => EventKind::ProviderRetry {
                case,
                provider,
                attempt,
                delay_ms,
                reason,
            },
            CallNote::RateLimited { provider, wait_ms } => EventKind::ProviderRateLimited {
                case,
                provider,
                wait_ms,
            },
        };
        let _ = self.tx.try_send(RecorderMsg::Event(NewEvent::now(kind)));
    }
}

/// The response cache backed by the run's store; a cache failure is a miss, never an error.
struct StoreCache(Arc<dyn Store>);

#[async_trait::async_trait]
impl ResponseCache for StoreCache {
    async fn get(&self, key: &str) -> Option<Value> {
        match self.0.cache_get(key).await {
            Ok(value) => value,
            Err(e) => {
                tracing::warn!(error = %e, "response cache read failed");
                None
            }
        }
    }

    async fn put(&self, key: &str, value: &Value) {
        if let Err(e) = self.0.cache_put(key, value).await {
            tracing::warn!(error = %e, "response cache write failed");
        }
    }
}

/// Finished cases; `None` for a case abandoned because its chunk's lease was lost.
type CaseStream<'a> =
    Pin<Box<dyn Stream<Item = Result<Option<ChunkCommit>, StoreError>> + Send + 'a>>;

impl Engine {
    fn plan(&self, record: &RunRecord) -> Result<Plan, String> {
        let describe = |errors: Vec<super::FieldError>| {
            errors
                .iter()
                .map(|e| format!("{}: {}", e.path, e.message))
                .collect::<Vec<_>>()
                .join("; ")
        };
        match record.kind {
            RunKind::Experiment => {
                let request = parse_experiment(&record.definition, self.registry())
                    .map_err(|e| format!("stored definition no longer valid: {}", describe(e)))?;
                let positions = request
                    .experiment
                    .datasets
                    .iter()
                    .enumerate()
                    .flat_map(|(d, dataset)| (0..dataset.cases.len()).map(move |c| (d, c)))
                    .collect();
                Ok(Plan::Experiment {
                    experiment: Box::new(request.experiment),
                    pipeline: request.pipeline,
                    positions,
                })
            }
            RunKind::Rejudge => {
                let source = generation_source(record).ok_or("rejudge without a source run")?;
                let evaluation = record
                    .definition
                    .get("evaluation")
                    .cloned()
                    .unwrap_or(Value::Null);
                let (_, evaluators, _) = parse_evaluation(&evaluation, self.registry())
                    .map_err(|e| format!("stored evaluation no longer valid: {}", describe(e)))?;
                Ok(Plan::Rejudge {
                    source,
                    cases: Vec::new(),
                    seeds: 0,
                    evaluators,
                })
            }
        }
    }

    /// Loads the cases of a rejudge's source experiment, in enumeration order.
    async fn load_source_cases(&self, plan: &mut Plan) -> Result<(), String> {
        let Plan::Rejudge {
            source,
            cases,
            seeds,
            ..
        } = plan
        else {
            return Ok(());
        };
        let store = self.store();
        let record = retry(
            self.config().store_patience,
            "loading the source run",
            || store.get_run(source),
        )
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("source run {source} not found"))?;
        let datasets: Vec<Dataset> = record
            .definition
            .get("datasets")
            .cloned()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| format!("source definition unreadable: {e}"))?
            .unwrap_or_default();
        *seeds = record
            .definition
            .get("seeds")
            .and_then(Value::as_array)
            .map_or(1, Vec::len);
        *cases = datasets.into_iter().flat_map(|d| d.cases).collect();
        Ok(())
    }

    /// Executes a run until it is completed, failed or cancelled. Cases are claimed in
    /// chunks under leases, so several instances can execute one run together and a
    /// run resumes after the cases already recorded. Returns the run as stored at the end.
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
        let store = self.store();
        let patience = self.config().store_patience;
        let record = retry(patience, "loading the run", || store.get_run(run_id))
            .await?
            .ok_or_else(|| EngineError::RunNotFound(run_id.clone()))?;
        if record.status.is_terminal() {
            return Ok(record);
        }
        let interrupted = retry(patience, "counting the execution", || {
            store.begin_attempt(run_id)
        })
        .await?;
        let result = self
            .execute_attempt(record, interrupted, observers, control)
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
        interrupted: u64,
        observers: Observers,
        control: RunControl,
    ) -> Result<RunRecord, EngineError> {
        let run_id = &record.run_id.clone();
        let cancel = &control.cancel;
        let store = self.store().clone();
        let config = self.config().clone();
        let patience = config.store_patience;
        if record.cancel_requested {
            cancel.cancel();
        }
        let tracer = observers.tracer.clone();
        let run_span = tracer.start_span(
            "run",
            vec![
                ("run_id", run_id.as_str().into()),
                ("kind", record.kind.as_str().into()),
                ("total_cases", AttributeValue::from(record.progress.total)),
            ],
            None,
        );

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
            match self.commit_and_publish(start, &observers).await {
                Ok(p) => {
                    progress = p;
                    status_now = RunStatus::Running;
                }
                Err(StoreError::RunFinished { .. }) => {
                    tracer.end_span(run_span, SpanStatus::Ok, None);
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

        let plan = self.plan(&record);
        // The plan holds what it needs; the stored definition (as large as the datasets)
        // is not kept for the whole run.
        record.definition = Value::Null;
        let stop = match (quarantine, plan) {
            (Some(reason), _) => {
                tracing::error!(run_id = %run_id, interrupted, "quarantining a run that keeps taking its process down");
                Stop::Failed(reason)
            }
            (None, Err(message)) => Stop::Failed(message),
            (None, Ok(mut plan)) => match self.load_source_cases(&mut plan).await {
                Err(message) => Stop::Failed(message),
                Ok(()) => {
                    let runtime: RuntimeOptions =
                        serde_json::from_value(record.runtime.clone()).unwrap_or_default();
                    let concurrency = runtime
                        .concurrency
                        .unwrap_or(config.default_concurrency)
                        .max(1);
                    let cache = runtime
                        .cache
                        .unwrap_or(true)
                        .then(|| StoreCache(store.clone()));
                    let failures = FailureGuard {
                        policy: runtime.failure_policy,
                        ..FailureGuard::default()
                    };
                    let shared = Shared {
                        run_id,
                        observers: &observers,
                        run_span: &run_span,
                        failures: &failures,
                        cache: cache.as_ref().map(|c| c as &dyn ResponseCache),
                        concurrency,
                        leases: &leases,
                    };
                    let plan = Arc::new(plan);
                    let (stop, last) = self.run_cases(&shared, &plan, &control).await;
                    progress = last.unwrap_or(progress);
                    stop
                }
            },
        };
        drop(heartbeat);
        // Only this run's leases: other runs of this instance keep theirs.
        if matches!(stop, Stop::Interrupted | Stop::Cancelled | Stop::Failed(_))
            && let Err(e) = retry(patience, "releasing leases", || {
                store.release_leases(run_id, &config.instance_id)
            })
            .await
        {
            tracing::warn!(error = %e, "releasing chunk leases failed");
        }

        let (status, kind, error) = match stop {
            Stop::Interrupted => {
                tracer.end_span(run_span, SpanStatus::Error, Some("interrupted by shutdown"));
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
        let mut finish = CommitBatch::new(run_id.clone());
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
        tracer.end_span(run_span, span_status, error.as_deref());
        tracer.shutdown();
        match finished {
            Ok(_) | Err(StoreError::RunFinished { .. }) => self.current(run_id).await,
            Err(e) => Err(e.into()),
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
        publish(self, &batch.run_id, &outcome.events, observers);
        Ok(outcome.progress)
    }

    /// Claims and executes chunks until none is left, then waits for chunks other
    /// instances hold (taking over those whose lease expires) until every chunk is done.
    async fn run_cases(
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
            shared.concurrency,
            shared.leases.clone(),
        );
        let mut cases = self.case_stream(shared, plan, items, &tx);
        // Watch for cancel requests made elsewhere on a task of its own: awaiting the store
        // here would stall the case stream, which may hold the store's last connection.
        let watcher = tokio::spawn({
            let store = store.clone();
            let run_id = shared.run_id.clone();
            let cancel = cancel.clone();
            let interval = config.cancel_poll_interval;
            async move {
                loop {
                    tokio::time::sleep(interval).await;
                    if let Ok(Some(run)) = store.get_run_summary(&run_id).await
                        && run.cancel_requested
                    {
                        cancel.cancel();
                        return;
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
                    None => break Stop::Finished,
                    Some(Err(e)) => break stop_on_store_error(e),
                    // The chunk's lease was lost: its work belongs to another instance.
                    Some(Ok(None)) => {}
                    Some(Ok(Some(commit))) => {
                        if tx.send(RecorderMsg::Case(commit)).await.is_err() {
                            break Stop::Failed("the recorder stopped".to_owned());
                        }
                    }
                },
            }
        };
        // Dropping the stream abandons cases in flight; finished ones are still queued
        // for the recorder, which drains the channel before it returns.
        watcher.abort();
        claimer.abort();
        drop(cases);
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

    /// The pending work of the next chunk this instance can claim, or `None` when no
    /// chunk is claimable. Tells the recorder how many cases complete the chunk.
    async fn claim_work(
        &self,
        run_id: &RunId,
        plan: &Plan,
        tx: &mpsc::Sender<RecorderMsg>,
        leases: &LeaseSet,
    ) -> Option<Result<Vec<WorkItem>, StoreError>> {
        let store = self.store();
        let config = self.config();
        // A claim whose answer is lost in an outage leaves a chunk leased to us that we
        // never work on: the heartbeat does not renew it, so it frees itself in time.
        let claim = retry(config.store_patience, "claiming work", || async {
            let Some(chunk) = store
                .claim_chunk(run_id, &config.instance_id, config.lease)
                .await?
            else {
                return Ok(None);
            };
            let recorded: HashSet<u64> = store
                .recorded_case_indices(run_id, chunk.start..chunk.end)
                .await?
                .into_iter()
                .collect();
            let lost = CancellationToken::new();
            let items = plan
                .work_in(store.as_ref(), &chunk, &recorded, &lost)
                .await?;
            Ok(Some((chunk.chunk_index, items, lost)))
        });
        match claim.await {
            Ok(None) => None,
            Err(e) => Some(Err(e)),
            Ok(Some((chunk_index, items, lost))) => {
                // Renewed from now on; a chunk claimed by an attempt that failed later
                // is not, so its lease runs out and it is claimed again.
                leases.hold(chunk_index, lost);
                let claimed = RecorderMsg::ChunkClaimed {
                    chunk_index,
                    pending: items.len(),
                };
                if tx.send(claimed).await.is_err() {
                    return None;
                }
                Some(Ok(items))
            }
        }
    }

    /// Claims chunks ahead of execution on a task of its own, so a claim (a write that
    /// may wait behind a commit) never leaves execution slots idle. Items arrive on the
    /// returned channel; it closes when no chunk is left to claim.
    fn spawn_claimer(
        &self,
        run_id: RunId,
        plan: Arc<Plan>,
        recorder: mpsc::Sender<RecorderMsg>,
        lookahead: usize,
        leases: Arc<LeaseSet>,
    ) -> (
        mpsc::Receiver<Result<WorkItem, StoreError>>,
        tokio::task::JoinHandle<()>,
    ) {
        let (items, received) = mpsc::channel(lookahead.max(1));
        let engine = self.clone();
        let handle = tokio::spawn(async move {
            loop {
                match engine.claim_work(&run_id, &plan, &recorder, &leases).await {
                    None => return,
                    Some(Err(e)) => {
                        let _ = items.send(Err(e)).await;
                        return;
                    }
                    Some(Ok(claimed)) => {
                        for item in claimed {
                            if items.send(Ok(item)).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        });
        (received, handle)
    }

    fn case_stream<'a>(
        &'a self,
        shared: &'a Shared<'a>,
        plan: &'a Plan,
        items: mpsc::Receiver<Result<WorkItem, StoreError>>,
        tx: &'a mpsc::Sender<RecorderMsg>,
    ) -> CaseStream<'a> {
        futures::stream::unfold(items, |mut items| async move {
            items.recv().await.map(|item| (item, items))
        })
        .map(move |item| async move {
            let item = item?;
            let case = plan.case(item.position).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "case index {} is out of range",
                    item.key.case_index
                ))
            })?;
            let notes = CaseNotes {
                key: item.key.clone(),
                tx: tx.clone(),
            };
            let input = CaseInput {
                run_id: shared.run_id,
                key: item.key,
                case,
                observers: shared.observers,
                run_span: shared.run_span,
                cache: shared.cache,
                notes: &notes,
            };
            let (evaluators, first_stage) = match plan {
                Plan::Experiment { pipeline, .. } => (&pipeline.evaluators, Stage::Generation),
                Plan::Rejudge { evaluators, .. } => (evaluators, Stage::Parsing),
            };
            let work = async {
                match (&item.source, plan) {
                    (Some(source), Plan::Rejudge { evaluators, .. }) => {
                        Ok(rejudge_case(&input, source, evaluators).await)
                    }
                    (
                        _,
                        Plan::Experiment {
                            experiment,
                            pipeline,
                            ..
                        },
                    ) => {
                        let generation = &experiment.generation;
                        Ok(run_case(
                            &input,
                            pipeline,
                            &generation.generator.id,
                            &generation.reducer.id,
                            generation.candidate_policy.num_samples,
                        )
                        .await)
                    }
                    (None, Plan::Rejudge { .. }) => Err(StoreError::Corrupt(
                        "rejudge item without its source record".into(),
                    )),
                }
            };
            // The pipeline contains panics of components per stage; this catches any
            // other, so one case can never take the run (or the process) down.
            let commit = tokio::select! {
                biased;
                () = item.lost.cancelled() => return Ok(None),
                outcome = std::panic::AssertUnwindSafe(work).catch_unwind() => match outcome {
                    Ok(commit) => commit?,
                    Err(payload) => panicked_case(
                        &input,
                        evaluators,
                        first_stage,
                        panic_message(payload.as_ref()),
                    ),
                },
            };
            Ok(Some(ChunkCommit {
                chunk_index: item.chunk_index,
                commit,
            }))
        })
        .buffer_unordered(shared.concurrency)
        .boxed()
    }
}

/// One case to execute, from a claimed chunk.
struct WorkItem {
    chunk_index: u64,
    key: CaseKey,
    /// Where the case sits in the plan (see [`Plan::case`]).
    position: usize,
    /// For a rejudge: the source run's record of the case.
    source: Option<CaseRecord>,
    /// Cancelled when this instance loses the chunk's lease.
    lost: CancellationToken,
}

impl Plan {
    /// The case at a work item's position.
    fn case(&self, position: usize) -> Option<&Case> {
        match self {
            Plan::Experiment {
                experiment,
                positions,
                ..
            } => {
                let &(d, c) = positions.get(position)?;
                experiment.datasets.get(d)?.cases.get(c)
            }
            Plan::Rejudge { cases, .. } => cases.get(position),
        }
    }

    /// The cases of `chunk` not recorded yet.
    async fn work_in(
        &self,
        store: &dyn Store,
        chunk: &Chunk,
        recorded: &HashSet<u64>,
        lost: &CancellationToken,
    ) -> Result<Vec<WorkItem>, StoreError> {
        match self {
            Plan::Experiment {
                experiment,
                positions,
                ..
            } => {
                let seeds = experiment.seeds.len() as u64;
                let mut items = Vec::new();
                for index in (chunk.start..chunk.end).filter(|i| !recorded.contains(i)) {
                    let position = (index / seeds) as usize;
                    let &(d, c) = positions.get(position).ok_or_else(|| {
                        StoreError::Corrupt(format!("case index {index} is out of range"))
                    })?;
                    let dataset = &experiment.datasets[d];
                    items.push(WorkItem {
                        chunk_index: chunk.chunk_index,
                        key: CaseKey {
                            case_index: index,
                            dataset_id: dataset.dataset_id.clone(),
                            case_id: dataset.cases[c].case_id.clone(),
                            seed: experiment.seeds[(index % seeds) as usize],
                        },
                        position,
                        source: None,
                        lost: lost.clone(),
                    });
                }
                Ok(items)
            }
            Plan::Rejudge {
                source,
                cases,
                seeds,
                ..
            } => {
                let query = CaseQuery {
                    after_index: chunk.start.checked_sub(1),
                    limit: (chunk.end - chunk.start) as u32,
                    ..CaseQuery::default()
                };
                let records = store.case_records(source, &query).await?;
                let mut items = Vec::new();
                for record in records.into_iter().filter(|r| {
                    r.key.case_index < chunk.end && !recorded.contains(&r.key.case_index)
                }) {
                    let position = (record.key.case_index / (*seeds).max(1) as u64) as usize;
                    if position >= cases.len() {
                        return Err(StoreError::Corrupt(format!(
                            "source case {} is not in its definition",
                            record.key.case_index
                        )));
                    }
                    items.push(WorkItem {
                        chunk_index: chunk.chunk_index,
                        key: record.key.clone(),
                        position,
                        source: Some(record),
                        lost: lost.clone(),
                    });
                }
                Ok(items)
            }
        }
    }
}

fn publish(engine: &Engine, run_id: &RunId, events: &[RunEvent], observers: &Observers) {
    engine.hub().publish(run_id, events);
    for event in events {
        observers.notify(|s| s.on_event(event));
    }
}

/// Persists finished cases in batches (whatever has arrived, up to `max_batch`) and
/// publishes their events; marks a chunk done in the commit that records its last case;
/// emits a progress event at most every `progress_interval`.
async fn record_cases(
    engine: Engine,
    run_id: RunId,
    mut rx: mpsc::Receiver<RecorderMsg>,
    observers: Observers,
    cancel: CancellationToken,
    failures: FailureGuard,
    leases: Arc<LeaseSet>,
) -> Result<Option<Progress>, StoreError> {
    let config = engine.config().clone();
    let store = engine.store().clone();
    let mut buffer = Vec::with_capacity(config.max_batch);
    let mut last_progress_event: Option<Instant> = None;
    let mut progress = None;
    // Cases still to record per claimed chunk.
    let mut remaining: HashMap<u64, usize> = HashMap::new();
    while rx.recv_many(&mut buffer, config.max_batch).await > 0 {
        let mut batch = CommitBatch::new(run_id.clone());
        for message in buffer.drain(..) {
            match message {
                RecorderMsg::ChunkClaimed {
                    chunk_index,
                    pending: 0,
                } => batch.completed_chunks.push(chunk_index),
                RecorderMsg::ChunkClaimed {
                    chunk_index,
                    pending,
                } => {
                    remaining.insert(chunk_index, pending);
                }
                RecorderMsg::Case(ChunkCommit {
                    chunk_index,
                    commit,
                }) => {
                    batch.cases.push(commit);
                    if let Some(left) = remaining.get_mut(&chunk_index) {
                        *left -= 1;
                        if *left == 0 {
                            remaining.remove(&chunk_index);
                            batch.completed_chunks.push(chunk_index);
                        }
                    }
                }
                RecorderMsg::Event(event) => batch.events.push(event),
            }
        }
        batch.progress_event = !batch.cases.is_empty()
            && last_progress_event.is_none_or(|t| t.elapsed() >= config.progress_interval);
        if batch.progress_event {
            last_progress_event = Some(Instant::now());
        }
        // Fenced: cases of a chunk whose lease another instance took are discarded.
        batch.lease_owner = Some(config.instance_id.clone());
        // Finished cases wait here, in order, while the store is unreachable; execution
        // pauses behind them (the channel is bounded) instead of failing the run.
        let outcome = retry(config.store_patience, "recording cases", || {
            store.commit(&batch)
        })
        .await?;
        for chunk in &batch.completed_chunks {
            leases.done(*chunk);
        }
        if outcome.discarded > 0 {
            tracing::warn!(run_id = %run_id, discarded = outcome.discarded, "discarded cases of chunks whose lease was lost");
        }
        if outcome.cancel_requested {
            cancel.cancel();
        }
        failures.check(&outcome.progress);
        publish(&engine, &run_id, &outcome.events, &observers);
        progress = Some(outcome.progress);
        if failures.tripped.is_cancelled() {
            // The policy stops the run within this commit batch: cases that finish
            // later are not recorded, so the counts in the error are the final ones.
            break;
        }
    }
    Ok(progress)
}
