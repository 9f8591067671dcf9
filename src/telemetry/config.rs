//! The runtime-only instrumentation a request asks for (`tracing`, `subscribers`), its
//! validation with JSON paths, and how a run's tracing config meets the server default.

use std::collections::BTreeMap;

use reqwest::Url;
use reqwest::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::webhook::{EVENT_TYPES, SECRET_ENV_PREFIX};
use crate::engine::FieldError;

/// Most webhook subscribers one run may have.
pub const MAX_SUBSCRIBERS: usize = 16;
/// Most `tracing.headers` entries.
pub const MAX_TRACING_HEADERS: usize = 32;
/// Most entries in a subscriber's `events` list.
pub const MAX_SUBSCRIBER_EVENTS: usize = 64;
/// Unknown fields reported one by one per object; more are counted in one entry.
const MAX_UNKNOWN_FIELDS: usize = 20;
/// The service name spans carry unless configured.
pub const DEFAULT_SERVICE_NAME: &str = "themis";
/// Where an OTLP/HTTP collector listens unless configured (the OTLP default).
pub const DEFAULT_OTLP_ENDPOINT: &str = "http://localhost:4318";

/// Where a run's spans go. OTLP fields are optional: left out, they come from the
/// server's default tracing config (see [`effective_tracing`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TracingConfig {
    pub provider: TracingProviderKind,
    /// OTLP/HTTP base URL (`http://collector:4318`); `/v1/traces` is appended unless the
    /// path already ends with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<OtlpProtocol>,
    /// Extra request headers for the collector (authentication). Never shown back:
    /// the API redacts their values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// Share of traces kept, 0 to 1 (default 1); a sampled `traceparent` is always followed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_ratio: Option<f64>,
}

impl TracingConfig {
    /// A config with just a provider.
    pub fn of(provider: TracingProviderKind) -> Self {
        TracingConfig {
            provider,
            endpoint: None,
            protocol: None,
            headers: BTreeMap::new(),
            service_name: None,
            sample_ratio: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TracingProviderKind {
    None,
    Log,
    Otlp,
}

/// The OTLP/HTTP encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum OtlpProtocol {
    #[default]
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    #[serde(rename = "http/json")]
    HttpJson,
}

impl OtlpProtocol {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "http/protobuf" => Some(OtlpProtocol::HttpProtobuf),
            "http/json" => Some(OtlpProtocol::HttpJson),
            _ => None,
        }
    }
}

/// A lifecycle subscriber configured over JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SubscriberConfig {
    Webhook(WebhookConfig),
}

/// POSTs matching lifecycle events to `url`, signed with the secret in `secret_env`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookConfig {
    pub url: String,
    /// Event types delivered (snake_case); empty means every event.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// The environment variable holding the HMAC secret (its name, never its value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
}

/// The tracing config a run executes with: its own, else the server default. An OTLP
/// config without an endpoint takes the default's endpoint with its protocol and
/// headers; one with its own endpoint never gets the default's headers (they may be
/// credentials for the operator's collector).
pub fn effective_tracing(
    run: Option<&TracingConfig>,
    default: Option<&TracingConfig>,
) -> Option<TracingConfig> {
    let Some(run) = run else {
        return default.cloned();
    };
    if run.provider != TracingProviderKind::Otlp {
        return Some(run.clone());
    }
    let default = default.filter(|d| d.provider == TracingProviderKind::Otlp);
    let mut merged = run.clone();
    if merged.endpoint.is_none()
        && let Some(default) = default
    {
        merged.endpoint = default.endpoint.clone();
        merged.protocol = merged.protocol.or(default.protocol);
        let mut headers = default.headers.clone();
        headers.extend(run.headers.clone());
        merged.headers = headers;
    }
    if let Some(default) = default {
        merged.service_name = merged.service_name.or_else(|| default.service_name.clone());
        merged.sample_ratio = merged.sample_ratio.or(default.sample_ratio);
    }
    Some(merged)
}

