//! Tools served by MCP servers the operator declares (`--mcp-server`), reached over the
//! Streamable HTTP transport with the official Rust SDK (`rmcp`).
//!
//! - [`McpServerSpec`] ([`spec`]): one declaration; header values are read from the
//!   environment once at startup, never printed, and sent only to that server's URL.
//! - [`McpServers`]: every declared server, built once by the server or CLI and handed
//!   to the component registry ([`crate::components::Registry::with_mcp_servers`]).
//! - [`McpServer`] ([`client`]): one server's session: tool listing (cached per session),
//!   tool calls with a timeout, an output cap and bounded concurrency, and a new session
//!   when the old one dropped.
//!
//! Requests go through the egress policy's client for declared destinations (internal
//! addresses allowed, link-local and metadata addresses never), which follows no
//! redirects; a literal IP in the URL is checked before each connection.
//!
//! Tool output is untrusted text: text content is joined, other content summarised
//! (never decoded), header values redacted, and the whole cut to the server's cap
//! ([`output`]).

mod client;
mod output;
mod spec;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use crate::components::DeclarationError;
use crate::egress::{Egress, EgressError};
use crate::observe::{Meter, NoMeter};

pub use client::McpServer;
pub use spec::{
    DEFAULT_MAX_CONCURRENCY, DEFAULT_MAX_OUTPUT_BYTES, DEFAULT_TIMEOUT, HeaderSecret, McpHeader,
    McpServerSpec,
};

/// Longest message an [`McpError`] carries from a server, in characters.
const MAX_MESSAGE_CHARS: usize = 1_000;

/// A tool a server offers, as listed by `tools/list`.
#[derive(Debug, Clone, PartialEq)]
pub struct McpTool {
    pub name: String,
    /// Empty when the server gave none.
    pub description: String,
    /// The JSON Schema of the tool's arguments (an object schema).
    pub input_schema: Value,
}

/// What a tool call returned, as text for a model.
#[derive(Debug, Clone, PartialEq)]
pub struct McpToolOutput {
    /// Text content joined by newlines; other content summarised (`[image: image/png,
    /// ...]`); capped at the server's `max_output_bytes` with a `[truncated: ...]` note.
    pub text: String,
    /// The tool reported an error (MCP's `isError`): the text says what went wrong and is
    /// meant for the model, like any other result.
    pub is_error: bool,
}

/// Why listing or calling tools failed. Messages never hold a header value and are
/// bounded, so every variant may be shown to a model as the tool's error.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum McpError {
    /// A run named a server the operator did not declare.
    #[error("unknown MCP server `{name}`; declared: {declared}")]
    UnknownServer { name: String, declared: String },
    /// The egress policy refuses the server's address.
    #[error("MCP server {server}: {source}")]
    Egress {
        server: String,
        #[source]
        source: EgressError,
    },
    /// The session could not be opened (connection refused, handshake failed).
    #[error("MCP server {server}: could not connect: {message}")]
    Connect { server: String, message: String },
    /// No answer within the server's timeout (waiting for a slot included); the request
    /// was cancelled.
    #[error("MCP server {server}: no answer within {timeout_ms} ms")]
    Timeout { server: String, timeout_ms: u64 },
    /// The server answered with a JSON-RPC error (an unknown tool, invalid arguments).
    #[error("MCP server {server}: error {code}: {message}")]
    Server {
        server: String,
        code: i32,
        message: String,
    },
    /// The session broke or the server answered something that is not MCP; the next
    /// request opens a new session.
    #[error("MCP server {server}: {message}")]
    Transport { server: String, message: String },
    /// Tool arguments must be a JSON object.
    #[error("MCP server {server}: tool arguments must be a JSON object")]
    Arguments { server: String },
}

/// Every declared MCP server, by name. Built once (by the server or the CLI) and handed
/// to the registry; cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct McpServers {
    servers: BTreeMap<String, Arc<McpServer>>,
}

