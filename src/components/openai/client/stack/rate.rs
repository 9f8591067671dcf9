//! Request and token rate limits. Every budget a call passes (the operator's and the
//! run's own) is reserved at once and refills in parallel, so the wait is the longest of
//! them. Tokens are reserved at the call's estimate and reconciled with what the answer
//! says it used; a failed or refused attempt gets its tokens back (providers do not
//! count failed requests against the token budget).

use std::task::{Context, Poll};
use std::time::Duration;

use tower::{Layer, Service};

use super::{AttemptFuture, AttemptService, Call, Outcome, Refused};
use crate::components::CallNote;

/// Rate-limit waits longer than this are reported as notes.
const NOTE_WAIT: Duration = Duration::from_millis(50);

#[derive(Clone, Copy)]
pub(super) struct RateLimitLayer;

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit { inner }
    }
}

#[derive(Clone)]
pub(in crate::components::openai) struct RateLimit<S> {
    inner: S,
}

impl<'a, S: AttemptService<'a>> Service<Call<'a>> for RateLimit<S> {
    type Response = Outcome;
    type Error = Refused;
    type Future = AttemptFuture<'a>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Refused>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Call<'a>) -> AttemptFuture<'a> {
        let mut inner = self.inner.clone();
        Box::pin(async move {
            let limits = call.limits();
            let estimate = call.tokens;
            let wait = limits
                .iter()
                .map(|l| l.requests.reserve(1.0).max(l.tokens.reserve(estimate)))
                .max()
                .unwrap_or_default();
            // The budgets every instance shares, reserved in parallel with the others.
            let shared = call.endpoint.budgets();
            let wait = match shared {
                Some(budgets) => wait.max(budgets.reserve(estimate).await),
                None => wait,
            };
            if wait > NOTE_WAIT {
                call.ctx.observer.note(CallNote::RateLimited {
                    provider: call.client.provider(),
                    wait_ms: wait.as_millis() as u64,
                });
            }
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            let outcome = inner.call(call).await;
            let refund = match &outcome {
                Ok(Outcome {
                    result: Ok((_, parsed)),
                    ..
                }) => {
                    let actual = (parsed.prompt_tokens + parsed.completion_tokens) as f64;
                    // An answer without usage keeps the estimate.
                    (actual > 0.0).then_some(estimate - actual)
                }
                _ => Some(estimate),
            };
            if let Some(delta) = refund {
                for limit in limits {
                    limit.tokens.adjust(delta);
                }
                if let Some(budgets) = shared {
                    budgets.adjust_tokens(delta);
                }
            }
            outcome
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Fixture, Notes, Script, answer, answer_with_usage};
    use super::*;
    use serde_json::json;
    use tower::ServiceExt;

    #[tokio::test]
    async fn waits_for_the_tightest_limit_and_notes_it() {
        // The run allows 600 requests a minute (a burst of 10), the operator any number.
        let fixture = Fixture::with(json!({"requests_per_minute": 600}));
        let notes = Notes::default();
        let service = RateLimitLayer.layer(Script::ok());
        let started = std::time::Instant::now();
        for _ in 0..12 {
            service
                .clone()
                .oneshot(fixture.call_noting(&notes))
                .await
                .expect("sent");
        }
        // The 11th and 12th wait 100 and 200 ms; only waits over 50 ms are noted.
        assert!(
            started.elapsed() >= Duration::from_millis(190),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(notes.rate_limited().len(), 2, "{:?}", notes.rate_limited());
    }

    #[tokio::test]
    async fn tokens_are_reconciled_with_the_answer() {
        // 6,000 tokens a minute: 100 a second, a burst of 100. Each call below is
        // estimated at the whole burst, so none waits.
        let reconciled = |outcome| async move {
            let fixture = Fixture::with(json!({"tokens_per_minute": 6000}));
            RateLimitLayer
                .layer(Script::new([outcome]))
                .oneshot(fixture.call_estimating(100.0))
                .await
                .expect("answered");
            // What the next call of 50 tokens would wait.
            fixture.client.own.tokens.reserve(50.0)
        };
        // An answer that used more than estimated is charged the difference.
        let wait = reconciled(answer_with_usage(100, 50)).await;
        assert!(wait > Duration::from_millis(900), "{wait:?}");
        // One that used fewer gets the rest back.
        assert_eq!(reconciled(answer_with_usage(20, 10)).await, Duration::ZERO);
        // A failed attempt gets its whole estimate back.
        assert_eq!(reconciled(answer(500, "")).await, Duration::ZERO);
        // An answer without usage keeps the estimate.
        let wait = reconciled(answer(200, "")).await;
        assert!(wait > Duration::from_millis(400), "{wait:?}");
    }

    #[tokio::test]
    async fn a_refused_attempt_gets_its_tokens_back() {
        let fixture = Fixture::with(json!({"tokens_per_minute": 6000}));
        let service = RateLimitLayer.layer(Script::new([]).then_refuse());
        assert!(
            service
                .oneshot(fixture.call_estimating(100.0))
                .await
                .is_err()
        );
        assert_eq!(fixture.client.own.tokens.reserve(100.0), Duration::ZERO);
    }
}
