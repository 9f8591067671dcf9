//! [`DatasetStore`] for every [`Dialect`]: revisions and their cases, the runs that use
//! them, and the deletion of runs.

use std::ops::Range;

use async_trait::async_trait;
use sqlx::{ColumnIndex, Encode, Executor, QueryBuilder, Type};

use super::{Conn, Dialect, Row, Value, Write, to_i64, to_u64};
use crate::model::{
    DatasetRevision, DatasetSummary, DatasetUse, Revision, RunId, StoredCase, Timestamp,
};
use crate::store::{
    CaseBatches, DatasetStore, DeleteRevisions, DeleteRun, MAX_NAMED_RUNS, PutOutcome,
    RevisionCursor, StoreError, StoreResult,
};

const REVISION_COLUMNS: &str = "dataset_id, revision, case_count, bytes, created_at";

#[derive(sqlx::FromRow)]
struct RevisionRow {
    dataset_id: String,
    revision: String,
    case_count: i64,
    bytes: i64,
    created_at: i64,
}

impl RevisionRow {
    fn into_revision(self) -> StoreResult<DatasetRevision> {
        Ok(DatasetRevision {
            dataset_id: self.dataset_id,
            revision: parse_revision(&self.revision)?,
            case_count: to_u64(self.case_count)?,
            bytes: to_u64(self.bytes)?,
            created_at: Timestamp::from_millis(self.created_at),
        })
    }
}

#[derive(sqlx::FromRow)]
struct SummaryRow {
    #[sqlx(flatten)]
    latest: RevisionRow,
    revisions: i64,
}

#[derive(sqlx::FromRow)]
struct CaseRow {
    case_index: i64,
    case_id: String,
    case_json: String,
}

#[derive(sqlx::FromRow)]
struct FamilyRow {
    run_id: String,
    status: String,
}

fn parse_revision(raw: &str) -> StoreResult<Revision> {
    raw.parse()
        .map_err(|_| StoreError::Corrupt(format!("bad revision {raw}")))
}

fn parse_run_id(raw: &str) -> StoreResult<RunId> {
    raw.parse()
        .map_err(|_| StoreError::Corrupt(format!("bad run id {raw}")))
}

/// Columns bound per inserted case.
const CASE_PARAMS: usize = 4;

/// How long one transaction of an upload's cases may hold the writer before it commits
/// and lets other writes in (it commits sooner when another write waits).
const CHUNK_HOLD: std::time::Duration = std::time::Duration::from_millis(50);

