//! `openai_evals/grader`: one of OpenAI's graders as a Themis judge. The judge's score is
//! the grader's, `passed` its verdict at the grader's threshold, and `details.result`
//! the output item's result object (`name`, `type`, `score`, `passed`, `sample`).
//!
//! Model graders call the model through an `openai/chat` generator (its cache, retries,
//! rate limits and keys); python graders run `builtin/python_grader` in the operator's
//! sandbox.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use futures::future::BoxFuture;
use serde_json::{Map, Value, json};

use super::similarity::similarity;
use super::spec::{Grader, GraderSpec, MessageSpec, Operation};
use super::template::{Namespaces, render, sample_namespace};
use crate::components::{
    ComponentError, GenerateRequest, Generator, Judge, JudgeRequest, Judgment, Metric, Registry,
    ResolveError,
};
use crate::model::{Case, Usage};

/// Threshold of graders that give a score without one of their own.
pub(crate) const DEFAULT_PASS_THRESHOLD: f64 = 0.5;

/// Where a model name goes: `PROVIDER/MODEL` when PROVIDER is a declared provider, else
/// the whole name to `default_provider`. Returns (provider, model).
pub(crate) fn resolve_model(
    registry: &Registry,
    model: &str,
    default_provider: Option<&str>,
) -> Result<(String, String), String> {
    let try_with = |provider: &str, model: &str| {
        let params: Map<String, Value> =
            json!({"provider": provider, "model": model, "prompt": "x"})
                .as_object()
                .cloned()
                .unwrap_or_default();
        registry.generator("openai/chat", &params).map(|_| ())
    };
    let mut unknown = None;
    if let Some((provider, name)) = model.split_once('/') {
        match try_with(provider, name) {
            Ok(()) => return Ok((provider.to_owned(), name.to_owned())),
            Err(ResolveError::Params(errors)) => {
                unknown = errors
                    .into_iter()
                    .find(|e| e.path == "provider")
                    .map(|e| e.message);
            }
            Err(other) => return Err(format!("{other:?}")),
        }
    }
    match default_provider {
        Some(provider) => match try_with(provider, model) {
            Ok(()) => Ok((provider.to_owned(), model.to_owned())),
            Err(ResolveError::Params(errors)) => Err(errors
                .into_iter()
                .map(|e| format!("{}: {}", e.path, e.message))
                .collect::<Vec<_>>()
                .join("; ")),
            Err(other) => Err(format!("{other:?}")),
        },
        None => Err(format!(
            "model `{model}` names no declared provider: write PROVIDER/MODEL, or start the \
             server with --default-provider{}",
            unknown.map(|m| format!(" ({m})")).unwrap_or_default()
        )),
    }
}

/// A grader ready to run: model graders hold their chat generator, python graders the
/// sandboxed metric, `multi` its sub-graders.
struct Node {
    grader: Grader,
    chat: Option<Arc<dyn Generator>>,
    python: Option<Arc<dyn Metric>>,
    subs: Vec<(String, Node)>,
}

/// What a grader's setup needs from the run: where bare model names go and which sandbox
/// runs Python.
pub(crate) struct Setup<'a> {
    pub registry: &'a Registry,
    pub default_provider: Option<&'a str>,
    pub sandbox: Option<&'a str>,
}

fn instructions(grader: &Grader) -> Option<String> {
    match &grader.spec {
        GraderSpec::LabelModel { labels, .. } => Some(format!(
            "Classify the conversation above. Answer with exactly one of these labels and \
             nothing else: {}",
            labels.join(", ")
        )),
        GraderSpec::ScoreModel { range, .. } => Some(format!(
            "Grade the conversation above. Answer with only a JSON object \
             {{\"steps\": [\"<your reasoning>\"], \"result\": <a number from {} to {}>}}.",
            range.0, range.1
        )),
        _ => None,
    }
}

