//! How a run's tracing config meets the server default, and the URLs it names.

use reqwest::Url;

use crate::observe::{TracingConfig, TracingProviderKind};

/// The service name spans carry unless configured.
pub(super) const DEFAULT_SERVICE_NAME: &str = "themis";
/// Where an OTLP/HTTP collector listens unless configured (the OTLP default).
pub(super) const DEFAULT_OTLP_ENDPOINT: &str = "http://localhost:4318";

/// The tracing config a run executes with: its own, else the server default. An OTLP
/// config without an endpoint takes the default's endpoint with its protocol and
/// headers; one with its own endpoint never gets the default's headers (they may be
/// credentials for the operator's collector).
pub(crate) fn effective_tracing(
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
pub(super) fn traces_url(endpoint: &str) -> String {
    let trimmed = endpoint.trim_end_matches('/');
    if trimmed.ends_with("/v1/traces") {
        trimmed.to_owned()
    } else {
        format!("{trimmed}/v1/traces")
    }
}

/// A URL shown in responses and logs: scheme, host, port and path (credentials and query
/// left out, since they often carry tokens).
pub(crate) fn display_url(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(url) => {
            let host = url.host_str().unwrap_or("");
            let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{}://{host}{port}{}", url.scheme(), url.path())
        }
        Err(_) => "<invalid url>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn display_url_drops_query_and_credentials() {
        assert_eq!(
            display_url("https://u:p@h:8443/a/b?token=x"),
            "https://h:8443/a/b"
        );
    }
}
