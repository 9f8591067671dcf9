//! Parsing, scoring (with the pass@k scores over every candidate) and judging of a
//! case's reduced output; a rejudge runs these alone.

use serde_json::Value;

use super::CaseRun;
use crate::components::JudgeRequest;
use crate::engine::definition::{Evaluators, PassAtK};
use crate::model::{Candidate, Case, EventKind, JudgmentRecord, ParseStep, ScoreRecord, Stage};

impl CaseRun<'_> {
    /// Parsing, scoring and judging of the reduced output (shared with rejudge).
    pub(super) async fn evaluate(&mut self, evaluators: &Evaluators) {
        let Some(reduced) = self.record.reduced.clone() else {
            return;
        };
        let observers = self.input.observers;
        let key = self.input.key.clone();
        let candidate_id = reduced.candidate_id.clone();

        let parser_ids = component_list(evaluators.parsers.iter().map(|(id, _)| id));
        let stage = self.open_stage(Stage::Parsing, &parser_ids);
        observers.notify(|s| s.before_parse(&reduced, self.ctx()));
        let mut value = reduced.output.clone();
        let mut parse_error = None;
        for (parser_id, parser) in &evaluators.parsers {
            match parser.parse(&value) {
                Ok(parsed) => {
                    self.event(EventKind::ParseCompleted {
                        case: key.clone(),
                        candidate_id: candidate_id.clone(),
                        parser_id: parser_id.clone(),
                        result: parsed.clone(),
                    });
                    self.record.parse_steps.push(ParseStep {
                        parser_id: parser_id.clone(),
                        output: parsed.clone(),
                        error: None,
                    });
                    value = parsed;
                }
                Err(error) => {
                    self.event(EventKind::ParseFailed {
                        case: key.clone(),
                        candidate_id: candidate_id.clone(),
                        parser_id: parser_id.clone(),
                        error_message: error.message.clone(),
                    });
                    self.record.parse_steps.push(ParseStep {
                        parser_id: parser_id.clone(),
                        output: Value::Null,
                        error: Some(error.message.clone()),
                    });
                    parse_error = Some(format!("{parser_id}: {}", error.message));
                    break;
                }
            }
        }
        if parse_error.is_none() {
            observers.notify(|s| s.after_parse(&value, self.ctx()));
            self.record.parsed = Some(value.clone());
        }
        self.close_stage(Stage::Parsing, stage, parse_error);
        if self.failed() {
            return;
        }
        let parsed = value;
        let case = self.input.case;
        // The transcript of the chosen candidate (an agent's): metrics and judges see it.
        let transcript = self
            .record
            .candidates
            .iter()
            .find(|c| c.candidate_id == candidate_id)
            .and_then(|c| c.transcript.clone());
        let transcript = transcript.as_ref();

        let metric_ids = component_list(evaluators.metrics.iter().map(|(id, _)| id));
        let stage = self.open_stage(Stage::Scoring, &metric_ids);
        observers.notify(|s| s.before_score(&parsed, self.ctx()));
        let mut score_error = None;
        for (metric_id, metric) in &evaluators.metrics {
            let record = match metric.score_transcript(&parsed, case, transcript).await {
                Ok(score) => {
                    self.event(EventKind::ScoreCompleted {
                        case: key.clone(),
                        candidate_id: candidate_id.clone(),
                        metric_id: metric_id.clone(),
                        score: score.score,
                    });
                    ScoreRecord {
                        metric_id: metric_id.clone(),
                        score: Some(score.score),
                        details: score.details,
                        error: None,
                    }
                }
                Err(error) => {
                    score_error.get_or_insert_with(|| format!("{metric_id}: {}", error.message));
                    self.event(EventKind::ScoreFailed {
                        case: key.clone(),
                        candidate_id: candidate_id.clone(),
                        metric_id: metric_id.clone(),
                        error: error.message.clone(),
                    });
                    ScoreRecord {
                        metric_id: metric_id.clone(),
                        score: None,
                        details: Value::Null,
                        error: Some(error.message),
                    }
                }
            };
            if let Some(score) = record.score
                && observers.tracer.is_recording()
            {
                let key = format!("score.{metric_id}");
                observers.tracer.set_attribute(&stage.0, &key, score.into());
            }
            observers.notify(|s| s.after_score(&record, self.ctx()));
            self.record.scores.push(record);
        }
        if let Some(pass) = &evaluators.pass_at_k {
            for record in pass_at_k_scores(pass, evaluators, &self.record.candidates, case).await {
                if let Some(score) = record.score {
                    self.event(EventKind::ScoreCompleted {
                        case: key.clone(),
                        candidate_id: candidate_id.clone(),
                        metric_id: record.metric_id.clone(),
                        score,
                    });
                }
                self.record.scores.push(record);
            }
        }
        self.close_stage(Stage::Scoring, stage, score_error);
        if self.failed() {
            return;
        }

        let judge_ids = component_list(evaluators.judges.iter().map(|(id, _)| id));
        let stage = self.open_stage(Stage::Judging, &judge_ids);
        let mut judge_error = None;
        for (judge_id, judge) in &evaluators.judges {
            observers.notify(|s| s.before_judge(&parsed, self.ctx()));
            let request = JudgeRequest {
                dataset_id: &key.dataset_id,
                case,
                parsed: &parsed,
                seed: key.seed,
                transcript,
                ctx: self.input.call_context(&stage.0),
            };
            let record = match judge.judge(request).await {
                Ok(judgment) => {
                    self.record.usage.add(&judgment.usage);
                    JudgmentRecord {
                        judge_id: judge_id.clone(),
                        score: Some(judgment.score),
                        passed: judgment.passed,
                        rationale: judgment.rationale,
                        details: judgment.details,
                        usage: judgment.usage,
                        error: None,
                    }
                }
                Err(error) => {
                    judge_error.get_or_insert_with(|| format!("{judge_id}: {}", error.message));
                    JudgmentRecord {
                        judge_id: judge_id.clone(),
                        score: None,
                        passed: None,
                        rationale: None,
                        details: Value::Null,
                        usage: Default::default(),
                        error: Some(error.message),
                    }
                }
            };
            let kind = match &record.error {
                None => EventKind::EvaluationCompleted {
                    case: key.clone(),
                    candidate_id: candidate_id.clone(),
                    metric_id: judge_id.clone(),
                    execution: record.clone(),
                },
                Some(message) => EventKind::EvaluationFailed {
                    case: key.clone(),
                    candidate_id: candidate_id.clone(),
                    metric_id: judge_id.clone(),
                    error_message: message.clone(),
                },
            };
            self.event(kind);
            observers.notify(|s| s.after_judge(&record, self.ctx()));
            self.record.judgments.push(record);
        }
        self.close_stage(Stage::Judging, stage, judge_error);
    }
}

