//! Observation: what the engine and components tell the outside world about a run
//! while it executes, and how a run asks for it. Traits and plain data only, below
//! every layer that observes or is observed: `components` open spans through
//! [`TracingProvider`], the `engine` calls [`LifecycleSubscriber`]s and asks an
//! [`Instrumentation`] for each execution's [`Observers`], and `telemetry` implements
//! them (log, OTLP, webhooks). The operator's metrics go through a [`Meter`] the same
//! way. Nothing here changes ids or results.

mod config;
mod config_check;
mod instrumentation;
mod meter;
mod span;
mod subscriber;

// The traits an embedder implements or passes, and the configuration a run asks for.
pub use config::{
    OtlpProtocol, SubscriberConfig, TracingConfig, TracingProviderKind, WebhookConfig,
};
pub use config_check::{
    MAX_TRACING_HEADERS, otlp_endpoint, parse_subscribers, parse_tracing, tracing_header,
};
pub use instrumentation::{
    Instrumentation, NoInstrumentation, ObservationRequest, TelemetryView, WebhookView,
};
pub use meter::{BreakerState, Meter, NoMeter, ProviderOutcome, ToolCallOutcome};

pub(crate) use config::{SECRET_ENV_PREFIX, redact_runtime};
pub(crate) use meter::UNDECLARED_ENDPOINT;
pub use span::{AttributeValue, Attributes, NoopTracer, Span, SpanStatus, TracingProvider};
pub use subscriber::{LifecycleSubscriber, Observers, StageContext};
