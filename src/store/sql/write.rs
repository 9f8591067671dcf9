//! An open write, and the statements a commit makes inside one.

use std::borrow::Cow;
use std::collections::HashSet;
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{ColumnIndex, Database, Encode, Executor, QueryBuilder, Transaction, Type};
use tokio::sync::MutexGuard;

use super::events::{Pending, encode_event_lines};
use super::packed::{self, Codec};
use super::rows::{SUMMARY_COLUMNS, StateRow};
use super::{Conn, Dialect, Row, Value, json_text, to_i64, to_u64};
use crate::model::{RunEvent, RunId, Timestamp};
use crate::store::apply::RunState;
use crate::store::cache_digest::digest;
use crate::store::{CacheWrite, CaseCommit, StoreError, StoreResult};

/// Writes holding SQLite's writer at least this long are logged at DEBUG (target
/// `themis::store::writer`): what other writes waited behind.
const SLOW_HOLD: Duration = Duration::from_millis(20);

/// A write in progress: a transaction, or a pooled connection for one statement that is
/// atomic by itself. Dropped without [`Write::commit`], a transaction rolls back.
pub(crate) struct Write<'a, D: Dialect> {
    dialect: &'a D,
    conn: Held<D::Db>,
    /// SQLite's writer turn (one writer at a time), held until the write ends, and
    /// since when.
    turn: Option<(MutexGuard<'a, ()>, Instant)>,
}

enum Held<DB: Database> {
    Transaction(Transaction<'static, DB>),
    Single(PoolConnection<DB>),
}

/// A case record ready to insert, serialised before the write starts.
pub(super) struct PreparedCase<'b> {
    pub index: i64,
    pub dataset_id: &'b str,
    pub failed: bool,
    /// Encoded by the engine, or here when it did not.
    pub record: Cow<'b, str>,
    /// Its line in the commit's record batch (its position in the batch's cases).
    pub slot: i64,
}

impl<'a, D: Dialect> Write<'a, D> {
    pub(crate) fn transaction(
        dialect: &'a D,
        tx: Transaction<'static, D::Db>,
        turn: Option<MutexGuard<'a, ()>>,
    ) -> Self {
        Write {
            dialect,
            conn: Held::Transaction(tx),
            turn: turn.map(|turn| (turn, Instant::now())),
        }
    }

    pub(crate) fn single(dialect: &'a D, conn: PoolConnection<D::Db>) -> Self {
        Write {
            dialect,
            conn: Held::Single(conn),
            turn: None,
        }
    }

    pub(crate) fn conn(&mut self) -> &mut Conn<D> {
        match &mut self.conn {
            Held::Transaction(tx) => tx,
            Held::Single(conn) => conn,
        }
    }

    /// Commits the transaction (a single statement is already done), then gives up the
    /// writer turn.
    pub(crate) async fn commit(self) -> StoreResult<()> {
        if let Held::Transaction(tx) = self.conn {
            let committing = Instant::now();
            tx.commit().await?;
            if let Some((_, since)) = &self.turn {
                let held = since.elapsed();
                if held >= SLOW_HOLD {
                    tracing::debug!(
                        target: "themis::store::writer",
                        held_ms = held.as_millis() as u64,
                        commit_ms = committing.elapsed().as_millis() as u64,
                        "a write held the writer"
                    );
                }
            }
        }
        Ok(())
    }
}

