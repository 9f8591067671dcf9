//! `openai/judge`: LLM-as-judge over an OpenAI-compatible chat-completions endpoint.
//!
//! The judge model gets a system prompt asking for a JSON verdict and the rendered
//! rubric, followed by the case's input, expected output and output wherever the rubric
//! does not place them itself ([`lay_out`]). Verdicts are read by [`super::verdict`];
//! an answer with none is a judge error quoting the answer.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::Shared;
use super::client::{ClientConfig, Message};
use super::template::{JUDGE_VARIABLES, JudgeVars, Templates, prompt_text};
use super::verdict::parse_verdict;
use super::{read_client, read_template, truncate};
use crate::components::builtin_generators::mix;
use crate::components::{
    CallContext, ComponentError, Estimate, EstimateRequest, Judge, JudgeRequest, Judgment, Params,
};
use crate::model::Usage;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// A number from `min` (worst) to `max` (best), normalised to 0..1.
    Scale { min: f64, max: f64 },
    /// PASS (1) or FAIL (0).
    PassFail,
}

enum System {
    /// The built-in instructions for the mode.
    Default(String),
    /// A `system` template.
    Template(usize),
}

/// The case fields every judge prompt shows, in the default layout's order, with the
/// heading Themis gives each when the rubric does not place it itself.
pub(super) const LAYOUT: [(&str, &str); 3] = [
    ("input", "Input"),
    ("expected_output", "Expected output"),
    ("output", "Output to judge"),
];

/// The rubric followed by a section for each [`LAYOUT`] field the rubric did not
/// place itself: a rubric is the criteria (as promptfoo's `llm-rubric`), so the judge
/// always sees what it judges, and identical prompts never stand for different cases.
pub(super) fn lay_out(rubric: &str, missing: &[&str], vars: &[(&str, &Value)]) -> String {
    let mut prompt = rubric.trim_end().to_owned();
    for (name, heading) in LAYOUT.iter().filter(|(name, _)| missing.contains(name)) {
        let value = vars
            .iter()
            .find(|(n, _)| n == name)
            .map_or(&Value::Null, |(_, v)| *v);
        prompt.push_str(&format!("\n\n## {heading}\n{}", prompt_text(value)));
    }
    prompt
}

pub(super) struct LlmJudge {
    client: ClientConfig,
    templates: Templates,
    system: System,
    rubric: usize,
    /// [`LAYOUT`] fields the rubric does not place: appended by [`lay_out`].
    missing: Vec<&'static str>,
    mode: Mode,
    samples: u32,
    /// In scale mode, a sample passes when its normalised score reaches this.
    pass_threshold: f64,
}

impl LlmJudge {
    pub(super) fn from_params(p: &mut Params<'_>, shared: &Arc<Shared>) -> Self {
        let client = read_client(p, "openai/judge", shared);
        let mut templates = Templates::new();
        let rubric_source = p.required_string("rubric");
        let rubric = if rubric_source.is_empty() {
            usize::MAX
        } else {
            read_template(
                p,
                &mut templates,
                "rubric",
                &rubric_source,
                &JUDGE_VARIABLES,
            )
        };
        let pass_fail = p.bool("pass_fail", false);
        let scale_given = p.value("scale").is_some();
        let scale = read_scale(p);
        if pass_fail && scale_given {
            p.error("pass_fail", "give either pass_fail or scale, not both");
        }
        let mode = if pass_fail {
            Mode::PassFail
        } else {
            let (min, max) = scale.unwrap_or((1.0, 5.0));
            Mode::Scale { min, max }
        };
        let threshold_given = p.value("pass_threshold").is_some();
        let pass_threshold = p.f64_in("pass_threshold", 0.5, 0.0, 1.0);
        if threshold_given && pass_fail {
            p.error("pass_threshold", "applies to scale judges only");
        }
        let system = match p.string("system") {
            Some(source) => System::Template(read_template(
                p,
                &mut templates,
                "system",
                &source,
                &JUDGE_VARIABLES,
            )),
            None => System::Default(default_system(mode)),
        };
        let missing = LAYOUT
            .iter()
            .map(|(name, _)| *name)
            .filter(|name| rubric == usize::MAX || !templates.uses(rubric, name))
            .collect();
        LlmJudge {
            client,
            templates,
            system,
            rubric,
            missing,
            mode,
            samples: p.u64_in("samples", 1, 1, 20) as u32,
            pass_threshold,
        }
    }

