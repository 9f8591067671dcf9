//! One chat-completions call: the response cache, then the provider's [`stack`] of
//! layers (per-endpoint rate limits, concurrency limit and circuit breaker, retries with
//! backoff, the outbound cap, metrics and a `provider_call` span per HTTP request).
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
//!
//! - [`endpoint`]: an endpoint's limiters and breaker, shared or a run's own.
//! - [`stack`]: the layers a call goes through, composed once per declared provider.
//! - [`http`]: one HTTP request and what came back.
//! - [`response`]: an answer judged (retry or not, what to quote) and parsed.

mod cluster;
mod endpoint;
mod http;
mod response;
mod stack;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tower::Service;

use super::Shared;
use super::prices::FoundPrice;
use super::providers::ProviderSpec;
use crate::components::{CallContext, ComponentError, Estimate};
use crate::model::Usage;
pub(super) use endpoint::{Endpoint, RunLimits};
use response::parse_response;
use stack::{Call, Sent};
pub(super) use stack::{OutboundCapLayer, ProviderService, RetryPolicy, compose};

/// Everything a component needs to call its endpoint.
#[derive(Clone)]
pub(super) struct ClientConfig {
    /// The component name, for messages.
    pub component: &'static str,
    /// Without a trailing slash; requests go to `{base_url}/chat/completions`.
    pub base_url: String,
    /// `{base_url}/chat/completions`, parsed once (an unparsable one fails each call).
    pub url: Result<reqwest::Url, String>,
    pub model: String,
    /// The declared provider at `base_url`: its key is sent, its errors quoted.
    pub provider: Option<Arc<ProviderSpec>>,
    pub shared: Arc<Shared>,
    /// The shared endpoint state, looked up on first use.
    pub endpoint: Arc<OnceLock<Arc<Endpoint>>>,
    /// This run's own limits (this component instance serves one run execution).
    pub own: Arc<Endpoint>,
    /// The provider's stack every call goes through.
    pub stack: ProviderService,
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// The price of this endpoint's model, and where it came from.
    pub price: Option<FoundPrice>,
    /// Sampling params and `extra_body`, sent with every request.
    pub body: Map<String, Value>,
    /// Completion tokens assumed per choice before the answer says (for `tokens_per_minute`).
    pub completion_estimate: u64,
}

/// A chat message as sent. The tool fields are left out unless set, so plain messages
/// (and the cache keys of requests made of them) are as they always were.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct Message {
    pub role: String,
    pub content: String,
    /// An assistant message's tool calls.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// A `tool` message: the call it answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    pub(super) fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Message {
            role: role.into(),
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

/// A tool call as the chat-completions API spells it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct ToolCall {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: FunctionCall,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct FunctionCall {
    pub name: String,
    /// JSON text, as the model wrote it.
    pub arguments: String,
}

/// One returned choice.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Choice {
    pub content: String,
    pub finish_reason: Option<String>,
    /// The tool calls the model asked for (empty for a plain answer).
    pub tool_calls: Vec<ToolCall>,
}

/// A successful call.
#[derive(Debug, Clone)]
pub(super) struct Completion {
    pub choices: Vec<Choice>,
    /// Requests actually sent (0 on a cache hit), the response's token counts and cost.
    pub usage: Usage,
}

impl Completion {
    /// The first choice's text ("" when there is none).
    pub(super) fn text(&self) -> &str {
        self.choices
            .first()
            .map(|c| c.content.as_str())
            .unwrap_or_default()
    }
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

/// A request body as sent, serialized from borrowed parts (no intermediate `Value`).
/// `params` never holds the keys set here (`extra_body` may not override them).
#[derive(Serialize)]
struct RequestBody<'a> {
    #[serde(flatten)]
    params: &'a Map<String, Value>,
    model: &'a str,
    messages: &'a [Message],
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<&'a [Value]>,
    seed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    n: Option<u32>,
}

