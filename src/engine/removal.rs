//! Removing finished runs: on request (`DELETE /runs/{id}`) and by the operator's
//! retention (`--retention-days`). The store decides what may go (see
//! [`crate::store::DatasetStore::delete_run`]); retention deletes leaves first, so a run
//! stays while a run derived from it is younger than the cutoff.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Engine, EngineError};
use crate::model::{RunId, Timestamp};
use crate::store::DeleteRun;

/// Runs retention looks at per store call.
const SWEEP_BATCH: u32 = 100;

impl Engine {
    /// Deletes a finished run (with `cascade`, also the runs derived from it).
    pub async fn delete_run(
        &self,
        run_id: &RunId,
        cascade: bool,
    ) -> Result<DeleteRun, EngineError> {
        Ok(self.store().delete_run(run_id, cascade).await?)
    }

    /// Deletes the finished runs that ended more than `age` ago and that no younger run
    /// derives from; returns how many went.
    pub async fn delete_expired(&self, age: Duration) -> Result<usize, EngineError> {
        let age_ms = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
        let cutoff = Timestamp::from_millis(Timestamp::now().as_millis().saturating_sub(age_ms));
        let mut deleted = 0;
        loop {
            let expired = self.store().expired_runs(cutoff, SWEEP_BATCH).await?;
            let mut progressed = false;
            for run_id in &expired {
                // A run that gained a child or vanished since the listing stays as it is.
                if let DeleteRun::Deleted(gone) = self.store().delete_run(run_id, false).await? {
                    deleted += gone.len();
                    progressed = true;
                }
            }
            if !progressed {
                return Ok(deleted);
            }
        }
    }
}

/// Deletes expired runs every `interval` until `stop` (the first sweep right away).
pub(crate) async fn retention_loop(
    engine: Engine,
    age: Duration,
    interval: Duration,
    stop: CancellationToken,
) {
    loop {
        match engine.delete_expired(age).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "retention deleted old finished runs"),
            Err(e) => tracing::warn!(error = %e, "retention sweep failed"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}
