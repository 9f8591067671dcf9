//! `builtin/choice_accuracy` and `builtin/math_equivalence`.

use std::sync::{Arc, LazyLock};

use regex::Regex;
use serde_json::{Value, json};

use super::text::{as_text, field};
use super::{ComponentError, Metric, MetricScore, Registry};
use crate::model::Case;

pub(super) fn register(registry: &mut Registry) {
    registry.register_metric("builtin/choice_accuracy", "1", |p| {
        Arc::new(ChoiceAccuracy {
            field: p.string("field"),
        })
    });
    registry.register_metric("builtin/math_equivalence", "1", |p| {
        Arc::new(MathEquivalence {
            field: p.string("field"),
            tolerance: p.f64_in("tolerance", 1e-9, 0.0, 1.0),
        })
    });
}

/// The expected side: `field` if set, else the value or (as the framework does) its
/// `key` member when it is an object that has one.
fn expected_side<'v>(
    case: &'v Case,
    path: Option<&str>,
    key: &str,
) -> Result<&'v Value, ComponentError> {
    let expected = field(&case.expected_output, path)
        .map_err(|e| ComponentError::new(format!("expected_output: {e}")))?;
    Ok(match (path, expected.get(key)) {
        (None, Some(inner)) => inner,
        _ => expected,
    })
}

fn actual_side<'v>(parsed: &'v Value, path: Option<&str>, key: &str) -> &'v Value {
    let actual = field(parsed, path).unwrap_or(&Value::Null);
    match (path, actual.get(key)) {
        (None, Some(inner)) => inner,
        _ => actual,
    }
}

/// The (actual, expected) sides as `normalize` leaves them; an expected side that
/// normalises to nothing is the case's error (there is nothing to compare against).
fn normalized_sides(
    parsed: &Value,
    case: &Case,
    path: Option<&str>,
    key: &str,
    normalize: fn(&str) -> String,
) -> Result<(String, String), ComponentError> {
    let expected = normalize(&as_text(expected_side(case, path, key)?));
    if expected.is_empty() {
        return Err(ComponentError::new(format!("expected_output has no {key}")));
    }
    let actual = normalize(&as_text(actual_side(parsed, path, key)));
    Ok((actual, expected))
}

/// A choice as compared: trimmed, surrounding punctuation and brackets removed,
/// upper-cased (`" (b). "` is `B`).
fn normalize_choice(text: &str) -> String {
    text.trim()
        .trim_matches(|c: char| c.is_ascii_punctuation() || c.is_whitespace())
        .to_uppercase()
}

/// 1 when the chosen letter equals the expected one, ignoring case, whitespace and
/// punctuation around it. The expected output may be the letter or `{"choice": ...}`.
struct ChoiceAccuracy {
    field: Option<String>,
}

impl Metric for ChoiceAccuracy {
    fn score(&self, parsed: &Value, case: &Case) -> Result<MetricScore, ComponentError> {
        let (actual, expected) = normalized_sides(
            parsed,
            case,
            self.field.as_deref(),
            "choice",
            normalize_choice,
        )?;
        Ok(MetricScore::of(if actual == expected { 1.0 } else { 0.0 }))
    }
}

/// 1 when the answer is mathematically the same as the expected one: both sides are
/// normalised ([`normalize_math`]); if both are then numbers (decimals or fractions)
/// they are compared within `tolerance` (relative to the expected value, at least
/// absolute), else as normalised text. The expected output may be the answer or
/// `{"answer": ...}`. Not a CAS: `x+1` and `1+x` differ.
struct MathEquivalence {
    field: Option<String>,
    tolerance: f64,
}

/// The contents of the last `\boxed{...}` / `\fbox{...}` (nested braces allowed).
pub(super) fn last_boxed(text: &str) -> Option<&str> {
    let start = text.rfind("\\boxed").or_else(|| text.rfind("\\fbox"))?;
    let rest = &text[start..];
    let open = rest.find('{')?;
    let mut depth = 0usize;
    for (i, c) in rest[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&rest[open + 1..open + i]);
                }
            }
            _ => {}
        }
    }
    None
}