/// The URL spans are POSTed to: the endpoint with `/v1/traces` appended unless its path
/// already ends with it.
pub fn traces_url(endpoint: &str) -> String {
    let trimmed = endpoint.trim_end_matches('/');
    if trimmed.ends_with("/v1/traces") {
        trimmed.to_owned()
    } else {
        format!("{trimmed}/v1/traces")
    }
}

/// A URL shown in responses and logs: scheme, host, port and path (credentials and query
/// left out, since they often carry tokens).
pub fn display_url(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(url) => {
            let host = url.host_str().unwrap_or("");
            let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{}://{host}{port}{}", url.scheme(), url.path())
        }
        Err(_) => "<invalid url>".to_owned(),
    }
}

fn error(errors: &mut Vec<FieldError>, path: impl Into<String>, message: impl Into<String>) {
    errors.push(FieldError {
        path: path.into(),
        message: message.into(),
    });
}

fn join(path: &str, key: &str) -> String {
    format!("{path}.{key}")
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn object<'v>(
    value: &'v Value,
    path: &str,
    known: &[&str],
    errors: &mut Vec<FieldError>,
) -> Option<&'v Map<String, Value>> {
    let Some(map) = value.as_object() else {
        error(
            errors,
            path,
            format!("must be an object, got {}", kind_of(value)),
        );
        return None;
    };
    let mut unknown = map.keys().filter(|key| !known.contains(&key.as_str()));
    for key in unknown.by_ref().take(MAX_UNKNOWN_FIELDS) {
        error(
            errors,
            join(path, key),
            format!("unknown field; expected one of: {}", known.join(", ")),
        );
    }
    let more = unknown.count();
    if more > 0 {
        error(errors, path, format!("and {more} more unknown fields"));
    }
    Some(map)
}

/// A present, non-null field.
fn field<'v>(map: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    map.get(key).filter(|v| !v.is_null())
}

fn string<'v>(value: &'v Value, path: &str, errors: &mut Vec<FieldError>) -> Option<&'v str> {
    match value.as_str() {
        Some(s) if !s.trim().is_empty() => Some(s),
        Some(_) => {
            error(errors, path, "must not be empty");
            None
        }
        None => {
            error(
                errors,
                path,
                format!("must be a string, got {}", kind_of(value)),
            );
            None
        }
    }
}

/// An absolute http(s) URL with a host and no credentials in it.
fn http_url(raw: &str, path: &str, errors: &mut Vec<FieldError>) -> Option<Url> {
    let url = match Url::parse(raw) {
        Ok(url) => url,
        Err(e) => {
            error(errors, path, format!("must be an absolute URL: {e}"));
            return None;
        }
    };
    if !matches!(url.scheme(), "http" | "https") {
        error(errors, path, "must be an http:// or https:// URL");
        return None;
    }
    if url.host_str().is_none_or(str::is_empty) {
        error(errors, path, "must name a host");
        return None;
    }
    if !url.username().is_empty() || url.password().is_some() {
        error(
            errors,
            path,
            "must not carry credentials; use headers or a signing secret",
        );
        return None;
    }
    // Literal addresses no egress policy allows are refused now; host names (and the
    // rest of the policy) are checked when a request is made.
    if let Some(reason) = crate::egress::forbidden_literal(&url) {
        error(errors, path, reason);
        return None;
    }
    Some(url)
}

/// Headers a tracing config may not set: the exporter owns them.
const RESERVED_HEADERS: [&str; 5] = [
    "content-type",
    "content-length",
    "content-encoding",
    "host",
    "transfer-encoding",
];

