//! `builtin/json_schema`: 1 when the parsed output validates against the JSON Schema
//! given in params, 0 otherwise, with the first violations in the details.

use std::sync::Arc;

use serde_json::{Value, json};

use super::text::field;
use super::{ComponentError, Metric, MetricScore, Registry};
use crate::model::Case;

/// Largest schema accepted, as compact JSON bytes: compiling and applying a schema
/// costs in proportion to its size.
pub(super) const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// Most violations listed in a score's details.
const MAX_VIOLATIONS: usize = 10;

pub(super) fn register(registry: &mut Registry) {
    registry.register_metric("builtin/json_schema", "1", |p| {
        let field = p.string("field");
        let validator = match p.value("schema") {
            None => {
                p.error("schema", "is required (a JSON Schema object)");
                None
            }
            Some(schema) if !schema.is_object() && !schema.is_boolean() => {
                p.error("schema", "must be a JSON Schema (an object or a boolean)");
                None
            }
            Some(schema) => match compile(schema) {
                Ok(validator) => Some(validator),
                Err(message) => {
                    p.error("schema", message);
                    None
                }
            },
        };
        Arc::new(JsonSchema {
            field,
            validator: validator.map(Arc::new),
        })
    });
}

fn compile(schema: &Value) -> Result<jsonschema::Validator, String> {
    let size = serde_json::to_vec(schema)
        .map(|b| b.len())
        .unwrap_or(usize::MAX);
    if size > MAX_SCHEMA_BYTES {
        return Err(format!("must be at most {MAX_SCHEMA_BYTES} bytes as JSON"));
    }
    // Built without the crate's `resolve-http`/`resolve-file` features: a `$ref` to a
    // URL or file fails to compile instead of making the server fetch it.
    jsonschema::validator_for(schema).map_err(|e| format!("is not a valid JSON Schema: {e}"))
}

/// The output (its `field` if set) must validate against `schema`. Strings are
/// validated as strings: put `builtin/json_identity` or `builtin/json_extract` first
/// to validate the JSON inside a text answer.
struct JsonSchema {
    field: Option<String>,
    /// `None` only when the params were wrong (the component is then discarded).
    validator: Option<Arc<jsonschema::Validator>>,
}

impl Metric for JsonSchema {
    fn score(&self, parsed: &Value, _case: &Case) -> Result<MetricScore, ComponentError> {
        let validator = self
            .validator
            .as_ref()
            .ok_or_else(|| ComponentError::new("no schema"))?;
        let instance = field(parsed, self.field.as_deref()).unwrap_or(&Value::Null);
        let violations: Vec<Value> = validator
            .iter_errors(instance)
            .take(MAX_VIOLATIONS)
            .map(|e| json!({"path": e.instance_path().to_string(), "message": e.to_string()}))
            .collect();
        Ok(MetricScore {
            score: if violations.is_empty() { 1.0 } else { 0.0 },
            details: if violations.is_empty() {
                Value::Null
            } else {
                json!({ "violations": violations })
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case() -> Case {
        Case {
            case_id: "c".into(),
            input: Value::Null,
            expected_output: Value::Null,
            metadata: Value::Null,
        }
    }

    #[test]
    fn validates_and_lists_violations() {
        let schema = json!({
            "type": "object",
            "required": ["name", "age"],
            "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}}
        });
        let metric = JsonSchema {
            field: None,
            validator: compile(&schema).ok().map(Arc::new),
        };
        let ok = metric
            .score(&json!({"name": "Ada", "age": 36}), &case())
            .unwrap();
        assert_eq!(ok.score, 1.0);
        let bad = metric
            .score(&json!({"name": 1, "age": -1}), &case())
            .unwrap();
        assert_eq!(bad.score, 0.0);
        let paths: Vec<&str> = bad.details["violations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["path"].as_str().unwrap())
            .collect();
        assert!(
            paths.contains(&"/name") && paths.contains(&"/age"),
            "{paths:?}"
        );
    }

    #[test]
    fn refuses_oversized_and_remote_schemas() {
        let big = json!({"description": "x".repeat(MAX_SCHEMA_BYTES)});
        assert!(compile(&big).unwrap_err().contains("at most"));
        let remote = json!({"$ref": "http://127.0.0.1:1/schema.json"});
        assert!(compile(&remote).is_err());
    }
}
