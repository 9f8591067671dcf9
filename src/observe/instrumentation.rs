//! The seam between the engine and whatever carries out a run's instrumentation: the
//! server builds one implementation (`telemetry::Telemetry`), hands it to the engine,
//! and the engine asks it for each execution's observers without knowing where spans
//! and events go.

use std::sync::Arc;

use serde::Serialize;

use super::config::{SubscriberConfig, TracingConfig};
use super::subscriber::Observers;
use crate::model::{Problems, RunId};

/// What one run asks to be observed with: the instrumentation fields of its runtime
/// options.
#[derive(Debug, Clone, Copy, Default)]
pub struct ObservationRequest<'a> {
    /// The run's own tracing config (the implementation may fall back to a default).
    pub tracing: Option<&'a TracingConfig>,
    pub subscribers: &'a [SubscriberConfig],
    /// The W3C `traceparent` of the request that created the run.
    pub traceparent: Option<&'a str>,
}

/// Builds the observers of executions and reports what became of their exports.
pub trait Instrumentation: Send + Sync {
    /// The observers of one execution of `run_id`. Instrumentation never fails a run:
    /// what cannot be built is logged and left out.
    fn observers(&self, run_id: &RunId, request: ObservationRequest<'_>) -> Observers;

    /// What this process knows of a run's span export and webhook deliveries; `None`
    /// when nothing.
    fn report(&self, run_id: &RunId) -> Option<TelemetryView>;

    /// The problems of a request's instrumentation against what the operator declared
    /// (webhook secrets bound to destinations), found when a run is submitted.
    fn check(&self, _request: ObservationRequest<'_>, _problems: &mut Problems) {}
}

/// Observes nothing: the instrumentation of an engine nobody handed one to.
pub struct NoInstrumentation;

impl Instrumentation for NoInstrumentation {
    fn observers(&self, _run_id: &RunId, _request: ObservationRequest<'_>) -> Observers {
        Observers::default()
    }

    fn report(&self, _run_id: &RunId) -> Option<TelemetryView> {
        None
    }
}

impl NoInstrumentation {
    pub fn shared() -> Arc<dyn Instrumentation> {
        Arc::new(NoInstrumentation)
    }
}

/// What `GET /runs/{id}` shows under `telemetry`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TelemetryView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spans_exported: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spans_failed: Option<u64>,
    /// Spans lost to a full export queue; known once the run's exporters are flushed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spans_dropped: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub export_errors: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<WebhookView>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebhookView {
    pub url: String,
    pub delivered: u64,
    pub failed: u64,
    pub pending: u64,
    pub dropped: u64,
    pub last_error: Option<String>,
}
