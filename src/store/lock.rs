//! SQLite serves one process: an exclusive OS lock on `<database>.lock`, held for as
//! long as the store lives, makes a second process on the same file refuse to start
//! instead of resetting the first one's leases.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use super::StoreError;

/// An exclusive `flock` on a lock file; released when dropped (or when the process
/// dies, however it dies: the kernel drops the lock with the descriptor).
#[derive(Debug)]
pub(super) struct FileLock {
    _file: File,
}

impl FileLock {
    /// Locks `<database>.lock` next to the database file, or explains who holds it.
    pub(super) fn for_database(database: &Path) -> Result<FileLock, StoreError> {
        let mut name = database.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| {
                StoreError::Locked(format!("cannot open lock file {}: {e}", path.display()))
            })?;
        if !try_lock_exclusive(&file) {
            return Err(StoreError::Locked(format!(
                "the SQLite database {} is in use by another process (it holds {}); \
                 SQLite serves one process: stop the other one, or use Postgres to run \
                 several instances",
                database.display(),
                path.display()
            )));
        }
        Ok(FileLock { _file: file })
    }
}

/// `flock(LOCK_EX | LOCK_NB)` on Unix: an advisory lock every Themis process checks.
fn try_lock_exclusive(file: &File) -> bool {
    file.try_lock().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_database_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        let first = FileLock::for_database(&db).unwrap();
        assert!(dir.path().join("x.db.lock").exists());
        let second = FileLock::for_database(&db).unwrap_err().to_string();
        assert!(second.contains("in use by another process"), "{second}");
        drop(first);
        FileLock::for_database(&db).unwrap();
    }
}
