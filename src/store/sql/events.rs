//! The event log as stored: `event_batches` rows of a commit's events (up to 256 a row),
//! each holding the events with seq `first_seq..=last_seq` (gapless), one compact JSON
//! object per line.

use sqlx::{ColumnIndex, Encode, Type};

use super::{Dialect, Row, Value, from_json, to_i64, to_u64};
use crate::model::{EventBody, RunEvent, RunId, write_sequenced};
use crate::store::{StoreError, StoreResult};

/// Rows read per query while collecting a page of events.
const ROWS_PER_READ: i64 = 16;

/// Events as stored in one row. Compact JSON never holds a newline.
pub(super) fn encode_event_lines(
    events: &[RunEvent],
    bodies: &[Option<&EventBody>],
) -> StoreResult<String> {
    let mut payload = Vec::with_capacity(events.len() * 320);
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            payload.push(b'\n');
        }
        match bodies.get(i).copied().flatten() {
            Some(body) => write_sequenced(&mut payload, &event.run_id, event.seq, body),
            None => serde_json::to_writer(&mut payload, event)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        }
    }
    String::from_utf8(payload).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Up to `limit` events of the run with seq above `after`, in order. Lines before
/// `after` in the first row are skipped without being parsed.
pub(super) async fn events_after<D>(
    store: &D,
    run_id: &RunId,
    after: u64,
    limit: u32,
) -> StoreResult<Vec<RunEvent>>
where
    D: Dialect,
    i64: Value<D::Db>,
    String: Value<D::Db>,
    for<'s> &'s str: Encode<'s, D::Db> + Type<D::Db> + ColumnIndex<Row<D>>,
    usize: ColumnIndex<Row<D>>,
    for<'c> &'c sqlx::Pool<D::Db>: sqlx::Executor<'c, Database = D::Db>,
    (i64, String): for<'r> sqlx::FromRow<'r, Row<D>>,
{
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut events = Vec::new();
    let mut last = after;
    while events.len() < limit {
        let rows = sqlx::query_as::<_, (i64, String)>(
            "SELECT first_seq, payload FROM event_batches WHERE run_id = $1 AND last_seq > $2 \
             ORDER BY last_seq LIMIT $3",
        )
        .bind(run_id.as_str())
        .bind(to_i64(last)?)
        .bind(ROWS_PER_READ)
        .fetch_all(store.pool())
        .await?;
        let full = rows.len() == usize::try_from(ROWS_PER_READ).unwrap_or(usize::MAX);
        for (first_seq, payload) in rows {
            for (seq, line) in (to_u64(first_seq)?..).zip(payload.split('\n')) {
                if seq <= last {
                    continue;
                }
                if events.len() == limit {
                    return Ok(events);
                }
                let event: RunEvent = from_json(line)?;
                if event.seq != seq {
                    return Err(StoreError::Corrupt(format!(
                        "event {} stored as seq {seq} of run {run_id}",
                        event.seq
                    )));
                }
                events.push(event);
                last = seq;
            }
        }
        if !full {
            break;
        }
    }
    Ok(events)
}
