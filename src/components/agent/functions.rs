//! Mock functions: tools declared in the definition (`functions`), whose results come
//! from the case (`input.tool_results`, by function name), for deterministic
//! function-calling evaluations without any server.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::tools::{ToolError, ToolOutput, ToolSource, ToolSpec};
use crate::components::Params;

/// Most functions a definition may declare.
const MAX_FUNCTIONS: usize = 128;
/// Longest function name (OpenAI's limit).
const MAX_NAME_CHARS: usize = 64;

/// Reads `functions`: `[{name, description?, parameters?}]`.
pub(crate) fn read_functions(p: &mut Params<'_>) -> Vec<ToolSpec> {
    let Some(value) = p.value("functions") else {
        return Vec::new();
    };
    let Some(list) = value.as_array().filter(|l| l.len() <= MAX_FUNCTIONS) else {
        p.error(
            "functions",
            format!("must be a list of at most {MAX_FUNCTIONS} {{name, description, parameters}}"),
        );
        return Vec::new();
    };
    let mut specs: Vec<ToolSpec> = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let at = |key: &str| format!("functions[{i}].{key}");
        let Some(map) = item.as_object() else {
            p.error(
                &format!("functions[{i}]"),
                "must be an object {name, description, parameters}",
            );
            continue;
        };
        for key in map.keys() {
            if !["name", "description", "parameters"].contains(&key.as_str()) {
                p.error(
                    &at(key),
                    "unknown field; expected name, description, parameters",
                );
            }
        }
        let name = map.get("name").and_then(Value::as_str).unwrap_or("");
        if !is_function_name(name) {
            p.error(
                &at("name"),
                format!("must be 1 to {MAX_NAME_CHARS} letters, digits, _ or -"),
            );
            continue;
        }
        if specs.iter().any(|s| s.name == name) {
            p.error(&at("name"), format!("`{name}` is declared twice"));
            continue;
        }
        let description = match map.get("description") {
            None | Some(Value::Null) => None,
            Some(Value::String(d)) => Some(d.clone()),
            Some(_) => {
                p.error(&at("description"), "must be a string");
                None
            }
        };
        let parameters = match map.get("parameters") {
            None | Some(Value::Null) => serde_json::json!({"type": "object", "properties": {}}),
            Some(schema @ Value::Object(_)) => schema.clone(),
            Some(_) => {
                p.error(&at("parameters"), "must be a JSON Schema object");
                continue;
            }
        };
        specs.push(ToolSpec {
            name: name.to_owned(),
            description,
            parameters,
        });
    }
    specs
}

fn is_function_name(name: &str) -> bool {
    (1..=MAX_NAME_CHARS).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The mock functions of one case: their results are the case's `input.tool_results`.
pub(crate) struct MockFunctions {
    pub specs: Arc<Vec<ToolSpec>>,
    /// `input.tool_results` (`Null` when the case has none).
    pub results: Value,
}

#[async_trait]
impl ToolSource for MockFunctions {
    fn name(&self) -> &str {
        "functions"
    }

    async fn tools(&self) -> Result<Vec<ToolSpec>, ToolError> {
        Ok(self.specs.as_ref().clone())
    }

    /// A string result is the text; any other JSON value its compact JSON text. A
    /// function the case gives no result for answers with a tool error.
    async fn call(&self, name: &str, _arguments: Value) -> Result<ToolOutput, ToolError> {
        match self.results.get(name) {
            Some(Value::String(text)) => Ok(ToolOutput {
                text: text.clone(),
                is_error: false,
            }),
            Some(value) => Ok(ToolOutput {
                text: value.to_string(),
                is_error: false,
            }),
            None => Err(ToolError(format!(
                "no result for `{name}` in this case (input.tool_results)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn functions_are_validated() {
        let params = json!({"functions": [
            {"name": "get_weather", "description": "Weather", "parameters": {"type": "object"}},
            {"name": "bad name!"},
            {"name": "get_weather"},
            {"name": "x", "parameters": 3, "extra": 1},
            "nope"
        ]});
        let map = params.as_object().unwrap();
        let mut p = Params::new(map);
        let specs = read_functions(&mut p);
        assert_eq!(specs.len(), 1);
        let errors = p.finish(()).unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "functions[1].name",
                "functions[2].name",
                "functions[3].extra",
                "functions[3].parameters",
                "functions[4]"
            ]
        );
    }

    #[tokio::test]
    async fn results_come_from_the_case() {
        let functions = MockFunctions {
            specs: Arc::new(Vec::new()),
            results: json!({"a": "sunny", "b": {"t": 21}}),
        };
        assert_eq!(functions.call("a", json!({})).await.unwrap().text, "sunny");
        assert_eq!(
            functions.call("b", json!({})).await.unwrap().text,
            r#"{"t":21}"#
        );
        assert!(
            functions
                .call("c", json!({}))
                .await
                .unwrap_err()
                .0
                .contains("no result")
        );
    }
}
