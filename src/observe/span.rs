//! Spans: what a tracing provider is asked to record around a run, its cases and their
//! stages. The engine and provider components open and close spans through
//! [`TracingProvider`]; `telemetry` implements it (log, OTLP, recording).

use std::any::Any;

use serde::Serialize;

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
