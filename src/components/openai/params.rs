//! The params every `openai/...` component reads: the endpoint (a declared provider or
//! a base URL), robustness (retries, backoff, the run's own limits, breaker), sampling
//! params and `extra_body`, price, and templates.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::client::{ClientConfig, Endpoint, RetryPolicy, RunLimits};
use super::prices::{FoundPrice, ModelPrice};
use super::providers::{ProviderSpec, normalize_base_url};
use super::shared::Shared;
use super::template::Templates;
use crate::components::Params;
use crate::model::PriceSource;

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
pub(super) fn read_client(
    p: &mut Params<'_>,
    component: &'static str,
    shared: &Arc<Shared>,
) -> ClientConfig {
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
    let url =
        reqwest::Url::parse(&format!("{base_url}/chat/completions")).map_err(|e| e.to_string());
    let stack = shared.stack(provider.as_deref());
    // The run's own price, else the operator's (or the bundled) price of the model.
    let price = read_price(p).or_else(|| {
        shared.outbound.prices.lookup(
            provider.as_deref(),
            &normalize_base_url(&base_url).unwrap_or_else(|| base_url.clone()),
            &model,
        )
    });
    ClientConfig {
        component,
        url,
        base_url,
        model,
        provider,
        shared: shared.clone(),
        endpoint: Arc::default(),
        own: Arc::new(Endpoint::for_run(&own)),
        stack,
        timeout: millis(p, "timeout_ms", 60_000, 1, 3_600_000),
        retry: RetryPolicy {
            max_attempts: max_retries + 1,
            budget: millis(p, "retry_budget_ms", 120_000, 0, 86_400_000),
            initial_backoff,
            max_backoff,
            max_identical_failures: p.u64_in("max_identical_failures", 3, 1, 100) as u32,
        },
        price,
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
) -> (String, Option<Arc<ProviderSpec>>) {
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
fn read_price(p: &mut Params<'_>) -> Option<FoundPrice> {
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
    Some(FoundPrice {
        price: ModelPrice {
            input_per_1m: prompt? * 1000.0,
            cached_input_per_1m: None,
            output_per_1m: completion? * 1000.0,
            batch_discount: 0.0,
        },
        source: PriceSource::Run,
    })
}

/// Reads a template param, compiling it; problems are reported at `path`.
pub(super) fn read_template(
    p: &mut Params<'_>,
    templates: &mut Templates,
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
