//! One declared MCP server: its session (opened on first use, opened again when it
//! dropped), its tool list (cached per session) and its tool calls.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation};
use rmcp::service::{RoleClient, RunningService, ServiceError, ServiceExt};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::{
    StreamableHttpClientTransportConfig, StreamableHttpError,
};
use serde_json::Value;
use tokio::sync::{Mutex, OnceCell, Semaphore};

use super::spec::McpServerSpec;
use super::{McpError, McpTool, McpToolOutput, clean, output};
use crate::egress::{Egress, EgressError};
use crate::observe::{Meter, ToolCallOutcome};

/// Largest response (a JSON body or one SSE event) read from a server: room for a
/// capped text plus summarised images, far below what would strain memory.
const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;
/// Tools kept from one server's list.
const MAX_TOOLS: usize = 512;
/// Bytes of a tool description kept.
const MAX_DESCRIPTION_BYTES: usize = 8 * 1024;

/// An open session and the tool list it returned.
struct Session {
    service: RunningService<RoleClient, ClientConfig>,
    tools: OnceCell<Arc<[McpTool]>>,
}

impl Session {
    fn is_open(&self) -> bool {
        !self.service.is_closed() && !self.service.is_transport_closed()
    }
}

/// One declared server. Tool calls from every run share its session and its
/// concurrency limit.
pub struct McpServer {
    spec: McpServerSpec,
    client: Result<reqwest::Client, EgressError>,
    egress: Arc<Egress>,
    meter: Arc<dyn Meter>,
    slots: Semaphore,
    session: Mutex<Option<Arc<Session>>>,
}

