//! The bookkeeping every store does inside its commit transaction, written once.
//!
//! A store loads the run's row (locked), lets [`RunState`] apply the batch to it, writes
//! the inserted case records and sequenced events, and saves the row back.

use crate::model::{
    AggregateState, CaseStatus, EventKind, NewEvent, RunEvent, RunId, RunRecord, RunStatus,
    Timestamp,
};

use std::collections::HashSet;

use serde_json::Value;

use super::{
    CHUNK_SIZE, CaseCommit, CommitBatch, CommitOutcome, StatusChange, StoreError, StoreResult,
};

pub(crate) struct RunState {
    pub record: RunRecord,
    pub aggregates: AggregateState,
}

impl RunState {
    pub(super) fn ensure_open(&self) -> StoreResult<()> {
        if self.record.status.is_terminal() {
            return Err(StoreError::RunFinished {
                run_id: self.record.run_id.clone(),
                status: self.record.status,
            });
        }
        Ok(())
    }

    /// Reserves against the run's budget (see [`crate::store::Store::reserve_spend`]).
    pub(super) fn reserve(&mut self, amount: f64, budget: f64) -> crate::model::Reservation {
        let reservation = self.aggregates.spend_mut().reserve(amount, budget);
        if reservation.granted {
            self.touch();
        }
        reservation
    }

    /// Counts a newly inserted case in progress, usage and aggregates.
    pub(super) fn count_case(&mut self, commit: &CaseCommit) {
        let case = &commit.record;
        match case.status {
            CaseStatus::Completed => self.record.progress.completed += 1,
            CaseStatus::Failed => self.record.progress.failed += 1,
        }
        self.record.usage.add(&case.usage);
        self.aggregates.observe(case);
        if commit.reused {
            self.aggregates.spend_mut().observe_reused(case);
        }
    }

    /// Gives events the next sequence numbers of the run.
    pub(super) fn sequence(&mut self, events: Vec<NewEvent>) -> Vec<RunEvent> {
        events
            .into_iter()
            .map(|event| self.sequenced(event))
            .collect()
    }

    fn sequenced(&mut self, event: NewEvent) -> RunEvent {
        self.record.last_seq += 1;
        event.sequenced(&self.record.run_id, self.record.last_seq)
    }

    pub(super) fn apply_status(&mut self, change: &StatusChange) {
        let record = &mut self.record;
        record.status = change.status;
        if change.error.is_some() {
            record.error.clone_from(&change.error);
        }
        if change.status == RunStatus::Running && record.started_at.is_none() {
            record.started_at = Some(change.at);
        }
        if change.status.is_terminal() {
            record.finished_at = Some(change.at);
            // Nothing is in flight any more.
            self.aggregates.spend_mut().reserved_usd = 0.0;
        }
    }

    /// After the batch's cases were counted: sequences the events of the cases it kept,
    /// then its run-level and progress events, and applies the status change. The kept
    /// cases' events take the sequence numbers from the returned first one on, in order
    /// (their copies are built with [`case_events`] only when someone reads them);
    /// returned are the batch's own events and the progress event, sequenced after them.
    pub(super) fn sequence_commit(
        &mut self,
        kept: &[&CaseCommit],
        batch: &CommitBatch,
    ) -> (u64, Vec<RunEvent>) {
        // Every case of the batch ends its reservation, kept or not.
        let reserved: f64 = batch.cases.iter().map(|case| case.reserved_usd).sum();
        if reserved > 0.0 {
            self.aggregates.spend_mut().release(reserved);
        }
        let first = self.record.last_seq + 1;
        let case_events: usize = kept.iter().map(|case| case.events.len()).sum();
        self.record.last_seq += case_events as u64;
        let mut tail = Vec::with_capacity(batch.events.len() + usize::from(batch.progress_event));
        for event in &batch.events {
            tail.push(self.sequenced(event.clone()));
        }
        if batch.progress_event {
            let progress = NewEvent::now(EventKind::Progress {
                progress: self.record.progress,
            });
            tail.push(self.sequenced(progress));
        }
        if let Some(change) = &batch.status {
            self.apply_status(change);
        }
        self.touch();
        (first, tail)
    }

