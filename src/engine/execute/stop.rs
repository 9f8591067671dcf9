//! Why an execution's case loop ends, and the failure policy that can end it.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::engine::FailurePolicy;
use crate::model::Progress;
use crate::store::StoreError;

/// Trips when the run's failure policy is exceeded (checked on every commit). Exactly
/// `max_ratio` does not trip it; the commit that exceeds it is the run's last.
#[derive(Clone, Default)]
pub(super) struct FailureGuard {
    pub(super) policy: Option<FailurePolicy>,
    pub(super) tripped: CancellationToken,
    pub(super) reason: Arc<std::sync::OnceLock<String>>,
}

impl FailureGuard {
    pub(super) fn check(&self, progress: &Progress) {
        let Some(policy) = self.policy else { return };
        let finished = progress.finished();
        if finished >= policy.min_cases
            && progress.failed as f64 > policy.max_ratio * finished as f64
        {
            let _ = self.reason.set(format!(
                "stopped: {} of {finished} finished cases failed, more than the failure policy's max_ratio {}",
                progress.failed, policy.max_ratio
            ));
            self.tripped.cancel();
        }
    }

    pub(super) fn reason(&self) -> String {
        self.reason
            .get()
            .cloned()
            .unwrap_or_else(|| "failure policy exceeded".to_owned())
    }
}

/// Why the case loop ended.
pub(super) enum Stop {
    Finished,
    Cancelled,
    /// The service is shutting down: the run stays `running` and resumes on next start.
    Interrupted,
    Failed(String),
    /// The next case would pass the run's budget: no more were started.
    Budget,
}

/// How an execution stops on a store error it could not ride out: a transient one (the
/// store stayed unreachable for the whole retry patience) leaves the run `running`, to
/// resume once the store is back; any other fails the run.
pub(super) fn stop_on_store_error(error: StoreError) -> Stop {
    if error.is_transient() {
        tracing::error!(%error, "the store stayed unavailable; the run stops here and resumes later");
        Stop::Interrupted
    } else {
        Stop::Failed(error.to_string())
    }
}
