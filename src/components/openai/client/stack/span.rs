//! A `provider_call` span per HTTP request (when the call has a parent span), with the
//! GenAI request attributes and, on success, the token usage. A span whose attempt is
//! dropped half-way (a cancelled run) ends as an error.

use std::task::{Context, Poll};

use serde_json::Value;
use tower::{Layer, Service};

use super::{AttemptFuture, AttemptService, Call, Outcome, Refused};
use crate::components::openai::client::wire_seed;
use crate::observe::{AttributeValue, Attributes, Span, SpanStatus, TracingProvider};

#[derive(Clone, Copy)]
pub(super) struct SpanLayer;

impl<S> Layer<S> for SpanLayer {
    type Service = Spans<S>;

    fn layer(&self, inner: S) -> Spans<S> {
        Spans { inner }
    }
}

#[derive(Clone)]
pub(in crate::components::openai) struct Spans<S> {
    inner: S,
}

impl<'a, S: AttemptService<'a>> Service<Call<'a>> for Spans<S> {
    type Response = Outcome;
    type Error = Refused;
    type Future = AttemptFuture<'a>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Refused>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Call<'a>) -> AttemptFuture<'a> {
        let mut inner = self.inner.clone();
        Box::pin(async move {
            let tracer = call.ctx.tracer;
            let span = SpanGuard {
                tracer,
                span: call.ctx.parent_span.map(|parent| {
                    // Attributes only for a tracer that keeps them.
                    let attributes = if tracer.is_recording() {
                        attributes(&call)
                    } else {
                        Attributes::new()
                    };
                    tracer.start_span("provider_call", attributes, Some(parent))
                }),
            };
            let outcome = inner.call(call).await;
            match &outcome {
                Ok(Outcome {
                    result: Ok((_, parsed)),
                    ..
                }) => {
                    span.set("gen_ai.usage.input_tokens", parsed.prompt_tokens);
                    span.set("gen_ai.usage.output_tokens", parsed.completion_tokens);
                    span.end(SpanStatus::Ok, None);
                }
                Ok(outcome) => span.end(SpanStatus::Error, Some(&outcome.reason)),
                Err(refused) => span.end(SpanStatus::Error, Some(&refused.to_string())),
            }
            outcome
        })
    }
}

fn attributes(call: &Call<'_>) -> Attributes {
    let client = call.client;
    let mut attributes: Attributes = vec![
        ("gen_ai.system", "openai".into()),
        ("gen_ai.operation.name", "chat".into()),
        ("gen_ai.request.model", client.model.as_str().into()),
        (
            "gen_ai.request.seed",
            AttributeValue::from(wire_seed(call.seed)),
        ),
        (
            "gen_ai.request.choice.count",
            AttributeValue::from(u64::from(call.n)),
        ),
        ("server.address", client.base_url.as_str().into()),
        (
            "themis.attempt",
            AttributeValue::from(u64::from(call.attempt)),
        ),
    ];
    for (key, name) in [
        ("temperature", "gen_ai.request.temperature"),
        ("top_p", "gen_ai.request.top_p"),
    ] {
        if let Some(x) = client.body.get(key).and_then(Value::as_f64) {
            attributes.push((name, x.into()));
        }
    }
    if let Some(m) = client.body.get("max_tokens").and_then(Value::as_u64) {
        attributes.push(("gen_ai.request.max_tokens", m.into()));
    }
    attributes
}

/// A `provider_call` span, ended as an error if the attempt is dropped before it ends.
struct SpanGuard<'a> {
    tracer: &'a dyn TracingProvider,
    span: Option<Span>,
}

impl SpanGuard<'_> {
    /// Adds an attribute known only after the call (token usage).
    fn set(&self, key: &str, value: u64) {
        if let Some(span) = &self.span {
            self.tracer
                .set_attribute(span, key, AttributeValue::from(value));
        }
    }

    fn end(mut self, status: SpanStatus, error: Option<&str>) {
        if let Some(span) = self.span.take() {
            self.tracer.end_span(span, status, error);
        }
    }
}

impl Drop for SpanGuard<'_> {
    fn drop(&mut self) {
        if let Some(span) = self.span.take() {
            self.tracer
                .end_span(span, SpanStatus::Error, Some("cancelled"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Fixture, Script, Tracer, answer, answer_with_usage};
    use super::*;
    use crate::components::CallContext;
    use serde_json::json;
    use tower::ServiceExt;

    #[tokio::test]
    async fn one_span_per_attempt_under_the_parent() {
        let fixture = Fixture::with(json!({"temperature": 0.5}));
        let tracer = Tracer::default();
        let parent = tracer.start_span("stage", Attributes::new(), None);
        let ctx = CallContext {
            tracer: &tracer,
            parent_span: Some(&parent),
            ..CallContext::detached()
        };
        let service = SpanLayer.layer(Script::new([answer(500, ""), answer_with_usage(3, 4)]));
        let first = Call {
            ctx,
            ..fixture.call()
        };
        service.clone().oneshot(first).await.expect("answered");
        let second = Call {
            ctx,
            attempt: 2,
            ..fixture.call()
        };
        service.oneshot(second).await.expect("sent");
        let spans = tracer.ended();
        assert_eq!(spans.len(), 2, "{spans:?}");
        assert_eq!(spans[0].0, "provider_call");
        assert!(spans[0].1.contains("themis.attempt=1"), "{:?}", spans[0]);
        assert!(
            spans[0].1.contains("gen_ai.request.temperature=0.5"),
            "{:?}",
            spans[0]
        );
        assert_eq!(spans[0].2, "error: HTTP 500 Internal Server Error");
        assert!(spans[1].1.contains("themis.attempt=2"), "{:?}", spans[1]);
        assert!(
            spans[1].1.contains("gen_ai.usage.output_tokens=4"),
            "{:?}",
            spans[1]
        );
        assert_eq!(spans[1].2, "ok");
    }

    #[tokio::test]
    async fn a_dropped_attempt_ends_its_span_as_cancelled() {
        let fixture = Fixture::new("http://127.0.0.1:9/v1");
        let tracer = Tracer::default();
        let parent = tracer.start_span("stage", Attributes::new(), None);
        let ctx = CallContext {
            tracer: &tracer,
            parent_span: Some(&parent),
            ..CallContext::detached()
        };
        let service = SpanLayer.layer(Script::ok().slow(std::time::Duration::from_secs(60)));
        let call = Call {
            ctx,
            ..fixture.call()
        };
        let attempt =
            tokio::time::timeout(std::time::Duration::from_millis(20), service.oneshot(call));
        assert!(attempt.await.is_err(), "still waiting");
        assert_eq!(tracer.ended()[0].2, "error: cancelled");
    }

    #[tokio::test]
    async fn no_parent_no_span() {
        let fixture = Fixture::new("http://127.0.0.1:9/v1");
        let tracer = Tracer::default();
        let ctx = CallContext {
            tracer: &tracer,
            ..CallContext::detached()
        };
        let service = SpanLayer.layer(Script::ok());
        let call = Call {
            ctx,
            ..fixture.call()
        };
        assert!(service.oneshot(call).await.is_ok());
        assert!(tracer.ended().is_empty());
    }
}
