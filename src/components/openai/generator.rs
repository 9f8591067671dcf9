//! `openai/chat`: a generator calling an OpenAI-compatible chat-completions endpoint.

use async_trait::async_trait;
use regex::Regex;
use serde_json::Value;
use std::sync::LazyLock;

use std::sync::Arc;

use super::Shared;
use super::client::{CallError, ClientConfig, FunctionCall, Message, ToolCall};
use super::template::Templates;
use super::{read_client, read_template, truncate};
use crate::components::agent::{at_path, check_conversation};
use crate::components::{
    ComponentError, Estimate, EstimateRequest, GenerateRequest, Generation, Generator, Params,
};
use crate::model::{Case, Usage};

/// Variables a generator template can use.
const VARIABLES: [&str; 5] = [
    "input",
    "expected_output",
    "case_id",
    "dataset_id",
    "metadata",
];
/// Roles a message may have.
const ROLES: [&str; 4] = ["system", "developer", "user", "assistant"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    /// The output is the message text.
    Text,
    /// The output is the message text parsed as JSON (a surrounding code fence is allowed).
    Json,
}

pub(super) struct ChatGenerator {
    pub(super) client: ClientConfig,
    templates: Templates,
    /// Role and template index of each message.
    messages: Vec<(String, usize)>,
    /// Where the case's conversation is, under `input` (`conversation`).
    conversation: Option<Vec<String>>,
    output: Output,
    supports_n: bool,
}

impl ChatGenerator {
    pub(super) fn from_params(p: &mut Params<'_>, shared: &Arc<Shared>) -> Self {
        Self::from_params_as(p, "openai/chat", shared)
    }

    /// The params of `openai/chat`, read for `component` (which may add its own).
    pub(super) fn from_params_as(
        p: &mut Params<'_>,
        component: &'static str,
        shared: &Arc<Shared>,
    ) -> Self {
        let client = read_client(p, component, shared);
        let mut templates = Templates::new();
        let mut messages = Vec::new();
        let conversation = read_conversation(p);
        let prompt = p.string("prompt");
        let list = p.value("messages");
        match (prompt, list) {
            (Some(_), Some(_)) => p.error("prompt", "give either prompt or messages, not both"),
            // The case's conversation alone is enough.
            (None, None) if conversation.is_some() => {}
            (None, None) => p.error("prompt", "is required (or messages, or conversation)"),
            (Some(prompt), None) => {
                let index = read_template(p, &mut templates, "prompt", &prompt, &VARIABLES);
                messages.push(("user".to_owned(), index));
            }
            (None, Some(list)) => match list.as_array().filter(|l| !l.is_empty()) {
                None => p.error("messages", "must be a non-empty list of {role, content}"),
                Some(list) => {
                    for (i, message) in list.iter().enumerate() {
                        if let Some(parsed) = read_message(p, &mut templates, i, message) {
                            messages.push(parsed);
                        }
                    }
                }
            },
        }
        let output = match p.string("output").as_deref() {
            None | Some("text") => Output::Text,
            Some("json") => Output::Json,
            Some(_) => {
                p.error("output", "must be \"text\" or \"json\"");
                Output::Text
            }
        };
        ChatGenerator {
            client,
            templates,
            messages,
            conversation,
            output,
            supports_n: p.bool("supports_n", true),
        }
    }

    /// The messages for a case: the definition's own, then the case's conversation.
    pub(super) async fn render(
        &self,
        dataset_id: &str,
        case: &Case,
    ) -> Result<Vec<Message>, ComponentError> {
        let case_id = Value::String(case.case_id.clone());
        let dataset = Value::String(dataset_id.to_owned());
        let vars = [
            ("input", &case.input),
            ("expected_output", &case.expected_output),
            ("case_id", &case_id),
            ("dataset_id", &dataset),
            ("metadata", &case.metadata),
        ];
        let mut messages = Vec::with_capacity(self.messages.len());
        for (i, (role, template)) in self.messages.iter().enumerate() {
            let content = self.templates.render(*template, &vars).await.map_err(|e| {
                let which = if self.messages.len() == 1 && role == "user" {
                    "prompt".to_owned()
                } else {
                    format!("messages[{i}].content")
                };
                ComponentError::new(format!("openai/chat: rendering {which} failed: {e}"))
            })?;
            messages.push(Message::new(role.clone(), content));
        }
        if let Some(path) = &self.conversation {
            messages.extend(self.conversation(path, case)?);
        }
        Ok(messages)
    }

