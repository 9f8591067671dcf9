use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::observe::{AttributeValue, Attributes, Span, SpanStatus, TracingProvider};

/// A span as the recording provider saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedSpan {
    pub id: u64,
    pub parent: Option<u64>,
    pub name: &'static str,
    pub attributes: Vec<(&'static str, AttributeValue)>,
    /// Attributes set while the span was open ([`TracingProvider::set_attribute`]).
    pub added: Vec<(String, AttributeValue)>,
    pub status: Option<SpanStatus>,
    pub error: Option<String>,
}

/// Keeps every span in memory: for tests and `themis run --trace`.
#[derive(Default)]
pub struct RecordingTracer {
    next_id: AtomicU64,
    spans: Mutex<Vec<RecordedSpan>>,
}

impl RecordingTracer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every span started so far, in start order.
    pub fn spans(&self) -> Vec<RecordedSpan> {
        self.spans.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl TracingProvider for RecordingTracer {
    fn start_span(
        &self,
        name: &'static str,
        attributes: Attributes,
        parent: Option<&Span>,
    ) -> Span {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let parent = parent.and_then(|p| p.data::<u64>().copied());
        if let Ok(mut spans) = self.spans.lock() {
            spans.push(RecordedSpan {
                id,
                parent,
                name,
                attributes,
                added: Vec::new(),
                status: None,
                error: None,
            });
        }
        Span::new(name, id)
    }

    fn set_attribute(&self, span: &Span, key: &str, value: AttributeValue) {
        let Some(id) = span.data::<u64>().copied() else {
            return;
        };
        if let Ok(mut spans) = self.spans.lock()
            && let Some(recorded) = spans.iter_mut().find(|s| s.id == id)
        {
            recorded.added.push((key.to_owned(), value));
        }
    }

    fn end_span(&self, span: Span, status: SpanStatus, error: Option<&str>) {
        let Some(id) = span.data::<u64>().copied() else {
            return;
        };
        if let Ok(mut spans) = self.spans.lock()
            && let Some(recorded) = spans.iter_mut().find(|s| s.id == id)
        {
            recorded.status = Some(status);
            recorded.error = error.map(str::to_owned);
        }
    }
}
