//! The claimer: claims chunks of the run ahead of execution, on a task of its own.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::leases::LeaseSet;
use super::plan::{Plan, WorkItem};
use super::recorder::RecorderMsg;
use crate::engine::Engine;
use crate::engine::retry::retry;
use crate::model::RunId;
use crate::store::StoreError;

impl Engine {
    /// The pending work of the next chunk this instance can claim, or `None` when no
    /// chunk is claimable. Tells the recorder how many cases complete the chunk.
    /// `from` is where the search starts, the chunk after the last one claimed: chunks
    /// before it are looked at again (another instance may have left one behind) only
    /// when none is left after it.
    pub(super) async fn claim_work(
        &self,
        run_id: &RunId,
        plan: &Plan,
        tx: &mpsc::Sender<RecorderMsg>,
        leases: &LeaseSet,
        from: &mut u64,
    ) -> Option<Result<Vec<WorkItem>, StoreError>> {
        let store = self.store();
        let config = self.config();
        // A claim whose answer is lost in an outage leaves a chunk leased to us that we
        // never work on: the heartbeat does not renew it, so it frees itself in time.
        let start = *from;
        let claim = retry(config.store_patience, "claiming work", || async {
            let mut claimed = store
                .claim_chunk_from(run_id, &config.instance_id, config.lease, start)
                .await?;
            if claimed.is_none() && start > 0 {
                claimed = store
                    .claim_chunk_from(run_id, &config.instance_id, config.lease, 0)
                    .await?;
            }
            let Some(chunk) = claimed else {
                return Ok(None);
            };
            let recorded: HashSet<u64> = store
                .recorded_case_indices(run_id, chunk.start..chunk.end)
                .await?
                .into_iter()
                .collect();
            let lost = CancellationToken::new();
            let items = plan
                .work_in(store.as_ref(), &chunk, &recorded, &lost)
                .await?;
            Ok(Some((chunk.chunk_index, items, lost)))
        });
        match claim.await {
            Ok(None) => None,
            Err(e) => Some(Err(e)),
            Ok(Some((chunk_index, items, lost))) => {
                *from = chunk_index + 1;
                // Renewed from now on; a chunk claimed by an attempt that failed later
                // is not, so its lease runs out and it is claimed again.
                leases.hold(chunk_index, lost);
                let claimed = RecorderMsg::ChunkClaimed {
                    chunk_index,
                    pending: items.len(),
                };
                if tx.send(claimed).await.is_err() {
                    return None;
                }
                Some(Ok(items))
            }
        }
    }

    /// Claims chunks ahead of execution on a task of its own, so a claim (a write that
    /// may wait behind a commit) never leaves execution slots idle. Items arrive on the
    /// returned channel; it closes when no chunk is left to claim.
    pub(super) fn spawn_claimer(
        &self,
        run_id: RunId,
        plan: Arc<Plan>,
        recorder: mpsc::Sender<RecorderMsg>,
        lookahead: usize,
        leases: Arc<LeaseSet>,
    ) -> (
        mpsc::Receiver<Result<WorkItem, StoreError>>,
        tokio::task::JoinHandle<()>,
    ) {
        let (items, received) = mpsc::channel(lookahead.max(1));
        let engine = self.clone();
        let handle = tokio::spawn(async move {
            let mut from = 0;
            loop {
                match engine
                    .claim_work(&run_id, &plan, &recorder, &leases, &mut from)
                    .await
                {
                    None => return,
                    Some(Err(e)) => {
                        let _ = items.send(Err(e)).await;
                        return;
                    }
                    Some(Ok(claimed)) => {
                        for item in claimed {
                            if items.send(Ok(item)).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        });
        (received, handle)
    }
}