impl<D> Write<'_, D>
where
    D: Dialect,
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::Db>,
    i64: Value<D::Db>,
    String: Value<D::Db>,
    for<'s> &'s str: Encode<'s, D::Db> + Type<D::Db> + ColumnIndex<Row<D>>,
    usize: ColumnIndex<Row<D>>,
{
    async fn revision_row(
        &mut self,
        dataset_id: &str,
        revision: &Revision,
    ) -> StoreResult<Option<DatasetRevision>> {
        let sql = format!(
            "SELECT {REVISION_COLUMNS} FROM dataset_revisions WHERE dataset_id = $1 AND revision = $2"
        );
        sqlx::query_as::<_, RevisionRow>(sqlx::AssertSqlSafe(sql))
            .bind(dataset_id)
            .bind(revision.as_str())
            .fetch_optional(self.conn())
            .await?
            .map(RevisionRow::into_revision)
            .transpose()
    }

    async fn insert_revision_cases(
        &mut self,
        content_id: i64,
        cases: &[StoredCase],
    ) -> StoreResult<()> {
        for part in cases.chunks(D::MAX_PARAMS / CASE_PARAMS) {
            let mut insert = QueryBuilder::<D::Db>::new(
                "INSERT INTO dataset_cases (content_id, case_index, case_id, case_json) ",
            );
            let mut rows = Vec::with_capacity(part.len());
            for case in part {
                rows.push((to_i64(case.case_index)?, case));
            }
            insert.push_values(rows, |mut row, (index, case)| {
                row.push_bind(content_id)
                    .push_bind(index)
                    .push_bind(case.case_id.as_str())
                    .push_bind(case.json.as_str());
            });
            // The same content uploaded at once twice: both store the same rows.
            insert.push(" ON CONFLICT DO NOTHING");
            insert
                .build()
                .persistent(false)
                .execute(self.conn())
                .await?;
        }
        Ok(())
    }

    /// The number a revision's content is stored under, given to it now if it has none.
    /// It is kept when the revision is deleted: an upload of the same content under way
    /// meanwhile goes on writing under it.
    async fn content_id(&mut self, revision: &Revision) -> StoreResult<i64> {
        sqlx::query(
            "INSERT INTO dataset_contents (revision) VALUES ($1) ON CONFLICT (revision) DO NOTHING",
        )
        .bind(revision.as_str())
        .execute(self.conn())
        .await?;
        Ok(
            sqlx::query_scalar("SELECT content_id FROM dataset_contents WHERE revision = $1")
                .bind(revision.as_str())
                .fetch_one(self.conn())
                .await?,
        )
    }

    /// The runs of the family: `run_id`'s row and every run derived from it (its
    /// rejudges and retries, theirs, and so on), parents first.
    async fn family(&mut self, run_id: &RunId) -> StoreResult<Vec<FamilyRow>> {
        let mut family: Vec<FamilyRow> =
            sqlx::query_as::<_, FamilyRow>("SELECT run_id, status FROM runs WHERE run_id = $1")
                .bind(run_id.as_str())
                .fetch_all(self.conn())
                .await?;
        let mut next = 0;
        while next < family.len() {
            let parent = family[next].run_id.clone();
            let children = sqlx::query_as::<_, FamilyRow>(
                "SELECT run_id, status FROM runs WHERE parent_run_id = $1 ORDER BY run_id",
            )
            .bind(parent)
            .fetch_all(self.conn())
            .await?;
            family.extend(children);
            next += 1;
        }
        Ok(family)
    }
}

