//! The operator's webhook signing secrets, each bound to the destinations it may sign
//! for (`--webhook-secret THEMIS_WEBHOOK_CI=https://ci.example.com/hooks/`).
//!
//! A run names a secret (`secret_env`) for its webhook; the server signs with it only
//! when the webhook's URL is under one of the secret's bound prefixes. Without the
//! binding any client could send itself events signed with a secret a real receiver
//! trusts, and replay them there. Values are read from the environment once, at
//! startup, and never stored or shown.

use std::collections::BTreeMap;
use std::fmt;

use reqwest::Url;

use super::error::TelemetryError;
use crate::model::Problems;
use crate::observe::{SECRET_ENV_PREFIX, SubscriberConfig};

/// The declared secrets: name → value and the URL prefixes it may sign for.
#[derive(Default, Clone)]
pub struct WebhookSecrets {
    secrets: BTreeMap<String, Secret>,
}

#[derive(Clone)]
struct Secret {
    value: Vec<u8>,
    destinations: Vec<Url>,
}

impl fmt::Debug for WebhookSecrets {
    /// Names and destinations only: the values never reach a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (name, secret) in &self.secrets {
            let destinations: Vec<&str> = secret.destinations.iter().map(Url::as_str).collect();
            map.entry(name, &destinations);
        }
        map.finish()
    }
}

/// A declaration that does not parse, with the message naming its part.
fn declaration(message: String) -> TelemetryError {
    TelemetryError::Declaration(message)
}

