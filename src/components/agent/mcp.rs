//! An MCP server the operator declared, as a [`ToolSource`]: its tools offered to the
//! model, its answers (text, `is_error`) handed back as they are. A server that cannot
//! be reached while listing fails the case; while calling, the failure is a tool error
//! the model sees.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::tools::{ToolError, ToolOutput, ToolSource, ToolSpec};
use crate::components::mcp::McpServer;

pub(crate) struct McpSource(pub Arc<McpServer>);

#[async_trait]
impl ToolSource for McpSource {
    fn name(&self) -> &str {
        self.0.name()
    }

    async fn tools(&self) -> Result<Vec<ToolSpec>, ToolError> {
        let tools = self
            .0
            .list_tools()
            .await
            .map_err(|e| ToolError(e.to_string()))?;
        Ok(tools
            .iter()
            .map(|tool| ToolSpec {
                name: tool.name.clone(),
                description: (!tool.description.is_empty()).then(|| tool.description.clone()),
                parameters: tool.input_schema.clone(),
            })
            .collect())
    }

    async fn call(&self, name: &str, arguments: Value) -> Result<ToolOutput, ToolError> {
        let output = self
            .0
            .call_tool(name, arguments)
            .await
            .map_err(|e| ToolError(e.to_string()))?;
        Ok(ToolOutput {
            text: output.text,
            is_error: output.is_error,
        })
    }
}
