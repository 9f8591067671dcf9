//! OpenAI's graders (`testing_criteria`) read and checked: every problem is reported with
//! its path, so `POST /v1/evals` answers a 400 naming the field.

use serde_json::{Map, Value};

use super::formula::{self, Expr};
use super::similarity::METRICS;
use super::template;
use crate::model::FieldError;

/// Most sub-graders of a `multi` grader, and most messages of a model grader.
const MAX_SUB_GRADERS: usize = 16;
const MAX_MESSAGES: usize = 64;
const MAX_LABELS: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    Eq,
    Ne,
    Like,
    Ilike,
}

/// A chat message of a model grader: a role and a template.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MessageSpec {
    pub role: String,
    pub content: String,
}

#[derive(Debug, Clone)]
pub(crate) enum GraderSpec {
    StringCheck {
        input: String,
        reference: String,
        operation: Operation,
    },
    TextSimilarity {
        input: String,
        reference: String,
        metric: String,
        pass_threshold: f64,
    },
    LabelModel {
        model: String,
        input: Vec<MessageSpec>,
        labels: Vec<String>,
        passing_labels: Vec<String>,
    },
    ScoreModel {
        model: String,
        input: Vec<MessageSpec>,
        range: (f64, f64),
        pass_threshold: Option<f64>,
        sampling: Map<String, Value>,
    },
    Python {
        source: String,
        pass_threshold: Option<f64>,
    },
    Multi {
        graders: Vec<(String, Grader)>,
        formula: Expr,
        pass_threshold: Option<f64>,
    },
}

/// A grader with its name and kind (`type`).
#[derive(Debug, Clone)]
pub(crate) struct Grader {
    pub name: String,
    pub kind: String,
    pub spec: GraderSpec,
}

/// Collects problems under a path prefix.
struct Reader<'a> {
    map: &'a Map<String, Value>,
    path: &'a str,
    problems: &'a mut Vec<FieldError>,
}

impl Reader<'_> {
    fn error(&mut self, key: &str, message: impl Into<String>) {
        self.problems.push(FieldError {
            path: if key.is_empty() {
                self.path.to_owned()
            } else {
                format!("{}.{key}", self.path)
            },
            message: message.into(),
        });
    }

    fn string(&mut self, key: &str) -> String {
        match self.map.get(key) {
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                self.error(key, "must be a string");
                String::new()
            }
            None => {
                self.error(key, "is required");
                String::new()
            }
        }
    }

    fn template(&mut self, key: &str, sample: bool) -> String {
        let text = self.string(key);
        if let Err(e) = template::check(&text, sample) {
            self.error(key, e);
        }
        text
    }

    fn number(&mut self, key: &str) -> Option<f64> {
        match self.map.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_f64().filter(|x| x.is_finite()) {
                Some(x) => Some(x),
                None => {
                    self.error(key, "must be a number");
                    None
                }
            },
        }
    }

    fn strings(&mut self, key: &str) -> Vec<String> {
        match self.map.get(key).and_then(Value::as_array) {
            Some(items) if items.len() <= MAX_LABELS => {
                let strings: Vec<String> = items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect();
                if strings.len() != items.len() || strings.is_empty() {
                    self.error(key, "must be a non-empty list of strings");
                }
                strings
            }
            _ => {
                self.error(key, format!("must be a list of 1 to {MAX_LABELS} strings"));
                Vec::new()
            }
        }
    }

    fn messages(&mut self, key: &str) -> Vec<MessageSpec> {
        let Some(items) = self.map.get(key).and_then(Value::as_array) else {
            self.error(key, "must be a list of messages");
            return Vec::new();
        };
        if items.is_empty() || items.len() > MAX_MESSAGES {
            self.error(key, format!("must hold 1 to {MAX_MESSAGES} messages"));
        }
        let mut out = Vec::new();
        for (i, item) in items.iter().take(MAX_MESSAGES).enumerate() {
            let at = format!("{key}[{i}]");
            let role = item.get("role").and_then(Value::as_str).unwrap_or("");
            if !["system", "developer", "user", "assistant"].contains(&role) {
                self.error(
                    &format!("{at}.role"),
                    "must be system, developer, user or assistant",
                );
            }
            let content = match item.get("content").map(template::content_text) {
                Some(Ok(text)) => text,
                Some(Err(e)) => {
                    self.error(&format!("{at}.content"), e);
                    String::new()
                }
                None => {
                    self.error(&format!("{at}.content"), "is required");
                    String::new()
                }
            };
            if let Err(e) = template::check(&content, true) {
                self.error(&format!("{at}.content"), e);
            }
            out.push(MessageSpec {
                role: role.to_owned(),
                content,
            });
        }
        out
    }
}

