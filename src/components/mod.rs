//! Components: one trait per kind, a registry that resolves `builtin/...` names with
//! validated params, and the builtin implementations.
//!
//! Traits are async where I/O can happen (generators, reducers, judges) and fallible
//! everywhere; generators and judges report [`Usage`] so provider-backed ones account
//! for tokens and requests.

pub(crate) mod agent;
mod builtin_generators;
mod builtin_judges;
mod builtin_metrics;
mod builtin_parsers;
mod builtin_reducers;
mod cluster;
mod estimate;
mod judges_panel;
mod mcp;
mod metrics_choice_math;
mod metrics_code;
mod metrics_json_schema;
mod metrics_text;
mod metrics_trajectory;
mod openai;
pub(crate) mod openai_evals;
mod params;
mod parsers_extract;
mod registry;
mod review_scales;
mod selectors;
mod text;

use async_trait::async_trait;
use serde_json::Value;

use crate::model::{Candidate, Case, Transcript, Usage};
use crate::observe::{NoopTracer, Span, TracingProvider};

pub use agent::AgentCaps;
pub(crate) use cluster::ClusterLink;
pub use cluster::{Cluster, SharedLimits};
pub use estimate::{Estimate, EstimateRequest};
pub use mcp::{
    DEFAULT_MAX_CONCURRENCY as DEFAULT_MCP_MAX_CONCURRENCY,
    DEFAULT_MAX_OUTPUT_BYTES as DEFAULT_MCP_MAX_OUTPUT_BYTES,
    DEFAULT_TIMEOUT as DEFAULT_MCP_TIMEOUT, HeaderSecret, McpError, McpHeader, McpServer,
    McpServerSpec, McpServers, McpTool, McpToolOutput,
};
pub use openai::{
    ApiKey, DEFAULT_MAX_OUTBOUND_REQUESTS, FoundPrice, ModelPrice, OperatorLimits, Outbound,
    PROVIDER_COMPONENTS, PriceTable, ProviderSpec, implicit_providers,
};
pub(crate) use params::MAX_FLOAT;
pub use params::Params;
pub use registry::{ComponentKind, Registry, ResolveError, Resolved};
pub use review_scales::review_scale;

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

/// A provider or MCP server declaration the operator gave (`--provider`,
/// `THEMIS_PROVIDERS`, `--mcp-server`, `THEMIS_MCP_SERVERS`) that is refused at startup;
/// each message names the flag and the provider, server or entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeclarationError {
    /// An entry that does not parse, or a field out of range.
    #[error("{0}")]
    Invalid(String),
    /// The variable the key is read from (`key_env`) is unset or empty.
    #[error("--provider {provider}: environment variable {var} (key_env) is not set")]
    MissingKey { provider: String, var: String },
    /// The variable an MCP server's header is read from is unset or empty.
    #[error("--mcp-server {server}: environment variable {var} (header {header}) is not set")]
    MissingHeader {
        server: String,
        header: String,
        var: String,
    },
    #[error("provider {0} is declared twice")]
    Duplicate(String),
    #[error("providers {first} and {second} have the same base_url")]
    SameBaseUrl { first: String, second: String },
}

/// Whether `text` may name an operator's declaration (a provider, an MCP server): at
/// most 64 letters, digits, `-`, `_` or `.`, so it is safe in flags, labels and logs.
pub(crate) fn is_declared_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A note from a provider call that explains slowness: shown to users as run events.
#[derive(Debug, Clone, PartialEq)]
pub enum CallNote {
    /// A request failed and will be tried again after `delay_ms`.
    Retry {
        provider: String,
        attempt: u32,
        delay_ms: u64,
        reason: String,
    },
    /// A request waited `wait_ms` for the endpoint's rate limit.
    RateLimited { provider: String, wait_ms: u64 },
}

/// Receives [`CallNote`]s; the engine turns them into run events.
pub trait CallObserver: Send + Sync {
    fn note(&self, note: CallNote);
}

/// Ignores every note.
pub struct IgnoreNotes;

impl CallObserver for IgnoreNotes {
    fn note(&self, _note: CallNote) {}
}