    /// The outcome of a commit that wrote no events (yet): callers fill in what it did.
    pub(super) fn outcome(&self) -> CommitOutcome {
        CommitOutcome {
            kept_cases: Vec::new(),
            first_case_seq: self.record.last_seq + 1,
            tail: Vec::new(),
            progress: self.record.progress,
            duplicates: 0,
            cancel_requested: self.record.cancel_requested,
            skipped: false,
            discarded: 0,
            run: Box::new(RunRecord {
                definition: Value::Null,
                runtime: Value::Null,
                ..self.record.clone()
            }),
        }
    }

    /// Checks a batch against the run before anything is written: `Ok(Some(outcome))`
    /// means skip it (its `expect_status` does not hold), an error means reject it.
    pub(super) fn precheck(&self, batch: &CommitBatch) -> StoreResult<Option<CommitOutcome>> {
        if let Some(expected) = batch.expect_status
            && self.record.status != expected
        {
            let mut outcome = self.outcome();
            outcome.skipped = true;
            return Ok(Some(outcome));
        }
        self.ensure_open()?;
        Ok(None)
    }

    /// Marks the row changed: a new version (the ETag) and the aggregate snapshot.
    pub(super) fn touch(&mut self) {
        self.record.version += 1;
        self.record.updated_at = Timestamp::now();
        self.record.aggregates = self.aggregates.summary();
    }
}

/// The kept cases' events of a commit, sequenced from `first` on.
pub(super) fn case_events(run_id: &RunId, first: u64, kept: &[&CaseCommit]) -> Vec<RunEvent> {
    kept.iter()
        .flat_map(|case| &case.events)
        .zip(first..)
        .map(|(event, seq)| event.clone().sequenced(run_id, seq))
        .collect()
}

/// What a cancel request does to a run's row.
pub(crate) enum CancelStep {
    AlreadyFinished,
    /// A queued run is cancelled at once; these events must be written.
    Cancelled(Vec<RunEvent>),
    /// A running run gets the flag; its executor stops it.
    Requested,
}

impl RunState {
    pub(super) fn request_cancel(&mut self) -> CancelStep {
        match self.record.status {
            status if status.is_terminal() => return CancelStep::AlreadyFinished,
            RunStatus::Queued => {
                let now = Timestamp::now();
                self.apply_status(&StatusChange {
                    status: RunStatus::Cancelled,
                    error: None,
                    at: now,
                });
                let progress = self.record.progress;
                let events = self.sequence(vec![NewEvent {
                    occurred_at: now,
                    kind: EventKind::RunCancelled { progress },
                }]);
                self.touch();
                return CancelStep::Cancelled(events);
            }
            _ => {}
        }
        self.record.cancel_requested = true;
        self.touch();
        CancelStep::Requested
    }
}

/// Lease fencing, written once for the SQL stores: the chunks a batch writes to (its
/// cases' chunks and the chunks it marks done), ascending.
pub(crate) fn touched_chunks(batch: &CommitBatch) -> Vec<u64> {
    let mut chunks: Vec<u64> = batch
        .cases
        .iter()
        .map(|case| case.record.key.case_index / CHUNK_SIZE)
        .chain(batch.completed_chunks.iter().copied())
        .collect();
    chunks.sort_unstable();
    chunks.dedup();
    chunks
}

/// Which of the batch's cases fall in chunks in `held` (in order), and which of its
/// completed chunks are in `held`: what a fenced commit may write.
pub(crate) fn fence(batch: &CommitBatch, held: &HashSet<u64>) -> (Vec<bool>, Vec<u64>) {
    let keep = batch
        .cases
        .iter()
        .map(|case| held.contains(&(case.record.key.case_index / CHUNK_SIZE)))
        .collect();
    let completed = batch
        .completed_chunks
        .iter()
        .copied()
        .filter(|chunk| held.contains(chunk))
        .collect();
    (keep, completed)
}
