//! Helpers shared by parsers, metrics and judges to look into JSON values.

use serde_json::Value;

/// Looks up a path in a value: a JSON pointer (`/answer/0`) or a dotted path
/// (`answer.items.0`). An empty path is the value itself.
pub(super) fn select<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
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
pub(super) fn as_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Most bytes of a value quoted in an error message.
const MAX_QUOTED: usize = 200;

/// Compact JSON of `value`, cut after [`MAX_QUOTED`] bytes (marked `…`); serialising
/// stops there, so a huge value costs no more than a small one.
fn quote(value: &Value) -> String {
    struct Capped(Vec<u8>);
    impl std::io::Write for Capped {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let room = MAX_QUOTED + 1 - self.0.len().min(MAX_QUOTED + 1);
            self.0.extend_from_slice(&bytes[..bytes.len().min(room)]);
            if bytes.len() > room {
                return Err(std::io::Error::other("enough"));
            }
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut out = Capped(Vec::new());
    let complete = serde_json::to_writer(&mut out, value).is_ok() && out.0.len() <= MAX_QUOTED;
    let mut text = String::from_utf8_lossy(&out.0[..out.0.len().min(MAX_QUOTED)]).into_owned();
    if !complete {
        // A cut may split a character: drop the replacement character it left.
        text = text.trim_end_matches('\u{FFFD}').to_owned();
        text.push('…');
    }
    text
}

/// Reads the `field` a metric or parser was configured with, or the whole value.
pub(super) fn field<'v>(value: &'v Value, field: Option<&str>) -> Result<&'v Value, String> {
    match field {
        None => Ok(value),
        Some(path) => select(value, path).ok_or_else(|| {
            // The value can be megabytes (a whole case input): quote only its start, so
            // an error is not as large as the data it failed on.
            format!("no field `{path}` in {}", quote(value))
        }),
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
    fn missing_fields_quote_only_the_start_of_the_value() {
        let big = json!({"text": "é".repeat(10_000)});
        let e = field(&big, Some("answer")).unwrap_err();
        assert!(e.len() < 300 && e.ends_with('…'), "{e}");
        assert_eq!(
            field(&json!({"a": 1}), Some("b")).unwrap_err(),
            "no field `b` in {\"a\":1}"
        );
    }

    #[test]
    fn as_text_keeps_strings_and_serialises_the_rest() {
        assert_eq!(as_text(&json!("hi")), "hi");
        assert_eq!(as_text(&json!(4)), "4");
        assert_eq!(as_text(&json!(null)), "");
        assert_eq!(as_text(&json!({"a": 1})), "{\"a\":1}");
    }
}
