//! Retries with a budget: a failed attempt is tried again after a backoff with full
//! jitter (at least the answer's `Retry-After`) unless it cannot succeed (not
//! retryable), the same failure repeated too often, the attempts ran out, or waiting
//! would exceed the retry budget. A refused attempt (a breaker open) ends the call.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use tower::{Layer, Service};

use super::{AttemptService, Call, CallError, CallFuture, EndpointMeter, Sent};
use crate::components::CallNote;
use crate::components::builtin_generators::mix;

/// How a run retries (its params).
#[derive(Debug, Clone)]
pub(in crate::components::openai) struct RetryPolicy {
    /// At least 1.
    pub max_attempts: u32,
    /// No retry waits past this much time since the call started.
    pub budget: Duration,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// The same failure (status and body) this many times in a row ends the retries.
    pub max_identical_failures: u32,
}

impl RetryPolicy {
    /// Full jitter: uniform in [0, min(max_backoff, initial · 2^(attempt−1))]; `random`
    /// is a uniformly distributed 64-bit number.
    fn backoff(&self, attempt: u32, random: u64) -> Duration {
        let exponential = self
            .initial_backoff
            .saturating_mul(1u32 << (attempt.max(1) - 1).min(20));
        let cap = exponential.min(self.max_backoff);
        let unit = (random >> 11) as f64 / (1u64 << 53) as f64;
        cap.mul_f64(unit)
    }
}

#[derive(Clone)]
pub(super) struct RetryLayer {
    /// Source of backoff jitter: distinct per call, no RNG state beyond a counter.
    jitter: Arc<AtomicU64>,
    meter: EndpointMeter,
}

impl RetryLayer {
    pub(super) fn new(jitter: Arc<AtomicU64>, meter: EndpointMeter) -> Self {
        RetryLayer { jitter, meter }
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Retry<S> {
        Retry {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub(in crate::components::openai) struct Retry<S> {
    inner: S,
    layer: RetryLayer,
}

impl<S> Retry<S> {
    fn random(&self) -> u64 {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        mix(self.layer.jitter.fetch_add(1, Ordering::Relaxed), nanos)
    }
}

impl<'a, S: AttemptService<'a>> Service<Call<'a>> for Retry<S> {
    type Response = Sent;
    type Error = CallError;
    type Future = CallFuture<'a>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), CallError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Call<'a>) -> CallFuture<'a> {
        let this = self.clone();
        Box::pin(async move { this.attempts(call).await })
    }
}

impl<S> Retry<S> {
    async fn attempts<'a>(self, call: Call<'a>) -> Result<Sent, CallError>
    where
        S: AttemptService<'a>,
    {
        let client = call.client;
        let policy = &client.retry;
        let started = Instant::now();
        let mut requests = 0u64;
        let mut repeated: Option<(String, u32)> = None;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let this_attempt = Call {
                attempt,
                ..call.clone()
            };
            let outcome = match self.inner.clone().call(this_attempt).await {
                Ok(outcome) => outcome,
                Err(refused) => {
                    let mut error = client.fail(refused);
                    error.usage = crate::model::Usage {
                        requests,
                        ..Default::default()
                    };
                    return Err(error);
                }
            };
            requests += 1;
            let failure = match outcome.result {
                Ok((raw, parsed)) => {
                    return Ok(Sent {
                        raw,
                        parsed,
                        requests,
                    });
                }
                Err(failure) => failure,
            };
            let give_up = |detail: String| {
                let mut error = client.fail(detail);
                error.status = failure.status;
                error.body = failure.body.clone();
                error.usage = crate::model::Usage {
                    requests,
                    ..Default::default()
                };
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
                if count >= policy.max_identical_failures {
                    return Err(give_up(format!(
                        "{} (the same failure {count} times in a row; not retrying)",
                        outcome.reason
                    )));
                }
            }
            let plural = if attempt == 1 { "" } else { "s" };
            if attempt >= policy.max_attempts {
                return Err(give_up(format!(
                    "{} (after {attempt} attempt{plural})",
                    outcome.reason
                )));
            }
            let delay = policy
                .backoff(attempt, self.random())
                .max(failure.retry_after.unwrap_or_default());
            if started.elapsed() + delay > policy.budget {
                return Err(give_up(format!(
                    "{} (after {attempt} attempt{plural}; the retry budget of {} ms would be \
                     exceeded by waiting {} ms)",
                    outcome.reason,
                    policy.budget.as_millis(),
                    delay.as_millis()
                )));
            }
            self.layer
                .meter
                .meter
                .provider_retry(&self.layer.meter.label);
            let provider = client.provider();
            tracing::debug!(provider, attempt, delay_ms = delay.as_millis() as u64, reason = %outcome.reason, "retrying provider call");
            call.ctx.observer.note(CallNote::Retry {
                provider,
                attempt,
                delay_ms: delay.as_millis() as u64,
                reason: outcome.reason,
            });
            tokio::time::sleep(delay).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Fixture, Notes, Script, answer, no_answer};
    use super::*;
    use serde_json::json;
    use tower::ServiceExt;

