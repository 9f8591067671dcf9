//! The attempts of one call: rate limits and concurrency (shared and the run's own),
//! both breakers, the server-wide in-flight cap, backoff with full jitter between
//! retries, and a `provider_call` span per HTTP request.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use serde_json::Value;

use super::endpoint::{BreakerGuard, Endpoint};
use super::http::Attempt;
use super::response::{Parsed, redact};
use super::{CallError, ClientConfig, Message, wire_seed};
use crate::components::builtin_generators::mix;
use crate::components::{CallContext, CallNote};
use crate::observe::{
    AttributeValue, Attributes, ProviderOutcome, Span, SpanStatus, TracingProvider,
    UNDECLARED_ENDPOINT,
};

/// Rate-limit waits longer than this are reported as notes.
const NOTE_WAIT: Duration = Duration::from_millis(50);
/// A run's own timeout shorter than this does not count a timed-out request against
/// the endpoint's shared breaker (a run cannot open it for everyone with `timeout_ms: 1`).
const SHARED_TIMEOUT_FLOOR: Duration = Duration::from_secs(10);

impl ClientConfig {
    /// Sends `body` (the request for `messages`) with retries. Returns the raw response
    /// body, its parsed form and how many HTTP requests were sent.
    pub(super) async fn send(
        &self,
        ctx: CallContext<'_>,
        endpoint: &Endpoint,
        messages: &[Message],
        body: Bytes,
        seed: u64,
        n: u32,
    ) -> Result<(String, Parsed, u64), CallError> {
        let api_key = self.api_key();
        let declared = self.provider.is_some();
        let client = self
            .shared
            .outbound
            .egress
            .client(declared)
            .map_err(|e| self.fail(e))?;
        let url = self.url.as_ref().map_err(|e| self.fail(e))?;
        // Literal IP hosts are not resolved, so the resolver cannot check them.
        self.shared
            .outbound
            .egress
            .check_url(url, declared)
            .map_err(|e| self.fail(e))?;
        let own = &*self.own;
        let started = Instant::now();
        let estimate = estimate_tokens(messages, self.completion_estimate * u64::from(n));
        let mut requests = 0u64;
        let mut repeated: Option<(String, u32)> = None;
        let redact = |text: &str| redact(text, api_key);
        let meter = &*self.shared.outbound.meter;
        // Metrics name endpoints by the operator's declaration only (bounded labels).
        let endpoint_label = self
            .provider
            .as_ref()
            .map_or(UNDECLARED_ENDPOINT, |p| p.name.as_str());

        for attempt in 1..=self.max_attempts {
            // Rate limits: every budget (shared and the run's own) is reserved now and
            // refills in parallel.
            let wait = endpoint
                .requests
                .reserve(1.0)
                .max(endpoint.tokens.reserve(estimate))
                .max(own.requests.reserve(1.0))
                .max(own.tokens.reserve(estimate));
            if wait > NOTE_WAIT {
                ctx.observer.note(CallNote::RateLimited {
                    provider: self.provider(),
                    wait_ms: wait.as_millis() as u64,
                });
            }
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            let mut own_permit = own.concurrency.acquire().await;
            let mut permit = endpoint.concurrency.acquire().await;
            let breakers = own
                .breaker
                .admit()
                .map(|a| BreakerGuard::new(&own.breaker, a))
                .and_then(|own_admission| {
                    endpoint
                        .breaker
                        .admit()
                        .map(|a| (own_admission, BreakerGuard::new(&endpoint.breaker, a)))
                });
            let (own_admission, admission) = match breakers {
                Ok(admissions) => admissions,
                Err(open) => {
                    endpoint.tokens.adjust(estimate);
                    own.tokens.adjust(estimate);
                    let mut error = self.fail(format_args!(
                        "circuit breaker open after {} consecutive failures (last: {}); \
                         failing fast, next probe in {} ms",
                        open.failures,
                        open.last_failure,
                        open.retry_in.as_millis()
                    ));
                    error.usage = self.usage(requests, 0, 0);
                    return Err(error);
                }
            };

            let span = SpanGuard {
                tracer: ctx.tracer,
                span: ctx.parent_span.map(|parent| {
                    // Attributes only for a tracer that keeps them.
                    let attributes = if ctx.tracer.is_recording() {
                        self.span_attributes(attempt, seed, n)
                    } else {
                        Attributes::new()
                    };
                    ctx.tracer
                        .start_span("provider_call", attributes, Some(parent))
                }),
            };
            requests += 1;
            let outcome = {
                // The server-wide cap; closed never (the semaphore lives as long as we do).
                let _slot = self.shared.in_flight.acquire().await.ok();
                let sent = Instant::now();
                let outcome = self.attempt(client, url, body.clone(), api_key).await;
                let label = match &outcome {
                    Attempt::Answered { status, .. } => ProviderOutcome::of_status(*status),
                    Attempt::Transport { .. } => ProviderOutcome::NoAnswer,
                };
                meter.provider_request(endpoint_label, label, sent.elapsed());
                outcome
            };
            let timed_out = matches!(
                outcome,
                Attempt::Transport {
                    timed_out: true,
                    ..
                }
            );
            let outcome = outcome.classify(&redact, declared);
            own_admission.record(outcome.health, || outcome.reason.clone());
            if timed_out && self.timeout < SHARED_TIMEOUT_FLOOR {
                drop(admission);
            } else {
                // Other runs see the shared breaker's last failure: the status only, never
                // a message that may quote this run's request.
                admission.record(outcome.health, || outcome.summary.clone());
            }
            meter.breaker_state(endpoint_label, endpoint.breaker.state());
            permit.signal(outcome.signal);
            own_permit.signal(outcome.signal);
            drop(permit);
            drop(own_permit);
            match &outcome.result {
                Ok((_, parsed)) => {
                    span.set("gen_ai.usage.input_tokens", parsed.prompt_tokens);
                    span.set("gen_ai.usage.output_tokens", parsed.completion_tokens);
                    span.end(SpanStatus::Ok, None)
                }
                Err(_) => span.end(SpanStatus::Error, Some(&outcome.reason)),
            }

            let failure = match outcome.result {
                Ok((raw, parsed)) => {
                    let actual = (parsed.prompt_tokens + parsed.completion_tokens) as f64;
                    if actual > 0.0 {
                        endpoint.tokens.adjust(estimate - actual);
                        own.tokens.adjust(estimate - actual);
                    }
                    meter.provider_usage(
                        endpoint_label,
                        &self.usage(requests, parsed.prompt_tokens, parsed.completion_tokens),
                    );
                    return Ok((raw, parsed, requests));
                }
                Err(failure) => failure,
            };
            // The provider does not count failed requests against the token budget.
            endpoint.tokens.adjust(estimate);
            own.tokens.adjust(estimate);
            let give_up = |detail: String| {
                let mut error = self.fail(detail);
                error.status = failure.status;
                error.body = failure.body.clone();
                error.usage = self.usage(requests, 0, 0);
                error
            };
            if !failure.retryable {
                return Err(give_up(outcome.reason));
            }
            if let Some(signature) = &failure.signature {
                let count = match &mut repeated {
                    Some((last, count)) if last == signature => {
                        *count += 1;
                        *count
                    }
                    _ => {
                        repeated = Some((signature.clone(), 1));
                        1
                    }
                };
                if count >= self.max_identical_failures {
                    return Err(give_up(format!(
                        "{} (the same failure {count} times in a row; not retrying)",
                        outcome.reason
                    )));
                }
            }
            if attempt == self.max_attempts {
                return Err(give_up(format!(
                    "{} (after {attempt} attempt{})",
                    outcome.reason,
                    if attempt == 1 { "" } else { "s" }
                )));
            }
            let delay = self
                .backoff(attempt)
                .max(failure.retry_after.unwrap_or_default());
            if started.elapsed() + delay > self.retry_budget {
                return Err(give_up(format!(
                    "{} (after {attempt} attempt{}; the retry budget of {} ms would be exceeded \
                     by waiting {} ms)",
                    outcome.reason,
                    if attempt == 1 { "" } else { "s" },
                    self.retry_budget.as_millis(),
                    delay.as_millis()
                )));
            }
            meter.provider_retry(endpoint_label);
            let provider = self.provider();
            tracing::debug!(provider, attempt, delay_ms = delay.as_millis() as u64, reason = %outcome.reason, "retrying provider call");
            ctx.observer.note(CallNote::Retry {
                provider,
                attempt,
                delay_ms: delay.as_millis() as u64,
                reason: outcome.reason.clone(),
            });
            tokio::time::sleep(delay).await;
        }
        // `max_attempts` is at least 1, so the loop always returns.
        Err(self.fail("no attempt was made"))
    }

