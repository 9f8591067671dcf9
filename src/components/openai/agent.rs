//! `openai/agent`: `openai/chat` in a loop with tools. The model answers; each tool call
//! it asks for runs (concurrently when it asks for several) and its result goes back as
//! a `tool` message; until the model answers without tool calls or a limit is hit.
//!
//! Every model call goes through [`ClientConfig::complete_with_tools`]: the response
//! cache and the provider's stack, as `openai/chat`'s calls do. A case re-run after a
//! crash sends the same requests turn by turn (same messages, seed and tools; mock tool
//! results come from the case), so every turn answered before is a cache hit.
//!
//! A hit limit ends the loop with a typed outcome in the transcript; the case completes
//! with the last answer as its output.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use serde_json::Value;

use super::Shared;
use super::client::{ClientConfig, Message, ToolCall};
use super::generator::ChatGenerator;
use crate::components::agent::{
    Limits, McpSource, MockFunctions, ToolResult, ToolSource, ToolSpec, Toolbox, read_functions,
    read_limits,
};
use crate::components::mcp::{McpServer, McpServers};
use crate::components::{
    CallContext, ComponentError, GenerateRequest, Generation, Generator, Params,
};
use crate::model::{AgentOutcome, ToolCallRecord, ToolResultRecord, Transcript, Turn, Usage};
use crate::observe::{AttributeValue, Attributes, Meter, SpanStatus};

pub(super) struct AgentGenerator {
    chat: ChatGenerator,
    /// The declared MCP servers the run named (`mcp_servers`), in its order.
    servers: Vec<Arc<McpServer>>,
    /// The operator's metrics: loop outcomes and tool calls.
    meter: Arc<dyn Meter>,
    functions: Arc<Vec<ToolSpec>>,
    tools_allow: Option<Vec<String>>,
    limits: Limits,
}

impl AgentGenerator {
    pub(super) fn from_params(
        p: &mut Params<'_>,
        shared: &Arc<Shared>,
        declared: &McpServers,
    ) -> Self {
        let chat = ChatGenerator::from_params_as(p, "openai/agent", shared);
        let functions = read_functions(p);
        let limits = read_limits(p, &shared.outbound.agent_caps, chat.client.price.is_some());
        let servers = read_mcp_servers(p, declared);
        let tools_allow = p.string_list("tools_allow");
        AgentGenerator {
            servers,
            meter: shared.outbound.meter.clone(),
            chat,
            functions: Arc::new(functions),
            tools_allow,
            limits,
        }
    }

    /// The tool sources of one case.
    fn sources(&self, request: &GenerateRequest<'_>) -> Vec<Arc<dyn ToolSource>> {
        let mut sources: Vec<Arc<dyn ToolSource>> = self
            .servers
            .iter()
            .map(|server| Arc::new(McpSource(server.clone())) as Arc<dyn ToolSource>)
            .collect();
        if !self.functions.is_empty() {
            sources.push(Arc::new(MockFunctions {
                specs: self.functions.clone(),
                results: request
                    .case
                    .input
                    .get("tool_results")
                    .cloned()
                    .unwrap_or(Value::Null),
            }));
        }
        sources
    }

    fn fail(&self, message: impl std::fmt::Display) -> ComponentError {
        ComponentError::new(format!(
            "openai/agent {}: {message}",
            self.chat.client.provider()
        ))
    }
}

/// `mcp_servers`: names of servers the operator declared (a 422 lists them otherwise).
fn read_mcp_servers(p: &mut Params<'_>, declared: &McpServers) -> Vec<Arc<McpServer>> {
    let Some(names) = p.string_list("mcp_servers") else {
        return Vec::new();
    };
    let mut servers: Vec<Arc<McpServer>> = Vec::with_capacity(names.len());
    for name in &names {
        match declared.get(name) {
            Ok(server) if servers.iter().any(|s| Arc::ptr_eq(s, server)) => {
                p.error("mcp_servers", format!("`{name}` is named twice"));
            }
            Ok(server) => servers.push(server.clone()),
            Err(e) => p.error("mcp_servers", e.to_string()),
        }
    }
    servers
}

/// The state of one loop.
struct Progress {
    turns: Vec<Turn>,
    usage: Usage,
    tool_calls: u64,
}

impl Progress {
    /// The limit the loop has reached after a turn that asked for `asked` tool calls.
    fn limit(&self, limits: &Limits, asked: u64) -> Option<AgentOutcome> {
        let tokens = self.usage.prompt_tokens + self.usage.completion_tokens;
        if self.turns.len() as u64 + 1 >= limits.max_turns {
            Some(AgentOutcome::MaxTurns)
        } else if limits.token_limit.is_some_and(|limit| tokens >= limit) {
            Some(AgentOutcome::TokenLimit)
        } else if limits
            .cost_limit_usd
            .is_some_and(|limit| self.usage.cost_usd >= limit)
        {
            Some(AgentOutcome::CostLimit)
        } else if self.tool_calls + asked > limits.max_tool_calls {
            Some(AgentOutcome::MaxToolCalls)
        } else {
            None
        }
    }
}

