//! The SQLite store's WAL checkpoints, taken off the writer's path.
//!
//! By default SQLite checkpoints inside the commit that crosses 1,000 WAL pages: that
//! commit copies every page back into the database file and syncs it while the writer's
//! turn is held, so at thousands of cases a second one commit in three took 3× as long
//! and execution waited behind it (issue 12: commits were 69% of an engine-only run's
//! wall time). Here a task of the store checkpoints on a connection of its own, shortly
//! after writes, beside the writer: WAL lets a `PASSIVE` checkpoint copy committed pages
//! while new commits append. The writer's own checkpoint stays as a backstop, at a
//! threshold only a checkpointer that cannot keep up reaches.

use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// WAL pages at which a commit checkpoints by itself (SQLite's default is 1,000).
pub(super) const BACKSTOP_PAGES: u32 = 16_384;

/// Bytes the WAL file is truncated to after a checkpoint reset it (it grows during a
/// burst of writes; without a limit it keeps its largest size).
pub(super) const WAL_SIZE_LIMIT: u64 = 64 * 1024 * 1024;

/// How long after a write the checkpoint waits, so that one checkpoint covers the
/// commits of a burst.
const DELAY: Duration = Duration::from_millis(100);

/// How long the task rests after a failure, so a database that keeps failing is not
/// retried (and logged) after every write.
const AFTER_FAILURE: Duration = Duration::from_secs(5);

/// Checkpoints the database of `options` after writes it is told of; ends when dropped.
pub(super) struct Checkpointer {
    written: Arc<Notify>,
    task: JoinHandle<()>,
}

impl Checkpointer {
    pub(super) fn start(options: SqliteConnectOptions) -> Self {
        let written = Arc::new(Notify::new());
        // A checkpoint copies pages from the WAL file to the database file without the
        // page cache: the connection needs next to none.
        let options = options.pragma("cache_size", "-256");
        let task = tokio::spawn(checkpoints(options, Arc::clone(&written)));
        Checkpointer { written, task }
    }

    /// A write is about to commit.
    pub(super) fn wrote(&self) {
        self.written.notify_one();
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn checkpoints(options: SqliteConnectOptions, written: Arc<Notify>) {
    let mut connection = None;
    loop {
        written.notified().await;
        tokio::time::sleep(DELAY).await;
        if connection.is_none() {
            match options.connect().await {
                Ok(opened) => connection = Some(opened),
                Err(e) => {
                    // The writer's backstop checkpoints meanwhile; retry after the next write.
                    tracing::warn!(error = %e, "cannot open the checkpoint connection");
                    tokio::time::sleep(AFTER_FAILURE).await;
                    continue;
                }
            }
        }
        let Some(conn) = connection.as_mut() else {
            continue;
        };
        // PASSIVE: copies what no reader still needs and never waits for a lock.
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&mut *conn)
            .await
        {
            tracing::warn!(error = %e, "WAL checkpoint failed");
            if let Some(conn) = connection.take() {
                let _ = conn.close().await;
            }
            tokio::time::sleep(AFTER_FAILURE).await;
        }
    }
}
