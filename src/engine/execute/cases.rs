//! The case stream of an execution: claimed work items run with bounded concurrency,
//! each contained so one case never takes the run down.

use std::pin::Pin;
use std::sync::Arc;

use futures::{FutureExt, Stream, StreamExt};
use serde_json::Value;
use tokio::sync::mpsc;

use super::leases::LeaseSet;
use super::plan::{Evaluate, Plan, Work, WorkItem};
use super::recorder::{CaseNotes, ChunkCommit, RecorderMsg};
use super::stop::FailureGuard;
use crate::components::ResponseCache;
use crate::engine::Engine;
use crate::engine::pipeline::{CaseInput, panic_message, panicked_case, rejudge_case, run_case};
use crate::model::{CaseRecord, RunId, Stage};
use crate::observe::{Observers, Span};
use crate::store::{CaseCommit, Store, StoreError};

/// What every case of one execution shares.
pub(super) struct Shared<'a> {
    pub(super) run_id: &'a RunId,
    pub(super) observers: &'a Observers,
    pub(super) run_span: &'a Span,
    pub(super) failures: &'a FailureGuard,
    pub(super) cache: Option<&'a dyn ResponseCache>,
    pub(super) concurrency: usize,
    /// The chunks this execution holds, renewed by its heartbeat.
    pub(super) leases: &'a Arc<LeaseSet>,
}

/// The response cache backed by the run's store, on the run's behalf (entries it stores
/// are its own; entries of other runs it uses are noted); a cache failure is a miss,
/// never an error.
pub(super) struct StoreCache(pub(super) Arc<dyn Store>, pub(super) RunId);

#[async_trait::async_trait]
impl ResponseCache for StoreCache {
    async fn get(&self, key: &str) -> Option<Value> {
        match self.0.cache_get(key, &self.1).await {
            Ok(value) => value,
            Err(e) => {
                tracing::warn!(error = %e, "response cache read failed");
                None
            }
        }
    }

    async fn put(&self, key: &str, value: &Value) {
        if let Err(e) = self.0.cache_put(key, value, &self.1).await {
            tracing::warn!(error = %e, "response cache write failed");
        }
    }
}

/// Finished cases; `None` for a case abandoned because its chunk's lease was lost.
pub(super) type CaseStream<'a> =
    Pin<Box<dyn Stream<Item = Result<Option<ChunkCommit>, StoreError>> + Send + 'a>>;

impl Engine {
    pub(super) fn case_stream<'a>(
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
            let (case, source) = match item.work {
                // A retry's reused record: the same outcome, now this run's.
                Work::Reuse(record) => {
                    let record = CaseRecord {
                        run_id: shared.run_id.clone(),
                        ..record
                    };
                    let commit = CaseCommit {
                        record,
                        events: Vec::new(),
                    };
                    return Ok(Some(ChunkCommit {
                        chunk_index: item.chunk_index,
                        commit,
                    }));
                }
                Work::Execute(case) => (case, None),
                Work::Rejudge { case, source } => (case, Some(source)),
            };
            let notes = CaseNotes {
                key: item.key.clone(),
                tx: tx.clone(),
            };
            let input = CaseInput {
                run_id: shared.run_id,
                key: item.key,
                case: &case,
                observers: shared.observers,
                run_span: shared.run_span,
                cache: shared.cache,
                notes: &notes,
            };
            let evaluators = plan.evaluate.evaluators();
            let first_stage = match &plan.evaluate {
                Evaluate::Experiment { .. } => Stage::Generation,
                Evaluate::Rejudge { .. } => Stage::Parsing,
            };
            let work = async {
                match (&source, &plan.evaluate) {
                    (Some(source), Evaluate::Rejudge { evaluators, .. }) => {
                        Ok(rejudge_case(&input, source, evaluators).await)
                    }
                    (
                        _,
                        Evaluate::Experiment {
                            generation,
                            pipeline,
                        },
                    ) => Ok(run_case(
                        &input,
                        pipeline,
                        &generation.generator.id,
                        &generation.reducer.id,
                        generation.candidate_policy.num_samples,
                    )
                    .await),
                    (None, Evaluate::Rejudge { .. }) => Err(StoreError::Corrupt(
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
