//! The process's telemetry: where runs' spans go (log, OTLP) and where their events go
//! (webhooks), implementing the traits of [`crate::observe`].
//!
//! The server (or the CLI) builds one [`Telemetry`] and hands it to the engine as its
//! [`Instrumentation`]: the engine asks it for each execution's observers and never
//! names a provider itself. Providers are chosen per request and are runtime-only: they
//! observe, they never change ids or results. The [`Telemetry`] owns everything they
//! share: the egress clients, the server's default tracing, the per-run counters
//! `GET /runs/{id}` shows, and the background tasks that flush spans and deliver
//! webhooks, so two of them in one process are independent.

mod config;
mod error;
mod log;
mod metrics;
mod otlp;
mod recording;
mod registry;
mod webhook;
mod webhook_secrets;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::task::TaskTracker;

pub use error::TelemetryError;
pub use metrics::Metrics;
pub use recording::{RecordedSpan, RecordingTracer};
pub use webhook_secrets::WebhookSecrets;

pub(crate) use config::{display_url, effective_tracing};
pub(crate) use log::LogTracer;
pub(crate) use metrics::CONTENT_TYPE as METRICS_CONTENT_TYPE;
pub(crate) use otlp::parse_traceparent;

use self::registry::RunCounters;
use crate::egress::Egress;
use crate::model::{Problems, RunId};
use crate::observe::{
    Instrumentation, LifecycleSubscriber, Meter, NoMeter, NoopTracer, ObservationRequest,
    Observers, SubscriberConfig, TelemetryView, TracingConfig, TracingProvider,
    TracingProviderKind,
};

/// Span export and webhook delivery for the runs of one server (see the module docs).
pub struct Telemetry {
    /// Spans and webhook deliveries go out through its clients, under its policy.
    egress: Arc<Egress>,
    /// Where spans of runs that configure no `tracing` go (`--otlp-endpoint`); a run
    /// turns it off with `{"provider": "none"}`.
    default_tracing: Option<TracingConfig>,
    counters: RunCounters,
    /// Span flushes and webhook deliveries still under way.
    tasks: TaskTracker,
    /// The operator's metrics: webhook deliveries.
    meter: Arc<dyn Meter>,
    /// The signing secrets webhooks may name, each bound to its destinations.
    webhook_secrets: Arc<WebhookSecrets>,
}

impl Telemetry {
    pub fn new(egress: Arc<Egress>, default_tracing: Option<TracingConfig>) -> Self {
        Telemetry {
            egress,
            default_tracing,
            counters: RunCounters::default(),
            tasks: TaskTracker::new(),
            meter: NoMeter::shared(),
            webhook_secrets: Arc::default(),
        }
    }

    /// The same telemetry signing webhooks with the operator's declared secrets.
    pub fn with_webhook_secrets(self, secrets: WebhookSecrets) -> Self {
        Telemetry {
            webhook_secrets: Arc::new(secrets),
            ..self
        }
    }

    /// The same telemetry reporting webhook deliveries to `meter`.
    pub fn with_meter(self, meter: Arc<dyn Meter>) -> Self {
        Telemetry { meter, ..self }
    }

    /// The telemetry of `themis run` and tests: the local egress policy, no default
    /// tracing.
    pub fn local() -> Self {
        Telemetry::new(Arc::new(Egress::local()), None)
    }

    /// Builds the provider of one run's execution. An OTLP provider that cannot be
    /// built is logged and replaced by the no-op one: instrumentation never fails a
    /// run. `declared`: the collector is the operator's default one (internal addresses
    /// allowed), not one the run named.
    fn tracer(
        &self,
        config: Option<&TracingConfig>,
        run_id: &RunId,
        traceparent: Option<&str>,
        declared: bool,
    ) -> Arc<dyn TracingProvider> {
        match config {
            Some(config) if config.provider == TracingProviderKind::Log => Arc::new(LogTracer),
            Some(config) if config.provider == TracingProviderKind::Otlp => {
                let to = otlp::ExportTo {
                    counters: self.counters.spans(run_id),
                    run: run_id.as_str(),
                    tasks: self.tasks.clone(),
                };
                match otlp::otlp_tracer(config, to, traceparent, &self.egress, declared) {
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

    /// Builds a run's configured subscribers; one that cannot be built is logged and
    /// left out. Webhook URLs are the run's choice: held to the full egress policy.
    fn subscribers(
        &self,
        run_id: &RunId,
        configs: &[SubscriberConfig],
    ) -> Vec<Arc<dyn LifecycleSubscriber>> {
        let mut subscribers: Vec<Arc<dyn LifecycleSubscriber>> = Vec::with_capacity(configs.len());
        for (index, config) in configs.iter().enumerate() {
            let SubscriberConfig::Webhook(webhook) = config;
            let counters = self
                .counters
                .webhook(run_id, index, &display_url(&webhook.url));
            let meter = self.meter.clone();
            match webhook::webhook_subscriber(
                run_id,
                webhook,
                counters,
                &self.egress,
                &self.tasks,
                meter,
                &self.webhook_secrets,
            ) {
                Ok(subscriber) => subscribers.push(Arc::new(subscriber)),
                Err(message) => tracing::warn!(
                    run_id = %run_id,
                    error = %message,
                    "a webhook subscriber is off for this run"
                ),
            }
        }
        subscribers
    }

    /// Waits (at most `limit`) for span flushes and webhook deliveries under way: called
    /// at shutdown, after the last run stopped, so their spans and events are not lost.
    pub async fn wait_for_exports(&self, limit: Duration) {
        let tasks = &self.tasks;
        tasks.close();
        if tokio::time::timeout(limit, tasks.wait()).await.is_err() {
            tracing::warn!(
                tasks = tasks.len(),
                "span export or webhook delivery still under way at shutdown; abandoning it"
            );
        }
        tasks.reopen();
    }
}

impl Instrumentation for Telemetry {
    /// The run's tracing (else the server default) and its webhooks.
    fn observers(&self, run_id: &RunId, request: ObservationRequest<'_>) -> Observers {
        let default = self.default_tracing.as_ref();
        let tracing = effective_tracing(request.tracing, default);
        // The operator's own collector may sit on an internal address; one a run names
        // itself is held to the full policy.
        let declared = tracing.as_ref().is_some_and(|t| {
            t.endpoint.is_some() && default.is_some_and(|d| d.endpoint == t.endpoint)
        });
        Observers::new(
            self.subscribers(run_id, request.subscribers),
            self.tracer(tracing.as_ref(), run_id, request.traceparent, declared),
        )
    }

    fn report(&self, run_id: &RunId) -> Option<TelemetryView> {
        self.counters.snapshot(run_id)
    }

    fn check(&self, request: ObservationRequest<'_>, problems: &mut Problems) {
        self.webhook_secrets.check(request.subscribers, problems);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn two_telemetries_wait_only_for_their_own_exports() {
        let (busy, idle) = (Telemetry::local(), Telemetry::local());
        busy.tasks.spawn(std::future::pending::<()>());
        let started = std::time::Instant::now();
        idle.wait_for_exports(Duration::from_secs(10)).await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "waited on another's task"
        );
        busy.wait_for_exports(Duration::from_millis(50)).await;
        assert_eq!(busy.tasks.len(), 1, "its own task is still under way");
    }
}
