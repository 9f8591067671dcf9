//! An answer judged (success, retryable or not, what it tells the breaker and the
//! limiter, what may be quoted) and a chat-completions response parsed.

use std::time::Duration;

use serde_json::Value;

use super::http::Attempt;
use super::{Choice, FunctionCall, ToolCall};
use crate::components::openai::limits::{Health, Signal};
use crate::components::openai::redact::redact_key;
use crate::components::openai::truncate;

/// Error messages of declared providers are quoted up to this many characters.
const REASON_CHARS: usize = 200;
/// Kept (internally, for recognising a rejected `n`) from an error body.
const BODY_CHARS: usize = 500;

/// An attempt judged: its result and what it tells the breaker and the limiter.
#[derive(Debug)]
pub(in crate::components::openai) struct Outcome {
    /// On success: the response body and its parsed form.
    pub result: Result<(String, Parsed), Failure>,
    /// A one-line description for notes, spans and messages (secrets redacted).
    pub reason: String,
    /// `reason` without any quoted provider message.
    pub summary: String,
    pub health: Health,
    pub signal: Signal,
    /// The answer's HTTP status (`None`: no answer).
    pub status: Option<u16>,
    /// No answer within the call's timeout.
    pub timed_out: bool,
}

#[derive(Debug)]
pub(in crate::components::openai) struct Failure {
    pub retryable: bool,
    pub status: Option<u16>,
    pub body: String,
    pub retry_after: Option<Duration>,
    /// Identifies repeatable failures (status and body); `None` for 429 and transport
    /// errors, which are expected to repeat while the endpoint recovers.
    pub signature: Option<String>,
}

impl Attempt {
    /// Judges an attempt. `declared`: the endpoint is a declared provider, whose error
    /// messages may be quoted (sanitised); nothing else's body ever is.
    pub(in crate::components::openai) fn classify(
        self,
        redact: &dyn Fn(&str) -> String,
        declared: bool,
    ) -> Outcome {
        let (status, body, retry_after) = match self {
            Attempt::Transport { message, timed_out } => {
                let reason = redact(&message);
                return Outcome {
                    summary: reason.clone(),
                    result: Err(Failure {
                        retryable: true,
                        status: None,
                        body: String::new(),
                        retry_after: None,
                        signature: None,
                    }),
                    reason,
                    health: Health::Failed,
                    signal: Signal::Neutral,
                    status: None,
                    timed_out,
                };
            }
            Attempt::Answered {
                status,
                body,
                retry_after,
            } => (status, body, retry_after),
        };
        // Kept for recognising a rejected `n`, never shown; only failures need it.
        let kept = |body: &str| truncate(&redact(body), BODY_CHARS);
        let quoted = |body: &str| {
            if declared {
                provider_message(body).map(|m| sanitize(&redact(&m), REASON_CHARS))
            } else {
                None
            }
        };
        if (200..300).contains(&status) {
            // Outputs are stored, exported and shown: an echoed key never gets there.
            let body = redact(&body);
            return match parse_body(&body) {
                Ok(parsed) => Outcome {
                    result: Ok((body, parsed)),
                    reason: format!("HTTP {status}"),
                    summary: format!("HTTP {status}"),
                    health: Health::Alive,
                    signal: Signal::Success,
                    status: Some(status),
                    timed_out: false,
                },
                Err(problem) => Outcome {
                    summary: format!("HTTP {status} but the response {problem}"),
                    reason: match quoted(&body) {
                        Some(message) => {
                            format!("HTTP {status} but the response {problem}: {message}")
                        }
                        None => format!("HTTP {status} but the response {problem}"),
                    },
                    result: Err(Failure {
                        retryable: false,
                        status: Some(status),
                        body: kept(&body),
                        retry_after: None,
                        signature: None,
                    }),
                    health: Health::Failed,
                    signal: Signal::Neutral,
                    status: Some(status),
                    timed_out: false,
                },
            };
        }
        let retryable = matches!(status, 408 | 409 | 429) || status >= 500;
        let health = if status == 408 || status >= 500 {
            Health::Failed
        } else {
            Health::Alive
        };
        let summary = format!(
            "HTTP {status}{}",
            reqwest::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .map(|r| format!(" {r}"))
                .unwrap_or_default(),
        );
        let reason = match quoted(&body) {
            Some(message) => format!("{summary}: {message}"),
            None => summary.clone(),
        };
        Outcome {
            reason,
            summary,
            result: Err(Failure {
                retryable,
                status: Some(status),
                signature: (status != 429).then(|| format!("{status}\n{body}")),
                body: kept(&body),
                retry_after,
            }),
            health,
            signal: if status == 429 {
                Signal::Overloaded
            } else {
                Signal::Neutral
            },
            status: Some(status),
            timed_out: false,
        }
    }
}

