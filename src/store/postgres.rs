//! The shared store: several service instances on one Postgres database.
//!
//! Postgres is the coordinator: the run row is locked (`FOR UPDATE`) by every commit, so
//! sequence numbers, progress and aggregates stay consistent whoever writes; chunks are
//! claimed with `FOR UPDATE SKIP LOCKED` under leases on the database clock; every
//! commit sends `NOTIFY themis_events` so event streams on other instances wake at once.

use std::ops::Range;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions, PgRow};
use sqlx::{PgPool, Postgres, QueryBuilder, Row, Transaction};
use tokio::sync::mpsc;

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

/// The channel commits notify on; the payload is `{run_id} {origin}`.
const CHANNEL: &str = "themis_events";
/// Postgres allows 65535 bound parameters per statement.
const MAX_PARAMS: usize = 60_000;

pub struct PostgresStore {
    pool: PgPool,
    /// Tags this process's notifications so it can ignore its own.
    origin: String,
}

type PgTx = Transaction<'static, Postgres>;

fn run_from_row(row: &PgRow, full: bool) -> StoreResult<RunRecord> {
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
        cancel_requested: row.try_get::<bool, _>("cancel_requested")?,
        last_seq: to_u64(int("last_seq")?)?,
        version: to_u64(int("version")?)?,
        created_at: Timestamp::from_millis(int("created_at")?),
        started_at: opt_time("started_at")?,
        finished_at: opt_time("finished_at")?,
        updated_at: Timestamp::from_millis(int("updated_at")?),
    })
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:pass@host:5432/db`) and runs the migrations.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await?;
        // Several instances may start at once: one migrates, the others wait on the lock.
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(PostgresStore {
            pool,
            origin: uuid::Uuid::new_v4().simple().to_string(),
        })
    }

    /// Locks the run row for the rest of the transaction and loads its state.
    async fn lock_state(tx: &mut PgTx, run_id: &RunId) -> StoreResult<RunState> {
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS}, aggregate_state FROM runs WHERE run_id = $1 FOR UPDATE"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(run_id.as_str())
            .fetch_optional(&mut **tx)
            .await?
            .ok_or_else(|| StoreError::RunNotFound(run_id.clone()))?;
        Ok(RunState {
            aggregates: from_json(&row.try_get::<String, _>("aggregate_state")?)?,
            record: run_from_row(&row, false)?,
        })
    }

    async fn save_state(&self, tx: &mut PgTx, state: &RunState) -> StoreResult<()> {
        let r = &state.record;
        sqlx::query(
            "UPDATE runs SET status = $1, completed = $2, failed = $3, usage = $4, aggregates = $5, \
             aggregate_state = $6, error = $7, cancel_requested = $8, last_seq = $9, version = $10, \
             started_at = $11, finished_at = $12, updated_at = $13 WHERE run_id = $14",
        )
        .bind(r.status.as_str())
        .bind(to_i64(r.progress.completed)?)
        .bind(to_i64(r.progress.failed)?)
        .bind(json_text(&r.usage)?)
        .bind(json_text(&r.aggregates)?)
        .bind(json_text(&state.aggregates)?)
        .bind(r.error.clone())
        .bind(r.cancel_requested)
        .bind(to_i64(r.last_seq)?)
        .bind(to_i64(r.version)?)
        .bind(r.started_at.map(|t| t.as_millis()))
        .bind(r.finished_at.map(|t| t.as_millis()))
        .bind(r.updated_at.as_millis())
        .bind(r.run_id.as_str())
        .execute(&mut **tx)
        .await?;
        // Delivered when the transaction commits, to every listening instance.
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(format!("{} {}", r.run_id, self.origin))
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    async fn insert_events(tx: &mut PgTx, events: &[RunEvent]) -> StoreResult<()> {
        const PER_ROW: usize = 5;
        for chunk in events.chunks(MAX_PARAMS / PER_ROW) {
            let rows = chunk
                .iter()
                .map(|e| Ok((e, json_text(e)?, to_i64(e.seq)?)))
                .collect::<StoreResult<Vec<_>>>()?;
            let mut builder = QueryBuilder::<Postgres>::new(
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
}

#[async_trait]
impl Store for PostgresStore {
    async fn create_run(&self, run: NewRun) -> StoreResult<CreateOutcome> {
        let index_space = to_i64(run.index_space)?;
        let chunks = to_i64(chunk_count(run.index_space))?;
        let record = run.into_record();
        let mut tx = self.pool.begin().await?;
        // The primary key decides between concurrent identical submissions.
        let inserted = sqlx::query(
            "INSERT INTO runs (run_id, kind, parent_run_id, status, definition, runtime, total, usage, aggregates, \
             aggregate_state, version, created_at, updated_at, index_space) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) ON CONFLICT (run_id) DO NOTHING",
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
            sqlx::query("INSERT INTO run_chunks (run_id, chunk_index) SELECT $1, generate_series(0, $2 - 1)")
                .bind(record.run_id.as_str())
                .bind(chunks)
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
            format!("SELECT {SUMMARY_COLUMNS}, definition, runtime FROM runs WHERE run_id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(run_id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| run_from_row(&row, true)).transpose()
    }

    async fn get_run_summary(&self, run_id: &RunId) -> StoreResult<Option<RunRecord>> {
        let sql = format!("SELECT {SUMMARY_COLUMNS} FROM runs WHERE run_id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(run_id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| run_from_row(&row, false)).transpose()
    }

    async fn list_runs(&self, query: &RunQuery) -> StoreResult<Vec<RunRecord>> {
        let mut builder =
            QueryBuilder::<Postgres>::new(format!("SELECT {SUMMARY_COLUMNS} FROM runs WHERE TRUE"));
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
                .push(" AND (created_at, run_id) < (")
                .push_bind(cursor.created_at.as_millis())
                .push(", ")
                .push_bind(cursor.run_id.as_str().to_owned())
                .push(")");
        }
        builder
            .push(" ORDER BY created_at DESC, run_id DESC LIMIT ")
            .push_bind(i64::from(query.limit));
        let rows = builder.build().fetch_all(&self.pool).await?;
        rows.iter().map(|row| run_from_row(row, false)).collect()
    }

    async fn run_ids_with_status(&self, statuses: &[RunStatus]) -> StoreResult<Vec<RunId>> {
        let statuses: Vec<&str> = statuses.iter().map(RunStatus::as_str).collect();
        let rows = sqlx::query(
            "SELECT run_id FROM runs WHERE status = ANY($1) ORDER BY created_at, run_id",
        )
        .bind(statuses)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                row.try_get::<String, _>(0)?
                    .parse()
                    .map_err(|_| StoreError::Corrupt("bad run id".into()))
            })
            .collect()
    }

    async fn commit(&self, batch: &CommitBatch) -> StoreResult<CommitOutcome> {
        let mut prepared = Vec::with_capacity(batch.cases.len());
        for case in &batch.cases {
            prepared.push((
                to_i64(case.record.key.case_index)?,
                case.record.key.dataset_id.clone(),
                case.record.status == CaseStatus::Failed,
                json_text(&case.record)?,
            ));
        }
        let mut tx = self.pool.begin().await?;
        let mut state = Self::lock_state(&mut tx, &batch.run_id).await?;
        if let Some(skipped) = state.precheck(batch)? {
            return Ok(skipped);
        }
        let mut discarded = 0;
        let mut cases: Vec<&CaseCommit> = batch.cases.iter().collect();
        let mut completed = batch.completed_chunks.clone();
        if let Some(owner) = batch.lease_owner.clone() {
            // The held chunks stay locked until the commit: nobody claims them meanwhile.
            let chunks = touched_chunks(batch)
                .into_iter()
                .map(to_i64)
                .collect::<StoreResult<Vec<_>>>()?;
            let rows = sqlx::query(
                "SELECT chunk_index FROM run_chunks WHERE run_id = $1 AND owner = $2 AND NOT done \
                 AND chunk_index = ANY($3) FOR UPDATE",
            )
            .bind(batch.run_id.as_str())
            .bind(owner)
            .bind(chunks)
            .fetch_all(&mut *tx)
            .await?;
            let held = rows
                .iter()
                .map(|row| to_u64(row.try_get::<i64, _>(0)?))
                .collect::<StoreResult<std::collections::HashSet<_>>>()?;
            let (keep, chunks) = fence(batch, &held);
            let mut kept = keep.iter();
            prepared.retain(|_| kept.next().copied().unwrap_or(false));
            let mut kept = keep.iter();
            cases.retain(|_| kept.next().copied().unwrap_or(false));
            discarded = keep.iter().filter(|k| !**k).count();
            completed = chunks;
        }
        // Which of the cases are new: a case another instance recorded first is skipped
        // with its events.
        let mut inserted = std::collections::HashSet::new();
        const PER_ROW: usize = 5;
        for rows in prepared.chunks(MAX_PARAMS / PER_ROW) {
            let mut builder = QueryBuilder::<Postgres>::new(
                "INSERT INTO case_records (run_id, case_index, dataset_id, failed, record) ",
            );
            builder.push_values(rows, |mut b, (index, dataset, failed, json)| {
                b.push_bind(batch.run_id.as_str().to_owned())
                    .push_bind(*index)
                    .push_bind(dataset.clone())
                    .push_bind(*failed)
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
        if !completed.is_empty() {
            let chunks = completed
                .iter()
                .map(|c| to_i64(*c))
                .collect::<StoreResult<Vec<_>>>()?;
            sqlx::query(
                "UPDATE run_chunks SET done = TRUE, owner = NULL, lease_expires_at = NULL \
                 WHERE run_id = $1 AND chunk_index = ANY($2)",
            )
            .bind(batch.run_id.as_str())
            .bind(chunks)
            .execute(&mut *tx)
            .await?;
        }
        let events = state.finish_commit(kept_events, batch);
        Self::insert_events(&mut tx, &events).await?;
        self.save_state(&mut tx, &state).await?;
        tx.commit().await?;
        let mut outcome = state.outcome(events, duplicates);
        outcome.discarded = discarded;
        Ok(outcome)
    }

    async fn request_cancel(&self, run_id: &RunId) -> StoreResult<CancelOutcome> {
        let mut tx = self.pool.begin().await?;
        let mut state = Self::lock_state(&mut tx, run_id).await?;
        let step = state.request_cancel();
        if let CancelStep::Cancelled(events) = &step {
            Self::insert_events(&mut tx, events).await?;
        }
        if !matches!(step, CancelStep::AlreadyFinished) {
            self.save_state(&mut tx, &state).await?;
        }
        tx.commit().await?;
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
            "SELECT case_index FROM case_records WHERE run_id = $1 AND case_index >= $2 AND case_index < $3 \
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
        let row = sqlx::query(
            "UPDATE run_chunks AS c SET owner = $2, lease_expires_at = clock_timestamp() + make_interval(secs => $3) \
             FROM (SELECT chunk_index FROM run_chunks WHERE run_id = $1 AND NOT done \
                   AND (lease_expires_at IS NULL OR lease_expires_at <= clock_timestamp()) \
                   ORDER BY chunk_index LIMIT 1 FOR UPDATE SKIP LOCKED) AS free \
             WHERE c.run_id = $1 AND c.chunk_index = free.chunk_index \
             RETURNING c.chunk_index, (SELECT index_space FROM runs WHERE run_id = $1)",
        )
        .bind(run_id.as_str())
        .bind(owner)
        .bind(lease.as_secs_f64())
        .fetch_optional(&self.pool)
        .await?;
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
        let chunks = chunks
            .iter()
            .map(|c| to_i64(*c))
            .collect::<StoreResult<Vec<_>>>()?;
        let rows = sqlx::query(
            "UPDATE run_chunks SET lease_expires_at = clock_timestamp() + make_interval(secs => $3) \
             WHERE run_id = $1 AND owner = $2 AND NOT done AND chunk_index = ANY($4) RETURNING chunk_index",
        )
        .bind(run_id.as_str())
        .bind(owner)
        .bind(lease.as_secs_f64())
        .bind(chunks)
        .fetch_all(&self.pool)
        .await?;
        let mut held = rows
            .iter()
            .map(|row| to_u64(row.try_get::<i64, _>(0)?))
            .collect::<StoreResult<Vec<_>>>()?;
        held.sort_unstable();
        Ok(held)
    }

    async fn release_leases(&self, run_id: &RunId, owner: &str) -> StoreResult<()> {
        sqlx::query(
            "UPDATE run_chunks SET lease_expires_at = to_timestamp(0) \
             WHERE run_id = $1 AND owner = $2 AND NOT done",
        )
        .bind(run_id.as_str())
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn begin_attempt(&self, run_id: &RunId) -> StoreResult<u64> {
        let row = sqlx::query(
            "UPDATE runs SET attempts = attempts + 1 WHERE run_id = $1 RETURNING attempts - 1",
        )
        .bind(run_id.as_str())
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::RunNotFound(run_id.clone()))?;
        to_u64(row.try_get::<i64, _>(0)?)
    }

    async fn end_attempt(&self, run_id: &RunId) -> StoreResult<()> {
        sqlx::query("UPDATE runs SET attempts = GREATEST(attempts - 1, 0) WHERE run_id = $1")
            .bind(run_id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn chunk_status(&self, run_id: &RunId, owner: &str) -> StoreResult<ChunkStatus> {
        let row = sqlx::query(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE lease_expires_at > clock_timestamp() AND owner <> $2), \
             COUNT(*) FILTER (WHERE owner IS NOT NULL AND lease_expires_at <= clock_timestamp()) \
             FROM run_chunks WHERE run_id = $1 AND NOT done",
        )
        .bind(run_id.as_str())
        .bind(owner)
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
            QueryBuilder::<Postgres>::new("SELECT record FROM case_records WHERE run_id = ");
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
            builder.push(" AND failed");
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
            "SELECT payload FROM events WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
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
        let row = sqlx::query("SELECT value FROM response_cache WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| from_json(&row.try_get::<String, _>(0)?))
            .transpose()
    }

    async fn cache_put(&self, key: &str, value: &Value) -> StoreResult<()> {
        sqlx::query("INSERT INTO response_cache (key, value, created_at) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(json_text(value)?)
            .bind(Timestamp::now().as_millis())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn watch_commits(&self) -> StoreResult<Option<mpsc::Receiver<RunId>>> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(CHANNEL).await?;
        let (tx, rx) = mpsc::channel(1_024);
        let origin = self.origin.clone();
        tokio::spawn(async move {
            loop {
                // `recv` reconnects by itself after a lost connection.
                match listener.recv().await {
                    Ok(notification) => {
                        let Some((run_id, from)) = notification.payload().split_once(' ') else {
                            continue;
                        };
                        if from == origin {
                            continue;
                        }
                        let Ok(run_id) = run_id.parse() else { continue };
                        if tx.send(run_id).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "listening for commits failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(Some(rx))
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