fn chat_for(setup: &Setup<'_>, grader: &Grader) -> Result<Arc<dyn Generator>, String> {
    let (model, input, sampling) = match &grader.spec {
        GraderSpec::LabelModel { model, input, .. } => (model, input, Map::new()),
        GraderSpec::ScoreModel {
            model,
            input,
            sampling,
            ..
        } => (model, input, sampling.clone()),
        _ => return Err("not a model grader".into()),
    };
    let (provider, model) = resolve_model(setup.registry, model, setup.default_provider)?;
    // The rendered messages travel in the synthetic case's `input.m`, the grader's
    // instructions last.
    let mut messages: Vec<Value> = input
        .iter()
        .enumerate()
        .map(|(i, m)| json!({"role": m.role, "content": format!("{{{{ input.m[{i}] }}}}")}))
        .collect();
    messages
        .push(json!({"role": "system", "content": format!("{{{{ input.m[{}] }}}}", input.len())}));
    let mut params = Map::new();
    params.insert("provider".into(), json!(provider));
    params.insert("model".into(), json!(model));
    params.insert("messages".into(), Value::Array(messages));
    for (from, to) in [
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("max_completions_tokens", "max_tokens"),
    ] {
        if let Some(v) = sampling.get(from).filter(|v| !v.is_null()) {
            params.insert(to.into(), v.clone());
        }
    }
    setup
        .registry
        .generator("openai/chat", &params)
        .map(|r| r.component)
        .map_err(|e| match e {
            ResolveError::Params(errors) => errors
                .into_iter()
                .map(|e| format!("{}: {}", e.path, e.message))
                .collect::<Vec<_>>()
                .join("; "),
            other => format!("{other:?}"),
        })
}

fn build(setup: &Setup<'_>, grader: Grader) -> Result<Node, String> {
    let mut node = Node {
        chat: None,
        python: None,
        subs: Vec::new(),
        grader,
    };
    match &node.grader.spec {
        GraderSpec::LabelModel { .. } | GraderSpec::ScoreModel { .. } => {
            node.chat = Some(chat_for(setup, &node.grader)?);
        }
        GraderSpec::Python { source, .. } => {
            let Some(sandbox) = setup.sandbox else {
                return Err(
                    "python graders run in a code sandbox and this server has none that runs \
                     Python: start it with --sandbox local (or a remote sandbox)"
                        .into(),
                );
            };
            let params = json!({"sandbox": sandbox, "source": source});
            let params = params.as_object().cloned().unwrap_or_default();
            node.python = Some(
                setup
                    .registry
                    .metric("builtin/python_grader", &params)
                    .map(|r| r.component)
                    .map_err(|e| format!("{e:?}"))?,
            );
        }
        GraderSpec::Multi { graders, .. } => {
            for (key, sub) in graders.clone() {
                node.subs.push((key, build(setup, sub)?));
            }
        }
        _ => {}
    }
    Ok(node)
}

/// One grader's outcome.
struct Outcome {
    score: f64,
    passed: bool,
    usage: Usage,
    /// The grader model's answer, for the result's `sample`.
    sample: Value,
}

fn fail(grader: &Grader, message: impl std::fmt::Display) -> ComponentError {
    ComponentError::new(format!("grader `{}`: {message}", grader.name))
}

