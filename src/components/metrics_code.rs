//! `builtin/code_execution` and `builtin/python_grader`: metrics that run a program in one
//! of the operator's sandboxes.
//!
//! Both name the sandbox in their params and are refused at submission when it (or the
//! language) is not configured, so a run never silently skips its code metric.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use super::text::{as_text, field};
use super::{ComponentError, Metric, MetricScore, Params, Registry};
use crate::model::Case;
use crate::sandbox::{ExecRequest, Execution, SandboxError, Sandboxes};

/// Characters of stdout and stderr kept in a score's details.
const DETAIL_CHARS: usize = 2_000;
/// Most stdin/stdout pairs one case may list.
const MAX_IO_PAIRS: usize = 100;
/// Shortest wall time a run may ask for.
const MIN_TIMEOUT_S: f64 = 0.1;

pub(super) fn register(registry: &mut Registry, sandboxes: Arc<Sandboxes>) {
    let for_grader = sandboxes.clone();
    registry.register_metric("builtin/code_execution", "1", move |p| {
        let target = Target::read(p, &sandboxes, None);
        Arc::new(CodeExecution {
            field: p.string("field"),
            target,
        })
    });
    registry.register_metric("builtin/python_grader", "1", move |p| {
        let target = Target::read(p, &for_grader, Some("python"));
        let source = p.required_string("source");
        if !source.is_empty() && !source.contains("def grade") {
            p.error("source", "must define `grade(sample, item)`");
        }
        let pass_threshold = p
            .value("pass_threshold")
            .map(|v| v.as_f64().filter(|x| x.is_finite()));
        if let Some(None) = pass_threshold {
            p.error("pass_threshold", "must be a number");
        }
        Arc::new(PythonGrader {
            target,
            source,
            pass_threshold: pass_threshold.flatten(),
        })
    });
}

/// Where and how a metric's programs run.
struct Target {
    sandboxes: Arc<Sandboxes>,
    sandbox: String,
    language: String,
    timeout: Duration,
}

impl Target {
    /// Reads `sandbox`, `language` (fixed when `language` is given) and `timeout_s`,
    /// checked against what the operator configured.
    fn read(p: &mut Params<'_>, sandboxes: &Arc<Sandboxes>, language: Option<&str>) -> Self {
        let sandbox = p.required_string("sandbox");
        // A language the sandbox lacks is the `language` param's fault, or the sandbox's
        // when the metric fixes the language.
        let (language, language_key) = match language {
            Some(fixed) => (fixed.to_owned(), "sandbox"),
            None => (
                p.string("language").unwrap_or_else(|| "python".to_owned()),
                "language",
            ),
        };
        if sandboxes.is_empty() {
            p.error(
                "sandbox",
                "no sandbox is configured on this server; the operator enables one with \
                 `themis serve --sandbox local` or `--sandbox name=…,kind=piston|sandbox_fusion,url=…`",
            );
        } else if !sandbox.is_empty() {
            match sandboxes.languages(&sandbox) {
                None => p.error(
                    "sandbox",
                    format!(
                        "unknown sandbox `{sandbox}`; configured: {}",
                        sandboxes.names().join(", ")
                    ),
                ),
                Some(languages) if !languages.contains(&language) => p.error(
                    language_key,
                    format!(
                        "sandbox `{sandbox}` does not run `{language}`; it runs {}",
                        languages.join(", ")
                    ),
                ),
                Some(_) => {}
            }
        }
        let max = sandboxes.limits().wall.as_secs_f64().max(MIN_TIMEOUT_S);
        let timeout_s = p.f64_in("timeout_s", max, MIN_TIMEOUT_S, max);
        Target {
            sandboxes: sandboxes.clone(),
            sandbox,
            language,
            timeout: Duration::from_secs_f64(timeout_s),
        }
    }

    async fn run(&self, source: String, stdin: String) -> Result<Execution, ComponentError> {
        let request = ExecRequest {
            language: self.language.clone(),
            source,
            stdin,
            timeout: self.timeout,
        };
        self.sandboxes
            .execute(&self.sandbox, &request)
            .await
            .map_err(|e| match e {
                SandboxError::Unavailable(_) => ComponentError::retryable(e.to_string()),
                other => ComponentError::new(other.to_string()),
            })
    }

    /// What a score's details say about one execution, output truncated.
    fn details(&self, execution: &Execution) -> Map<String, Value> {
        let mut details = Map::new();
        details.insert("sandbox".into(), json!(self.sandbox));
        details.insert("language".into(), json!(self.language));
        details.insert("exit_code".into(), json!(execution.exit_code));
        details.insert("signal".into(), json!(execution.signal));
        details.insert("limit".into(), json!(execution.limit.map(|l| l.as_str())));
        details.insert("stdout".into(), json!(truncate(&execution.stdout)));
        details.insert("stderr".into(), json!(truncate(&execution.stderr)));
        if let Some(error) = &execution.compile_error {
            details.insert("compile_error".into(), json!(truncate(error)));
        }
        details.insert(
            "duration_ms".into(),
            json!(execution.duration.as_millis() as u64),
        );
        details
    }
}

