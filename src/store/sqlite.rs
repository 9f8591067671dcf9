//! The embedded default store: one SQLite file in WAL mode, created and migrated on open.
//!
//! SQLite has one writer at a time. Writes take an in-process lock and then `BEGIN
//! IMMEDIATE`, so two writers never deadlock upgrading read locks; reads go through the
//! pool concurrently (WAL lets them run beside the writer).

use std::collections::HashSet;
use std::ops::Range;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool, Transaction};
use tokio::sync::Mutex;

use super::apply::{CancelStep, RunState, fence, touched_chunks};
use super::sql::{SUMMARY_COLUMNS, from_json, json_text, to_i64, to_u64};
use super::{
    CancelOutcome, CaseCommit, CaseQuery, Chunk, ChunkStatus, CommitBatch, CommitOutcome,
    CreateOutcome, NewRun, RunQuery, Store, StoreError, StoreResult, chunk_count, chunk_range,
};
use crate::model::{
    AggregateState, CaseRecord, CaseStatus, Progress, RunEvent, RunId, RunKind, RunRecord,
    RunStatus, Timestamp,
};

/// SQLite's bound-parameter limit is 32766; stay well below it per statement.
const MAX_PARAMS: usize = 30_000;

pub struct SqliteStore {
    pool: SqlitePool,
    write: Mutex<()>,
    /// Held for the store's lifetime (none for in-memory databases).
    _lock: Option<super::lock::FileLock>,
}

impl SqliteStore {
    /// Opens (creating if missing) and migrates the database at `url`
    /// (`sqlite://file.db`, `sqlite:file.db`, `sqlite::memory:`).
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(if in_memory {
                SqliteJournalMode::Memory
            } else {
                SqliteJournalMode::Wal
            })
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // A larger page cache and memory-mapped reads keep hot pages out of read(2).
            .pragma("cache_size", "-32768")
            .pragma("mmap_size", "268435456");
        // Before anything touches the file: a second process must not reset our leases.
        let lock = if in_memory {
            None
        } else {
            Some(super::lock::FileLock::for_database(options.get_filename())?)
        };
        // An in-memory database exists per connection: keep exactly one.
        let pool = SqlitePoolOptions::new()
            .max_connections(if in_memory { 1 } else { 8 })
            .min_connections(1)
            .idle_timeout(if in_memory {
                None
            } else {
                Some(Duration::from_secs(600))
            })
            .max_lifetime(if in_memory {
                None
            } else {
                Some(Duration::from_secs(3600))
            })
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        // SQLite serves one process: any lease left in the file belongs to a process that
        // is gone, so its chunks are free at once.
        sqlx::query(
            "UPDATE run_chunks SET lease_expires_at = 0 WHERE owner IS NOT NULL AND done = 0",
        )
        .execute(&pool)
        .await?;
        Ok(SqliteStore {
            pool,
            write: Mutex::new(()),
            _lock: lock,
        })
    }

    /// Opens a database file.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        Self::connect(&format!("sqlite://{}", path.display())).await
    }

    async fn begin_write(
        &self,
    ) -> StoreResult<(
        tokio::sync::MutexGuard<'_, ()>,
        Transaction<'static, Sqlite>,
    )> {
        let guard = self.write.lock().await;
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        Ok((guard, tx))
    }
}