/// Reads one grader at `path`; `None` (with problems pushed) when it is invalid.
/// `embeddings` says whether `text_similarity`'s `cosine` can be computed.
pub(crate) fn parse_grader(
    value: &Value,
    path: &str,
    problems: &mut Vec<FieldError>,
) -> Option<Grader> {
    parse(value, path, problems, false)
}

/// `nested`: a `multi` grader's sub-grader, which passes no verdict of its own (so
/// `text_similarity` needs no `pass_threshold` there).
fn parse(
    value: &Value,
    path: &str,
    problems: &mut Vec<FieldError>,
    nested: bool,
) -> Option<Grader> {
    let Some(map) = value.as_object() else {
        problems.push(FieldError {
            path: path.to_owned(),
            message: "must be an object".into(),
        });
        return None;
    };
    let before = problems.len();
    let mut r = Reader {
        map,
        path,
        problems,
    };
    let name = r.string("name");
    let kind = r.string("type");
    let spec = match kind.as_str() {
        "string_check" => {
            let operation = match map.get("operation").and_then(Value::as_str) {
                Some("eq") => Operation::Eq,
                Some("ne") => Operation::Ne,
                Some("like") => Operation::Like,
                Some("ilike") => Operation::Ilike,
                _ => {
                    r.error("operation", "must be eq, ne, like or ilike");
                    Operation::Eq
                }
            };
            GraderSpec::StringCheck {
                input: r.template("input", true),
                reference: r.template("reference", true),
                operation,
            }
        }
        "text_similarity" => {
            let metric = r.string("evaluation_metric");
            if metric == "cosine" {
                r.error(
                    "evaluation_metric",
                    "`cosine` needs an embeddings model, which Themis does not call; use one of \
                     fuzzy_match, bleu, gleu, meteor, rouge_1 to rouge_5, rouge_l",
                );
            } else if !METRICS.contains(&metric.as_str()) && !metric.is_empty() {
                r.error(
                    "evaluation_metric",
                    format!("must be one of {}", METRICS.join(", ")),
                );
            }
            let pass_threshold = r.number("pass_threshold");
            if pass_threshold.is_none() && !nested {
                r.error("pass_threshold", "is required for text_similarity");
            }
            GraderSpec::TextSimilarity {
                input: r.template("input", true),
                reference: r.template("reference", true),
                metric,
                pass_threshold: pass_threshold.unwrap_or(1.0),
            }
        }
        "label_model" => {
            let labels = r.strings("labels");
            let passing_labels = r.strings("passing_labels");
            if let Some(bad) = passing_labels.iter().find(|l| !labels.contains(l)) {
                r.error("passing_labels", format!("`{bad}` is not one of labels"));
            }
            GraderSpec::LabelModel {
                model: r.string("model"),
                input: r.messages("input"),
                labels,
                passing_labels,
            }
        }
        "score_model" => {
            let range = match map.get("range") {
                None | Some(Value::Null) => (0.0, 1.0),
                Some(v) => match v
                    .as_array()
                    .map(|a| a.iter().map(Value::as_f64).collect::<Vec<_>>())
                {
                    Some(bounds) if bounds.len() == 2 => match (bounds[0], bounds[1]) {
                        (Some(lo), Some(hi)) if lo < hi && lo.is_finite() && hi.is_finite() => {
                            (lo, hi)
                        }
                        _ => {
                            r.error("range", "must be [min, max] with min < max");
                            (0.0, 1.0)
                        }
                    },
                    _ => {
                        r.error("range", "must be [min, max]");
                        (0.0, 1.0)
                    }
                },
            };
            let sampling = match map.get("sampling_params") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(m)) => m.clone(),
                Some(_) => {
                    r.error("sampling_params", "must be an object");
                    Map::new()
                }
            };
            GraderSpec::ScoreModel {
                model: r.string("model"),
                input: r.messages("input"),
                range,
                pass_threshold: r.number("pass_threshold"),
                sampling,
            }
        }
        "python" => {
            let source = r.string("source");
            if !source.is_empty() && !source.contains("def grade") {
                r.error("source", "must define `grade(sample, item)`");
            }
            GraderSpec::Python {
                source,
                pass_threshold: r.number("pass_threshold"),
            }
        }
        "multi" => {
            let formula_text = r.string("calculate_output");
            let formula = match formula::parse(&formula_text) {
                Ok(f) => Some(f),
                Err(e) => {
                    r.error("calculate_output", e);
                    None
                }
            };
            let pass_threshold = r.number("pass_threshold");
            let mut graders = Vec::new();
            match map.get("graders") {
                Some(Value::Object(subs)) if subs.len() <= MAX_SUB_GRADERS => {
                    for (key, sub) in subs {
                        if sub.get("type").and_then(Value::as_str) == Some("multi") {
                            r.error(
                                &format!("graders.{key}"),
                                "a multi grader cannot nest another",
                            );
                            continue;
                        }
                        let at = format!("{path}.graders.{key}");
                        if let Some(g) = parse(sub, &at, r.problems, true) {
                            graders.push((key.clone(), g));
                        }
                    }
                }
                _ => r.error(
                    "graders",
                    format!("must be an object of up to {MAX_SUB_GRADERS} named graders"),
                ),
            }
            if let Some(formula) = &formula {
                let mut names = Vec::new();
                formula.names(&mut names);
                let known: Vec<&str> = map
                    .get("graders")
                    .and_then(Value::as_object)
                    .map(|m| m.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                for name in names.iter().filter(|n| !known.contains(&n.as_str())) {
                    r.error(
                        "calculate_output",
                        format!("`{name}` names no grader of `graders`"),
                    );
                }
            }
            GraderSpec::Multi {
                graders,
                formula: formula.unwrap_or(Expr::Number(0.0)),
                pass_threshold,
            }
        }
        "" => return None,
        other => {
            r.error(
                "type",
                format!(
                    "unknown grader type `{other}`; Themis grades with string_check, \
                     text_similarity, label_model, score_model, python and multi"
                ),
            );
            return None;
        }
    };
    (problems.len() == before).then_some(Grader { name, kind, spec })
}

