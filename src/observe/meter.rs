//! Operator metrics as the layers above report them: the engine (cases, stages, runs,
//! store commits), provider components (requests, retries, breaker, tokens, cost) and
//! the API (event stream clients). The server builds one implementation (Prometheus, in
//! `telemetry`) and hands it down; whoever has none gets [`NoMeter`].
//!
//! Labels stay bounded: endpoints are named by the operator's provider declarations
//! (every undeclared base URL is [`UNDECLARED_ENDPOINT`]) and MCP servers by theirs,
//! never by run ids or any string a request carries.

use std::sync::Arc;
use std::time::Duration;

use crate::model::{CaseRecord, RunStatus, Usage};

/// The endpoint label of a base URL no provider declaration names.
pub(crate) const UNDECLARED_ENDPOINT: &str = "undeclared";

/// How a provider request ended, as a bounded label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderOutcome {
    /// A 2xx answer.
    Success,
    /// 429 Too Many Requests.
    RateLimited,
    /// Another 4xx (or a 3xx, which is never followed).
    ClientError,
    /// A 5xx.
    ServerError,
    /// No answer: connection error or timeout.
    NoAnswer,
}

impl ProviderOutcome {
    pub fn of_status(status: u16) -> Self {
        match status {
            200..=299 => ProviderOutcome::Success,
            429 => ProviderOutcome::RateLimited,
            500.. => ProviderOutcome::ServerError,
            _ => ProviderOutcome::ClientError,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            ProviderOutcome::Success => "success",
            ProviderOutcome::RateLimited => "rate_limited",
            ProviderOutcome::ClientError => "client_error",
            ProviderOutcome::ServerError => "server_error",
            ProviderOutcome::NoAnswer => "no_answer",
        }
    }
}

/// How a tool call to an MCP server ended, as a bounded label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ToolCallOutcome {
    /// The tool answered.
    Success,
    /// The tool answered with an error (MCP's `isError`).
    ToolError,
    /// The server answered with a JSON-RPC error (unknown tool, invalid arguments).
    ServerError,
    /// No answer within the server's timeout.
    Timeout,
    /// No session: connection refused, egress refused, the session broke.
    Unreachable,
}

impl ToolCallOutcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            ToolCallOutcome::Success => "success",
            ToolCallOutcome::ToolError => "tool_error",
            ToolCallOutcome::ServerError => "server_error",
            ToolCallOutcome::Timeout => "timeout",
            ToolCallOutcome::Unreachable => "unreachable",
        }
    }
}

/// A circuit breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

/// What the service reports for its operator. Every method has a no-op default, so an
/// implementation records only what it cares about; none may block or fail.
pub trait Meter: Send + Sync + std::fmt::Debug + 'static {
    /// A finished case this instance recorded: its status and stage durations.
    fn case_recorded(&self, _record: &CaseRecord) {}
    /// A run reached a terminal status while executing here.
    fn run_finished(&self, _status: RunStatus) {}
    /// One commit of case records and events to the store.
    fn store_commit(&self, _elapsed: Duration, _ok: bool) {}
    /// One HTTP request to a model provider's `endpoint`.
    fn provider_request(&self, _endpoint: &str, _outcome: ProviderOutcome, _elapsed: Duration) {}
    /// A provider request about to be retried.
    fn provider_retry(&self, _endpoint: &str) {}
    /// Tokens and cost of one provider answer (cache hits are not counted).
    fn provider_usage(&self, _endpoint: &str, _usage: &Usage) {}
    /// The shared circuit breaker of `endpoint` changed state.
    fn breaker_state(&self, _endpoint: &str, _state: BreakerState) {}
    /// An agent loop ended: `answered` or the limit it hit (`max_turns`, ...).
    fn agent_outcome(&self, _outcome: &'static str) {}
    /// A tool call of an agent loop ran: `source` is `functions`, a declared MCP server,
    /// or `unknown` (no tool of that name); `is_error`: it answered with an error.
    fn agent_tool_call(&self, _source: &str, _is_error: bool) {}
    /// An event stream opened (`+1`) or closed (`-1`).
    fn sse_clients(&self, _delta: i64) {}
    /// A webhook delivery ended: delivered, or failed for good.
    fn webhook_delivery(&self, _delivered: bool) {}
    /// One tool call to the declared MCP server `server`.
    fn mcp_tool_call(&self, _server: &str, _outcome: ToolCallOutcome, _elapsed: Duration) {}
}

/// Records nothing.
#[derive(Debug)]
pub struct NoMeter;

impl Meter for NoMeter {}

impl NoMeter {
    pub fn shared() -> Arc<dyn Meter> {
        Arc::new(NoMeter)
    }
}
