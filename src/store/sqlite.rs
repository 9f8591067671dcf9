//! The embedded default store: one SQLite file in WAL mode, created and migrated on open.
//!
//! SQLite has one writer at a time. Writes take an in-process lock and then `BEGIN
//! IMMEDIATE`, so two writers never deadlock upgrading read locks; reads go through the
//! pool concurrently (WAL lets them run beside the writer). The writer's turn is also
//! what keeps rows to a transaction and claims apart, and leases are milliseconds on this
//! process's clock: SQLite serves one process.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Sqlite, SqlitePool};
use tokio::sync::Mutex;

use super::StoreResult;
use super::cache_keys::CacheKeys;
use super::checkpoint::{self, Checkpointer};
use super::lock::FileLock;
use super::sql::{Dialect, Write};
use crate::model::Timestamp;

/// How long opening waits for the database's lock: long enough for a child process
/// started meanwhile to drop its inherited copy ([`FileLock::for_database_within`]), short
/// beside a start refused because another process holds the file.
const LOCK_PATIENCE: Duration = Duration::from_secs(2);

pub struct SqliteStore {
    pool: SqlitePool,
    /// The writer's turn.
    write: Mutex<()>,
    /// Writes waiting for the turn.
    waiting: AtomicUsize,
    /// Held for the store's lifetime (none for in-memory databases).
    _lock: Option<FileLock>,
    /// WAL checkpoints beside the writer (none for in-memory databases).
    checkpointer: Option<Checkpointer>,
    /// Every key the response cache holds (lookups of others skip the read).
    cache_keys: Arc<CacheKeys>,
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
            // No memory-mapped reads: with a growing file every read transaction
            // unmapped and remapped the map (munmap and page faults were ~5% of a run's
            // CPU in `perf`, issue 12). The page cache (per connection) is 8 MiB: enough
            // hot pages to keep most reads out of read(2), not so much that one large
            // revision upload leaves it all resident (at 32 MiB it did, issue 13).
            .pragma("cache_size", "-8192")
            .pragma("mmap_size", "0")
            .pragma("wal_autocheckpoint", checkpoint::BACKSTOP_PAGES.to_string())
            .pragma("journal_size_limit", checkpoint::WAL_SIZE_LIMIT.to_string());
        // Before anything touches the file: a second process must not reset our leases.
        let lock = if in_memory {
            None
        } else {
            Some(FileLock::for_database_within(options.get_filename(), LOCK_PATIENCE).await?)
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
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        // SQLite serves one process: any lease left in the file belongs to a process that
        // is gone, so its chunks are free at once.
        sqlx::query(
            "UPDATE run_chunks SET lease_expires_at = 0 WHERE owner IS NOT NULL AND done = 0",
        )
        .execute(&pool)
        .await?;
        let cache_keys = CacheKeys::load(&pool);
        Ok(SqliteStore {
            cache_keys,
            pool,
            write: Mutex::new(()),
            waiting: AtomicUsize::new(0),
            _lock: lock,
            checkpointer: (!in_memory).then(|| Checkpointer::start(options)),
        })
    }

    /// Opens a database file.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        Self::connect(&format!("sqlite://{}", path.display())).await
    }
}

impl Dialect for SqliteStore {
    type Db = Sqlite;

    /// SQLite's bound-parameter limit is 32766.
    const MAX_PARAMS: usize = 30_000;
    /// The writer's turn already keeps every other writer out.
    const LOCK_ROWS: &'static str = "";
    const SKIP_LOCKED: &'static str = "";
    const INSERT_CHUNKS: &'static str = "INSERT INTO run_chunks (run_id, chunk_index) \
         WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i + 1 < $2) SELECT $1, i FROM c";
    const EXPIRED: &'static str = "0";
    /// Without statistics (nothing runs `ANALYZE`) SQLite walks the primary key for
    /// `ORDER BY case_index` and tests `failed` on every case of the run.
    const FAILED_CASES_INDEX: &'static str = " INDEXED BY case_records_failed";

    fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    fn cache_keys(&self) -> Option<&CacheKeys> {
        Some(&self.cache_keys)
    }

