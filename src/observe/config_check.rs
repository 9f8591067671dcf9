//! Checking the instrumentation a request asks for (`tracing`, `subscribers`) into
//! [`super::config`]'s types, with the shared toolkit: every problem with its path.

use reqwest::Url;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::Value;

use super::config::{
    EVENT_TYPES, OtlpProtocol, SECRET_ENV_PREFIX, SubscriberConfig, TracingConfig,
    TracingProviderKind, WebhookConfig,
};
use crate::model::Problems;
use crate::model::check::{field, join, type_name};

/// Most webhook subscribers one run may have.
pub(super) const MAX_SUBSCRIBERS: usize = 16;
/// Most `tracing.headers` entries.
pub const MAX_TRACING_HEADERS: usize = 32;
/// Most entries in a subscriber's `events` list.
pub(super) const MAX_SUBSCRIBER_EVENTS: usize = 64;

/// An absolute http(s) URL with a host and no credentials in it.
fn http_url(raw: &str, path: &str, problems: &mut Problems) -> Option<Url> {
    let url = match Url::parse(raw) {
        Ok(url) => url,
        Err(e) => {
            problems.push(path, format!("must be an absolute URL: {e}"));
            return None;
        }
    };
    if !matches!(url.scheme(), "http" | "https") {
        problems.push(path, "must be an http:// or https:// URL");
        return None;
    }
    if url.host_str().is_none_or(str::is_empty) {
        problems.push(path, "must name a host");
        return None;
    }
    if !url.username().is_empty() || url.password().is_some() {
        problems.push(
            path,
            "must not carry credentials; use headers or a signing secret",
        );
        return None;
    }
    // Literal addresses no egress policy allows are refused now; host names (and the
    // rest of the policy) are checked when a request is made.
    if let Some(reason) = crate::egress::forbidden_literal(&url) {
        problems.push(path, reason);
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

/// A collector header as `tracing.headers` (and `--otlp-headers`) accepts it: its
/// lower-case name, or what is wrong with it. A leaf check whose message is shown as is;
/// it never quotes the value (often a credential).
pub fn tracing_header(name: &str, value: &str) -> Result<String, &'static str> {
    if HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err("is not a valid HTTP header name");
    }
    let lower = name.to_ascii_lowercase();
    if RESERVED_HEADERS.contains(&lower.as_str()) {
        return Err("is set by the exporter");
    }
    if HeaderValue::from_str(value).is_err() {
        return Err("is not a valid HTTP header value");
    }
    Ok(lower)
}

/// An OTLP collector URL as `tracing.endpoint` (and `--otlp-endpoint`) accepts it, or
/// the message saying why not (a leaf check whose message is shown as is).
pub fn otlp_endpoint(raw: &str) -> Result<String, String> {
    let mut problems = Problems::default();
    if let Some(url) = http_url(raw.trim(), "", &mut problems)
        && url.fragment().is_some()
    {
        problems.push("", "must not have a fragment");
    }
    match problems.into_details().into_iter().next() {
        Some(problem) => Err(problem.message),
        None => Ok(raw.trim().to_owned()),
    }
}