impl Grader {
    /// The model names this grader (and its sub-graders) call.
    pub(crate) fn models(&self) -> Vec<&str> {
        match &self.spec {
            GraderSpec::LabelModel { model, .. } | GraderSpec::ScoreModel { model, .. } => {
                vec![model.as_str()]
            }
            GraderSpec::Multi { graders, .. } => {
                graders.iter().flat_map(|(_, g)| g.models()).collect()
            }
            _ => Vec::new(),
        }
    }

    /// Whether this grader (or a sub-grader) runs Python.
    pub(crate) fn runs_python(&self) -> bool {
        match &self.spec {
            GraderSpec::Python { .. } => true,
            GraderSpec::Multi { graders, .. } => graders.iter().any(|(_, g)| g.runs_python()),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problems(value: Value) -> Vec<String> {
        let mut problems = Vec::new();
        parse_grader(&value, "testing_criteria[0]", &mut problems);
        problems.into_iter().map(|p| p.path).collect()
    }

    #[test]
    fn every_problem_names_its_field() {
        assert!(
            problems(
                json!({"type": "string_check", "name": "x", "input": "{{sample.output_text}}",
                                "reference": "{{item.answer}}", "operation": "eq"})
            )
            .is_empty()
        );
        assert_eq!(
            problems(
                json!({"type": "string_check", "name": "x", "input": "{{ foo }}",
                            "reference": 3, "operation": "regex"})
            ),
            [
                "testing_criteria[0].operation",
                "testing_criteria[0].input",
                "testing_criteria[0].reference"
            ]
        );
        assert_eq!(
            problems(
                json!({"type": "text_similarity", "name": "x", "input": "a", "reference": "b",
                            "evaluation_metric": "cosine", "pass_threshold": 0.5})
            ),
            ["testing_criteria[0].evaluation_metric"]
        );
        assert_eq!(
            problems(
                json!({"type": "multi", "name": "m", "calculate_output": "a + b",
                            "graders": {"a": {"type": "string_check", "name": "a", "input": "x",
                                              "reference": "y", "operation": "eq"}}})
            ),
            ["testing_criteria[0].calculate_output"]
        );
        assert_eq!(
            problems(json!({"type": "wat", "name": "x"})),
            ["testing_criteria[0].type"]
        );
    }
}