/// The message of an OpenAI-shaped error body: `{"error": {"message": ...}}` or
/// `{"error": "..."}`.
fn provider_message(body: &str) -> Option<String> {
    let value: Value = serde_json::from_str(body).ok()?;
    let error = value.get("error")?;
    error
        .get("message")
        .and_then(Value::as_str)
        .or_else(|| error.as_str())
        .map(str::to_owned)
}

/// At most `max_chars` characters, control characters (newlines, escapes) replaced by
/// spaces, so a quoted message cannot forge log lines or terminal output.
fn sanitize(text: &str, max_chars: usize) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    truncate(cleaned.trim(), max_chars)
}

/// The parts of a chat-completions response the components use.
#[derive(Debug, Clone)]
pub(in crate::components::openai) struct Parsed {
    pub choices: Vec<Choice>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Of `prompt_tokens`, those the provider served from its prompt cache
    /// (`usage.prompt_tokens_details.cached_tokens`), billed at the cached input price.
    pub cached_tokens: u64,
}

/// Parses a response body: [`parse_response`] on its JSON, with a fast path for the usual
/// shape that reads the fields it needs straight from the text instead of building a
/// `Value` tree. Anything the fast path does not read exactly as [`parse_response`]
/// would (an error member, legacy `text` choices, a field of an unexpected type) goes
/// the general way, so both give the same answer.
pub(super) fn parse_body(body: &str) -> Result<Parsed, String> {
    if let Some(parsed) = parse_usual(body) {
        return Ok(parsed);
    }
    let raw = serde_json::from_str::<Value>(body).map_err(|_| "is not JSON".to_owned())?;
    parse_response(&raw)
}

/// `{"choices": [{"index", "message": {"content"}, "finish_reason"}], "usage"}` with
/// every field of the type [`parse_response`] reads; `None` for anything else.
fn parse_usual(body: &str) -> Option<Parsed> {
    let wire: wire::Response<'_> = serde_json::from_str(body).ok()?;
    if wire.error.is_some() {
        return None;
    }
    let mut indexed = Vec::with_capacity(wire.choices.len());
    for (position, choice) in wire.choices.into_iter().enumerate() {
        let message = choice.message?;
        if message.tool_calls.is_some() {
            return None;
        }
        let content = message.content?;
        indexed.push((
            choice.index.unwrap_or(position as u64),
            Choice {
                content: content.0.into_owned(),
                finish_reason: choice.finish_reason.map(|r| r.0.into_owned()),
                tool_calls: Vec::new(),
            },
        ));
    }
    indexed.sort_by_key(|(index, _)| *index);
    let usage = wire.usage.unwrap_or_default();
    Some(Parsed {
        choices: indexed.into_iter().map(|(_, choice)| choice).collect(),
        prompt_tokens: usage.prompt_tokens.unwrap_or(0),
        completion_tokens: usage.completion_tokens.unwrap_or(0),
        cached_tokens: usage
            .prompt_tokens_details
            .and_then(|d| d.cached_tokens)
            .unwrap_or(0),
    })
}

/// The fields of a chat-completions response the fast path reads; strings are borrowed
/// from the body unless they contain escapes.
mod wire {
    use std::borrow::Cow;

    use serde::Deserialize;
    use serde::de::IgnoredAny;