#[async_trait]
impl<D> DatasetStore for D
where
    D: Dialect,
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::Db>,
    i64: Value<D::Db>,
    bool: Value<D::Db>,
    String: Value<D::Db>,
    Option<i64>: Value<D::Db>,
    Option<String>: Value<D::Db>,
    for<'s> &'s str: Encode<'s, D::Db> + Type<D::Db> + ColumnIndex<Row<D>>,
    usize: ColumnIndex<Row<D>>,
{
    /// Cases go in as transactions of their own, each ending once it held the writer
    /// for [`CHUNK_HOLD`], so an upload of any size never keeps other writes (a run's
    /// commits, a `POST /runs`) waiting longer than that. The revision row comes last:
    /// until it is written no one reads the cases. A revision whose cases were stored in
    /// part (an upload cut short by a crash) is taken up after its last stored case.
    async fn put_revision(
        &self,
        revision: DatasetRevision,
        cases: &mut dyn CaseBatches,
    ) -> StoreResult<PutOutcome> {
        if let Some(existing) = self
            .get_revision(&revision.dataset_id, Some(&revision.revision))
            .await?
        {
            return Ok(PutOutcome::Existing(existing));
        }
        let known: Option<i64> =
            sqlx::query_scalar("SELECT content_id FROM dataset_contents WHERE revision = $1")
                .bind(revision.revision.as_str())
                .fetch_optional(self.pool())
                .await?;
        let content_id = match known {
            Some(id) => id,
            None => {
                let mut write = self.begin().await?;
                let id = write.content_id(&revision.revision).await?;
                write.commit().await?;
                id
            }
        };
        // Cases of this content already stored (for another dataset, or in part).
        let stored: Option<i64> =
            sqlx::query_scalar("SELECT MAX(case_index) FROM dataset_cases WHERE content_id = $1")
                .bind(content_id)
                .fetch_one(self.pool())
                .await?;
        let mut next = stored.map_or(0, |last| last + 1);
        let mut pending: Vec<StoredCase> = Vec::new();
        // All stored (another dataset holds the same content): nothing to read.
        let complete = u64::try_from(next).is_ok_and(|n| n >= revision.case_count);
        if !complete {
            loop {
                let batch = cases.next_batch().await?;
                let done = batch.is_empty();
                for case in batch {
                    if to_i64(case.case_index)? >= next {
                        pending.push(case);
                    }
                }
                if pending.is_empty() {
                    if done {
                        break;
                    }
                    continue;
                }
                let mut write = self.begin().await?;
                let held = std::time::Instant::now();
                write.insert_revision_cases(content_id, &pending).await?;
                next += pending.len() as i64;
                pending.clear();
                // More of the spool into the same transaction while it is young and no
                // other write waits (a `POST /runs` waits one batch, not a whole chunk).
                while !done && held.elapsed() < CHUNK_HOLD && !self.writers_waiting() {
                    let more = cases.next_batch().await?;
                    if more.is_empty() {
                        break;
                    }
                    next += more.len() as i64;
                    write.insert_revision_cases(content_id, &more).await?;
                }
                let committing = std::time::Instant::now();
                write.commit().await?;
                tracing::debug!(
                    target: "themis::store::writer",
                    cases = next,
                    held_ms = held.elapsed().as_millis() as u64,
                    commit_ms = committing.elapsed().as_millis() as u64,
                    "upload chunk committed"
                );
                self.after_bulk_commit().await?;
                if done {
                    break;
                }
            }
        }
        if u64::try_from(next).ok() != Some(revision.case_count) {
            return Err(StoreError::Input(format!(
                "{next} cases for a revision of {}",
                revision.case_count
            )));
        }
        let mut write = self.begin().await?;
        if let Some(existing) = write
            .revision_row(&revision.dataset_id, &revision.revision)
            .await?
        {
            return Ok(PutOutcome::Existing(existing));
        }
        sqlx::query(
            "INSERT INTO dataset_revisions (dataset_id, revision, case_count, bytes, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(revision.dataset_id.as_str())
        .bind(revision.revision.as_str())
        .bind(to_i64(revision.case_count)?)
        .bind(to_i64(revision.bytes)?)
        .bind(revision.created_at.as_millis())
        .execute(write.conn())
        .await?;
        write.commit().await?;
        Ok(PutOutcome::Created(revision))
    }

    async fn get_revision(
        &self,
        dataset_id: &str,
        revision: Option<&Revision>,
    ) -> StoreResult<Option<DatasetRevision>> {
        let mut query = QueryBuilder::<D::Db>::new(format!(
            "SELECT {REVISION_COLUMNS} FROM dataset_revisions WHERE dataset_id = "
        ));
        query.push_bind(dataset_id);
        if let Some(revision) = revision {
            query.push(" AND revision = ").push_bind(revision.as_str());
        }
        query.push(" ORDER BY created_at DESC, revision DESC LIMIT 1");
        query
            .build_query_as::<RevisionRow>()
            .fetch_optional(self.pool())
            .await?
            .map(RevisionRow::into_revision)
            .transpose()
    }

    async fn list_revisions(
        &self,
        dataset_id: &str,
        before: Option<&RevisionCursor>,
        limit: u32,
    ) -> StoreResult<Vec<DatasetRevision>> {
        let mut query = QueryBuilder::<D::Db>::new(format!(
            "SELECT {REVISION_COLUMNS} FROM dataset_revisions WHERE dataset_id = "
        ));
        query.push_bind(dataset_id);
        if let Some(cursor) = before {
            query
                .push(" AND (created_at, revision) < (")
                .push_bind(cursor.created_at.as_millis())
                .push(", ")
                .push_bind(cursor.revision.as_str())
                .push(")");
        }
        query
            .push(" ORDER BY created_at DESC, revision DESC LIMIT ")
            .push_bind(i64::from(limit));
        let rows = query
            .build_query_as::<RevisionRow>()
            .fetch_all(self.pool())
            .await?;
        rows.into_iter().map(RevisionRow::into_revision).collect()
    }

    async fn list_datasets(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<DatasetSummary>> {
        // The newest revision of each dataset, with the dataset's revision count.
        let mut query = QueryBuilder::<D::Db>::new(
            "SELECT r.dataset_id, r.revision, r.case_count, r.bytes, r.created_at, \
             (SELECT COUNT(*) FROM dataset_revisions c WHERE c.dataset_id = r.dataset_id) AS revisions \
             FROM dataset_revisions r WHERE NOT EXISTS (SELECT 1 FROM dataset_revisions n \
             WHERE n.dataset_id = r.dataset_id AND (n.created_at, n.revision) > (r.created_at, r.revision))",
        );
        if let Some(after) = after {
            query.push(" AND r.dataset_id > ").push_bind(after);
        }
        query
            .push(" ORDER BY r.dataset_id LIMIT ")
            .push_bind(i64::from(limit));
        let rows = query
            .build_query_as::<SummaryRow>()
            .fetch_all(self.pool())
            .await?;
        rows.into_iter()
            .map(|row| {
                let latest = row.latest.into_revision()?;
                Ok(DatasetSummary {
                    dataset_id: latest.dataset_id.clone(),
                    latest,
                    revisions: to_u64(row.revisions)?,
                })
            })
            .collect()
    }

    async fn revision_cases(
        &self,
        revision: &Revision,
        range: Range<u64>,
    ) -> StoreResult<Vec<StoredCase>> {
        let rows = sqlx::query_as::<_, CaseRow>(
            "SELECT case_index, case_id, case_json FROM dataset_cases WHERE content_id = \
             (SELECT content_id FROM dataset_contents WHERE revision = $1) \
             AND case_index >= $2 AND case_index < $3 ORDER BY case_index",
        )
        .bind(revision.as_str())
        .bind(to_i64(range.start)?)
        .bind(to_i64(range.end.min(i64::MAX as u64))?)
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|row| {
                Ok(StoredCase {
                    case_index: to_u64(row.case_index)?,
                    case_id: row.case_id,
                    json: row.case_json,
                })
            })
            .collect()
    }

    async fn delete_revisions(
        &self,
        dataset_id: &str,
        revision: Option<&Revision>,
    ) -> StoreResult<DeleteRevisions> {
        let mut write = self.begin().await?;
        let mut query = QueryBuilder::<D::Db>::new(
            "SELECT revision FROM dataset_revisions WHERE dataset_id = ",
        );
        query.push_bind(dataset_id);
        if let Some(revision) = revision {
            query.push(" AND revision = ").push_bind(revision.as_str());
        }
        query.push(D::LOCK_ROWS);
        let doomed: Vec<String> = query
            .build_query_scalar::<String>()
            .fetch_all(write.conn())
            .await?;
        if doomed.is_empty() {
            return Ok(DeleteRevisions::NotFound);
        }
        let mut users = QueryBuilder::<D::Db>::new(
            "SELECT DISTINCT run_id FROM run_datasets WHERE dataset_id = ",
        );
        users.push_bind(dataset_id);
        if let Some(revision) = revision {
            users.push(" AND revision = ").push_bind(revision.as_str());
        }
        users
            .push(" ORDER BY run_id LIMIT ")
            .push_bind(MAX_NAMED_RUNS as i64);
        let users: Vec<String> = users
            .build_query_scalar::<String>()
            .fetch_all(write.conn())
            .await?;
        if !users.is_empty() {
            let runs = users
                .iter()
                .map(|id| parse_run_id(id))
                .collect::<StoreResult<Vec<_>>>()?;
            return Ok(DeleteRevisions::InUse(runs));
        }
        let mut deleted = Vec::with_capacity(doomed.len());
        for gone in doomed {
            sqlx::query("DELETE FROM dataset_revisions WHERE dataset_id = $1 AND revision = $2")
                .bind(dataset_id)
                .bind(gone.as_str())
                .execute(write.conn())
                .await?;
            // The cases stay while another dataset holds the same revision.
            sqlx::query(
                "DELETE FROM dataset_cases WHERE content_id = \
                 (SELECT content_id FROM dataset_contents WHERE revision = $1) AND NOT EXISTS \
                 (SELECT 1 FROM dataset_revisions WHERE revision = $1)",
            )
            .bind(gone.as_str())
            .execute(write.conn())
            .await?;
            deleted.push(parse_revision(&gone)?);
        }
        write.commit().await?;
        Ok(DeleteRevisions::Deleted(deleted))
    }

    async fn delete_run(&self, run_id: &RunId, cascade: bool) -> StoreResult<DeleteRun> {
        let mut write = self.begin().await?;
        let family = write.family(run_id).await?;
        if family.is_empty() {
            return Ok(DeleteRun::NotFound);
        }
        let ids = family
            .iter()
            .map(|row| parse_run_id(&row.run_id))
            .collect::<StoreResult<Vec<_>>>()?;
        if ids.len() > 1 && !cascade {
            return Ok(DeleteRun::HasChildren(
                ids[1..].iter().take(MAX_NAMED_RUNS).cloned().collect(),
            ));
        }
        let unfinished: Vec<RunId> = family
            .iter()
            .zip(&ids)
            .filter(|(row, _)| {
                !crate::model::RunStatus::parse(&row.status).is_some_and(|s| s.is_terminal())
            })
            .map(|(_, id)| id.clone())
            .take(MAX_NAMED_RUNS)
            .collect();
        if !unfinished.is_empty() {
            return Ok(DeleteRun::Unfinished(unfinished));
        }
        // Children first: each run's rows go with it (its records and events deleted
        // here, its chunks, dataset uses and notes of responses it used by cascade). A response it stored that
        // another run used passes to one of those runs; an heir's own note of it may
        // stay, harmlessly: every query below looks past the owner's own note.
        for id in ids.iter().rev() {
            let id = id.as_str();
            sqlx::query(
                "DELETE FROM response_cache WHERE run_id = $1 AND NOT EXISTS \
                 (SELECT 1 FROM response_cache_users u WHERE u.digest = response_cache.digest AND u.run_id <> $1)",
            )
            .bind(id)
            .execute(write.conn())
            .await?;
            sqlx::query(
                "UPDATE response_cache SET run_id = (SELECT MIN(u.run_id) FROM response_cache_users u \
                 WHERE u.digest = response_cache.digest AND u.run_id <> $1) WHERE run_id = $1",
            )
            .bind(id)
            .execute(write.conn())
            .await?;
            // Not by cascade on Postgres: these have no foreign key (each insert checked
            // it, and the commit already holds the run; see the migration).
            for table in ["case_records", "record_batches", "event_batches"] {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DELETE FROM {table} WHERE run_id = $1"
                )))
                .bind(id)
                .execute(write.conn())
                .await?;
            }
            sqlx::query("DELETE FROM runs WHERE run_id = $1")
                .bind(id)
                .execute(write.conn())
                .await?;
        }
        write.commit().await?;
        Ok(DeleteRun::Deleted(ids))
    }

    async fn expired_runs(&self, before: Timestamp, limit: u32) -> StoreResult<Vec<RunId>> {
        let ids: Vec<String> = sqlx::query_scalar::<_, String>(
            "SELECT run_id FROM runs r WHERE finished_at < $1 \
             AND status IN ('completed', 'failed', 'cancelled') \
             AND NOT EXISTS (SELECT 1 FROM runs c WHERE c.parent_run_id = r.run_id) \
             ORDER BY finished_at, run_id LIMIT $2",
        )
        .bind(before.as_millis())
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        ids.iter().map(|id| parse_run_id(id)).collect()
    }
}