impl<D> Write<'_, D>
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
    /// Loads a run's row with its aggregate state, locked until the write ends.
    pub(super) async fn load_state(&mut self, run_id: &RunId) -> StoreResult<RunState> {
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS}, aggregate_state FROM runs WHERE run_id = $1{}",
            D::LOCK_ROWS
        );
        sqlx::query_as::<_, StateRow>(sqlx::AssertSqlSafe(sql))
            .bind(run_id.as_str())
            .fetch_optional(self.conn())
            .await?
            .ok_or_else(|| StoreError::RunNotFound(run_id.clone()))?
            .into_state()
    }

    /// Writes the mutable part of a run's row back, and announces the change.
    pub(super) async fn save_state(&mut self, state: &RunState) -> StoreResult<()> {
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
        .execute(self.conn())
        .await?;
        let dialect = self.dialect;
        dialect.announce(self.conn(), &r.run_id).await
    }

    /// Appends a run's events to its log under seqs `first_seq..`, in order, up to
    /// [`EVENTS_PER_ROW`] to a row: a B-tree insert per commit rather than one per event
    /// (issue 12), without one buffer the size of a whole commit's events.
    pub(super) async fn insert_events(
        &mut self,
        run_id: &RunId,
        first_seq: u64,
        events: &[Pending<'_>],
    ) -> StoreResult<()> {
        // Rows go out in few statements (each one a round trip to Postgres).
        let row_count = events.len().div_ceil(EVENTS_PER_ROW);
        let mut rows = events
            .chunks(EVENTS_PER_ROW)
            .zip((first_seq..).step_by(EVENTS_PER_ROW));
        for size in shapes(row_count, 8) {
            let mut builder = QueryBuilder::<D::Db>::new(
                "INSERT INTO event_batches (run_id, last_seq, first_seq, payload, packed) ",
            );
            let mut values = Vec::with_capacity(size);
            for (row, first) in rows.by_ref().take(size) {
                let last = first + row.len() as u64 - 1;
                let lines = encode_event_lines(run_id, first, row)?;
                values.push((to_i64(last)?, to_i64(first)?, packed::compress(&lines)?));
            }
            builder.push_values(values, |mut b, (last, first, packed)| {
                b.push_bind(run_id.as_str())
                    .push_bind(last)
                    .push_bind(first)
                    .push_bind("")
                    .push_bind(Some(packed));
            });
            builder.build().execute(self.conn()).await?;
        }
        Ok(())
    }

    /// Appends events sequenced already (consecutive, one run's).
    pub(super) async fn insert_sequenced(&mut self, events: &[RunEvent]) -> StoreResult<()> {
        let Some(head) = events.first() else {
            return Ok(());
        };
        let pending: Vec<Pending<'_>> = events.iter().map(Pending::Sequenced).collect();
        self.insert_events(&head.run_id, head.seq, &pending).await
    }

    /// Which of `chunks` of the run `owner` holds (not done), locked until the write ends.
    pub(super) async fn held_chunks(
        &mut self,
        run_id: &RunId,
        owner: &str,
        chunks: &[i64],
    ) -> StoreResult<HashSet<u64>> {
        let mut held = HashSet::new();
        for ids in chunks.chunks(D::MAX_PARAMS) {
            let mut builder =
                QueryBuilder::<D::Db>::new("SELECT chunk_index FROM run_chunks WHERE run_id = ");
            builder
                .push_bind(run_id.as_str())
                .push(" AND owner = ")
                .push_bind(owner)
                .push(" AND done = FALSE AND chunk_index");
            D::push_in(&mut builder, ids);
            builder.push(D::LOCK_ROWS);
            for index in builder
                .build_query_scalar::<i64>()
                .persistent(false)
                .fetch_all(self.conn())
                .await?
            {
                held.insert(to_u64(index)?);
            }
        }
        Ok(held)
    }

    // Statement memory: each row count of a multi-row statement is a statement of its
    // own, and a prepared one for many rows holds megabytes (issue 13: 90 MiB of a
    // 100,000-case run's RSS was cached statements of every size). Inserts therefore go
    // out in power-of-two sizes of at most `MAX_ROWS` ([`shapes`]): a few shapes per
    // table, prepared once and kept (preparing each time costs CPU per case, issue 12).
    // `IN (...)` lists of any length below are used once (`persistent(false)`).

    /// Inserts the cases not recorded before, their records in `batch` of the run, and
    /// returns their `case_index`, or `None`
    /// when `returning` is off and some case was recorded before. Counting inserted rows
    /// tells the common case (all new) without a result row per case, each a hand-off
    /// from SQLite's thread (issue 12); the caller redoes a commit that got `None` with
    /// `returning` on, to learn which cases were new.
    pub(super) async fn insert_cases(
        &mut self,
        run_id: &RunId,
        cases: &[&PreparedCase<'_>],
        batch: i64,
        returning: bool,
    ) -> StoreResult<Option<HashSet<i64>>> {
        const PER_ROW: usize = 6;
        let mut inserted = HashSet::with_capacity(cases.len());
        let mut counted = 0;
        let mut rest = cases;
        for size in shapes(cases.len(), D::MAX_PARAMS / PER_ROW) {
            let (chunk, next) = rest.split_at(size);
            rest = next;
            let mut builder = QueryBuilder::<D::Db>::new(
                "INSERT INTO case_records (run_id, case_index, dataset_id, failed, batch, slot) ",
            );
            builder.push_values(chunk, |mut b, case| {
                b.push_bind(run_id.as_str())
                    .push_bind(case.index)
                    .push_bind(case.dataset_id)
                    .push_bind(case.failed)
                    .push_bind(batch)
                    .push_bind(case.slot);
            });
            builder.push(" ON CONFLICT (run_id, case_index) DO NOTHING");
            if returning {
                builder.push(" RETURNING case_index");
                inserted.extend(
                    builder
                        .build_query_scalar::<i64>()
                        .fetch_all(self.conn())
                        .await?,
                );
            } else {
                let result = builder.build().execute(self.conn()).await?;
                counted += D::rows_affected(&result);
            }
        }
        if !returning {
            if usize::try_from(counted).ok() != Some(cases.len()) {
                return Ok(None);
            }
            inserted.extend(cases.iter().map(|case| case.index));
        }
        Ok(Some(inserted))
    }

    /// Stores a commit's records (compressed by [`packed::pack_lines`]) as `batch` of
    /// the run.
    pub(super) async fn insert_record_batch(
        &mut self,
        run_id: &RunId,
        batch: i64,
        payload: Vec<u8>,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO record_batches (run_id, batch, codec, payload) VALUES ($1, $2, $3, $4)",
        )
        .bind(run_id.as_str())
        .bind(batch)
        .bind(Codec::Zstd.code())
        .bind(payload)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// The response-cache writes of `cases`: responses stored (a key stored before keeps
    /// its response and owner) and uses of other runs' responses noted. Entries append
    /// in the order they are stored; only the index of their digests takes random pages.
    pub(super) async fn insert_cache_writes(
        &mut self,
        run_id: &RunId,
        cases: &[&CaseCommit],
    ) -> StoreResult<()> {
        let mut puts = Vec::new();
        let mut uses = Vec::new();
        for write in cases.iter().flat_map(|case| &case.cache) {
            match write {
                CacheWrite::Put { key, value } => {
                    puts.push((digest(key), key.as_str(), value.as_str()));
                }
                CacheWrite::Used { key } => uses.push(digest(key)),
            }
        }
        if let Some(keys) = self.dialect.cache_keys() {
            keys.add(puts.iter().map(|(_, key, _)| *key));
        }
        let now = Timestamp::now().as_millis();
        let mut rest = puts.as_slice();
        for size in shapes(rest.len(), D::MAX_PARAMS / 5) {
            let (chunk, next) = rest.split_at(size);
            rest = next;
            let mut builder = QueryBuilder::<D::Db>::new(
                "INSERT INTO response_cache (digest, key, value, created_at, run_id) ",
            );
            builder.push_values(chunk, |mut b, (digest, key, value)| {
                b.push_bind(*digest)
                    .push_bind(*key)
                    .push_bind(*value)
                    .push_bind(now)
                    .push_bind(run_id.as_str());
            });
            builder.push(" ON CONFLICT (digest) DO NOTHING");
            builder.build().execute(self.conn()).await?;
        }
        let mut rest = uses.as_slice();
        for size in shapes(rest.len(), D::MAX_PARAMS / 2) {
            let (chunk, next) = rest.split_at(size);
            rest = next;
            let mut builder =
                QueryBuilder::<D::Db>::new("INSERT INTO response_cache_users (digest, run_id) ");
            builder.push_values(chunk, |mut b, digest| {
                b.push_bind(*digest).push_bind(run_id.as_str());
            });
            builder.push(" ON CONFLICT (digest, run_id) DO NOTHING");
            builder.build().execute(self.conn()).await?;
        }
        Ok(())
    }

    /// Marks chunks done: their leases end with them.
    pub(super) async fn finish_chunks(
        &mut self,
        run_id: &RunId,
        chunks: &[i64],
    ) -> StoreResult<()> {
        for ids in chunks.chunks(D::MAX_PARAMS) {
            let mut builder = QueryBuilder::<D::Db>::new(
                "UPDATE run_chunks SET done = TRUE, owner = NULL, lease_expires_at = NULL WHERE run_id = ",
            );
            builder.push_bind(run_id.as_str()).push(" AND chunk_index");
            D::push_in(&mut builder, ids);
            builder
                .build()
                .persistent(false)
                .execute(self.conn())
                .await?;
        }
        Ok(())
    }
}

/// Most events stored in one `event_batches` row (~75 KB of JSON before compression).
const EVENTS_PER_ROW: usize = 256;

/// Most rows of one multi-row statement (a power of two).
const MAX_ROWS: usize = 256;

/// Splits `len` rows into statements of power-of-two sizes, largest first (at most
/// [`MAX_ROWS`] or `max`): each table then has a few statement shapes, prepared once
/// per connection and reused from its statement cache, where a statement sized to each
/// batch was a new SQL text to parse and plan every commit.
pub(super) fn shapes(mut len: usize, max: usize) -> impl Iterator<Item = usize> {
    let largest = MAX_ROWS.min(max.max(1));
    let largest = 1 << (usize::BITS - 1 - largest.leading_zeros());
    std::iter::from_fn(move || {
        if len == 0 {
            return None;
        }
        let size = largest.min(1 << (usize::BITS - 1 - len.leading_zeros()));
        len -= size;
        Some(size)
    })
}

#[cfg(test)]
mod tests {
    use super::shapes;

    #[test]
    fn rows_split_into_few_power_of_two_shapes() {
        assert_eq!(shapes(0, 6_000).collect::<Vec<_>>(), Vec::<usize>::new());
        assert_eq!(shapes(13, 6_000).collect::<Vec<_>>(), vec![8, 4, 1]);
        assert_eq!(
            shapes(600, 6_000).collect::<Vec<_>>(),
            vec![256, 256, 64, 16, 8]
        );
        assert_eq!(shapes(7, 3).collect::<Vec<_>>(), vec![2, 2, 2, 1]);
        for len in 0..2_000 {
            let sizes: Vec<usize> = shapes(len, 6_000).collect();
            assert_eq!(sizes.iter().sum::<usize>(), len);
            assert!(sizes.iter().all(|s| s.is_power_of_two() && *s <= 256));
        }
    }
}
