//! Trajectory metrics: what an agent did, read from its transcript.
//!
//! - `builtin/tool_call_match`: the tool calls made against the expected ones (`[{name,
//!   arguments}]`, from the case's `expected_output` or the params), in one of four
//!   modes; arguments compared as JSON values, optionally on named keys only.
//! - `builtin/tool_calls`: how many tool calls were made (of one tool, with `name`).

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::text::select;
use super::{ComponentError, Metric, MetricScore, Params, Registry};
use crate::model::{Case, ToolCallRecord, Transcript};

/// Most expected calls in one list.
const MAX_EXPECTED: usize = 1_000;

pub(super) fn register(registry: &mut Registry) {
    registry.register_metric("builtin/tool_call_match", "1", |p| {
        let mode = match p.string("mode").as_deref() {
            None | Some("strict") => Mode::Strict,
            Some("unordered") => Mode::Unordered,
            Some("subset") => Mode::Subset,
            Some("superset") => Mode::Superset,
            Some(_) => {
                p.error("mode", "must be strict, unordered, subset or superset");
                Mode::Strict
            }
        };
        let expected = p
            .value("expected")
            .and_then(|value| match expected_calls(value) {
                Ok(calls) => Some(calls),
                Err(message) => {
                    p.error("expected", message);
                    None
                }
            });
        Arc::new(ToolCallMatch {
            mode,
            expected,
            field: p.string("field").unwrap_or_else(|| "tool_calls".to_owned()),
            argument_keys: p.string_list("argument_keys"),
        })
    });
    registry.register_metric("builtin/tool_calls", "1", |p: &mut Params<'_>| {
        Arc::new(ToolCalls {
            name: p.string("name"),
        })
    });
}

/// How the calls made must relate to the expected ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The same calls in the same order.
    Strict,
    /// The same calls in any order.
    Unordered,
    /// Every call made is an expected one (the agent did no more than expected).
    Subset,
    /// Every expected call was made (and maybe others).
    Superset,
}

/// An expected call: a name, and arguments unless any will do.
#[derive(Debug, Clone, PartialEq)]
struct Expected {
    name: String,
    arguments: Option<Value>,
}

/// `[{name, arguments?}]`, checked.
fn expected_calls(value: &Value) -> Result<Vec<Expected>, String> {
    let list = value
        .as_array()
        .filter(|l| l.len() <= MAX_EXPECTED)
        .ok_or_else(|| format!("must be a list of at most {MAX_EXPECTED} {{name, arguments}}"))?;
    list.iter()
        .enumerate()
        .map(|(i, item)| {
            let name = item
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("[{i}] must be an object with a `name`"))?;
            Ok(Expected {
                name: name.to_owned(),
                arguments: item.get("arguments").filter(|a| !a.is_null()).cloned(),
            })
        })
        .collect()
}

fn needs_transcript(id: &str) -> ComponentError {
    ComponentError::new(format!(
        "{id} reads an agent's transcript: the output must come from openai/agent"
    ))
}

struct ToolCallMatch {
    mode: Mode,
    /// From the params; else from the case's `expected_output` at `field`.
    expected: Option<Vec<Expected>>,
    field: String,
    argument_keys: Option<Vec<String>>,
}

impl ToolCallMatch {
    fn expected(&self, case: &Case) -> Result<Vec<Expected>, ComponentError> {
        if let Some(expected) = &self.expected {
            return Ok(expected.clone());
        }
        // `metadata.x` reads the case's metadata; any other path its expected output.
        let value = match self.field.strip_prefix("metadata.") {
            Some(path) => select(&case.metadata, path),
            None => match &case.expected_output {
                list @ Value::Array(_) => Some(list),
                other => select(other, &self.field),
            },
        };
        let value = value.ok_or_else(|| {
            ComponentError::new(format!(
                "builtin/tool_call_match: the case has no `{}` list of {{name, arguments}} \
                 (in expected_output, or expected_output is not one)",
                self.field
            ))
        })?;
        expected_calls(value).map_err(|e| {
            ComponentError::new(format!("builtin/tool_call_match: expected calls {e}"))
        })
    }

    /// Whether a call made matches an expected one.
    fn matches(&self, made: &ToolCallRecord, expected: &Expected) -> bool {
        if made.name != expected.name {
            return false;
        }
        let Some(want) = &expected.arguments else {
            return true;
        };
        match &self.argument_keys {
            None => json_equal(&made.arguments, want),
            Some(keys) => keys
                .iter()
                .all(|key| match (made.arguments.get(key), want.get(key)) {
                    (Some(a), Some(b)) => json_equal(a, b),
                    (None, None) => true,
                    _ => false,
                }),
        }
    }
}

