//! Canonical JSON and the deterministic run id.
//!
//! The rule (also in the README): the run id is `run_` + the first 32 hex digits of
//! SHA-256 over `themis/run/v1\n` followed by the canonical JSON of the normalised
//! logical definition (`generation`, `evaluation`, `datasets`, `seeds`). Normalised
//! means defaults filled in and every component written as `{id, name, params,
//! version}`. Canonical JSON: object keys sorted by their UTF-8 bytes, no whitespace, strings escaped as serde_json does, integral numbers within ±2^53
//! written as integers (`1.0` and `1` are the same number) and other numbers in their
//! shortest round-trip form.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::definition::{EvaluationConfig, Experiment};
use crate::model::RunId;

/// Serialises a JSON value canonically (see the module docs).
pub fn canonical_json(value: &Value) -> String {
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

fn digest(domain: &str, canonical: &str) -> RunId {
    let mut hasher = Sha256::new();
    hasher.update(domain.as_bytes());
    hasher.update(b"\n");
    hasher.update(canonical.as_bytes());
    RunId::from_digest(&hasher.finalize())
}

/// The run id of an experiment.
pub fn run_id(experiment: &Experiment) -> RunId {
    digest("themis/run/v1", &canonical_json(&experiment.canonical()))
}

/// The id of a rejudge: the source run and the new evaluation config decide it, so the
/// same rejudge asked twice is the same run.
pub fn rejudge_id(source: &RunId, evaluation: &EvaluationConfig) -> RunId {
    let definition = rejudge_definition(source, evaluation);
    digest("themis/rejudge/v1", &canonical_json(&definition))
}

/// The stored definition of a rejudge run.
pub fn rejudge_definition(source: &RunId, evaluation: &EvaluationConfig) -> Value {
    serde_json::json!({
        "source_run_id": source,
        "evaluation": serde_json::to_value(evaluation).unwrap_or(Value::Null),
    })
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
