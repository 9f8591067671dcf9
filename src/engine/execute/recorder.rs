//! The recorder: the one task of an execution that writes finished cases, persisting
//! them in batches and publishing their events; and the notes cases send it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::leases::LeaseSet;
use super::publish;
use super::stop::FailureGuard;
use crate::components::{CallNote, CallObserver};
use crate::engine::retry::retry;
use crate::engine::{Engine, EngineConfig};
use crate::model::{CaseKey, EventKind, NewEvent, Progress, RunId};
use crate::observe::Observers;
use crate::store::{CaseCommit, CommitBatch, StoreError};

/// What the recorder persists: finished cases, loose events (provider notes), and
/// which chunk each case completes.
pub(super) enum RecorderMsg {
    /// A chunk was claimed; `pending` cases will complete it.
    ChunkClaimed {
        chunk_index: u64,
        pending: usize,
    },
    /// Boxed, as is the event: the messages in the channel stay small.
    Case(Box<ChunkCommit>),
    Event(Box<NewEvent>),
}

/// A finished case and the chunk it belongs to.
pub(super) struct ChunkCommit {
    pub(super) chunk_index: u64,
    pub(super) commit: CaseCommit,
}

/// Turns a case's provider notes into run events. Notes are best effort: when the
/// recorder is saturated they are dropped rather than slowing the case.
pub(super) struct CaseNotes {
    pub(super) key: CaseKey,
    pub(super) tx: mpsc::Sender<RecorderMsg>,
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
        let _ = self
            .tx
            .try_send(RecorderMsg::Event(Box::new(NewEvent::now(kind))));
    }
}

/// Persists finished cases in batches (whatever arrives within `commit_window` of the
/// first, up to `max_batch`) and publishes their events; marks a chunk done in the commit that records its last case;
/// emits a progress event at most every `progress_interval`.
pub(super) async fn record_cases(
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
        gather(&mut rx, &mut buffer, &config).await;
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
                RecorderMsg::Case(case) => {
                    let ChunkCommit {
                        chunk_index,
                        commit,
                    } = *case;
                    batch.cases.push(commit);
                    if let Some(left) = remaining.get_mut(&chunk_index) {
                        *left -= 1;
                        if *left == 0 {
                            remaining.remove(&chunk_index);
                            batch.completed_chunks.push(chunk_index);
                        }
                    }
                }
                RecorderMsg::Event(event) => batch.events.push(*event),
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
        let meter = engine.meter();
        let outcome = retry(config.store_patience, "recording cases", || async {
            let started = Instant::now();
            let committed = store.commit(&batch).await;
            meter.store_commit(started.elapsed(), committed.is_ok());
            committed
        })
        .await?;
        for case in &batch.cases {
            meter.case_recorded(&case.record);
        }
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
        publish(&engine, &batch, &outcome, &observers);
        progress = Some(outcome.progress);
        if failures.tripped.is_cancelled() {
            // The policy stops the run within this commit batch: cases that finish
            // later are not recorded, so the counts in the error are the final ones.
            break;
        }
    }
    Ok(progress)
}

/// Group commit: what arrives within the window joins the first message's batch. A
/// commit costs about the same for one case as for hundreds (a transaction, a handful
/// of statements, a hand-off to the database's thread each), so at thousands of cases
/// a second a few milliseconds of waiting divide the store's CPU per case many times.
async fn gather(
    rx: &mut mpsc::Receiver<RecorderMsg>,
    buffer: &mut Vec<RecorderMsg>,
    config: &EngineConfig,
) {
    let deadline = tokio::time::Instant::now() + config.commit_window;
    while buffer.len() < config.max_batch {
        let room = config.max_batch - buffer.len();
        match tokio::time::timeout_at(deadline, rx.recv_many(buffer, room)).await {
            // The window is over, or every sender is gone (the execution is ending).
            Err(_) | Ok(0) => return,
            Ok(_) => {}
        }
    }
}
