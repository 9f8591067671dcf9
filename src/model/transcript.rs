//! What an agent did for one candidate: every model call (its answer, the tool calls it
//! asked for and their results, usage and latency) and how the loop ended.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Usage;

/// Why an agent loop ended: the model answered without tool calls, or a limit was hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentOutcome {
    Answered,
    MaxTurns,
    MaxToolCalls,
    TokenLimit,
    TimeLimit,
    CostLimit,
}

impl AgentOutcome {
    pub const ALL: [AgentOutcome; 6] = [
        AgentOutcome::Answered,
        AgentOutcome::MaxTurns,
        AgentOutcome::MaxToolCalls,
        AgentOutcome::TokenLimit,
        AgentOutcome::TimeLimit,
        AgentOutcome::CostLimit,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            AgentOutcome::Answered => "answered",
            AgentOutcome::MaxTurns => "max_turns",
            AgentOutcome::MaxToolCalls => "max_tool_calls",
            AgentOutcome::TokenLimit => "token_limit",
            AgentOutcome::TimeLimit => "time_limit",
            AgentOutcome::CostLimit => "cost_limit",
        }
    }
}

/// A tool call the model asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCallRecord {
    pub id: String,
    pub name: String,
    /// The arguments parsed as JSON; the text as sent when it is not JSON.
    pub arguments: Value,
}

/// What a tool call returned (text as the model saw it, capped).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolResultRecord {
    pub tool_call_id: String,
    pub name: String,
    pub content: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_error: bool,
    /// Where the tool came from: `functions` or the MCP server's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub duration_ms: u64,
}

/// One model call and the tool calls it led to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    /// The assistant's text ("" when it only called tools).
    pub content: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallRecord>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_results: Vec<ToolResultRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    pub usage: Usage,
    /// The model call's duration (0 when answered from the response cache).
    pub latency_ms: u64,
}

/// An agent's transcript for one candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transcript {
    pub outcome: AgentOutcome,
    pub turns: Vec<Turn>,
}

impl Transcript {
    /// Every tool call, in the order the model asked for them.
    pub fn tool_calls(&self) -> impl Iterator<Item = &ToolCallRecord> {
        self.turns.iter().flat_map(|t| t.tool_calls.iter())
    }

    /// The transcript as readable text, for judge prompts: one block per message.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for turn in &self.turns {
            for call in &turn.tool_calls {
                out.push_str(&format!(
                    "assistant → tool call {} ({}): {}\n",
                    call.name,
                    call.id,
                    super::canonical_json(&call.arguments)
                ));
            }
            for result in &turn.tool_results {
                let label = if result.is_error {
                    "tool error"
                } else {
                    "tool"
                };
                out.push_str(&format!(
                    "{label} {} ({}): {}\n",
                    result.name, result.tool_call_id, result.content
                ));
            }
            if turn.tool_calls.is_empty() || !turn.content.is_empty() {
                out.push_str(&format!("assistant: {}\n", turn.content));
            }
        }
        if self.outcome != AgentOutcome::Answered {
            out.push_str(&format!("(ended: {})\n", self.outcome.as_str()));
        }
        out
    }
}
