//! Reading the response cache: an entry is found by its key's digest (the index of
//! short keys) and is the key's only when the full key matches.

use sqlx::{ColumnIndex, Encode, Type};

use super::{Dialect, Row, Value};
use crate::store::StoreResult;
use crate::store::cache_digest::digest;

/// The response (JSON text) stored under `key` and the run that owns it.
pub(super) async fn cached<D>(store: &D, key: &str) -> StoreResult<Option<(String, Option<String>)>>
where
    D: Dialect,
    i64: Value<D::Db>,
    String: Value<D::Db>,
    Option<String>: Value<D::Db>,
    for<'s> &'s str: Encode<'s, D::Db> + Type<D::Db> + ColumnIndex<Row<D>>,
    usize: ColumnIndex<Row<D>>,
    for<'c> &'c sqlx::Pool<D::Db>: sqlx::Executor<'c, Database = D::Db>,
    (String, String, Option<String>): for<'r> sqlx::FromRow<'r, Row<D>>,
{
    let row = sqlx::query_as::<_, (String, String, Option<String>)>(
        "SELECT key, value, run_id FROM response_cache WHERE digest = $1",
    )
    .bind(digest(key))
    .fetch_optional(store.pool())
    .await?;
    // Another key with the same digest: this key's response is not stored.
    Ok(row
        .filter(|(stored, _, _)| stored == key)
        .map(|(_, value, owner)| (value, owner)))
}
