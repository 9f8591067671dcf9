//! Helpers shared by parsers, metrics and judges to look into JSON values.

use serde_json::Value;

/// Looks up a path in a value: a JSON pointer (`/answer/0`) or a dotted path
/// (`answer.items.0`). An empty path is the value itself.
pub fn select<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    if path.is_empty() {
        return Some(value);
    }
    if path.starts_with('/') {
        return value.pointer(path);
    }
    path.split('.')
        .try_fold(value, |current, segment| match current {
            Value::Object(map) => map.get(segment),
            Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        })
}

/// The text a value stands for: strings as they are, `null` as empty, anything else as
/// compact JSON.
pub fn as_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Reads the `field` a metric or parser was configured with, or the whole value.
pub fn field<'v>(value: &'v Value, field: Option<&str>) -> Result<&'v Value, String> {
    match field {
        None => Ok(value),
        Some(path) => select(value, path).ok_or_else(|| format!("no field `{path}` in {value}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn select_supports_pointer_and_dotted_paths() {
        let v = json!({"a": {"b": [10, {"c": "x"}]}});
        assert_eq!(select(&v, "a.b.1.c"), Some(&json!("x")));
        assert_eq!(select(&v, "/a/b/0"), Some(&json!(10)));
        assert_eq!(select(&v, ""), Some(&v));
        assert_eq!(select(&v, "a.z"), None);
    }

    #[test]
    fn as_text_keeps_strings_and_serialises_the_rest() {
        assert_eq!(as_text(&json!("hi")), "hi");
        assert_eq!(as_text(&json!(4)), "4");
        assert_eq!(as_text(&json!(null)), "");
        assert_eq!(as_text(&json!({"a": 1})), "{\"a\":1}");
    }
}
