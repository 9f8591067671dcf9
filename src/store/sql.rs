//! Conversions shared by the SQL stores (SQLite and Postgres keep numbers as i64 and
//! JSON documents as text).

use super::{StoreError, StoreResult};

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

/// The run columns every listing and status read selects (not the large definition).
pub(super) const SUMMARY_COLUMNS: &str = "run_id, kind, parent_run_id, status, total, completed, failed, usage, \
     aggregates, error, cancel_requested, last_seq, version, created_at, started_at, finished_at, updated_at";
