use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{CaseKey, JudgmentRecord, Progress, RunId, Stage, Timestamp};

/// Version of the event payload shape; bumped on incompatible changes.
pub(super) const EVENT_SCHEMA_VERSION: &str = "1";

/// A lifecycle event as persisted and streamed: `seq` is per run, starts at 1 and has
/// no gaps; the store assigns it when the event is committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunEvent {
    pub schema_version: String,
    pub run_id: RunId,
    pub seq: u64,
    pub occurred_at: Timestamp,
    #[serde(flatten)]
    pub kind: EventKind,
}

impl RunEvent {
    pub fn event_type(&self) -> &'static str {
        self.kind.event_type()
    }
}

/// An event before the store sequenced it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub occurred_at: Timestamp,
    pub kind: EventKind,
}

impl NewEvent {
    pub fn now(kind: EventKind) -> Self {
        NewEvent {
            occurred_at: Timestamp::now(),
            kind,
        }
    }

    pub fn sequenced(self, run_id: &RunId, seq: u64) -> RunEvent {
        RunEvent {
            schema_version: EVENT_SCHEMA_VERSION.to_owned(),
            run_id: run_id.clone(),
            seq,
            occurred_at: self.occurred_at,
            kind: self.kind,
        }
    }
}

/// What an event's JSON holds after its `seq`, as the object `{"occurred_at":…,
/// "event_type":…}`: the form the event log stores. Its run, `seq` and schema version
/// are where it is stored (the log's row and line, the current version), so they are
/// not repeated in every line (issue 12: ~80 of a case event's ~300 bytes).
/// Encoded where the event was made (a case's task, on any core): the commit, which
/// runs one at a time, only joins the lines.
#[derive(Debug, Clone, PartialEq)]
pub struct EventBody(String);

#[derive(Serialize)]
struct BodyFields<'a> {
    occurred_at: &'a Timestamp,
    #[serde(flatten)]
    kind: &'a EventKind,
}

#[derive(Deserialize)]
struct OwnedBody {
    occurred_at: Timestamp,
    #[serde(flatten)]
    kind: EventKind,
}

impl EventBody {
    pub fn encode(event: &NewEvent) -> serde_json::Result<Self> {
        Self::of(&event.occurred_at, &event.kind)
    }

    /// The body of an event already sequenced (its run and `seq` are left out).
    pub fn of_sequenced(event: &RunEvent) -> serde_json::Result<Self> {
        Self::of(&event.occurred_at, &event.kind)
    }

    fn of(occurred_at: &Timestamp, kind: &EventKind) -> serde_json::Result<Self> {
        serde_json::to_string(&BodyFields { occurred_at, kind }).map(EventBody)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `json` is a body (else it is a whole [`RunEvent`], as logs written
    /// before bodies hold).
    pub fn is_body(json: &str) -> bool {
        json.starts_with("{\"occurred_at\"")
    }

    /// The event whose body `json` is, sequenced `seq` in `run_id`.
    pub fn decode(json: &str, run_id: &RunId, seq: u64) -> serde_json::Result<RunEvent> {
        let body: OwnedBody = serde_json::from_str(json)?;
        Ok(NewEvent {
            occurred_at: body.occurred_at,
            kind: body.kind,
        }
        .sequenced(run_id, seq))
    }
}

/// Typed event payloads; `event_type` names follow the framework (`run_started`,
/// `generation_completed`, `score_completed`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type", rename_all = "snake_case")]
pub enum EventKind {
    RunStarted {
        total_cases: u64,
        /// True when the run continues after a restart or a lost lease.
        resumed: bool,
    },
    RunCompleted {
        progress: Progress,
    },
    RunFailed {
        error_message: String,
        progress: Progress,
    },
    RunCancelled {
        progress: Progress,
    },
    CaseStarted {
        #[serde(flatten)]
        case: CaseKey,
    },
    CaseCompleted {
        #[serde(flatten)]
        case: CaseKey,
        duration_ms: u64,
    },
    CaseFailed {
        #[serde(flatten)]
        case: CaseKey,
        stage: Stage,
        error_message: String,
    },
    GenerationCompleted {
        #[serde(flatten)]
        case: CaseKey,
        candidate_id: String,
        candidate_index: u32,
        #[serde(with = "super::u64_string")]
        candidate_seed: u64,
        provider_key: String,
        result: Value,
    },
    GenerationFailed {
        #[serde(flatten)]
        case: CaseKey,
        candidate_id: String,
        error_message: String,
    },
    ReductionCompleted {
        #[serde(flatten)]
        case: CaseKey,
        candidate_id: String,
        source_candidate_ids: Vec<String>,
        result: Value,
    },
    ReductionFailed {
        #[serde(flatten)]
        case: CaseKey,
        error_message: String,
    },
    ParseCompleted {
        #[serde(flatten)]
        case: CaseKey,
        candidate_id: String,
        parser_id: String,
        result: Value,
    },
    ParseFailed {
        #[serde(flatten)]
        case: CaseKey,
        candidate_id: String,
        parser_id: String,
        error_message: String,
    },
    ScoreCompleted {
        #[serde(flatten)]
        case: CaseKey,
        candidate_id: String,
        metric_id: String,
        score: f64,
    },
    ScoreFailed {
        #[serde(flatten)]
        case: CaseKey,
        candidate_id: String,
        metric_id: String,
        error: String,
    },
    /// A judge finished (the framework's name for judge workflows).
    EvaluationCompleted {
        #[serde(flatten)]
        case: CaseKey,
        candidate_id: String,
        metric_id: String,
        execution: JudgmentRecord,
    },
    EvaluationFailed {
        #[serde(flatten)]
        case: CaseKey,
        candidate_id: String,
        metric_id: String,
        error_message: String,
    },
    /// Periodic progress of the run (at most a few per second).
    Progress {
        progress: Progress,
    },
    /// A provider request failed and is retried after `delay_ms`.
    ProviderRetry {
        #[serde(flatten)]
        case: CaseKey,
        provider: String,
        attempt: u32,
        delay_ms: u64,
        reason: String,
    },
    /// A provider request waited for the endpoint's rate limit.
    ProviderRateLimited {
        #[serde(flatten)]
        case: CaseKey,
        provider: String,
        wait_ms: u64,
    },
    /// The run asked for more cases at once than this instance gives it (written when an
    /// execution starts): it runs at `effective`, for `reason`.
    ConcurrencyLimited {
        requested: u64,
        effective: u64,
        reason: String,
    },
    /// The next case's worst-case cost would pass the run's budget: the run starts no
    /// more cases, lets those in flight finish, then fails with this as its reason.
    BudgetExhausted {
        budget_usd: f64,
        spent_usd: f64,
        reserved_usd: f64,
        /// The worst-case cost of the case that was refused.
        next_case_usd: f64,
    },
}

impl EventKind {
    pub fn event_type(&self) -> &'static str {
        match self {
            EventKind::RunStarted { .. } => "run_started",
            EventKind::RunCompleted { .. } => "run_completed",
            EventKind::RunFailed { .. } => "run_failed",
            EventKind::RunCancelled { .. } => "run_cancelled",
            EventKind::CaseStarted { .. } => "case_started",
            EventKind::CaseCompleted { .. } => "case_completed",
            EventKind::CaseFailed { .. } => "case_failed",
            EventKind::GenerationCompleted { .. } => "generation_completed",
            EventKind::GenerationFailed { .. } => "generation_failed",
            EventKind::ReductionCompleted { .. } => "reduction_completed",
            EventKind::ReductionFailed { .. } => "reduction_failed",
            EventKind::ParseCompleted { .. } => "parse_completed",
            EventKind::ParseFailed { .. } => "parse_failed",
            EventKind::ScoreCompleted { .. } => "score_completed",
            EventKind::ScoreFailed { .. } => "score_failed",
            EventKind::EvaluationCompleted { .. } => "evaluation_completed",
            EventKind::EvaluationFailed { .. } => "evaluation_failed",
            EventKind::Progress { .. } => "progress",
            EventKind::ProviderRetry { .. } => "provider_retry",
            EventKind::ProviderRateLimited { .. } => "provider_rate_limited",
            EventKind::ConcurrencyLimited { .. } => "concurrency_limited",
            EventKind::BudgetExhausted { .. } => "budget_exhausted",
        }
    }

    /// Run-level terminal events: a stream of the run ends after one of these.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            EventKind::RunCompleted { .. }
                | EventKind::RunFailed { .. }
                | EventKind::RunCancelled { .. }
        )
    }
}