    async fn after_bulk_commit(&self) -> StoreResult<()> {
        if self.checkpointer.is_some() {
            sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    fn writers_waiting(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) > 0
    }

    async fn begin(&self) -> StoreResult<Write<'_, Self>> {
        let asked = std::time::Instant::now();
        let turn = match self.write.try_lock() {
            Ok(turn) => turn,
            Err(_) => {
                let _waiting = Waiting::count(&self.waiting);
                self.write.lock().await
            }
        };
        let waited = asked.elapsed();
        if waited >= Duration::from_millis(50) {
            tracing::debug!(target: "themis::store::writer", waited_ms = waited.as_millis() as u64, "a write waited for the writer");
        }
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.wrote();
        }
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        Ok(Write::transaction(self, tx, Some(turn)))
    }

    /// A statement that reads before it writes must not start as a reader: it takes the
    /// writer's turn like any write.
    async fn begin_one(&self) -> StoreResult<Write<'_, Self>> {
        self.begin().await
    }

    /// In the writer's turn, so no commit appends meanwhile; a reader still open makes
    /// the checkpoint stop short, harmlessly (the log stays, as it would have).
    async fn close(&self) -> StoreResult<()> {
        let _turn = self.write.lock().await;
        // A checkpoint of the background checkpointer in progress makes this one answer
        // "busy" at once (no wait): try again until it is over.
        for _ in 0..100 {
            let (busy, _, _) =
                sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(TRUNCATE)")
                    .fetch_one(&self.pool)
                    .await?;
            if busy == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    fn rows_affected(result: &sqlx::sqlite::SqliteQueryResult) -> u64 {
        result.rows_affected()
    }

    fn push_now(query: &mut QueryBuilder<Sqlite>) {
        query.push_bind(Timestamp::now().as_millis());
    }

    fn push_lease_end(query: &mut QueryBuilder<Sqlite>, lease: Duration) {
        let lease = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        query.push_bind(Timestamp::now().as_millis().saturating_add(lease));
    }

    /// SQLite has no arrays: one parameter per value.
    fn push_in(query: &mut QueryBuilder<Sqlite>, values: &[i64]) {
        query.push(" IN (");
        let mut separated = query.separated(", ");
        for value in values {
            separated.push_bind(*value);
        }
        query.push(")");
    }
}

/// Counts a write waiting for the writer's turn while it lives (a cancelled wait too).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn count(waiting: &'a AtomicUsize) -> Self {
        waiting.fetch_add(1, Ordering::Relaxed);
        Waiting(waiting)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::oneshot;

    use super::SqliteStore;
    use crate::model::{DatasetRevision, Revision, StoredCase, Timestamp};
    use crate::store::sql::Dialect;
    use crate::store::{CaseBatches, DatasetStore, StoreResult};

    /// Serves batches of cases; before the third it waits for `other` (a write that
    /// asked for the writer while the second was stored) to be done.
    struct Source {
        served: u64,
        other_asked: Option<oneshot::Sender<()>>,
        other_done: Option<oneshot::Receiver<()>>,
        store: std::sync::Arc<SqliteStore>,
    }

    const PER_BATCH: u64 = 10;

    #[async_trait::async_trait]
    impl CaseBatches for Source {
        async fn next_batch(&mut self) -> StoreResult<Vec<StoredCase>> {
            match self.served {
                1 => {
                    if let Some(asked) = self.other_asked.take() {
                        let _ = asked.send(());
                    }
                    while !self.store.writers_waiting() {
                        tokio::task::yield_now().await;
                    }
                }
                2 => {
                    if let Some(done) = self.other_done.take() {
                        tokio::time::timeout(Duration::from_secs(20), done)
                            .await
                            .expect("the other write waited behind the upload's transaction")
                            .expect("the other write ended");
                    }
                }
                4 => return Ok(Vec::new()),
                _ => {}
            }
            let first = self.served * PER_BATCH;
            self.served += 1;
            Ok((first..first + PER_BATCH)
                .map(|i| StoredCase {
                    case_index: i,
                    case_id: format!("c{i}"),
                    json: format!("{{\"case_id\":\"c{i}\",\"input\":{i}}}"),
                })
                .collect())
        }
    }

    /// An upload's transaction commits as soon as another write waits for the writer,
    /// rather than at the end of its time budget: the other write goes between two of
    /// its batches.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_upload_lets_a_waiting_write_go_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(SqliteStore::open(&dir.path().join("t.db")).await.unwrap());
        let (asked_tx, asked_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel();
        let other = {
            let store = store.clone();
            tokio::spawn(async move {
                asked_rx.await.unwrap();
                let write = store.begin().await.unwrap();
                write.commit().await.unwrap();
                let _ = done_tx.send(());
            })
        };
        let mut source = Source {
            served: 0,
            other_asked: Some(asked_tx),
            other_done: Some(done_rx),
            store: store.clone(),
        };
        let revision = DatasetRevision {
            dataset_id: "d".into(),
            revision: Revision::from_digest(&[7; 32]),
            case_count: 4 * PER_BATCH,
            bytes: 1,
            created_at: Timestamp::from_millis(1),
        };
        store.put_revision(revision, &mut source).await.unwrap();
        other.await.unwrap();
    }
}