/// Validates `tracing`; `None` when it has errors (recorded in `errors`).
pub fn parse_tracing(
    value: &Value,
    path: &str,
    errors: &mut Vec<FieldError>,
) -> Option<TracingConfig> {
    const OTLP_FIELDS: [&str; 5] = [
        "endpoint",
        "protocol",
        "headers",
        "service_name",
        "sample_ratio",
    ];
    let before = errors.len();
    let known = [
        "provider",
        "endpoint",
        "protocol",
        "headers",
        "service_name",
        "sample_ratio",
    ];
    let map = object(value, path, &known, errors)?;
    let otlp_fields: Vec<&str> = OTLP_FIELDS
        .iter()
        .copied()
        .filter(|k| field(map, k).is_some())
        .collect();
    let provider = match field(map, "provider") {
        // OTLP settings alone mean OTLP.
        None if !otlp_fields.is_empty() => TracingProviderKind::Otlp,
        None => TracingProviderKind::None,
        Some(Value::String(s)) => match s.as_str() {
            "none" => TracingProviderKind::None,
            "log" => TracingProviderKind::Log,
            "otlp" => TracingProviderKind::Otlp,
            other => {
                error(
                    errors,
                    join(path, "provider"),
                    format!("unknown provider `{other}`; expected none, log or otlp"),
                );
                return None;
            }
        },
        Some(other) => {
            error(
                errors,
                join(path, "provider"),
                format!("must be a string, got {}", kind_of(other)),
            );
            return None;
        }
    };
    let mut config = TracingConfig::of(provider);
    if provider != TracingProviderKind::Otlp {
        for key in otlp_fields {
            error(
                errors,
                join(path, key),
                "only applies to provider `otlp`".to_owned(),
            );
        }
        return (errors.len() == before).then_some(config);
    }
    if let Some(value) = field(map, "endpoint") {
        let at = join(path, "endpoint");
        if let Some(raw) = string(value, &at, errors)
            && let Some(url) = http_url(raw.trim(), &at, errors)
        {
            if url.fragment().is_some() {
                error(errors, &at, "must not have a fragment");
            }
            config.endpoint = Some(raw.trim().to_owned());
        }
    }
    if let Some(value) = field(map, "protocol") {
        let at = join(path, "protocol");
        match value.as_str() {
            Some(raw) => match OtlpProtocol::parse(raw) {
                Some(protocol) => config.protocol = Some(protocol),
                None if raw == "grpc" => error(
                    errors,
                    at,
                    "gRPC is not supported; use http/protobuf or http/json",
                ),
                None => error(
                    errors,
                    at,
                    format!("unknown protocol `{raw}`; expected http/protobuf or http/json"),
                ),
            },
            None => error(
                errors,
                at,
                format!("must be a string, got {}", kind_of(value)),
            ),
        }
    }
    if let Some(value) = field(map, "headers") {
        let at = join(path, "headers");
        match value.as_object() {
            None => error(
                errors,
                &at,
                format!("must be an object, got {}", kind_of(value)),
            ),
            Some(headers) if headers.len() > MAX_TRACING_HEADERS => error(
                errors,
                &at,
                format!("must have at most {MAX_TRACING_HEADERS} headers"),
            ),
            Some(headers) => {
                for (name, value) in headers {
                    let header_path = join(&at, name);
                    let lower = name.to_ascii_lowercase();
                    if HeaderName::from_bytes(name.as_bytes()).is_err() {
                        error(errors, header_path, "is not a valid HTTP header name");
                        continue;
                    }
                    if RESERVED_HEADERS.contains(&lower.as_str()) {
                        error(errors, header_path, "is set by the exporter");
                        continue;
                    }
                    // Messages never quote the value: it is often a credential.
                    match value.as_str() {
                        Some(v) if HeaderValue::from_str(v).is_ok() => {
                            config.headers.insert(lower, v.to_owned());
                        }
                        Some(_) => error(errors, header_path, "is not a valid HTTP header value"),
                        None => error(
                            errors,
                            header_path,
                            format!("must be a string, got {}", kind_of(value)),
                        ),
                    }
                }
            }
        }
    }
    if let Some(value) = field(map, "service_name") {
        let at = join(path, "service_name");
        if let Some(name) = string(value, &at, errors) {
            if name.len() > 255 {
                error(errors, at, "must be at most 255 bytes");
            } else {
                config.service_name = Some(name.to_owned());
            }
        }
    }
    if let Some(value) = field(map, "sample_ratio") {
        match value.as_f64() {
            Some(ratio) if (0.0..=1.0).contains(&ratio) => config.sample_ratio = Some(ratio),
            _ => error(
                errors,
                join(path, "sample_ratio"),
                "must be a number from 0 to 1",
            ),
        }
    }
    (errors.len() == before).then_some(config)
}

