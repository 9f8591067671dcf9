//! One chat-completions call: response cache, per-endpoint rate limits, concurrency
//! limit and circuit breaker, retries with backoff, and a `provider_call` span per HTTP
//! request.
//!
//! Limits are layered: the endpoint state every run shares (keyed by base URL and model,
//! held by [`Shared`]) is configured once from the operator's limits of the declared
//! provider (defaults for undeclared endpoints); a run's own `requests_per_minute`,
//! `max_concurrency`, breaker settings, ... configure a second set of limiters that only
//! that run's calls pass through. A call waits for both, so a run can only tighten the
//! limits, never loosen them or change them for other runs. On top, every request holds
//! a permit of the server-wide cap on provider requests in flight.
//!
//! Requests go through the operator's egress clients (no redirects; destinations checked
//! after DNS resolution). A failed answer is reported by status, plus the
//! `error.message` of an OpenAI-shaped body (truncated, control characters removed) only
//! when the endpoint is a declared provider: bodies from elsewhere are never quoted.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::limits::{Admission, Breaker, ConcurrencyLimiter, Health, RateLimiter, Signal};
use super::providers::{OperatorLimits, ProviderSpec};
use super::{Shared, truncate};
use crate::components::builtin_generators::mix;
use crate::components::{CallContext, CallNote, ComponentError};
use crate::model::Usage;
use crate::telemetry::{AttributeValue, Attributes, Span, SpanStatus, TracingProvider};

/// Rate-limit waits longer than this are reported as notes.
const NOTE_WAIT: Duration = Duration::from_millis(50);
/// Error messages of declared providers are quoted up to this many characters.
const REASON_CHARS: usize = 200;
/// Kept (internally, for recognising a rejected `n`) from an error body.
const BODY_CHARS: usize = 500;
/// A run's own timeout shorter than this does not count a timed-out request against
/// the endpoint's shared breaker (a run cannot open it for everyone with `timeout_ms: 1`).
const SHARED_TIMEOUT_FLOOR: Duration = Duration::from_secs(10);
/// The largest response body read.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// USD per 1,000 tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Price {
    pub prompt_per_1k: f64,
    pub completion_per_1k: f64,
}

/// Everything a component needs to call its endpoint.
#[derive(Clone)]
pub(super) struct ClientConfig {
    /// The component name, for messages.
    pub component: &'static str,
    /// Without a trailing slash; requests go to `{base_url}/chat/completions`.
    pub base_url: String,
    pub model: String,
    /// The declared provider at `base_url`: its key is sent, its errors quoted.
    pub provider: Option<Arc<ProviderSpec>>,
    pub shared: Arc<Shared>,
    /// The shared endpoint state, looked up on first use.
    pub endpoint: Arc<OnceLock<Arc<Endpoint>>>,
    /// This run's own limits (this component instance serves one run execution).
    pub own: Arc<Endpoint>,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub retry_budget: Duration,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// The same failure (status and body) this many times in a row ends the retries.
    pub max_identical_failures: u32,
    pub price: Option<Price>,
    /// Sampling params and `extra_body`, sent with every request.
    pub body: Map<String, Value>,
    /// Completion tokens assumed per choice before the answer says (for `tokens_per_minute`).
    pub completion_estimate: u64,
}

/// A chat message as sent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct Message {
    pub role: String,
    pub content: String,
}

/// One returned choice.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Choice {
    pub content: String,
    pub finish_reason: Option<String>,
}

/// A successful call.
#[derive(Debug, Clone)]
pub(super) struct Completion {
    pub choices: Vec<Choice>,
    /// Requests actually sent (0 on a cache hit), the response's token counts and cost.
    pub usage: Usage,
}

/// Why a call failed; `usage` counts what it spent anyway.
#[derive(Debug, Clone)]
pub(super) struct CallError {
    pub message: String,
    /// The HTTP status of the final answer, if there was one.
    pub status: Option<u16>,
    /// The final answer's body (truncated, secrets redacted).
    pub body: String,
    /// The answer had fewer choices than asked for (`n` ignored).
    pub fewer_choices: bool,
    pub usage: Usage,
}

impl From<CallError> for ComponentError {
    fn from(error: CallError) -> Self {
        ComponentError::new(error.message)
    }
}

