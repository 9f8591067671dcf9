//! What the stores keep of datasets and how runs are removed: content-addressed dataset
//! revisions that runs reference, and the deletion of finished runs (by request or by
//! the operator's retention) that never breaks another run.
//!
//! Consistency rules every store keeps: a revision is stored whole or not at all; cases
//! are stored once per revision, whichever datasets share it; a revision a run uses
//! cannot be deleted (the run's reference and the deletion are decided atomically); a
//! run is deleted with its records, events, chunk leases and the cached provider
//! responses no other run used, and only once it and every run deleted with it finished.

use std::ops::Range;

use async_trait::async_trait;

use super::StoreResult;
use crate::model::{DatasetRevision, DatasetSummary, Revision, RunId, StoredCase, Timestamp};

/// The cases of a revision being stored, in order, a batch at a time.
#[async_trait]
pub trait CaseBatches: Send {
    /// The next cases (numbered from 0 across batches); empty when there are no more.
    async fn next_batch(&mut self) -> StoreResult<Vec<StoredCase>>;
}

/// What storing a revision did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    Created(DatasetRevision),
    /// The dataset already had this revision: nothing changed.
    Existing(DatasetRevision),
}

impl PutOutcome {
    pub fn revision(&self) -> &DatasetRevision {
        match self {
            PutOutcome::Created(r) | PutOutcome::Existing(r) => r,
        }
    }
}

/// Position in the newest-first order of a dataset's revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionCursor {
    pub created_at: Timestamp,
    pub revision: Revision,
}

/// Most runs named in a refusal to delete.
pub(crate) const MAX_NAMED_RUNS: usize = 100;

/// What a deletion of dataset revisions did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteRevisions {
    /// These revisions are gone (their cases too, unless another dataset shares them).
    Deleted(Vec<Revision>),
    /// Nothing was deleted: runs use the revision(s) (at most [`MAX_NAMED_RUNS`] named).
    InUse(Vec<RunId>),
    /// No such dataset, or no such revision of it.
    NotFound,
}

/// What a deletion of a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteRun {
    /// These runs are gone: the run and, with `cascade`, the runs derived from it.
    Deleted(Vec<RunId>),
    /// Nothing was deleted: these runs (the run or one derived from it) have not finished.
    Unfinished(Vec<RunId>),
    /// Nothing was deleted: rejudges or retries of the run exist and `cascade` was not set.
    HasChildren(Vec<RunId>),
    NotFound,
}

#[async_trait]
pub trait DatasetStore: Send + Sync {
    /// Stores `revision` of its dataset with the cases `cases` yields, atomically. When
    /// the dataset already has that revision nothing changes ([`PutOutcome::Existing`]);
    /// when another dataset holds the same revision its cases are reused, not read again.
    async fn put_revision(
        &self,
        revision: DatasetRevision,
        cases: &mut dyn CaseBatches,
    ) -> StoreResult<PutOutcome>;

    /// One revision of a dataset; with `revision` `None`, its newest.
    async fn get_revision(
        &self,
        dataset_id: &str,
        revision: Option<&Revision>,
    ) -> StoreResult<Option<DatasetRevision>>;

    /// A dataset's revisions, newest first (`before`: strictly older than that one).
    async fn list_revisions(
        &self,
        dataset_id: &str,
        before: Option<&RevisionCursor>,
        limit: u32,
    ) -> StoreResult<Vec<DatasetRevision>>;

    /// Datasets in `dataset_id` order, after `after`.
    async fn list_datasets(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<DatasetSummary>>;

    /// The cases of a revision whose index is in `range`, in order.
    async fn revision_cases(
        &self,
        revision: &Revision,
        range: Range<u64>,
    ) -> StoreResult<Vec<StoredCase>>;

    /// Deletes one revision of a dataset, or (`None`) every revision of it, unless a run
    /// uses any of them.
    async fn delete_revisions(
        &self,
        dataset_id: &str,
        revision: Option<&Revision>,
    ) -> StoreResult<DeleteRevisions>;

    /// Deletes a finished run with its records, events, chunks and the cached responses
    /// only it used. Runs derived from it (rejudges, retries, and theirs) are deleted
    /// with it when `cascade`; otherwise their existence refuses the deletion.
    async fn delete_run(&self, run_id: &RunId, cascade: bool) -> StoreResult<DeleteRun>;

    /// Finished runs that ended before `before` and have no derived runs, oldest first:
    /// what retention deletes (a parent becomes one once its derived runs are gone).
    async fn expired_runs(&self, before: Timestamp, limit: u32) -> StoreResult<Vec<RunId>>;
}
