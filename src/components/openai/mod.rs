//! `openai/chat`, `openai/judge` and `openai/pairwise`: a generator and LLM judges backed by any
//! OpenAI-compatible `/chat/completions` endpoint (OpenAI, Ollama, llama.cpp's server,
//! vLLM, ...).
//!
//! - [`client`]: one chat-completions call, with the response cache, per-endpoint rate
//!   limits, circuit breaker and concurrency limit ([`limits`]), retries and spans.
//! - [`template`]: prompts rendered from the case with MiniJinja.
//! - [`generator`], [`judge`], [`pairwise`]: the components.
//! - [`providers`]: the providers the operator declares (the only place keys come
//!   from) and [`Outbound`], what the server or CLI hands the registry.
//! - [`shared`]: endpoint state and the outbound cap shared by all runs.
//!
//! Both components share the endpoint and sampling params read by [`read_client`].

mod client;
mod generator;
mod judge;
mod limits;
mod pairwise;
mod providers;
mod shared;
mod template;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::{Params, Registry};
use client::{ClientConfig, Endpoint, Price, RunLimits};
pub use providers::{
    ApiKey, DEFAULT_MAX_OUTBOUND_REQUESTS, OperatorLimits, Outbound, ProviderSpec,
    implicit_providers, normalize_base_url,
};
use shared::Shared;

pub(super) fn register(registry: &mut Registry, outbound: Outbound) {
    let shared = Arc::new(Shared::new(outbound));
    let for_judge = shared.clone();
    let for_pairwise = shared.clone();
    registry.register_generator("openai/chat", "1", move |p| {
        Arc::new(generator::ChatGenerator::from_params(p, &shared))
    });
    // Version 2: the prompt shows input, expected output and output unless the rubric
    // places them itself.
    registry.register_judge("openai/judge", "2", move |p| {
        Arc::new(judge::LlmJudge::from_params(p, &for_judge))
    });
    registry.register_judge("openai/pairwise", "1", move |p| {
        Arc::new(pairwise::Pairwise::from_params(p, &for_pairwise))
    });
}

/// Request-body keys the component sets itself: `extra_body` may not override them.
const RESERVED_BODY_KEYS: [&str; 9] = [
    "model",
    "messages",
    "n",
    "seed",
    "stream",
    "temperature",
    "top_p",
    "max_tokens",
    "stop",
];

/// An optional number in `min..=max`.
fn opt_f64(p: &mut Params<'_>, key: &'static str, min: f64, max: f64) -> Option<f64> {
    p.value(key)?;
    Some(p.f64_in(key, min, min, max))
}

/// An optional integer in `min..=max`.
fn opt_u64(p: &mut Params<'_>, key: &'static str, min: u64, max: u64) -> Option<u64> {
    p.value(key)?;
    Some(p.u64_in(key, min, min, max))
}

fn millis(p: &mut Params<'_>, key: &'static str, default: u64, min: u64, max: u64) -> Duration {
    Duration::from_millis(p.u64_in(key, default, min, max))
}