/// JSON equality with numbers compared by value (`1` equals `1.0`).
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

/// The largest matching of made calls to expected calls (Kuhn's augmenting paths):
/// `pair[e]` is the made call matched to expected call `e`.
fn max_matching(edges: &[Vec<usize>], made: usize) -> Vec<Option<usize>> {
    fn augment(
        e: usize,
        edges: &[Vec<usize>],
        seen: &mut [bool],
        owner: &mut [Option<usize>],
    ) -> bool {
        for &m in &edges[e] {
            if seen[m] {
                continue;
            }
            seen[m] = true;
            if owner[m].is_none_or(|other| augment(other, edges, seen, owner)) {
                owner[m] = Some(e);
                return true;
            }
        }
        false
    }
    let mut owner: Vec<Option<usize>> = vec![None; made];
    for e in 0..edges.len() {
        let mut seen = vec![false; made];
        augment(e, edges, &mut seen, &mut owner);
    }
    let mut pair = vec![None; edges.len()];
    for (m, e) in owner.iter().enumerate() {
        if let Some(e) = e {
            pair[*e] = Some(m);
        }
    }
    pair
}

#[async_trait]
impl Metric for ToolCallMatch {
    fn score(&self, _: &Value, _: &Case) -> Result<MetricScore, ComponentError> {
        Err(needs_transcript("builtin/tool_call_match"))
    }

    async fn score_transcript(
        &self,
        _: &Value,
        case: &Case,
        transcript: Option<&Transcript>,
    ) -> Result<MetricScore, ComponentError> {
        let transcript = transcript.ok_or_else(|| needs_transcript("builtin/tool_call_match"))?;
        let expected = self.expected(case)?;
        let made: Vec<&ToolCallRecord> = transcript.tool_calls().collect();
        let passed = if self.mode == Mode::Strict {
            made.len() == expected.len()
                && made.iter().zip(&expected).all(|(m, e)| self.matches(m, e))
        } else {
            let edges: Vec<Vec<usize>> = expected
                .iter()
                .map(|e| {
                    (0..made.len())
                        .filter(|m| self.matches(made[*m], e))
                        .collect()
                })
                .collect();
            let matched = max_matching(&edges, made.len()).iter().flatten().count();
            match self.mode {
                Mode::Unordered => matched == expected.len() && matched == made.len(),
                Mode::Subset => matched == made.len(),
                Mode::Superset => matched == expected.len(),
                Mode::Strict => unreachable!("handled above"),
            }
        };
        let names: Vec<&str> = made.iter().map(|c| c.name.as_str()).collect();
        Ok(MetricScore {
            score: if passed { 1.0 } else { 0.0 },
            details: json!({"made": names, "expected": expected.len()}),
        })
    }
}

struct ToolCalls {
    name: Option<String>,
}

#[async_trait]
impl Metric for ToolCalls {
    fn score(&self, _: &Value, _: &Case) -> Result<MetricScore, ComponentError> {
        Err(needs_transcript("builtin/tool_calls"))
    }