/// Validates `tracing`; `None` when it has errors (recorded in `problems`).
pub fn parse_tracing(value: &Value, path: &str, problems: &mut Problems) -> Option<TracingConfig> {
    const OTLP_FIELDS: [&str; 5] = [
        "endpoint",
        "protocol",
        "headers",
        "service_name",
        "sample_ratio",
    ];
    let before = problems.count();
    let known = [
        "provider",
        "endpoint",
        "protocol",
        "headers",
        "service_name",
        "sample_ratio",
    ];
    let map = problems.object(value, path, &known)?;
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
                problems.push(
                    join(path, "provider"),
                    format!("unknown provider `{other}`; expected none, log or otlp"),
                );
                return None;
            }
        },
        Some(other) => {
            problems.push(
                join(path, "provider"),
                format!("must be a string, got {}", type_name(other)),
            );
            return None;
        }
    };
    let mut config = TracingConfig::of(provider);
    if provider != TracingProviderKind::Otlp {
        for key in otlp_fields {
            problems.push(
                join(path, key),
                "only applies to provider `otlp`".to_owned(),
            );
        }
        return (problems.count() == before).then_some(config);
    }
    if let Some(value) = field(map, "endpoint") {
        let at = join(path, "endpoint");
        if let Some(raw) = problems.string(value, &at)
            && let Some(url) = http_url(raw.trim(), &at, problems)
        {
            if url.fragment().is_some() {
                problems.push(&at, "must not have a fragment");
            }
            config.endpoint = Some(raw.trim().to_owned());
        }
    }
    if let Some(value) = field(map, "protocol") {
        let at = join(path, "protocol");
        match value.as_str() {
            Some(raw) => match OtlpProtocol::parse(raw) {
                Some(protocol) => config.protocol = Some(protocol),
                None if raw == "grpc" => {
                    problems.push(at, "gRPC is not supported; use http/protobuf or http/json")
                }
                None => problems.push(
                    at,
                    format!("unknown protocol `{raw}`; expected http/protobuf or http/json"),
                ),
            },
            None => problems.push(at, format!("must be a string, got {}", type_name(value))),
        }
    }
    if let Some(value) = field(map, "headers") {
        let at = join(path, "headers");
        match value.as_object() {
            None => problems.push(&at, format!("must be an object, got {}", type_name(value))),
            Some(headers) if headers.len() > MAX_TRACING_HEADERS => problems.push(
                &at,
                format!("must have at most {MAX_TRACING_HEADERS} headers"),
            ),
            Some(headers) => {
                for (name, value) in headers {
                    let header_path = join(&at, name);
                    let Some(v) = value.as_str() else {
                        // The name's problem first (an empty value is a valid one).
                        let message = match tracing_header(name, "") {
                            Err(message) => message.to_owned(),
                            Ok(_) => format!("must be a string, got {}", type_name(value)),
                        };
                        problems.push(header_path, message);
                        continue;
                    };
                    match tracing_header(name, v) {
                        Ok(lower) => {
                            config.headers.insert(lower, v.to_owned());
                        }
                        Err(message) => problems.push(header_path, message),
                    }
                }
            }
        }
    }
    if let Some(value) = field(map, "service_name") {
        let at = join(path, "service_name");
        if let Some(name) = problems.string(value, &at) {
            if name.len() > 255 {
                problems.push(at, "must be at most 255 bytes");
            } else {
                config.service_name = Some(name.to_owned());
            }
        }
    }
    if let Some(value) = field(map, "sample_ratio") {
        match value.as_f64() {
            Some(ratio) if (0.0..=1.0).contains(&ratio) => config.sample_ratio = Some(ratio),
            _ => problems.push(join(path, "sample_ratio"), "must be a number from 0 to 1"),
        }
    }
    (problems.count() == before).then_some(config)
}

/// The snake_case event type an `events` entry names (`run.completed` → `run_completed`).
fn event_type(raw: &str) -> Option<&'static str> {
    let normalized = raw.trim().replace('.', "_");
    EVENT_TYPES.iter().copied().find(|t| *t == normalized)
}

/// Validates `subscribers`: every problem is recorded in `problems`.
pub fn parse_subscribers(
    value: &Value,
    path: &str,
    problems: &mut Problems,
) -> Vec<SubscriberConfig> {
    let Some(items) = value.as_array() else {
        problems.push(path, format!("must be an array, got {}", type_name(value)));
        return Vec::new();
    };
    if items.len() > MAX_SUBSCRIBERS {
        problems.push(
            path,
            format!("at most {MAX_SUBSCRIBERS} subscribers per run"),
        );
        return Vec::new();
    }
    let mut subscribers = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("{path}[{i}]");
        if let Some(subscriber) = parse_subscriber(item, &at, problems) {
            subscribers.push(subscriber);
        }
    }
    subscribers
}