fn call_record(call: &ToolCall) -> ToolCallRecord {
    ToolCallRecord {
        id: call.id.clone(),
        name: call.function.name.clone(),
        arguments: serde_json::from_str(&call.function.arguments)
            .unwrap_or_else(|_| Value::String(call.function.arguments.clone())),
    }
}

/// Runs one tool call under an `execute_tool` span (GenAI semantic conventions).
async fn run_tool(toolbox: &Toolbox, call: &ToolCall, ctx: CallContext<'_>) -> (ToolResult, u64) {
    let tracer = ctx.tracer;
    let span = ctx.parent_span.map(|parent| {
        let attributes: Attributes = if tracer.is_recording() {
            vec![
                ("gen_ai.operation.name", "execute_tool".into()),
                ("gen_ai.tool.name", call.function.name.as_str().into()),
                ("gen_ai.tool.call.id", call.id.as_str().into()),
                ("gen_ai.tool.type", "function".into()),
            ]
        } else {
            Attributes::new()
        };
        tracer.start_span("execute_tool", attributes, Some(parent))
    });
    let started = Instant::now();
    let result = toolbox
        .call(&call.function.name, &call.function.arguments)
        .await;
    let elapsed = started.elapsed().as_millis() as u64;
    if let Some(span) = span {
        if let Some(source) = &result.source {
            tracer.set_attribute(
                &span,
                "themis.tool.source",
                AttributeValue::from(source.as_str()),
            );
        }
        if result.output.is_error {
            tracer.end_span(
                span,
                SpanStatus::Error,
                Some("the tool answered with an error"),
            );
        } else {
            tracer.end_span(span, SpanStatus::Ok, None);
        }
    }
    (result, elapsed)
}

/// The span of one model call of the loop (when the call has a parent span).
struct ModelCallSpan<'a> {
    tracer: &'a dyn crate::observe::TracingProvider,
    span: Option<crate::observe::Span>,
}

impl<'a> ModelCallSpan<'a> {
    fn start(ctx: CallContext<'a>, client: &ClientConfig, turn: usize) -> Self {
        let tracer = ctx.tracer;
        let span = ctx.parent_span.map(|parent| {
            let attributes: Attributes = if tracer.is_recording() {
                vec![
                    ("gen_ai.operation.name", "chat".into()),
                    ("gen_ai.request.model", client.model.as_str().into()),
                    ("themis.turn", AttributeValue::from(turn as u64)),
                ]
            } else {
                Attributes::new()
            };
            tracer.start_span("chat", attributes, Some(parent))
        });
        ModelCallSpan { tracer, span }
    }

    fn end(self, outcome: Result<&Usage, &str>) {
        let Some(span) = self.span else {
            return;
        };
        match outcome {
            Ok(usage) => {
                for (key, value) in [
                    ("gen_ai.usage.input_tokens", usage.prompt_tokens),
                    ("gen_ai.usage.output_tokens", usage.completion_tokens),
                    ("themis.requests", usage.requests),
                ] {
                    self.tracer
                        .set_attribute(&span, key, AttributeValue::from(value));
                }
                self.tracer.end_span(span, SpanStatus::Ok, None);
            }
            Err(message) => self.tracer.end_span(span, SpanStatus::Error, Some(message)),
        }
    }
}

/// Runs a turn's tool calls concurrently (the model asked for them together).
async fn run_tools(
    toolbox: &Toolbox,
    calls: &[ToolCall],
    ctx: CallContext<'_>,
) -> Vec<(ToolResult, u64)> {
    futures::future::join_all(calls.iter().map(|call| run_tool(toolbox, call, ctx))).await
}

