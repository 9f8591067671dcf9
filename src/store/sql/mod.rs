//! The SQL stores, written once: [`Store`](super::Store) is implemented for every
//! [`Dialect`], the small trait in which SQLite and Postgres say what truly differs between
//! them: how a write starts (SQLite's single writer, Postgres transactions), how rows are
//! locked and chunks claimed, the lease clock, sets of integers, and notifications.
//! Statements use `$N` placeholders (both databases read them) or a `QueryBuilder`, and
//! the same Rust types: i64 numbers, text, JSON documents as text, and bools.

mod cache;
mod commit;
mod datasets;
mod events;
mod openai_evals;
mod packed;
mod records;
mod reviews;
mod rows;
mod store;
mod write;

use std::future::Future;
use std::time::Duration;

use sqlx::{Database, Decode, Encode, IntoArguments, Pool, QueryBuilder, Type};
use tokio::sync::mpsc;

use super::{StoreError, StoreResult};
use crate::model::RunId;
use crate::model::{BudgetRequest, ShareGrant, ShareRequest};

pub(super) use write::Write;

/// A database's connection, the executor of a write.
pub(super) type Conn<D> = <<D as Dialect>::Db as Database>::Connection;
/// A row of a database's results.
pub(super) type Row<D> = <<D as Dialect>::Db as Database>::Row;

/// What differs between the SQL databases; everything else is shared.
pub(crate) trait Dialect: Send + Sync + Sized + 'static {
    type Db: Database<Arguments: IntoArguments<Self::Db>> + sqlx::database::HasStatementCache;

    /// Bound parameters one statement may carry (each database's limit, with room to spare).
    const MAX_PARAMS: usize;
    /// Ends a read of rows the transaction keeps to itself until it commits (the run row
    /// a commit updates, the chunks it is fenced on).
    const LOCK_ROWS: &'static str;
    /// Ends the claim's search for a free chunk, so that concurrent claimers pass over
    /// each other's picks instead of waiting for them.
    const SKIP_LOCKED: &'static str;
    /// Inserts the chunk rows of a new run: `$1` is its id, `$2` how many chunks it has.
    const INSERT_CHUNKS: &'static str;
    /// A `lease_expires_at` that has run out: a released lease.
    const EXPIRED: &'static str;
    /// Follows `FROM case_records` in a query for failed cases only: the partial index of
    /// failed cases, where the planner would not pick it by itself.
    const FAILED_CASES_INDEX: &'static str = "";

    fn pool(&self) -> &Pool<Self::Db>;

    /// The response cache's keys, when this process knows every one the database holds
    /// (SQLite: one process); a lookup of any other key skips the read.
    fn cache_keys(&self) -> Option<&crate::store::cache_keys::CacheKeys> {
        None
    }

    /// Whether another write waits for the writer's turn (SQLite's single writer): a
    /// long series of writes of its own (an upload's cases) commits early and lets it
    /// go first. Postgres writes side by side: never.
    fn writers_waiting(&self) -> bool {
        false
    }

    /// After each transaction of a long series of writes (an upload's cases), outside
    /// the writer's turn: SQLite folds the log into the database file now, so that the
    /// next transaction starts the log afresh. Otherwise the log outgrows the writer's
    /// own checkpoint threshold and commits start checkpointing, each one's `fsync`
    /// behind the turn (hundreds of milliseconds while a large upload is written).
    fn after_bulk_commit(&self) -> impl Future<Output = StoreResult<()>> + Send {
        async { Ok(()) }
    }

    /// Starts a write of several statements, atomic together.
    fn begin(&self) -> impl Future<Output = StoreResult<Write<'_, Self>>> + Send;

    /// Starts a write of one statement (atomic on its own).
    fn begin_one(&self) -> impl Future<Output = StoreResult<Write<'_, Self>>> + Send;

    /// Rows a statement inserted, updated or deleted.
    fn rows_affected(result: &<Self::Db as Database>::QueryResult) -> u64;

    /// Pushes the lease clock's present time.
    fn push_now(query: &mut QueryBuilder<Self::Db>);

    /// Pushes the end of a lease of `lease` taken now.
    fn push_lease_end(query: &mut QueryBuilder<Self::Db>, lease: Duration);

    /// Pushes ` IN` a set of integers, for a column pushed before.
    fn push_in(query: &mut QueryBuilder<Self::Db>, values: &[i64]);

    /// Runs in every transaction that changed a run, before it commits.
    fn announce(
        &self,
        _conn: &mut Conn<Self>,
        _run_id: &RunId,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        async { Ok(()) }
    }

    /// See [`Store::close`](super::Store::close).
    fn close(&self) -> impl Future<Output = StoreResult<()>> + Send {
        async { Ok(()) }
    }

    /// See [`Store::watch_commits`](super::Store::watch_commits).
    fn listen(&self) -> impl Future<Output = StoreResult<Option<mpsc::Receiver<RunId>>>> + Send {
        async { Ok(None) }
    }

    /// See [`Store::shared_by_instances`](super::Store::shared_by_instances).
    fn shared_by_instances(&self) -> bool {
        false
    }

    /// See [`Store::lease_share`](super::Store::lease_share): one process holds it all.
    fn lease_share(
        &self,
        request: &ShareRequest<'_>,
    ) -> impl Future<Output = StoreResult<ShareGrant>> + Send {
        let grant = ShareGrant::whole(request.capacity);
        async move { Ok(grant) }
    }

    /// See [`Store::release_share`](super::Store::release_share).
    fn release_share(
        &self,
        _pool: &str,
        _holder: &str,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        async { Ok(()) }
    }

    /// See [`Store::reserve_budget`](super::Store::reserve_budget): the process's own
    /// limiters are the only ones.
    fn reserve_budget(
        &self,
        _request: &BudgetRequest<'_>,
    ) -> impl Future<Output = StoreResult<Duration>> + Send {
        async { Ok(Duration::ZERO) }
    }
}

/// A Rust type both databases bind and read (as their own column type).
pub(crate) trait Value<DB: Database>:
    Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Send
{
}

impl<DB: Database, T> Value<DB> for T where
    T: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Send
{
}

pub(super) fn to_i64(value: u64) -> StoreResult<i64> {
    i64::try_from(value)
        .map_err(|_| StoreError::Corrupt(format!("{value} does not fit the database")))
}

pub(super) fn to_u64(value: i64) -> StoreResult<u64> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative count {value}")))
}

pub(super) fn json_text<T: serde::Serialize>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}
