//! The tools an agent may call: a [`ToolSource`] is anything that lists tools and runs
//! them (mock functions declared in the definition, an MCP server the operator
//! declared); a [`Toolbox`] is the sources of one case, narrowed by `tools_allow`, that
//! the loop asks by name.
//!
//! Tool output is untrusted text: it is capped and handed to the model, never
//! interpreted here. Failures (a tool's error, an unknown name, arguments that are not
//! JSON) go back to the model as tool errors, as OpenAI's and MCP's conventions say.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};

/// A tool as offered to the model.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ToolSpec {
    pub name: String,
    pub description: Option<String>,
    /// JSON Schema of the arguments (an object schema).
    pub parameters: Value,
}

impl ToolSpec {
    /// The chat-completions `tools` entry.
    pub(crate) fn to_openai(&self) -> Value {
        let mut function = json!({"name": self.name, "parameters": self.parameters});
        if let Some(description) = &self.description {
            function["description"] = Value::String(description.clone());
        }
        json!({"type": "function", "function": function})
    }
}

/// What a tool call returned, as text for the model.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ToolOutput {
    pub text: String,
    pub is_error: bool,
}

/// A tool source could not list or run tools (the server unreachable, say).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ToolError(pub String);

/// A source of tools: mock functions, an MCP server.
#[async_trait]
pub(crate) trait ToolSource: Send + Sync {
    /// How transcripts and metrics name the source (`functions`, a server's name).
    fn name(&self) -> &str;
    async fn tools(&self) -> Result<Vec<ToolSpec>, ToolError>;
    async fn call(&self, name: &str, arguments: Value) -> Result<ToolOutput, ToolError>;
}

/// The tools of one case: every source's tools (narrowed by `allow`), by name.
pub(crate) struct Toolbox {
    /// Each offered tool and the source that runs it.
    tools: Vec<(ToolSpec, Arc<dyn ToolSource>)>,
    max_output_chars: usize,
}

/// A tool call's result as the loop records it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ToolResult {
    pub output: ToolOutput,
    /// The source that ran it (`None`: no tool of that name).
    pub source: Option<String>,
}