/// The snake_case event type an `events` entry names (`run.completed` → `run_completed`).
fn event_type(raw: &str) -> Option<&'static str> {
    let normalized = raw.trim().replace('.', "_");
    EVENT_TYPES.iter().copied().find(|t| *t == normalized)
}

/// Validates `subscribers`: every problem is recorded in `errors`.
pub fn parse_subscribers(
    value: &Value,
    path: &str,
    errors: &mut Vec<FieldError>,
) -> Vec<SubscriberConfig> {
    let Some(items) = value.as_array() else {
        error(
            errors,
            path,
            format!("must be an array, got {}", kind_of(value)),
        );
        return Vec::new();
    };
    if items.len() > MAX_SUBSCRIBERS {
        error(
            errors,
            path,
            format!("at most {MAX_SUBSCRIBERS} subscribers per run"),
        );
        return Vec::new();
    }
    let mut subscribers = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("{path}[{i}]");
        if let Some(subscriber) = parse_subscriber(item, &at, errors) {
            subscribers.push(subscriber);
        }
    }
    subscribers
}

fn parse_subscriber(
    value: &Value,
    path: &str,
    errors: &mut Vec<FieldError>,
) -> Option<SubscriberConfig> {
    let before = errors.len();
    let map = object(
        value,
        path,
        &["kind", "url", "events", "secret_env"],
        errors,
    )?;
    match field(map, "kind") {
        None => {
            error(errors, join(path, "kind"), "is required");
            return None;
        }
        Some(Value::String(kind)) if kind == "webhook" => {}
        Some(Value::String(kind)) => {
            error(
                errors,
                join(path, "kind"),
                format!("unknown subscriber kind `{kind}`; expected webhook"),
            );
            return None;
        }
        Some(other) => {
            error(
                errors,
                join(path, "kind"),
                format!("must be a string, got {}", kind_of(other)),
            );
            return None;
        }
    }
    let url_path = join(path, "url");
    let url = match field(map, "url") {
        None => {
            error(errors, &url_path, "is required");
            None
        }
        Some(value) => string(value, &url_path, errors)
            .and_then(|raw| http_url(raw.trim(), &url_path, errors).map(|_| raw.trim())),
    };
    let mut events = Vec::new();
    if let Some(value) = field(map, "events") {
        let events_path = join(path, "events");
        match value.as_array() {
            None => error(
                errors,
                &events_path,
                format!("must be an array, got {}", kind_of(value)),
            ),
            Some(items) if items.len() > MAX_SUBSCRIBER_EVENTS => error(
                errors,
                &events_path,
                format!("must have at most {MAX_SUBSCRIBER_EVENTS} entries"),
            ),
            Some(items) => {
                for (j, item) in items.iter().enumerate() {
                    let at = format!("{events_path}[{j}]");
                    let Some(raw) = string(item, &at, errors) else {
                        continue;
                    };
                    match event_type(raw) {
                        Some(t) if !events.iter().any(|e: &String| e == t) => {
                            events.push(t.to_owned())
                        }
                        Some(_) => {}
                        None => error(
                            errors,
                            at,
                            format!(
                                "unknown event type `{raw}`; expected one of: {}",
                                EVENT_TYPES.join(", ")
                            ),
                        ),
                    }
                }
                if items.is_empty() {
                    error(
                        errors,
                        &events_path,
                        "must name at least one event type (leave it out for every event)",
                    );
                }
            }
        }
    }
    let mut secret_env = None;
    if let Some(value) = field(map, "secret_env") {
        let at = join(path, "secret_env");
        if let Some(name) = string(value, &at, errors) {
            if !name.starts_with(SECRET_ENV_PREFIX) || name.len() == SECRET_ENV_PREFIX.len() {
                error(
                    errors,
                    at,
                    format!("must name an environment variable starting with {SECRET_ENV_PREFIX}"),
                );
            } else if std::env::var(name).map_or(true, |v| v.is_empty()) {
                error(
                    errors,
                    at,
                    format!("environment variable {name} is not set on this server"),
                );
            } else {
                secret_env = Some(name.to_owned());
            }
        }
    }
    let url = url?;
    (errors.len() == before).then(|| {
        SubscriberConfig::Webhook(WebhookConfig {
            url: url.to_owned(),
            events,
            secret_env,
        })
    })
}