/// A durable cache of provider responses, keyed by a hash of the request, so re-running,
/// resuming or rejudging never pays twice for the same request.
#[async_trait]
pub trait ResponseCache: Send + Sync {
    async fn get(&self, key: &str) -> Option<Value>;
    /// Stores `response`, a provider's JSON response as received (text: it is stored
    /// as text, so it is not parsed and serialised again on its way).
    async fn put(&self, key: &str, response: &str);
    /// Stores a response at once rather than with the case's record: an agent's turns
    /// before its answer, so a case interrupted by a crash replays them when re-run.
    async fn put_now(&self, key: &str, response: &str) {
        self.put(key, response).await;
    }
}

/// What a component call can reach besides its input: the response cache (absent when
/// the run turned caching off), a sink for notes, and the tracer with the stage span to
/// parent provider-call spans on.
#[derive(Clone, Copy)]
pub struct CallContext<'a> {
    pub run_id: &'a str,
    pub cache: Option<&'a dyn ResponseCache>,
    pub observer: &'a dyn CallObserver,
    pub tracer: &'a dyn TracingProvider,
    pub parent_span: Option<&'a Span>,
}

impl CallContext<'static> {
    /// No cache, no notes, no spans: for tests and standalone use.
    pub fn detached() -> Self {
        CallContext {
            run_id: "",
            cache: None,
            observer: &IgnoreNotes,
            tracer: &NoopTracer,
            parent_span: None,
        }
    }
}

impl std::fmt::Debug for CallContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallContext")
            .field("run_id", &self.run_id)
            .field("cache", &self.cache.is_some())
            .finish_non_exhaustive()
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
    pub ctx: CallContext<'a>,
}

/// One generated sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    pub output: Value,
    pub raw_text: Option<String>,
    pub finish_reason: Option<String>,
    pub usage: Usage,
    /// An agent's turns (generators that call tools); `None` for one-call generators.
    pub transcript: Option<Transcript>,
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

    /// What one sample of a case may cost, before it is asked for; `None` for
    /// generators that call no model provider.
    async fn estimate(&self, _request: EstimateRequest<'_>) -> Option<Estimate> {
        None
    }
}

/// The reducer's pick among candidates: the index of the chosen candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct Reduction {
    pub chosen: usize,
    /// Candidates the choice was based on (indices into the input).
    pub sources: Vec<usize>,
    /// What decided the choice (a selector's per-candidate scores); `null` if nothing
    /// worth recording.
    pub details: Value,
}

/// What a reducer may look at besides the candidates: selectors score candidates
/// against the case, judges among them call providers.
#[derive(Debug, Clone, Copy)]
pub struct ReduceRequest<'a> {
    pub dataset_id: &'a str,
    pub case: &'a Case,
    pub seed: u64,
    /// Never empty.
    pub candidates: &'a [Candidate],
    pub ctx: CallContext<'a>,
}

#[async_trait]
pub trait Reducer: Send + Sync {
    /// `candidates` is never empty.
    async fn reduce(&self, candidates: &[Candidate]) -> Result<Reduction, ComponentError>;

    /// The reduction with the case at hand; what the engine calls. Reducers that only
    /// look at the candidates keep the default.
    async fn reduce_case(&self, request: ReduceRequest<'_>) -> Result<Reduction, ComponentError> {
        self.reduce(request.candidates).await
    }
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

#[async_trait]
pub trait Metric: Send + Sync {
    fn score(&self, parsed: &Value, case: &Case) -> Result<MetricScore, ComponentError>;

    /// The score as the engine asks for it. Metrics that run something (a program in
    /// a sandbox) override it; the rest keep the default.
    async fn score_case(&self, parsed: &Value, case: &Case) -> Result<MetricScore, ComponentError> {
        self.score(parsed, case)
    }

    /// The score with the agent transcript of the output, when it came from one. What
    /// the engine calls; trajectory metrics override it, the rest keep the default.
    async fn score_transcript(
        &self,
        parsed: &Value,
        case: &Case,
        _transcript: Option<&Transcript>,
    ) -> Result<MetricScore, ComponentError> {
        self.score_case(parsed, case).await
    }
}

#[derive(Debug, Clone, Copy)]
pub struct JudgeRequest<'a> {
    pub dataset_id: &'a str,
    pub case: &'a Case,
    pub parsed: &'a Value,
    pub seed: u64,
    /// The agent transcript of the output judged, when it came from one.
    pub transcript: Option<&'a Transcript>,
    pub ctx: CallContext<'a>,
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

    /// What judging a case may cost (all its samples), before it is asked for; `None`
    /// for judges that call no model provider.
    async fn estimate(&self, _request: EstimateRequest<'_>) -> Option<Estimate> {
        None
    }
}