/// An environment variable name as POSIX shells accept it.
fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Reads the endpoint, robustness and sampling params shared by both components.
/// `component` names the component in error messages.
fn read_client(p: &mut Params<'_>, component: &'static str, shared: &Arc<Shared>) -> ClientConfig {
    let (base_url, provider) = read_destination(p, shared);
    let model = p.required_string("model");
    if p.value("api_key").is_some() {
        p.error(
            "api_key",
            "secrets are not accepted in definitions (they are stored); the operator binds \
             keys to providers, and a run uses the key of the provider it calls",
        );
    }
    if let Some(name) = p.string("api_key_env") {
        if !is_env_name(&name) {
            p.error(
                "api_key_env",
                "must be the name of an environment variable (letters, digits, _), not the key itself",
            );
        } else if provider
            .as_ref()
            .is_none_or(|spec| spec.key_env.as_deref() != Some(name.as_str()))
        {
            p.error(
                "api_key_env",
                format!(
                    "`{name}` is not a key the operator bound to this base_url; keys are \
                     bound to providers and sent only to their base URL. Name a provider \
                     (`provider`) or its base_url instead. Declared providers: {}",
                    shared.outbound.listing()
                ),
            );
        }
    }

    let mut body = Map::new();
    if let Some(extra) = p.value("extra_body") {
        match extra.as_object() {
            Some(extra) => {
                for (key, value) in extra {
                    if RESERVED_BODY_KEYS.contains(&key.as_str()) {
                        p.error(
                            "extra_body",
                            format!("may not set `{key}` (use the param of that name, or none)"),
                        );
                    } else {
                        body.insert(key.clone(), value.clone());
                    }
                }
            }
            None => p.error("extra_body", "must be an object"),
        }
    }
    if let Some(t) = opt_f64(p, "temperature", 0.0, 2.0) {
        body.insert("temperature".into(), t.into());
    }
    if let Some(t) = opt_f64(p, "top_p", 0.0, 1.0) {
        body.insert("top_p".into(), t.into());
    }
    let max_tokens = opt_u64(p, "max_tokens", 1, 10_000_000);
    if let Some(m) = max_tokens {
        body.insert("max_tokens".into(), m.into());
    }
    if let Some(stop) = read_stop(p) {
        body.insert("stop".into(), stop);
    }

    let max_retries = p.u64_in("max_retries", 4, 0, 20) as u32;
    let initial_backoff = millis(p, "initial_backoff_ms", 500, 0, 600_000);
    let max_backoff = millis(p, "max_backoff_ms", 30_000, 0, 3_600_000);
    if max_backoff < initial_backoff {
        p.error("max_backoff_ms", "must be at least initial_backoff_ms");
    }
    let own = RunLimits {
        requests_per_minute: opt_f64(p, "requests_per_minute", 0.001, 1e9),
        tokens_per_minute: opt_f64(p, "tokens_per_minute", 1.0, 1e12),
        adaptive_concurrency: p.bool("adaptive_concurrency", false),
        max_concurrency: opt_u64(p, "max_concurrency", 1, 4096).map(|m| m as usize),
        breaker_failures: p.u64_in("breaker_failures", 10, 0, 1_000_000) as u32,
        breaker_cooldown: millis(p, "breaker_cooldown_ms", 30_000, 1, 86_400_000),
    };
    ClientConfig {
        component,
        base_url,
        model,
        provider,
        shared: shared.clone(),
        endpoint: Arc::default(),
        own: Arc::new(Endpoint::for_run(&own)),
        timeout: millis(p, "timeout_ms", 60_000, 1, 3_600_000),
        max_attempts: max_retries + 1,
        retry_budget: millis(p, "retry_budget_ms", 120_000, 0, 86_400_000),
        initial_backoff,
        max_backoff,
        max_identical_failures: p.u64_in("max_identical_failures", 3, 1, 100) as u32,
        price: read_price(p),
        body,
        completion_estimate: max_tokens.unwrap_or(256),
    }
}

/// The endpoint a run calls: a declared `provider` by name, or a `base_url` (which is
/// that of a declared provider, or a keyless endpoint of the run's choosing). Literal
/// addresses the egress policy refuses are reported here, at submit time.
fn read_destination(
    p: &mut Params<'_>,
    shared: &Arc<Shared>,
) -> (String, Option<Arc<providers::ProviderSpec>>) {
    let named = p.string("provider");
    let given = p.value("base_url").is_some() || named.is_none();
    let mut base_url = if given {
        read_base_url(p)
    } else {
        String::new()
    };
    let mut provider = None;
    match named {
        Some(name) => match shared.named(&name) {
            Some(spec) => {
                if given && normalize_base_url(&base_url).as_deref() != Some(&spec.base_url) {
                    p.error(
                        "base_url",
                        format!(
                            "differs from provider {name}'s base URL {}; give one or the other",
                            spec.base_url
                        ),
                    );
                }
                base_url = spec.base_url.clone();
                provider = Some(spec.clone());
            }
            None => p.error(
                "provider",
                format!(
                    "unknown provider `{name}`; declared providers: {}",
                    shared.outbound.listing()
                ),
            ),
        },
        None => {
            provider = normalize_base_url(&base_url).and_then(|url| shared.at(&url).cloned());
        }
    }
    if let Some(spec) = &provider {
        // Requests go to the declared spelling of the URL.
        base_url = spec.base_url.clone();
    }
    if let Ok(url) = reqwest::Url::parse(&base_url)
        && let Err(e) = shared.outbound.egress.check_url(&url, provider.is_some())
    {
        p.error(if given { "base_url" } else { "provider" }, e.to_string());
    }
    (base_url, provider)
}

fn read_base_url(p: &mut Params<'_>) -> String {
    let raw = p.required_string("base_url");
    if raw.is_empty() {
        return raw;
    }
    match reqwest::Url::parse(&raw) {
        Ok(url) if !matches!(url.scheme(), "http" | "https") => {
            p.error("base_url", "must be an http:// or https:// URL");
        }
        Ok(url) if url.query().is_some() || url.fragment().is_some() => {
            p.error("base_url", "must not have a query or fragment");
        }
        Ok(url) if !url.username().is_empty() || url.password().is_some() => {
            p.error(
                "base_url",
                "must not contain credentials (definitions are stored); the operator declares \
                 providers with their keys",
            );
        }
        Ok(_) => {}
        Err(e) => p.error(
            "base_url",
            format!("is not a valid URL ({e}); e.g. http://localhost:11434/v1"),
        ),
    }
    raw.trim_end_matches('/').to_owned()
}