/// A run's own limits (its params); they only add to the operator's.
#[derive(Debug, Clone)]
pub(super) struct RunLimits {
    pub requests_per_minute: Option<f64>,
    pub tokens_per_minute: Option<f64>,
    pub adaptive_concurrency: bool,
    pub max_concurrency: Option<usize>,
    /// 0 disables the run's breaker.
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
}

/// Rate limits, breaker and concurrency of an endpoint: either shared by all runs
/// ([`Endpoint::operator`]) or one run's own ([`Endpoint::for_run`]). Configured once.
#[derive(Default)]
pub(super) struct Endpoint {
    requests: RateLimiter,
    tokens: RateLimiter,
    breaker: Breaker,
    concurrency: ConcurrencyLimiter,
    /// The endpoint rejected or ignored `n`: samples are asked for one by one.
    n_unsupported: AtomicBool,
}

impl Endpoint {
    pub fn operator(limits: &OperatorLimits) -> Self {
        let endpoint = Endpoint::default();
        endpoint.requests.configure(limits.requests_per_minute);
        endpoint.tokens.configure(limits.tokens_per_minute);
        endpoint
            .breaker
            .configure(limits.breaker_failures, limits.breaker_cooldown);
        endpoint
            .concurrency
            .configure(false, limits.max_concurrency);
        endpoint
    }

    pub fn for_run(limits: &RunLimits) -> Self {
        let endpoint = Endpoint::default();
        endpoint.requests.configure(limits.requests_per_minute);
        endpoint.tokens.configure(limits.tokens_per_minute);
        endpoint
            .breaker
            .configure(limits.breaker_failures, limits.breaker_cooldown);
        endpoint
            .concurrency
            .configure(limits.adaptive_concurrency, limits.max_concurrency);
        endpoint
    }

    pub fn supports_n(&self) -> bool {
        !self.n_unsupported.load(Ordering::Relaxed)
    }

    pub fn mark_n_unsupported(&self) {
        if !self.n_unsupported.swap(true, Ordering::Relaxed) {
            tracing::info!("endpoint does not support `n`; asking for samples one by one");
        }
    }
}

/// Source of jitter: distinct per call, no shared RNG state beyond a counter.
static JITTER: AtomicU64 = AtomicU64::new(0);

/// The cache key of a request: SHA-256 (hex) of the canonical JSON of the base URL and
/// the full request body (model, messages, sampling params, seed, `n`, extra body).
pub(super) fn cache_key(base_url: &str, body: &Value) -> String {
    let identity = json!({"base_url": base_url, "request": body});
    let mut hasher = Sha256::new();
    hasher.update(b"themis/openai-chat/v1\n");
    hasher.update(crate::engine::canonical_json(&identity).as_bytes());
    hex::encode(hasher.finalize())
}

/// The seed as sent: servers disagree on its width (llama.cpp takes 32 bits, OpenAI a
/// signed 64-bit integer), so the candidate seed is reduced to 31 bits.
pub(super) fn wire_seed(seed: u64) -> u64 {
    seed & 0x7FFF_FFFF
}

/// Rounds a dollar amount to whole nano-dollars, so sums of costs do not depend on the
/// order they are added in.
fn round_cost(usd: f64) -> f64 {
    (usd * 1e9).round() / 1e9
}

impl ClientConfig {
    /// `model @ base_url`: how notes and messages name the endpoint.
    pub fn provider(&self) -> String {
        format!("{} @ {}", self.model, self.base_url)
    }

    /// This endpoint's state shared by all runs (the operator's limits).
    pub fn endpoint(&self) -> Arc<Endpoint> {
        self.endpoint
            .get_or_init(|| {
                self.shared
                    .endpoint(&self.base_url, &self.model, self.provider.as_deref())
            })
            .clone()
    }

    /// The request body for `messages`, with the wire seed and `n` (sent when above 1).
    pub fn request_body(&self, messages: &[Message], seed: u64, n: u32) -> Value {
        let mut body = self.body.clone();
        body.insert("model".into(), self.model.clone().into());
        body.insert("messages".into(), json!(messages));
        body.insert("seed".into(), wire_seed(seed).into());
        if n > 1 {
            body.insert("n".into(), n.into());
        }
        Value::Object(body)
    }

