//! The scale a person scores each component on when reviewing a case. Every component
//! records a score in [0, 1]; people answer in the component's own terms: 0 or 1 for
//! the right-or-wrong metrics and pass/fail judges, the judge's own whole-number scale
//! (1..5 by default), and a number in [0, 1] for overlap measures.

use serde_json::{Map, Value};

use super::ComponentKind;
use crate::model::ReviewScale;

/// Metrics whose every score is 0 or 1.
const BINARY_METRICS: [&str; 7] = [
    "builtin/exact_match",
    "builtin/contains",
    "builtin/regex_match",
    "builtin/numeric_match",
    "builtin/json_schema",
    "builtin/choice_accuracy",
    "builtin/math_equivalence",
];

/// Most labels an ordinal scale has before it is scored as a measurement instead.
const MAX_ORDINAL_LABELS: i64 = 101;

/// The scale of the component `name` (of `kind`) with `params` as a definition gave them.
pub fn review_scale(kind: ComponentKind, name: &str, params: &Map<String, Value>) -> ReviewScale {
    match (kind, name) {
        (ComponentKind::Metric, name) if BINARY_METRICS.contains(&name) => ReviewScale::Binary,
        (ComponentKind::Judge, "openai/judge") => judge_scale(params),
        _ => ReviewScale::Continuous,
    }
}

/// `openai/judge`: pass/fail, or its `scale` (default 1..5) when its ends are whole.
fn judge_scale(params: &Map<String, Value>) -> ReviewScale {
    if params.get("pass_fail").and_then(Value::as_bool) == Some(true) {
        return ReviewScale::Binary;
    }
    let end = |key: &str, default: i64| match params.get("scale") {
        None | Some(Value::Null) => Some(default),
        Some(scale) => scale.get(key).and_then(Value::as_i64),
    };
    match (end("min", 1), end("max", 5)) {
        (Some(min), Some(max)) if min < max && max - min < MAX_ORDINAL_LABELS => {
            ReviewScale::Ordinal { min, max }
        }
        _ => ReviewScale::Continuous,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn params(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn scales_follow_what_the_component_records() {
        let none = Map::new();
        assert_eq!(
            review_scale(ComponentKind::Metric, "builtin/exact_match", &none),
            ReviewScale::Binary
        );
        assert_eq!(
            review_scale(ComponentKind::Metric, "builtin/bleu", &none),
            ReviewScale::Continuous
        );
        assert_eq!(
            review_scale(ComponentKind::Judge, "openai/judge", &none),
            ReviewScale::Ordinal { min: 1, max: 5 }
        );
        assert_eq!(
            review_scale(
                ComponentKind::Judge,
                "openai/judge",
                &params(json!({"scale": {"min": 0, "max": 10}}))
            ),
            ReviewScale::Ordinal { min: 0, max: 10 }
        );
        assert_eq!(
            review_scale(
                ComponentKind::Judge,
                "openai/judge",
                &params(json!({"pass_fail": true}))
            ),
            ReviewScale::Binary
        );
        assert_eq!(
            review_scale(
                ComponentKind::Judge,
                "openai/judge",
                &params(json!({"scale": {"min": 0.5, "max": 2.5}}))
            ),
            ReviewScale::Continuous
        );
        assert_eq!(
            review_scale(ComponentKind::Judge, "builtin/rubric_keywords", &none),
            ReviewScale::Continuous
        );
    }
}
