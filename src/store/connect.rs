//! Choosing a store from a database URL.

use std::sync::Arc;

use super::{MemoryStore, PostgresStore, SqliteStore, Store, StoreError};

/// Opens the store a URL names:
/// - `sqlite://path/file.db`, `sqlite:file.db`, `sqlite::memory:`, or a bare file path
///   (`themis.db`): the embedded SQLite store, created and migrated on open;
/// - `postgres://user:pass@host/db`: the shared store for several instances;
/// - `memory`: the in-process store (nothing survives a restart).
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url == "memory" || url == "memory:" {
        return Ok(Arc::new(MemoryStore::new()));
    }
    if url.starts_with("sqlite:") {
        return Ok(Arc::new(SqliteStore::connect(url).await?));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(PostgresStore::connect(url).await?));
    }
    if url.contains("://") {
        return Err(StoreError::UnsupportedUrl(url.to_owned()));
    }
    Ok(Arc::new(
        SqliteStore::connect(&format!("sqlite://{url}")).await?,
    ))
}