fn parse_subscriber(
    value: &Value,
    path: &str,
    problems: &mut Problems,
) -> Option<SubscriberConfig> {
    let before = problems.count();
    let map = problems.object(value, path, &["kind", "url", "events", "secret_env"])?;
    match field(map, "kind") {
        None => {
            problems.push(join(path, "kind"), "is required");
            return None;
        }
        Some(Value::String(kind)) if kind == "webhook" => {}
        Some(Value::String(kind)) => {
            problems.push(
                join(path, "kind"),
                format!("unknown subscriber kind `{kind}`; expected webhook"),
            );
            return None;
        }
        Some(other) => {
            problems.push(
                join(path, "kind"),
                format!("must be a string, got {}", type_name(other)),
            );
            return None;
        }
    }
    let url_path = join(path, "url");
    let url = match field(map, "url") {
        None => {
            problems.push(&url_path, "is required");
            None
        }
        Some(value) => problems
            .string(value, &url_path)
            .and_then(|raw| http_url(raw.trim(), &url_path, problems).map(|_| raw.trim())),
    };
    let mut events = Vec::new();
    if let Some(value) = field(map, "events") {
        let events_path = join(path, "events");
        match value.as_array() {
            None => problems.push(
                &events_path,
                format!("must be an array, got {}", type_name(value)),
            ),
            Some(items) if items.len() > MAX_SUBSCRIBER_EVENTS => problems.push(
                &events_path,
                format!("must have at most {MAX_SUBSCRIBER_EVENTS} entries"),
            ),
            Some(items) => {
                for (j, item) in items.iter().enumerate() {
                    let at = format!("{events_path}[{j}]");
                    let Some(raw) = problems.string(item, &at) else {
                        continue;
                    };
                    match event_type(raw) {
                        Some(t) if !events.iter().any(|e: &String| e == t) => {
                            events.push(t.to_owned())
                        }
                        Some(_) => {}
                        None => problems.push(
                            at,
                            format!(
                                "unknown event type `{raw}`; expected one of: {}",
                                EVENT_TYPES.join(", ")
                            ),
                        ),
                    }
                }
                if items.is_empty() {
                    problems.push(
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
        if let Some(name) = problems.string(value, &at) {
            if !name.starts_with(SECRET_ENV_PREFIX) || name.len() == SECRET_ENV_PREFIX.len() {
                problems.push(
                    at,
                    format!("must name an environment variable starting with {SECRET_ENV_PREFIX}"),
                );
            } else {
                secret_env = Some(name.to_owned());
            }
        }
    }
    let url = url?;
    (problems.count() == before).then(|| {
        SubscriberConfig::Webhook(WebhookConfig {
            url: url.to_owned(),
            events,
            secret_env,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::model::FieldError;

    fn tracing(value: Value) -> Result<TracingConfig, Vec<FieldError>> {
        let mut problems = Problems::default();
        let parsed = parse_tracing(&value, "tracing", &mut problems);
        match parsed {
            Some(config) if problems.is_empty() => Ok(config),
            _ => Err(problems.into_details()),
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
    fn subscribers_validate_kind_url_events_and_secret() {
        let mut problems = Problems::default();
        let parsed = parse_subscribers(
            &json!([
                {"kind": "webhook", "url": "http://h/hook", "events": ["run.completed", "case_failed", "run_completed"]},
                {"kind": "email", "url": "http://h"},
                {"kind": "webhook", "url": "not a url", "events": ["nope"]},
                {"kind": "webhook", "url": "http://h", "secret_env": "HOME"},
                {"kind": "webhook", "url": "http://h", "secret_env": "THEMIS_WEBHOOK_"}
            ]),
            "subscribers",
            &mut problems,
        );
        let errors = problems.into_details();
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
}
