//! Circuit breakers: the run's own, then the operator's. An open breaker refuses the
//! attempt (no request is sent); otherwise the attempt's health is recorded on both.
//! The operator's breaker, which other runs see, keeps the status only (never a message
//! that may quote this run's request), and is not charged with a timeout shorter than
//! [`SHARED_TIMEOUT_FLOOR`] (a run cannot open it for everyone with `timeout_ms: 1`).

use std::task::{Context, Poll};
use std::time::Duration;

use tower::{Layer, Service};

use super::{AttemptFuture, AttemptService, Call, EndpointMeter, Outcome, Refused};
use crate::components::openai::client::endpoint::BreakerGuard;

/// A run's own timeout shorter than this does not count a timed-out request against
/// the endpoint's shared breaker.
const SHARED_TIMEOUT_FLOOR: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub(super) struct BreakerLayer {
    /// Where the operator's breaker state is reported.
    meter: EndpointMeter,
}

impl BreakerLayer {
    pub(super) fn new(meter: EndpointMeter) -> Self {
        BreakerLayer { meter }
    }
}

impl<S> Layer<S> for BreakerLayer {
    type Service = Breakers<S>;

    fn layer(&self, inner: S) -> Breakers<S> {
        Breakers {
            inner,
            meter: self.meter.clone(),
        }
    }
}

#[derive(Clone)]
pub(in crate::components::openai) struct Breakers<S> {
    inner: S,
    meter: EndpointMeter,
}

impl<'a, S: AttemptService<'a>> Service<Call<'a>> for Breakers<S> {
    type Response = Outcome;
    type Error = Refused;
    type Future = AttemptFuture<'a>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Refused>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Call<'a>) -> AttemptFuture<'a> {
        let mut inner = self.inner.clone();
        let meter = self.meter.clone();
        Box::pin(async move {
            let [shared, own] = call.limits();
            // The run's own first: when it is open the operator's probe is not spent.
            let own_admission = own
                .breaker
                .admit()
                .map(|a| BreakerGuard::new(&own.breaker, a))
                .map_err(Refused::BreakerOpen)?;
            let admission = shared
                .breaker
                .admit()
                .map(|a| BreakerGuard::new(&shared.breaker, a))
                .map_err(Refused::BreakerOpen)?;
            let short_timeout = call.client.timeout < SHARED_TIMEOUT_FLOOR;
            let outcome = inner.call(call).await?;
            own_admission.record(outcome.health, || outcome.reason.clone());
            if outcome.timed_out && short_timeout {
                drop(admission);
            } else {
                admission.record(outcome.health, || outcome.summary.clone());
            }
            meter
                .meter
                .breaker_state(&meter.label, shared.breaker.state());
            Ok(outcome)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Fixture, Script, answer, no_answer, timed_out};
    use super::*;
    use serde_json::json;
    use tower::ServiceExt;

    #[tokio::test]
    async fn opens_after_consecutive_failures_and_refuses() {
        let fixture = Fixture::with(json!({"breaker_failures": 2, "breaker_cooldown_ms": 60000}));
        let script = Script::new([answer(500, ""), no_answer(), answer(200, "")]);
        let service = BreakerLayer::new(fixture.meter()).layer(script.clone());
        for _ in 0..2 {
            service
                .clone()
                .oneshot(fixture.call())
                .await
                .expect("answered");
        }
        let refused = service.oneshot(fixture.call()).await.expect_err("refused");
        let message = refused.to_string();
        assert!(
            message.starts_with("circuit breaker open after 2 consecutive failures (last: "),
            "{message}"
        );
        assert_eq!(script.attempts(), 2, "nothing is sent while open");
        // The operator's breaker (10 failures by default) is still closed.
        assert!(fixture.endpoint.breaker.admit().is_ok());
    }

    #[tokio::test]
    async fn the_shared_breaker_keeps_the_status_only() {
        let fixture = Fixture::with(json!({"breaker_failures": 0}));
        fixture
            .endpoint
            .breaker
            .configure(1, Duration::from_secs(60));
        let script = Script::new([answer(503, r#"{"error": {"message": "secret prompt"}}"#)]);
        let service = BreakerLayer::new(fixture.meter()).layer(script);
        service
            .clone()
            .oneshot(fixture.call())
            .await
            .expect("answered");
        let open = fixture.endpoint.breaker.admit().expect_err("open");
        assert_eq!(open.last_failure, "HTTP 503 Service Unavailable");
        assert_eq!(
            fixture.recorded_metrics(),
            ["breaker_state undeclared Open"]
        );
    }

    #[tokio::test]
    async fn short_timeouts_do_not_charge_the_shared_breaker() {
        let fixture = Fixture::with(json!({"breaker_failures": 0, "timeout_ms": 50}));
        fixture
            .endpoint
            .breaker
            .configure(1, Duration::from_secs(60));
        let service = BreakerLayer::new(fixture.meter()).layer(Script::new([timed_out()]));
        service.oneshot(fixture.call()).await.expect("answered");
        assert!(fixture.endpoint.breaker.admit().is_ok());
        // A long timeout does.
        let fixture = Fixture::with(json!({"breaker_failures": 0, "timeout_ms": 10000}));
        fixture
            .endpoint
            .breaker
            .configure(1, Duration::from_secs(60));
        let service = BreakerLayer::new(fixture.meter()).layer(Script::new([timed_out()]));
        service.oneshot(fixture.call()).await.expect("answered");
        assert!(fixture.endpoint.breaker.admit().is_err());
    }
}