impl Toolbox {
    /// Lists every source's tools. A name offered twice is an error (the model could
    /// not tell them apart); so is a source that cannot list its tools.
    pub(crate) async fn build(
        sources: Vec<Arc<dyn ToolSource>>,
        allow: Option<&[String]>,
        max_output_chars: usize,
    ) -> Result<Toolbox, ToolError> {
        let mut tools: Vec<(ToolSpec, Arc<dyn ToolSource>)> = Vec::new();
        for source in sources {
            let listed = source
                .tools()
                .await
                .map_err(|e| ToolError(format!("listing the tools of {}: {e}", source.name())))?;
            for spec in listed {
                if allow.is_some_and(|allow| !allow.contains(&spec.name)) {
                    continue;
                }
                if let Some((_, other)) = tools.iter().find(|(t, _)| t.name == spec.name) {
                    return Err(ToolError(format!(
                        "tool `{}` is offered by both {} and {}; narrow them with tools_allow",
                        spec.name,
                        other.name(),
                        source.name()
                    )));
                }
                tools.push((spec, source.clone()));
            }
        }
        Ok(Toolbox {
            tools,
            max_output_chars,
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    /// The chat-completions `tools` list.
    pub(crate) fn openai_tools(&self) -> Vec<Value> {
        self.tools
            .iter()
            .map(|(spec, _)| spec.to_openai())
            .collect()
    }

    /// Runs one call. Never fails: whatever goes wrong is a tool error for the model.
    pub(crate) async fn call(&self, name: &str, arguments: &str) -> ToolResult {
        let Some((_, source)) = self.tools.iter().find(|(spec, _)| spec.name == name) else {
            let names: Vec<&str> = self.tools.iter().map(|(s, _)| s.name.as_str()).collect();
            return ToolResult {
                output: self.error(format!(
                    "unknown tool `{name}`; available tools: {}",
                    if names.is_empty() {
                        "none".to_owned()
                    } else {
                        names.join(", ")
                    }
                )),
                source: None,
            };
        };
        let source_name = Some(source.name().to_owned());
        let arguments = if arguments.trim().is_empty() {
            json!({})
        } else {
            match serde_json::from_str::<Value>(arguments) {
                Ok(value @ Value::Object(_)) => value,
                Ok(_) => {
                    return ToolResult {
                        output: self.error("the arguments must be a JSON object".to_owned()),
                        source: source_name,
                    };
                }
                Err(e) => {
                    return ToolResult {
                        output: self.error(format!("the arguments are not valid JSON: {e}")),
                        source: source_name,
                    };
                }
            }
        };
        let output = match source.call(name, arguments).await {
            Ok(output) => ToolOutput {
                text: cap(&output.text, self.max_output_chars),
                is_error: output.is_error,
            },
            Err(e) => self.error(e.0),
        };
        ToolResult {
            output,
            source: source_name,
        }
    }

    fn error(&self, message: String) -> ToolOutput {
        ToolOutput {
            text: cap(&message, self.max_output_chars),
            is_error: true,
        }
    }
}

/// At most `max_chars` characters, with a note saying how much was cut.
pub(crate) fn cap(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        None => text.to_owned(),
        Some((end, _)) => {
            let total = text.chars().count();
            format!(
                "{}\n[truncated: {} of {total} characters shown]",
                &text[..end],
                max_chars
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;

    #[async_trait]
    impl ToolSource for Echo {
        fn name(&self) -> &str {
            "echo-server"
        }
        async fn tools(&self) -> Result<Vec<ToolSpec>, ToolError> {
            Ok(["echo", "fail"]
                .into_iter()
                .map(|name| ToolSpec {
                    name: name.to_owned(),
                    description: None,
                    parameters: json!({"type": "object"}),
                })
                .collect())
        }
        async fn call(&self, name: &str, arguments: Value) -> Result<ToolOutput, ToolError> {
            match name {
                "echo" => Ok(ToolOutput {
                    text: arguments.to_string().repeat(10),
                    is_error: false,
                }),
                _ => Err(ToolError("it broke".into())),
            }
        }
    }

    #[tokio::test]
    async fn calls_go_to_their_source_and_problems_become_tool_errors() {
        let box_ = Toolbox::build(vec![Arc::new(Echo)], None, 60)
            .await
            .unwrap();
        assert_eq!(box_.openai_tools().len(), 2);
        let ok = box_.call("echo", r#"{"a":1}"#).await;
        assert!(!ok.output.is_error);
        assert!(ok.output.text.starts_with(r#"{"a":1}{"a":1}"#));
        assert!(
            ok.output
                .text
                .contains("[truncated: 60 of 70 characters shown]")
        );
        assert_eq!(ok.source.as_deref(), Some("echo-server"));
        for (name, args, says) in [
            (
                "nope",
                "{}",
                "unknown tool `nope`; available tools: echo, fail",
            ),
            ("echo", "{not json", "not valid JSON"),
            ("echo", "[1]", "must be a JSON object"),
            ("fail", "", "it broke"),
        ] {
            let result = box_.call(name, args).await;
            assert!(result.output.is_error, "{name}");
            assert!(result.output.text.contains(says), "{:?}", result.output);
        }
    }

    #[tokio::test]
    async fn allow_narrows_and_duplicates_are_refused() {
        let allow = vec!["echo".to_owned()];
        let narrowed = Toolbox::build(vec![Arc::new(Echo)], Some(&allow), 100)
            .await
            .unwrap();
        assert_eq!(narrowed.openai_tools().len(), 1);
        assert!(narrowed.call("fail", "{}").await.output.is_error);
        let twice = Toolbox::build(vec![Arc::new(Echo), Arc::new(Echo)], None, 100).await;
        assert!(twice.err().unwrap().0.contains("offered by both"));
    }
}