    /// The case's conversation at `input.{path}`, checked (cases from uploads and inline
    /// datasets were checked already when they hold it at `input.messages`).
    fn conversation(&self, path: &[String], case: &Case) -> Result<Vec<Message>, ComponentError> {
        let at = format!("input.{}", path.join("."));
        let value = at_path(&case.input, path).ok_or_else(|| {
            ComponentError::new(format!(
                "{}: case `{}` has no conversation at {at}",
                self.client.component, case.case_id
            ))
        })?;
        let mut first = None;
        let checked = check_conversation(value, &mut |where_, message| {
            first.get_or_insert(format!("{at}{where_}: {message}"));
        });
        let Some(checked) = checked else {
            return Err(ComponentError::new(format!(
                "{}: case `{}`: {}",
                self.client.component,
                case.case_id,
                first.unwrap_or_default()
            )));
        };
        Ok(checked
            .into_iter()
            .map(|m| Message {
                role: m.role,
                content: m.content,
                tool_calls: m
                    .tool_calls
                    .into_iter()
                    .map(|(id, name, arguments)| ToolCall {
                        id,
                        kind: "function",
                        function: FunctionCall { name, arguments },
                    })
                    .collect(),
                tool_call_id: m.tool_call_id,
            })
            .collect())
    }

    pub(super) fn generation(
        &self,
        content: String,
        finish_reason: Option<String>,
        usage: Usage,
    ) -> Result<Generation, ComponentError> {
        let output = match self.output {
            Output::Text => Value::String(content.clone()),
            Output::Json => parse_json_output(&content).ok_or_else(|| {
                ComponentError::new(format!(
                    "openai/chat: the model's answer is not JSON (output: \"json\"): {}",
                    truncate(&content, 300)
                ))
            })?,
        };
        Ok(Generation {
            output,
            raw_text: Some(content),
            finish_reason,
            usage,
            transcript: None,
        })
    }

    /// All samples of one case in one request with `n`. `Err` hands the requests back
    /// for one-by-one generation, with what the failed request spent.
    async fn generate_with_n(
        &self,
        requests: &[GenerateRequest<'_>],
    ) -> Result<Vec<Result<Generation, ComponentError>>, Fallback> {
        let first = requests[0];
        let messages = match self.render(first.dataset_id, first.case).await {
            Ok(messages) => messages,
            Err(e) => return Ok(vec![Err(e); requests.len()]),
        };
        let endpoint = self.client.endpoint();
        let n = requests.len() as u32;
        match self
            .client
            .complete(first.ctx, &endpoint, &messages, first.seed, n)
            .await
        {
            Ok(completion) => Ok(completion
                .choices
                .into_iter()
                .take(requests.len())
                .enumerate()
                .map(|(i, choice)| {
                    // The request's usage is reported once, on the first candidate.
                    let usage = if i == 0 {
                        completion.usage
                    } else {
                        Usage::default()
                    };
                    self.generation(choice.content, choice.finish_reason, usage)
                })
                .collect()),
            // The endpoint ignored `n`, or said it does not take it.
            Err(error) if error.fewer_choices || rejects_n(&error) => {
                self.client.own.mark_n_unsupported();
                Err(Fallback {
                    spent: error.usage,
                    decided: true,
                })
            }
            // Some servers reject `n` without naming it ("Only one completion choice is
            // allowed"): a request error is tried again without `n`.
            Err(error) if matches!(error.status, Some(400 | 422)) => Err(Fallback {
                spent: error.usage,
                decided: false,
            }),
            Err(error) => {
                let error = ComponentError::from(error);
                Ok(vec![Err(error); requests.len()])
            }
        }
    }
}

/// Why samples are asked for one by one after trying `n`.
struct Fallback {
    /// What the request with `n` spent.
    spent: Usage,
    /// Whether that request proved the endpoint does not support `n`.
    decided: bool,
}

/// `conversation`: where the case's conversation is, `input.messages` or another field
/// under `input`.
fn read_conversation(p: &mut Params<'_>) -> Option<Vec<String>> {
    let path = p.string("conversation")?;
    let segments: Vec<String> = path
        .strip_prefix("input.")
        .map(|rest| rest.split('.').map(str::to_owned).collect())
        .unwrap_or_default();
    if segments.is_empty() || segments.iter().any(String::is_empty) {
        p.error(
            "conversation",
            "must name a field of the case's input, e.g. \"input.messages\"",
        );
        return None;
    }
    Some(segments)
}

/// One `{role, content}` entry of `messages`.
fn read_message(
    p: &mut Params<'_>,
    templates: &mut Templates,
    i: usize,
    message: &Value,
) -> Option<(String, usize)> {
    let Some(map) = message.as_object() else {
        p.error(
            &format!("messages[{i}]"),
            "must be an object {role, content}",
        );
        return None;
    };
    for key in map.keys() {
        if key != "role" && key != "content" {
            p.error(
                &format!("messages[{i}].{key}"),
                "unknown field; expected role, content",
            );
        }
    }
    let role = map.get("role").and_then(Value::as_str).unwrap_or("");
    if !ROLES.contains(&role) {
        p.error(
            &format!("messages[{i}].role"),
            format!("must be one of {}", ROLES.join(", ")),
        );
    }
    let path = format!("messages[{i}].content");
    match map.get("content").and_then(Value::as_str) {
        Some(source) => {
            let index = read_template(p, templates, &path, source, &VARIABLES);
            Some((role.to_owned(), index))
        }
        None => {
            p.error(&path, "is required: a template string");
            None
        }
    }
}

/// A 400/422 whose error is about the `n` param.
fn rejects_n(error: &CallError) -> bool {
    static MENTIONS_N: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r#"(?i)"param"\s*:\s*"n"|['"`]n['"`]|\bn\b\s*(?:must|should|is|are|>|<|=|not|only|parameter|param|argument|field|value)|(?:parameter|argument|field|param|value|supplied)s?:?\s+['"`]?n\b|\bchoices?\b"#,
        )
        .unwrap_or_else(|e| unreachable!("valid regex: {e}"))
    });
    matches!(error.status, Some(400 | 422)) && MENTIONS_N.is_match(&error.body)
}

