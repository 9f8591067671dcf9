//! `builtin/exact_match`, `builtin/contains`, `builtin/regex_match`,
//! `builtin/numeric_match`, `builtin/token_f1`.
//!
//! Every metric compares the parsed output with the case's `expected_output`; with the
//! `field` param both sides are first narrowed to that path (`answer`, `/answer/0`).
//! Scores are in [0, 1].

use std::sync::Arc;

use serde_json::{Value, json};

use super::text::{as_text, field};
use super::{ComponentError, MAX_FLOAT, Metric, MetricScore, Registry};
use crate::model::Case;

pub(super) fn register(registry: &mut Registry) {
    registry.register_metric("builtin/exact_match", "1", |p| {
        Arc::new(ExactMatch {
            field: p.string("field"),
            normalize: TextNormalization {
                case_sensitive: p.bool("case_sensitive", true),
                trim: p.bool("trim", true),
            },
        })
    });
    registry.register_metric("builtin/contains", "1", |p| {
        Arc::new(Contains {
            field: p.string("field"),
            substring: p.string("substring"),
            normalize: TextNormalization {
                case_sensitive: p.bool("case_sensitive", false),
                trim: true,
            },
        })
    });
    registry.register_metric("builtin/regex_match", "1", |p| {
        Arc::new(RegexMatch {
            field: p.string("field"),
            pattern: p
                .regex("pattern", true)
                .unwrap_or_else(|| regex::Regex::new("").expect("empty regex")),
        })
    });
    registry.register_metric("builtin/numeric_match", "1", |p| {
        Arc::new(NumericMatch {
            field: p.string("field"),
            tolerance: p.f64_in("tolerance", 1e-9, 0.0, MAX_FLOAT),
            relative_tolerance: p.f64_in("relative_tolerance", 0.0, 0.0, MAX_FLOAT),
        })
    });
    registry.register_metric("builtin/token_f1", "1", |p| {
        Arc::new(TokenF1 {
            field: p.string("field"),
        })
    });
}

fn sides<'v>(
    parsed: &'v Value,
    case: &'v Case,
    path: Option<&str>,
) -> Result<(&'v Value, &'v Value), ComponentError> {
    let expected = field(&case.expected_output, path)
        .map_err(|e| ComponentError::new(format!("expected_output: {e}")))?;
    // A missing field in the model's output is a wrong answer, not a metric failure.
    let actual = field(parsed, path).unwrap_or(&Value::Null);
    Ok((actual, expected))
}

#[derive(Clone, Copy)]
struct TextNormalization {
    case_sensitive: bool,
    trim: bool,
}

impl TextNormalization {
    fn apply(&self, text: &str) -> String {
        let text = if self.trim { text.trim() } else { text };
        if self.case_sensitive {
            text.to_owned()
        } else {
            text.to_lowercase()
        }
    }
}

/// 1 when the output equals the expected output: strings after normalisation (trim,
/// optional case folding), other JSON values structurally.
struct ExactMatch {
    field: Option<String>,
    normalize: TextNormalization,
}

impl Metric for ExactMatch {
    fn score(&self, parsed: &Value, case: &Case) -> Result<MetricScore, ComponentError> {
        let (actual, expected) = sides(parsed, case, self.field.as_deref())?;
        let equal = match (actual, expected) {
            (Value::String(a), Value::String(e)) => {
                self.normalize.apply(a) == self.normalize.apply(e)
            }
            (a, e) => a == e,
        };
        Ok(MetricScore::of(if equal { 1.0 } else { 0.0 }))
    }
}

/// 1 when the output text contains `substring` (default: the expected output's text).
struct Contains {
    field: Option<String>,
    substring: Option<String>,
    normalize: TextNormalization,
}

impl Metric for Contains {
    fn score(&self, parsed: &Value, case: &Case) -> Result<MetricScore, ComponentError> {
        let needle = match &self.substring {
            Some(s) => s.clone(),
            None => as_text(sides(parsed, case, self.field.as_deref())?.1),
        };
        let actual = as_text(field(parsed, self.field.as_deref()).unwrap_or(&Value::Null));
        let found = self
            .normalize
            .apply(&actual)
            .contains(&self.normalize.apply(&needle));
        Ok(MetricScore::of(if found { 1.0 } else { 0.0 }))
    }
}

/// 1 when the output text matches `pattern`.
struct RegexMatch {
    field: Option<String>,
    pattern: regex::Regex,
}

impl Metric for RegexMatch {
    fn score(&self, parsed: &Value, _case: &Case) -> Result<MetricScore, ComponentError> {
        let actual = as_text(field(parsed, self.field.as_deref()).unwrap_or(&Value::Null));
        Ok(MetricScore::of(if self.pattern.is_match(&actual) {
            1.0
        } else {
            0.0
        }))
    }
}

/// 1 when output and expected are numbers (or numeric strings such as "1,234.5" or
/// "$3") within `tolerance` absolute or `relative_tolerance` of the expected value. An
/// output that is not a number scores 0; an expected output that is not is an error.
struct NumericMatch {
    field: Option<String>,
    tolerance: f64,
    relative_tolerance: f64,
}