    #[derive(Deserialize)]
    pub(super) struct Response<'a> {
        /// Present and not null: an error, left to the general path.
        #[serde(default)]
        pub error: Option<IgnoredAny>,
        #[serde(borrow)]
        pub choices: Vec<Choice<'a>>,
        #[serde(default)]
        pub usage: Option<Usage>,
    }

    #[derive(Deserialize)]
    pub(super) struct Choice<'a> {
        #[serde(default)]
        pub index: Option<u64>,
        /// Absent, null or without string content: left to the general path (which
        /// looks for a legacy `text`, or reports the choice).
        #[serde(default, borrow)]
        pub message: Option<Message<'a>>,
        #[serde(default, borrow)]
        pub finish_reason: Option<Text<'a>>,
    }

    #[derive(Deserialize)]
    pub(super) struct Message<'a> {
        #[serde(default, borrow)]
        pub content: Option<Text<'a>>,
        /// Present and not null: tool calls, left to the general path.
        #[serde(default)]
        pub tool_calls: Option<IgnoredAny>,
    }

    /// A string borrowed from the body when it has no escapes (a bare `Cow` field
    /// inside an `Option` would always be copied).
    #[derive(Deserialize)]
    pub(super) struct Text<'a>(#[serde(borrow)] pub Cow<'a, str>);

    #[derive(Deserialize, Default)]
    pub(super) struct Usage {
        #[serde(default)]
        pub prompt_tokens: Option<u64>,
        #[serde(default)]
        pub completion_tokens: Option<u64>,
        #[serde(default)]
        pub prompt_tokens_details: Option<Details>,
    }

    #[derive(Deserialize, Default)]
    pub(super) struct Details {
        #[serde(default)]
        pub cached_tokens: Option<u64>,
    }
}

