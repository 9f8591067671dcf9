//! Providers the operator declares: a name, a base URL, the environment variable holding
//! its key, and the limits every run shares on it. A key is only ever sent to the base
//! URL it is declared with; runs name a provider (or its base URL), never a variable.
//!
//! Declared with `--provider` (repeatable) or `THEMIS_PROVIDERS` (entries separated by
//! `;`), each entry `name=openai,base_url=https://api.openai.com/v1,key_env=OPENAI_API_KEY`
//! plus optional `requests_per_minute`, `tokens_per_minute`, `max_concurrency`,
//! `breaker_failures`, `breaker_cooldown_ms`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::components::{AgentCaps, DeclarationError, is_declared_name};
use crate::egress::Egress;
use crate::observe::{Meter, NoMeter};

/// The default server-wide cap on provider requests in flight.
pub const DEFAULT_MAX_OUTBOUND_REQUESTS: usize = 256;

/// An API key held in memory: never printed.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(key.into().trim().to_owned())
    }

    pub(super) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([redacted])")
    }
}

/// Limits of one endpoint that every run shares; a run's own limits only add to them.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorLimits {
    pub requests_per_minute: Option<f64>,
    pub tokens_per_minute: Option<f64>,
    pub max_concurrency: Option<usize>,
    /// Consecutive failures that open the shared breaker (0: no shared breaker).
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
}

impl Default for OperatorLimits {
    fn default() -> Self {
        OperatorLimits {
            requests_per_minute: None,
            tokens_per_minute: None,
            max_concurrency: None,
            breaker_failures: 10,
            breaker_cooldown: Duration::from_secs(30),
        }
    }
}

/// One declared provider.
#[derive(Debug, Clone)]
pub struct ProviderSpec {
    pub name: String,
    /// Normalised (see [`normalize_base_url`]).
    pub base_url: String,
    /// The variable the key is read from at startup (shown in messages, never the key).
    pub key_env: Option<String>,
    pub key: Option<ApiKey>,
    pub limits: OperatorLimits,
}

/// A base URL as compared with declared ones: parsed (scheme and host lower-cased,
/// default port dropped), without a trailing slash. `None` if it is not a URL.
pub(super) fn normalize_base_url(raw: &str) -> Option<String> {
    let url = reqwest::Url::parse(raw.trim()).ok()?;
    Some(url.as_str().trim_end_matches('/').to_owned())
}

/// Longest breaker cooldown a declaration may set: a day.
const MAX_BREAKER_COOLDOWN_MS: f64 = 86_400_000.0;

fn invalid(message: String) -> DeclarationError {
    DeclarationError::Invalid(message)
}

