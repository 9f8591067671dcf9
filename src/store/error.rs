//! The store layer's error, and the one place that decides which database errors are
//! transient (worth retrying) and which are not.

use crate::model::{RunId, RunStatus};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("run {0} not found")]
    RunNotFound(RunId),
    #[error("run {run_id} is already {status:?}")]
    RunFinished { run_id: RunId, status: RunStatus },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The database could not be reached or asked us to try again (connection lost,
    /// pool timeout, serialization failure, deadlock, busy file, server shutting down).
    /// Nothing was written: retrying the same operation later is safe.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// A statement broke a constraint (unique, foreign key, not null, check): the
    /// operation conflicts with what is stored.
    #[error("database error: {0}")]
    Constraint(#[source] sqlx::Error),
    /// Any other database error: a statement or a decoding the code got wrong.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    #[error("database error: migrating: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// `--database` names no store this build has.
    #[error(
        "database error: unsupported database URL `{0}`; use sqlite://FILE, postgres://... or memory"
    )]
    UnsupportedUrl(String),
    /// Another process holds the SQLite database.
    #[error("{0}")]
    Locked(String),
    /// A run names a dataset revision the store does not have (deleted meanwhile).
    #[error("dataset {dataset_id} has no revision {revision}")]
    MissingRevision {
        dataset_id: String,
        revision: String,
    },
    /// The cases handed to the store could not be read.
    #[error("reading the cases to store: {0}")]
    Input(String),
}

impl StoreError {
    /// Whether the operation may succeed if retried later unchanged.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        if is_transient(&error) {
            StoreError::Unavailable(error)
        } else if is_constraint(&error) {
            StoreError::Constraint(error)
        } else {
            StoreError::Database(error)
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migrate(error)
    }
}

/// A unique, foreign-key, not-null or check violation (both dialects say which).
fn is_constraint(error: &sqlx::Error) -> bool {
    use sqlx::error::ErrorKind;
    match error {
        sqlx::Error::Database(db) => matches!(
            db.kind(),
            ErrorKind::UniqueViolation
                | ErrorKind::ForeignKeyViolation
                | ErrorKind::NotNullViolation
                | ErrorKind::CheckViolation
        ),
        _ => false,
    }
}

/// Postgres SQLSTATEs after which the same statement may succeed: connection exceptions
/// (class 08), serialization failure, deadlock, the server shutting down or starting up,
/// too many connections, a lock not available.
fn is_transient_sqlstate(code: &str) -> bool {
    code.starts_with("08")
        || matches!(
            code,
            "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "53300" | "55P03"
        )
}

/// SQLite result codes (primary code = low byte of the extended one): SQLITE_BUSY (5)
/// and SQLITE_LOCKED (6) mean another connection holds the lock.
fn is_transient_sqlite_code(code: &str) -> bool {
    code.parse::<i64>()
        .is_ok_and(|extended| matches!(extended & 0xff, 5 | 6))
}

fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let Some(code) = db.code() else { return false };
            if db
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .is_some()
            {
                is_transient_sqlstate(&code)
            } else if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                is_transient_sqlite_code(&code)
            } else {
                false
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_connections_and_timeouts_are_transient() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(StoreError::from(sqlx::Error::Io(refused)).is_transient());
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(StoreError::from(sqlx::Error::Io(reset)).is_transient());
        assert!(StoreError::from(sqlx::Error::PoolTimedOut).is_transient());
        assert!(StoreError::from(sqlx::Error::WorkerCrashed).is_transient());
    }

    #[test]
    fn mistakes_are_not_transient() {
        assert!(!StoreError::from(sqlx::Error::RowNotFound).is_transient());
        assert!(!StoreError::from(sqlx::Error::PoolClosed).is_transient());
        assert!(!StoreError::from(sqlx::Error::ColumnNotFound("x".into())).is_transient());
        assert!(!StoreError::Corrupt("x".into()).is_transient());
        assert!(!StoreError::Database(sqlx::Error::RowNotFound).is_transient());
    }

    #[test]
    fn postgres_codes() {
        for code in [
            "40001", "40P01", "57P01", "57P02", "57P03", "08006", "08001", "53300",
        ] {
            assert!(is_transient_sqlstate(code), "{code}");
        }
        for code in ["23505", "42P01", "22P02", "42601"] {
            assert!(!is_transient_sqlstate(code), "{code}");
        }
    }

    #[test]
    fn sqlite_codes() {
        // SQLITE_BUSY, SQLITE_LOCKED, SQLITE_BUSY_SNAPSHOT (517), SQLITE_LOCKED_SHAREDCACHE (262).
        for code in ["5", "6", "517", "262"] {
            assert!(is_transient_sqlite_code(code), "{code}");
        }
        // SQLITE_CONSTRAINT_PRIMARYKEY (1555), SQLITE_ERROR, SQLITE_CORRUPT.
        for code in ["1555", "1", "11", "x"] {
            assert!(!is_transient_sqlite_code(code), "{code}");
        }
    }

    /// A real SQLite constraint violation is its own variant, with the cause kept.
    #[tokio::test]
    async fn a_constraint_violation_is_told_from_other_errors() {
        use sqlx::Connection;
        let mut db = sqlx::SqliteConnection::connect("sqlite::memory:")
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER PRIMARY KEY)")
            .execute(&mut db)
            .await
            .unwrap();
        sqlx::query("INSERT INTO t VALUES (1)")
            .execute(&mut db)
            .await
            .unwrap();
        let duplicate = sqlx::query("INSERT INTO t VALUES (1)")
            .execute(&mut db)
            .await
            .unwrap_err();
        let error = StoreError::from(duplicate);
        assert!(matches!(error, StoreError::Constraint(_)), "{error:?}");
        assert!(!error.is_transient());
        let source = std::error::Error::source(&error).expect("the sqlx error is kept");
        assert!(source.to_string().contains("UNIQUE"), "{source}");
        let typo = sqlx::query("SELEC 1").execute(&mut db).await.unwrap_err();
        assert!(matches!(StoreError::from(typo), StoreError::Database(_)));
    }

    /// A real SQLite lock conflict comes back classified as transient.
    #[tokio::test]
    async fn a_busy_sqlite_file_is_transient() {
        use sqlx::Connection;
        use std::str::FromStr;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("busy.db").display());
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(&url)
            .unwrap()
            .create_if_missing(true)
            .busy_timeout(std::time::Duration::ZERO);
        let mut holder = sqlx::SqliteConnection::connect_with(&options)
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&mut holder)
            .await
            .unwrap();
        let mut other = sqlx::SqliteConnection::connect_with(&options)
            .await
            .unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut holder)
            .await
            .unwrap();
        let error = sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut other)
            .await
            .unwrap_err();
        let error = StoreError::from(error);
        assert!(error.is_transient(), "{error}");
        assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    }
}