/// Records which revisions a new run uses, in the transaction that creates it (a
/// revision deleted meanwhile fails the creation).
pub(super) async fn insert_uses<D>(
    write: &mut Write<'_, D>,
    run_id: &RunId,
    uses: &[DatasetUse],
) -> StoreResult<()>
where
    D: Dialect,
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::Db>,
    i64: Value<D::Db>,
    for<'s> &'s str: Encode<'s, D::Db> + Type<D::Db>,
    usize: ColumnIndex<Row<D>>,
{
    for (position, used) in uses.iter().enumerate() {
        let exists = sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM dataset_revisions WHERE dataset_id = $1 AND revision = $2",
        )
        .bind(used.dataset_id.as_str())
        .bind(used.revision.as_str())
        .fetch_one(write.conn())
        .await?;
        if exists == 0 {
            return Err(StoreError::MissingRevision {
                dataset_id: used.dataset_id.clone(),
                revision: used.revision.to_string(),
            });
        }
        sqlx::query(
            "INSERT INTO run_datasets (run_id, position, dataset_id, revision) VALUES ($1, $2, $3, $4)",
        )
        .bind(run_id.as_str())
        .bind(to_i64(position as u64)?)
        .bind(used.dataset_id.as_str())
        .bind(used.revision.as_str())
        .execute(write.conn())
        .await?;
    }
    Ok(())
}