    fn fail(&self, message: impl std::fmt::Display) -> CallError {
        CallError {
            message: format!("{} {}: {message}", self.component, self.provider()),
            status: None,
            body: String::new(),
            fewer_choices: false,
            usage: Usage::default(),
        }
    }

    fn usage(&self, requests: u64, prompt_tokens: u64, completion_tokens: u64) -> Usage {
        let cost = self.price.map_or(0.0, |price| {
            round_cost(
                prompt_tokens as f64 / 1000.0 * price.prompt_per_1k
                    + completion_tokens as f64 / 1000.0 * price.completion_per_1k,
            )
        });
        Usage {
            requests,
            prompt_tokens,
            completion_tokens,
            cost_usd: cost,
        }
    }

    /// The key the operator bound to this endpoint's provider, if any.
    fn api_key(&self) -> Option<&str> {
        self.provider
            .as_ref()
            .and_then(|p| p.key.as_ref())
            .map(|k| k.expose())
            .filter(|k| !k.is_empty())
    }

    /// Asks for `n` choices for `messages` with `seed`: from the cache when it has the
    /// same request, else from the endpoint (then cached). Fewer choices than `n` is an
    /// error with `fewer_choices` set (and nothing cached).
    pub async fn complete(
        &self,
        ctx: CallContext<'_>,
        endpoint: &Endpoint,
        messages: &[Message],
        seed: u64,
        n: u32,
    ) -> Result<Completion, CallError> {
        let body = self.request_body(messages, seed, n);
        let key = cache_key(&self.base_url, &body);
        if let Some(cache) = ctx.cache
            && let Some(cached) = cache.get(&key).await
        {
            match parse_response(&cached) {
                Ok(parsed) if parsed.choices.len() >= n as usize => {
                    let usage = Usage {
                        // Nothing was sent and nothing paid.
                        requests: 0,
                        cost_usd: 0.0,
                        ..self.usage(0, parsed.prompt_tokens, parsed.completion_tokens)
                    };
                    return Ok(Completion {
                        choices: parsed.choices,
                        usage,
                    });
                }
                _ => tracing::warn!(key, "ignoring an unusable cached provider response"),
            }
        }
        let (raw, parsed, requests) = self
            .send(ctx, endpoint, &body, self.api_key(), seed, n)
            .await?;
        let usage = self.usage(requests, parsed.prompt_tokens, parsed.completion_tokens);
        if parsed.choices.len() < n as usize {
            let mut error = self.fail(format_args!(
                "asked for {n} choices (`n`), got {}",
                parsed.choices.len()
            ));
            error.fewer_choices = true;
            error.usage = usage;
            return Err(error);
        }
        if let Some(cache) = ctx.cache {
            cache.put(&key, &raw).await;
        }
        Ok(Completion {
            choices: parsed.choices,
            usage,
        })
    }