impl McpServers {
    /// No servers: every run naming one is refused.
    pub fn none() -> Self {
        McpServers::default()
    }

    /// The declared servers, their requests going through `egress` (as declared
    /// destinations) and their tool calls counted on `meter`. Names must be unique.
    pub fn new(
        specs: Vec<McpServerSpec>,
        egress: Arc<Egress>,
        meter: Arc<dyn Meter>,
    ) -> Result<Self, DeclarationError> {
        let mut servers = BTreeMap::new();
        for spec in specs {
            let name = spec.name.clone();
            let server = Arc::new(McpServer::new(spec, &egress, meter.clone()));
            if servers.insert(name.clone(), server).is_some() {
                return Err(DeclarationError::Invalid(format!(
                    "--mcp-server {name} is declared twice"
                )));
            }
        }
        Ok(McpServers { servers })
    }

    /// [`McpServers::new`] with the local egress policy and no metrics (tests, embedders).
    pub fn local(specs: Vec<McpServerSpec>) -> Result<Self, DeclarationError> {
        Self::new(specs, Arc::new(Egress::local()), NoMeter::shared())
    }

    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// The declared names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.servers.keys().cloned().collect()
    }

    /// A declared server.
    pub fn get(&self, name: &str) -> Result<&Arc<McpServer>, McpError> {
        self.servers.get(name).ok_or_else(|| self.unknown(name))
    }

    /// Checks that every name is declared (for a run's params: a `422` naming the first
    /// unknown one and listing the declared ones).
    pub fn check<S: AsRef<str>>(&self, names: &[S]) -> Result<(), McpError> {
        match names
            .iter()
            .find(|n| !self.servers.contains_key(n.as_ref()))
        {
            Some(name) => Err(self.unknown(name.as_ref())),
            None => Ok(()),
        }
    }

    fn unknown(&self, name: &str) -> McpError {
        McpError::UnknownServer {
            name: output::cap(name.to_owned(), 64),
            declared: self.listing(),
        }
    }

    /// Names and URLs of the declared servers, for messages and the startup log.
    pub fn listing(&self) -> String {
        if self.servers.is_empty() {
            "none (the operator declares them with --mcp-server or THEMIS_MCP_SERVERS)".to_owned()
        } else {
            self.servers
                .values()
                .map(|s| s.spec().describe())
                .collect::<Vec<_>>()
                .join("; ")
        }
    }
}

/// `message` made safe to show: header values redacted, length bounded.
fn clean(message: &str, spec: &McpServerSpec) -> String {
    let redacted = output::redact(message, &spec.headers);
    if redacted.chars().count() > MAX_MESSAGE_CHARS {
        let mut short: String = redacted.chars().take(MAX_MESSAGE_CHARS).collect();
        short.push('…');
        short
    } else {
        redacted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_check_and_unknown_servers() {
        let servers = McpServers::local(vec![
            McpServerSpec::new("b", "http://127.0.0.1:1/mcp").unwrap(),
            McpServerSpec::new("a", "http://127.0.0.1:2/mcp").unwrap(),
        ])
        .unwrap();
        assert_eq!(servers.names(), ["a", "b"]);
        assert!(servers.check(&["a", "b"]).is_ok());
        assert!(servers.check::<&str>(&[]).is_ok());
        let error = servers.check(&["a", "nope"]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown MCP server `nope`; declared: a (http://127.0.0.1:2/mcp); b (http://127.0.0.1:1/mcp)"
        );
        assert!(servers.get("nope").is_err());
        assert_eq!(servers.get("a").unwrap().name(), "a");
        let none = McpServers::none().check(&["x"]).unwrap_err().to_string();
        assert!(none.contains("--mcp-server"), "{none}");
    }

    #[test]
    fn duplicate_names_are_refused() {
        let spec = McpServerSpec::new("a", "http://127.0.0.1:1/mcp").unwrap();
        let error = McpServers::local(vec![spec.clone(), spec]).unwrap_err();
        assert_eq!(error.to_string(), "--mcp-server a is declared twice");
    }
}
