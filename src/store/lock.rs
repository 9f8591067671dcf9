//! SQLite serves one process: an exclusive OS lock on `<database>.lock`, held for as
//! long as the store lives, makes a second process on the same file refuse to start
//! instead of resetting the first one's leases.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::StoreError;

/// An exclusive `flock` on a lock file; released when dropped (or when the process
/// dies, however it dies: the kernel drops the lock with the descriptor).
#[derive(Debug)]
pub(super) struct FileLock {
    _file: File,
}

impl FileLock {
    /// Locks `<database>.lock` next to the database file, trying again for up to
    /// `patience` while the lock is held, or explains who holds it. A child process this
    /// one starts (a `fork`, then an `exec`) holds a copy of every descriptor until its
    /// `exec` closes it, the lock's included: a store reopened in that instant, its
    /// previous self just dropped, found its own file "in use".
    pub(super) async fn for_database_within(
        database: &Path,
        patience: Duration,
    ) -> Result<FileLock, StoreError> {
        let deadline = Instant::now() + patience;
        loop {
            if let Some(lock) = Self::try_for_database(database)? {
                return Ok(lock);
            }
            if Instant::now() >= deadline {
                return Err(held_by_another(database));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The lock, or `None` while another descriptor holds it.
    fn try_for_database(database: &Path) -> Result<Option<FileLock>, StoreError> {
        let path = lock_path(database);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| {
                StoreError::Locked(format!("cannot open lock file {}: {e}", path.display()))
            })?;
        Ok(try_lock_exclusive(&file).then_some(FileLock { _file: file }))
    }
}

fn lock_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

fn held_by_another(database: &Path) -> StoreError {
    StoreError::Locked(format!(
        "the SQLite database {} is in use by another process (it holds {}); \
         SQLite serves one process: stop the other one, or use Postgres to run \
         several instances",
        database.display(),
        lock_path(database).display()
    ))
}

/// `flock(LOCK_EX | LOCK_NB)` on Unix: an advisory lock every Themis process checks.
fn try_lock_exclusive(file: &File) -> bool {
    file.try_lock().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn for_database(database: &Path) -> Result<FileLock, StoreError> {
        FileLock::try_for_database(database)?.ok_or_else(|| held_by_another(database))
    }

    #[test]
    fn a_second_lock_on_the_same_database_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        let first = for_database(&db).unwrap();
        assert!(dir.path().join("x.db.lock").exists());
        let second = for_database(&db).unwrap_err().to_string();
        assert!(second.contains("in use by another process"), "{second}");
        drop(first);
        for_database(&db).unwrap();
    }

    #[tokio::test]
    async fn a_lock_released_within_the_patience_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        let first = for_database(&db).unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(first);
        });
        let held = FileLock::for_database_within(&db, Duration::from_secs(5))
            .await
            .expect("taken once released");
        release.join().unwrap();
        // Held for longer than the patience: refused.
        let refused = FileLock::for_database_within(&db, Duration::from_millis(50))
            .await
            .unwrap_err()
            .to_string();
        assert!(refused.contains("in use by another process"), "{refused}");
        drop(held);
    }
}