/// Builds a record from a row; `definition`/`runtime` only when selected.
fn run_from_row(row: &SqliteRow, full: bool) -> StoreResult<RunRecord> {
    let text = |name: &str| -> StoreResult<String> { Ok(row.try_get::<String, _>(name)?) };
    let int = |name: &str| -> StoreResult<i64> { Ok(row.try_get::<i64, _>(name)?) };
    let opt_time = |name: &str| -> StoreResult<Option<Timestamp>> {
        Ok(row
            .try_get::<Option<i64>, _>(name)?
            .map(Timestamp::from_millis))
    };
    let kind = text("kind")?;
    let status = text("status")?;
    Ok(RunRecord {
        run_id: text("run_id")?
            .parse()
            .map_err(|_| StoreError::Corrupt("bad run id".into()))?,
        kind: RunKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown kind {kind}")))?,
        parent_run_id: row
            .try_get::<Option<String>, _>("parent_run_id")?
            .map(|p| {
                p.parse()
                    .map_err(|_| StoreError::Corrupt("bad parent run id".into()))
            })
            .transpose()?,
        status: RunStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown status {status}")))?,
        definition: if full {
            from_json(&text("definition")?)?
        } else {
            Value::Null
        },
        runtime: if full {
            from_json(&text("runtime")?)?
        } else {
            Value::Null
        },
        progress: Progress {
            total: to_u64(int("total")?)?,
            completed: to_u64(int("completed")?)?,
            failed: to_u64(int("failed")?)?,
        },
        usage: from_json(&text("usage")?)?,
        aggregates: from_json(&text("aggregates")?)?,
        error: row.try_get::<Option<String>, _>("error")?,
        cancel_requested: int("cancel_requested")? != 0,
        last_seq: to_u64(int("last_seq")?)?,
        version: to_u64(int("version")?)?,
        created_at: Timestamp::from_millis(int("created_at")?),
        started_at: opt_time("started_at")?,
        finished_at: opt_time("finished_at")?,
        updated_at: Timestamp::from_millis(int("updated_at")?),
    })
}

/// Loads a run's row with its aggregate state inside a write transaction.
async fn load_state(
    tx: &mut Transaction<'static, Sqlite>,
    run_id: &RunId,
) -> StoreResult<RunState> {
    let sql = format!("SELECT {SUMMARY_COLUMNS}, aggregate_state FROM runs WHERE run_id = ?");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(run_id.as_str())
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::RunNotFound(run_id.clone()))?;
    let aggregates: AggregateState = from_json(&row.try_get::<String, _>("aggregate_state")?)?;
    Ok(RunState {
        record: run_from_row(&row, false)?,
        aggregates,
    })
}

