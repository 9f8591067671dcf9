//! `builtin/rubric_keywords`: a deterministic judge.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::json;

use super::text::as_text;
use super::{ComponentError, Judge, JudgeRequest, Judgment, Registry};

pub(super) fn register(registry: &mut Registry) {
    registry.register_judge("builtin/rubric_keywords", "1", |p| {
        let keywords = p.string_list("keywords");
        let from_expected = p.bool("from_expected", false);
        if keywords.as_ref().is_none_or(Vec::is_empty) && !from_expected {
            p.error(
                "keywords",
                "is required (a non-empty list) unless from_expected is true",
            );
        }
        Arc::new(RubricKeywords {
            keywords: keywords.unwrap_or_default(),
            from_expected,
            case_sensitive: p.bool("case_sensitive", false),
            pass_threshold: p.f64_in("pass_threshold", 1.0, 0.0, 1.0),
        })
    });
}

/// Scores the share of rubric keywords found in the output's text; passes at
/// `pass_threshold` (default: all of them). With `from_expected`, the expected output's
/// words are the keywords. The rationale names what was found and what was missing.
struct RubricKeywords {
    keywords: Vec<String>,
    from_expected: bool,
    case_sensitive: bool,
    pass_threshold: f64,
}

#[async_trait]
impl Judge for RubricKeywords {
    async fn judge(&self, request: JudgeRequest<'_>) -> Result<Judgment, ComponentError> {
        let fold = |s: &str| {
            if self.case_sensitive {
                s.to_owned()
            } else {
                s.to_lowercase()
            }
        };
        let mut keywords = self.keywords.clone();
        if self.from_expected {
            keywords.extend(
                as_text(&request.case.expected_output)
                    .split_whitespace()
                    .map(str::to_owned),
            );
        }
        if keywords.is_empty() {
            return Err(ComponentError::new("no keywords to judge by"));
        }
        let text = fold(&as_text(request.parsed));
        let (found, missing): (Vec<&String>, Vec<&String>) =
            keywords.iter().partition(|k| text.contains(&fold(k)));
        let score = found.len() as f64 / keywords.len() as f64;
        Ok(Judgment {
            score,
            passed: Some(score >= self.pass_threshold),
            rationale: Some(format!(
                "found {} of {} keywords{}",
                found.len(),
                keywords.len(),
                if missing.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; missing: {}",
                        missing
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            )),
            details: json!({"found": found, "missing": missing}),
            usage: Default::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Case;
    use serde_json::Value;

    #[tokio::test]
    async fn scores_the_share_of_keywords() {
        let judge = RubricKeywords {
            keywords: vec!["Paris".into(), "France".into()],
            from_expected: false,
            case_sensitive: false,
            pass_threshold: 1.0,
        };
        let case = Case {
            case_id: "c".into(),
            input: Value::Null,
            expected_output: Value::Null,
            metadata: Value::Null,
        };
        let parsed = json!("paris is lovely");
        let j = judge
            .judge(JudgeRequest {
                dataset_id: "d",
                case: &case,
                parsed: &parsed,
                seed: 0,
                transcript: None,
                ctx: crate::components::CallContext::detached(),
            })
            .await
            .unwrap();
        assert_eq!(j.score, 0.5);
        assert_eq!(j.passed, Some(false));
        assert!(j.rationale.unwrap().contains("missing: France"));
    }
}
