//! A case's conversation: a list of messages in OpenAI's chat format (`{role,
//! content}`, assistant messages with `tool_calls`, `tool` messages answering them),
//! checked where cases come in (uploads, inline datasets) and sent after a generator's
//! own messages.

use serde_json::{Map, Value};

/// Where cases conventionally hold their conversation: checked on upload and submit.
pub(crate) const CONVERSATION_FIELD: &str = "messages";
/// Most messages in one conversation.
pub(crate) const MAX_CONVERSATION_MESSAGES: usize = 1_000;

const ROLES: [&str; 5] = ["system", "developer", "user", "assistant", "tool"];

/// One message of a conversation, checked.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ConversationMessage {
    pub role: String,
    pub content: String,
    /// An assistant message's calls: (id, function name, arguments as JSON text).
    pub tool_calls: Vec<(String, String, String)>,
    pub tool_call_id: Option<String>,
}

/// Checks a conversation; each problem is reported with its path relative to the list
/// (`[2].role`). `None` when there was any.
pub(crate) fn check_conversation(
    value: &Value,
    report: &mut dyn FnMut(String, String),
) -> Option<Vec<ConversationMessage>> {
    let Some(list) = value.as_array() else {
        report(
            String::new(),
            "must be a list of {role, content} messages".to_owned(),
        );
        return None;
    };
    if list.len() > MAX_CONVERSATION_MESSAGES {
        report(
            String::new(),
            format!("must have at most {MAX_CONVERSATION_MESSAGES} messages"),
        );
        return None;
    }
    let mut ok = true;
    let mut messages = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let mut problem = |key: &str, message: String| {
            ok = false;
            let path = if key.is_empty() {
                format!("[{i}]")
            } else {
                format!("[{i}].{key}")
            };
            report(path, message);
        };
        // A message that is not valid has reported why.
        if let Some(message) = check_message(item, &mut problem) {
            messages.push(message);
        }
    }
    ok.then_some(messages)
}

fn check_message(
    item: &Value,
    problem: &mut dyn FnMut(&str, String),
) -> Option<ConversationMessage> {
    let Some(map) = item.as_object() else {
        problem("", "must be an object {role, content}".to_owned());
        return None;
    };
    for key in map.keys() {
        if !["role", "content", "tool_calls", "tool_call_id", "name"].contains(&key.as_str()) {
            problem(
                key,
                "unknown field; expected role, content, tool_calls, tool_call_id, name".to_owned(),
            );
        }
    }
    let role = map.get("role").and_then(Value::as_str).unwrap_or("");
    if !ROLES.contains(&role) {
        problem("role", format!("must be one of {}", ROLES.join(", ")));
        return None;
    }
    let tool_calls = match map.get("tool_calls").filter(|v| !v.is_null()) {
        None => Vec::new(),
        Some(_) if role != "assistant" => {
            problem(
                "tool_calls",
                "only assistant messages call tools".to_owned(),
            );
            return None;
        }
        Some(calls) => tool_calls(calls, problem)?,
    };
    let content = match map.get("content") {
        Some(Value::String(text)) => text.clone(),
        None | Some(Value::Null) if !tool_calls.is_empty() => String::new(),
        _ => {
            problem("content", "must be a string".to_owned());
            return None;
        }
    };
    let tool_call_id = match (role, map.get("tool_call_id")) {
        ("tool", Some(Value::String(id))) if !id.is_empty() => Some(id.clone()),
        ("tool", _) => {
            problem(
                "tool_call_id",
                "a tool message must name the call it answers".to_owned(),
            );
            return None;
        }
        (_, None | Some(Value::Null)) => None,
        (_, Some(_)) => {
            problem(
                "tool_call_id",
                "only tool messages answer a call".to_owned(),
            );
            return None;
        }
    };
    if map
        .get("name")
        .is_some_and(|n| !n.is_string() && !n.is_null())
    {
        problem("name", "must be a string".to_owned());
        return None;
    }
    Some(ConversationMessage {
        role: role.to_owned(),
        content,
        tool_calls,
        tool_call_id,
    })
}

fn tool_calls(
    calls: &Value,
    problem: &mut dyn FnMut(&str, String),
) -> Option<Vec<(String, String, String)>> {
    let Some(list) = calls.as_array() else {
        problem("tool_calls", "must be a list".to_owned());
        return None;
    };
    let mut out = Vec::with_capacity(list.len());
    for (j, call) in list.iter().enumerate() {
        let id = call.get("id").and_then(Value::as_str);
        let function = call.get("function").and_then(Value::as_object);
        let name = function.and_then(|f| f.get("name")).and_then(Value::as_str);
        let arguments = function.map(|f: &Map<String, Value>| f.get("arguments"));
        let arguments = match arguments {
            Some(None | Some(Value::Null)) => Some("{}".to_owned()),
            Some(Some(Value::String(text))) => Some(text.clone()),
            _ => None,
        };
        match (id, name, arguments) {
            (Some(id), Some(name), Some(arguments)) if !id.is_empty() && !name.is_empty() => {
                out.push((id.to_owned(), name.to_owned(), arguments));
            }
            _ => {
                problem(
                    &format!("tool_calls[{j}]"),
                    "must be {id, type: \"function\", function: {name, arguments}} with \
                     arguments as JSON text"
                        .to_owned(),
                );
                return None;
            }
        }
    }
    Some(out)
}

/// The value at a dotted path under the case's `input` (`["messages"]`).
pub(crate) fn at_path<'a>(input: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(input, |value, key| value.get(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problems(value: Value) -> Vec<String> {
        let mut out = Vec::new();
        check_conversation(&value, &mut |path, message| {
            out.push(format!("{path}: {message}"))
        });
        out
    }

    #[test]
    fn a_tool_using_conversation_is_accepted() {
        let value = json!([
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
            {"role": "assistant", "content": "It is sunny."}
        ]);
        let messages = check_conversation(&value, &mut |p, m| panic!("{p}: {m}")).unwrap();
        assert_eq!(messages.len(), 4);
        assert_eq!(messages[1].tool_calls[0].1, "w");
        assert_eq!(messages[2].tool_call_id.as_deref(), Some("c1"));
    }

    #[test]
    fn each_problem_names_its_index() {
        let found = problems(json!([
            {"role": "user", "content": "ok"},
            {"role": "wizard", "content": "x"},
            {"role": "user"},
            {"role": "tool", "content": "x"},
            {"role": "assistant", "tool_calls": [{"id": "c"}]},
            "text"
        ]));
        let paths: Vec<&str> = found.iter().map(|f| f.split(':').next().unwrap()).collect();
        assert_eq!(
            paths,
            [
                "[1].role",
                "[2].content",
                "[3].tool_call_id",
                "[4].tool_calls[0]",
                "[5]"
            ],
            "{found:?}"
        );
        assert_eq!(problems(json!({"role": "user"})).len(), 1);
    }
}
