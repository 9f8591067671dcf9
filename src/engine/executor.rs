//! Executing a run: resume-aware, bounded concurrency, cancellable, with a recorder task
//! that persists finished cases in batches and publishes their events.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures::{Stream, StreamExt};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::definition::{
    Dataset, Evaluators, Experiment, Pipeline, RuntimeOptions, parse_evaluation, parse_experiment,
};
use super::observe::Observers;
use super::pipeline::{CaseInput, rejudge_case, run_case};
use super::{Engine, EngineError, generation_source};
use crate::components::{CallNote, CallObserver, ResponseCache};
use crate::model::{
    Case, CaseKey, CaseRecord, EventKind, NewEvent, Progress, RunEvent, RunId, RunKind, RunRecord,
    RunStatus, Timestamp,
};
use crate::store::{CaseCommit, CaseQuery, CommitBatch, StatusChange, Store, StoreError};
use crate::telemetry::{AttributeValue, Span, SpanStatus};

/// What a run executes, rebuilt from its stored definition.
enum Plan {
    Experiment {
        experiment: Box<Experiment>,
        pipeline: Pipeline,
    },
    Rejudge {
        source: RunId,
        cases: Vec<Case>,
        seeds: usize,
        evaluators: Evaluators,
    },
}

/// What every case of one execution shares.
#[derive(Clone, Copy)]
struct StreamContext<'a> {
    run_id: &'a RunId,
    recorded: &'a HashSet<u64>,
    observers: &'a Observers,
    run_span: &'a Span,
    cache: Option<&'a dyn ResponseCache>,
    tx: &'a mpsc::Sender<RecorderMsg>,
}

/// Why the case loop ended.
enum Stop {
    Finished,
    Cancelled,
    /// The service is shutting down: the run stays `running` and resumes on next start.
    Interrupted,
    Failed(String),
}

/// How a caller can stop an execution.
#[derive(Debug, Clone, Default)]
pub struct RunControl {
    /// Stop and mark the run `cancelled` (finished cases are kept).
    pub cancel: CancellationToken,
    /// Stop without finishing the run: it stays `running` and resumes later.
    pub interrupt: CancellationToken,
}