/// `stop`: a string or a list of 1 to 4 strings.
fn read_stop(p: &mut Params<'_>) -> Option<Value> {
    let value = p.value("stop")?;
    let ok = match value {
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => {
            (1..=4).contains(&items.len())
                && items
                    .iter()
                    .all(|i| i.as_str().is_some_and(|s| !s.is_empty()))
        }
        _ => false,
    };
    if ok {
        Some(value.clone())
    } else {
        p.error(
            "stop",
            "must be a non-empty string or a list of 1 to 4 non-empty strings",
        );
        None
    }
}

/// Highest price per 1,000 tokens, in USD: far above any model's, low enough that cost
/// sums over millions of tokens stay finite.
const MAX_PRICE: f64 = 1e6;

/// `price`: `{"prompt_per_1k": x, "completion_per_1k": y}` in USD.
fn read_price(p: &mut Params<'_>) -> Option<Price> {
    let value = p.value("price")?;
    let Some(map) = value.as_object() else {
        p.error(
            "price",
            "must be an object {\"prompt_per_1k\": x, \"completion_per_1k\": y}",
        );
        return None;
    };
    let mut field = |name: &str| match map.get(name).map(Value::as_f64) {
        None => Some(0.0),
        Some(Some(x)) if (0.0..=MAX_PRICE).contains(&x) => Some(x),
        Some(_) => {
            p.error(
                &format!("price.{name}"),
                format!("must be a number from 0 to {MAX_PRICE} (USD per 1,000 tokens)"),
            );
            None
        }
    };
    let prompt = field("prompt_per_1k");
    let completion = field("completion_per_1k");
    for key in map.keys() {
        if key != "prompt_per_1k" && key != "completion_per_1k" {
            p.error(
                &format!("price.{key}"),
                "unknown field; expected prompt_per_1k, completion_per_1k",
            );
        }
    }
    Some(Price {
        prompt_per_1k: prompt?,
        completion_per_1k: completion?,
    })
}

/// Reads a template param, compiling it; problems are reported at `path`.
fn read_template(
    p: &mut Params<'_>,
    templates: &mut template::Templates,
    path: &str,
    source: &str,
    allowed: &[&str],
) -> usize {
    match templates.add(source, allowed) {
        Ok(index) => index,
        Err(e) => {
            p.error(path, format!("invalid template: {e}"));
            usize::MAX
        }
    }
}

