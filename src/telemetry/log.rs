use std::time::Instant;

use crate::observe::{Attributes, Span, SpanStatus, TracingProvider};

/// Writes every span as a `tracing` event when it ends (target `themis::spans`), with
/// its attributes and duration: spans show up in the service's structured logs.
pub(crate) struct LogTracer;

struct LogSpan {
    attributes: String,
    started: Instant,
}

impl TracingProvider for LogTracer {
    fn start_span(
        &self,
        name: &'static str,
        attributes: Attributes,
        _parent: Option<&Span>,
    ) -> Span {
        let attributes = attributes
            .iter()
            .map(|(k, v)| format!("{k}={}", serde_json::to_string(v).unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(" ");
        Span::new(
            name,
            LogSpan {
                attributes,
                started: Instant::now(),
            },
        )
    }

    fn end_span(&self, span: Span, status: SpanStatus, error: Option<&str>) {
        let (attributes, elapsed_ms) = span
            .data::<LogSpan>()
            .map(|s| {
                (
                    s.attributes.as_str(),
                    s.started.elapsed().as_secs_f64() * 1e3,
                )
            })
            .unwrap_or_default();
        tracing::info!(
            target: "themis::spans",
            span = span.name,
            status = status.as_str(),
            error = error.unwrap_or(""),
            elapsed_ms,
            "{attributes}"
        );
    }
}