/// Writes the mutable part of a run's row back.
async fn save_state(tx: &mut Transaction<'static, Sqlite>, state: &RunState) -> StoreResult<()> {
    let r = &state.record;
    sqlx::query(
        "UPDATE runs SET status = ?, completed = ?, failed = ?, usage = ?, aggregates = ?, aggregate_state = ?, \
         error = ?, cancel_requested = ?, last_seq = ?, version = ?, started_at = ?, finished_at = ?, updated_at = ? \
         WHERE run_id = ?",
    )
    .bind(r.status.as_str())
    .bind(to_i64(r.progress.completed)?)
    .bind(to_i64(r.progress.failed)?)
    .bind(json_text(&r.usage)?)
    .bind(json_text(&r.aggregates)?)
    .bind(json_text(&state.aggregates)?)
    .bind(r.error.clone())
    .bind(i64::from(r.cancel_requested))
    .bind(to_i64(r.last_seq)?)
    .bind(to_i64(r.version)?)
    .bind(r.started_at.map(|t| t.as_millis()))
    .bind(r.finished_at.map(|t| t.as_millis()))
    .bind(r.updated_at.as_millis())
    .bind(r.run_id.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Which of `chunks` of the run `owner` holds (not done), inside the write transaction.
async fn held_chunks(
    tx: &mut Transaction<'static, Sqlite>,
    run_id: &RunId,
    owner: &str,
    chunks: &[u64],
) -> StoreResult<HashSet<u64>> {
    let mut held = HashSet::new();
    for ids in chunks.chunks(MAX_PARAMS) {
        let mut builder =
            QueryBuilder::<Sqlite>::new("SELECT chunk_index FROM run_chunks WHERE run_id = ");
        builder
            .push_bind(run_id.as_str().to_owned())
            .push(" AND owner = ")
            .push_bind(owner.to_owned())
            .push(" AND done = 0 AND chunk_index IN (");
        let mut separated = builder.separated(", ");
        for chunk in ids {
            separated.push_bind(to_i64(*chunk)?);
        }
        builder.push(")");
        for row in builder.build().fetch_all(&mut **tx).await? {
            held.insert(to_u64(row.try_get::<i64, _>(0)?)?);
        }
    }
    Ok(held)
}

async fn insert_events(
    tx: &mut Transaction<'static, Sqlite>,
    events: &[RunEvent],
) -> StoreResult<()> {
    const PER_ROW: usize = 5;
    for chunk in events.chunks(MAX_PARAMS / PER_ROW) {
        let rows = chunk
            .iter()
            .map(|e| Ok((e, json_text(e)?, to_i64(e.seq)?)))
            .collect::<StoreResult<Vec<_>>>()?;
        let mut builder = QueryBuilder::<Sqlite>::new(
            "INSERT INTO events (run_id, seq, event_type, occurred_at, payload) ",
        );
        builder.push_values(rows, |mut b, (event, payload, seq)| {
            b.push_bind(event.run_id.as_str().to_owned())
                .push_bind(seq)
                .push_bind(event.event_type())
                .push_bind(event.occurred_at.as_millis())
                .push_bind(payload);
        });
        builder.build().execute(&mut **tx).await?;
    }
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_run(&self, run: NewRun) -> StoreResult<CreateOutcome> {
        let index_space = to_i64(run.index_space)?;
        let chunks = to_i64(chunk_count(run.index_space))?;
        let record = run.into_record();
        let (_guard, mut tx) = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO runs (run_id, kind, parent_run_id, status, definition, runtime, total, usage, aggregates, \
             aggregate_state, version, created_at, updated_at, index_space) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id) DO NOTHING",
        )
        .bind(record.run_id.as_str())
        .bind(record.kind.as_str())
        .bind(record.parent_run_id.as_ref().map(|p| p.as_str().to_owned()))
        .bind(record.status.as_str())
        .bind(json_text(&record.definition)?)
        .bind(json_text(&record.runtime)?)
        .bind(to_i64(record.progress.total)?)
        .bind(json_text(&record.usage)?)
        .bind(json_text(&record.aggregates)?)
        .bind(json_text(&AggregateState::default())?)
        .bind(to_i64(record.version)?)
        .bind(record.created_at.as_millis())
        .bind(record.updated_at.as_millis())
        .bind(index_space)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 1 && chunks > 0 {
            sqlx::query(
                "INSERT INTO run_chunks (run_id, chunk_index) \
                 WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i + 1 < ?) SELECT ?, i FROM c",
            )
            .bind(chunks)
            .bind(record.run_id.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        if inserted == 1 {
            return Ok(CreateOutcome::Created(record));
        }
        let existing = self
            .get_run(&record.run_id)
            .await?
            .ok_or_else(|| StoreError::RunNotFound(record.run_id.clone()))?;
        Ok(CreateOutcome::Existing(existing))
    }

    async fn get_run(&self, run_id: &RunId) -> StoreResult<Option<RunRecord>> {
        let sql =
            format!("SELECT {SUMMARY_COLUMNS}, definition, runtime FROM runs WHERE run_id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(run_id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| run_from_row(&row, true)).transpose()
    }

    async fn get_run_summary(&self, run_id: &RunId) -> StoreResult<Option<RunRecord>> {
        let sql = format!("SELECT {SUMMARY_COLUMNS} FROM runs WHERE run_id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(run_id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| run_from_row(&row, false)).transpose()
    }

    async fn list_runs(&self, query: &RunQuery) -> StoreResult<Vec<RunRecord>> {
        let mut builder =
            QueryBuilder::<Sqlite>::new(format!("SELECT {SUMMARY_COLUMNS} FROM runs WHERE 1 = 1"));
        if let Some(status) = query.status {
            builder.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(parent) = &query.parent_run_id {
            builder
                .push(" AND parent_run_id = ")
                .push_bind(parent.as_str().to_owned());
        }
        if let Some(cursor) = &query.before {
            builder
                .push(" AND (created_at < ")
                .push_bind(cursor.created_at.as_millis())
                .push(" OR (created_at = ")
                .push_bind(cursor.created_at.as_millis())
                .push(" AND run_id < ")
                .push_bind(cursor.run_id.as_str().to_owned())
                .push("))");
        }
        builder
            .push(" ORDER BY created_at DESC, run_id DESC LIMIT ")
            .push_bind(i64::from(query.limit));
        let rows = builder.build().fetch_all(&self.pool).await?;
        rows.iter().map(|row| run_from_row(row, false)).collect()
    }

    async fn run_ids_with_status(&self, statuses: &[RunStatus]) -> StoreResult<Vec<RunId>> {
        if statuses.is_empty() {
            return Ok(Vec::new());
        }
        let mut builder = QueryBuilder::<Sqlite>::new("SELECT run_id FROM runs WHERE status IN (");
        let mut separated = builder.separated(", ");
        for status in statuses {
            separated.push_bind(status.as_str());
        }
        builder.push(") ORDER BY created_at ASC, run_id ASC");
        let rows = builder.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                row.try_get::<String, _>("run_id")?
                    .parse()
                    .map_err(|_| StoreError::Corrupt("bad run id".into()))
            })
            .collect()
    }

    async fn commit(&self, batch: &CommitBatch) -> StoreResult<CommitOutcome> {
        // Serialise outside the write lock: it is the expensive part.
        let mut prepared = Vec::with_capacity(batch.cases.len());
        for case in &batch.cases {
            prepared.push((
                to_i64(case.record.key.case_index)?,
                case.record.key.dataset_id.clone(),
                case.record.status == CaseStatus::Failed,
                json_text(&case.record)?,
            ));
        }
        let (_guard, mut tx) = self.begin_write().await?;
        let mut state = load_state(&mut tx, &batch.run_id).await?;
        if let Some(skipped) = state.precheck(batch)? {
            return Ok(skipped);
        }
        let mut discarded = 0;
        let mut cases: Vec<&CaseCommit> = batch.cases.iter().collect();
        let mut completed = batch.completed_chunks.clone();
        if let Some(owner) = batch.lease_owner.clone() {
            let held = held_chunks(&mut tx, &batch.run_id, &owner, &touched_chunks(batch)).await?;
            let (keep, chunks) = fence(batch, &held);
            let mut kept = keep.iter();
            prepared.retain(|_| kept.next().copied().unwrap_or(false));
            let mut kept = keep.iter();
            cases.retain(|_| kept.next().copied().unwrap_or(false));
            discarded = keep.iter().filter(|k| !**k).count();
            completed = chunks;
        }
        // One statement per few thousand cases: which rows were new comes back from
        // RETURNING (a case recorded before is skipped with its events).
        let mut inserted = std::collections::HashSet::new();
        const PER_ROW: usize = 5;
        for rows in prepared.chunks(MAX_PARAMS / PER_ROW) {
            let mut builder = QueryBuilder::<Sqlite>::new(
                "INSERT INTO case_records (run_id, case_index, dataset_id, failed, record) ",
            );
            builder.push_values(rows, |mut b, (index, dataset, failed, json)| {
                b.push_bind(batch.run_id.as_str().to_owned())
                    .push_bind(*index)
                    .push_bind(dataset.clone())
                    .push_bind(i64::from(*failed))
                    .push_bind(json.clone());
            });
            builder.push(" ON CONFLICT (run_id, case_index) DO NOTHING RETURNING case_index");
            for row in builder.build().fetch_all(&mut *tx).await? {
                inserted.insert(row.try_get::<i64, _>(0)?);
            }
        }
        let mut kept_events = Vec::new();
        let mut duplicates = 0;
        for (case, (index, ..)) in cases.iter().zip(&prepared) {
            if inserted.remove(index) {
                state.count_case(&case.record);
                kept_events.extend(case.events.iter().cloned());
            } else {
                duplicates += 1;
            }
        }
        for chunk in &completed {
            sqlx::query("UPDATE run_chunks SET done = 1, owner = NULL, lease_expires_at = NULL WHERE run_id = ? AND chunk_index = ?")
                .bind(batch.run_id.as_str())
                .bind(to_i64(*chunk)?)
                .execute(&mut *tx)
                .await?;
        }
        let events = state.finish_commit(kept_events, batch);
        insert_events(&mut tx, &events).await?;
        save_state(&mut tx, &state).await?;
        tx.commit().await?;
        let mut outcome = state.outcome(events, duplicates);
        outcome.discarded = discarded;
        Ok(outcome)
    }

    async fn request_cancel(&self, run_id: &RunId) -> StoreResult<CancelOutcome> {
        let (_guard, mut tx) = self.begin_write().await?;
        let mut state = load_state(&mut tx, run_id).await?;
        let step = state.request_cancel();
        if let CancelStep::Cancelled(events) = &step {
            insert_events(&mut tx, events).await?;
        }
        if !matches!(step, CancelStep::AlreadyFinished) {
            save_state(&mut tx, &state).await?;
        }
        tx.commit().await?;
        drop(_guard);
        let record = self
            .get_run(run_id)
            .await?
            .ok_or_else(|| StoreError::RunNotFound(run_id.clone()))?;
        Ok(match step {
            CancelStep::AlreadyFinished => CancelOutcome::AlreadyFinished(record),
            CancelStep::Requested => CancelOutcome::Requested(record),
            CancelStep::Cancelled(events) => CancelOutcome::Cancelled(record, events),
        })
    }

    async fn recorded_case_indices(
        &self,
        run_id: &RunId,
        range: Range<u64>,
    ) -> StoreResult<Vec<u64>> {
        let rows = sqlx::query(
            "SELECT case_index FROM case_records WHERE run_id = ? AND case_index >= ? AND case_index < ? \
             ORDER BY case_index",
        )
        .bind(run_id.as_str())
        .bind(to_i64(range.start)?)
        .bind(to_i64(range.end)?)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| to_u64(row.try_get::<i64, _>(0)?))
            .collect()
    }

    async fn claim_chunk(
        &self,
        run_id: &RunId,
        owner: &str,
        lease: Duration,
    ) -> StoreResult<Option<Chunk>> {
        let now = Timestamp::now().as_millis();
        let until = now + lease.as_millis() as i64;
        let (_guard, mut tx) = self.begin_write().await?;
        let row = sqlx::query(
            "UPDATE run_chunks SET owner = ?, lease_expires_at = ? WHERE run_id = ? AND chunk_index = ( \
               SELECT chunk_index FROM run_chunks WHERE run_id = ? AND done = 0 \
               AND (lease_expires_at IS NULL OR lease_expires_at <= ?) ORDER BY chunk_index LIMIT 1) \
             RETURNING chunk_index, (SELECT index_space FROM runs WHERE run_id = ?) AS index_space",
        )
        .bind(owner)
        .bind(until)
        .bind(run_id.as_str())
        .bind(run_id.as_str())
        .bind(now)
        .bind(run_id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        let Some(row) = row else { return Ok(None) };
        let chunk_index = to_u64(row.try_get::<i64, _>(0)?)?;
        let range = chunk_range(chunk_index, to_u64(row.try_get::<i64, _>(1)?)?);
        Ok(Some(Chunk {
            chunk_index,
            start: range.start,
            end: range.end,
        }))
    }

    async fn renew_leases(
        &self,
        run_id: &RunId,
        owner: &str,
        chunks: &[u64],
        lease: Duration,
    ) -> StoreResult<Vec<u64>> {
        if chunks.is_empty() {
            return Ok(Vec::new());
        }
        let until = Timestamp::now().as_millis() + lease.as_millis() as i64;
        let (_guard, mut tx) = self.begin_write().await?;
        let mut builder = QueryBuilder::<Sqlite>::new("UPDATE run_chunks SET lease_expires_at = ");
        builder
            .push_bind(until)
            .push(" WHERE run_id = ")
            .push_bind(run_id.as_str().to_owned())
            .push(" AND owner = ")
            .push_bind(owner.to_owned())
            .push(" AND done = 0 AND chunk_index IN (");
        let mut separated = builder.separated(", ");
        for chunk in chunks {
            separated.push_bind(to_i64(*chunk)?);
        }
        builder.push(") RETURNING chunk_index");
        let rows = builder.build().fetch_all(&mut *tx).await?;
        tx.commit().await?;
        let mut held = rows
            .iter()
            .map(|row| to_u64(row.try_get::<i64, _>(0)?))
            .collect::<StoreResult<Vec<_>>>()?;
        held.sort_unstable();
        Ok(held)
    }

    async fn release_leases(&self, run_id: &RunId, owner: &str) -> StoreResult<()> {
        let (_guard, mut tx) = self.begin_write().await?;
        sqlx::query(
            "UPDATE run_chunks SET lease_expires_at = 0 WHERE run_id = ? AND owner = ? AND done = 0",
        )
        .bind(run_id.as_str())
        .bind(owner)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn begin_attempt(&self, run_id: &RunId) -> StoreResult<u64> {
        let (_guard, mut tx) = self.begin_write().await?;
        let row = sqlx::query(
            "UPDATE runs SET attempts = attempts + 1 WHERE run_id = ? RETURNING attempts - 1",
        )
        .bind(run_id.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::RunNotFound(run_id.clone()))?;
        tx.commit().await?;
        to_u64(row.try_get::<i64, _>(0)?)
    }

    async fn end_attempt(&self, run_id: &RunId) -> StoreResult<()> {
        let (_guard, mut tx) = self.begin_write().await?;
        sqlx::query("UPDATE runs SET attempts = MAX(attempts - 1, 0) WHERE run_id = ?")
            .bind(run_id.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn chunk_status(&self, run_id: &RunId, owner: &str) -> StoreResult<ChunkStatus> {
        let row = sqlx::query(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN lease_expires_at > ?1 AND owner <> ?2 THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN owner IS NOT NULL AND lease_expires_at <= ?1 THEN 1 ELSE 0 END), 0) \
             FROM run_chunks WHERE run_id = ?3 AND done = 0",
        )
        .bind(Timestamp::now().as_millis())
        .bind(owner)
        .bind(run_id.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(ChunkStatus {
            unfinished: to_u64(row.try_get::<i64, _>(0)?)?,
            held_by_others: to_u64(row.try_get::<i64, _>(1)?)?,
            abandoned: to_u64(row.try_get::<i64, _>(2)?)?,
        })
    }

    async fn case_records(
        &self,
        run_id: &RunId,
        query: &CaseQuery,
    ) -> StoreResult<Vec<CaseRecord>> {
        let mut builder =
            QueryBuilder::<Sqlite>::new("SELECT record FROM case_records WHERE run_id = ");
        builder.push_bind(run_id.as_str().to_owned());
        if let Some(after) = query.after_index {
            builder.push(" AND case_index > ").push_bind(to_i64(after)?);
        }
        if let Some(dataset) = &query.dataset_id {
            builder
                .push(" AND dataset_id = ")
                .push_bind(dataset.clone());
        }
        if query.failed_only {
            builder.push(" AND failed = 1");
        }
        builder
            .push(" ORDER BY case_index LIMIT ")
            .push_bind(i64::from(query.limit));
        let rows = builder.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| from_json(&row.try_get::<String, _>(0)?))
            .collect()
    }

    async fn events_after(
        &self,
        run_id: &RunId,
        after: u64,
        limit: u32,
    ) -> StoreResult<Vec<RunEvent>> {
        let rows = sqlx::query(
            "SELECT payload FROM events WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(run_id.as_str())
        .bind(to_i64(after)?)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| from_json(&row.try_get::<String, _>(0)?))
            .collect()
    }

    async fn cache_get(&self, key: &str) -> StoreResult<Option<Value>> {
        let row = sqlx::query("SELECT value FROM response_cache WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| from_json(&row.try_get::<String, _>(0)?))
            .transpose()
    }

    async fn cache_put(&self, key: &str, value: &Value) -> StoreResult<()> {
        let text = json_text(value)?;
        let (_guard, mut tx) = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO response_cache (key, value, created_at) VALUES (?, ?, ?) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(text)
        .bind(Timestamp::now().as_millis())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
