//! The event log as stored: `event_batches` rows of a commit's events (up to 256 a row),
//! each holding the events with seq `first_seq..=last_seq` (gapless), one compact JSON
//! object per line: the event's [`EventBody`], whose run is the row's and whose seq is
//! its line's. The lines are compressed together in `packed`; rows written before that
//! hold them as text in `payload`, and rows written before bodies hold whole events
//! (with their own `run_id` and `seq`); all are read.

use sqlx::{ColumnIndex, Encode, Type};

use super::packed::decompress;
use super::{Dialect, Row, Value, from_json, to_i64, to_u64};
use crate::model::{EventBody, NewEvent, RunEvent, RunId};
use crate::store::{StoreError, StoreResult};

/// Rows read per query while collecting a page of events.
const ROWS_PER_READ: i64 = 16;

/// An event to append to the log, in whichever form the commit has it.
#[derive(Clone, Copy)]
pub(super) enum Pending<'e> {
    /// Encoded where its case ran.
    Encoded(&'e EventBody),
    /// Not encoded yet.
    New(&'e NewEvent),
    /// Sequenced already; its seq and run must be the ones it is stored under.
    Sequenced(&'e RunEvent),
}

/// Events as stored in one row, `events[i]` under seq `first_seq + i`. Compact JSON
/// never holds a newline.
pub(super) fn encode_event_lines(
    run_id: &RunId,
    first_seq: u64,
    events: &[Pending<'_>],
) -> StoreResult<String> {
    let corrupt = |e: serde_json::Error| StoreError::Corrupt(e.to_string());
    let mut payload = String::with_capacity(events.len() * 256);
    for (event, seq) in events.iter().zip(first_seq..) {
        if seq > first_seq {
            payload.push('\n');
        }
        match event {
            Pending::Encoded(body) => payload.push_str(body.as_str()),
            Pending::New(event) => {
                payload.push_str(EventBody::encode(event).map_err(corrupt)?.as_str());
            }
            Pending::Sequenced(event) => {
                if event.seq != seq || &event.run_id != run_id {
                    return Err(StoreError::Corrupt(
                        "events of one commit must be one run's, in sequence".into(),
                    ));
                }
                payload.push_str(EventBody::of_sequenced(event).map_err(corrupt)?.as_str());
            }
        }
    }
    Ok(payload)
}

/// The event stored as `line` under `seq` of the run.
fn decode_line(line: &str, run_id: &RunId, seq: u64) -> StoreResult<RunEvent> {
    if EventBody::is_body(line) {
        return EventBody::decode(line, run_id, seq)
            .map_err(|e| StoreError::Corrupt(format!("event {seq} of run {run_id}: {e}")));
    }
    let event: RunEvent = from_json(line)?;
    if event.seq != seq || &event.run_id != run_id {
        return Err(StoreError::Corrupt(format!(
            "event {} of run {} stored as seq {seq} of run {run_id}",
            event.seq, event.run_id
        )));
    }
    Ok(event)
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
    (i64, String, Option<Vec<u8>>): for<'r> sqlx::FromRow<'r, Row<D>>,
{
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut events = Vec::new();
    let mut last = after;
    while events.len() < limit {
        let rows = sqlx::query_as::<_, (i64, String, Option<Vec<u8>>)>(
            "SELECT first_seq, payload, packed FROM event_batches WHERE run_id = $1 AND last_seq > $2 \
             ORDER BY last_seq LIMIT $3",
        )
        .bind(run_id.as_str())
        .bind(to_i64(last)?)
        .bind(ROWS_PER_READ)
        .fetch_all(store.pool())
        .await?;
        let full = rows.len() == usize::try_from(ROWS_PER_READ).unwrap_or(usize::MAX);
        for (first_seq, payload, packed) in rows {
            let payload = match packed {
                Some(packed) => decompress(&packed)?,
                None => payload,
            };
            for (seq, line) in (to_u64(first_seq)?..).zip(payload.split('\n')) {
                if seq <= last {
                    continue;
                }
                if events.len() == limit {
                    return Ok(events);
                }
                events.push(decode_line(line, run_id, seq)?);
                last = seq;
            }
        }
        if !full {
            break;
        }
    }
    Ok(events)
}