/// Reads `choices[].message.content` (or a legacy `choices[].text`), ordered by `index`,
/// and `usage`. Anything else is a description of what is wrong.
pub(super) fn parse_response(raw: &Value) -> Result<Parsed, String> {
    if raw.get("error").is_some_and(|e| !e.is_null()) {
        return Err("is an error".to_owned());
    }
    let choices = raw
        .get("choices")
        .and_then(Value::as_array)
        .ok_or("has no `choices` array")?;
    let mut indexed = Vec::with_capacity(choices.len());
    for (position, choice) in choices.iter().enumerate() {
        let tool_calls = match choice
            .get("message")
            .and_then(|m| m.get("tool_calls"))
            .filter(|c| !c.is_null())
        {
            Some(calls) => parse_tool_calls(calls)
                .ok_or_else(|| format!("has malformed tool_calls in choice {position}"))?,
            None => Vec::new(),
        };
        let text = choice
            .get("message")
            .and_then(|m| m.get("content"))
            .or_else(|| choice.get("text"))
            .and_then(Value::as_str);
        // A message that calls tools may have no text.
        let content = match text {
            Some(text) => text,
            None if !tool_calls.is_empty() => "",
            None => return Err(format!("has no text content in choice {position}")),
        };
        let index = choice
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(position as u64);
        indexed.push((
            index,
            Choice {
                content: content.to_owned(),
                tool_calls,
                finish_reason: choice
                    .get("finish_reason")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            },
        ));
    }
    indexed.sort_by_key(|(index, _)| *index);
    let tokens = |name: &str| {
        raw.get("usage")
            .and_then(|u| u.get(name))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    Ok(Parsed {
        choices: indexed.into_iter().map(|(_, choice)| choice).collect(),
        prompt_tokens: tokens("prompt_tokens"),
        completion_tokens: tokens("completion_tokens"),
        cached_tokens: raw
            .pointer("/usage/prompt_tokens_details/cached_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
    })
}

/// `message.tool_calls`: `[{id, type: "function", function: {name, arguments}}]`.
/// Arguments given as an object (some servers do) are kept as its JSON text; a call
/// without an id gets one from its position, so tool results can answer it.
fn parse_tool_calls(calls: &Value) -> Option<Vec<ToolCall>> {
    calls
        .as_array()?
        .iter()
        .enumerate()
        .map(|(i, call)| {
            let function = call.get("function")?;
            let name = function.get("name")?.as_str()?.to_owned();
            let arguments = match function.get("arguments") {
                None | Some(Value::Null) => "{}".to_owned(),
                Some(Value::String(text)) => text.clone(),
                Some(other) => other.to_string(),
            };
            let id = call
                .get("id")
                .and_then(Value::as_str)
                .map_or_else(|| format!("call_{i}"), str::to_owned);
            Some(ToolCall {
                id,
                kind: "function",
                function: FunctionCall { name, arguments },
            })
        })
        .collect()
}

/// Removes the API key, and what a provider may echo of it, from text that may quote it.
pub(super) fn redact(text: &str, key: Option<&str>) -> String {
    match key {
        Some(key) => redact_key(text, key).into_owned(),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_choices_in_index_order() {
        let raw = json!({
            "choices": [
                {"index": 1, "message": {"role": "assistant", "content": "b"}, "finish_reason": "length"},
                {"index": 0, "message": {"role": "assistant", "content": "a"}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3}
        });
        let parsed = parse_response(&raw).unwrap();
        assert_eq!(parsed.choices[0].content, "a");
        assert_eq!(parsed.choices[1].finish_reason.as_deref(), Some("length"));
        assert_eq!((parsed.prompt_tokens, parsed.completion_tokens), (7, 3));
        assert!(parse_response(&json!({"choices": [{"message": {"content": null}}]})).is_err());
        assert!(parse_response(&json!({"error": {"message": "boom"}})).is_err());
        assert!(parse_response(&json!([])).is_err());
    }

    /// The fast path reads what the general one reads, and leaves everything else to it.
    #[test]
    fn body_parsing_agrees_with_the_value_parser() {
        let bodies = [
            r#"{"id": "x", "choices": [{"index": 0, "message": {"role": "assistant", "content": "4"}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 8, "completion_tokens": 1, "total_tokens": 9}}"#,
            r#"{"choices": [{"index": 1, "message": {"content": "b\n\"q\""}, "finish_reason": "length"}, {"index": 0, "message": {"content": "a"}}]}"#,
            r#"{"choices": [{"message": {"content": "x"}, "finish_reason": null}], "usage": null}"#,
            r#"{"choices": [{"index": 1.5, "message": {"content": "x"}}], "usage": {"prompt_tokens": 2.0}}"#,
            r#"{"choices": [{"text": "legacy", "finish_reason": 3}]}"#,
            r#"{"choices": [{"message": null, "text": "legacy"}]}"#,
            r#"{"choices": [{"message": {"content": null}, "text": "ignored"}]}"#,
            r#"{"choices": [{"message": {"content": ["parts"]}}]}"#,
            r#"{"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": -1}}"#,
            r#"{"choices": [{"message": {"content": "a"}}], "error": {"message": "boom"}}"#,
            r#"{"choices": [{"message": {"content": "a"}}], "error": null}"#,
            r#"{"choices": {"message": "no"}}"#,
            r#"{"choices": [{"message": {"content": "a", "content": "b"}}]}"#,
            r#"{"object": "chat.completion"}"#,
            r#"[]"#,
            "not json",
        ];
        for body in bodies {
            let general = serde_json::from_str::<Value>(body)
                .map_err(|_| "is not JSON".to_owned())
                .and_then(|raw| parse_response(&raw));
            let fast = parse_body(body);
            match (fast, general) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a.choices, b.choices, "{body}");
                    assert_eq!(
                        (a.prompt_tokens, a.completion_tokens),
                        (b.prompt_tokens, b.completion_tokens),
                        "{body}"
                    );
                }
                (Err(a), Err(b)) => assert_eq!(a, b, "{body}"),
                (a, b) => panic!("{body}: {a:?} vs {b:?}"),
            }
        }
        // The usual shape takes the fast path, escaped strings included.
        assert!(parse_usual(bodies[0]).is_some());
        let escaped = parse_usual(bodies[1]).unwrap();
        assert_eq!(escaped.choices[1].content, "b\n\"q\"");
        assert!(parse_usual(bodies[4]).is_none());
    }

    #[test]
    fn redacts_keys() {
        assert_eq!(
            redact("bad key sk-secret-1", Some("sk-secret-1")),
            "bad key [redacted]"
        );
        assert_eq!(redact("fine", None), "fine");
    }
}
