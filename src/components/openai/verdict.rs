//! A judge model's verdict read from its answer: JSON (`{"score": 4, "rationale": "..."}`
//! or `{"verdict": "PASS", ...}`), else a `Score: N` line, else a PASS/FAIL word.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};

use super::truncate;

/// What a judge model said.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Verdict {
    pub score: Option<f64>,
    pub passed: Option<bool>,
    pub rationale: Option<String>,
}

pub(super) fn parse_verdict(text: &str) -> Option<Verdict> {
    json_verdict(text)
        .or_else(|| score_line(text))
        .or_else(|| pass_fail_word(text))
}

/// A JSON object: the whole answer, a fenced block, or the outermost `{...}`.
fn json_verdict(text: &str) -> Option<Verdict> {
    let text = text.trim();
    let fenced = text
        .find("```")
        .and_then(|start| {
            let rest = &text[start + 3..];
            let end = rest.find("```")?;
            Some(rest[..end].trim_start_matches("json").trim())
        })
        .unwrap_or("");
    [text, fenced, outermost_braces(text)]
        .into_iter()
        .filter(|candidate| !candidate.is_empty())
        .find_map(|candidate| match serde_json::from_str::<Value>(candidate) {
            Ok(Value::Object(map)) => verdict_from_object(&map),
            _ => None,
        })
}

fn verdict_from_object(map: &Map<String, Value>) -> Option<Verdict> {
    let field = |names: &[&str]| names.iter().find_map(|name| map.get(*name));
    let score = field(&["score", "rating", "grade"]).and_then(|v| match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    });
    let passed = field(&["passed", "pass", "verdict", "result"]).and_then(|v| match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => pass_word(s.trim()),
        _ => None,
    });
    let rationale = field(&["rationale", "reason", "reasoning", "explanation"])
        .and_then(Value::as_str)
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    (score.is_some() || passed.is_some()).then_some(Verdict {
        score: score.filter(|s| s.is_finite()),
        passed,
        rationale,
    })
}

fn pass_word(word: &str) -> Option<bool> {
    match word.to_ascii_lowercase().as_str() {
        "pass" | "passed" | "yes" | "true" | "correct" => Some(true),
        "fail" | "failed" | "no" | "false" | "incorrect" => Some(false),
        _ => None,
    }
}

/// A `Score: N` (or `Score: N/M`) line; a `Rationale:`/`Reason:` line, else the rest of
/// the answer, is the rationale.
fn score_line(text: &str) -> Option<Verdict> {
    static SCORE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?im)^[\s*#>_-]*score[\s*_]*[:=][\s*_]*(-?\d+(?:\.\d+)?)(?:\s*/\s*\d+(?:\.\d+)?)?[\s*_.]*$")
            .unwrap_or_else(|e| unreachable!("valid regex: {e}"))
    });
    let found = SCORE.captures_iter(text).last()?;
    let score = found.get(1)?.as_str().parse::<f64>().ok()?;
    let line = found.get(0)?;
    let rest = format!("{}{}", &text[..line.start()], &text[line.end()..]);
    Some(Verdict {
        score: Some(score),
        passed: None,
        rationale: rationale_of(&rest),
    })
}

/// The last upper-case PASS/FAIL (PASSED/FAILED) word, or an answer that is just
/// "pass"/"fail" in any case.
fn pass_fail_word(text: &str) -> Option<Verdict> {
    static WORD: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"\b(PASS|FAIL)(?:ED)?\b").unwrap_or_else(|e| unreachable!("valid regex: {e}"))
    });
    let trimmed = text.trim().trim_matches(|c: char| !c.is_alphanumeric());
    let passed = pass_word(trimmed)
        .filter(|_| !trimmed.contains(char::is_whitespace))
        .or_else(|| {
            let last = WORD.captures_iter(text).last()?;
            Some(last.get(1)?.as_str() == "PASS")
        })?;
    Some(Verdict {
        score: None,
        passed: Some(passed),
        rationale: rationale_of(text),
    })
}

/// A `Rationale:` (or `Reason:`, `Explanation:`) line's text, else the whole text.
fn rationale_of(text: &str) -> Option<String> {
    static LABELLED: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"(?im)^[\s*#>_-]*(?:rationale|reason|reasoning|explanation)[\s*_]*:[\s*_]*(.+)$",
        )
        .unwrap_or_else(|e| unreachable!("valid regex: {e}"))
    });
    let text = LABELLED
        .captures(text)
        .and_then(|c| c.get(1))
        .map_or(text, |m| m.as_str());
    let text = text.trim();
    (!text.is_empty()).then(|| truncate(text, 2000))
}

/// The outermost `{...}` of `text`, or "" when it has none.
pub(super) fn outermost_braces(text: &str) -> &str {
    match (text.find('{'), text.rfind('}')) {
        (Some(start), Some(end)) if start < end => &text[start..=end],
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(text: &str) -> Option<(Option<f64>, Option<bool>, Option<String>)> {
        parse_verdict(text).map(|v| (v.score, v.passed, v.rationale))
    }

    #[test]
    fn parses_json_verdicts() {
        assert_eq!(
            verdict(r#"{"score": 4, "rationale": "mostly right"}"#),
            Some((Some(4.0), None, Some("mostly right".into())))
        );
        assert_eq!(
            verdict("Here you go:\n```json\n{\"score\": \"3\", \"reason\": \"ok\"}\n```"),
            Some((Some(3.0), None, Some("ok".into())))
        );
        assert_eq!(
            verdict(r#"Verdict follows {"verdict": "FAIL", "explanation": "wrong sum"} done"#),
            Some((None, Some(false), Some("wrong sum".into())))
        );
        assert_eq!(
            verdict(r#"{"passed": true}"#),
            Some((None, Some(true), None))
        );
    }

    #[test]
    fn parses_score_lines() {
        assert_eq!(
            verdict("The answer is close.\nScore: 4"),
            Some((Some(4.0), None, Some("The answer is close.".into())))
        );
        assert_eq!(
            verdict("**Score:** 2/5\nRationale: misses the point"),
            Some((Some(2.0), None, Some("misses the point".into())))
        );
    }

    #[test]
    fn parses_pass_fail_words() {
        assert_eq!(
            verdict("PASS"),
            Some((None, Some(true), Some("PASS".into())))
        );
        assert_eq!(
            verdict("fail."),
            Some((None, Some(false), Some("fail.".into())))
        );
        let (_, passed, _) = verdict("I considered PASS but the sum is wrong, so: FAIL").unwrap();
        assert_eq!(passed, Some(false));
    }

    #[test]
    fn garbage_is_no_verdict() {
        assert_eq!(verdict("I think it is quite good overall"), None);
        assert_eq!(verdict(r#"{"comment": "nice"}"#), None);
        assert_eq!(verdict(""), None);
    }
}
