//! The shared store: several service instances on one Postgres database.
//!
//! Postgres is the coordinator: the run row is locked (`FOR UPDATE`) by every commit, so
//! sequence numbers, progress and aggregates stay consistent whoever writes; chunks are
//! claimed with `FOR UPDATE SKIP LOCKED` under leases on the database clock; every
//! commit sends `NOTIFY themis_events` so event streams on other instances wake at once.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder};
use tokio::sync::mpsc;

use super::StoreResult;
use super::sql::{Dialect, Write};
use crate::model::RunId;
use crate::model::{BudgetRequest, ShareGrant, ShareRequest};

/// The channel commits notify on; the payload is `{run_id} {origin}`.
const CHANNEL: &str = "themis_events";

pub struct PostgresStore {
    pool: PgPool,
    /// Tags this process's notifications so it can ignore its own.
    origin: String,
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
}

impl Dialect for PostgresStore {
    type Db = Postgres;

    /// Postgres allows 65535 bound parameters per statement.
    const MAX_PARAMS: usize = 60_000;
    const LOCK_ROWS: &'static str = " FOR UPDATE";
    const SKIP_LOCKED: &'static str = " FOR UPDATE SKIP LOCKED";
    const INSERT_CHUNKS: &'static str =
        "INSERT INTO run_chunks (run_id, chunk_index) SELECT $1, generate_series(0, $2 - 1)";
    const EXPIRED: &'static str = "to_timestamp(0)";

    fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn begin(&self) -> StoreResult<Write<'_, Self>> {
        Ok(Write::transaction(self, self.pool.begin().await?, None))
    }

    /// One statement is atomic by itself: no BEGIN and COMMIT round trips.
    async fn begin_one(&self) -> StoreResult<Write<'_, Self>> {
        Ok(Write::single(self, self.pool.acquire().await?))
    }

    fn rows_affected(result: &sqlx::postgres::PgQueryResult) -> u64 {
        result.rows_affected()
    }

    /// The database's clock, shared by every instance (not the transaction's start time).
    fn push_now(query: &mut QueryBuilder<Postgres>) {
        query.push("clock_timestamp()");
    }

    fn push_lease_end(query: &mut QueryBuilder<Postgres>, lease: Duration) {
        query
            .push("clock_timestamp() + make_interval(secs => ")
            .push_bind(lease.as_secs_f64())
            .push(")");
    }

    /// One array parameter, whatever the number of values.
    fn push_in(query: &mut QueryBuilder<Postgres>, values: &[i64]) {
        query.push(" = ANY(").push_bind(values.to_vec()).push(")");
    }

    fn shared_by_instances(&self) -> bool {
        true
    }

    async fn lease_share(&self, request: &ShareRequest<'_>) -> StoreResult<ShareGrant> {
        super::postgres_cluster::lease_share(&self.pool, request).await
    }

    async fn release_share(&self, pool: &str, holder: &str) -> StoreResult<()> {
        super::postgres_cluster::release_share(&self.pool, pool, holder).await
    }

    async fn reserve_budget(&self, request: &BudgetRequest<'_>) -> StoreResult<Duration> {
        super::postgres_cluster::reserve_budget(&self.pool, request).await
    }

    /// Delivered when the transaction commits, to every listening instance.
    async fn announce(&self, conn: &mut PgConnection, run_id: &RunId) -> StoreResult<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(format!("{run_id} {}", self.origin))
            .execute(conn)
            .await?;
        Ok(())
    }

    async fn listen(&self) -> StoreResult<Option<mpsc::Receiver<RunId>>> {
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
}
