//! `GET /metrics`: the operator's metrics in the Prometheus text format, kept in a
//! `prometheus-client` registry that belongs to this object (the server builds one and
//! hands it down as a [`Meter`]; nothing is process-wide, so two servers in one process
//! count apart).

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::model::{CaseRecord, CaseStatus, RunStatus, Usage};
use crate::observe::{BreakerState, Meter, ProviderOutcome, ToolCallOutcome};

/// The `Content-Type` of the Prometheus text format (0.0.4).
pub(crate) const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabel {
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    endpoint: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerLabel {
    server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolCallLabels {
    server: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentToolLabels {
    source: String,
    outcome: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric of the service, and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    cases: Family<StatusLabel, Counter>,
    case_seconds: Histogram,
    stage_seconds: Histograms<StageLabel>,
    runs_finished: Family<StatusLabel, Counter>,
    runs_executing: Gauge,
    runs_queued: Gauge,
    commit_seconds: Histogram,
    commit_failures: Counter,
    provider_requests: Family<RequestLabels, Counter>,
    provider_seconds: Histograms<EndpointLabel>,
    provider_retries: Family<EndpointLabel, Counter>,
    breaker_state: Family<EndpointLabel, Gauge>,
    tokens: Family<TokenLabels, Counter>,
    cost_usd: Family<EndpointLabel, Counter<f64, AtomicU64>>,
    case_cost_usd: Family<StageLabel, Counter<f64, AtomicU64>>,
    sse_clients: Gauge,
    webhook_deliveries: Family<OutcomeLabel, Counter>,
    agent_outcomes: Family<OutcomeLabel, Counter>,
    agent_tool_calls: Family<AgentToolLabels, Counter>,
    mcp_tool_calls: Family<ToolCallLabels, Counter>,
    mcp_tool_seconds: Histograms<ServerLabel>,
}

fn case_buckets() -> Histogram {
    // 1 ms to about 2.5 min.
    Histogram::new(exponential_buckets(0.001, 2.5, 14))
}

fn provider_buckets() -> Histogram {
    // 10 ms to about 80 s.
    Histogram::new(exponential_buckets(0.01, 2.0, 14))
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics { .. }")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("themis");
        let metrics = Metrics {
            cases: Family::default(),
            case_seconds: case_buckets(),
            stage_seconds: Family::new_with_constructor(case_buckets as fn() -> Histogram),
            runs_finished: Family::default(),
            runs_executing: Gauge::default(),
            runs_queued: Gauge::default(),
            // 0.5 ms to about 4 s.
            commit_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            commit_failures: Counter::default(),
            provider_requests: Family::default(),
            provider_seconds: Family::new_with_constructor(provider_buckets as fn() -> Histogram),
            provider_retries: Family::default(),
            breaker_state: Family::default(),
            tokens: Family::default(),
            cost_usd: Family::default(),
            case_cost_usd: Family::default(),
            sse_clients: Gauge::default(),
            webhook_deliveries: Family::default(),
            agent_outcomes: Family::default(),
            agent_tool_calls: Family::default(),
            mcp_tool_calls: Family::default(),
            mcp_tool_seconds: Family::new_with_constructor(provider_buckets as fn() -> Histogram),
            registry: Registry::default(),
        };
        // Each metric under its name and `# HELP` text.
        macro_rules! register {
            ($($field:ident: $name:literal, $help:literal;)*) => {
                $(registry.register($name, $help, metrics.$field.clone());)*
            };
        }
        register! {
            cases: "cases",
                "Cases finished on this instance, by status (completed, failed)";
            case_seconds: "case_duration_seconds",
                "Time from a case's start to its record";
            stage_seconds: "stage_duration_seconds",
                "Time a case spent in each stage";
            runs_finished: "runs_finished",
                "Runs that reached a terminal status while executing here, by status";
            runs_executing: "runs_executing",
                "Runs executing on this instance";
            runs_queued: "runs_queued",
                "Runs waiting on this instance for an execution slot (queue depth)";
            commit_seconds: "store_commit_duration_seconds",
                "Time of one commit of case records and events";
            commit_failures: "store_commit_failures",
                "Commits of case records that failed (and were retried)";
            provider_requests: "provider_requests",
                "HTTP requests to model providers, by endpoint and outcome (rate_limited: 429)";
            provider_seconds: "provider_request_duration_seconds",
                "Latency of provider requests, by endpoint";
            provider_retries: "provider_retries",
                "Provider requests retried, by endpoint";
            breaker_state: "provider_breaker_state",
                "Shared circuit breaker of an endpoint: 0 closed, 1 half-open, 2 open";
            tokens: "provider_tokens",
                "Tokens of provider answers (cache hits excluded), by endpoint and kind (prompt, completion)";
            cost_usd: "provider_cost_usd",
                "Spend on providers with a configured price, in USD, by endpoint";
            case_cost_usd: "case_cost_usd",
                "Cost of the cases this instance recorded, in USD, by stage (generation, judging)";
            sse_clients: "sse_clients",
                "Open GET /runs/{id}/events streams";
            webhook_deliveries: "webhook_deliveries",
                "Webhook deliveries that ended, by outcome (delivered, failed)";
            agent_outcomes: "agent_loops",
                "Agent loops (openai/agent) that ended, by outcome (answered, max_turns, max_tool_calls, token_limit, time_limit, cost_limit)";
            agent_tool_calls: "agent_tool_calls",
                "Tool calls of agent loops, by source (functions, a declared MCP server, unknown) and outcome (ok, error)";
            mcp_tool_calls: "mcp_tool_calls",
                "Tool calls to declared MCP servers, by server and outcome (success, tool_error, server_error, timeout, unreachable)";
            mcp_tool_seconds: "mcp_tool_call_duration_seconds",
                "Latency of MCP tool calls, by server";
        }
        Metrics {
            registry,
            ..metrics
        }
    }

    /// Sets the gauges read from the scheduler at scrape time.
    pub fn set_runs(&self, executing: usize, queued: usize) {
        self.runs_executing
            .set(i64::try_from(executing).unwrap_or(i64::MAX));
        self.runs_queued
            .set(i64::try_from(queued).unwrap_or(i64::MAX));
    }

    /// Every metric in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry);
        text
    }
}

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl Meter for Metrics {
    fn agent_outcome(&self, outcome: &'static str) {
        self.agent_outcomes
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    fn agent_tool_call(&self, source: &str, is_error: bool) {
        self.agent_tool_calls
            .get_or_create(&AgentToolLabels {
                source: source.to_owned(),
                outcome: if is_error { "error" } else { "ok" },
            })
            .inc();
    }

    fn case_recorded(&self, record: &CaseRecord) {
        let status = match record.status {
            CaseStatus::Completed => "completed",
            CaseStatus::Failed => "failed",
        };
        self.cases.get_or_create(&StatusLabel { status }).inc();
        let millis = record.finished_at.millis_since(record.started_at);
        self.case_seconds.observe(millis as f64 / 1e3);
        for stage in &record.stages {
            self.stage_seconds
                .get_or_create(&StageLabel {
                    stage: stage.stage.as_str(),
                })
                .observe(stage.duration_ms as f64 / 1e3);
        }
        let spend = crate::model::SpendPart::of_case(record);
        for (stage, usage) in [
            ("generation", &spend.generation),
            ("judging", &spend.judging),
        ] {
            if usage.cost_usd > 0.0 {
                self.case_cost_usd
                    .get_or_create(&StageLabel { stage })
                    .inc_by(usage.cost_usd);
            }
        }
    }

    fn run_finished(&self, status: RunStatus) {
        self.runs_finished
            .get_or_create(&StatusLabel {
                status: status.as_str(),
            })
            .inc();
    }

    fn store_commit(&self, elapsed: Duration, ok: bool) {
        self.commit_seconds.observe(seconds(elapsed));
        if !ok {
            self.commit_failures.inc();
        }
    }

    fn provider_request(&self, endpoint: &str, outcome: ProviderOutcome, elapsed: Duration) {
        self.provider_requests
            .get_or_create(&RequestLabels {
                endpoint: endpoint.to_owned(),
                outcome: outcome.as_str(),
            })
            .inc();
        self.provider_seconds
            .get_or_create(&EndpointLabel {
                endpoint: endpoint.to_owned(),
            })
            .observe(seconds(elapsed));
    }

    fn provider_retry(&self, endpoint: &str) {
        self.provider_retries
            .get_or_create(&EndpointLabel {
                endpoint: endpoint.to_owned(),
            })
            .inc();
    }

    fn provider_usage(&self, endpoint: &str, usage: &Usage) {
        for (kind, n) in [
            ("prompt", usage.prompt_tokens),
            ("completion", usage.completion_tokens),
        ] {
            self.tokens
                .get_or_create(&TokenLabels {
                    endpoint: endpoint.to_owned(),
                    kind,
                })
                .inc_by(n);
        }
        if usage.cost_usd > 0.0 {
            self.cost_usd
                .get_or_create(&EndpointLabel {
                    endpoint: endpoint.to_owned(),
                })
                .inc_by(usage.cost_usd);
        }
    }

    fn breaker_state(&self, endpoint: &str, state: BreakerState) {
        let value = match state {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        };
        self.breaker_state
            .get_or_create(&EndpointLabel {
                endpoint: endpoint.to_owned(),
            })
            .set(value);
    }

    fn sse_clients(&self, delta: i64) {
        self.sse_clients.inc_by(delta);
    }

    fn webhook_delivery(&self, delivered: bool) {
        let outcome = if delivered { "delivered" } else { "failed" };
        self.webhook_deliveries
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    fn mcp_tool_call(&self, server: &str, outcome: ToolCallOutcome, elapsed: Duration) {
        self.mcp_tool_calls
            .get_or_create(&ToolCallLabels {
                server: server.to_owned(),
                outcome: outcome.as_str(),
            })
            .inc();
        self.mcp_tool_seconds
            .get_or_create(&ServerLabel {
                server: server.to_owned(),
            })
            .observe(seconds(elapsed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_instances_count_apart_and_encode_prometheus_text() {
        let (a, b) = (Metrics::new(), Metrics::new());
        a.run_finished(RunStatus::Completed);
        a.provider_request(
            "openai",
            ProviderOutcome::RateLimited,
            Duration::from_millis(30),
        );
        let text = a.encode();
        assert!(
            text.contains("themis_runs_finished_total{status=\"completed\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "themis_provider_requests_total{endpoint=\"openai\",outcome=\"rate_limited\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "themis_provider_request_duration_seconds_bucket{le=\"0.04\",endpoint=\"openai\"} 1"
            ) || text.contains(
                "themis_provider_request_duration_seconds_bucket{endpoint=\"openai\",le=\"0.04\"} 1"
            ),
            "{text}"
        );
        assert!(
            !b.encode().contains("themis_runs_finished_total{"),
            "b saw a's run"
        );
    }
}