    /// Sends the request with retries. Returns the raw response, its parsed form and how
    /// many HTTP requests were sent.
    async fn send(
        &self,
        ctx: CallContext<'_>,
        endpoint: &Endpoint,
        body: &Value,
        api_key: Option<&str>,
        seed: u64,
        n: u32,
    ) -> Result<(Value, Parsed, u64), CallError> {
        let declared = self.provider.is_some();
        let client = self
            .shared
            .outbound
            .egress
            .client(declared)
            .map_err(|e| self.fail(e))?;
        let url = format!("{}/chat/completions", self.base_url);
        // Literal IP hosts are not resolved, so the resolver cannot check them.
        let parsed_url = reqwest::Url::parse(&url).map_err(|e| self.fail(e))?;
        self.shared
            .outbound
            .egress
            .check_url(&parsed_url, declared)
            .map_err(|e| self.fail(e))?;
        let own = &*self.own;
        let provider = self.provider();
        let started = Instant::now();
        let estimate = estimate_tokens(body, self.completion_estimate * u64::from(n));
        let mut requests = 0u64;
        let mut repeated: Option<(String, u32)> = None;
        let redact = |text: &str| redact(text, api_key);

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
                    provider: provider.clone(),
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
                    ctx.tracer.start_span(
                        "provider_call",
                        self.span_attributes(attempt, seed, n),
                        Some(parent),
                    )
                }),
            };
            requests += 1;
            let outcome = {
                // The server-wide cap; closed never (the semaphore lives as long as we do).
                let _slot = self.shared.in_flight.acquire().await.ok();
                self.attempt(client, &url, body, api_key).await
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
            tracing::debug!(provider, attempt, delay_ms = delay.as_millis() as u64, reason = %outcome.reason, "retrying provider call");
            ctx.observer.note(CallNote::Retry {
                provider: provider.clone(),
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
        let random = mix(JITTER.fetch_add(1, Ordering::Relaxed), nanos);
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

    /// One HTTP request.
    async fn attempt(
        &self,
        client: &reqwest::Client,
        url: &str,
        body: &Value,
        api_key: Option<&str>,
    ) -> Attempt {
        let mut request = client.post(url).timeout(self.timeout).json(body);
        if let Some(key) = api_key {
            request = request.bearer_auth(key);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => return self.transport(&e),
        };
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers());
        match read_body(response).await {
            Ok(text) => Attempt::Answered {
                status,
                body: text,
                retry_after,
            },
            Err(Unread::TooLarge) => Attempt::Answered {
                status,
                body: String::new(),
                retry_after,
            },
            Err(Unread::Transport(e)) => self.transport(&e),
        }
    }

    fn transport(&self, error: &reqwest::Error) -> Attempt {
        if error.is_timeout() {
            Attempt::Transport {
                message: format!(
                    "request timed out after {} ms (timeout_ms)",
                    self.timeout.as_millis()
                ),
                timed_out: true,
            }
        } else {
            Attempt::Transport {
                message: error_chain(error),
                timed_out: false,
            }
        }
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

/// Records a breaker admission's outcome, or abandons it when the call is dropped
/// half-way (so a cancelled probe never leaves the breaker stuck half-open).
struct BreakerGuard<'a> {
    breaker: &'a Breaker,
    admission: Admission,
    recorded: bool,
}

impl<'a> BreakerGuard<'a> {
    fn new(breaker: &'a Breaker, admission: Admission) -> Self {
        BreakerGuard {
            breaker,
            admission,
            recorded: false,
        }
    }

    fn record(mut self, health: Health, failure: impl FnOnce() -> String) {
        self.recorded = true;
        self.breaker.record(self.admission, health, failure);
    }
}

impl Drop for BreakerGuard<'_> {
    fn drop(&mut self) {
        if !self.recorded {
            self.breaker.abandon(self.admission);
        }
    }
}

/// What one HTTP request came back with.
enum Attempt {
    Answered {
        status: u16,
        body: String,
        retry_after: Option<Duration>,
    },
    /// No answer: connection error or timeout.
    Transport { message: String, timed_out: bool },
}

/// An attempt judged: its result and what it tells the breaker and the limiter.
struct Outcome {
    result: Result<(Value, Parsed), Failure>,
    /// A one-line description for notes, spans and messages (secrets redacted).
    reason: String,
    /// `reason` without any quoted provider message.
    summary: String,
    health: Health,
    signal: Signal,
}

struct Failure {
    retryable: bool,
    status: Option<u16>,
    body: String,
    retry_after: Option<Duration>,
    /// Identifies repeatable failures (status and body); `None` for 429 and transport
    /// errors, which are expected to repeat while the endpoint recovers.
    signature: Option<String>,
}

impl Attempt {
    /// Judges an attempt. `declared`: the endpoint is a declared provider, whose error
    /// messages may be quoted (sanitised); nothing else's body ever is.
    fn classify(self, redact: &dyn Fn(&str) -> String, declared: bool) -> Outcome {
        let (status, body, retry_after) = match self {
            Attempt::Transport { message, .. } => {
                let reason = redact(&message);
                return Outcome {
                    summary: reason.clone(),
                    result: Err(Failure {
                        retryable: true,
                        status: None,
                        body: String::new(),
                        retry_after: None,
                        signature: None,
                    }),
                    reason,
                    health: Health::Failed,
                    signal: Signal::Neutral,
                };
            }
            Attempt::Answered {
                status,
                body,
                retry_after,
            } => (status, body, retry_after),
        };
        // Kept for recognising a rejected `n`, never shown.
        let kept = truncate(&redact(&body), BODY_CHARS);
        let quoted = if declared {
            provider_message(&body).map(|m| sanitize(&redact(&m), REASON_CHARS))
        } else {
            None
        };
        if (200..300).contains(&status) {
            let parsed = serde_json::from_str::<Value>(&body)
                .map_err(|_| "is not JSON".to_owned())
                .and_then(|raw| parse_response(&raw).map(|parsed| (raw, parsed)));
            return match parsed {
                Ok(ok) => Outcome {
                    result: Ok(ok),
                    reason: format!("HTTP {status}"),
                    summary: format!("HTTP {status}"),
                    health: Health::Alive,
                    signal: Signal::Success,
                },
                Err(problem) => Outcome {
                    summary: format!("HTTP {status} but the response {problem}"),
                    reason: match &quoted {
                        Some(message) => {
                            format!("HTTP {status} but the response {problem}: {message}")
                        }
                        None => format!("HTTP {status} but the response {problem}"),
                    },
                    result: Err(Failure {
                        retryable: false,
                        status: Some(status),
                        body: kept,
                        retry_after: None,
                        signature: None,
                    }),
                    health: Health::Failed,
                    signal: Signal::Neutral,
                },
            };
        }
        let retryable = matches!(status, 408 | 409 | 429) || status >= 500;
        let health = if status == 408 || status >= 500 {
            Health::Failed
        } else {
            Health::Alive
        };
        let summary = format!(
            "HTTP {status}{}",
            reqwest::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .map(|r| format!(" {r}"))
                .unwrap_or_default(),
        );
        let reason = match quoted {
            Some(message) => format!("{summary}: {message}"),
            None => summary.clone(),
        };
        Outcome {
            reason,
            summary,
            result: Err(Failure {
                retryable,
                status: Some(status),
                signature: (status != 429).then(|| format!("{status}\n{body}")),
                body: kept,
                retry_after,
            }),
            health,
            signal: if status == 429 {
                Signal::Overloaded
            } else {
                Signal::Neutral
            },
        }
    }
}

/// The message of an OpenAI-shaped error body: `{"error": {"message": ...}}` or
/// `{"error": "..."}`.
fn provider_message(body: &str) -> Option<String> {
    let value: Value = serde_json::from_str(body).ok()?;
    let error = value.get("error")?;
    error
        .get("message")
        .and_then(Value::as_str)
        .or_else(|| error.as_str())
        .map(str::to_owned)
}

/// At most `max_chars` characters, control characters (newlines, escapes) replaced by
/// spaces, so a quoted message cannot forge log lines or terminal output.
fn sanitize(text: &str, max_chars: usize) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    truncate(cleaned.trim(), max_chars)
}

