//! Checking one case, wherever it comes from: a line of an upload, a CSV row, or an
//! inline dataset of a definition. Runs once per case of inputs that may hold millions,
//! so a problem's path is only built when the problem gets listed.

use serde_json::Value;

use crate::components::agent::{CONVERSATION_FIELD, check_conversation};
use crate::model::Case;
use crate::model::Problems;
use crate::model::check::{id_problem, type_name};

/// Longest `case_id`, in bytes (the same cap as every other id of a definition).
pub(super) const MAX_CASE_ID_BYTES: usize = 512;

/// The fields a case may have.
pub(super) const CASE_FIELDS: [&str; 4] = ["case_id", "input", "expected_output", "metadata"];

/// Checks one case; `at(field)` names where a problem is (`at("")`: the case itself).
/// Takes the value so a valid case moves into the result without a copy.
pub(crate) fn check_case(
    value: Value,
    problems: &mut Problems,
    at: &dyn Fn(&str) -> String,
) -> Option<Case> {
    let Value::Object(mut map) = value else {
        problems.report(|| {
            (
                at(""),
                format!("must be an object, got {}", type_name(&value)),
            )
        });
        return None;
    };
    for key in map.keys() {
        if !CASE_FIELDS.contains(&key.as_str()) {
            problems.report(|| {
                (
                    at(key),
                    format!("unknown field; expected one of: {}", CASE_FIELDS.join(", ")),
                )
            });
        }
    }
    let case_id = match map.remove("case_id") {
        None | Some(Value::Null) => {
            problems.report(|| (at("case_id"), "is required".to_owned()));
            None
        }
        Some(Value::String(id))
            if !id.trim().is_empty()
                && id.len() <= MAX_CASE_ID_BYTES
                && id_problem(&id).is_none() =>
        {
            Some(id)
        }
        Some(other) => {
            problems.report(|| {
                let message = match other.as_str() {
                    Some(id) if id.len() > MAX_CASE_ID_BYTES => {
                        format!("must be at most {MAX_CASE_ID_BYTES} bytes")
                    }
                    Some(id) => id_problem(id).unwrap_or("must not be empty").to_owned(),
                    None => format!("must be a string, got {}", type_name(&other)),
                };
                (at("case_id"), message)
            });
            None
        }
    };
    let input = match map.remove("input") {
        None | Some(Value::Null) => {
            problems.report(|| (at("input"), "is required".to_owned()));
            None
        }
        Some(input) => {
            check_agent_fields(&input, problems, at);
            Some(input)
        }
    };
    Some(Case {
        case_id: case_id?,
        input: input?,
        expected_output: map.remove("expected_output").unwrap_or(Value::Null),
        metadata: map.remove("metadata").unwrap_or(Value::Null),
    })
}

/// The fields of `input` agents read by convention: a conversation at `input.messages`
/// (checked message by message, so a malformed one is refused here rather than failing
/// its case later) and mock tool results at `input.tool_results` (an object by name).
/// Only a list of objects is taken for a conversation: datasets made for other uses
/// (OpenAI eval items, say) may hold anything else under that name.
fn check_agent_fields(input: &Value, problems: &mut Problems, at: &dyn Fn(&str) -> String) {
    if let Some(messages) = input
        .get(CONVERSATION_FIELD)
        .filter(|m| m.as_array().is_some_and(|l| l.iter().all(Value::is_object)))
    {
        check_conversation(messages, &mut |path, message| {
            problems.report(|| (at(&format!("input.{CONVERSATION_FIELD}{path}")), message));
        });
    }
    if input.get("tool_results").is_some_and(|r| !r.is_object()) {
        problems.report(|| {
            (
                at("input.tool_results"),
                "must be an object: each mock function's result by name".to_owned(),
            )
        });
    }
}

/// The canonical JSON of a case: what its revision hashes and what the store keeps.
/// Keys in byte order (`case_id`, `expected_output`, `input`, `metadata`), `metadata`
/// left out when null: the same text `canonical_json` gives the serialised [`Case`],
/// without building that value.
pub(super) fn canonical_case(case: &Case) -> String {
    use crate::model::canonical_json;
    let mut out = String::with_capacity(64);
    out.push_str("{\"case_id\":");
    out.push_str(&canonical_json(&Value::String(case.case_id.clone())));
    out.push_str(",\"expected_output\":");
    out.push_str(&canonical_json(&case.expected_output));
    out.push_str(",\"input\":");
    out.push_str(&canonical_json(&case.input));
    if !case.metadata.is_null() {
        out.push_str(",\"metadata\":");
        out.push_str(&canonical_json(&case.metadata));
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(value: Value) -> (Option<Case>, Vec<String>) {
        let mut problems = Problems::default();
        let at = |key: &str| {
            if key.is_empty() {
                "line 3".to_owned()
            } else {
                format!("line 3.{key}")
            }
        };
        let case = check_case(value, &mut problems, &at);
        let details = problems
            .into_details()
            .into_iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect();
        (case, details)
    }

    #[test]
    fn malformed_conversations_and_tool_results_are_refused_naming_the_message() {
        let (case, problems) = check(json!({
            "case_id": "c", "input": {
                "messages": [{"role": "user", "content": "hi"}, {"role": "robot", "content": "x"}],
                "tool_results": [1]
            }
        }));
        assert!(case.is_some());
        assert_eq!(
            problems,
            [
                "line 3.input.messages[1].role: must be one of system, developer, user, assistant, tool",
                "line 3.input.tool_results: must be an object: each mock function's result by name"
            ]
        );
        // Anything but a list of objects is other data under the same name.
        for other in [
            json!("hi"),
            json!(["a", "b"]),
            json!([{"role": "user", "content": "x"}, 1]),
        ] {
            let (_, problems) = check(json!({"case_id": "c", "input": {"messages": other}}));
            assert!(problems.is_empty(), "{problems:?}");
        }
    }

    #[test]
    fn a_valid_case_moves_through_and_its_canonical_form_matches_the_serialised_case() {
        let (case, problems) = check(json!({
            "input": {"b": 1.0, "a": "x"}, "case_id": "c1", "metadata": {"tag": "t"}
        }));
        assert!(problems.is_empty());
        let case = case.unwrap();
        let serialised = crate::model::canonical_json(&serde_json::to_value(&case).unwrap());
        assert_eq!(canonical_case(&case), serialised);
        assert_eq!(
            canonical_case(&case),
            r#"{"case_id":"c1","expected_output":null,"input":{"a":"x","b":1},"metadata":{"tag":"t"}}"#
        );
    }

    #[test]
    fn every_problem_names_its_field() {
        let (case, problems) = check(json!({"case_id": "", "extra": 1}));
        assert!(case.is_none());
        assert_eq!(
            problems,
            [
                "line 3.extra: unknown field; expected one of: case_id, input, expected_output, metadata",
                "line 3.case_id: must not be empty",
                "line 3.input: is required",
            ]
        );
        let (_, problems) = check(json!([1]));
        assert_eq!(problems, ["line 3: must be an object, got an array"]);
    }
}
