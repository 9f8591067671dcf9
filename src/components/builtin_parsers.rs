//! `builtin/json_identity`, `builtin/text`, `builtin/regex_extract`, `builtin/json_extract`.

use std::sync::Arc;

use serde_json::Value;

use super::text::{as_text, field, select};
use super::{ComponentError, Parser, Registry};

pub(super) fn register(registry: &mut Registry) {
    registry.register_parser("builtin/json_identity", "1", |_| Arc::new(JsonIdentity));
    registry.register_parser("builtin/text", "1", |p| {
        Arc::new(Text {
            field: p.string("field"),
            trim: p.bool("trim", true),
            lowercase: p.bool("lowercase", false),
        })
    });
    registry.register_parser("builtin/regex_extract", "1", |p| {
        let pattern = p.regex("pattern", true);
        let group = p.u64_in("group", 1, 0, 99) as usize;
        let field = p.string("field");
        if let Some(re) = &pattern
            && group >= re.captures_len()
        {
            p.error(
                "group",
                format!("the pattern has only {} group(s)", re.captures_len() - 1),
            );
        }
        Arc::new(RegexExtract {
            pattern: pattern.unwrap_or_else(|| regex::Regex::new("").expect("empty regex")),
            group,
            field,
        })
    });
    registry.register_parser("builtin/json_extract", "1", |p| {
        Arc::new(JsonExtract {
            path: p.string("path").unwrap_or_default(),
        })
    });
}

/// Structured output passes through; a string is parsed as JSON (an error if it is not).
struct JsonIdentity;

impl Parser for JsonIdentity {
    fn parse(&self, value: &Value) -> Result<Value, ComponentError> {
        match value {
            Value::String(s) => serde_json::from_str(s)
                .map_err(|e| ComponentError::new(format!("output is not valid JSON: {e}"))),
            other => Ok(other.clone()),
        }
    }
}

/// The output as text (`field` of it if set), trimmed and optionally lowercased.
struct Text {
    field: Option<String>,
    trim: bool,
    lowercase: bool,
}

impl Parser for Text {
    fn parse(&self, value: &Value) -> Result<Value, ComponentError> {
        let mut text = as_text(field(value, self.field.as_deref()).map_err(ComponentError::new)?);
        if self.trim {
            text = text.trim().to_owned();
        }
        if self.lowercase {
            text = text.to_lowercase();
        }
        Ok(Value::String(text))
    }
}

/// The first match of `pattern` in the text (capture `group`, default 1); no match is an error.
struct RegexExtract {
    pattern: regex::Regex,
    group: usize,
    field: Option<String>,
}

impl Parser for RegexExtract {
    fn parse(&self, value: &Value) -> Result<Value, ComponentError> {
        let text = as_text(field(value, self.field.as_deref()).map_err(ComponentError::new)?);
        self.pattern
            .captures(&text)
            .and_then(|caps| caps.get(self.group))
            .map(|m| Value::String(m.as_str().to_owned()))
            .ok_or_else(|| ComponentError::new(format!("no match for /{}/", self.pattern.as_str())))
    }
}

/// Finds the JSON inside the output (a value, a JSON string, or the first `{...}` /
/// `[...]` block in text such as a fenced code block) and returns `path` of it.
struct JsonExtract {
    path: String,
}

fn embedded_json(text: &str) -> Option<Value> {
    if let Ok(value) = serde_json::from_str(text.trim()) {
        return Some(value);
    }
    let start = text.find(['{', '['])?;
    let mut stream = serde_json::Deserializer::from_str(&text[start..]).into_iter::<Value>();
    stream.next()?.ok()
}

impl Parser for JsonExtract {
    fn parse(&self, value: &Value) -> Result<Value, ComponentError> {
        let document = match value {
            Value::String(text) => embedded_json(text)
                .ok_or_else(|| ComponentError::new("no JSON found in the output"))?,
            other => other.clone(),
        };
        select(&document, &self.path)
            .cloned()
            .ok_or_else(|| ComponentError::new(format!("no `{}` in the extracted JSON", self.path)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parsers_extract_what_they_promise() {
        assert_eq!(
            JsonIdentity.parse(&json!("{\"a\":1}")).unwrap(),
            json!({"a": 1})
        );
        assert!(JsonIdentity.parse(&json!("nope")).is_err());
        let text = Text {
            field: Some("answer".into()),
            trim: true,
            lowercase: true,
        };
        assert_eq!(
            text.parse(&json!({"answer": " Paris "})).unwrap(),
            json!("paris")
        );
        let re = RegexExtract {
            pattern: regex::Regex::new(r"Answer:\s*(\d+)").unwrap(),
            group: 1,
            field: None,
        };
        assert_eq!(re.parse(&json!("so... Answer: 42.")).unwrap(), json!("42"));
        assert!(re.parse(&json!("no idea")).is_err());
        let extract = JsonExtract {
            path: "answer".into(),
        };
        assert_eq!(
            extract
                .parse(&json!("Sure:\n```json\n{\"answer\": \"4\"}\n```"))
                .unwrap(),
            json!("4")
        );
    }
}