fn as_number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => {
            let cleaned: String = s
                .trim()
                .trim_start_matches(['$', '€', '£'])
                .trim_end_matches('%')
                .chars()
                .filter(|c| *c != ',' && *c != '_')
                .collect();
            cleaned.trim().parse().ok().filter(|x: &f64| x.is_finite())
        }
        _ => None,
    }
}

impl Metric for NumericMatch {
    fn score(&self, parsed: &Value, case: &Case) -> Result<MetricScore, ComponentError> {
        let (actual, expected) = sides(parsed, case, self.field.as_deref())?;
        let expected = as_number(expected).ok_or_else(|| {
            ComponentError::new(format!("expected_output {expected} is not a number"))
        })?;
        let Some(actual) = as_number(actual) else {
            return Ok(MetricScore {
                score: 0.0,
                details: json!({"reason": "output is not a number"}),
            });
        };
        let difference = (actual - expected).abs();
        let within =
            difference <= self.tolerance || difference <= self.relative_tolerance * expected.abs();
        Ok(MetricScore {
            score: if within { 1.0 } else { 0.0 },
            details: json!({"difference": difference}),
        })
    }
}

/// SQuAD-style token F1: lowercase, strip punctuation and the articles a/an/the, split on
/// whitespace, F1 of the token multisets. Both empty scores 1.
struct TokenF1 {
    field: Option<String>,
}

pub(crate) fn normalized_tokens(text: &str) -> Vec<String> {
    let cleaned: String = text
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c.is_whitespace() {
                c
            } else {
                ' '
            }
        })
        .collect();
    cleaned
        .split_whitespace()
        .filter(|t| !matches!(*t, "a" | "an" | "the"))
        .map(str::to_owned)
        .collect()
}

fn token_f1(actual: &str, expected: &str) -> f64 {
    super::metrics_text::multiset_f1(&normalized_tokens(actual), &normalized_tokens(expected))
}

impl Metric for TokenF1 {
    fn score(&self, parsed: &Value, case: &Case) -> Result<MetricScore, ComponentError> {
        let (actual, expected) = sides(parsed, case, self.field.as_deref())?;
        Ok(MetricScore::of(token_f1(
            &as_text(actual),
            &as_text(expected),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(expected: Value) -> Case {
        Case {
            case_id: "c".into(),
            input: Value::Null,
            expected_output: expected,
            metadata: Value::Null,
        }
    }

    #[test]
    fn exact_match_compares_json_and_normalised_text() {
        let m = ExactMatch {
            field: None,
            normalize: TextNormalization {
                case_sensitive: true,
                trim: true,
            },
        };
        let c = case(json!({"answer": "4"}));
        assert_eq!(m.score(&json!({"answer": "4"}), &c).unwrap().score, 1.0);
        assert_eq!(m.score(&json!({"answer": "5"}), &c).unwrap().score, 0.0);
        let by_field = ExactMatch {
            field: Some("answer".into()),
            normalize: TextNormalization {
                case_sensitive: false,
                trim: true,
            },
        };
        assert_eq!(
            by_field.score(&json!({"answer": " 4 "}), &c).unwrap().score,
            1.0
        );
        assert_eq!(by_field.score(&json!({}), &c).unwrap().score, 0.0);
        assert!(by_field.score(&json!({}), &case(json!("4"))).is_err());
    }

    #[test]
    fn numeric_match_honours_tolerances() {
        let m = NumericMatch {
            field: None,
            tolerance: 0.01,
            relative_tolerance: 0.0,
        };
        assert_eq!(
            m.score(&json!("1,000.005"), &case(json!(1000)))
                .unwrap()
                .score,
            1.0
        );
        assert_eq!(
            m.score(&json!(1000.5), &case(json!(1000))).unwrap().score,
            0.0
        );
        assert_eq!(m.score(&json!("n/a"), &case(json!(1))).unwrap().score, 0.0);
        assert!(m.score(&json!(1), &case(json!("x"))).is_err());
        let rel = NumericMatch {
            field: None,
            tolerance: 0.0,
            relative_tolerance: 0.01,
        };
        assert_eq!(
            rel.score(&json!(1005), &case(json!(1000))).unwrap().score,
            1.0
        );
    }

    #[test]
    fn token_f1_follows_squad() {
        assert_eq!(token_f1("The cat sat", "cat sat"), 1.0);
        assert!((token_f1("a cat sat on mat", "cat sat") - 0.666_666_666).abs() < 1e-6);
        assert_eq!(token_f1("dog", "cat"), 0.0);
        assert_eq!(token_f1("", ""), 1.0);
    }

    #[test]
    fn contains_and_regex() {
        let contains = Contains {
            field: None,
            substring: None,
            normalize: TextNormalization {
                case_sensitive: false,
                trim: true,
            },
        };
        assert_eq!(
            contains
                .score(&json!("It is PARIS."), &case(json!("paris")))
                .unwrap()
                .score,
            1.0
        );
        let re = RegexMatch {
            field: None,
            pattern: regex::Regex::new(r"^\d+$").unwrap(),
        };
        assert_eq!(
            re.score(&json!("42"), &case(Value::Null)).unwrap().score,
            1.0
        );
        assert_eq!(
            re.score(&json!("42a"), &case(Value::Null)).unwrap().score,
            0.0
        );
    }
}