/// The cache key of a request: SHA-256 (hex) of the canonical JSON of the base URL and
/// the full request body (model, messages, sampling params, seed, `n`, extra body).
pub(super) fn cache_key(base_url: &str, body: &Value) -> String {
    let identity = json!({"base_url": base_url, "request": body});
    let mut hasher = Sha256::new();
    hasher.update(b"themis/openai-chat/v1\n");
    hasher.update(crate::model::canonical_json(&identity).as_bytes());
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
    pub(super) fn provider(&self) -> String {
        format!("{} @ {}", self.model, self.base_url)
    }

    /// This endpoint's state shared by all runs (the operator's limits).
    pub(super) fn endpoint(&self) -> Arc<Endpoint> {
        self.endpoint
            .get_or_init(|| {
                self.shared
                    .endpoint(&self.base_url, &self.model, self.provider.as_deref())
            })
            .clone()
    }

    fn request_body<'a>(
        &'a self,
        messages: &'a [Message],
        tools: Option<&'a [Value]>,
        seed: u64,
        n: u32,
    ) -> RequestBody<'a> {
        RequestBody {
            params: &self.body,
            model: &self.model,
            messages,
            tools,
            seed: wire_seed(seed),
            n: (n > 1).then_some(n),
        }
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

    pub(super) fn usage(&self, requests: u64, parsed: &response::Parsed) -> Usage {
        let (prompt, cached, completion) = (
            parsed.prompt_tokens,
            parsed.cached_tokens.min(parsed.prompt_tokens),
            parsed.completion_tokens,
        );
        let cost = self.price.map_or(0.0, |found| {
            round_cost(found.price.cost(prompt, cached, completion, false))
        });
        Usage {
            requests,
            prompt_tokens: prompt,
            completion_tokens: completion,
            cached_prompt_tokens: cached,
            cost_usd: cost,
            price_source: self.price.map(|found| found.source),
        }
    }

    /// What `calls` requests of `messages` asking for `choices` each may cost, the
    /// prompt `extra_prompt` tokens longer than `messages` (an output not known yet).
    pub(super) fn estimate(
        &self,
        messages: &[Message],
        extra_prompt: u64,
        calls: u64,
        choices: u64,
    ) -> Estimate {
        let (counted, exact) = super::tokens::count_prompt(&self.model, messages);
        let prompt = counted + extra_prompt;
        let completion = self.completion_estimate * choices;
        let (low, high) = match self.price {
            Some(found) => {
                let low = found.price.cost(prompt, 0, 0, false);
                (low, low + found.price.cost(0, 0, completion, false))
            }
            None => (0.0, 0.0),
        };
        Estimate {
            calls,
            prompt_tokens: prompt * calls,
            completion_tokens: completion * calls,
            cost_low_usd: low * calls as f64,
            cost_high_usd: high * calls as f64,
            unpriced_calls: if self.price.is_none() { calls } else { 0 },
            approximate_calls: if exact { 0 } else { calls },
        }
    }

    /// Asks for `n` choices for `messages` with `seed`: from the cache when it has the
    /// same request, else from the endpoint (then cached). Fewer choices than `n` is an
    /// error with `fewer_choices` set (and nothing cached).
    pub(super) async fn complete(
        &self,
        ctx: CallContext<'_>,
        endpoint: &Endpoint,
        messages: &[Message],
        seed: u64,
        n: u32,
    ) -> Result<Completion, CallError> {
        self.complete_with_tools(ctx, endpoint, messages, None, seed, n)
            .await
    }

    /// [`ClientConfig::complete`] offering the model `tools` (chat-completions `tools`
    /// entries): the same cache and stack, the tools part of the request and its key.
    pub(super) async fn complete_with_tools(
        &self,
        ctx: CallContext<'_>,
        endpoint: &Endpoint,
        messages: &[Message],
        tools: Option<&[Value]>,
        seed: u64,
        n: u32,
    ) -> Result<Completion, CallError> {
        let body = self.request_body(messages, tools, seed, n);
        // Only a run with a response cache needs the body as a `Value` (for its key).
        let key = match ctx.cache {
            Some(_) => Some(cache_key(
                &self.base_url,
                &serde_json::to_value(&body).map_err(|e| self.fail(e))?,
            )),
            None => None,
        };
        if let Some(cache) = ctx.cache
            && let Some(key) = &key
            && let Some(cached) = cache.get(key).await
        {
            match parse_response(&cached) {
                Ok(parsed) if parsed.choices.len() >= n as usize => {
                    let usage = Usage {
                        // Nothing was sent and nothing paid.
                        requests: 0,
                        cost_usd: 0.0,
                        price_source: None,
                        ..self.usage(0, &parsed)
                    };
                    return Ok(Completion {
                        choices: parsed.choices,
                        usage,
                    });
                }
                _ => tracing::warn!(key, "ignoring an unusable cached provider response"),
            }
        }
        let bytes = serde_json::to_vec(&body).map_err(|e| self.fail(e))?;
        let call = Call {
            ctx,
            client: self,
            endpoint,
            body: bytes.into(),
            seed,
            n,
            tokens: estimate_tokens(messages, self.completion_estimate * u64::from(n)),
            attempt: 1,
        };
        let Sent {
            raw,
            parsed,
            requests,
        } = self.stack.clone().call(call).await?;
        let usage = self.usage(requests, &parsed);
        if parsed.choices.len() < n as usize {
            let mut error = self.fail(format_args!(
                "asked for {n} choices (`n`), got {}",
                parsed.choices.len()
            ));
            error.fewer_choices = true;
            error.usage = usage;
            return Err(error);
        }
        if let Some(cache) = ctx.cache
            && let Some(key) = &key
        {
            // Stored as received: the stack parsed it already (it is JSON). A turn that
            // calls tools is one step of a loop that may run long: written at once, so
            // a crash before the loop ends does not cost it again.
            if parsed.choices.iter().any(|c| !c.tool_calls.is_empty()) {
                cache.put_now(key, &raw).await;
            } else {
                cache.put(key, &raw).await;
            }
        }
        Ok(Completion {
            choices: parsed.choices,
            usage,
        })
    }
}

