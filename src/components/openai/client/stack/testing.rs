//! What the layers' unit tests share: a run's client configuration, a scripted inner
//! service, and recorders for notes, spans and metrics.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tower::{Layer, Service};

use super::retry::{Retry, RetryLayer};
use super::{AttemptFuture, Call, EndpointMeter, Outcome, Refused};
use crate::components::openai::client::ClientConfig;
use crate::components::openai::client::endpoint::Endpoint;
use crate::components::openai::client::http::Attempt;
use crate::components::openai::limits::Open;
use crate::components::openai::params::read_client;
use crate::components::openai::providers::Outbound;
use crate::components::openai::shared::Shared;
use crate::components::{CallContext, CallNote, CallObserver, Params};
use crate::egress::Egress;
use crate::model::Usage;
use crate::observe::{
    AttributeValue, Attributes, BreakerState, Meter, ProviderOutcome, Span, SpanStatus,
    TracingProvider,
};

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A run's client (model `m`) and its endpoint's shared state, with a recording meter.
pub(super) struct Fixture {
    pub client: ClientConfig,
    pub endpoint: Arc<Endpoint>,
    meter: Arc<RecordingMeter>,
}

impl Fixture {
    pub(super) fn new(base_url: &str) -> Self {
        Fixture::with(json!({"base_url": base_url}))
    }

    /// `params` as a run gives them (`base_url` defaults to a closed loopback port).
    pub(super) fn with(params: Value) -> Self {
        let mut params = params.as_object().cloned().unwrap_or_default();
        params.insert("model".into(), json!("m"));
        params
            .entry("base_url")
            .or_insert_with(|| json!("http://127.0.0.1:9/v1"));
        let meter = Arc::new(RecordingMeter::default());
        let shared = Arc::new(Shared::new(Outbound {
            providers: Vec::new(),
            egress: Arc::new(Egress::local()),
            max_requests: 8,
            meter: meter.clone(),
            agent_caps: Default::default(),
            prices: Arc::default(),
        }));
        let client = read_client(&mut Params::new(&params), "openai/test", &shared);
        let endpoint = client.endpoint();
        Fixture {
            client,
            endpoint,
            meter,
        }
    }

    /// A first attempt with no context, estimated at one token.
    pub(super) fn call(&self) -> Call<'_> {
        Call {
            ctx: CallContext::detached(),
            client: &self.client,
            endpoint: &self.endpoint,
            body: Bytes::new(),
            seed: 1,
            n: 1,
            tokens: 1.0,
            attempt: 1,
        }
    }

    pub(super) fn call_estimating(&self, tokens: f64) -> Call<'_> {
        Call {
            tokens,
            ..self.call()
        }
    }

    pub(super) fn call_noting<'a>(&'a self, notes: &'a Notes) -> Call<'a> {
        Call {
            ctx: CallContext {
                observer: notes,
                ..CallContext::detached()
            },
            ..self.call()
        }
    }

    /// The fixture's meter under the label of undeclared endpoints.
    pub(super) fn meter(&self) -> EndpointMeter {
        EndpointMeter {
            meter: self.meter.clone(),
            label: crate::observe::UNDECLARED_ENDPOINT.into(),
        }
    }

    pub(super) fn recorded_metrics(&self) -> Vec<String> {
        lock(&self.meter.events).clone()
    }
}

const SUCCESS: &str = r#"{"choices": [{"message": {"content": "ok"}}]}"#;

/// An answer with `status` and `body` (a 2xx with an empty body: a usable completion).
pub(super) fn answer(status: u16, body: &str) -> Outcome {
    let body = if body.is_empty() && (200..300).contains(&status) {
        SUCCESS
    } else {
        body
    };
    judge(Attempt::Answered {
        status,
        body: body.to_owned(),
        retry_after: None,
    })
}

/// A completion reporting its token usage.
pub(super) fn answer_with_usage(prompt: u64, completion: u64) -> Outcome {
    let body = json!({
        "choices": [{"message": {"content": "ok"}}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion},
    });
    answer(200, &body.to_string())
}

/// An answer with a `Retry-After` of `millis`.
pub(super) fn answer_after(status: u16, millis: u64) -> Outcome {
    judge(Attempt::Answered {
        status,
        body: String::new(),
        retry_after: Some(Duration::from_millis(millis)),
    })
}

pub(super) fn no_answer() -> Outcome {
    judge(Attempt::Transport {
        message: "connection refused".into(),
        timed_out: false,
    })
}

pub(super) fn timed_out() -> Outcome {
    judge(Attempt::Transport {
        message: "request timed out".into(),
        timed_out: true,
    })
}

fn judge(attempt: Attempt) -> Outcome {
    attempt.classify(&|text: &str| text.to_owned(), false)
}

/// An inner service answering with scripted outcomes in order, then successes (or
/// refusals, [`Script::then_refuse`]); it records what it saw.
#[derive(Clone)]
pub(super) struct Script {
    outcomes: Arc<Mutex<VecDeque<Outcome>>>,
    refuse_when_done: bool,
    delay: Duration,
    log: Arc<ScriptLog>,
}

