//! Components: one trait per kind, a registry that resolves `builtin/...` names with
//! validated params, and the builtin implementations.
//!
//! Traits are async where I/O can happen (generators, reducers, judges) and fallible
//! everywhere; generators and judges report [`Usage`] so provider-backed ones account
//! for tokens and requests.

mod builtin_generators;
mod builtin_judges;
mod builtin_metrics;
mod builtin_parsers;
mod builtin_reducers;
mod params;
mod registry;
mod text;

use async_trait::async_trait;
use serde_json::Value;

use crate::model::{Candidate, Case, Usage};

pub use params::{ParamError, Params};
pub use registry::{ComponentKind, Registry, ResolveError, Resolved};

/// A component failed on one input. The case fails at that stage; the run goes on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ComponentError {
    pub message: String,
    /// Whether trying again may succeed (network errors, 429, 5xx).
    pub retryable: bool,
}

impl ComponentError {
    pub fn new(message: impl Into<String>) -> Self {
        ComponentError {
            message: message.into(),
            retryable: false,
        }
    }

    pub fn retryable(message: impl Into<String>) -> Self {
        ComponentError {
            message: message.into(),
            retryable: true,
        }
    }
}

/// What a generator is asked for: one sample of one case.
#[derive(Debug, Clone, Copy)]
pub struct GenerateRequest<'a> {
    pub dataset_id: &'a str,
    pub case: &'a Case,
    /// The candidate's own seed, derived from the case seed and the candidate index.
    pub seed: u64,
    pub candidate_index: u32,
}

/// One generated sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    pub output: Value,
    pub raw_text: Option<String>,
    pub finish_reason: Option<String>,
    pub usage: Usage,
}

#[async_trait]
pub trait Generator: Send + Sync {
    async fn generate(&self, request: GenerateRequest<'_>) -> Result<Generation, ComponentError>;

    /// All samples of one case. The default asks for each concurrently; providers that
    /// can return several choices in one request override it.
    async fn generate_samples(
        &self,
        requests: &[GenerateRequest<'_>],
    ) -> Vec<Result<Generation, ComponentError>> {
        futures::future::join_all(requests.iter().map(|r| self.generate(*r))).await
    }
}

/// The reducer's pick among candidates: the index of the chosen candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct Reduction {
    pub chosen: usize,
    /// Candidates the choice was based on (indices into the input).
    pub sources: Vec<usize>,
}

#[async_trait]
pub trait Reducer: Send + Sync {
    /// `candidates` is never empty.
    async fn reduce(&self, candidates: &[Candidate]) -> Result<Reduction, ComponentError>;
}

pub trait Parser: Send + Sync {
    fn parse(&self, value: &Value) -> Result<Value, ComponentError>;
}

/// A metric's verdict: a number (most builtins give 0..1) and optional details.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricScore {
    pub score: f64,
    pub details: Value,
}

impl MetricScore {
    pub fn of(score: f64) -> Self {
        MetricScore {
            score,
            details: Value::Null,
        }
    }
}

pub trait Metric: Send + Sync {
    fn score(&self, parsed: &Value, case: &Case) -> Result<MetricScore, ComponentError>;
}

#[derive(Debug, Clone, Copy)]
pub struct JudgeRequest<'a> {
    pub dataset_id: &'a str,
    pub case: &'a Case,
    pub parsed: &'a Value,
    pub seed: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Judgment {
    pub score: f64,
    pub passed: Option<bool>,
    pub rationale: Option<String>,
    pub details: Value,
    pub usage: Usage,
}

#[async_trait]
pub trait Judge: Send + Sync {
    async fn judge(&self, request: JudgeRequest<'_>) -> Result<Judgment, ComponentError>;
}