/// A rough token count before sending: a quarter of the message characters plus the
/// completion allowance.
fn estimate_tokens(messages: &[Message], completion: u64) -> f64 {
    let chars: usize = messages
        .iter()
        .map(|m| {
            m.content.chars().count()
                + m.tool_calls
                    .iter()
                    .map(|c| c.function.arguments.len() + c.function.name.len())
                    .sum::<usize>()
                + 16
        })
        .sum();
    (chars / 4 + 1) as f64 + completion as f64
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn request_body_is_the_params_plus_the_call() {
        let mut params = Map::new();
        params.insert("temperature".into(), json!(0.7));
        params.insert("response_format".into(), json!({"type": "json_object"}));
        let messages = [Message::new("user", "say \"4\"\n")];
        let body = |n| RequestBody {
            params: &params,
            model: "m",
            messages: &messages,
            tools: None,
            seed: wire_seed(u64::MAX),
            n,
        };
        let expected = json!({
            "temperature": 0.7, "response_format": {"type": "json_object"}, "model": "m",
            "messages": [{"role": "user", "content": "say \"4\"\n"}], "seed": 0x7FFF_FFFF
        });
        assert_eq!(serde_json::to_value(body(None)).unwrap(), expected);
        let sent: Value =
            serde_json::from_slice(&serde_json::to_vec(&body(None)).unwrap()).unwrap();
        assert_eq!(sent, expected);
        let mut with_n = expected.clone();
        with_n["n"] = json!(3);
        assert_eq!(serde_json::to_value(body(Some(3))).unwrap(), with_n);
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
}
