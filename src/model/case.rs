use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{RunId, Timestamp, Usage};

/// One evaluation case of a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Case {
    pub case_id: String,
    pub input: Value,
    #[serde(default)]
    pub expected_output: Value,
    /// Free-form data carried with the case (tags, sources); part of the run definition.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub metadata: Value,
}

/// Where a work item sits in a run: one (dataset, case, seed) triple.
///
/// `case_index` is the item's position in the run's deterministic enumeration order
/// (datasets in order, then cases in order, then seeds in order); results are keyed and
/// paginated by it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CaseKey {
    pub case_index: u64,
    pub dataset_id: String,
    pub case_id: String,
    /// A string in JSON (see [`super::u64_string`]): seeds span the whole `u64` range.
    #[serde(with = "super::u64_string")]
    pub seed: u64,
}

/// The pipeline stages, in execution order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Generation,
    Reduction,
    Parsing,
    Scoring,
    Judging,
}

impl Stage {
    pub const ALL: [Stage; 5] = [
        Stage::Generation,
        Stage::Reduction,
        Stage::Parsing,
        Stage::Scoring,
        Stage::Judging,
    ];

    /// The span name of the stage, as in the framework's documentation.
    pub fn as_str(&self) -> &'static str {
        match self {
            Stage::Generation => "generation",
            Stage::Reduction => "reduction",
            Stage::Parsing => "parsing",
            Stage::Scoring => "scoring",
            Stage::Judging => "judging",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    Completed,
    Failed,
}

/// A generated candidate output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// `cand-{case_index}-{candidate_index}`: unique within the run.
    pub candidate_id: String,
    pub candidate_index: u32,
    /// The seed this candidate was generated with (derived from the case seed); a
    /// string in JSON.
    #[serde(with = "super::u64_string")]
    pub seed: u64,
    /// The generator's structured output (`null` when it failed).
    pub output: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    #[serde(default)]
    pub usage: Usage,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// An agent's turns and how its loop ended (`openai/agent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcript: Option<super::Transcript>,
}

/// The reducer's choice among the candidates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reduced {
    pub candidate_id: String,
    pub output: Value,
    pub source_candidate_ids: Vec<String>,
    /// What decided the choice: `builtin/best_of_n` records every candidate's score.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub details: Value,
}

/// One parser applied in the chain (the output of one feeds the next).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParseStep {
    pub parser_id: String,
    #[serde(default)]
    pub output: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreRecord {
    pub metric_id: String,
    pub score: Option<f64>,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub details: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgmentRecord {
    pub judge_id: String,
    pub score: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rationale: Option<String>,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub details: Value,
    #[serde(default)]
    pub usage: Usage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Outcome of one stage for one case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    pub stage: Stage,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Why a case failed: the first stage that failed and its error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseError {
    pub stage: Stage,
    pub message: String,
}

/// Everything the pipeline produced for one (dataset, case, seed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseRecord {
    pub run_id: RunId,
    #[serde(flatten)]
    pub key: CaseKey,
    pub status: CaseStatus,
    pub candidates: Vec<Candidate>,
    pub reduced: Option<Reduced>,
    pub parsed: Option<Value>,
    pub parse_steps: Vec<ParseStep>,
    pub scores: Vec<ScoreRecord>,
    pub judgments: Vec<JudgmentRecord>,
    pub error: Option<CaseError>,
    pub stages: Vec<StageRecord>,
    pub usage: Usage,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
}
