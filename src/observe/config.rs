//! The instrumentation a run asks for in its runtime-only fields (`tracing`,
//! `subscribers`): plain data, stored with the run and read back when it resumes.
//! Checked in [`super::config_check`]; carried out by `telemetry`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::Sealer;

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
    /// The same config with its header values sealed: what the store keeps.
    pub fn sealed(&self, sealer: &Sealer) -> Self {
        let mut sealed = self.clone();
        for value in sealed.headers.values_mut() {
            *value = sealer.seal(value);
        }
        sealed
    }

    /// Opens header values read from the store; a header sealed under another key is
    /// left out, and its name returned so the caller can say so.
    pub fn open(&mut self, sealer: &Sealer) -> Vec<String> {
        let mut unopened = Vec::new();
        self.headers.retain(|name, value| match sealer.open(value) {
            Ok(plain) => {
                *value = plain;
                true
            }
            Err(_) => {
                unopened.push(name.clone());
                false
            }
        });
        unopened
    }

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

/// Every event type a subscriber may filter on (`EventKind::event_type`).
pub(super) const EVENT_TYPES: [&str; 22] = [
    "run_started",
    "run_completed",
    "run_failed",
    "run_cancelled",
    "case_started",
    "case_completed",
    "case_failed",
    "generation_completed",
    "generation_failed",
    "reduction_completed",
    "reduction_failed",
    "parse_completed",
    "parse_failed",
    "score_completed",
    "score_failed",
    "evaluation_completed",
    "evaluation_failed",
    "progress",
    "provider_retry",
    "provider_rate_limited",
    "concurrency_limited",
    "budget_exhausted",
];

/// Webhook secrets come only from environment variables with this prefix, so a request
/// can never make the service sign with (or probe for) its other settings.
pub(crate) const SECRET_ENV_PREFIX: &str = "THEMIS_WEBHOOK_";
/// Replaces the values of `tracing.headers` in stored runtime options (for responses).
pub(crate) fn redact_runtime(runtime: &mut Value) {
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

    #[test]
    fn redaction_hides_header_values_only() {
        let mut runtime = json!({"tracing": {"provider": "otlp", "headers": {"authorization": "Bearer s"}}, "concurrency": 2});
        redact_runtime(&mut runtime);
        assert_eq!(runtime["tracing"]["headers"]["authorization"], "<redacted>");
        assert_eq!(runtime["concurrency"], 2);
    }

    #[test]
    fn event_types_are_exactly_the_event_kinds() {
        use crate::model::EventKind;
        // Every listed name is a variant: deserialising it fails on a missing field,
        // never on an unknown tag; the unknown-tag error lists every variant.
        for name in EVENT_TYPES {
            let error =
                serde_json::from_value::<EventKind>(serde_json::json!({"event_type": name}))
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default();
            assert!(!error.contains("unknown variant"), "{name}: {error}");
        }
        let error =
            serde_json::from_value::<EventKind>(serde_json::json!({"event_type": "no_such_event"}))
                .unwrap_err()
                .to_string();
        let listed = error.matches('`').count() / 2 - 1;
        assert_eq!(listed, EVENT_TYPES.len(), "{error}");
    }
}
