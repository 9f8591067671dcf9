//! Tracing providers: where a run's spans go.
//!
//! The engine calls [`TracingProvider::start_span`] / [`TracingProvider::end_span`] around
//! the run and every stage of every case. Providers are chosen per request and are
//! runtime-only: they observe, they never change ids or results.

mod log;
mod recording;

use std::any::Any;
use std::sync::Arc;

use serde::Serialize;

pub use log::LogTracer;
pub use recording::{RecordedSpan, RecordingTracer};

use crate::engine::{TracingConfig, TracingProviderKind};

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
}

/// Builds the provider a request configured.
pub fn provider_for(config: Option<&TracingConfig>) -> Arc<dyn TracingProvider> {
    match config.map(|c| c.provider) {
        Some(TracingProviderKind::Log) => Arc::new(LogTracer),
        Some(TracingProviderKind::None) | None => Arc::new(NoopTracer),
    }
}
