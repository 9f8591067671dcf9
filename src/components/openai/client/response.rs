//! An answer judged (success, retryable or not, what it tells the breaker and the
//! limiter, what may be quoted) and a chat-completions response parsed.

use std::time::Duration;

use serde_json::Value;

use super::Choice;
use super::http::Attempt;
use crate::components::openai::limits::{Health, Signal};
use crate::components::openai::truncate;

/// Error messages of declared providers are quoted up to this many characters.
const REASON_CHARS: usize = 200;
/// Kept (internally, for recognising a rejected `n`) from an error body.
const BODY_CHARS: usize = 500;

/// An attempt judged: its result and what it tells the breaker and the limiter.
pub(super) struct Outcome {
    pub result: Result<(Value, Parsed), Failure>,
    /// A one-line description for notes, spans and messages (secrets redacted).
    pub reason: String,
    /// `reason` without any quoted provider message.
    pub summary: String,
    pub health: Health,
    pub signal: Signal,
}

pub(super) struct Failure {
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
    pub(super) fn classify(self, redact: &dyn Fn(&str) -> String, declared: bool) -> Outcome {
        let (status, body, retry_after) = match self {
            Attempt::Transport { message, .. } => {
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
                };
            }
            Attempt::Answered {
                status,
                body,
                retry_after,
            } => (status, body, retry_after),
        };
        // Kept for recognising a rejected `n`, never shown.
        let kept = truncate(&redact(&body), BODY_CHARS);
        let quoted = if declared {
            provider_message(&body).map(|m| sanitize(&redact(&m), REASON_CHARS))
        } else {
            None
        };
        if (200..300).contains(&status) {
            let parsed = serde_json::from_str::<Value>(&body)
                .map_err(|_| "is not JSON".to_owned())
                .and_then(|raw| parse_response(&raw).map(|parsed| (raw, parsed)));
            return match parsed {
                Ok(ok) => Outcome {
                    result: Ok(ok),
                    reason: format!("HTTP {status}"),
                    summary: format!("HTTP {status}"),
                    health: Health::Alive,
                    signal: Signal::Success,
                },
                Err(problem) => Outcome {
                    summary: format!("HTTP {status} but the response {problem}"),
                    reason: match &quoted {
                        Some(message) => {
                            format!("HTTP {status} but the response {problem}: {message}")
                        }
                        None => format!("HTTP {status} but the response {problem}"),
                    },
                    result: Err(Failure {
                        retryable: false,
                        status: Some(status),
                        body: kept,
                        retry_after: None,
                        signature: None,
                    }),
                    health: Health::Failed,
                    signal: Signal::Neutral,
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
        let reason = match quoted {
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
                body: kept,
                retry_after,
            }),
            health,
            signal: if status == 429 {
                Signal::Overloaded
            } else {
                Signal::Neutral
            },
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
pub(super) struct Parsed {
    pub choices: Vec<Choice>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
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
        let content = choice
            .get("message")
            .and_then(|m| m.get("content"))
            .or_else(|| choice.get("text"))
            .and_then(Value::as_str)
            .ok_or_else(|| format!("has no text content in choice {position}"))?;
        let index = choice
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(position as u64);
        indexed.push((
            index,
            Choice {
                content: content.to_owned(),
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
    })
}

/// Removes the API key from text that may quote it (some providers echo it back).
pub(super) fn redact(text: &str, key: Option<&str>) -> String {
    match key {
        Some(key) if key.len() >= 4 && text.contains(key) => text.replace(key, "[redacted]"),
        _ => text.to_owned(),
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

    #[test]
    fn redacts_keys() {
        assert_eq!(
            redact("bad key sk-secret-1", Some("sk-secret-1")),
            "bad key [redacted]"
        );
        assert_eq!(redact("fine", None), "fine");
    }
}