/// Canonical text of a math answer: `\boxed{}` unwrapped, `$`, `\left`/`\right`,
/// spacing commands, `\text{unit}`s, degrees, percent signs and thousands separators
/// dropped, `\dfrac`/`\tfrac` as `\frac`, `\frac{a}{b}` and `\frac ab` as `a/b`, a
/// leading `x =` dropped, trailing unit words after a number dropped, lower-cased,
/// no spaces.
pub(super) fn normalize_math(text: &str) -> String {
    static RULES: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
        [
            (r"\\(?:text|mbox|mathrm)\{\s*[A-Za-z ]*\}", ""),
            (r"\\[dt]frac", r"\frac"),
            // One level of nested braces inside each part (`\frac{\sqrt{3}}{2}`).
            (
                r"\\frac\{((?:[^{}]|\{[^{}]*\})*)\}\{((?:[^{}]|\{[^{}]*\})*)\}",
                "($1)/($2)",
            ),
            (r"\\frac(\d)(\d)", "$1/$2"),
            (r"\\left|\\right|\\!|\\,|\\;|\\:|\\ |\$", ""),
            (r"\^\{?\\circ\}?|°|\\%|%", ""),
            // 1,234,567 (thousands separators), not 1,2 (a list).
            (r"(\d),(\d{3})\b", "$1$2"),
            (r"^\s*[a-zA-Z]\s*=\s*", ""),
            // "12 cm", "5 dollars": a unit word after a number.
            (
                r"^([-+]?[\d.]+(?:/[\d.]+)?)\s+[a-zA-Z]+(?:\s+[a-zA-Z]+)*$",
                "$1",
            ),
        ]
        .into_iter()
        .map(|(p, r)| (Regex::new(p).expect("math rule"), r))
        .collect()
    });
    let mut text = last_boxed(text).unwrap_or(text).trim().to_owned();
    for (pattern, replacement) in RULES.iter() {
        // Thousands separators may repeat (1,234,567): apply until stable, boundedly.
        for _ in 0..4 {
            let next = pattern.replace_all(&text, *replacement).into_owned();
            if next == text {
                break;
            }
            text = next;
        }
    }
    let text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let text = text.trim_end_matches('.').to_lowercase();
    // "(1)/(2)" from \frac: drop the parentheses around plain numbers.
    static PAREN_NUMBER: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\(([-+]?[\d.]+)\)").expect("paren rule"));
    PAREN_NUMBER.replace_all(&text, "$1").into_owned()
}

/// The value of a normalised answer that is a decimal or a fraction `a/b`.
fn as_number(text: &str) -> Option<f64> {
    let value = match text.split_once('/') {
        Some((a, b)) => {
            let (a, b): (f64, f64) = (a.parse().ok()?, b.parse().ok()?);
            if b == 0.0 {
                return None;
            }
            a / b
        }
        None => text.parse().ok()?,
    };
    value.is_finite().then_some(value)
}

impl Metric for MathEquivalence {
    fn score(&self, parsed: &Value, case: &Case) -> Result<MetricScore, ComponentError> {
        let (actual, expected) = normalized_sides(
            parsed,
            case,
            self.field.as_deref(),
            "answer",
            normalize_math,
        )?;
        let equal = match (as_number(&actual), as_number(&expected)) {
            (Some(a), Some(e)) => (a - e).abs() <= self.tolerance * e.abs().max(1.0),
            _ => actual == expected,
        };
        Ok(MetricScore {
            score: if equal { 1.0 } else { 0.0 },
            details: json!({"normalized": actual, "expected_normalized": expected}),
        })
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
    fn choice_accuracy_ignores_case_and_punctuation() {
        let m = ChoiceAccuracy { field: None };
        let c = case(json!("B"));
        for answer in ["B", "b", " (b). ", "B)"] {
            assert_eq!(m.score(&json!(answer), &c).unwrap().score, 1.0, "{answer}");
        }
        assert_eq!(m.score(&json!("C"), &c).unwrap().score, 0.0);
        assert_eq!(m.score(&json!(null), &c).unwrap().score, 0.0);
        let framework = case(json!({"choice": "d"}));
        assert_eq!(m.score(&json!("D"), &framework).unwrap().score, 1.0);
        assert!(m.score(&json!("A"), &case(json!(""))).is_err());
    }

    #[test]
    fn math_normalisation_by_hand() {
        assert_eq!(normalize_math(r"\boxed{\dfrac{1}{2}}"), "1/2");
        assert_eq!(normalize_math(r"$\frac{\sqrt{3}}{2}$"), r"(\sqrt{3})/2");
        assert_eq!(normalize_math(r"\frac12"), "1/2");
        assert_eq!(normalize_math("1,234,567"), "1234567");
        assert_eq!(normalize_math(r"12\text{ cm}"), "12");
        assert_eq!(normalize_math("12 cm"), "12");
        assert_eq!(normalize_math(r"90^\circ"), "90");
        assert_eq!(normalize_math(r"50\%"), "50");
        assert_eq!(normalize_math("x = 5."), "5");
        assert_eq!(normalize_math(r"\left( 1, 2 \right)"), "(1,2)");
    }

    #[test]
    fn math_equivalence_compares_values() {
        let m = MathEquivalence {
            field: None,
            tolerance: 1e-9,
        };
        let half = case(json!("1/2"));
        for answer in ["0.5", r"\frac{1}{2}", r"\boxed{\dfrac12}", ".50", "$0.5$"] {
            assert_eq!(
                m.score(&json!(answer), &half).unwrap().score,
                1.0,
                "{answer}"
            );
        }
        assert_eq!(m.score(&json!("0.51"), &half).unwrap().score, 0.0);
        let thousands = case(json!({"answer": "1000"}));
        assert_eq!(m.score(&json!("1,000"), &thousands).unwrap().score, 1.0);
        assert_eq!(
            m.score(&json!("1,000 dollars"), &thousands).unwrap().score,
            1.0
        );
        let symbolic = case(json!(r"\sqrt{2}"));
        assert_eq!(
            m.score(&json!(r"\boxed{\sqrt{2}}"), &symbolic)
                .unwrap()
                .score,
            1.0
        );
        assert_eq!(m.score(&json!(r"\sqrt{3}"), &symbolic).unwrap().score, 0.0);
    }
}
