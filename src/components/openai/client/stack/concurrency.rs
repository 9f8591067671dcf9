//! Per-endpoint concurrency: an attempt holds a permit of the run's own limit, then one
//! of the operator's (in that order, so a run waiting on its own limit never sits on a
//! permit other runs could use). Each permit tells an adaptive limit how the attempt
//! went (a success grows it, a 429 shrinks it).

use std::task::{Context, Poll};

use tower::{Layer, Service};

use super::{AttemptFuture, AttemptService, Call, Outcome, Refused};
use crate::components::openai::limits::Signal;

#[derive(Clone, Copy)]
pub(super) struct ConcurrencyLayer;

impl<S> Layer<S> for ConcurrencyLayer {
    type Service = Concurrency<S>;

    fn layer(&self, inner: S) -> Concurrency<S> {
        Concurrency { inner }
    }
}

#[derive(Clone)]
pub(in crate::components::openai) struct Concurrency<S> {
    inner: S,
}

impl<'a, S: AttemptService<'a>> Service<Call<'a>> for Concurrency<S> {
    type Response = Outcome;
    type Error = Refused;
    type Future = AttemptFuture<'a>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Refused>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Call<'a>) -> AttemptFuture<'a> {
        let mut inner = self.inner.clone();
        Box::pin(async move {
            let [shared, own] = call.limits();
            let mut own_permit = own.concurrency.acquire().await;
            let mut permit = shared.concurrency.acquire().await;
            let outcome = inner.call(call).await;
            let signal = outcome.as_ref().map_or(Signal::Neutral, |o| o.signal);
            permit.signal(signal);
            own_permit.signal(signal);
            outcome
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Fixture, Script, answer};
    use super::*;
    use serde_json::json;
    use std::time::Duration;
    use tower::ServiceExt;

    #[tokio::test]
    async fn holds_a_permit_per_attempt() {
        let fixture = Fixture::with(json!({"max_concurrency": 1}));
        let script = Script::ok().slow(Duration::from_millis(50));
        let service = ConcurrencyLayer.layer(script.clone());
        let started = std::time::Instant::now();
        let (a, b) = futures::join!(
            service.clone().oneshot(fixture.call()),
            service.clone().oneshot(fixture.call())
        );
        assert!(a.is_ok() && b.is_ok());
        // One at a time: the second waited for the first.
        assert!(
            started.elapsed() >= Duration::from_millis(100),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(script.max_in_flight(), 1);
    }

    #[tokio::test]
    async fn tells_an_adaptive_limit_how_attempts_went() {
        let fixture = Fixture::with(json!({"adaptive_concurrency": true, "max_concurrency": 16}));
        let own = &fixture.client.own;
        assert_eq!(own.concurrency.limit(), 8.0);
        let service = ConcurrencyLayer.layer(Script::new([answer(429, "")]));
        service.oneshot(fixture.call()).await.expect("answered");
        assert_eq!(own.concurrency.limit(), 4.0, "a 429 halves the limit");
        let service = ConcurrencyLayer.layer(Script::ok());
        for _ in 0..4 {
            service.clone().oneshot(fixture.call()).await.expect("sent");
        }
        // Four successes grow it by about one window's worth.
        let limit = own.concurrency.limit();
        assert!(limit > 4.8 && limit < 5.0, "{limit}");
    }
}
