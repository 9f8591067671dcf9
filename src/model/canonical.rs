//! Canonical JSON: one spelling per JSON value, so equal values hash equally (run ids,
//! response cache keys, tie-breaking in reducers).
//!
//! Object keys sorted by their UTF-8 bytes, no whitespace, strings escaped as serde_json
//! does, integral numbers within ±2^53 written as integers (`1.0` and `1` are the same
//! number) and other numbers in their shortest round-trip form.

use serde_json::Value;

/// Serialises a JSON value canonically (see the module docs).
pub(crate) fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

// Recursive, one frame per nesting level: bounded because every definition reaches
// here parsed by serde_json (request bodies, CLI files, stored definitions), which
// refuses documents nested deeper than 128 levels.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Null | Value::Bool(_) | Value::String(_) => out.push_str(&value.to_string()),
        Value::Number(n) => {
            if n.is_i64() || n.is_u64() {
                out.push_str(&n.to_string());
            } else {
                let x = n.as_f64().unwrap_or(0.0);
                if x.fract() == 0.0 && x.abs() <= 9_007_199_254_740_992.0 {
                    out.push_str(&(x as i64).to_string());
                } else {
                    out.push_str(&n.to_string());
                }
            }
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_and_normalises_numbers() {
        let a = json!({"b": 1, "a": [1.0, 2.5, {"z": null, "y": "é\n"}]});
        assert_eq!(
            canonical_json(&a),
            r#"{"a":[1,2.5,{"y":"é\n","z":null}],"b":1}"#
        );
        let reordered: Value =
            serde_json::from_str(r#"{ "a" : [1, 2.5, {"y":"é\n","z":null}], "b":1.0 }"#).unwrap();
        assert_eq!(canonical_json(&a), canonical_json(&reordered));
    }
}
