//! The server-wide cap on provider requests in flight: every request, whatever its
//! provider or run, holds one permit of one semaphore while it is sent and answered.

use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::Semaphore;
use tower::{Layer, Service};

use super::{AttemptFuture, AttemptService, Call, Outcome, Refused};

/// Holds the semaphore: one layer is made per registry and cloned into every
/// provider's stack, so they all share it.
#[derive(Clone)]
pub(in crate::components::openai) struct OutboundCapLayer {
    permits: Arc<Semaphore>,
}

impl OutboundCapLayer {
    /// At most `max_requests` provider requests in flight (at least 1).
    pub(in crate::components::openai) fn new(max_requests: usize) -> Self {
        OutboundCapLayer {
            permits: Arc::new(Semaphore::new(
                max_requests.clamp(1, Semaphore::MAX_PERMITS),
            )),
        }
    }
}

impl<S> Layer<S> for OutboundCapLayer {
    type Service = OutboundCap<S>;

    fn layer(&self, inner: S) -> OutboundCap<S> {
        OutboundCap {
            inner,
            permits: self.permits.clone(),
        }
    }
}

#[derive(Clone)]
pub(in crate::components::openai) struct OutboundCap<S> {
    inner: S,
    permits: Arc<Semaphore>,
}

impl<'a, S: AttemptService<'a>> Service<Call<'a>> for OutboundCap<S> {
    type Response = Outcome;
    type Error = Refused;
    type Future = AttemptFuture<'a>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Refused>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Call<'a>) -> AttemptFuture<'a> {
        let mut inner = self.inner.clone();
        let permits = self.permits.clone();
        Box::pin(async move {
            // Never closed: the semaphore lives as long as the layer.
            let _slot = permits.acquire().await.ok();
            inner.call(call).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Fixture, Script};
    use super::*;
    use std::time::Duration;
    use tower::ServiceExt;

    #[tokio::test]
    async fn every_stack_shares_the_cap() {
        let fixture = Fixture::new("http://127.0.0.1:9/v1");
        let cap = OutboundCapLayer::new(2);
        let script = Script::ok().slow(Duration::from_millis(30));
        // Two stacks (two providers) built from the same layer.
        let a = cap.layer(script.clone());
        let b = cap.layer(script.clone());
        let calls = (0..6).map(|i| {
            let service = if i % 2 == 0 { a.clone() } else { b.clone() };
            service.oneshot(fixture.call())
        });
        let results = futures::future::join_all(calls).await;
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(script.max_in_flight(), 2);
    }

    #[test]
    fn a_zero_cap_still_lets_one_request_through() {
        assert_eq!(OutboundCapLayer::new(0).permits.available_permits(), 1);
    }
}