    async fn messages(&self, request: &JudgeRequest<'_>) -> Result<Vec<Message>, ComponentError> {
        let vars = JudgeVars::new(request);
        let pairs = vars.pairs();
        let render = async |index: usize, what: &str| {
            self.templates.render(index, &pairs).await.map_err(|e| {
                ComponentError::new(format!("openai/judge: rendering {what} failed: {e}"))
            })
        };
        let system = match &self.system {
            System::Default(text) => text.clone(),
            System::Template(index) => render(*index, "system").await?,
        };
        Ok(vec![
            Message::new("system", system),
            Message::new(
                "user",
                lay_out(&render(self.rubric, "rubric").await?, &self.missing, &pairs),
            ),
        ])
    }

    /// One sample's verdict as (normalised score, passed, raw score, rationale).
    fn score(&self, text: &str) -> Result<Sample, ComponentError> {
        let unparseable = |why: &str| {
            ComponentError::new(format!(
                "openai/judge: unparseable verdict ({why}); the judge answered: {}",
                truncate(text.trim(), 300)
            ))
        };
        let verdict = parse_verdict(text).ok_or_else(|| {
            unparseable(match self.mode {
                Mode::Scale { .. } => "expected JSON with a score, a `Score: N` line or PASS/FAIL",
                Mode::PassFail => "expected JSON with a verdict, PASS or FAIL",
            })
        })?;
        match self.mode {
            Mode::Scale { min, max } => {
                let raw = match (verdict.score, verdict.passed) {
                    (Some(score), _) => score,
                    (None, Some(true)) => max,
                    (None, Some(false)) => min,
                    (None, None) => return Err(unparseable("no score")),
                };
                if !(min..=max).contains(&raw) {
                    return Err(unparseable(&format!(
                        "score {raw} is outside the scale {min}..{max}"
                    )));
                }
                let score = (raw - min) / (max - min);
                Ok(Sample {
                    score,
                    passed: score >= self.pass_threshold,
                    raw: json!(raw),
                    rationale: verdict.rationale,
                })
            }
            Mode::PassFail => {
                let passed = match (verdict.passed, verdict.score) {
                    (Some(passed), _) => passed,
                    (None, Some(1.0)) => true,
                    (None, Some(0.0)) => false,
                    _ => return Err(unparseable("a pass/fail judge needs PASS or FAIL")),
                };
                Ok(Sample {
                    score: if passed { 1.0 } else { 0.0 },
                    passed,
                    raw: json!(if passed { "PASS" } else { "FAIL" }),
                    rationale: verdict.rationale,
                })
            }
        }
    }
}

struct Sample {
    score: f64,
    passed: bool,
    raw: Value,
    rationale: Option<String>,
}

/// `scale`: `{"min": a, "max": b}` with a < b.
fn read_scale(p: &mut Params<'_>) -> Option<(f64, f64)> {
    let value = p.value("scale")?;
    let bounds = value.as_object().and_then(|map| {
        let known = map.keys().all(|k| k == "min" || k == "max");
        let min = map.get("min")?.as_f64()?;
        let max = map.get("max")?.as_f64()?;
        // Bounded so `max - min` and normalised scores stay finite.
        let finite = |x: f64| x.abs() <= crate::components::MAX_FLOAT;
        (known && finite(min) && finite(max) && min < max).then_some((min, max))
    });
    if bounds.is_none() {
        p.error(
            "scale",
            "must be {\"min\": a, \"max\": b} with numbers a < b within ±1e15",
        );
    }
    bounds
}

fn default_system(mode: Mode) -> String {
    let format = match mode {
        Mode::Scale { min, max } => format!(
            "{{\"score\": <a number from {min} (worst) to {max} (best)>, \"rationale\": \"<one or two sentences>\"}}"
        ),
        Mode::PassFail => {
            "{\"verdict\": \"PASS\" or \"FAIL\", \"rationale\": \"<one or two sentences>\"}"
                .to_owned()
        }
    };
    format!(
        "You are an impartial evaluator. Judge the response the user describes strictly by \
         the rubric. Answer with only a JSON object of the form {format} and nothing else."
    )
}