/// The parts of a chat-completions response the components use.
#[derive(Debug, Clone)]
pub(super) struct Parsed {
    pub choices: Vec<Choice>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// Reads `choices[].message.content` (or a legacy `choices[].text`), ordered by `index`,
/// and `usage`. Anything else is a description of what is wrong.
pub(super) fn parse_response(raw: &Value) -> Result<Parsed, String> {
    if raw.get("error").is_some_and(|e| !e.is_null()) {
        return Err("is an error".to_owned());
    }
    let choices = raw
        .get("choices")
        .and_then(Value::as_array)
        .ok_or("has no `choices` array")?;
    let mut indexed = Vec::with_capacity(choices.len());
    for (position, choice) in choices.iter().enumerate() {
        let content = choice
            .get("message")
            .and_then(|m| m.get("content"))
            .or_else(|| choice.get("text"))
            .and_then(Value::as_str)
            .ok_or_else(|| format!("has no text content in choice {position}"))?;
        let index = choice
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(position as u64);
        indexed.push((
            index,
            Choice {
                content: content.to_owned(),
                finish_reason: choice
                    .get("finish_reason")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            },
        ));
    }
    indexed.sort_by_key(|(index, _)| *index);
    let tokens = |name: &str| {
        raw.get("usage")
            .and_then(|u| u.get(name))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    Ok(Parsed {
        choices: indexed.into_iter().map(|(_, choice)| choice).collect(),
        prompt_tokens: tokens("prompt_tokens"),
        completion_tokens: tokens("completion_tokens"),
    })
}

/// A rough token count before sending: a quarter of the message characters plus the
/// completion allowance.
fn estimate_tokens(body: &Value, completion: u64) -> f64 {
    let chars: usize = body
        .get("messages")
        .and_then(Value::as_array)
        .map(|messages| {
            messages
                .iter()
                .filter_map(|m| m.get("content").and_then(Value::as_str))
                .map(|c| c.chars().count() + 16)
                .sum()
        })
        .unwrap_or(0);
    (chars / 4 + 1) as f64 + completion as f64
}

/// `Retry-After` as seconds or an HTTP date (or OpenAI's `retry-after-ms`).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let seconds = |text: &str, scale: f64| {
        text.parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_secs_f64((s / scale).min(86_400.0)))
    };
    if let Some(ms) = header("retry-after-ms").and_then(|v| seconds(v, 1000.0)) {
        return Some(ms);
    }
    let value = header("retry-after")?;
    seconds(value, 1.0).or_else(|| {
        let at = httpdate::parse_http_date(value).ok()?;
        Some(
            at.duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO),
        )
    })
}

