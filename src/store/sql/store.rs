//! [`Store`] for every [`Dialect`]: the statements and transactions both SQL databases
//! run.

use std::borrow::Cow;
use std::ops::Range;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value as Json;
use sqlx::{ColumnIndex, Encode, Executor, QueryBuilder, Type};
use tokio::sync::mpsc;

use super::rows::{FullRunRow, RunRow, SUMMARY_COLUMNS};
use super::write::PreparedCase;
use super::{Conn, Dialect, Row, Value, from_json, json_text, to_i64, to_u64};
use super::{cache, commit, events, packed, records};
use crate::model::{
    AggregateState, CaseRecord, CaseStatus, RunEvent, RunId, RunLabels, RunRecord, RunStatus,
    Timestamp,
};
use crate::model::{BudgetRequest, ShareGrant, ShareRequest};
use crate::store::apply::CancelStep;
use crate::store::cache_digest::digest;
use crate::store::{
    CachedResponse, CancelOutcome, CaseQuery, Chunk, ChunkStatus, CommitBatch, CommitOutcome,
    CreateOutcome, NewRun, RunQuery, Store, StoreError, StoreResult, chunk_count,
};

#[async_trait]
impl<D> Store for D
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
    Vec<u8>: Value<D::Db>,
    Option<Vec<u8>>: Value<D::Db>,
{
    async fn create_run(&self, mut run: NewRun) -> StoreResult<CreateOutcome> {
        let datasets = std::mem::take(&mut run.datasets);
        let index_space = to_i64(run.index_space)?;
        let chunks = to_i64(chunk_count(run.index_space))?;
        let record = run.into_record();
        let mut write = self.begin().await?;
        // The primary key decides between concurrent identical submissions.
        let created = sqlx::query(
            "INSERT INTO runs (run_id, kind, parent_run_id, status, definition, runtime, total, usage, aggregates, \
             aggregate_state, version, created_at, updated_at, index_space, name, tags, metadata) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
             ON CONFLICT (run_id) DO NOTHING RETURNING run_id",
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
        .bind(record.labels.name.clone())
        .bind(json_text(&record.labels.tags)?)
        .bind(json_text(&record.labels.metadata)?)
        .fetch_optional(write.conn())
        .await?
        .is_some();
        if created && chunks > 0 {
            sqlx::query(D::INSERT_CHUNKS)
                .bind(record.run_id.as_str())
                .bind(chunks)
                .execute(write.conn())
                .await?;
        }
        if created {
            super::datasets::insert_uses(&mut write, &record.run_id, &datasets).await?;
        }
        write.commit().await?;
        if created {
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
        sqlx::query_as::<_, FullRunRow>(sqlx::AssertSqlSafe(sql))
            .bind(run_id.as_str())
            .fetch_optional(self.pool())
            .await?
            .map(FullRunRow::into_record)
            .transpose()
    }

    async fn get_run_summary(&self, run_id: &RunId) -> StoreResult<Option<RunRecord>> {
        let sql = format!("SELECT {SUMMARY_COLUMNS} FROM runs WHERE run_id = $1");
        sqlx::query_as::<_, RunRow>(sqlx::AssertSqlSafe(sql))
            .bind(run_id.as_str())
            .fetch_optional(self.pool())
            .await?
            .map(RunRow::into_record)
            .transpose()
    }

    async fn list_runs(&self, query: &RunQuery) -> StoreResult<Vec<RunRecord>> {
        let mut builder =
            QueryBuilder::<D::Db>::new(format!("SELECT {SUMMARY_COLUMNS} FROM runs WHERE TRUE"));
        if let Some(status) = query.status {
            builder.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(kind) = query.kind {
            builder.push(" AND kind = ").push_bind(kind.as_str());
        }
        if let Some(parent) = &query.parent_run_id {
            builder
                .push(" AND parent_run_id = ")
                .push_bind(parent.as_str());
        }
        if let Some(name) = &query.name {
            builder.push(" AND name = ").push_bind(name.clone());
        }
        if let Some(tag) = &query.tag {
            // `replace` is case-sensitive in both databases (SQLite's LIKE is not).
            builder
                .push(" AND tags <> replace(tags, ")
                .push_bind(RunLabels::tag_pattern(tag))
                .push(", '')");
        }
        if let Some(cursor) = &query.before {
            builder
                .push(" AND (created_at, run_id) < (")
                .push_bind(cursor.created_at.as_millis())
                .push(", ")
                .push_bind(cursor.run_id.as_str())
                .push(")");
        }
        builder
            .push(" ORDER BY created_at DESC, run_id DESC LIMIT ")
            .push_bind(i64::from(query.limit));
        let rows = builder
            .build_query_as::<RunRow>()
            .fetch_all(self.pool())
            .await?;
        rows.into_iter().map(RunRow::into_record).collect()
    }

    async fn run_ids_with_status(&self, statuses: &[RunStatus]) -> StoreResult<Vec<RunId>> {
        if statuses.is_empty() {
            return Ok(Vec::new());
        }
        let mut builder = QueryBuilder::<D::Db>::new("SELECT run_id FROM runs WHERE status IN (");
        let mut separated = builder.separated(", ");
        for status in statuses {
            separated.push_bind(status.as_str());
        }
        builder.push(") ORDER BY created_at, run_id");
        let ids = builder
            .build_query_scalar::<String>()
            .fetch_all(self.pool())
            .await?;
        ids.iter()
            .map(|id| {
                id.parse()
                    .map_err(|_| StoreError::Corrupt("bad run id".into()))
            })
            .collect()
    }

    /// Every case is serialised once, and the records compressed together, before the
    /// write starts (the expensive part, outside the writer's turn). The first attempt only counts the case rows it
    /// inserts; if some case was recorded before (a retried batch, or another
    /// instance's), it is rolled back and done again learning which.
    async fn commit(&self, batch: &CommitBatch) -> StoreResult<CommitOutcome> {
        let mut prepared = Vec::with_capacity(batch.cases.len());
        for (slot, case) in batch.cases.iter().enumerate() {
            prepared.push(PreparedCase {
                slot: to_i64(slot as u64)?,
                index: to_i64(case.record.key.case_index)?,
                dataset_id: &case.record.key.dataset_id,
                failed: case.record.status == CaseStatus::Failed,
                record: match &case.encoded {
                    Some(encoded) => Cow::Borrowed(encoded.record.as_str()),
                    None => Cow::Owned(json_text(&case.record)?),
                },
            });
        }
        let records = if prepared.is_empty() {
            Vec::new()
        } else {
            packed::pack_lines(prepared.iter().map(|case| case.record.as_ref()))?
        };
        if let Some(outcome) = commit::attempt(self, batch, &prepared, &records, false).await? {
            return Ok(outcome);
        }
        commit::attempt(self, batch, &prepared, &records, true)
            .await?
            .ok_or_else(|| StoreError::Corrupt("case rows inserted but not returned".into()))
    }

    async fn request_cancel(&self, run_id: &RunId) -> StoreResult<CancelOutcome> {
        let mut write = self.begin().await?;
        let mut state = write.load_state(run_id).await?;
        let step = state.request_cancel();
        if let CancelStep::Cancelled(events) = &step {
            write.insert_sequenced(events).await?;
        }
        if !matches!(step, CancelStep::AlreadyFinished) {
            write.save_state(&state).await?;
        }
        write.commit().await?;
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

    async fn reserve_spend(
        &self,
        run_id: &RunId,
        amount: f64,
        budget: f64,
    ) -> StoreResult<crate::model::Reservation> {
        let mut write = self.begin().await?;
        let mut state = write.load_state(run_id).await?;
        state.ensure_open()?;
        let reservation = state.reserve(amount, budget);
        if reservation.granted {
            write.save_state(&state).await?;
        }
        write.commit().await?;
        Ok(reservation)
    }

    async fn recorded_case_indices(
        &self,
        run_id: &RunId,
        range: Range<u64>,
    ) -> StoreResult<Vec<u64>> {
        let indices = sqlx::query_scalar::<_, i64>(
            "SELECT case_index FROM case_records WHERE run_id = $1 AND case_index >= $2 AND case_index < $3 \
             ORDER BY case_index",
        )
        .bind(run_id.as_str())
        .bind(to_i64(range.start)?)
        .bind(to_i64(range.end)?)
        .fetch_all(self.pool())
        .await?;
        indices.into_iter().map(to_u64).collect()
    }

    async fn claim_chunk_from(
        &self,
        run_id: &RunId,
        owner: &str,
        lease: Duration,
        from: u64,
    ) -> StoreResult<Option<Chunk>> {
        let mut builder = QueryBuilder::<D::Db>::new("UPDATE run_chunks SET owner = ");
        builder.push_bind(owner).push(", lease_expires_at = ");
        D::push_lease_end(&mut builder, lease);
        builder
            .push(" WHERE run_id = ")
            .push_bind(run_id.as_str())
            .push(" AND chunk_index = (SELECT chunk_index FROM run_chunks WHERE run_id = ")
            .push_bind(run_id.as_str())
            .push(" AND chunk_index >= ")
            .push_bind(to_i64(from)?)
            .push(" AND done = FALSE AND (lease_expires_at IS NULL OR lease_expires_at <= ");
        D::push_now(&mut builder);
        builder
            .push(") ORDER BY chunk_index LIMIT 1")
            .push(D::SKIP_LOCKED)
            .push(") RETURNING chunk_index, (SELECT index_space FROM runs WHERE run_id = ")
            .push_bind(run_id.as_str())
            .push(")");
        let mut write = self.begin_one().await?;
        let row = builder
            .build_query_as::<(i64, i64)>()
            .fetch_optional(write.conn())
            .await?;
        write.commit().await?;
        let Some((chunk_index, index_space)) = row else {
            return Ok(None);
        };
        Ok(Some(Chunk::new(to_u64(chunk_index)?, to_u64(index_space)?)))
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
        let mut builder = QueryBuilder::<D::Db>::new("UPDATE run_chunks SET lease_expires_at = ");
        D::push_lease_end(&mut builder, lease);
        builder
            .push(" WHERE run_id = ")
            .push_bind(run_id.as_str())
            .push(" AND owner = ")
            .push_bind(owner)
            .push(" AND done = FALSE AND chunk_index");
        D::push_in(&mut builder, &chunks);
        builder.push(" RETURNING chunk_index");
        let mut write = self.begin_one().await?;
        let held = builder
            .build_query_scalar::<i64>()
            .persistent(false)
            .fetch_all(write.conn())
            .await?;
        write.commit().await?;
        let mut held = held
            .into_iter()
            .map(to_u64)
            .collect::<StoreResult<Vec<_>>>()?;
        held.sort_unstable();
        Ok(held)
    }

    async fn release_leases(&self, run_id: &RunId, owner: &str) -> StoreResult<()> {
        let sql = format!(
            "UPDATE run_chunks SET lease_expires_at = {} WHERE run_id = $1 AND owner = $2 AND done = FALSE",
            D::EXPIRED
        );
        let mut write = self.begin_one().await?;
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(run_id.as_str())
            .bind(owner)
            .execute(write.conn())
            .await?;
        write.commit().await
    }

    async fn begin_attempt(&self, run_id: &RunId) -> StoreResult<u64> {
        let mut write = self.begin_one().await?;
        let earlier = sqlx::query_scalar::<_, i64>(
            "UPDATE runs SET attempts = attempts + 1 WHERE run_id = $1 RETURNING attempts - 1",
        )
        .bind(run_id.as_str())
        .fetch_optional(write.conn())
        .await?
        .ok_or_else(|| StoreError::RunNotFound(run_id.clone()))?;
        write.commit().await?;
        to_u64(earlier)
    }

    async fn end_attempt(&self, run_id: &RunId) -> StoreResult<()> {
        let mut write = self.begin_one().await?;
        sqlx::query(
            "UPDATE runs SET attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END \
             WHERE run_id = $1",
        )
        .bind(run_id.as_str())
        .execute(write.conn())
        .await?;
        write.commit().await
    }

    async fn chunk_status(&self, run_id: &RunId, owner: &str) -> StoreResult<ChunkStatus> {
        let mut builder = QueryBuilder::<D::Db>::new(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE lease_expires_at > ",
        );
        D::push_now(&mut builder);
        builder
            .push(" AND owner <> ")
            .push_bind(owner)
            .push("), COUNT(*) FILTER (WHERE owner IS NOT NULL AND lease_expires_at <= ");
        D::push_now(&mut builder);
        builder
            .push(") FROM run_chunks WHERE run_id = ")
            .push_bind(run_id.as_str())
            .push(" AND done = FALSE");
        let (unfinished, held_by_others, abandoned) = builder
            .build_query_as::<(i64, i64, i64)>()
            .fetch_one(self.pool())
            .await?;
        Ok(ChunkStatus {
            unfinished: to_u64(unfinished)?,
            held_by_others: to_u64(held_by_others)?,
            abandoned: to_u64(abandoned)?,
        })
    }

    async fn case_records(
        &self,
        run_id: &RunId,
        query: &CaseQuery,
    ) -> StoreResult<Vec<CaseRecord>> {
        let mut builder = QueryBuilder::<D::Db>::new("SELECT batch, slot FROM case_records");
        if query.failed_only {
            builder.push(D::FAILED_CASES_INDEX);
        }
        builder.push(" WHERE run_id = ");
        builder.push_bind(run_id.as_str());
        if let Some(after) = query.after_index {
            builder.push(" AND case_index > ").push_bind(to_i64(after)?);
        }
        if let Some(dataset) = &query.dataset_id {
            builder
                .push(" AND dataset_id = ")
                .push_bind(dataset.as_str());
        }
        if query.failed_only {
            builder.push(" AND failed = TRUE");
        }
        builder
            .push(" ORDER BY case_index LIMIT ")
            .push_bind(i64::from(query.limit));
        let places = builder
            .build_query_as::<(i64, i64)>()
            .fetch_all(self.pool())
            .await?;
        records::read(self, run_id, &places).await
    }

    async fn events_after(
        &self,
        run_id: &RunId,
        after: u64,
        limit: u32,
    ) -> StoreResult<Vec<RunEvent>> {
        events::events_after(self, run_id, after, limit).await
    }

    async fn cache_lookup(&self, key: &str) -> StoreResult<Option<CachedResponse>> {
        if self.cache_keys().is_some_and(|keys| !keys.may_hold(key)) {
            return Ok(None);
        }
        let Some((value, owner)) = cache::cached(self, key).await? else {
            return Ok(None);
        };
        Ok(Some(CachedResponse {
            value: from_json(&value)?,
            owner,
        }))
    }

    async fn cache_get(&self, key: &str, run_id: &RunId) -> StoreResult<Option<Json>> {
        if self.cache_keys().is_some_and(|keys| !keys.may_hold(key)) {
            return Ok(None);
        }
        let Some((value, owner)) = cache::cached(self, key).await? else {
            return Ok(None);
        };
        // Another run's response: noted, so deleting that run keeps it. (A response from
        // before runs could be deleted has no owner and is never deleted.)
        if owner.is_some_and(|owner| owner != run_id.as_str()) {
            let mut write = self.begin_one().await?;
            sqlx::query(
                "INSERT INTO response_cache_users (digest, run_id) VALUES ($1, $2) \
                 ON CONFLICT (digest, run_id) DO NOTHING",
            )
            .bind(digest(key))
            .bind(run_id.as_str())
            .execute(write.conn())
            .await?;
            write.commit().await?;
        }
        from_json(&value).map(Some)
    }

    async fn cache_put(&self, key: &str, value: &Json, run_id: &RunId) -> StoreResult<()> {
        let text = json_text(value)?;
        let mut write = self.begin_one().await?;
        if let Some(keys) = self.cache_keys() {
            keys.add([key]);
        }
        sqlx::query(
            "INSERT INTO response_cache (digest, key, value, created_at, run_id) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (digest) DO NOTHING",
        )
        .bind(digest(key))
        .bind(key)
        .bind(text)
        .bind(Timestamp::now().as_millis())
        .bind(run_id.as_str())
        .execute(write.conn())
        .await?;
        write.commit().await
    }

    async fn watch_commits(&self) -> StoreResult<Option<mpsc::Receiver<RunId>>> {
        self.listen().await
    }

    fn shared_by_instances(&self) -> bool {
        Dialect::shared_by_instances(self)
    }

    async fn lease_share(&self, request: &ShareRequest<'_>) -> StoreResult<ShareGrant> {
        Dialect::lease_share(self, request).await
    }

    async fn release_share(&self, pool: &str, holder: &str) -> StoreResult<()> {
        Dialect::release_share(self, pool, holder).await
    }

    async fn reserve_budget(&self, request: &BudgetRequest<'_>) -> StoreResult<Duration> {
        Dialect::reserve_budget(self, request).await
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(self.pool()).await?;
        Ok(())
    }

    async fn close(&self) -> StoreResult<()> {
        Dialect::close(self).await
    }
}