    #[tokio::test]
    async fn retries_until_an_answer() {
        let fixture = Fixture::with(json!({"initial_backoff_ms": 0, "max_backoff_ms": 0}));
        let script = Script::new([answer(503, ""), no_answer(), answer(200, "")]);
        let notes = Notes::default();
        let sent = script
            .retrying()
            .oneshot(fixture.call_noting(&notes))
            .await
            .expect("sent");
        assert_eq!(sent.requests, 3);
        assert_eq!(script.attempts(), 3);
        assert_eq!(script.attempt_numbers(), [1, 2, 3]);
        assert_eq!(notes.retries(), [1, 2]);
    }

    #[tokio::test]
    async fn stops_at_max_attempts() {
        let fixture =
            Fixture::with(json!({"max_retries": 1, "initial_backoff_ms": 0, "max_backoff_ms": 0}));
        let script = Script::new([answer(500, "a"), answer(500, "b"), answer(200, "")]);
        let error = script
            .retrying()
            .oneshot(fixture.call())
            .await
            .expect_err("failed");
        assert!(
            error
                .message
                .ends_with("HTTP 500 Internal Server Error (after 2 attempts)"),
            "{}",
            error.message
        );
        assert_eq!(error.status, Some(500));
        assert_eq!(error.usage.requests, 2);
    }

    #[tokio::test]
    async fn does_not_retry_what_cannot_succeed() {
        let fixture = Fixture::new("http://127.0.0.1:9/v1");
        let script = Script::new([answer(400, "bad request"), answer(200, "")]);
        let error = script
            .retrying()
            .oneshot(fixture.call())
            .await
            .expect_err("failed");
        assert!(
            error.message.ends_with("HTTP 400 Bad Request"),
            "{}",
            error.message
        );
        assert_eq!(error.usage.requests, 1);
        assert_eq!(script.attempts(), 1);
    }

    #[tokio::test]
    async fn identical_failures_end_the_retries() {
        let fixture = Fixture::with(
            json!({"max_identical_failures": 2, "initial_backoff_ms": 0, "max_backoff_ms": 0}),
        );
        let script = Script::new([answer(500, "same"), answer(500, "same"), answer(200, "")]);
        let error = script
            .retrying()
            .oneshot(fixture.call())
            .await
            .expect_err("failed");
        assert!(
            error.message.contains("the same failure 2 times in a row"),
            "{}",
            error.message
        );
        assert_eq!(script.attempts(), 2);
    }

    #[tokio::test]
    async fn the_budget_bounds_the_waiting() {
        let fixture = Fixture::with(
            json!({"retry_budget_ms": 100, "initial_backoff_ms": 0, "max_backoff_ms": 0}),
        );
        // Retry-After: 1 s, more than the budget allows.
        let script = Script::new([
            super::super::testing::answer_after(429, 1000),
            answer(200, ""),
        ]);
        let started = Instant::now();
        let error = script
            .retrying()
            .oneshot(fixture.call())
            .await
            .expect_err("failed");
        assert!(started.elapsed() < Duration::from_millis(500));
        assert!(
            error
                .message
                .contains("the retry budget of 100 ms would be exceeded by waiting 1000 ms"),
            "{}",
            error.message
        );
    }

    #[tokio::test]
    async fn a_refusal_ends_the_call_counting_what_was_sent() {
        let fixture = Fixture::with(json!({"initial_backoff_ms": 0, "max_backoff_ms": 0}));
        let script = Script::new([answer(503, "")]).then_refuse();
        let error = script
            .retrying()
            .oneshot(fixture.call())
            .await
            .expect_err("failed");
        assert!(
            error.message.contains("circuit breaker open"),
            "{}",
            error.message
        );
        assert_eq!(error.usage.requests, 1);
    }

    #[test]
    fn backoff_is_full_jitter_under_the_cap() {
        let policy = RetryPolicy {
            max_attempts: 10,
            budget: Duration::from_secs(60),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            max_identical_failures: 3,
        };
        assert_eq!(policy.backoff(1, 0), Duration::ZERO);
        let top = |attempt| policy.backoff(attempt, u64::MAX);
        assert!(top(1) <= Duration::from_millis(100) && top(1) > Duration::from_millis(99));
        assert!(top(3) <= Duration::from_millis(400) && top(3) > Duration::from_millis(399));
        assert!(top(30) <= Duration::from_millis(1000) && top(30) > Duration::from_millis(999));
    }
}