#[async_trait]
impl Generator for AgentGenerator {
    async fn generate(&self, request: GenerateRequest<'_>) -> Result<Generation, ComponentError> {
        let limits = &self.limits;
        let deadline = Instant::now() + limits.time_limit;
        let remaining = || deadline.checked_duration_since(Instant::now());
        let client: &ClientConfig = &self.chat.client;
        let mut messages = self.chat.render(request.dataset_id, request.case).await?;
        if messages.is_empty() {
            return Err(self.fail("the case's conversation is empty"));
        }
        let toolbox = Toolbox::build(
            self.sources(&request),
            self.tools_allow.as_deref(),
            limits.max_tool_output_chars,
        );
        let toolbox = match tokio::time::timeout(limits.time_limit, toolbox).await {
            Ok(Ok(toolbox)) => toolbox,
            Ok(Err(e)) => return Err(self.fail(e)),
            Err(_) => return Err(self.fail("listing the tools took longer than time_limit_s")),
        };
        let tools = toolbox.openai_tools();
        let tools = (!toolbox.is_empty()).then_some(tools.as_slice());
        let endpoint = client.endpoint();
        let mut progress = Progress {
            turns: Vec::new(),
            usage: Usage::default(),
            tool_calls: 0,
        };
        let outcome = loop {
            let Some(left) = remaining() else {
                break AgentOutcome::TimeLimit;
            };
            let started = Instant::now();
            // One `chat` span per model call (answered from the cache or not), the
            // provider's attempts under it.
            let span = ModelCallSpan::start(request.ctx, client, progress.turns.len());
            let ctx = CallContext {
                parent_span: span.span.as_ref().or(request.ctx.parent_span),
                ..request.ctx
            };
            let call =
                client.complete_with_tools(ctx, &endpoint, &messages, tools, request.seed, 1);
            let completion = match tokio::time::timeout(left, call).await {
                Err(_) => {
                    span.end(Err("time_limit_s reached"));
                    break AgentOutcome::TimeLimit;
                }
                Ok(Err(error)) => {
                    span.end(Err(&error.message));
                    return Err(error.into());
                }
                Ok(Ok(completion)) => {
                    span.end(Ok(&completion.usage));
                    completion
                }
            };
            progress.usage.add(&completion.usage);
            let choice = completion
                .choices
                .into_iter()
                .next()
                .ok_or_else(|| self.fail("the response has no choices"))?;
            let mut turn = Turn {
                content: choice.content.clone(),
                tool_calls: choice.tool_calls.iter().map(call_record).collect(),
                tool_results: Vec::new(),
                finish_reason: choice.finish_reason.clone(),
                usage: completion.usage,
                latency_ms: started.elapsed().as_millis() as u64,
            };
            if choice.tool_calls.is_empty() {
                progress.turns.push(turn);
                break AgentOutcome::Answered;
            }
            if let Some(limit) = progress.limit(limits, choice.tool_calls.len() as u64) {
                progress.turns.push(turn);
                break limit;
            }
            let runs = run_tools(&toolbox, &choice.tool_calls, request.ctx);
            let Some(left) = remaining() else {
                progress.turns.push(turn);
                break AgentOutcome::TimeLimit;
            };
            let Ok(results) = tokio::time::timeout(left, runs).await else {
                progress.turns.push(turn);
                break AgentOutcome::TimeLimit;
            };
            progress.tool_calls += choice.tool_calls.len() as u64;
            messages.push(Message {
                role: "assistant".to_owned(),
                content: choice.content,
                tool_calls: choice.tool_calls.clone(),
                tool_call_id: None,
            });
            for (call, (result, duration_ms)) in choice.tool_calls.iter().zip(results) {
                self.meter.agent_tool_call(
                    result.source.as_deref().unwrap_or("unknown"),
                    result.output.is_error,
                );
                messages.push(Message {
                    role: "tool".to_owned(),
                    content: result.output.text.clone(),
                    tool_calls: Vec::new(),
                    tool_call_id: Some(call.id.clone()),
                });
                turn.tool_results.push(ToolResultRecord {
                    tool_call_id: call.id.clone(),
                    name: call.function.name.clone(),
                    content: result.output.text,
                    is_error: result.output.is_error,
                    source: result.source,
                    duration_ms,
                });
            }
            progress.turns.push(turn);
        };
        self.meter.agent_outcome(outcome.as_str());
        let last = progress.turns.last();
        let content = last.map(|t| t.content.clone()).unwrap_or_default();
        let finish_reason = last.and_then(|t| t.finish_reason.clone());
        let transcript = Transcript {
            outcome,
            turns: progress.turns,
        };
        let mut generation = if outcome == AgentOutcome::Answered {
            self.chat
                .generation(content, finish_reason, progress.usage)?
        } else {
            // The last answer as it is: a loop cut short need not have produced what
            // `output: "json"` expects.
            Generation {
                output: Value::String(content.clone()),
                raw_text: Some(content),
                finish_reason,
                usage: progress.usage,
                transcript: None,
            }
        };
        generation.transcript = Some(transcript);
        Ok(generation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::components::agent::tools::{ToolError, ToolOutput};
    use crate::components::openai::client::FunctionCall;

    /// Each call waits until all of them have started: it only returns if they run
    /// together.
    struct Together(tokio::sync::Barrier);

    #[async_trait]
    impl ToolSource for Together {
        fn name(&self) -> &str {
            "together"
        }
        async fn tools(&self) -> Result<Vec<ToolSpec>, ToolError> {
            Ok(vec![ToolSpec {
                name: "wait".into(),
                description: None,
                parameters: serde_json::json!({"type": "object"}),
            }])
        }
        async fn call(&self, _: &str, _: Value) -> Result<ToolOutput, ToolError> {
            self.0.wait().await;
            Ok(ToolOutput {
                text: "done".into(),
                is_error: false,
            })
        }
    }

    #[tokio::test]
    async fn the_calls_of_a_turn_run_concurrently() {
        let source: Arc<dyn ToolSource> = Arc::new(Together(tokio::sync::Barrier::new(3)));
        let toolbox = Toolbox::build(vec![source], None, 100).await.unwrap();
        let calls: Vec<ToolCall> = (0..3)
            .map(|i| ToolCall {
                id: format!("c{i}"),
                kind: "function",
                function: FunctionCall {
                    name: "wait".into(),
                    arguments: "{}".into(),
                },
            })
            .collect();
        let ran = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            run_tools(&toolbox, &calls, CallContext::detached()),
        )
        .await
        .expect("the calls wait for each other: run one by one they never finish");
        assert!(ran.iter().all(|(r, _)| r.output.text == "done"));
    }
}