impl WebhookSecrets {
    /// Parses `NAME=URL[,URL...]` specs, reading each NAME from `lookup` (the
    /// environment, in the server). The same name may be given more than once: its
    /// destinations add up.
    pub fn parse(
        specs: &[String],
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, TelemetryError> {
        let mut secrets = WebhookSecrets::default();
        for spec in specs.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
            let (name, urls) = spec
                .split_once('=')
                .ok_or_else(|| declaration(format!("`{spec}`: expected NAME=URL[,URL...]")))?;
            let name = name.trim();
            if !name.starts_with(SECRET_ENV_PREFIX) || name.len() == SECRET_ENV_PREFIX.len() {
                return Err(declaration(format!(
                    "`{name}`: a webhook secret's variable must start with {SECRET_ENV_PREFIX}"
                )));
            }
            let value = lookup(name)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| TelemetryError::MissingSecret(name.to_owned()))?;
            let mut destinations = Vec::new();
            for raw in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
                let url = Url::parse(raw).map_err(|e| declaration(format!("`{raw}`: {e}")))?;
                if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                    return Err(declaration(format!(
                        "`{raw}`: must be an http(s) URL with a host"
                    )));
                }
                destinations.push(url);
            }
            if destinations.is_empty() {
                return Err(declaration(format!(
                    "`{name}`: bind it to at least one URL prefix"
                )));
            }
            let entry = secrets
                .secrets
                .entry(name.to_owned())
                .or_insert_with(|| Secret {
                    value: value.into_bytes(),
                    destinations: Vec::new(),
                });
            entry.destinations.extend(destinations);
        }
        Ok(secrets)
    }

    /// The secret `name` for a delivery to `url`: only when it is declared and bound to
    /// a prefix of `url`.
    pub fn for_destination(&self, name: &str, url: &Url) -> Result<&[u8], TelemetryError> {
        let secret = self
            .secrets
            .get(name)
            .ok_or_else(|| TelemetryError::UndeclaredSecret(name.to_owned()))?;
        if secret.destinations.iter().any(|d| is_under(url, d)) {
            Ok(&secret.value)
        } else {
            Err(TelemetryError::UnboundSecret {
                name: name.to_owned(),
                prefixes: secret
                    .destinations
                    .iter()
                    .map(Url::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
    }

    /// The problems of a run's subscribers against the declared secrets, at
    /// `subscribers[i].secret_env`.
    pub fn check(&self, subscribers: &[SubscriberConfig], problems: &mut Problems) {
        for (index, config) in subscribers.iter().enumerate() {
            let SubscriberConfig::Webhook(webhook) = config;
            let Some(name) = &webhook.secret_env else {
                continue;
            };
            let Ok(url) = Url::parse(&webhook.url) else {
                continue; // reported where the URL was checked
            };
            if let Err(message) = self.for_destination(name, &url) {
                problems.push(
                    format!("subscribers[{index}].secret_env"),
                    message.to_string(),
                );
            }
        }
    }
}

/// Whether `url` is at or below `prefix`: same scheme, host and port, and a path whose
/// segments, percent-decoded, start with the prefix's (`/hooks` covers `/hooks/ci`, not
/// `/hooksevil`; `/hooks/` covers what continues it). A segment that decodes to `.`,
/// `..`, or holds `/`, `\` or a control character is never under anything: a receiver
/// may decode and resolve it (`/hooks/..%2fevil` is `/evil` there).
fn is_under(url: &Url, prefix: &Url) -> bool {
    if url.scheme() != prefix.scheme()
        || url.host_str() != prefix.host_str()
        || url.port_or_known_default() != prefix.port_or_known_default()
    {
        return false;
    }
    let (Some(path), Some(mut base)) = (segments(url.path()), segments(prefix.path())) else {
        return false;
    };
    if prefix.path().ends_with('/') {
        // `/hooks/` covers `/hooks/` and below, not `/hooks`.
        base.pop();
        path.len() > base.len() && path.starts_with(&base)
    } else {
        path.starts_with(&base)
    }
}

/// The decoded segments of a URL path; `None` when one is unsafe to compare.
fn segments(path: &str) -> Option<Vec<String>> {
    path.strip_prefix('/')
        .unwrap_or(path)
        .split('/')
        .map(|segment| {
            let decoded = percent_decode(segment)?;
            let unsafe_segment = decoded == "."
                || decoded == ".."
                || decoded.contains(['/', '\\'])
                || decoded.chars().any(char::is_control);
            (!unsafe_segment).then_some(decoded)
        })
        .collect()
}

/// `%XX` escapes decoded; `None` when the result is not UTF-8.
fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(specs: &[&str]) -> Result<WebhookSecrets, TelemetryError> {
        let specs: Vec<String> = specs.iter().map(|s| (*s).to_owned()).collect();
        WebhookSecrets::parse(&specs, |name| {
            (name == "THEMIS_WEBHOOK_CI").then(|| "s3cret".to_owned())
        })
    }

    fn url(raw: &str) -> Url {
        Url::parse(raw).unwrap()
    }

    #[test]
    fn a_secret_signs_only_under_its_bound_prefixes() {
        let s = secrets(&["THEMIS_WEBHOOK_CI=https://ci.example.com/hooks,http://10.0.0.5:9000/"])
            .unwrap();
        for ok in [
            "https://ci.example.com/hooks",
            "https://ci.example.com/hooks/run?x=1",
            "https://ci.example.com:443/hooks/a",
            "http://10.0.0.5:9000/anything",
        ] {
            assert_eq!(
                s.for_destination("THEMIS_WEBHOOK_CI", &url(ok)).unwrap(),
                b"s3cret",
                "{ok}"
            );
        }
        for refused in [
            "https://ci.example.com/hooksevil",
            "https://ci.example.com/",
            "http://ci.example.com/hooks",
            "https://ci.example.com.evil.net/hooks",
            "https://ci.example.com:8443/hooks",
            "http://10.0.0.5:9001/",
        ] {
            let error = s
                .for_destination("THEMIS_WEBHOOK_CI", &url(refused))
                .unwrap_err();
            assert!(
                error.to_string().contains("not bound"),
                "{refused}: {error}"
            );
        }
        assert!(
            s.for_destination("THEMIS_WEBHOOK_OTHER", &url("https://ci.example.com/hooks"))
                .unwrap_err()
                .to_string()
                .contains("no webhook secret")
        );
    }

    #[test]
    fn declarations_are_checked_at_startup_and_values_never_printed() {
        assert!(
            secrets(&["PATH=https://h/"])
                .unwrap_err()
                .to_string()
                .contains("THEMIS_WEBHOOK_")
        );
        assert!(
            secrets(&["THEMIS_WEBHOOK_UNSET=https://h/"])
                .unwrap_err()
                .to_string()
                .contains("not set")
        );
        assert!(
            secrets(&["THEMIS_WEBHOOK_CI="])
                .unwrap_err()
                .to_string()
                .contains("at least one")
        );
        assert!(
            secrets(&["THEMIS_WEBHOOK_CI=ftp://h/"])
                .unwrap_err()
                .to_string()
                .contains("http(s)")
        );
        assert!(secrets(&["THEMIS_WEBHOOK_CI"]).is_err());
        let s = secrets(&[
            "THEMIS_WEBHOOK_CI=https://a.example/",
            "THEMIS_WEBHOOK_CI=https://b.example/",
        ])
        .unwrap();
        assert!(
            s.for_destination("THEMIS_WEBHOOK_CI", &url("https://b.example/x"))
                .is_ok()
        );
        let shown = format!("{s:?}");
        assert!(
            shown.contains("THEMIS_WEBHOOK_CI") && !shown.contains("s3cret"),
            "{shown}"
        );
    }
}
