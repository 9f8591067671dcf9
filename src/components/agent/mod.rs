//! What `openai/agent` needs besides a model: the case's conversation
//! ([`conversation`]), the tools a loop may call ([`tools`]: mock functions from
//! [`functions`], MCP servers through [`mcp`]), and the limits of a loop ([`limits`]: a run's, capped
//! by the operator's).

mod conversation;
mod functions;
mod limits;
mod mcp;
pub(crate) mod tools;

pub(crate) use conversation::{CONVERSATION_FIELD, at_path, check_conversation};
pub(crate) use functions::{MockFunctions, read_functions};
pub use limits::AgentCaps;
pub(crate) use limits::{Limits, read_limits};
pub(crate) use mcp::McpSource;
pub(crate) use tools::{ToolResult, ToolSource, ToolSpec, Toolbox};