/// The `pass@{k}` scores of a case: every candidate through the parser chain and the
/// pass@k metric; a candidate that failed to generate, parse or score counts as
/// incorrect (it is one of the `n` samples drawn). Details hold `n`, `c` and the metric.
async fn pass_at_k_scores(
    pass: &PassAtK,
    evaluators: &Evaluators,
    candidates: &[Candidate],
    case: &Case,
) -> Vec<ScoreRecord> {
    // Candidates are scored together: a metric that runs code waits on the sandbox pool,
    // not on the candidate before it.
    let correct = futures::future::join_all(candidates.iter().map(|candidate| async move {
        if candidate.error.is_some() {
            return false;
        }
        let mut value = candidate.output.clone();
        for (_, parser) in &evaluators.parsers {
            match parser.parse(&value) {
                Ok(parsed) => value = parsed,
                Err(_) => return false,
            }
        }
        pass.metric
            .score_transcript(&value, case, candidate.transcript.as_ref())
            .await
            .is_ok_and(|s| s.score >= pass.threshold)
    }))
    .await
    .into_iter()
    .filter(|correct| *correct)
    .count() as u64;
    let n = candidates.len() as u64;
    pass.k
        .iter()
        .map(|k| {
            let estimate = crate::model::pass_at_k(n, correct, *k);
            ScoreRecord {
                metric_id: PassAtK::id(*k),
                score: estimate,
                details: serde_json::json!({"n": n, "c": correct, "metric": pass.metric_id}),
                error: estimate
                    .is_none()
                    .then(|| format!("pass@{k} needs at least {k} samples, the case has {n}")),
            }
        })
        .collect()
}

fn component_list<'a>(ids: impl Iterator<Item = &'a String>) -> String {
    ids.map(String::as_str).collect::<Vec<_>>().join(",")
}
