//! `openai/pairwise`: a judge model compares the output with a reference answer (the
//! expected output, or a field of the case named by `reference`), in both orders.
//!
//! Judges favour a position; asking once with the output as "A" and once as "B" and
//! averaging cancels that bias, and both verdicts are kept so a reader can see whether
//! the judge was consistent. Ties are allowed. From the output's side each verdict is a
//! win (1), a tie (0.5) or a loss (0); the score is the mean of the two, and `passed`
//! means "at least as good as the reference" (score ≥ 0.5).

use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use regex::Regex;
use serde_json::{Value, json};

use super::Shared;
use super::client::{ClientConfig, Message};
use super::template::{JUDGE_VARIABLES, JudgeVars, Templates, prompt_text};
use super::verdict::outermost_braces;
use super::{read_client, read_template, truncate};
use crate::components::text::select;
use crate::components::{
    CallContext, ComponentError, Estimate, EstimateRequest, Judge, JudgeRequest, Judgment, Params,
};
use crate::model::Usage;

const DEFAULT_CRITERIA: &str = "Which response answers the input better: more correct, \
    complete and helpful? Judge content, not length or style.";

const SYSTEM: &str = "You are an impartial evaluator comparing two responses, A and B, to \
    the same input. Their order is arbitrary: do not let it influence you. Answer with \
    only a JSON object {\"winner\": \"A\" or \"B\" or \"tie\", \"rationale\": \"<one or two \
    sentences>\"} and nothing else.";

pub(super) struct Pairwise {
    client: ClientConfig,
    templates: Templates,
    /// The `criteria` template, if given.
    criteria: Option<usize>,
    /// Where the reference answer is in the case (`expected_output` by default).
    reference: String,
}

impl Pairwise {
    pub(super) fn from_params(p: &mut Params<'_>, shared: &Arc<Shared>) -> Self {
        let client = read_client(p, "openai/pairwise", shared);
        let mut templates = Templates::new();
        let criteria = p
            .string("criteria")
            .map(|source| read_template(p, &mut templates, "criteria", &source, &JUDGE_VARIABLES));
        let reference = p
            .string("reference")
            .unwrap_or_else(|| "expected_output".to_owned());
        let root = reference.split(['.', '/']).find(|s| !s.is_empty());
        if !matches!(root, Some("input" | "expected_output" | "metadata")) {
            p.error(
                "reference",
                "must be a path under input, expected_output or metadata, like \
                 \"metadata.baseline\"",
            );
        }
        Pairwise {
            client,
            templates,
            criteria,
            reference,
        }
    }
}

/// Who won one comparison, from the output's side.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    Win,
    Tie,
    Loss,
}

impl Outcome {
    fn score(self) -> f64 {
        match self {
            Outcome::Win => 1.0,
            Outcome::Tie => 0.5,
            Outcome::Loss => 0.0,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Outcome::Win => "win",
            Outcome::Tie => "tie",
            Outcome::Loss => "loss",
        }
    }
}

/// The winner a judge named: `Some("A" | "B" | "tie")`, with its rationale.
fn parse_winner(text: &str) -> Option<(&'static str, Option<String>)> {
    let text = text.trim();
    if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(outermost_braces(text)) {
        let winner = ["winner", "verdict", "choice", "better"]
            .iter()
            .find_map(|k| map.get(*k)?.as_str())
            .and_then(winner_word);
        let rationale = ["rationale", "reason", "explanation"]
            .iter()
            .find_map(|k| map.get(*k)?.as_str())
            .map(|s| truncate(s.trim(), 2000));
        if let Some(winner) = winner {
            return Some((winner, rationale));
        }
    }
    // `[[A]]` (MT-Bench style), or an answer that is just the word.
    static BRACKETED: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)\[\[\s*(A|B|tie|C)\s*\]\]").unwrap_or_else(|e| unreachable!("{e}"))
    });
    let word = BRACKETED
        .captures_iter(text)
        .last()
        .and_then(|c| c.get(1))
        .map_or(text.trim_matches(|c: char| !c.is_alphanumeric()), |m| {
            m.as_str()
        });
    winner_word(word).map(|w| (w, Some(truncate(text, 2000))))
}

fn winner_word(word: &str) -> Option<&'static str> {
    match word.trim().to_ascii_lowercase().as_str() {
        "a" | "response a" => Some("A"),
        "b" | "response b" => Some("B"),
        "tie" | "c" | "draw" | "equal" | "both" => Some("tie"),
        _ => None,
    }
}