#[derive(Default)]
struct ScriptLog {
    attempts: Mutex<Vec<u32>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl Script {
    pub(super) fn new(outcomes: impl IntoIterator<Item = Outcome>) -> Self {
        Script {
            outcomes: Arc::new(Mutex::new(outcomes.into_iter().collect())),
            refuse_when_done: false,
            delay: Duration::ZERO,
            log: Arc::default(),
        }
    }

    /// Always a success.
    pub(super) fn ok() -> Self {
        Script::new([])
    }

    pub(super) fn then_refuse(self) -> Self {
        Script {
            refuse_when_done: true,
            ..self
        }
    }

    /// Each attempt takes `delay`.
    pub(super) fn slow(self, delay: Duration) -> Self {
        Script { delay, ..self }
    }

    /// This script under the retry layer.
    pub(super) fn retrying(&self) -> Retry<Script> {
        RetryLayer::new(
            Arc::new(AtomicU64::new(0)),
            EndpointMeter {
                meter: Arc::new(RecordingMeter::default()),
                label: "test".into(),
            },
        )
        .layer(self.clone())
    }

    /// Attempts that reached the script.
    pub(super) fn attempts(&self) -> usize {
        lock(&self.log.attempts).len()
    }

    /// The `attempt` number of each call that reached the script.
    pub(super) fn attempt_numbers(&self) -> Vec<u32> {
        lock(&self.log.attempts).clone()
    }

    pub(super) fn max_in_flight(&self) -> usize {
        self.log.max_in_flight.load(Ordering::SeqCst)
    }
}

/// Counts an attempt in flight until dropped.
struct InFlight<'a>(&'a ScriptLog);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<'a> Service<Call<'a>> for Script {
    type Response = Outcome;
    type Error = Refused;
    type Future = AttemptFuture<'a>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Refused>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Call<'a>) -> AttemptFuture<'a> {
        let this = self.clone();
        Box::pin(async move {
            let next = lock(&this.outcomes).pop_front();
            let outcome = match next {
                Some(outcome) => outcome,
                None if this.refuse_when_done => {
                    return Err(Refused::BreakerOpen(Open {
                        failures: 3,
                        retry_in: Duration::from_secs(1),
                        last_failure: "HTTP 500".into(),
                    }));
                }
                None => answer(200, ""),
            };
            lock(&this.log.attempts).push(call.attempt);
            let now = this.log.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            this.log.max_in_flight.fetch_max(now, Ordering::SeqCst);
            let _in_flight = InFlight(&this.log);
            if !this.delay.is_zero() {
                tokio::time::sleep(this.delay).await;
            }
            Ok(outcome)
        })
    }
}

/// Keeps the notes a call made.
#[derive(Default)]
pub(super) struct Notes(Mutex<Vec<CallNote>>);

impl CallObserver for Notes {
    fn note(&self, note: CallNote) {
        lock(&self.0).push(note);
    }
}

impl Notes {
    /// The attempt numbers of the retry notes.
    pub(super) fn retries(&self) -> Vec<u32> {
        lock(&self.0)
            .iter()
            .filter_map(|n| match n {
                CallNote::Retry { attempt, .. } => Some(*attempt),
                CallNote::RateLimited { .. } => None,
            })
            .collect()
    }

    /// The waits of the rate-limit notes, in ms.
    pub(super) fn rate_limited(&self) -> Vec<u64> {
        lock(&self.0)
            .iter()
            .filter_map(|n| match n {
                CallNote::RateLimited { wait_ms, .. } => Some(*wait_ms),
                CallNote::Retry { .. } => None,
            })
            .collect()
    }
}

/// Keeps ended spans as (name, `key=value` attributes, status).
#[derive(Default)]
pub(super) struct Tracer {
    next: AtomicU64,
    open: Mutex<HashMap<u64, (&'static str, Vec<String>)>>,
    ended: Mutex<Vec<(&'static str, String, String)>>,
}

fn text(value: &AttributeValue) -> String {
    match value {
        AttributeValue::String(s) => s.clone(),
        AttributeValue::Int(i) => i.to_string(),
        AttributeValue::Float(x) => x.to_string(),
        AttributeValue::Bool(b) => b.to_string(),
    }
}

impl Tracer {
    pub(super) fn ended(&self) -> Vec<(&'static str, String, String)> {
        lock(&self.ended).clone()
    }
}

impl TracingProvider for Tracer {
    fn start_span(&self, name: &'static str, attributes: Attributes, _: Option<&Span>) -> Span {
        let id = self.next.fetch_add(1, Ordering::SeqCst);
        let attributes = attributes
            .iter()
            .map(|(k, v)| format!("{k}={}", text(v)))
            .collect();
        lock(&self.open).insert(id, (name, attributes));
        Span::new(name, id)
    }

    fn set_attribute(&self, span: &Span, key: &str, value: AttributeValue) {
        if let Some(id) = span.data::<u64>()
            && let Some((_, attributes)) = lock(&self.open).get_mut(id)
        {
            attributes.push(format!("{key}={}", text(&value)));
        }
    }

    fn end_span(&self, span: Span, status: SpanStatus, error: Option<&str>) {
        let Some(id) = span.data::<u64>() else {
            return;
        };
        if let Some((name, attributes)) = lock(&self.open).remove(id) {
            let status = match error {
                Some(error) => format!("{}: {error}", status.as_str()),
                None => status.as_str().to_owned(),
            };
            lock(&self.ended).push((name, attributes.join(","), status));
        }
    }
}

/// Keeps provider metrics as lines.
#[derive(Debug, Default)]
struct RecordingMeter {
    events: Mutex<Vec<String>>,
}

impl Meter for RecordingMeter {
    fn provider_request(&self, endpoint: &str, outcome: ProviderOutcome, _: Duration) {
        lock(&self.events).push(format!("provider_request {endpoint} {}", outcome.as_str()));
    }

    fn provider_retry(&self, endpoint: &str) {
        lock(&self.events).push(format!("provider_retry {endpoint}"));
    }

    fn provider_usage(&self, endpoint: &str, usage: &Usage) {
        lock(&self.events).push(format!(
            "provider_usage {endpoint} {}+{} ${}",
            usage.prompt_tokens, usage.completion_tokens, usage.cost_usd
        ));
    }

    fn breaker_state(&self, endpoint: &str, state: BreakerState) {
        lock(&self.events).push(format!("breaker_state {endpoint} {state:?}"));
    }
}