#[async_trait]
impl Judge for LlmJudge {
    /// Its samples' requests: the prompt rendered without the output, plus the output's
    /// allowance. A rubric that reads fields of the output cannot render without it:
    /// then the case's input and expected output stand for the rubric.
    async fn estimate(&self, request: EstimateRequest<'_>) -> Option<Estimate> {
        let judged = JudgeRequest {
            dataset_id: request.dataset_id,
            case: request.case,
            parsed: &Value::Null,
            seed: 0,
            transcript: None,
            ctx: CallContext::detached(),
        };
        let messages = match self.messages(&judged).await {
            Ok(messages) => messages,
            Err(_) => vec![Message::new(
                "user",
                format!("{}\n{}", request.case.input, request.case.expected_output),
            )],
        };
        let samples = u64::from(self.samples);
        Some(
            self.client
                .estimate(&messages, request.output_tokens, samples, 1),
        )
    }

    async fn judge(&self, request: JudgeRequest<'_>) -> Result<Judgment, ComponentError> {
        let messages = self.messages(&request).await?;
        let endpoint = self.client.endpoint();
        // Sample 0 uses the case seed, so one sample and the first of several share a
        // cache entry; the others derive theirs from it.
        let seeds: Vec<u64> = (0..self.samples)
            .map(|i| {
                if i == 0 {
                    request.seed
                } else {
                    mix(request.seed, u64::from(i))
                }
            })
            .collect();
        let answers = futures::future::join_all(seeds.iter().map(|seed| {
            self.client
                .complete(request.ctx, &endpoint, &messages, *seed, 1)
        }))
        .await;

        let mut usage = Usage::default();
        let mut samples = Vec::with_capacity(answers.len());
        for answer in answers {
            let completion = answer?;
            usage.add(&completion.usage);
            samples.push(self.score(completion.text())?);
        }

        let n = samples.len() as f64;
        let score = samples.iter().map(|s| s.score).sum::<f64>() / n;
        let passes = samples.iter().filter(|s| s.passed).count();
        let rationale = if samples.len() == 1 {
            samples[0].rationale.clone()
        } else {
            let parts: Vec<String> = samples
                .iter()
                .enumerate()
                .filter_map(|(i, s)| Some(format!("[{}] {}", i + 1, s.rationale.as_deref()?)))
                .collect();
            (!parts.is_empty()).then(|| parts.join("\n"))
        };
        let mut details = json!({
            "model": self.client.model,
            "samples": samples.iter().map(|s| json!({
                "raw": s.raw, "score": s.score, "passed": s.passed, "rationale": s.rationale,
            })).collect::<Vec<_>>(),
        });
        match self.mode {
            Mode::Scale { min, max } => {
                let raw: Vec<f64> = samples.iter().filter_map(|s| s.raw.as_f64()).collect();
                details["mode"] = json!("scale");
                details["scale"] = json!({"min": min, "max": max});
                details["raw_score"] = json!(raw.iter().sum::<f64>() / raw.len().max(1) as f64);
                details["raw_scores"] = json!(raw);
            }
            Mode::PassFail => {
                details["mode"] = json!("pass_fail");
            }
        }
        Ok(Judgment {
            score,
            // A strict majority of the samples.
            passed: Some(passes * 2 > samples.len()),
            rationale,
            details,
            usage,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_adds_what_the_rubric_does_not_place() {
        let input = json!({"question": "2+2?"});
        let expected = json!("4");
        let output = json!("5");
        let vars = [
            ("input", &input),
            ("expected_output", &expected),
            ("output", &output),
        ];
        assert_eq!(
            lay_out(
                "Is it correct?",
                &["input", "expected_output", "output"],
                &vars
            ),
            "Is it correct?\n\n## Input\n{\n  \"question\": \"2+2?\"\n}\n\n\
             ## Expected output\n4\n\n## Output to judge\n5"
        );
        assert_eq!(lay_out("Rubric {{x}}", &[], &vars), "Rubric {{x}}");
        assert_eq!(
            lay_out(
                "R",
                &["expected_output"],
                &[("expected_output", &Value::Null)]
            ),
            "R\n\n## Expected output\n(none given)"
        );
    }
}