/// Truncates text for messages, at a character boundary.
fn truncate(text: &str, max_chars: usize) -> String {
    let mut out: String = text.chars().take(max_chars).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::components::{ParamError, ResolveError};
    use serde_json::json;

    fn errors(name: &str, params: Value, judge: bool) -> Vec<ParamError> {
        let registry = Registry::builtin();
        let params = params.as_object().unwrap().clone();
        let result = if judge {
            registry.judge(name, &params).map(|_| ())
        } else {
            registry.generator(name, &params).map(|_| ())
        };
        match result {
            Ok(()) => Vec::new(),
            Err(ResolveError::Params(errors)) => errors,
            Err(other) => panic!("{other:?}"),
        }
    }

    fn paths(errors: &[ParamError]) -> Vec<&str> {
        errors.iter().map(|e| e.path.as_str()).collect()
    }

    #[test]
    fn valid_generator_params() {
        let e = errors(
            "openai/chat",
            json!({"base_url": "http://localhost:11434/v1/", "model": "llama3.2:1b",
                   "prompt": "{{ input.question }}", "temperature": 0.7, "stop": ["\n"],
                   "extra_body": {"response_format": {"type": "json_object"}},
                   "price": {"prompt_per_1k": 0.1}}),
            false,
        );
        assert!(e.is_empty(), "{e:?}");
    }

    fn declared() -> Registry {
        let provider = ProviderSpec::new("corp", "https://llm.corp.example/v1")
            .unwrap()
            .with_key("sk-corp");
        let provider = ProviderSpec {
            key_env: Some("CORP_KEY".into()),
            ..provider
        };
        Registry::builtin_with(Outbound {
            providers: vec![provider],
            ..Outbound::local()
        })
    }

    fn declared_errors(params: Value) -> Vec<ParamError> {
        let params = params.as_object().unwrap().clone();
        match declared().generator("openai/chat", &params) {
            Ok(_) => Vec::new(),
            Err(ResolveError::Params(errors)) => errors,
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn keys_are_bound_to_declared_providers() {
        // By name, by base URL (any spelling), with or without naming its variable.
        for ok in [
            json!({"provider": "corp", "model": "m", "prompt": "x"}),
            json!({"base_url": "HTTPS://llm.corp.example/v1/", "model": "m", "prompt": "x"}),
            json!({"provider": "corp", "api_key_env": "CORP_KEY", "model": "m", "prompt": "x"}),
        ] {
            assert!(declared_errors(ok.clone()).is_empty(), "{ok}");
        }
        // Any other variable, or the provider's variable with another host: 422 listing
        // the declared providers.
        for (bad, path) in [
            (
                json!({"base_url": "http://evil.example/v1", "api_key_env": "CORP_KEY"}),
                "api_key_env",
            ),
            (
                json!({"provider": "corp", "api_key_env": "DATABASE_URL"}),
                "api_key_env",
            ),
            (json!({"provider": "nope"}), "provider"),
            (
                json!({"provider": "corp", "base_url": "http://evil.example/v1"}),
                "base_url",
            ),
        ] {
            let mut params = bad.clone();
            params["model"] = json!("m");
            params["prompt"] = json!("x");
            let e = declared_errors(params);
            assert_eq!(paths(&e), [path], "{bad}: {e:?}");
            if path != "base_url" {
                assert!(
                    e[0].message
                        .contains("corp (https://llm.corp.example/v1, key CORP_KEY)"),
                    "{e:?}"
                );
            }
            assert!(!e[0].message.contains("sk-corp"));
        }
        // A literal address no policy allows is refused at submit time.
        let e = errors(
            "openai/chat",
            json!({"base_url": "http://169.254.169.254/v1", "model": "m", "prompt": "x"}),
            false,
        );
        assert_eq!(paths(&e), ["base_url"], "{e:?}");
        assert!(e[0].message.contains("link-local"), "{e:?}");
    }

    #[test]
    fn every_problem_is_reported() {
        let e = errors(
            "openai/chat",
            json!({"base_url": "ftp://x", "temperature": 3, "prompt": "{{ inpt }}",
                   "messages": [{"role": "user", "content": "x"}], "api_key": "sk-123",
                   "api_key_env": "sk-123", "extra_body": {"seed": 1}, "stop": 3,
                   "output": "yaml", "bogus": 1, "price": {"prompt_per_1k": -1}}),
            false,
        );
        let paths = paths(&e);
        for expected in [
            "base_url",
            "model",
            "temperature",
            "prompt",
            "api_key",
            "api_key_env",
            "extra_body",
            "stop",
            "output",
            "bogus",
            "price.prompt_per_1k",
        ] {
            assert!(paths.contains(&expected), "{expected} missing in {e:?}");
        }
        // The secret itself is never echoed.
        assert!(e.iter().all(|e| !e.message.contains("sk-123")), "{e:?}");
    }

    #[test]
    fn credentials_in_base_url_are_rejected() {
        let e = errors(
            "openai/chat",
            json!({"base_url": "https://user:hunter2@h/v1", "model": "m", "prompt": "x"}),
            false,
        );
        assert_eq!(paths(&e), ["base_url"], "{e:?}");
        assert!(!e[0].message.contains("hunter2"));
    }

    #[test]
    fn messages_are_validated() {
        let e = errors(
            "openai/chat",
            json!({"base_url": "http://h/v1", "model": "m",
                   "messages": [{"role": "wizard", "content": "{{ input }}"},
                                {"role": "user", "content": "{% if %}"},
                                {"role": "user"}]}),
            false,
        );
        assert_eq!(
            paths(&e),
            [
                "messages[0].role",
                "messages[1].content",
                "messages[2].content"
            ],
            "{e:?}"
        );
        let e = errors(
            "openai/chat",
            json!({"base_url": "http://h/v1", "model": "m"}),
            false,
        );
        assert_eq!(paths(&e), ["prompt"], "{e:?}");
    }

    #[test]
    fn judge_params() {
        let ok = errors(
            "openai/judge",
            json!({"base_url": "http://h/v1", "model": "m",
                   "rubric": "Is {{ output }} right for {{ input }}? Expected {{ expected_output }}.",
                   "scale": {"min": 0, "max": 10}, "samples": 3}),
            true,
        );
        assert!(ok.is_empty(), "{ok:?}");
        let e = errors(
            "openai/judge",
            json!({"base_url": "http://h/v1", "model": "m", "rubric": "{{ nope }}",
                   "scale": {"min": 5, "max": 1}, "pass_fail": true, "samples": 0}),
            true,
        );
        let paths = paths(&e);
        for expected in ["rubric", "scale", "pass_fail", "samples"] {
            assert!(paths.contains(&expected), "{expected} missing in {e:?}");
        }
    }

    #[test]
    fn truncates_at_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "hé…");
        assert_eq!(truncate("hi", 5), "hi");
    }
}
