//! The telemetry layer's error: what goes wrong declaring webhook secrets, starting an
//! exporter or a webhook for a run, and delivering to a webhook.

use std::sync::Arc;

use crate::egress::EgressError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum TelemetryError {
    /// A `--webhook-secret` entry that does not parse; the message names the part.
    #[error("{0}")]
    Declaration(String),
    /// A declared secret's environment variable is unset or empty.
    #[error("environment variable {0} is not set")]
    MissingSecret(String),
    /// A run's webhook names a secret this server does not declare.
    #[error("no webhook secret {0} is declared on this server (--webhook-secret)")]
    UndeclaredSecret(String),
    /// A run's webhook names a secret bound to other URL prefixes (listed).
    #[error("webhook secret {name} is not bound to this URL; it signs only for: {prefixes}")]
    UnboundSecret { name: String, prefixes: String },
    /// An exporter or delivery task started outside a tokio runtime: a bug of the
    /// embedding program.
    #[error("{0} needs a tokio runtime")]
    NoRuntime(&'static str),
    /// The egress policy refuses the destination.
    #[error(transparent)]
    Egress(#[from] EgressError),
    /// The egress policy refuses the collector (named without its credentials).
    #[error("{endpoint}: {source}")]
    RefusedEndpoint {
        endpoint: String,
        #[source]
        source: EgressError,
    },
    /// A webhook URL that does not parse (it was checked when the run was accepted:
    /// stored data that no longer reads as it did); the parser's message.
    #[error("{0}")]
    Url(String),
    /// The OTLP exporter could not be built.
    #[error("building the OTLP exporter: {0}")]
    Exporter(#[source] Arc<opentelemetry_otlp::ExporterBuildError>),
    /// A tracing header that is not valid HTTP (it was checked when the run was
    /// accepted: stored data that no longer reads as it did).
    #[error("tracing header `{0}` is not a valid HTTP header")]
    InvalidHeader(String),
    /// The receiver answered with a status retrying will not change.
    #[error("HTTP {0} (not retried)")]
    Rejected(u16),
    /// Every attempt failed on the network or with a retryable status (transient: the
    /// receiver was down or overloaded for the whole retry window).
    #[error("{last} (after {attempts} attempts)")]
    Exhausted { last: String, attempts: u32 },
}