impl std::fmt::Debug for McpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpServer")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl McpServer {
    pub(super) fn new(spec: McpServerSpec, egress: &Arc<Egress>, meter: Arc<dyn Meter>) -> Self {
        McpServer {
            client: egress.client(true).cloned(),
            egress: egress.clone(),
            meter,
            slots: Semaphore::new(spec.max_concurrency),
            session: Mutex::new(None),
            spec,
        }
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The declaration (header values redacted when printed).
    pub fn spec(&self) -> &McpServerSpec {
        &self.spec
    }

    /// The server's tools: listed once per session (again after a reconnect), at most
    /// 512, descriptions cut to 8 KiB. Bounded by the server's timeout.
    pub async fn list_tools(&self) -> Result<Arc<[McpTool]>, McpError> {
        let deadline = Instant::now() + self.spec.timeout;
        // A session that dropped since it was opened is replaced once.
        let mut retried = false;
        loop {
            let session = self.session(deadline).await?;
            let listed = session
                .tools
                .get_or_try_init(|| async {
                    let listing = self.within(deadline, session.service.list_all_tools());
                    let tools = listing.await?.map_err(|e| self.service_error(e))?;
                    Ok::<_, McpError>(tools.into_iter().take(MAX_TOOLS).map(tool).collect())
                })
                .await;
            match listed {
                Ok(tools) => return Ok(tools.clone()),
                Err(error @ McpError::Transport { .. }) => {
                    self.drop_session(&session).await;
                    if retried {
                        return Err(error);
                    }
                    retried = true;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Calls tool `name` with `arguments` (a JSON object, or `null` for none). A tool's
    /// own failure is `Ok` with `is_error`; `Err` is a failure to get an answer. The
    /// timeout covers waiting for a slot, opening a session and the call; a call that
    /// times out is cancelled on the server. A call is sent again on a new session
    /// only when the old one was found closed before it was sent.
    pub async fn call_tool(&self, name: &str, arguments: Value) -> Result<McpToolOutput, McpError> {
        let started = Instant::now();
        let result = self
            .call(name, arguments, started + self.spec.timeout)
            .await;
        let outcome = match &result {
            Ok(output) if output.is_error => ToolCallOutcome::ToolError,
            Ok(_) => ToolCallOutcome::Success,
            Err(McpError::Timeout { .. }) => ToolCallOutcome::Timeout,
            Err(McpError::Server { .. } | McpError::Arguments { .. }) => {
                ToolCallOutcome::ServerError
            }
            Err(_) => ToolCallOutcome::Unreachable,
        };
        self.meter
            .mcp_tool_call(&self.spec.name, outcome, started.elapsed());
        result
    }

    async fn call(
        &self,
        name: &str,
        arguments: Value,
        deadline: Instant,
    ) -> Result<McpToolOutput, McpError> {
        let arguments = match arguments {
            Value::Object(map) => Some(map),
            Value::Null => None,
            _ => {
                return Err(McpError::Arguments {
                    server: self.spec.name.clone(),
                });
            }
        };
        let _slot = self
            .within(deadline, self.slots.acquire())
            .await?
            .map_err(|_| self.transport("the server is shutting down"))?;
        let mut params = CallToolRequestParams::new(name.to_owned());
        params.arguments = arguments;
        for attempt in 0..2 {
            let session = self.session(deadline).await?;
            let called = self
                .within(deadline, session.service.call_tool(params.clone()))
                .await?;
            match called {
                Ok(result) => {
                    let text = output::redact(&output::text_of(&result), &self.spec.headers);
                    return Ok(McpToolOutput {
                        text: output::cap(text, self.spec.max_output_bytes),
                        is_error: result.is_error.unwrap_or(false),
                    });
                }
                // Closed before the request left: nothing ran on the server.
                Err(ServiceError::TransportClosed) if attempt == 0 => {
                    self.drop_session(&session).await;
                }
                Err(error) => {
                    let error = self.service_error(error);
                    if matches!(error, McpError::Transport { .. }) {
                        self.drop_session(&session).await;
                    }
                    return Err(error);
                }
            }
        }
        Err(self.transport("the session closed twice in a row"))
    }

    /// The open session, or a new one (one connection attempt at a time).
    async fn session(&self, deadline: Instant) -> Result<Arc<Session>, McpError> {
        let mut current = self.within(deadline, self.session.lock()).await?;
        if let Some(session) = current.as_ref().filter(|s| s.is_open()) {
            return Ok(session.clone());
        }
        *current = None;
        let session = Arc::new(self.within(deadline, self.connect()).await??);
        *current = Some(session.clone());
        Ok(session)
    }

    async fn connect(&self) -> Result<Session, McpError> {
        let server = self.spec.name.clone();
        self.egress
            .check_url(&self.spec.url, true)
            .map_err(|source| McpError::Egress {
                server: server.clone(),
                source,
            })?;
        let client = self
            .client
            .clone()
            .map_err(|source| McpError::Egress { server, source })?;
        let headers: HashMap<_, _> = self
            .spec
            .headers
            .iter()
            .map(|h| (h.name.clone(), h.value.value().clone()))
            .collect();
        let config = StreamableHttpClientTransportConfig::with_uri(self.spec.url.as_str())
            .custom_headers(headers)
            .max_concurrent_requests(self.spec.max_concurrency + 1)
            .max_json_response_size(MAX_RESPONSE_BYTES)
            .max_sse_event_size(MAX_RESPONSE_BYTES)
            .reinit_on_expired_session(true);
        let transport = StreamableHttpClientTransport::with_client(client, config);
        let info = ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("themis", env!("CARGO_PKG_VERSION")),
        );
        let service = info.serve(transport).await.map_err(|e| McpError::Connect {
            server: self.spec.name.clone(),
            message: clean(&error_chain(&e), &self.spec),
        })?;
        tracing::debug!(server = %self.spec.name, "MCP session opened");
        Ok(Session {
            service,
            tools: OnceCell::new(),
        })
    }

    /// Forgets `session` (if it is still the current one) and closes it.
    async fn drop_session(&self, session: &Arc<Session>) {
        let mut current = self.session.lock().await;
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, session)) {
            *current = None;
        }
        session.service.cancellation_token().cancel();
    }

    /// `future`, or a timeout error at `deadline`.
    async fn within<T>(
        &self,
        deadline: Instant,
        future: impl Future<Output = T>,
    ) -> Result<T, McpError> {
        tokio::time::timeout_at(deadline.into(), future)
            .await
            .map_err(|_| McpError::Timeout {
                server: self.spec.name.clone(),
                timeout_ms: u64::try_from(self.spec.timeout.as_millis()).unwrap_or(u64::MAX),
            })
    }

    fn transport(&self, message: &str) -> McpError {
        McpError::Transport {
            server: self.spec.name.clone(),
            message: message.to_owned(),
        }
    }

    fn service_error(&self, error: ServiceError) -> McpError {
        let server = self.spec.name.clone();
        match error {
            ServiceError::McpError(data) => McpError::Server {
                server,
                code: data.code.0,
                message: clean(&data.message, &self.spec),
            },
            ServiceError::Timeout { timeout } => McpError::Timeout {
                server,
                timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            },
            other => McpError::Transport {
                server,
                message: clean(&error_chain(&other), &self.spec),
            },
        }
    }
}

/// What went wrong, without the transport's wrappers: the HTTP client's error with its
/// causes (`connection refused`, a refused address) when there is one, else the
/// innermost error.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    loop {
        if let Some(StreamableHttpError::Client(http)) =
            current.downcast_ref::<StreamableHttpError<reqwest::Error>>()
        {
            return causes(http);
        }
        match current.source() {
            Some(next) => current = next,
            None => return current.to_string(),
        }
    }
}

/// An error and its sources, `: `-separated (reqwest's own message hides the cause).
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}

fn tool(tool: rmcp::model::Tool) -> McpTool {
    let description = tool.description.map(|d| d.into_owned()).unwrap_or_default();
    McpTool {
        name: tool.name.into_owned(),
        description: cut(description, MAX_DESCRIPTION_BYTES),
        input_schema: Value::Object((*tool.input_schema).clone()),
    }
}

fn cut(mut text: String, max_bytes: usize) -> String {
    if text.len() > max_bytes {
        let mut end = max_bytes;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}
