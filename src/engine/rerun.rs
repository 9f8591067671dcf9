//! Retrying a finished run's failed cases: a run of its own (kind `retry`, the retried
//! run as its parent) that reuses every completed record of the parent and executes the
//! failed and missing cases anew, so its aggregates cover every case.
//!
//! Its id: `run_` + 32 hex digits of SHA-256 over `themis/retry/v1\n` and the canonical
//! JSON of `{"source_run_id": parent}`: the same retry asked twice is the same run. To
//! retry what still failed, retry the retry.

use serde_json::{Value, json};

use super::run_id::digest;
use super::{Engine, EngineError, RuntimeOptions};
use crate::model::canonical_json;
use crate::model::{RunId, RunKind, RunLabels, RunRecord, Timestamp};
use crate::store::{CreateOutcome, NewRun};

/// The stored definition of a retry of `source`.
pub(super) fn retry_definition(source: &RunId) -> Value {
    json!({ "source_run_id": source })
}

/// The id of the retry of `source`.
pub fn retry_id(source: &RunId) -> RunId {
    digest(
        "themis/retry/v1",
        &canonical_json(&retry_definition(source)),
    )
}

impl Engine {
    /// Stores a queued retry of `source`, which must have finished. `runtime`: the
    /// parent's unless given.
    pub async fn submit_retry(
        &self,
        source: &RunId,
        runtime: Option<&RuntimeOptions>,
    ) -> Result<CreateOutcome, EngineError> {
        self.submit_retry_with_budget(source, runtime, None).await
    }

    /// [`Engine::submit_retry`] under a new `budget_usd` (the parent's runtime options
    /// otherwise): how a run stopped by its budget continues. The budget bounds what
    /// the retry pays itself: the cases it reuses were paid by the run retried.
    pub async fn submit_retry_with_budget(
        &self,
        source: &RunId,
        runtime: Option<&RuntimeOptions>,
        budget_usd: Option<f64>,
    ) -> Result<CreateOutcome, EngineError> {
        let parent = self
            .store()
            .get_run(source)
            .await?
            .ok_or_else(|| EngineError::RunNotFound(source.clone()))?;
        if !parent.status.is_terminal() {
            return Err(EngineError::Conflict(format!(
                "run {source} is {}; retry needs a finished run",
                parent.status.as_str()
            )));
        }
        let mut runtime = match runtime {
            Some(runtime) => serde_json::to_value(runtime).unwrap_or_default(),
            None => parent.runtime.clone(),
        };
        if let (Some(usd), Some(map)) = (budget_usd, runtime.as_object_mut()) {
            map.insert("budget_usd".into(), usd.into());
        }
        let index_space = index_space_of(self, &parent).await?;
        let run = NewRun {
            run_id: retry_id(source),
            kind: RunKind::Retry,
            parent_run_id: Some(source.clone()),
            labels: RunLabels::default(),
            definition: retry_definition(source),
            runtime,
            total_cases: parent.progress.total,
            index_space,
            datasets: Vec::new(),
            created_at: Timestamp::now(),
        };
        Ok(self.store().create_run(run).await?)
    }
}

/// The case-index space a run's chunks cover: an experiment's total; a rejudge or
/// retry keeps the indices of the experiment its chain started from.
async fn index_space_of(engine: &Engine, run: &RunRecord) -> Result<u64, EngineError> {
    let mut current = run.clone();
    // Each step goes to an older run, so the chain ends; the bound guards a corrupt one.
    for _ in 0..10_000 {
        let parent = match (current.kind, &current.parent_run_id) {
            (RunKind::Experiment, _) => return Ok(current.progress.total),
            (_, Some(parent)) => parent.clone(),
            (_, None) => break,
        };
        current = engine
            .store()
            .get_run_summary(&parent)
            .await?
            .ok_or(EngineError::RunNotFound(parent))?;
    }
    Err(EngineError::Unusable(format!(
        "run {} does not lead back to an experiment",
        run.run_id
    )))
}
