//! Tracing providers: where a run's spans go; webhook subscribers: where its events go.
//!
//! The engine calls [`TracingProvider::start_span`] / [`TracingProvider::end_span`] around
//! the run and every stage of every case. Providers are chosen per request and are
//! runtime-only: they observe, they never change ids or results. [`RunTelemetry`] keeps
//! what this process knows about each run's span export and webhook deliveries.

mod config;
mod log;
mod otlp;
mod recording;
mod registry;
mod webhook;

use std::any::Any;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::Serialize;
use tokio_util::task::TaskTracker;

pub use config::{
    DEFAULT_OTLP_ENDPOINT, DEFAULT_SERVICE_NAME, MAX_SUBSCRIBERS, OtlpProtocol, SubscriberConfig,
    TracingConfig, TracingProviderKind, WebhookConfig, display_url, effective_tracing,
    parse_subscribers, parse_tracing, redact_runtime, traces_url,
};
pub use log::LogTracer;
pub use otlp::{OtlpTracer, parse_traceparent};
pub use recording::{RecordedSpan, RecordingTracer};
pub use registry::{
    MAX_RUNS, RunTelemetry, SpanCounters, TelemetryView, WebhookCounters, WebhookView,
};
pub use webhook::{
    EVENT_TYPES, MAX_ATTEMPTS, SECRET_ENV_PREFIX, SIGNATURE_HEADER, WebhookSubscriber, signature,
    webhook_subscriber,
};

use crate::egress::Egress;
use crate::engine::LifecycleSubscriber;
use crate::model::RunId;

/// A span attribute value.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum AttributeValue {
    String(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl From<&str> for AttributeValue {
    fn from(value: &str) -> Self {
        AttributeValue::String(value.to_owned())
    }
}

impl From<String> for AttributeValue {
    fn from(value: String) -> Self {
        AttributeValue::String(value)
    }
}

impl From<u64> for AttributeValue {
    fn from(value: u64) -> Self {
        // Seeds use the whole u64 range; beyond i64 they are kept as text.
        i64::try_from(value).map_or_else(
            |_| AttributeValue::String(value.to_string()),
            AttributeValue::Int,
        )
    }
}

impl From<bool> for AttributeValue {
    fn from(value: bool) -> Self {
        AttributeValue::Bool(value)
    }
}

impl From<f64> for AttributeValue {
    fn from(value: f64) -> Self {
        AttributeValue::Float(value)
    }
}

pub type Attributes = Vec<(&'static str, AttributeValue)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SpanStatus {
    Ok,
    Error,
}

impl SpanStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            SpanStatus::Ok => "ok",
            SpanStatus::Error => "error",
        }
    }
}

/// An open span: its name and whatever the provider keeps to end it.
pub struct Span {
    pub name: &'static str,
    data: Box<dyn Any + Send + Sync>,
}

impl Span {
    pub fn new(name: &'static str, data: impl Any + Send + Sync) -> Self {
        Span {
            name,
            data: Box::new(data),
        }
    }

    /// The provider's own data, if it is of type `T`.
    pub fn data<T: Any>(&self) -> Option<&T> {
        self.data.downcast_ref()
    }
}

pub trait TracingProvider: Send + Sync {
    /// Opens a span; `parent` is the enclosing span (the run for a case, the case for a stage).
    fn start_span(&self, name: &'static str, attributes: Attributes, parent: Option<&Span>)
    -> Span;

    /// Closes a span; `error` carries the message when `status` is `Error`.
    fn end_span(&self, span: Span, status: SpanStatus, error: Option<&str>);

    /// Adds an attribute to an open span (results known only once the stage ran, such
    /// as scores). Providers that cannot ignore it.
    fn set_attribute(&self, _span: &Span, _key: &str, _value: AttributeValue) {}

    /// Whether spans go anywhere: callers skip building attributes when they do not.
    fn is_recording(&self) -> bool {
        true
    }

    /// Called once the execution's last span ended: providers that buffer flush and
    /// release what they hold here. Must not block the caller for long.
    fn shutdown(&self) {}
}

/// The default: spans cost nothing and go nowhere.
pub struct NoopTracer;

impl TracingProvider for NoopTracer {
    fn start_span(
        &self,
        name: &'static str,
        _attributes: Attributes,
        _parent: Option<&Span>,
    ) -> Span {
        Span::new(name, ())
    }

    fn end_span(&self, _span: Span, _status: SpanStatus, _error: Option<&str>) {}

    fn is_recording(&self) -> bool {
        false
    }
}

/// Builds the provider a tracing config asks for (no run: OTLP counters are not kept
/// in [`RunTelemetry`] and no `traceparent` is joined).
pub fn provider_for(config: Option<&TracingConfig>, egress: &Egress) -> Arc<dyn TracingProvider> {
    tracer_for_run(config, None, None, egress, false)
}

/// Builds the provider of one run's execution. An OTLP provider that cannot be built
/// is logged and replaced by the no-op one: instrumentation never fails a run.
/// Spans go out through `egress`; `declared`: the collector is the operator's default
/// one (internal addresses allowed), not one the run named.
pub fn tracer_for_run(
    config: Option<&TracingConfig>,
    run_id: Option<&RunId>,
    traceparent: Option<&str>,
    egress: &Egress,
    declared: bool,
) -> Arc<dyn TracingProvider> {
    match config {
        Some(config) if config.provider == TracingProviderKind::Log => Arc::new(LogTracer),
        Some(config) if config.provider == TracingProviderKind::Otlp => {
            match otlp::otlp_tracer(config, run_id, traceparent, egress, declared) {
                Ok(tracer) => Arc::new(tracer),
                Err(message) => {
                    tracing::warn!(error = %message, "OTLP tracing is off for this run");
                    Arc::new(NoopTracer)
                }
            }
        }
        _ => Arc::new(NoopTracer),
    }
}

/// Builds a run's configured subscribers; one that cannot be built is logged and left out.
/// Deliveries go out through `egress` (webhook URLs are the run's choice).
pub fn subscribers_for_run(
    run_id: &RunId,
    configs: &[SubscriberConfig],
    egress: &Egress,
) -> Vec<Arc<dyn LifecycleSubscriber>> {
    let mut subscribers: Vec<Arc<dyn LifecycleSubscriber>> = Vec::with_capacity(configs.len());
    for (index, config) in configs.iter().enumerate() {
        match config {
            SubscriberConfig::Webhook(webhook) => {
                match webhook_subscriber(run_id, index, webhook, egress) {
                    Ok(subscriber) => subscribers.push(Arc::new(subscriber)),
                    Err(message) => tracing::warn!(
                        run_id = %run_id,
                        error = %message,
                        "a webhook subscriber is off for this run"
                    ),
                }
            }
        }
    }
    subscribers
}

/// Span flushes and webhook deliveries still under way.
pub(crate) fn background() -> &'static TaskTracker {
    static TASKS: OnceLock<TaskTracker> = OnceLock::new();
    TASKS.get_or_init(TaskTracker::new)
}

/// Waits (at most `limit`) for span flushes and webhook deliveries under way: called at
/// shutdown, after the last run stopped, so their spans and events are not lost.
pub async fn wait_for_exports(limit: Duration) {
    let tasks = background();
    tasks.close();
    if tokio::time::timeout(limit, tasks.wait()).await.is_err() {
        tracing::warn!(
            tasks = tasks.len(),
            "span export or webhook delivery still under way at shutdown; abandoning it"
        );
    }
    tasks.reopen();
}
