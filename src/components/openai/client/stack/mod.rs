//! The provider call path as a stack of tower layers, composed once per declared
//! provider (and once for undeclared endpoints) by [`compose`]. Outermost first:
//!
//! | layer | what it does |
//! |---|---|
//! | [`destination`] | the egress policy: refuses a destination before anything is spent |
//! | [`retry`] | attempts with backoff and full jitter, the retry budget, identical failures |
//! | [`rate`] | request and token rate limits; reconciles the token estimate with the answer |
//! | [`concurrency`] | the per-endpoint concurrency limits (static or adaptive) |
//! | [`breaker`] | the circuit breakers; fails fast while one is open |
//! | [`span`] | a `provider_call` span per HTTP request |
//! | [`cap`] | the server-wide cap on provider requests in flight |
//! | [`metrics`] | request count and latency by outcome, tokens and cost |
//! | [`transport`] | one HTTP request, its answer judged |
//!
//! Every limit exists twice: the operator's, shared by all runs calling an endpoint
//! (base URL and model), and the run's own, from its params, which only that run's calls
//! pass through. Both ride on the [`Call`], so one stack serves every run and model of a
//! provider; a call waits for both, so a run can only tighten the operator's limits.
//!
//! The layers below [`retry`] see one attempt ([`AttemptService`]: an [`Outcome`] or a
//! refusal); [`retry`] and [`destination`] see the whole call ([`CallService`]: what was
//! sent and received, or a [`CallError`]). A new kind of call reuses the layers by
//! composing them over another inner service.

mod breaker;
mod cap;
mod concurrency;
mod destination;
mod metrics;
mod rate;
mod retry;
mod span;
#[cfg(test)]
mod testing;
mod transport;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use bytes::Bytes;
use futures::future::BoxFuture;
use tower::{Service, ServiceBuilder};

use super::endpoint::Endpoint;
use super::response::{Outcome, Parsed};
use super::{CallError, ClientConfig};
use crate::components::CallContext;
use crate::components::openai::limits::Open;
use crate::components::openai::providers::{Outbound, ProviderSpec};
use crate::egress::EgressError;
use crate::observe::{Meter, UNDECLARED_ENDPOINT};

pub(in crate::components::openai) use cap::OutboundCapLayer;
pub(in crate::components::openai) use retry::RetryPolicy;

/// One provider call on its way down the stack: the request, whom it goes to, the limits
/// and policy of the run making it, and the run's context (cache, notes, spans).
#[derive(Clone)]
pub(in crate::components::openai) struct Call<'a> {
    pub ctx: CallContext<'a>,
    /// The calling component's endpoint, price, policy and its run's own limits.
    pub client: &'a ClientConfig,
    /// The endpoint's state shared by all runs (the operator's limits).
    pub endpoint: &'a Endpoint,
    /// The serialized request body.
    pub body: Bytes,
    pub seed: u64,
    /// Choices asked for.
    pub n: u32,
    /// Tokens the request is expected to use (prompt estimate plus completion allowance).
    pub tokens: f64,
    /// 1 for the first attempt; set by the retry layer.
    pub attempt: u32,
}

impl<'a> Call<'a> {
    /// The limits a call passes: the operator's (shared) first, then the run's own.
    fn limits(&self) -> [&'a Endpoint; 2] {
        [self.endpoint, &self.client.own]
    }
}

/// What a successful call sent and got back.
#[derive(Debug)]
pub(in crate::components::openai) struct Sent {
    /// The response body as received.
    pub raw: String,
    pub parsed: Parsed,
    /// HTTP requests sent (attempts that got past the breakers).
    pub requests: u64,
}

/// Why an attempt was not sent.
#[derive(Debug, thiserror::Error)]
pub(in crate::components::openai) enum Refused {
    #[error(
        "circuit breaker open after {} consecutive failures (last: {}); failing fast, \
         next probe in {} ms",
        .0.failures, .0.last_failure, .0.retry_in.as_millis()
    )]
    BreakerOpen(Open),
    #[error(transparent)]
    Egress(#[from] EgressError),
    /// The endpoint's URL does not parse.
    #[error("{0}")]
    Url(String),
}

/// An attempt's future: its judged outcome, or why it was not sent.
pub(in crate::components::openai) type AttemptFuture<'a> = BoxFuture<'a, Result<Outcome, Refused>>;
/// A whole call's future.
pub(in crate::components::openai) type CallFuture<'a> = BoxFuture<'a, Result<Sent, CallError>>;

/// A service making one attempt (the layers below retry). Always ready: waiting for
/// limits happens inside the call.
pub(in crate::components::openai) trait AttemptService<'a>:
    Service<Call<'a>, Response = Outcome, Error = Refused, Future = AttemptFuture<'a>>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<'a, S> AttemptService<'a> for S where
    S: Service<Call<'a>, Response = Outcome, Error = Refused, Future = AttemptFuture<'a>>
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// A service making a whole call (retry and above). Always ready.
pub(in crate::components::openai) trait CallService<'a>:
    Service<Call<'a>, Response = Sent, Error = CallError, Future = CallFuture<'a>>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<'a, S> CallService<'a> for S where
    S: Service<Call<'a>, Response = Sent, Error = CallError, Future = CallFuture<'a>>
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// Where a stack's metrics go: the operator's meter, under the provider's declared name
/// (undeclared endpoints share one label, so labels stay bounded).
#[derive(Clone)]
pub(in crate::components::openai) struct EndpointMeter {
    pub meter: Arc<dyn Meter>,
    pub label: Arc<str>,
}

/// The stack every chat-completions call of a provider goes through.
pub(in crate::components::openai) type ProviderService = destination::Destination<
    retry::Retry<
        rate::RateLimit<
            concurrency::Concurrency<
                breaker::Breakers<
                    span::Spans<cap::OutboundCap<metrics::Metrics<transport::Transport>>>,
                >,
            >,
        >,
    >,
>;

/// Composes the stack for `provider` (`None`: undeclared endpoints). `cap` and `jitter`
/// are shared by every provider's stack.
pub(in crate::components::openai) fn compose(
    provider: Option<&Arc<ProviderSpec>>,
    outbound: &Outbound,
    cap: &OutboundCapLayer,
    jitter: &Arc<AtomicU64>,
) -> ProviderService {
    let declared = provider.is_some();
    let meter = EndpointMeter {
        meter: outbound.meter.clone(),
        label: provider
            .map_or(UNDECLARED_ENDPOINT, |p| p.name.as_str())
            .into(),
    };
    ServiceBuilder::new()
        .layer(destination::DestinationLayer::new(
            outbound.egress.clone(),
            declared,
        ))
        .layer(retry::RetryLayer::new(jitter.clone(), meter.clone()))
        .layer(rate::RateLimitLayer)
        .layer(concurrency::ConcurrencyLayer)
        .layer(breaker::BreakerLayer::new(meter.clone()))
        .layer(span::SpanLayer)
        .layer(cap.clone())
        .layer(metrics::MetricsLayer::new(meter))
        .service(transport::Transport::new(
            outbound.egress.clone(),
            provider.cloned(),
        ))
}
