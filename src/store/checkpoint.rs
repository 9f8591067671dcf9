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

/// How long after a write the checkpoint waits, at least and at most: one checkpoint
/// covers many commits. Each commit appends the pages it changed to the WAL, among them
/// the same few every time (the run's row, the ends of the B-trees); a checkpoint copies
/// each page once and syncs both files, so the fewer checkpoints, the less of both.
const MIN_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(1);

/// WAL pages a checkpoint aims to find (8 MiB): the wait is paced to the rate of writes
/// so that fast writers are checkpointed often, far below the writer's backstop, and a
/// trickle of commits (a provider-backed run) once a second (issue 12: the syncs of a
/// checkpoint every 100 ms were 2% of such a run's CPU).
const TARGET_PAGES: f64 = 2_048.0;

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
    let mut delay = MIN_DELAY;
    loop {
        written.notified().await;
        tokio::time::sleep(delay).await;
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
        // Answers (busy, pages in the WAL, pages checkpointed).
        match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&mut *conn)
            .await
        {
            Ok((_, pages, _)) => delay = paced(delay, pages),
            Err(e) => {
                tracing::warn!(error = %e, "WAL checkpoint failed");
                if let Some(conn) = connection.take() {
                    let _ = conn.close().await;
                }
                tokio::time::sleep(AFTER_FAILURE).await;
            }
        }
    }
}

/// The next wait: the one that would have found [`TARGET_PAGES`] when the last wait,
/// `delay`, found `pages` (the WAL holds what was written since the last checkpoint).
fn paced(delay: Duration, pages: i64) -> Duration {
    let per_second = pages.max(1) as f64 / delay.as_secs_f64();
    Duration::from_secs_f64(TARGET_PAGES / per_second).clamp(MIN_DELAY, MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_follows_the_rate_of_writes() {
        // 40,000 pages a second (an engine-only run writes about half that): often.
        assert_eq!(paced(MAX_DELAY, 40_000), MIN_DELAY);
        // 1,000 pages a second (a provider-backed run): once a second.
        assert_eq!(paced(MIN_DELAY, 100), MAX_DELAY);
        // In between: the wait that finds the target.
        let wait = paced(Duration::from_millis(500), 2_048).as_secs_f64();
        assert!((wait - 0.5).abs() < 1e-6, "{wait}");
        // An empty WAL (a failed or idle checkpoint) waits the longest.
        assert_eq!(paced(MIN_DELAY, 0), MAX_DELAY);
        assert_eq!(paced(MIN_DELAY, -1), MAX_DELAY);
    }
}
