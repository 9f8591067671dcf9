//! An MCP server the operator declares: a name, a Streamable HTTP URL, headers whose
//! values are read from environment variables once at startup, and the limits every
//! run shares on it.
//!
//! Declared with `--mcp-server` (repeatable) or `THEMIS_MCP_SERVERS` (entries separated
//! by `;`), each entry `name=search,url=https://tools.example.com/mcp` plus optional
//! `header=Header-Name:ENV_VAR` (repeatable), `timeout_ms`, `max_concurrency` and
//! `max_output_bytes`.

use std::fmt;
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};

use crate::components::{DeclarationError, is_declared_name};

/// Default time a tool call (waiting for a slot included) may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest timeout a declaration may set: ten minutes.
const MAX_TIMEOUT_MS: u64 = 600_000;
/// Default tool calls in flight at once on one server, across all runs.
pub const DEFAULT_MAX_CONCURRENCY: usize = 8;
const MAX_CONCURRENCY: usize = 256;
/// Default cap on a tool result's text, in bytes.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 64 * 1024;
/// Largest cap a declaration may set.
const MAX_OUTPUT_BYTES: usize = 1024 * 1024;
/// Headers one server may be declared with.
const MAX_HEADERS: usize = 16;

/// A header value held in memory: never printed, marked sensitive for the HTTP stack.
#[derive(Clone)]
pub struct HeaderSecret(HeaderValue);

impl HeaderSecret {
    fn new(value: &str) -> Option<Self> {
        let mut value = HeaderValue::from_str(value.trim()).ok()?;
        value.set_sensitive(true);
        Some(HeaderSecret(value))
    }

    pub(super) fn value(&self) -> &HeaderValue {
        &self.0
    }

    /// The value as text, to redact it from what the server sends back.
    pub(super) fn text(&self) -> Option<&str> {
        self.0.to_str().ok()
    }
}

impl fmt::Debug for HeaderSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HeaderSecret([redacted])")
    }
}

/// One header sent with every request to its server, and only to it.
#[derive(Debug, Clone)]
pub struct McpHeader {
    pub name: HeaderName,
    /// The variable the value was read from (shown in messages, never the value).
    pub env: Option<String>,
    pub value: HeaderSecret,
}

/// One declared MCP server.
#[derive(Debug, Clone)]
pub struct McpServerSpec {
    pub name: String,
    /// The Streamable HTTP endpoint (`https://tools.example.com/mcp`).
    pub url: reqwest::Url,
    pub headers: Vec<McpHeader>,
    /// Time a tool call may take, waiting for a slot included.
    pub timeout: Duration,
    /// Tool calls in flight at once on this server, across all runs.
    pub max_concurrency: usize,
    /// Bytes of text a tool result keeps; the rest is cut with a marker.
    pub max_output_bytes: usize,
}

fn invalid(message: String) -> DeclarationError {
    DeclarationError::Invalid(message)
}

/// Headers the MCP transport sets itself, and hop-by-hop headers.
const RESERVED_HEADERS: [&str; 8] = [
    "accept",
    "content-type",
    "content-length",
    "host",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
    "transfer-encoding",
];

impl McpServerSpec {
    /// A server without headers, with the default limits.
    pub fn new(name: &str, url: &str) -> Result<Self, DeclarationError> {
        if !is_declared_name(name) {
            return Err(invalid(format!(
                "--mcp-server: name `{name}`: use letters, digits, `-`, `_`, `.` (at most 64)"
            )));
        }
        let parsed = reqwest::Url::parse(url.trim()).map_err(|e| {
            invalid(format!(
                "--mcp-server {name}: url `{url}` is not a URL ({e})"
            ))
        })?;
        if !matches!(parsed.scheme(), "http" | "https")
            || !parsed.username().is_empty()
            || parsed.password().is_some()
            || parsed.fragment().is_some()
        {
            return Err(invalid(format!(
                "--mcp-server {name}: url must be an http(s) URL without credentials or fragment (credentials go in a header=Name:ENV_VAR)"
            )));
        }
        Ok(McpServerSpec {
            name: name.to_owned(),
            url: parsed,
            headers: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
        })
    }