    /// Full jitter: uniform in [0, min(max_backoff, initial · 2^(attempt−1))].
    fn backoff(&self, attempt: u32) -> Duration {
        let exponential = self
            .initial_backoff
            .saturating_mul(1u32 << (attempt - 1).min(20));
        let cap = exponential.min(self.max_backoff);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let random = mix(self.shared.jitter.fetch_add(1, Ordering::Relaxed), nanos);
        let unit = (random >> 11) as f64 / (1u64 << 53) as f64;
        cap.mul_f64(unit)
    }

    fn span_attributes(&self, attempt: u32, seed: u64, n: u32) -> Attributes {
        let mut attributes: Attributes = vec![
            ("gen_ai.system", "openai".into()),
            ("gen_ai.operation.name", "chat".into()),
            ("gen_ai.request.model", self.model.as_str().into()),
            ("gen_ai.request.seed", AttributeValue::from(wire_seed(seed))),
            (
                "gen_ai.request.choice.count",
                AttributeValue::from(u64::from(n)),
            ),
            ("server.address", self.base_url.as_str().into()),
            ("themis.attempt", AttributeValue::from(u64::from(attempt))),
        ];
        for (key, name) in [
            ("temperature", "gen_ai.request.temperature"),
            ("top_p", "gen_ai.request.top_p"),
        ] {
            if let Some(x) = self.body.get(key).and_then(Value::as_f64) {
                attributes.push((name, x.into()));
            }
        }
        if let Some(m) = self.body.get("max_tokens").and_then(Value::as_u64) {
            attributes.push(("gen_ai.request.max_tokens", m.into()));
        }
        attributes
    }
}

/// A `provider_call` span (when the call has a parent span), ended as an error if the
/// call is dropped before it ends (a cancelled run).
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

/// A rough token count before sending: a quarter of the message characters plus the
/// completion allowance.
fn estimate_tokens(messages: &[Message], completion: u64) -> f64 {
    let chars: usize = messages
        .iter()
        .map(|m| m.content.chars().count() + 16)
        .sum();
    (chars / 4 + 1) as f64 + completion as f64
}
