//! Case records read back from their commits' batches: a page of `case_records` rows
//! says where each record is (`batch`, `slot`); each batch the page touches is read and
//! decompressed once.

use std::collections::HashMap;

use sqlx::{ColumnIndex, Encode, QueryBuilder, Type};

use super::packed::{Codec, unpack};
use super::{Dialect, Row, Value, from_json};
use crate::model::{CaseRecord, RunId};
use crate::store::{StoreError, StoreResult};

/// The records at `places` (`(batch, slot)`, in the order wanted) of the run.
pub(super) async fn read<D>(
    store: &D,
    run_id: &RunId,
    places: &[(i64, i64)],
) -> StoreResult<Vec<CaseRecord>>
where
    D: Dialect,
    i64: Value<D::Db>,
    Vec<u8>: Value<D::Db>,
    for<'s> &'s str: Encode<'s, D::Db> + Type<D::Db> + ColumnIndex<Row<D>>,
    usize: ColumnIndex<Row<D>>,
    for<'c> &'c sqlx::Pool<D::Db>: sqlx::Executor<'c, Database = D::Db>,
    (i64, i64, Vec<u8>): for<'r> sqlx::FromRow<'r, Row<D>>,
{
    if places.is_empty() {
        return Ok(Vec::new());
    }
    let mut wanted: Vec<i64> = places.iter().map(|(batch, _)| *batch).collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut texts: HashMap<i64, String> = HashMap::with_capacity(wanted.len());
    for ids in wanted.chunks(D::MAX_PARAMS - 1) {
        let mut builder = QueryBuilder::<D::Db>::new(
            "SELECT batch, codec, payload FROM record_batches WHERE run_id = ",
        );
        builder.push_bind(run_id.as_str()).push(" AND batch");
        D::push_in(&mut builder, ids);
        let rows = builder
            .build_query_as::<(i64, i64, Vec<u8>)>()
            .persistent(false)
            .fetch_all(store.pool())
            .await?;
        for (batch, codec, payload) in rows {
            texts.insert(batch, unpack(Codec::from_code(codec)?, payload)?);
        }
    }
    let lines: HashMap<i64, Vec<&str>> = texts
        .iter()
        .map(|(batch, text)| (*batch, text.split('\n').collect()))
        .collect();
    places
        .iter()
        .map(|(batch, slot)| {
            let line = lines
                .get(batch)
                .and_then(|lines| usize::try_from(*slot).ok().and_then(|s| lines.get(s)))
                .ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "run {run_id}: no record in slot {slot} of batch {batch}"
                    ))
                })?;
            from_json(line)
        })
        .collect()
}
