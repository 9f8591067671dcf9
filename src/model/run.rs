use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Aggregates, RunId, Timestamp, Usage};

/// Lifecycle of a run. `completed`, `failed` and `cancelled` are terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub const ALL: [RunStatus; 5] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::Cancelled,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }

    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled
        )
    }
}

/// What produced a run's generations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// A full experiment: generation and evaluation.
    Experiment,
    /// A new evaluation over the stored generations of `parent_run_id`.
    Rejudge,
    /// `parent_run_id` again: its completed cases reused, its failed (and missing) ones
    /// executed anew.
    Retry,
}

impl RunKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            RunKind::Experiment => "experiment",
            RunKind::Rejudge => "rejudge",
            RunKind::Retry => "retry",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "experiment" => Some(RunKind::Experiment),
            "rejudge" => Some(RunKind::Rejudge),
            "retry" => Some(RunKind::Retry),
            _ => None,
        }
    }
}

/// Case counts of a run; `completed + failed <= total`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub total: u64,
    pub completed: u64,
    pub failed: u64,
}

impl Progress {
    pub fn finished(&self) -> u64 {
        self.completed + self.failed
    }
}

/// What a person calls a run: a name, tags and free-form metadata. Like instrumentation,
/// never part of the run id; set when the run is created.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunLabels {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub metadata: serde_json::Map<String, Value>,
}

impl RunLabels {
    /// How a tag is written in the stored list (`["a","b"]`): its JSON string. Tags hold
    /// no `"` or `\`, so this text occurs in the list exactly when the tag is in it.
    pub fn tag_pattern(tag: &str) -> String {
        serde_json::to_string(tag).unwrap_or_default()
    }
}

/// A run as it is stored: definition, status, progress and the aggregate snapshot.
///
/// Progress, usage and aggregates are kept up to date on every commit, so reading a
/// run is one row and never a scan of its cases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: RunId,
    pub kind: RunKind,
    /// For a rejudge: the run whose stored generations it evaluates.
    pub parent_run_id: Option<RunId>,
    pub status: RunStatus,
    /// Name, tags and metadata (not part of the id).
    #[serde(default)]
    pub labels: RunLabels,
    /// The canonical logical definition the run id was derived from.
    pub definition: Value,
    /// Runtime-only options (tracing, subscribers, concurrency). Never part of the id.
    pub runtime: Value,
    pub progress: Progress,
    pub usage: Usage,
    pub aggregates: Aggregates,
    pub error: Option<String>,
    /// Set when a cancel was asked for; the executing instance stops the run.
    pub cancel_requested: bool,
    /// Highest event sequence number written for this run (0 before the first event).
    pub last_seq: u64,
    /// Bumped on every change: the basis of the HTTP `ETag`.
    pub version: u64,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub updated_at: Timestamp,
}