impl ProviderSpec {
    /// A keyless provider with the default limits.
    pub fn new(name: &str, base_url: &str) -> Result<Self, DeclarationError> {
        if !is_declared_name(name) {
            return Err(invalid(format!(
                "provider name `{name}`: use letters, digits, `-`, `_`, `.`"
            )));
        }
        let url = reqwest::Url::parse(base_url.trim()).map_err(|e| {
            invalid(format!(
                "provider {name}: base_url `{base_url}` is not a URL ({e})"
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https")
            || !url.username().is_empty()
            || url.password().is_some()
            || url.query().is_some()
        {
            return Err(invalid(format!(
                "provider {name}: base_url must be an http(s) URL without credentials or query"
            )));
        }
        Ok(ProviderSpec {
            name: name.to_owned(),
            base_url: url.as_str().trim_end_matches('/').to_owned(),
            key_env: None,
            key: None,
            limits: OperatorLimits::default(),
        })
    }

    /// This provider with a key given directly (embedders and tests).
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(ApiKey::new(key));
        self
    }

    /// Parses `name=..,base_url=..[,key_env=..][,requests_per_minute=..]...` and reads
    /// the key from `key_env` (which must be set).
    pub fn parse(entry: &str) -> Result<Self, DeclarationError> {
        let mut fields = std::collections::BTreeMap::new();
        for pair in entry.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| invalid(format!("--provider: `{pair}` is not key=value")))?;
            fields.insert(key.trim(), value.trim());
        }
        let field = |key: &str| fields.get(key).copied();
        let name =
            field("name").ok_or_else(|| invalid("--provider: `name=` is required".to_owned()))?;
        let base_url = field("base_url")
            .ok_or_else(|| invalid(format!("--provider {name}: `base_url=` is required")))?;
        let mut spec = ProviderSpec::new(name, base_url)?;
        let number = |key: &str, min: f64| -> Result<Option<f64>, DeclarationError> {
            field(key)
                .map(|v| match v.parse::<f64>() {
                    Ok(x) if x.is_finite() && x >= min => Ok(x),
                    _ => Err(invalid(format!(
                        "--provider {name}: {key} must be a number of at least {min}"
                    ))),
                })
                .transpose()
        };
        spec.limits.requests_per_minute = number("requests_per_minute", 0.001)?;
        spec.limits.tokens_per_minute = number("tokens_per_minute", 1.0)?;
        spec.limits.max_concurrency = number("max_concurrency", 1.0)?.map(|x| x as usize);
        if let Some(n) = number("breaker_failures", 0.0)? {
            spec.limits.breaker_failures = n as u32;
        }
        if let Some(ms) = number("breaker_cooldown_ms", 1.0)? {
            if ms > MAX_BREAKER_COOLDOWN_MS {
                return Err(invalid(format!(
                    "--provider {name}: breaker_cooldown_ms must be at most {MAX_BREAKER_COOLDOWN_MS} (a day)"
                )));
            }
            spec.limits.breaker_cooldown = Duration::from_millis(ms as u64);
        }
        for key in fields.keys() {
            if !matches!(
                *key,
                "name"
                    | "base_url"
                    | "key_env"
                    | "requests_per_minute"
                    | "tokens_per_minute"
                    | "max_concurrency"
                    | "breaker_failures"
                    | "breaker_cooldown_ms"
            ) {
                return Err(invalid(format!("--provider {name}: unknown field `{key}`")));
            }
        }
        if let Some(var) = field("key_env") {
            let key = std::env::var(var)
                .ok()
                .filter(|k| !k.trim().is_empty())
                .ok_or_else(|| DeclarationError::MissingKey {
                    provider: name.to_owned(),
                    var: var.to_owned(),
                })?;
            spec.key_env = Some(var.to_owned());
            spec.key = Some(ApiKey::new(key));
        }
        Ok(spec)
    }

    /// How messages list it: `openai (https://api.openai.com/v1, key OPENAI_API_KEY)`.
    pub fn describe(&self) -> String {
        match &self.key_env {
            Some(var) => format!("{} ({}, key {var})", self.name, self.base_url),
            None if self.key.is_some() => format!("{} ({}, with a key)", self.name, self.base_url),
            None => format!("{} ({}, no key)", self.name, self.base_url),
        }
    }
}

/// The zero-configuration providers of `themis run` and a loopback-bound server:
/// `openai` (https://api.openai.com/v1) with `OPENAI_API_KEY` when that is set, and a
/// keyless `ollama` (http://localhost:11434/v1).
pub fn implicit_providers() -> Vec<ProviderSpec> {
    let mut providers = Vec::new();
    if let Ok(key) = std::env::var("OPENAI_API_KEY")
        && !key.trim().is_empty()
        && let Ok(mut openai) = ProviderSpec::new("openai", "https://api.openai.com/v1")
    {
        openai.key_env = Some("OPENAI_API_KEY".into());
        openai.key = Some(ApiKey::new(key));
        providers.push(openai);
    }
    if let Ok(ollama) = ProviderSpec::new("ollama", "http://localhost:11434/v1") {
        providers.push(ollama);
    }
    providers
}

/// Everything provider calls may use, built by the server or CLI and handed to the
/// registry: the declared providers, the egress policy with its HTTP clients, and the
/// server-wide cap on provider requests in flight, and where provider metrics go.
#[derive(Debug, Clone)]
pub struct Outbound {
    pub providers: Vec<ProviderSpec>,
    pub egress: Arc<Egress>,
    pub max_requests: usize,
    /// Requests, latency, retries, breaker state, tokens and cost, by endpoint.
    pub meter: Arc<dyn Meter>,
    /// The operator's caps on agent loops (`openai/agent`).
    pub agent_caps: AgentCaps,
    /// What calls cost: the operator's table over the bundled one.
    pub prices: Arc<super::PriceTable>,
}

impl Outbound {
    /// The development setup: implicit providers, the local egress policy.
    pub fn local() -> Self {
        Outbound {
            providers: implicit_providers(),
            egress: Arc::new(Egress::local()),
            max_requests: DEFAULT_MAX_OUTBOUND_REQUESTS,
            meter: NoMeter::shared(),
            agent_caps: AgentCaps::default(),
            prices: Arc::default(),
        }
    }

    /// Checks the table: names and base URLs unique, every provider the price table
    /// names declared.
    pub fn validate(&self) -> Result<(), DeclarationError> {
        self.prices.check_providers(&self.providers)?;
        for (i, a) in self.providers.iter().enumerate() {
            for b in &self.providers[..i] {
                if a.name == b.name {
                    return Err(DeclarationError::Duplicate(a.name.clone()));
                }
                if a.base_url == b.base_url {
                    return Err(DeclarationError::SameBaseUrl {
                        first: b.name.clone(),
                        second: a.name.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Names and base URLs of the declared providers, for messages.
    pub fn listing(&self) -> String {
        if self.providers.is_empty() {
            "none (the operator declares them with --provider or THEMIS_PROVIDERS)".to_owned()
        } else {
            self.providers
                .iter()
                .map(ProviderSpec::describe)
                .collect::<Vec<_>>()
                .join("; ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entries() {
        let p = ProviderSpec::parse(
            "name=vllm, base_url=http://Gpu:8000/v1/, requests_per_minute=60, max_concurrency=4, breaker_cooldown_ms=500",
        )
        .unwrap();
        assert_eq!(p.base_url, "http://gpu:8000/v1");
        assert_eq!(p.limits.requests_per_minute, Some(60.0));
        assert_eq!(p.limits.max_concurrency, Some(4));
        assert_eq!(p.limits.breaker_cooldown, Duration::from_millis(500));
        assert!(p.key.is_none());
        for bad in [
            "base_url=http://h",
            "name=x",
            "name=x,base_url=ftp://h",
            "name=x,base_url=http://u:p@h",
            "name=x,base_url=http://h,colour=red",
            "name=x,base_url=http://h,requests_per_minute=-1",
            "name=x,base_url=http://h,key_env=THEMIS_SURELY_UNSET_VARIABLE_42",
            "name=a b,base_url=http://h",
        ] {
            assert!(ProviderSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_are_never_printed() {
        let p = ProviderSpec::new("x", "http://h/v1")
            .unwrap()
            .with_key("sk-very-secret");
        assert!(!format!("{p:?}").contains("sk-very-secret"));
        assert!(!p.describe().contains("sk-very-secret"));
    }

    #[test]
    fn base_urls_are_normalised() {
        assert_eq!(
            normalize_base_url("HTTPS://API.openai.com:443/v1/").as_deref(),
            Some("https://api.openai.com/v1")
        );
    }
}
