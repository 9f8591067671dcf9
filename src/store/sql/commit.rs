//! A batch of finished cases committed: the run's row, the case records, the chunks they
//! finish and their events, in one transaction.

use sqlx::{ColumnIndex, Encode, Executor, Type};

use super::events::Pending;
use super::write::PreparedCase;
use super::{Conn, Dialect, Row, Value, to_i64};
use crate::store::apply::{fence, touched_chunks};
use crate::store::{CaseCommit, CommitBatch, CommitOutcome, StoreResult};

/// One transaction of a commit of `batch`, its cases serialised before (`prepared`,
/// their records compressed together in `records`, slot `i` the record of case `i`):
/// `None` (rolled back) when `returning` is off and some case had been recorded before.
/// The caller then commits again with `returning` on, to learn which.
pub(super) async fn attempt<D>(
    store: &D,
    batch: &CommitBatch,
    prepared: &[PreparedCase<'_>],
    records: &[u8],
    returning: bool,
) -> StoreResult<Option<CommitOutcome>>
where
    D: Dialect,
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::Db>,
    i64: Value<D::Db>,
    bool: Value<D::Db>,
    String: Value<D::Db>,
    Option<i64>: Value<D::Db>,
    Option<String>: Value<D::Db>,
    for<'s> &'s str: Encode<'s, D::Db> + Type<D::Db> + ColumnIndex<Row<D>>,
    usize: ColumnIndex<Row<D>>,
    Vec<u8>: Value<D::Db>,
    Option<Vec<u8>>: Value<D::Db>,
{
    let mut cases: Vec<(usize, &CaseCommit, &PreparedCase)> = batch
        .cases
        .iter()
        .zip(prepared)
        .enumerate()
        .map(|(position, (case, row))| (position, case, row))
        .collect();
    let mut write = store.begin().await?;
    let mut state = write.load_state(&batch.run_id).await?;
    if let Some(skipped) = state.precheck(batch)? {
        return Ok(Some(skipped));
    }
    let mut discarded = 0;
    let mut completed = batch.completed_chunks.clone();
    if let Some(owner) = &batch.lease_owner {
        // The held chunks stay locked until the commit: nobody claims them meanwhile.
        let touched = touched_chunks(batch)
            .into_iter()
            .map(to_i64)
            .collect::<StoreResult<Vec<_>>>()?;
        let held = write.held_chunks(&batch.run_id, owner, &touched).await?;
        let (keep, chunks) = fence(batch, &held);
        let mut kept = keep.iter();
        cases.retain(|_| kept.next().copied().unwrap_or(false));
        discarded = keep.iter().filter(|k| !**k).count();
        completed = chunks;
    }
    let rows: Vec<&PreparedCase> = cases.iter().map(|(_, _, row)| *row).collect();
    // The records' batch is numbered by the version this commit gives the run: the
    // run's row is held until the commit, so no other commit takes the same number.
    let records_batch = to_i64(state.record.version + 1)?;
    // A case recorded before (by another instance, or earlier in this batch) is skipped
    // with its events.
    let Some(mut inserted) = write
        .insert_cases(&batch.run_id, &rows, records_batch, returning)
        .await?
    else {
        return Ok(None);
    };
    if !inserted.is_empty() {
        write
            .insert_record_batch(&batch.run_id, records_batch, records.to_vec())
            .await?;
    }
    let mut kept = Vec::with_capacity(cases.len());
    let mut kept_cases = Vec::with_capacity(cases.len());
    let mut duplicates = 0;
    for (position, case, row) in cases {
        if inserted.remove(&row.index) {
            state.count_case(case);
            kept.push(case);
            kept_cases.push(position);
        } else {
            duplicates += 1;
        }
    }
    if !completed.is_empty() {
        let completed = completed
            .into_iter()
            .map(to_i64)
            .collect::<StoreResult<Vec<_>>>()?;
        write.finish_chunks(&batch.run_id, &completed).await?;
    }
    let (first_seq, tail) = state.sequence_commit(&kept, batch);
    let mut pending: Vec<Pending<'_>> = Vec::new();
    for case in &kept {
        match &case.encoded {
            Some(encoded) if encoded.events.len() == case.events.len() => {
                pending.extend(encoded.events.iter().map(Pending::Encoded));
            }
            _ => pending.extend(case.events.iter().map(Pending::New)),
        }
    }
    pending.extend(tail.iter().map(Pending::Sequenced));
    write
        .insert_events(&batch.run_id, first_seq, &pending)
        .await?;
    drop(pending);
    write.insert_cache_writes(&batch.run_id, &kept).await?;
    write.save_state(&state).await?;
    write.commit().await?;
    Ok(Some(CommitOutcome {
        kept_cases,
        first_case_seq: first_seq,
        tail,
        duplicates,
        discarded,
        ..state.outcome()
    }))
}