impl Node {
    fn grade<'a>(
        &'a self,
        item: &'a Value,
        sample: &'a Value,
        request: &'a JudgeRequest<'a>,
    ) -> BoxFuture<'a, Result<Outcome, ComponentError>> {
        Box::pin(async move {
            let grader = &self.grader;
            let ns = Namespaces {
                item,
                sample: Some(sample),
            };
            let text = |template: &str| render(template, &ns).map_err(|e| fail(grader, e));
            let plain = |score: f64, passed: bool| Outcome {
                score,
                passed,
                usage: Usage::default(),
                sample: Value::Null,
            };
            match &grader.spec {
                GraderSpec::StringCheck {
                    input,
                    reference,
                    operation,
                } => {
                    let (a, b) = (text(input)?, text(reference)?);
                    let ok = match operation {
                        Operation::Eq => a == b,
                        Operation::Ne => a != b,
                        Operation::Like => a.contains(&b),
                        Operation::Ilike => a.to_lowercase().contains(&b.to_lowercase()),
                    };
                    Ok(plain(if ok { 1.0 } else { 0.0 }, ok))
                }
                GraderSpec::TextSimilarity {
                    input,
                    reference,
                    metric,
                    pass_threshold,
                } => {
                    let score = similarity(metric, &text(input)?, &text(reference)?)
                        .map_err(|e| fail(grader, e))?;
                    Ok(plain(score, score >= *pass_threshold))
                }
                GraderSpec::LabelModel { .. } | GraderSpec::ScoreModel { .. } => {
                    self.model_grade(&ns, request).await
                }
                GraderSpec::Python { pass_threshold, .. } => {
                    let metric = self
                        .python
                        .as_ref()
                        .ok_or_else(|| fail(grader, "no sandbox"))?;
                    let output = match sample.get("output_text") {
                        Some(text @ Value::String(_)) => text.clone(),
                        _ => sample.clone(),
                    };
                    let case = Case {
                        case_id: request.case.case_id.clone(),
                        input: item.clone(),
                        expected_output: Value::Null,
                        metadata: Value::Null,
                    };
                    let scored = metric.score_case(&output, &case).await?;
                    let threshold = pass_threshold.unwrap_or(DEFAULT_PASS_THRESHOLD);
                    Ok(plain(scored.score, scored.score >= threshold))
                }
                GraderSpec::Multi {
                    formula,
                    pass_threshold,
                    ..
                } => {
                    let mut scores = BTreeMap::new();
                    let mut usage = Usage::default();
                    let mut subs = Map::new();
                    for (key, node) in &self.subs {
                        let outcome = node.grade(item, sample, request).await?;
                        usage.add(&outcome.usage);
                        subs.insert(
                            key.clone(),
                            json!({"score": outcome.score, "passed": outcome.passed}),
                        );
                        scores.insert(key.clone(), outcome.score);
                    }
                    let score = formula.eval(&scores).map_err(|e| fail(grader, e))?;
                    if !score.is_finite() {
                        return Err(fail(grader, "calculate_output is not a finite number"));
                    }
                    let threshold = pass_threshold.unwrap_or(DEFAULT_PASS_THRESHOLD);
                    Ok(Outcome {
                        score,
                        passed: score >= threshold,
                        usage,
                        sample: json!({"graders": subs}),
                    })
                }
            }
        })
    }

    async fn model_grade(
        &self,
        ns: &Namespaces<'_>,
        request: &JudgeRequest<'_>,
    ) -> Result<Outcome, ComponentError> {
        let grader = &self.grader;
        let chat = self.chat.as_ref().ok_or_else(|| fail(grader, "no model"))?;
        let (input, seed): (&[MessageSpec], Option<u64>) = match &grader.spec {
            GraderSpec::LabelModel { input, .. } => (input, None),
            GraderSpec::ScoreModel {
                input, sampling, ..
            } => (input, sampling.get("seed").and_then(Value::as_u64)),
            _ => return Err(fail(grader, "not a model grader")),
        };
        let mut rendered = input
            .iter()
            .map(|m| render(&m.content, ns).map_err(|e| fail(grader, e)))
            .collect::<Result<Vec<_>, _>>()?;
        rendered.extend(instructions(grader));
        let case = Case {
            case_id: request.case.case_id.clone(),
            input: json!({"m": rendered}),
            expected_output: Value::Null,
            metadata: Value::Null,
        };
        let generation = chat
            .generate(GenerateRequest {
                dataset_id: request.dataset_id,
                case: &case,
                seed: seed.unwrap_or(request.seed),
                candidate_index: 0,
                ctx: request.ctx,
            })
            .await?;
        let answer = generation
            .raw_text
            .clone()
            .or_else(|| generation.output.as_str().map(str::to_owned))
            .unwrap_or_default();
        let sample = json!({
            "input": input.iter().zip(&rendered).map(|(m, c)| json!({"role": m.role, "content": c})).collect::<Vec<_>>(),
            "output": [{"role": "assistant", "content": answer}],
        });
        let (score, passed) = match &grader.spec {
            GraderSpec::LabelModel {
                labels,
                passing_labels,
                ..
            } => {
                let label = read_label(&answer, labels).ok_or_else(|| {
                    fail(
                        grader,
                        format!(
                            "the model answered none of the labels: {}",
                            truncate(answer.trim(), 200)
                        ),
                    )
                })?;
                let passed = passing_labels.contains(&label);
                (if passed { 1.0 } else { 0.0 }, passed)
            }
            GraderSpec::ScoreModel {
                range,
                pass_threshold,
                ..
            } => {
                let score = read_score(&answer).ok_or_else(|| {
                    fail(
                        grader,
                        format!("the model gave no score: {}", truncate(answer.trim(), 200)),
                    )
                })?;
                if score < range.0 || score > range.1 {
                    return Err(fail(
                        grader,
                        format!(
                            "score {score} is outside the range {}..{}",
                            range.0, range.1
                        ),
                    ));
                }
                let threshold = pass_threshold.unwrap_or(DEFAULT_PASS_THRESHOLD);
                (score, score >= threshold)
            }
            _ => return Err(fail(grader, "not a model grader")),
        };
        Ok(Outcome {
            score,
            passed,
            usage: generation.usage,
            sample,
        })
    }
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// The label a model answered: the whole answer, a JSON `{"label"}` or `{"result"}`, or
/// the one label the answer contains.
fn read_label(answer: &str, labels: &[String]) -> Option<String> {
    let trimmed = answer
        .trim()
        .trim_matches(|c: char| c == '"' || c == '.' || c == '`');
    if let Some(label) = labels.iter().find(|l| l.eq_ignore_ascii_case(trimmed)) {
        return Some(label.clone());
    }
    if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(answer.trim()) {
        let given = map
            .get("label")
            .or_else(|| map.get("result"))
            .and_then(Value::as_str)?;
        return labels
            .iter()
            .find(|l| l.eq_ignore_ascii_case(given))
            .cloned();
    }
    let lower = answer.to_lowercase();
    let mut found = labels.iter().filter(|l| lower.contains(&l.to_lowercase()));
    match (found.next(), found.next()) {
        (Some(one), None) => Some(one.clone()),
        _ => None,
    }
}