#[async_trait]
impl Judge for Pairwise {
    /// Its two requests (both orders): the prompt without the output, plus the output's
    /// allowance.
    async fn estimate(&self, request: EstimateRequest<'_>) -> Option<Estimate> {
        let case = request.case;
        let whole = json!({
            "input": case.input,
            "expected_output": case.expected_output,
            "metadata": case.metadata,
        });
        let reference = select(&whole, &self.reference)
            .map(prompt_text)
            .unwrap_or_default();
        let judged = JudgeRequest {
            dataset_id: request.dataset_id,
            case,
            parsed: &Value::Null,
            seed: 0,
            transcript: None,
            ctx: CallContext::detached(),
        };
        let criteria = match self.criteria {
            None => DEFAULT_CRITERIA.to_owned(),
            Some(index) => {
                let vars = JudgeVars::new(&judged);
                self.templates
                    .render(index, &vars.pairs())
                    .await
                    .unwrap_or_default()
            }
        };
        let messages = [
            Message::new("system", SYSTEM),
            Message::new(
                "user",
                format!(
                    "{criteria}\n\n## Input\n{}\n\n## Response A\n\n\n## Response B\n{reference}",
                    prompt_text(&case.input)
                ),
            ),
        ];
        Some(self.client.estimate(&messages, request.output_tokens, 2, 1))
    }

    async fn judge(&self, request: JudgeRequest<'_>) -> Result<Judgment, ComponentError> {
        let case = request.case;
        let whole = json!({
            "input": case.input,
            "expected_output": case.expected_output,
            "metadata": case.metadata,
        });
        let reference = select(&whole, &self.reference)
            .filter(|v| !v.is_null())
            .ok_or_else(|| {
                ComponentError::new(format!(
                    "openai/pairwise: the case has no reference at `{}`",
                    self.reference
                ))
            })?;
        let criteria = match self.criteria {
            None => DEFAULT_CRITERIA.to_owned(),
            Some(index) => {
                let vars = JudgeVars::new(&request);
                self.templates
                    .render(index, &vars.pairs())
                    .await
                    .map_err(|e| {
                        ComponentError::new(format!(
                            "openai/pairwise: rendering criteria failed: {e}"
                        ))
                    })?
            }
        };
        let output = prompt_text(request.parsed);
        let reference = prompt_text(reference);
        let input = prompt_text(&case.input);
        let prompt = |a: &str, b: &str| {
            vec![
                Message::new("system", SYSTEM),
                Message::new(
                    "user",
                    format!(
                        "{criteria}\n\n## Input\n{input}\n\n## Response A\n{a}\n\n## Response B\n{b}"
                    ),
                ),
            ]
        };
        // Output first, then reference first.
        let orders = [
            ("output_first", prompt(&output, &reference)),
            ("reference_first", prompt(&reference, &output)),
        ];
        let endpoint = self.client.endpoint();
        let answers = futures::future::join_all(orders.iter().map(|(_, messages)| {
            self.client
                .complete(request.ctx, &endpoint, messages, request.seed, 1)
        }))
        .await;
        let mut usage = Usage::default();
        let mut verdicts = Vec::with_capacity(2);
        let mut outcomes = Vec::with_capacity(2);
        for ((order, _), answer) in orders.iter().zip(answers) {
            let completion = answer?;
            usage.add(&completion.usage);
            let text = completion.text();
            let (winner, rationale) = parse_winner(text).ok_or_else(|| {
                ComponentError::new(format!(
                    "openai/pairwise: unparseable verdict (expected a winner A, B or tie); \
                     the judge answered: {}",
                    truncate(text.trim(), 300)
                ))
            })?;
            let output_is_a = *order == "output_first";
            let outcome = match (winner, output_is_a) {
                ("tie", _) => Outcome::Tie,
                ("A", true) | ("B", false) => Outcome::Win,
                _ => Outcome::Loss,
            };
            outcomes.push(outcome);
            verdicts.push(json!({
                "order": order, "winner": winner, "outcome": outcome.as_str(),
                "rationale": rationale,
            }));
        }
        let score = outcomes.iter().map(|o| o.score()).sum::<f64>() / outcomes.len() as f64;
        Ok(Judgment {
            score,
            passed: Some(score >= 0.5),
            rationale: Some(format!(
                "output first: {}; reference first: {}",
                outcomes[0].as_str(),
                outcomes[1].as_str()
            )),
            details: json!({
                "model": self.client.model,
                "reference": self.reference,
                "verdicts": verdicts,
                "consistent": outcomes[0] == outcomes[1],
            }),
            usage,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn winners_are_read_from_json_brackets_or_a_word() {
        assert_eq!(
            parse_winner(r#"{"winner": "B", "rationale": "more complete"}"#),
            Some(("B", Some("more complete".into())))
        );
        assert_eq!(parse_winner("Both fine. [[C]]").map(|w| w.0), Some("tie"));
        assert_eq!(parse_winner("[[A]]").map(|w| w.0), Some("A"));
        assert_eq!(parse_winner(" tie. ").map(|w| w.0), Some("tie"));
        assert_eq!(parse_winner("I cannot decide"), None);
    }
}