    async fn score_transcript(
        &self,
        _: &Value,
        _: &Case,
        transcript: Option<&Transcript>,
    ) -> Result<MetricScore, ComponentError> {
        let transcript = transcript.ok_or_else(|| needs_transcript("builtin/tool_calls"))?;
        let count = transcript
            .tool_calls()
            .filter(|c| self.name.as_ref().is_none_or(|name| &c.name == name))
            .count();
        Ok(MetricScore::of(count as f64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AgentOutcome, Turn, Usage};

    fn transcript(calls: &[(&str, Value)]) -> Transcript {
        Transcript {
            outcome: AgentOutcome::Answered,
            turns: vec![Turn {
                content: String::new(),
                tool_calls: calls
                    .iter()
                    .enumerate()
                    .map(|(i, (name, arguments))| ToolCallRecord {
                        id: format!("c{i}"),
                        name: (*name).to_owned(),
                        arguments: arguments.clone(),
                    })
                    .collect(),
                tool_results: Vec::new(),
                finish_reason: None,
                usage: Usage::default(),
                latency_ms: 0,
            }],
        }
    }

    fn case(expected: Value) -> Case {
        Case {
            case_id: "c".into(),
            input: Value::Null,
            expected_output: expected,
            metadata: Value::Null,
        }
    }

    async fn score(params: Value, expected: Value, made: &[(&str, Value)]) -> Option<f64> {
        let registry = Registry::builtin();
        let metric = registry
            .metric("builtin/tool_call_match", params.as_object().unwrap())
            .unwrap()
            .component;
        metric
            .score_transcript(&Value::Null, &case(expected), Some(&transcript(made)))
            .await
            .ok()
            .map(|s| s.score)
    }

    #[tokio::test]
    async fn the_four_modes() {
        let expected = json!({"tool_calls": [
            {"name": "search", "arguments": {"q": "paris", "n": 1}},
            {"name": "weather"}
        ]});
        let same = [
            ("search", json!({"n": 1.0, "q": "paris"})),
            ("weather", json!({"city": "Paris"})),
        ];
        let swapped = [same[1].clone(), same[0].clone()];
        let fewer = [same[1].clone()];
        let more = [same[0].clone(), same[1].clone(), ("time", json!({}))];
        for (mode, made, want) in [
            ("strict", &same[..], 1.0),
            ("strict", &swapped[..], 0.0),
            ("unordered", &swapped[..], 1.0),
            ("unordered", &more[..], 0.0),
            ("subset", &fewer[..], 1.0),
            ("subset", &more[..], 0.0),
            ("superset", &more[..], 1.0),
            ("superset", &fewer[..], 0.0),
        ] {
            let got = score(json!({"mode": mode}), expected.clone(), made).await;
            assert_eq!(got, Some(want), "{mode} {made:?}");
        }
        // Arguments differ: a mismatch, unless only the named keys count.
        let other = [
            ("search", json!({"q": "paris", "n": 5})),
            ("weather", json!({})),
        ];
        assert_eq!(score(json!({}), expected.clone(), &other).await, Some(0.0));
        assert_eq!(
            score(json!({"argument_keys": ["q"]}), expected.clone(), &other).await,
            Some(1.0)
        );
        // Expected calls in the params; a list as expected_output.
        let params = json!({"expected": [{"name": "weather"}], "mode": "superset"});
        assert_eq!(score(params, Value::Null, &same).await, Some(1.0));
        assert_eq!(
            score(json!({}), json!([{"name": "weather"}]), &fewer).await,
            Some(1.0)
        );
        // From the metadata.
        let mut in_metadata = case(json!("42"));
        in_metadata.metadata = json!({"calls": [{"name": "weather"}]});
        let registry = Registry::builtin();
        let metric = registry
            .metric(
                "builtin/tool_call_match",
                json!({"field": "metadata.calls"}).as_object().unwrap(),
            )
            .unwrap()
            .component;
        let scored = metric
            .score_transcript(&Value::Null, &in_metadata, Some(&transcript(&fewer)))
            .await;
        assert_eq!(scored.unwrap().score, 1.0);
        // No expectation in the case: a score error.
        assert_eq!(score(json!({}), json!("text"), &same).await, None);
    }

    #[tokio::test]
    async fn matching_is_not_fooled_by_order_of_greedy_choices() {
        // The first made call matches both expected ones; greedy pairing would leave
        // the second expected call unmatched.
        let expected = json!([{"name": "f"}, {"name": "f", "arguments": {"a": 1}}]);
        let made = [("f", json!({"a": 1})), ("f", json!({"a": 2}))];
        assert_eq!(
            score(json!({"mode": "unordered"}), expected, &made).await,
            Some(1.0)
        );
    }

    #[tokio::test]
    async fn tool_calls_counts_and_needs_a_transcript() {
        let registry = Registry::builtin();
        let count = |params: Value| {
            registry
                .metric("builtin/tool_calls", params.as_object().unwrap())
                .unwrap()
                .component
        };
        let made = transcript(&[("a", json!({})), ("b", json!({})), ("a", json!({}))]);
        let all = count(json!({}));
        let c = case(Value::Null);
        let scored = all.score_transcript(&Value::Null, &c, Some(&made)).await;
        assert_eq!(scored.unwrap().score, 3.0);
        let only_a = count(json!({"name": "a"}));
        let scored = only_a.score_transcript(&Value::Null, &c, Some(&made)).await;
        assert_eq!(scored.unwrap().score, 2.0);
        let error = all
            .score_transcript(&Value::Null, &c, None)
            .await
            .unwrap_err();
        assert!(error.message.contains("openai/agent"), "{error}");
    }
}
