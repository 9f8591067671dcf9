//! OpenAI's eval templates: `{{ item.field }}` and `{{ sample.output_text }}` replaced by
//! the value at that path (strings as they are, anything else as JSON). Everything else
//! is literal text, so a prompt with braces of its own is sent as written.

use serde_json::{Map, Value};

/// The most placeholders one template may hold, and the largest rendered text.
const MAX_PLACEHOLDERS: usize = 1_000;
pub(crate) const MAX_RENDERED_BYTES: usize = 1024 * 1024;

/// The namespaces a template can read: `item` (the data row) and `sample` (the output
/// being graded).
pub(crate) struct Namespaces<'a> {
    pub item: &'a Value,
    pub sample: Option<&'a Value>,
}

/// Renders `template`; a placeholder whose path is missing is an error naming it.
pub(crate) fn render(template: &str, ns: &Namespaces<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    let mut count = 0;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start + 2..].find("}}") else {
            break;
        };
        let path = rest[start + 2..start + 2 + len].trim();
        out.push_str(&rest[..start]);
        count += 1;
        if count > MAX_PLACEHOLDERS {
            return Err(format!("more than {MAX_PLACEHOLDERS} placeholders"));
        }
        match lookup(path, ns) {
            Some(Value::String(s)) => out.push_str(s),
            Some(other) => out.push_str(&other.to_string()),
            None => return Err(format!("`{{{{{path}}}}}` names no value")),
        }
        if out.len() > MAX_RENDERED_BYTES {
            return Err(format!("rendered text exceeds {MAX_RENDERED_BYTES} bytes"));
        }
        rest = &rest[start + 2 + len + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The placeholders' paths, checked for a known namespace: `item` always, `sample` when
/// the template is rendered with one.
pub(crate) fn check(template: &str, sample_allowed: bool) -> Result<(), String> {
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start + 2..].find("}}") else {
            break;
        };
        let path = rest[start + 2..start + 2 + len].trim();
        let root = path.split(['.', '[']).next().unwrap_or("");
        match root {
            "item" => {}
            "sample" if sample_allowed => {}
            "sample" => {
                return Err(format!(
                    "`{{{{{path}}}}}`: there is no sample here (only `item`)"
                ));
            }
            _ => {
                return Err(format!(
                    "`{{{{{path}}}}}`: a placeholder starts with `item.` or `sample.`"
                ));
            }
        }
        rest = &rest[start + 2 + len + 2..];
    }
    Ok(())
}

/// The value at a dotted path (`item.a.b`, `item.list.0`, `item.list[0]`).
pub(crate) fn lookup<'v>(path: &str, ns: &Namespaces<'v>) -> Option<&'v Value> {
    let mut parts = path
        .split('.')
        .flat_map(|p| p.split(['[', ']']))
        .filter(|p| !p.is_empty());
    let mut value = match parts.next()? {
        "item" => ns.item,
        "sample" => ns.sample?,
        _ => return None,
    };
    for part in parts {
        value = match value {
            Value::Object(map) => map.get(part)?,
            Value::Array(items) => items.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(value)
}

/// The sample namespace of a generated output: a model's text as `output_text` (and as
/// `output_json` when it is a JSON object or array); a row's own `sample` as it is.
pub(crate) fn sample_namespace(output: &Value) -> Value {
    match output {
        Value::Object(_) => output.clone(),
        Value::String(text) => {
            let mut sample = Map::new();
            sample.insert("output_text".into(), Value::String(text.clone()));
            let json = serde_json::from_str::<Value>(text)
                .ok()
                .filter(|v| v.is_object() || v.is_array())
                .unwrap_or(Value::Null);
            sample.insert("output_json".into(), json);
            Value::Object(sample)
        }
        Value::Null => Value::Object(Map::new()),
        other => {
            let mut sample = Map::new();
            sample.insert("output_text".into(), Value::String(other.to_string()));
            Value::Object(sample)
        }
    }
}

/// The text of a message's `content`: a string, `{"type": "input_text"|"output_text",
/// "text"}`, or a list of those; images are refused.
pub(crate) fn content_text(content: &Value) -> Result<String, String> {
    match content {
        Value::String(s) => Ok(s.clone()),
        Value::Object(map) => match map.get("type").and_then(Value::as_str) {
            Some("input_text" | "output_text" | "text") | None => map
                .get("text")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| "a content part needs `text`".to_owned()),
            Some("input_image") => Err("image inputs are not supported by Themis".to_owned()),
            Some(other) => Err(format!("unsupported content type `{other}`")),
        },
        Value::Array(parts) => {
            let texts = parts
                .iter()
                .map(content_text)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(texts.join("\n"))
        }
        _ => Err("content must be a string or a content part".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_item_and_sample_paths() {
        let item = json!({"q": "2+2", "n": {"a": [1, 2]}, "x": 3});
        let sample = sample_namespace(&json!("four"));
        let ns = Namespaces {
            item: &item,
            sample: Some(&sample),
        };
        assert_eq!(
            render(
                "Q: {{item.q}} {{ item.n.a[1] }} {{item.x}} -> {{sample.output_text}} {x}",
                &ns
            )
            .unwrap(),
            "Q: 2+2 2 3 -> four {x}"
        );
        assert!(
            render("{{item.missing}}", &ns)
                .unwrap_err()
                .contains("item.missing")
        );
        assert!(check("{{sample.output_text}}", false).is_err());
        assert!(check("{{ item.q }} {{sample.x}}", true).is_ok());
        assert!(check("{{ input.q }}", true).is_err());
    }
}
