//! The deterministic run id.
//!
//! The rule (also in docs/design/run-id.md), version 2: the run id is `run_` + the first 32 hex
//! digits of SHA-256 over `themis/run/v2\n` followed by the canonical JSON (see
//! [`canonical_json`]) of the normalised logical definition (`generation`,
//! `evaluation`, `datasets`, `seeds`). Normalised means defaults filled in, every
//! component written as `{id, name, params, version}`, and every dataset by content:
//! `{dataset_id, revision, case_count}` (see [`crate::engine::datasets`]), so inline and
//! stored cases give the same id.
//!
//! Version 1 (the release before datasets were resources) hashed `themis/run/v1\n` and
//! the cases themselves. Ids are stored, never recomputed: runs stored under v1 keep
//! their ids, and their stored definitions (with inline cases) still execute.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::definition::{EvaluationConfig, Experiment};
use crate::model::{RunId, canonical_json};

pub(super) fn digest(domain: &str, canonical: &str) -> RunId {
    let mut hasher = Sha256::new();
    hasher.update(domain.as_bytes());
    hasher.update(b"\n");
    hasher.update(canonical.as_bytes());
    RunId::from_digest(&hasher.finalize())
}

/// The run id of an experiment.
pub fn run_id(experiment: &Experiment) -> RunId {
    digest("themis/run/v2", &canonical_json(&experiment.canonical()))
}

/// The id of a rejudge: the source run and the new evaluation config decide it, so the
/// same rejudge asked twice is the same run.
pub fn rejudge_id(source: &RunId, evaluation: &EvaluationConfig) -> RunId {
    let definition = rejudge_definition(source, evaluation);
    digest("themis/rejudge/v1", &canonical_json(&definition))
}

/// The stored definition of a rejudge run.
pub(crate) fn rejudge_definition(source: &RunId, evaluation: &EvaluationConfig) -> Value {
    serde_json::json!({
        "source_run_id": source,
        "evaluation": serde_json::to_value(evaluation).unwrap_or(Value::Null),
    })
}