/// What the recorder persists: finished cases, and loose events (provider notes).
enum RecorderMsg {
    Case(CaseCommit),
    Event(NewEvent),
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

type CaseStream<'a> = Pin<Box<dyn Stream<Item = Result<CaseCommit, StoreError>> + Send + 'a>>;

/// Source records are read in pages this large when rejudging.
const REJUDGE_PAGE: u32 = 500;

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
                Ok(Plan::Experiment {
                    experiment: Box::new(request.experiment),
                    pipeline: request.pipeline,
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
        let record = self
            .store()
            .get_run(source)
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

    /// Executes a run until it is completed, failed or cancelled, resuming after the
    /// cases already recorded. Returns the run as stored at the end.
    pub async fn execute(
        &self,
        run_id: &RunId,
        observers: Observers,
        control: RunControl,
    ) -> Result<RunRecord, EngineError> {
        let cancel = &control.cancel;
        let store = self.store().clone();
        let record = store
            .get_run(run_id)
            .await?
            .ok_or_else(|| EngineError::RunNotFound(run_id.clone()))?;
        if record.status.is_terminal() {
            return Ok(record);
        }
        if record.cancel_requested {
            cancel.cancel();
        }
        let resumed = record.status == RunStatus::Running || record.last_seq > 0;
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

        let mut start = CommitBatch::new(run_id.clone());
        start.status = Some(StatusChange {
            status: RunStatus::Running,
            error: None,
            at: Timestamp::now(),
        });
        start.events.push(NewEvent::now(EventKind::RunStarted {
            total_cases: record.progress.total,
            resumed,
        }));
        let mut progress = match self.commit_and_publish(start, &observers).await {
            Ok(progress) => progress,
            Err(StoreError::RunFinished { .. }) => {
                tracer.end_span(run_span, SpanStatus::Ok, None);
                return self.current(run_id).await;
            }
            Err(e) => return Err(e.into()),
        };

        let stop = match self.plan(&record) {
            Err(message) => Stop::Failed(message),
            Ok(mut plan) => match self.load_source_cases(&mut plan).await {
                Err(message) => Stop::Failed(message),
                Ok(()) => {
                    let runtime: RuntimeOptions =
                        serde_json::from_value(record.runtime.clone()).unwrap_or_default();
                    let concurrency = runtime
                        .concurrency
                        .unwrap_or(self.config().default_concurrency)
                        .max(1);
                    let cache = runtime
                        .cache
                        .unwrap_or(true)
                        .then(|| StoreCache(self.store().clone()));
                    let (stop, last) = self
                        .run_cases(
                            run_id,
                            &plan,
                            concurrency,
                            &observers,
                            &run_span,
                            &control,
                            cache.as_ref(),
                        )
                        .await;
                    progress = last.unwrap_or(progress);
                    stop
                }
            },
        };

        let (status, kind, error) = match stop {
            Stop::Interrupted => {
                tracer.end_span(run_span, SpanStatus::Error, Some("interrupted by shutdown"));
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
        match finished {
            Ok(_) | Err(StoreError::RunFinished { .. }) => self.current(run_id).await,
            Err(e) => Err(e.into()),
        }
    }

    async fn current(&self, run_id: &RunId) -> Result<RunRecord, EngineError> {
        self.store()
            .get_run(run_id)
            .await?
            .ok_or_else(|| EngineError::RunNotFound(run_id.clone()))
    }

    /// Commits a batch, then hands its events to live listeners and subscribers.
    async fn commit_and_publish(
        &self,
        batch: CommitBatch,
        observers: &Observers,
    ) -> Result<Progress, StoreError> {
        let run_id = batch.run_id.clone();
        let outcome = self.store().commit(batch).await?;
        publish(self, &run_id, &outcome.events, observers);
        Ok(outcome.progress)
    }

    /// Drives the pending cases of a run through the pipeline with bounded concurrency;
    /// a recorder task persists them as they finish.
    async fn run_cases(
        &self,
        run_id: &RunId,
        plan: &Plan,
        concurrency: usize,
        observers: &Observers,
        run_span: &Span,
        control: &RunControl,
        cache: Option<&StoreCache>,
    ) -> (Stop, Option<Progress>) {
        let cancel = &control.cancel;
        let store = self.store().clone();
        let recorded: HashSet<u64> = match store.recorded_case_indices(run_id).await {
            Ok(indices) => indices.into_iter().collect(),
            Err(e) => return (Stop::Failed(e.to_string()), None),
        };
        let config = self.config().clone();
        let (tx, rx) = mpsc::channel::<RecorderMsg>(config.max_batch * 2);
        let recorder = tokio::spawn(record_cases(
            self.clone(),
            run_id.clone(),
            rx,
            observers.clone(),
            cancel.clone(),
        ));

        let context = StreamContext {
            run_id,
            recorded: &recorded,
            observers,
            run_span,
            cache: cache.map(|c| c as &dyn ResponseCache),
            tx: &tx,
        };
        let mut cases = self.case_stream(&context, plan, concurrency);
        let mut cancel_poll = tokio::time::interval(config.cancel_poll_interval);
        cancel_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stop = loop {
            tokio::select! {
                biased;
                () = control.interrupt.cancelled() => break Stop::Interrupted,
                () = cancel.cancelled() => break Stop::Cancelled,
                _ = cancel_poll.tick() => {
                    if let Ok(Some(run)) = store.get_run(run_id).await && run.cancel_requested {
                        cancel.cancel();
                    }
                }
                next = cases.next() => match next {
                    None => break Stop::Finished,
                    Some(Err(e)) => break Stop::Failed(e.to_string()),
                    Some(Ok(commit)) => {
                        if tx.send(RecorderMsg::Case(commit)).await.is_err() {
                            break Stop::Failed("the recorder stopped".to_owned());
                        }
                    }
                },
            }
        };
        // Dropping the stream abandons cases in flight; finished ones are still queued
        // for the recorder, which drains the channel before it returns.
        drop(cases);
        drop(tx);
        match recorder.await {
            Ok(Ok(progress)) => (stop, progress),
            Ok(Err(e)) => (
                Stop::Failed(format!("persisting results failed: {e}")),
                None,
            ),
            Err(e) => (Stop::Failed(format!("the recorder crashed: {e}")), None),
        }
    }

    fn case_stream<'a>(
        &'a self,
        context: &'a StreamContext<'a>,
        plan: &'a Plan,
        concurrency: usize,
    ) -> CaseStream<'a> {
        let StreamContext {
            run_id,
            recorded,
            observers,
            run_span,
            cache,
            tx,
        } = *context;
        match plan {
            Plan::Experiment {
                experiment,
                pipeline,
            } => {
                let generator_id = experiment.generation.generator.id.as_str();
                let reducer_id = experiment.generation.reducer.id.as_str();
                let num_samples = experiment.generation.candidate_policy.num_samples;
                let items = experiment
                    .datasets
                    .iter()
                    .flat_map(|d| d.cases.iter().map(move |c| (d, c)))
                    .flat_map(|(d, c)| experiment.seeds.iter().map(move |seed| (d, c, *seed)))
                    .enumerate()
                    .filter(|(index, _)| !recorded.contains(&(*index as u64)));
                futures::stream::iter(items)
                    .map(move |(index, (dataset, case, seed))| async move {
                        let key = CaseKey {
                            case_index: index as u64,
                            dataset_id: dataset.dataset_id.clone(),
                            case_id: case.case_id.clone(),
                            seed,
                        };
                        let notes = CaseNotes {
                            key: key.clone(),
                            tx: tx.clone(),
                        };
                        let input = CaseInput {
                            run_id,
                            key,
                            case,
                            observers,
                            run_span,
                            cache,
                            notes: &notes,
                        };
                        Ok(run_case(&input, pipeline, generator_id, reducer_id, num_samples).await)
                    })
                    .buffer_unordered(concurrency)
                    .boxed()
            }
            Plan::Rejudge {
                source,
                cases,
                seeds,
                evaluators,
            } => {
                let store = self.store().clone();
                let pages = futures::stream::unfold(Some(None::<u64>), move |after| {
                    let store = store.clone();
                    async move {
                        let after = after?;
                        let query = CaseQuery {
                            after_index: after,
                            limit: REJUDGE_PAGE,
                            ..CaseQuery::default()
                        };
                        match store.case_records(source, &query).await {
                            Ok(page) if page.is_empty() => None,
                            Ok(page) => {
                                let next = page.last().map(|r| r.key.case_index);
                                Some((Ok(page), Some(next)))
                            }
                            Err(e) => Some((Err(e), None)),
                        }
                    }
                });
                pages
                    .flat_map(|page: Result<Vec<CaseRecord>, StoreError>| {
                        let items: Vec<Result<CaseRecord, StoreError>> = match page {
                            Ok(records) => records.into_iter().map(Ok).collect(),
                            Err(e) => vec![Err(e)],
                        };
                        futures::stream::iter(items)
                    })
                    .filter(move |item| {
                        let keep = item
                            .as_ref()
                            .map_or(true, |r| !recorded.contains(&r.key.case_index));
                        futures::future::ready(keep)
                    })
                    .map(move |item| async move {
                        let source_record = item?;
                        let position =
                            (source_record.key.case_index / (*seeds).max(1) as u64) as usize;
                        let case = cases.get(position).ok_or_else(|| {
                            StoreError::Corrupt(format!(
                                "source case {} is not in its definition",
                                source_record.key.case_index
                            ))
                        })?;
                        let notes = CaseNotes {
                            key: source_record.key.clone(),
                            tx: tx.clone(),
                        };
                        let input = CaseInput {
                            run_id,
                            key: source_record.key.clone(),
                            case,
                            observers,
                            run_span,
                            cache,
                            notes: &notes,
                        };
                        Ok(rejudge_case(&input, &source_record, evaluators).await)
                    })
                    .buffer_unordered(concurrency)
                    .boxed()
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
/// publishes their events; emits a progress event at most every `progress_interval`.
async fn record_cases(
    engine: Engine,
    run_id: RunId,
    mut rx: mpsc::Receiver<RecorderMsg>,
    observers: Observers,
    cancel: CancellationToken,
) -> Result<Option<Progress>, StoreError> {
    let config = engine.config().clone();
    let mut buffer = Vec::with_capacity(config.max_batch);
    let mut last_progress_event: Option<Instant> = None;
    let mut progress = None;
    while rx.recv_many(&mut buffer, config.max_batch).await > 0 {
        let mut batch = CommitBatch::new(run_id.clone());
        for message in buffer.drain(..) {
            match message {
                RecorderMsg::Case(commit) => batch.cases.push(commit),
                RecorderMsg::Event(event) => batch.events.push(event),
            }
        }
        batch.progress_event =
            last_progress_event.is_none_or(|t| t.elapsed() >= config.progress_interval);
        if batch.progress_event {
            last_progress_event = Some(Instant::now());
        }
        let outcome = engine.store().commit(batch).await?;
        if outcome.cancel_requested {
            cancel.cancel();
        }
        publish(&engine, &run_id, &outcome.events, &observers);
        progress = Some(outcome.progress);
    }
    Ok(progress)
}