/// Replaces the values of `tracing.headers` in stored runtime options (for responses).
pub fn redact_runtime(runtime: &mut Value) {
    if let Some(headers) = runtime
        .get_mut("tracing")
        .and_then(|t| t.get_mut("headers"))
        .and_then(Value::as_object_mut)
    {
        for value in headers.values_mut() {
            *value = Value::String("<redacted>".to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tracing(value: Value) -> Result<TracingConfig, Vec<FieldError>> {
        let mut errors = Vec::new();
        let parsed = parse_tracing(&value, "tracing", &mut errors);
        match parsed {
            Some(config) if errors.is_empty() => Ok(config),
            _ => Err(errors),
        }
    }

    fn paths(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.path.as_str()).collect()
    }

    #[test]
    fn parses_a_full_otlp_config() {
        let config = tracing(json!({
            "provider": "otlp",
            "endpoint": "http://collector:4318",
            "protocol": "http/json",
            "headers": {"Authorization": "Bearer x"},
            "service_name": "evals",
            "sample_ratio": 0.5
        }))
        .unwrap();
        assert_eq!(config.provider, TracingProviderKind::Otlp);
        assert_eq!(config.endpoint.as_deref(), Some("http://collector:4318"));
        assert_eq!(config.protocol, Some(OtlpProtocol::HttpJson));
        assert_eq!(config.headers["authorization"], "Bearer x");
        assert_eq!(config.sample_ratio, Some(0.5));
        // The stored form reads back the same.
        let stored = serde_json::to_value(&config).unwrap();
        assert_eq!(stored["protocol"], "http/json");
        let back: TracingConfig = serde_json::from_value(stored).unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn reports_every_bad_field_with_its_path() {
        let errors = tracing(json!({
            "provider": "otlp",
            "endpoint": "ftp://x",
            "protocol": "grpc",
            "headers": {"bad header": "v", "content-type": "x", "ok": 3},
            "service_name": "",
            "sample_ratio": 2,
            "extra": true
        }))
        .unwrap_err();
        let mut got = paths(&errors);
        got.sort();
        assert_eq!(
            got,
            [
                "tracing.endpoint",
                "tracing.extra",
                "tracing.headers.bad header",
                "tracing.headers.content-type",
                "tracing.headers.ok",
                "tracing.protocol",
                "tracing.sample_ratio",
                "tracing.service_name",
            ]
        );
        let errors = tracing(json!({"provider": "log", "endpoint": "http://x"})).unwrap_err();
        assert_eq!(paths(&errors), ["tracing.endpoint"]);
        let errors = tracing(json!({"provider": "zipkin"})).unwrap_err();
        assert!(errors[0].message.contains("none, log or otlp"));
        let errors = tracing(json!({"endpoint": "http://user:pw@x:4318"})).unwrap_err();
        assert!(!errors[0].message.contains("pw"));
        let errors = tracing(json!({"headers": {"x-key": "sec\nret"}})).unwrap_err();
        assert!(
            !errors[0].message.contains("sec"),
            "values are never echoed"
        );
    }

    #[test]
    fn otlp_fields_alone_mean_otlp_and_empty_means_none() {
        assert_eq!(
            tracing(json!({"endpoint": "http://c:4318"}))
                .unwrap()
                .provider,
            TracingProviderKind::Otlp
        );
        assert_eq!(
            tracing(json!({})).unwrap().provider,
            TracingProviderKind::None
        );
    }

    #[test]
    fn a_run_config_meets_the_default() {
        let mut default = TracingConfig::of(TracingProviderKind::Otlp);
        default.endpoint = Some("http://operator:4318".into());
        default.headers.insert("authorization".into(), "op".into());
        default.service_name = Some("svc".into());
        // No config: the default.
        assert_eq!(
            effective_tracing(None, Some(&default)),
            Some(default.clone())
        );
        // Turned off.
        let none = TracingConfig::of(TracingProviderKind::None);
        assert_eq!(effective_tracing(Some(&none), Some(&default)), Some(none));
        // OTLP without endpoint: the default's endpoint and headers, own headers win.
        let mut run = TracingConfig::of(TracingProviderKind::Otlp);
        run.headers.insert("x-team".into(), "a".into());
        let merged = effective_tracing(Some(&run), Some(&default)).unwrap();
        assert_eq!(merged.endpoint.as_deref(), Some("http://operator:4318"));
        assert_eq!(merged.headers.len(), 2);
        assert_eq!(merged.service_name.as_deref(), Some("svc"));
        // Own endpoint: never the operator's headers.
        run.endpoint = Some("http://mine:4318".into());
        let merged = effective_tracing(Some(&run), Some(&default)).unwrap();
        assert_eq!(merged.endpoint.as_deref(), Some("http://mine:4318"));
        assert!(!merged.headers.contains_key("authorization"));
    }

    #[test]
    fn traces_url_appends_the_signal_path_once() {
        assert_eq!(traces_url("http://c:4318"), "http://c:4318/v1/traces");
        assert_eq!(traces_url("http://c:4318/"), "http://c:4318/v1/traces");
        assert_eq!(
            traces_url("http://c:4318/v1/traces"),
            "http://c:4318/v1/traces"
        );
        assert_eq!(traces_url("https://c/otlp"), "https://c/otlp/v1/traces");
    }

    #[test]
    fn subscribers_validate_kind_url_events_and_secret() {
        let mut errors = Vec::new();
        let parsed = parse_subscribers(
            &json!([
                {"kind": "webhook", "url": "http://h/hook", "events": ["run.completed", "case_failed", "run_completed"]},
                {"kind": "email", "url": "http://h"},
                {"kind": "webhook", "url": "not a url", "events": ["nope"]},
                {"kind": "webhook", "url": "http://h", "secret_env": "HOME"},
                {"kind": "webhook", "url": "http://h", "secret_env": "THEMIS_WEBHOOK_SURELY_UNSET_VAR"}
            ]),
            "subscribers",
            &mut errors,
        );
        assert_eq!(
            parsed,
            [SubscriberConfig::Webhook(WebhookConfig {
                url: "http://h/hook".into(),
                events: vec!["run_completed".into(), "case_failed".into()],
                secret_env: None,
            })]
        );
        assert_eq!(
            paths(&errors),
            [
                "subscribers[1].kind",
                "subscribers[2].url",
                "subscribers[2].events[0]",
                "subscribers[3].secret_env",
                "subscribers[4].secret_env",
            ]
        );
    }

    #[test]
    fn redaction_hides_header_values_only() {
        let mut runtime = json!({"tracing": {"provider": "otlp", "headers": {"authorization": "Bearer s"}}, "concurrency": 2});
        redact_runtime(&mut runtime);
        assert_eq!(runtime["tracing"]["headers"]["authorization"], "<redacted>");
        assert_eq!(runtime["concurrency"], 2);
    }

    #[test]
    fn display_url_drops_query_and_credentials() {
        assert_eq!(
            display_url("https://u:p@h:8443/a/b?token=x"),
            "https://h:8443/a/b"
        );
    }
}