fn truncate(text: &str) -> String {
    match text.char_indices().nth(DETAIL_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// The tests of a case, from its `expected_output`.
enum Tests {
    /// A program appended after the code; exit status 0 passes.
    Program(String),
    /// Every stdin must produce its stdout (trailing whitespace ignored).
    Io(Vec<(String, String)>),
}

fn tests_of(expected: &Value) -> Result<Tests, ComponentError> {
    let shape = || {
        ComponentError::new(
            "expected_output must be {\"test\": PROGRAM} or {\"io\": [{\"stdin\", \"stdout\"}, …]}",
        )
    };
    let map = expected.as_object().ok_or_else(shape)?;
    match (map.get("test"), map.get("io")) {
        (Some(Value::String(program)), None) => Ok(Tests::Program(program.clone())),
        (None, Some(Value::Array(pairs))) if !pairs.is_empty() => {
            if pairs.len() > MAX_IO_PAIRS {
                return Err(ComponentError::new(format!(
                    "expected_output.io lists {} pairs; at most {MAX_IO_PAIRS}",
                    pairs.len()
                )));
            }
            pairs
                .iter()
                .enumerate()
                .map(|(i, pair)| match (pair.get("stdin"), pair.get("stdout")) {
                    (stdin, Some(Value::String(stdout)))
                        if stdin.is_none_or(|s| s.is_string() || s.is_null()) =>
                    {
                        Ok((
                            stdin.and_then(Value::as_str).unwrap_or("").to_owned(),
                            stdout.clone(),
                        ))
                    }
                    _ => Err(ComponentError::new(format!(
                        "expected_output.io[{i}] must be {{\"stdin\": text, \"stdout\": text}}"
                    ))),
                })
                .collect::<Result<_, _>>()
                .map(Tests::Io)
        }
        _ => Err(shape()),
    }
}

/// Outputs match when equal line by line after trailing whitespace is dropped.
fn same_output(actual: &str, expected: &str) -> bool {
    let lines = |text: &str| -> Vec<String> {
        text.trim_end()
            .lines()
            .map(|line| line.trim_end().to_owned())
            .collect()
    };
    lines(actual) == lines(expected)
}

/// Runs the parsed code against the case's tests: 1 when they pass, else 0 with what
/// happened (output, exit status, limit hit) in the details.
struct CodeExecution {
    field: Option<String>,
    target: Target,
}

#[async_trait]
impl Metric for CodeExecution {
    fn score(&self, _parsed: &Value, _case: &Case) -> Result<MetricScore, ComponentError> {
        Err(ComponentError::new(
            "builtin/code_execution runs code: it is called through score_case",
        ))
    }

    async fn score_case(&self, parsed: &Value, case: &Case) -> Result<MetricScore, ComponentError> {
        let tests = tests_of(&case.expected_output)?;
        let code = match field(parsed, self.field.as_deref()) {
            Ok(Value::String(code)) => code.clone(),
            Ok(other) if !other.is_null() => as_text(other),
            _ => {
                return Ok(MetricScore {
                    score: 0.0,
                    details: json!({"reason": "the output holds no code"}),
                });
            }
        };
        match tests {
            Tests::Program(test) => {
                let execution = self
                    .target
                    .run(format!("{code}\n\n{test}\n"), String::new())
                    .await?;
                let passed = execution.succeeded();
                let mut details = self.target.details(&execution);
                details.insert("passed".into(), json!(passed));
                Ok(MetricScore {
                    score: if passed { 1.0 } else { 0.0 },
                    details: Value::Object(details),
                })
            }
            Tests::Io(pairs) => {
                let total = pairs.len();
                let mut last = None;
                for (i, (stdin, expected)) in pairs.into_iter().enumerate() {
                    let execution = self.target.run(code.clone(), stdin).await?;
                    let passed = execution.succeeded() && same_output(&execution.stdout, &expected);
                    let mut details = self.target.details(&execution);
                    details.insert("passed".into(), json!(passed));
                    details.insert("io_pairs".into(), json!(total));
                    if !passed {
                        details.insert("failed_pair".into(), json!(i));
                        details.insert("expected_stdout".into(), json!(truncate(&expected)));
                        return Ok(MetricScore {
                            score: 0.0,
                            details: Value::Object(details),
                        });
                    }
                    last = Some(details);
                }
                Ok(MetricScore {
                    score: 1.0,
                    details: last.map(Value::Object).unwrap_or(Value::Null),
                })
            }
        }
    }
}

/// OpenAI's python grader: the definition's `grade(sample, item) -> float` runs in the
/// sandbox with `sample` (`output_text`, `output_json`) and `item` (the case) as JSON;
/// the score is what it returns.
struct PythonGrader {
    target: Target,
    source: String,
    pass_threshold: Option<f64>,
}

/// Appended to the grader's source: reads `{"sample", "item"}` from stdin and prints
/// the grade as the last line of stdout.
const GRADER_MAIN: &str = r#"

def __themis_main():
    import json, sys
    data = json.loads(sys.stdin.read())
    result = float(grade(data["sample"], data["item"]))
    sys.stdout.write("\n" + json.dumps(result) + "\n")


__themis_main()
"#;

/// The grader's `item`: the case (`case_id`, `input`, `expected_output`, `metadata`),
/// with an object input's fields also at the top level, as a dataset row would be.
fn item_of(case: &Case) -> Value {
    let mut item = Map::new();
    if let Value::Object(input) = &case.input {
        item.extend(input.clone());
    }
    item.insert("case_id".into(), json!(case.case_id));
    item.insert("input".into(), case.input.clone());
    item.insert("expected_output".into(), case.expected_output.clone());
    item.insert("metadata".into(), case.metadata.clone());
    Value::Object(item)
}

/// The grader's `sample`: the parsed output as text and, when it is JSON structure, as
/// JSON.
fn sample_of(parsed: &Value) -> Value {
    let output_json = match parsed {
        Value::Object(_) | Value::Array(_) => parsed.clone(),
        Value::String(text) => serde_json::from_str::<Value>(text)
            .ok()
            .filter(|v| v.is_object() || v.is_array())
            .unwrap_or(Value::Null),
        _ => Value::Null,
    };
    json!({"output_text": as_text(parsed), "output_json": output_json})
}

#[async_trait]
impl Metric for PythonGrader {
    fn score(&self, _parsed: &Value, _case: &Case) -> Result<MetricScore, ComponentError> {
        Err(ComponentError::new(
            "builtin/python_grader runs code: it is called through score_case",
        ))
    }

    async fn score_case(&self, parsed: &Value, case: &Case) -> Result<MetricScore, ComponentError> {
        let input = json!({"sample": sample_of(parsed), "item": item_of(case)}).to_string();
        let execution = self
            .target
            .run(format!("{}{GRADER_MAIN}", self.source), input)
            .await?;
        let grade = execution
            .succeeded()
            .then(|| execution.stdout.trim_end().rsplit('\n').next())
            .flatten()
            .and_then(|line| line.trim().parse::<f64>().ok())
            .filter(|x| x.is_finite());
        let Some(grade) = grade else {
            let why = execution
                .limit
                .map(|l| format!("hit its {} limit", l.as_str()))
                .or_else(|| {
                    execution
                        .stderr
                        .trim_end()
                        .lines()
                        .last()
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| "returned no number".to_owned());
            return Err(ComponentError::new(format!(
                "python grader failed: {}",
                truncate(&why)
            )));
        };
        let mut details = self.target.details(&execution);
        details.remove("exit_code");
        details.remove("signal");
        details.remove("limit");
        if let Some(threshold) = self.pass_threshold {
            details.insert("passed".into(), json!(grade >= threshold));
        }
        Ok(MetricScore {
            score: grade,
            details: Value::Object(details),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_test_shapes_and_refuses_others() {
        assert!(matches!(
            tests_of(&json!({"test": "assert f() == 1"})),
            Ok(Tests::Program(_))
        ));
        match tests_of(&json!({"io": [{"stdin": "1 2", "stdout": "3"}, {"stdout": "0"}]})) {
            Ok(Tests::Io(pairs)) => assert_eq!(pairs[1], (String::new(), "0".to_owned())),
            _ => panic!("io pairs"),
        }
        for bad in [
            json!("print(1)"),
            json!({"io": []}),
            json!({"io": [{"stdin": 1, "stdout": "x"}]}),
            json!({"test": "x", "io": []}),
        ] {
            assert!(tests_of(&bad).is_err(), "{bad}");
        }
        let many: Vec<Value> = (0..=MAX_IO_PAIRS).map(|_| json!({"stdout": ""})).collect();
        assert!(tests_of(&json!({ "io": many })).is_err());
    }

    #[test]
    fn outputs_compare_without_trailing_whitespace() {
        assert!(same_output("3  \n4\n\n", "3\n4"));
        assert!(!same_output("3\n4", "3 4"));
        assert!(!same_output(" 3", "3"));
    }

    #[test]
    fn grader_sees_the_case_as_an_item() {
        let case = Case {
            case_id: "c1".into(),
            input: json!({"question": "2+2", "input": "shadowed"}),
            expected_output: json!("4"),
            metadata: Value::Null,
        };
        let item = item_of(&case);
        assert_eq!(item["question"], "2+2");
        assert_eq!(item["input"]["question"], "2+2");
        assert_eq!(item["expected_output"], "4");
        assert_eq!(sample_of(&json!("{\"a\": 1}"))["output_json"]["a"], 1);
        assert_eq!(sample_of(&json!("4"))["output_json"], Value::Null);
    }
}