/// The score a model answered: JSON `{"result"}` (or `{"score"}`), else the last number.
fn read_score(answer: &str) -> Option<f64> {
    let json = answer
        .find('{')
        .and_then(|start| answer.rfind('}').map(|end| (start, end)))
        .and_then(|(start, end)| serde_json::from_str::<Value>(answer.get(start..=end)?).ok());
    if let Some(map) = json.as_ref().and_then(Value::as_object)
        && let Some(x) = map
            .get("result")
            .or_else(|| map.get("score"))
            .and_then(Value::as_f64)
    {
        return Some(x).filter(|x| x.is_finite());
    }
    answer
        .split(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .filter_map(|t| t.parse::<f64>().ok())
        .rfind(|x| x.is_finite())
}

pub(super) struct GraderJudge {
    root: Node,
}

impl GraderJudge {
    pub(super) fn new(setup: &Setup<'_>, grader: Grader) -> Result<Self, String> {
        Ok(GraderJudge {
            root: build(setup, grader)?,
        })
    }
}

#[async_trait]
impl Judge for GraderJudge {
    async fn judge(&self, request: JudgeRequest<'_>) -> Result<Judgment, ComponentError> {
        let item = request.case.input.get("item").unwrap_or(&Value::Null);
        let sample = sample_namespace(request.parsed);
        let outcome = self.root.grade(item, &sample, &request).await?;
        let grader = &self.root.grader;
        Ok(Judgment {
            score: outcome.score,
            passed: Some(outcome.passed),
            rationale: None,
            details: json!({"result": {
                "name": grader.name,
                "type": grader.kind,
                "score": outcome.score,
                "passed": outcome.passed,
                "sample": outcome.sample,
            }}),
            usage: outcome.usage,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_scores_are_read_leniently() {
        let labels = vec!["positive".to_owned(), "negative".to_owned()];
        assert_eq!(
            read_label("Positive.", &labels).as_deref(),
            Some("positive")
        );
        assert_eq!(
            read_label("{\"label\": \"negative\"}", &labels).as_deref(),
            Some("negative")
        );
        assert_eq!(
            read_label("It is negative", &labels).as_deref(),
            Some("negative")
        );
        assert_eq!(read_label("positive or negative", &labels), None);
        assert_eq!(
            read_score("{\"steps\": [\"ok\"], \"result\": 0.8}"),
            Some(0.8)
        );
        assert_eq!(read_score("I give it 7"), Some(7.0));
        assert_eq!(read_score("none"), None);
    }
}