enum Unread {
    TooLarge,
    Transport(reqwest::Error),
}

/// The body as text (lossy UTF-8), refusing more than [`MAX_BODY_BYTES`].
async fn read_body(mut response: reqwest::Response) -> Result<String, Unread> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(Unread::Transport)? {
        if bytes.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(Unread::TooLarge);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// An error with its sources ("error sending request: connection refused").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// Removes the API key from text that may quote it (some providers echo it back).
fn redact(text: &str, key: Option<&str>) -> String {
    match key {
        Some(key) if key.len() >= 4 && text.contains(key) => text.replace(key, "[redacted]"),
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    #[test]
    fn retry_after_forms() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert("retry-after", HeaderValue::from_static("0.25"));
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(250)));
        let later = SystemTime::now() + Duration::from_secs(30);
        headers.insert(
            "retry-after",
            HeaderValue::from_str(&httpdate::fmt_http_date(later)).unwrap(),
        );
        let d = retry_after(&headers).unwrap();
        assert!(
            d > Duration::from_secs(28) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        headers.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        headers.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
        headers.insert("retry-after-ms", HeaderValue::from_static("1500"));
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(1500)));
    }

    #[test]
    fn parses_choices_in_index_order() {
        let raw = json!({
            "choices": [
                {"index": 1, "message": {"role": "assistant", "content": "b"}, "finish_reason": "length"},
                {"index": 0, "message": {"role": "assistant", "content": "a"}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3}
        });
        let parsed = parse_response(&raw).unwrap();
        assert_eq!(parsed.choices[0].content, "a");
        assert_eq!(parsed.choices[1].finish_reason.as_deref(), Some("length"));
        assert_eq!((parsed.prompt_tokens, parsed.completion_tokens), (7, 3));
        assert!(parse_response(&json!({"choices": [{"message": {"content": null}}]})).is_err());
        assert!(parse_response(&json!({"error": {"message": "boom"}})).is_err());
        assert!(parse_response(&json!([])).is_err());
    }

    #[test]
    fn cache_key_covers_the_request_not_key_order() {
        let a = json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "seed": 1, "temperature": 0.5});
        let b: Value = serde_json::from_str(
            r#"{"temperature": 0.50, "seed": 1, "messages": [{"content": "x", "role": "user"}], "model": "m"}"#,
        )
        .unwrap();
        assert_eq!(cache_key("http://h/v1", &a), cache_key("http://h/v1", &b));
        assert_ne!(cache_key("http://h/v1", &a), cache_key("http://g/v1", &a));
        let mut c = a.clone();
        c["seed"] = json!(2);
        assert_ne!(cache_key("http://h/v1", &a), cache_key("http://h/v1", &c));
        assert_eq!(cache_key("u", &a).len(), 64);
    }

    #[test]
    fn costs_are_rounded_to_nano_dollars_so_sums_are_order_free() {
        let a = round_cost(0.1);
        let b = round_cost(0.2);
        let c = round_cost(0.3);
        let mut x = Usage::default();
        for u in [a, b, c] {
            x.add(&Usage {
                cost_usd: u,
                ..Usage::default()
            });
        }
        let mut y = Usage::default();
        for u in [c, a, b] {
            y.add(&Usage {
                cost_usd: u,
                ..Usage::default()
            });
        }
        assert_eq!(x.cost_usd.to_bits(), y.cost_usd.to_bits());
    }

    #[test]
    fn redacts_keys() {
        assert_eq!(
            redact("bad key sk-secret-1", Some("sk-secret-1")),
            "bad key [redacted]"
        );
        assert_eq!(redact("fine", None), "fine");
    }
}