/// A run event for tests of what carries events: `run_completed` when `terminal`, else a
/// `run_started` (numbered by its seq).
#[cfg(test)]
pub(crate) fn sample_event(run_id: &RunId, seq: u64, terminal: bool) -> RunEvent {
    let kind = if terminal {
        EventKind::RunCompleted {
            progress: Progress::default(),
        }
    } else {
        EventKind::RunStarted {
            total_cases: seq,
            resumed: false,
        }
    };
    NewEvent::now(kind).sequenced(run_id, seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_with_flat_case_fields() {
        let event = NewEvent {
            occurred_at: Timestamp::from_millis(0),
            kind: EventKind::ScoreCompleted {
                case: CaseKey {
                    case_index: 3,
                    dataset_id: "d".into(),
                    case_id: "c".into(),
                    seed: 7,
                },
                candidate_id: "x".into(),
                metric_id: "builtin/exact_match".into(),
                score: 1.0,
            },
        }
        .sequenced(&RunId::from_digest(&[1; 32]), 5);
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["event_type"], "score_completed");
        assert_eq!(json["case_id"], "c");
        assert_eq!(json["seq"], 5);
        let back: RunEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
        assert_eq!(back.event_type(), "score_completed");
    }

    #[test]
    fn a_body_decodes_to_the_event_it_came_from() {
        let run_id = RunId::from_digest(&[7; 32]);
        let case = CaseKey {
            case_index: 12,
            dataset_id: "d \"quoted\" \u{e9}\n".into(),
            case_id: "c\\1".into(),
            seed: 3,
        };
        let kinds = [
            EventKind::CaseStarted { case: case.clone() },
            EventKind::ScoreCompleted {
                case: case.clone(),
                candidate_id: "x".into(),
                metric_id: "builtin/exact_match".into(),
                score: 0.1 + 0.2,
            },
            EventKind::CaseCompleted {
                case,
                duration_ms: 41,
            },
            EventKind::RunFailed {
                error_message: "\u{1}broke".into(),
                progress: Progress::default(),
            },
        ];
        for (seq, kind) in (1..).zip(kinds) {
            let event = NewEvent::now(kind);
            let body = EventBody::encode(&event).unwrap();
            assert!(EventBody::is_body(body.as_str()), "{}", body.as_str());
            assert!(!body.as_str().contains('\n'), "one line: {}", body.as_str());
            let sequenced = event.sequenced(&run_id, seq * 1_000_003);
            assert_eq!(EventBody::of_sequenced(&sequenced).unwrap(), body);
            let back = EventBody::decode(body.as_str(), &run_id, seq * 1_000_003).unwrap();
            assert_eq!(back, sequenced);
            let whole = serde_json::to_string(&sequenced).unwrap();
            assert!(!EventBody::is_body(&whole), "{whole}");
        }
    }
}