/// The answer parsed as JSON, also when wrapped in a Markdown code fence.
fn parse_json_output(content: &str) -> Option<Value> {
    let text = content.trim();
    if let Ok(value) = serde_json::from_str(text) {
        return Some(value);
    }
    let inner = text.strip_prefix("```")?.strip_suffix("```")?;
    let inner = inner.strip_prefix("json").unwrap_or(inner);
    serde_json::from_str(inner.trim()).ok()
}

#[async_trait]
impl Generator for ChatGenerator {
    /// One request of the rendered messages (a case whose templates do not render is
    /// estimated at nothing: it fails before calling anything).
    async fn estimate(&self, request: EstimateRequest<'_>) -> Option<Estimate> {
        let messages = self
            .render(request.dataset_id, request.case)
            .await
            .unwrap_or_default();
        Some(self.client.estimate(&messages, 0, 1, 1))
    }

    async fn generate(&self, request: GenerateRequest<'_>) -> Result<Generation, ComponentError> {
        let messages = self.render(request.dataset_id, request.case).await?;
        let endpoint = self.client.endpoint();
        let completion = self
            .client
            .complete(request.ctx, &endpoint, &messages, request.seed, 1)
            .await?;
        let choice = completion
            .choices
            .into_iter()
            .next()
            .ok_or_else(|| ComponentError::new("openai/chat: the response has no choices"))?;
        self.generation(choice.content, choice.finish_reason, completion.usage)
    }

    /// Several samples of one case are asked for in one request with `n` (the first
    /// candidate's seed) unless `supports_n` is false or the endpoint turned out not to
    /// support it; then, and for mixed cases, one request per sample.
    async fn generate_samples(
        &self,
        requests: &[GenerateRequest<'_>],
    ) -> Vec<Result<Generation, ComponentError>> {
        let one_case = requests.first().is_some_and(|first| {
            requests
                .iter()
                .all(|r| r.dataset_id == first.dataset_id && r.case.case_id == first.case.case_id)
        });
        // What this run learnt about `n` (a run's requests never change how other runs
        // call the endpoint).
        let learnt = &self.client.own;
        let mut fallback = None;
        if requests.len() > 1 && one_case && self.supports_n && learnt.supports_n() {
            match self.generate_with_n(requests).await {
                Ok(results) => return results,
                Err(f) => fallback = Some(f),
            }
        }
        // The usual single sample needs no join (nor its allocations).
        if let [request] = requests
            && fallback.is_none()
        {
            return vec![self.generate(*request).await];
        }
        let mut results =
            futures::future::join_all(requests.iter().map(|r| self.generate(*r))).await;
        if let Some(fallback) = fallback {
            // The same request without `n` worked: `n` was what the endpoint refused.
            if !fallback.decided && results.iter().any(Result::is_ok) {
                learnt.mark_n_unsupported();
            }
            // What the refused request cost is counted on the first candidate.
            if let Some(Ok(first)) = results.first_mut() {
                first.usage.add(&fallback.spent);
            }
        }
        results
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn error(status: u16, body: &str) -> CallError {
        CallError {
            message: String::new(),
            status: Some(status),
            body: body.to_owned(),
            fewer_choices: false,
            usage: Usage::default(),
        }
    }

    #[test]
    fn recognises_rejections_of_n() {
        for body in [
            r#"{"error": {"message": "Invalid value", "param": "n"}}"#,
            "'n' is not supported with this model",
            "n must be 1",
            "Unrecognized request argument supplied: n",
            "unsupported parameter `n`",
            "Only one completion choice is allowed",
        ] {
            assert!(rejects_n(&error(400, body)), "{body}");
        }
        assert!(!rejects_n(&error(400, "messages must not be empty")));
        assert!(!rejects_n(&error(500, "'n' is not supported")));
    }

    #[test]
    fn json_output_may_be_fenced() {
        assert_eq!(parse_json_output(" {\"a\": 1} "), Some(json!({"a": 1})));
        assert_eq!(
            parse_json_output("```json\n{\"a\": 1}\n```"),
            Some(json!({"a": 1}))
        );
        assert_eq!(parse_json_output("```\n[1]\n```"), Some(json!([1])));
        assert_eq!(parse_json_output("the answer is 4"), None);
    }
}
