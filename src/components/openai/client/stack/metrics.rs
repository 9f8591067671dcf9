//! Provider metrics of each request: its outcome and latency (from sending to the answer
//! read, without waiting for any limit), and on success the tokens and cost it reports.

use std::task::{Context, Poll};
use std::time::Instant;

use tower::{Layer, Service};

use super::{AttemptFuture, AttemptService, Call, EndpointMeter, Outcome, Refused};
use crate::observe::ProviderOutcome;

#[derive(Clone)]
pub(super) struct MetricsLayer {
    meter: EndpointMeter,
}

impl MetricsLayer {
    pub(super) fn new(meter: EndpointMeter) -> Self {
        MetricsLayer { meter }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Metrics<S>;

    fn layer(&self, inner: S) -> Metrics<S> {
        Metrics {
            inner,
            meter: self.meter.clone(),
        }
    }
}

#[derive(Clone)]
pub(in crate::components::openai) struct Metrics<S> {
    inner: S,
    meter: EndpointMeter,
}

impl<'a, S: AttemptService<'a>> Service<Call<'a>> for Metrics<S> {
    type Response = Outcome;
    type Error = Refused;
    type Future = AttemptFuture<'a>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Refused>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Call<'a>) -> AttemptFuture<'a> {
        let mut inner = self.inner.clone();
        let EndpointMeter { meter, label } = self.meter.clone();
        Box::pin(async move {
            let client = call.client;
            let sent = Instant::now();
            let outcome = inner.call(call).await?;
            let kind = outcome
                .status
                .map_or(ProviderOutcome::NoAnswer, ProviderOutcome::of_status);
            meter.provider_request(&label, kind, sent.elapsed());
            if let Ok((_, parsed)) = &outcome.result {
                let usage = client.usage(1, parsed);
                meter.provider_usage(&label, &usage);
            }
            Ok(outcome)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Fixture, Script, answer, answer_with_usage, no_answer};
    use super::*;
    use serde_json::json;
    use tower::ServiceExt;

    #[tokio::test]
    async fn counts_requests_by_outcome_and_usage_with_cost() {
        let fixture =
            Fixture::with(json!({"price": {"prompt_per_1k": 1.0, "completion_per_1k": 2.0}}));
        let script = Script::new([answer(429, ""), no_answer(), answer_with_usage(1000, 500)]);
        let service = MetricsLayer::new(fixture.meter()).layer(script);
        for _ in 0..3 {
            service
                .clone()
                .oneshot(fixture.call())
                .await
                .expect("answered");
        }
        assert_eq!(
            fixture.recorded_metrics(),
            [
                "provider_request undeclared rate_limited",
                "provider_request undeclared no_answer",
                "provider_request undeclared success",
                "provider_usage undeclared 1000+500 $2",
            ]
        );
    }
}
