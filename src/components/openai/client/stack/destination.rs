//! The egress policy, outermost: a call to a destination the policy refuses (or that has
//! no client, or no valid URL) fails before it waits for a limit or counts a request.
//! Literal IP hosts are checked here; names are checked by the clients' resolver.

use std::sync::Arc;
use std::task::{Context, Poll};

use tower::{Layer, Service};

use super::{Call, CallError, CallFuture, CallService, Sent};
use crate::egress::Egress;

#[derive(Clone)]
pub(super) struct DestinationLayer {
    egress: Arc<Egress>,
    declared: bool,
}

impl DestinationLayer {
    /// `declared`: the stack serves a declared provider (whose destinations the policy
    /// may treat differently).
    pub(super) fn new(egress: Arc<Egress>, declared: bool) -> Self {
        DestinationLayer { egress, declared }
    }
}

impl<S> Layer<S> for DestinationLayer {
    type Service = Destination<S>;

    fn layer(&self, inner: S) -> Destination<S> {
        Destination {
            inner,
            egress: self.egress.clone(),
            declared: self.declared,
        }
    }
}

#[derive(Clone)]
pub(in crate::components::openai) struct Destination<S> {
    inner: S,
    egress: Arc<Egress>,
    declared: bool,
}

impl<S> Destination<S> {
    fn check(&self, call: &Call<'_>) -> Result<(), CallError> {
        let client = call.client;
        self.egress
            .client(self.declared)
            .map_err(|e| client.fail(e))?;
        let url = client.url.as_ref().map_err(|e| client.fail(e))?;
        self.egress
            .check_url(url, self.declared)
            .map_err(|e| client.fail(e))
    }
}

impl<'a, S: CallService<'a>> Service<Call<'a>> for Destination<S> {
    type Response = Sent;
    type Error = CallError;
    type Future = CallFuture<'a>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), CallError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Call<'a>) -> CallFuture<'a> {
        let checked = self.check(&call);
        let mut inner = self.inner.clone();
        Box::pin(async move {
            checked?;
            inner.call(call).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Fixture, Script};
    use super::*;
    use crate::egress::EgressPolicy;
    use tower::ServiceExt;

    #[tokio::test]
    async fn refused_destinations_fail_before_anything_is_sent() {
        let fixture = Fixture::new("http://169.254.169.254/v1");
        let script = Script::ok();
        let service = DestinationLayer::new(Arc::new(Egress::new(EgressPolicy::local())), false)
            .layer(script.retrying());
        let error = service.oneshot(fixture.call()).await.expect_err("refused");
        assert!(error.message.contains("link-local"), "{}", error.message);
        assert_eq!(error.usage.requests, 0);
        assert_eq!(script.attempts(), 0);
    }

    #[tokio::test]
    async fn allowed_destinations_pass_through() {
        let fixture = Fixture::new("http://127.0.0.1:9/v1");
        let script = Script::ok();
        let service =
            DestinationLayer::new(Arc::new(Egress::local()), false).layer(script.retrying());
        let sent = service.oneshot(fixture.call()).await.expect("sent");
        assert_eq!(sent.requests, 1);
        assert_eq!(script.attempts(), 1);
    }
}
