//! The summaries of the runs this instance executes, as their last commit (or the
//! executor's last read of the run) left them: status polling of a running run is
//! answered from here, without a database round trip.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;

use crate::model::{RunId, RunRecord};

/// Runs executing here, each with its latest summary (`None`: not known, read the store).
#[derive(Default)]
pub(crate) struct LiveRuns {
    runs: Mutex<HashMap<RunId, Option<Arc<RunRecord>>>>,
}

impl LiveRuns {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RunId, Option<Arc<RunRecord>>>> {
        self.runs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn get(&self, run_id: &RunId) -> Option<Arc<RunRecord>> {
        self.lock().get(run_id).cloned().flatten()
    }

    /// Keeps the summary of `run` (its `definition` and `runtime` left out) while it
    /// executes here, unless what is kept is newer: a higher `version` (a cancel request
    /// and a commit may report out of order).
    pub(crate) fn update(&self, run: &RunRecord) {
        let mut runs = self.lock();
        if let Some(kept) = runs.get_mut(&run.run_id)
            && kept.as_ref().is_none_or(|kept| kept.version <= run.version)
        {
            let summary = RunRecord {
                definition: Value::Null,
                runtime: Value::Null,
                ..run.clone()
            };
            *kept = Some(Arc::new(summary));
        }
    }

    /// Marks `run_id` as executing here until the guard is dropped.
    pub(crate) fn executing(self: &Arc<Self>, run_id: &RunId) -> ExecutingGuard {
        self.lock().insert(run_id.clone(), None);
        ExecutingGuard {
            live: Arc::clone(self),
            run_id: run_id.clone(),
        }
    }
}

/// Ends what [`LiveRuns::executing`] started.
pub(crate) struct ExecutingGuard {
    live: Arc<LiveRuns>,
    run_id: RunId,
}

impl Drop for ExecutingGuard {
    fn drop(&mut self) {
        self.live.lock().remove(&self.run_id);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::{Aggregates, Progress, RunKind, RunStatus, Timestamp, Usage};

    fn run(version: u64) -> RunRecord {
        RunRecord {
            run_id: format!("run_{}", "c".repeat(32)).parse().expect("run id"),
            kind: RunKind::Experiment,
            parent_run_id: None,
            status: RunStatus::Running,
            labels: Default::default(),
            definition: json!({"large": true}),
            runtime: json!({}),
            progress: Progress::default(),
            usage: Usage::default(),
            aggregates: Aggregates::default(),
            error: None,
            cancel_requested: false,
            last_seq: version,
            version,
            created_at: Timestamp::from_millis(1),
            started_at: None,
            finished_at: None,
            updated_at: Timestamp::from_millis(1),
        }
    }

    #[test]
    fn only_runs_executing_here_keep_their_newest_summary() {
        let live = Arc::new(LiveRuns::default());
        let id = run(1).run_id;
        live.update(&run(1));
        assert!(live.get(&id).is_none(), "not executing here");
        let guard = live.executing(&id);
        assert!(live.get(&id).is_none(), "nothing known yet");
        live.update(&run(3));
        live.update(&run(2));
        let kept = live.get(&id).expect("kept");
        assert_eq!(
            kept.version, 3,
            "an older summary does not replace a newer one"
        );
        assert_eq!(kept.definition, Value::Null);
        drop(guard);
        assert!(live.get(&id).is_none());
    }
}
