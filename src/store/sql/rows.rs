//! Rows of the `runs` table as both databases return them, and the records they hold.

use serde_json::Value;

use super::{from_json, to_u64};
use crate::model::{Progress, RunKind, RunLabels, RunRecord, RunStatus, Timestamp};
use crate::store::apply::RunState;
use crate::store::{StoreError, StoreResult};

/// The run columns every listing and status read selects (not the large definition);
/// [`RunRow`]'s fields.
pub(super) const SUMMARY_COLUMNS: &str = "run_id, kind, parent_run_id, status, total, completed, failed, usage, \
     aggregates, error, cancel_requested, last_seq, version, created_at, started_at, finished_at, updated_at, \
     name, tags, metadata";

#[derive(sqlx::FromRow)]
pub(super) struct RunRow {
    run_id: String,
    kind: String,
    parent_run_id: Option<String>,
    status: String,
    total: i64,
    completed: i64,
    failed: i64,
    usage: String,
    aggregates: String,
    error: Option<String>,
    cancel_requested: bool,
    last_seq: i64,
    version: i64,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    updated_at: i64,
    name: Option<String>,
    tags: String,
    metadata: String,
}

/// A run with its definition and runtime options.
#[derive(sqlx::FromRow)]
pub(super) struct FullRunRow {
    #[sqlx(flatten)]
    run: RunRow,
    definition: String,
    runtime: String,
}

/// A run with the state its aggregates are computed from, as a commit loads it.
#[derive(sqlx::FromRow)]
pub(super) struct StateRow {
    #[sqlx(flatten)]
    run: RunRow,
    aggregate_state: String,
}

impl RunRow {
    /// The record, with `definition` and `runtime` left `Null`.
    pub(super) fn into_record(self) -> StoreResult<RunRecord> {
        Ok(RunRecord {
            run_id: self
                .run_id
                .parse()
                .map_err(|_| StoreError::Corrupt("bad run id".into()))?,
            kind: RunKind::parse(&self.kind)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown kind {}", self.kind)))?,
            parent_run_id: self
                .parent_run_id
                .map(|p| {
                    p.parse()
                        .map_err(|_| StoreError::Corrupt("bad parent run id".into()))
                })
                .transpose()?,
            status: RunStatus::parse(&self.status)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown status {}", self.status)))?,
            labels: RunLabels {
                name: self.name,
                tags: from_json(&self.tags)?,
                metadata: from_json(&self.metadata)?,
            },
            definition: Value::Null,
            runtime: Value::Null,
            progress: Progress {
                total: to_u64(self.total)?,
                completed: to_u64(self.completed)?,
                failed: to_u64(self.failed)?,
            },
            usage: from_json(&self.usage)?,
            aggregates: from_json(&self.aggregates)?,
            error: self.error,
            cancel_requested: self.cancel_requested,
            last_seq: to_u64(self.last_seq)?,
            version: to_u64(self.version)?,
            created_at: Timestamp::from_millis(self.created_at),
            started_at: self.started_at.map(Timestamp::from_millis),
            finished_at: self.finished_at.map(Timestamp::from_millis),
            updated_at: Timestamp::from_millis(self.updated_at),
        })
    }
}

impl FullRunRow {
    pub(super) fn into_record(self) -> StoreResult<RunRecord> {
        let mut record = self.run.into_record()?;
        record.definition = from_json(&self.definition)?;
        record.runtime = from_json(&self.runtime)?;
        Ok(record)
    }
}

impl StateRow {
    pub(super) fn into_state(self) -> StoreResult<RunState> {
        Ok(RunState {
            aggregates: from_json(&self.aggregate_state)?,
            record: self.run.into_record()?,
        })
    }
}