    /// This server with a header given directly (embedders and tests).
    pub fn with_header(mut self, name: &str, value: &str) -> Result<Self, DeclarationError> {
        let header = self.header(name, value, None)?;
        self.headers.push(header);
        Ok(self)
    }

    fn header(
        &self,
        name: &str,
        value: &str,
        env: Option<&str>,
    ) -> Result<McpHeader, DeclarationError> {
        let server = &self.name;
        let header = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
            invalid(format!(
                "--mcp-server {server}: `{name}` is not a header name"
            ))
        })?;
        if RESERVED_HEADERS.contains(&header.as_str()) {
            return Err(invalid(format!(
                "--mcp-server {server}: header `{name}` is set by the MCP transport"
            )));
        }
        if self.headers.iter().any(|h| h.name == header) {
            return Err(invalid(format!(
                "--mcp-server {server}: header `{name}` is declared twice"
            )));
        }
        if self.headers.len() >= MAX_HEADERS {
            return Err(invalid(format!(
                "--mcp-server {server}: at most {MAX_HEADERS} headers"
            )));
        }
        // The value is never quoted back: it is a credential.
        let value = HeaderSecret::new(value).ok_or_else(|| match env {
            Some(var) => invalid(format!(
                "--mcp-server {server}: the value of {var} (header {name}) is not a valid header value"
            )),
            None => invalid(format!(
                "--mcp-server {server}: the value of header {name} is not a valid header value"
            )),
        })?;
        Ok(McpHeader {
            name: header,
            env: env.map(str::to_owned),
            value,
        })
    }

    /// Parses `name=..,url=..[,header=Name:ENV_VAR]...[,timeout_ms=..]
    /// [,max_concurrency=..][,max_output_bytes=..]`, reading each header's value from
    /// its variable (which must be set) through `env`.
    pub fn parse(
        entry: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, DeclarationError> {
        let mut fields: Vec<(&str, &str)> = Vec::new();
        for pair in entry.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| invalid(format!("--mcp-server: `{pair}` is not key=value")))?;
            let key = key.trim();
            if key != "header" && fields.iter().any(|(k, _)| *k == key) {
                return Err(invalid(format!("--mcp-server: `{key}=` is given twice")));
            }
            fields.push((key, value.trim()));
        }
        let field = |key: &str| fields.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
        let name =
            field("name").ok_or_else(|| invalid("--mcp-server: `name=` is required".to_owned()))?;
        let url = field("url")
            .ok_or_else(|| invalid(format!("--mcp-server {name}: `url=` is required")))?;
        let mut spec = McpServerSpec::new(name, url)?;
        let number = |key: &str, min: u64, max: u64| -> Result<Option<u64>, DeclarationError> {
            field(key)
                .map(|v| match v.parse::<u64>() {
                    Ok(x) if (min..=max).contains(&x) => Ok(x),
                    _ => Err(invalid(format!(
                        "--mcp-server {name}: {key} must be a whole number from {min} to {max}"
                    ))),
                })
                .transpose()
        };
        if let Some(ms) = number("timeout_ms", 1, MAX_TIMEOUT_MS)? {
            spec.timeout = Duration::from_millis(ms);
        }
        if let Some(n) = number("max_concurrency", 1, MAX_CONCURRENCY as u64)? {
            spec.max_concurrency = n as usize;
        }
        if let Some(n) = number("max_output_bytes", 64, MAX_OUTPUT_BYTES as u64)? {
            spec.max_output_bytes = n as usize;
        }
        for (key, value) in &fields {
            match *key {
                "name" | "url" | "timeout_ms" | "max_concurrency" | "max_output_bytes" => {}
                "header" => {
                    let (header, var) = value.split_once(':').ok_or_else(|| {
                        invalid(format!(
                            "--mcp-server {name}: header must be `Header-Name:ENV_VAR`"
                        ))
                    })?;
                    let var = var.trim();
                    let secret = env(var).filter(|v| !v.trim().is_empty()).ok_or_else(|| {
                        DeclarationError::MissingHeader {
                            server: name.to_owned(),
                            header: header.trim().to_owned(),
                            var: var.to_owned(),
                        }
                    })?;
                    let header = spec.header(header, &secret, Some(var))?;
                    spec.headers.push(header);
                }
                other => {
                    return Err(invalid(format!(
                        "--mcp-server {name}: unknown field `{other}`"
                    )));
                }
            }
        }
        Ok(spec)
    }

    /// How messages list it: `search (https://tools.example.com/mcp, header
    /// Authorization from SEARCH_TOKEN)`; never a header's value.
    pub fn describe(&self) -> String {
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|h| match &h.env {
                Some(var) => format!("header {} from {var}", h.name),
                None => format!("header {}", h.name),
            })
            .collect();
        if headers.is_empty() {
            format!("{} ({})", self.name, self.url)
        } else {
            format!("{} ({}, {})", self.name, self.url, headers.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "TOKEN").then(|| "Bearer s3cret-token-value".to_owned())
    }

    #[test]
    fn parses_entries() {
        let spec = McpServerSpec::parse(
            "name=search, url=http://Tools:8000/mcp, header=Authorization:TOKEN, header=X-Team:TOKEN, timeout_ms=1500, max_concurrency=2, max_output_bytes=4096",
            env,
        )
        .unwrap();
        assert_eq!(spec.url.as_str(), "http://tools:8000/mcp");
        assert_eq!(spec.headers.len(), 2);
        assert_eq!(spec.headers[0].name.as_str(), "authorization");
        assert_eq!(spec.headers[0].env.as_deref(), Some("TOKEN"));
        assert_eq!(spec.timeout, Duration::from_millis(1500));
        assert_eq!(spec.max_concurrency, 2);
        assert_eq!(spec.max_output_bytes, 4096);
        let plain = McpServerSpec::parse("name=a,url=https://h/mcp", env).unwrap();
        assert_eq!(plain.timeout, DEFAULT_TIMEOUT);
        assert!(plain.headers.is_empty());
    }

    #[test]
    fn refuses_bad_entries_naming_the_flag() {
        for bad in [
            "url=http://h/mcp",
            "name=x",
            "name=x,url=ftp://h/mcp",
            "name=x,url=http://u:p@h/mcp",
            "name=x,url=http://h/mcp,colour=red",
            "name=x,url=http://h/mcp,timeout_ms=0",
            "name=x,url=http://h/mcp,max_concurrency=100000",
            "name=x,url=http://h/mcp,header=Authorization",
            "name=x,url=http://h/mcp,header=Accept:TOKEN",
            "name=x,url=http://h/mcp,header=Bad Name:TOKEN",
            "name=x,url=http://h/mcp,header=A:TOKEN,header=a:TOKEN",
            "name=x,url=http://h/mcp,name=y",
            "name=a b,url=http://h/mcp",
            "name=x,url=http://h/mcp,header=Authorization:UNSET_VARIABLE",
        ] {
            let error = McpServerSpec::parse(bad, env).unwrap_err().to_string();
            assert!(error.starts_with("--mcp-server"), "{bad}: {error}");
        }
        let missing =
            McpServerSpec::parse("name=x,url=http://h/mcp,header=Authorization:UNSET", env)
                .unwrap_err();
        assert_eq!(
            missing.to_string(),
            "--mcp-server x: environment variable UNSET (header Authorization) is not set"
        );
    }

    #[test]
    fn header_values_are_never_printed() {
        let spec = McpServerSpec::parse("name=x,url=http://h/mcp,header=Authorization:TOKEN", env)
            .unwrap();
        for text in [format!("{spec:?}"), spec.describe()] {
            assert!(!text.contains("s3cret"), "{text}");
        }
        assert!(spec.describe().contains("header authorization from TOKEN"));
        assert!(spec.headers[0].value.value().is_sensitive());
    }
}
