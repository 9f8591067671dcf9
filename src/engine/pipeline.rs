//! One case through the stages: generation → reduction → parsing → scoring → judging.
//!
//! A stage that fails ends the case there (recorded with the stage and error); the
//! stages after it are skipped and every metric and judge is recorded as not scored, so
//! failure counts stay honest. Nothing here touches the store: the result is a
//! [`CaseCommit`] that the executor persists atomically.

use std::time::Instant;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::definition::{Evaluators, PassAtK, Pipeline};
use super::observe::{Observers, StageContext};
use crate::components::{
    CallContext, CallObserver, GenerateRequest, JudgeRequest, ReduceRequest, ResponseCache,
};
use crate::model::{
    Candidate, Case, CaseError, CaseKey, CaseRecord, CaseStatus, EventKind, JudgmentRecord,
    NewEvent, ParseStep, Reduced, RunId, ScoreRecord, Stage, StageRecord, Timestamp, Usage,
};
use crate::store::CaseCommit;
use crate::telemetry::{AttributeValue, Attributes, Span, SpanStatus};

/// The seed of candidate `index` of a case: SHA-256 of the case's identity and seed,
/// so it depends on nothing but the case (not on the run, order or concurrency).
pub fn candidate_seed(key: &CaseKey, index: u32) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(b"themis/candidate-seed/v1\n");
    for part in [key.dataset_id.as_bytes(), key.case_id.as_bytes()] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hasher.update(key.seed.to_le_bytes());
    hasher.update(index.to_le_bytes());
    let digest = hasher.finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(bytes)
}

/// What the executor hands a case.
pub(crate) struct CaseInput<'a> {
    pub run_id: &'a RunId,
    pub key: CaseKey,
    pub case: &'a Case,
    pub observers: &'a Observers,
    pub run_span: &'a Span,
    /// The response cache, unless the run turned it off.
    pub cache: Option<&'a dyn ResponseCache>,
    /// Where provider calls report retries and rate-limit waits.
    pub notes: &'a dyn CallObserver,
}

impl<'a> CaseInput<'a> {
    fn call_context(&'a self, stage_span: &'a Span) -> CallContext<'a> {
        CallContext {
            run_id: self.run_id.as_str(),
            cache: self.cache,
            observer: self.notes,
            tracer: self.observers.tracer.as_ref(),
            parent_span: Some(stage_span),
        }
    }
}

/// Accumulates a case's record and events as its stages run.
struct CaseRun<'a> {
    input: &'a CaseInput<'a>,
    record: CaseRecord,
    events: Vec<NewEvent>,
    case_span: Option<Span>,
}

impl<'a> CaseRun<'a> {
    fn start(input: &'a CaseInput<'a>) -> Self {
        let started_at = Timestamp::now();
        let case_span =
            input
                .observers
                .tracer
                .start_span("case", input.attributes(None), Some(input.run_span));
        CaseRun {
            input,
            record: CaseRecord {
                run_id: input.run_id.clone(),
                key: input.key.clone(),
                status: CaseStatus::Completed,
                candidates: Vec::new(),
                reduced: None,
                parsed: None,
                parse_steps: Vec::new(),
                scores: Vec::new(),
                judgments: Vec::new(),
                error: None,
                stages: Vec::new(),
                usage: Usage::default(),
                started_at,
                finished_at: started_at,
            },
            events: vec![NewEvent::now(EventKind::CaseStarted {
                case: input.key.clone(),
            })],
            case_span: Some(case_span),
        }
    }

    fn ctx(&self) -> StageContext<'a> {
        StageContext {
            run_id: self.input.run_id,
            case: &self.input.key,
        }
    }

    fn event(&mut self, kind: EventKind) {
        self.events.push(NewEvent::now(kind));
    }

    fn open_stage(&self, stage: Stage, component: &str) -> (Span, Instant) {
        let span = self.input.observers.tracer.start_span(
            stage.as_str(),
            self.input.attributes(Some(component)),
            self.case_span.as_ref(),
        );
        (span, Instant::now())
    }

    /// Ends a span: `error` when a message is given, else `ok`.
    fn end_span(&self, span: Span, error: Option<&str>) {
        let status = if error.is_some() {
            SpanStatus::Error
        } else {
            SpanStatus::Ok
        };
        self.input.observers.tracer.end_span(span, status, error);
    }

    /// Closes a stage; the first error of a case marks it failed at that stage.
    fn close_stage(
        &mut self,
        stage: Stage,
        (span, started): (Span, Instant),
        error: Option<String>,
    ) {
        self.end_span(span, error.as_deref());
        if let Some(message) = &error
            && self.record.error.is_none()
        {
            self.record.error = Some(CaseError {
                stage,
                message: message.clone(),
            });
        }
        self.record.stages.push(StageRecord {
            stage,
            duration_ms: started.elapsed().as_millis() as u64,
            error,
        });
    }

    fn failed(&self) -> bool {
        self.record.error.is_some()
    }

    /// Ends the case: skipped metrics and judges are recorded as not scored.
    fn finish(mut self, evaluators: &Evaluators) -> CaseCommit {
        if let Some(error) = &self.record.error {
            let reason = format!("not scored: case failed at {}", error.stage.as_str());
            let pass_ids = evaluators
                .pass_at_k
                .iter()
                .flat_map(|p| p.k.iter().map(|k| PassAtK::id(*k)));
            let metric_ids: Vec<String> = evaluators
                .metrics
                .iter()
                .map(|(id, _)| id.clone())
                .chain(pass_ids)
                .collect();
            for metric_id in &metric_ids {
                if !self.record.scores.iter().any(|s| &s.metric_id == metric_id) {
                    self.record.scores.push(ScoreRecord {
                        metric_id: metric_id.clone(),
                        score: None,
                        details: Value::Null,
                        error: Some(reason.clone()),
                    });
                }
            }
            for (judge_id, _) in &evaluators.judges {
                if !self
                    .record
                    .judgments
                    .iter()
                    .any(|j| &j.judge_id == judge_id)
                {
                    self.record.judgments.push(JudgmentRecord {
                        judge_id: judge_id.clone(),
                        score: None,
                        passed: None,
                        rationale: None,
                        details: Value::Null,
                        usage: Usage::default(),
                        error: Some(reason.clone()),
                    });
                }
            }
        }
        self.record.finished_at = Timestamp::now();
        let key = self.input.key.clone();
        let span_error = self.record.error.as_ref().map(|e| e.message.clone());
        match self.record.error.clone() {
            Some(error) => {
                self.record.status = CaseStatus::Failed;
                self.event(EventKind::CaseFailed {
                    case: key,
                    stage: error.stage,
                    error_message: error.message,
                });
            }
            None => {
                let duration_ms = self.record.finished_at.millis_since(self.record.started_at);
                self.event(EventKind::CaseCompleted {
                    case: key,
                    duration_ms,
                });
            }
        }
        if let Some(span) = self.case_span.take() {
            self.end_span(span, span_error.as_deref());
        }
        CaseCommit {
            record: self.record,
            events: self.events,
        }
    }

    async fn generate(&mut self, pipeline: &Pipeline, generator_id: &str, num_samples: u32) {
        let observers = self.input.observers;
        let case = self.input.case;
        let key = &self.input.key;
        let stage = self.open_stage(Stage::Generation, generator_id);
        observers.notify(|s| s.before_generate(case, self.ctx()));
        let seeds: Vec<u64> = (0..num_samples).map(|i| candidate_seed(key, i)).collect();
        let requests: Vec<GenerateRequest<'_>> = seeds
            .iter()
            .enumerate()
            .map(|(i, seed)| GenerateRequest {
                dataset_id: &key.dataset_id,
                case,
                seed: *seed,
                candidate_index: i as u32,
                ctx: self.input.call_context(&stage.0),
            })
            .collect();
        let started = Instant::now();
        let results = pipeline.generator.generate_samples(&requests).await;
        let duration_ms = started.elapsed().as_millis() as u64;
        let mut first_error = None;
        for (i, result) in results.into_iter().enumerate() {
            let candidate_id = format!("cand-{}-{i}", key.case_index);
            let seed = seeds[i];
            let candidate = match result {
                Ok(generation) => {
                    self.record.usage.add(&generation.usage);
                    self.event(EventKind::GenerationCompleted {
                        case: key.clone(),
                        candidate_id: candidate_id.clone(),
                        candidate_index: i as u32,
                        candidate_seed: seed,
                        provider_key: generator_id.to_owned(),
                        result: generation.output.clone(),
                    });
                    Candidate {
                        candidate_id,
                        candidate_index: i as u32,
                        seed,
                        output: generation.output,
                        raw_text: generation.raw_text,
                        finish_reason: generation.finish_reason,
                        usage: generation.usage,
                        duration_ms,
                        error: None,
                    }
                }
                Err(error) => {
                    first_error.get_or_insert_with(|| error.message.clone());
                    self.event(EventKind::GenerationFailed {
                        case: key.clone(),
                        candidate_id: candidate_id.clone(),
                        error_message: error.message.clone(),
                    });
                    Candidate {
                        candidate_id,
                        candidate_index: i as u32,
                        seed,
                        output: Value::Null,
                        raw_text: None,
                        finish_reason: None,
                        usage: Usage::default(),
                        duration_ms,
                        error: Some(error.message),
                    }
                }
            };
            self.record.candidates.push(candidate);
        }
        observers.notify(|s| s.after_generate(&self.record.candidates, self.ctx()));
        self.close_stage(Stage::Generation, stage, first_error);
    }

    async fn reduce(&mut self, pipeline: &Pipeline, reducer_id: &str) {
        let observers = self.input.observers;
        let stage = self.open_stage(Stage::Reduction, reducer_id);
        observers.notify(|s| s.before_reduce(&self.record.candidates, self.ctx()));
        let candidates = &self.record.candidates;
        let key = &self.input.key;
        let request = ReduceRequest {
            dataset_id: &key.dataset_id,
            case: self.input.case,
            seed: key.seed,
            candidates,
            ctx: self.input.call_context(&stage.0),
        };
        let outcome = pipeline
            .reducer
            .reduce_case(request)
            .await
            .and_then(|reduction| {
                let chosen = candidates.get(reduction.chosen).ok_or_else(|| {
                    crate::components::ComponentError::new(format!(
                        "reducer chose candidate {} of {}",
                        reduction.chosen,
                        candidates.len()
                    ))
                })?;
                Ok(Reduced {
                    candidate_id: chosen.candidate_id.clone(),
                    output: chosen.output.clone(),
                    source_candidate_ids: reduction
                        .sources
                        .iter()
                        .filter_map(|i| candidates.get(*i))
                        .map(|c| c.candidate_id.clone())
                        .collect(),
                    details: reduction.details,
                })
            });
        let key = self.input.key.clone();
        match outcome {
            Ok(reduced) => {
                self.event(EventKind::ReductionCompleted {
                    case: key,
                    candidate_id: reduced.candidate_id.clone(),
                    source_candidate_ids: reduced.source_candidate_ids.clone(),
                    result: reduced.output.clone(),
                });
                observers.notify(|s| s.after_reduce(&reduced, self.ctx()));
                self.record.reduced = Some(reduced);
                self.close_stage(Stage::Reduction, stage, None);
            }
            Err(error) => {
                self.event(EventKind::ReductionFailed {
                    case: key,
                    error_message: error.message.clone(),
                });
                self.close_stage(Stage::Reduction, stage, Some(error.message));
            }
        }
    }

    /// Parsing, scoring and judging of the reduced output (shared with rejudge).
    async fn evaluate(&mut self, evaluators: &Evaluators) {
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

        let metric_ids = component_list(evaluators.metrics.iter().map(|(id, _)| id));
        let stage = self.open_stage(Stage::Scoring, &metric_ids);
        observers.notify(|s| s.before_score(&parsed, self.ctx()));
        let mut score_error = None;
        for (metric_id, metric) in &evaluators.metrics {
            let record = match metric.score(&parsed, case) {
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
            for record in pass_at_k_scores(pass, evaluators, &self.record.candidates, case) {
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
fn pass_at_k_scores(
    pass: &PassAtK,
    evaluators: &Evaluators,
    candidates: &[Candidate],
    case: &Case,
) -> Vec<ScoreRecord> {
    let correct = candidates
        .iter()
        .filter(|candidate| {
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
                .score(&value, case)
                .is_ok_and(|s| s.score >= pass.threshold)
        })
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

impl CaseInput<'_> {
    fn attributes(&self, component: Option<&str>) -> Attributes {
        let mut attributes: Attributes = vec![
            ("run_id", self.run_id.as_str().into()),
            ("dataset_id", self.key.dataset_id.as_str().into()),
            ("case_id", self.key.case_id.as_str().into()),
            ("seed", AttributeValue::from(self.key.seed)),
        ];
        if let Some(component) = component {
            attributes.push(("component", component.into()));
        }
        attributes
    }
}

/// The stages [`CaseRun::evaluate`] runs, in order.
const EVALUATION_STAGES: [Stage; 3] = [Stage::Parsing, Stage::Scoring, Stage::Judging];

/// Awaits a stage, catching a panic in it (a component's bug must fail its case, not the
/// run or the process). Returns the panic's message.
async fn contained(stage: impl std::future::Future<Output = ()>) -> Result<(), String> {
    use futures::FutureExt;
    std::panic::AssertUnwindSafe(stage)
        .catch_unwind()
        .await
        .map_err(|payload| panic_message(payload.as_ref()))
}

/// The message a panic was raised with, when it has one.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

impl CaseRun<'_> {
    /// A stage of `stages` panicked: the first of them not closed yet is where. The case
    /// fails there with `panicked: <message>`.
    fn panicked(&mut self, stages: &[Stage], message: String) {
        let stage = stages
            .iter()
            .copied()
            .find(|stage| !self.record.stages.iter().any(|s| s.stage == *stage))
            .or_else(|| stages.last().copied())
            .unwrap_or(Stage::Generation);
        tracing::error!(
            run_id = %self.input.run_id,
            case_id = %self.input.key.case_id,
            stage = stage.as_str(),
            panic = %message,
            "a component panicked; the case fails"
        );
        let message = format!("panicked: {message}");
        if self.record.error.is_none() {
            self.record.error = Some(CaseError {
                stage,
                message: message.clone(),
            });
        }
        self.record.stages.push(StageRecord {
            stage,
            duration_ms: 0,
            error: Some(message),
        });
    }
}

/// Runs a case through all five stages.
pub(crate) async fn run_case(
    input: &CaseInput<'_>,
    pipeline: &Pipeline,
    generator_id: &str,
    reducer_id: &str,
    num_samples: u32,
) -> CaseCommit {
    let mut run = CaseRun::start(input);
    if let Err(message) = contained(run.generate(pipeline, generator_id, num_samples)).await {
        run.panicked(&[Stage::Generation], message);
    }
    if !run.failed()
        && let Err(message) = contained(run.reduce(pipeline, reducer_id)).await
    {
        run.panicked(&[Stage::Reduction], message);
    }
    if !run.failed()
        && let Err(message) = contained(run.evaluate(&pipeline.evaluators)).await
    {
        run.panicked(&EVALUATION_STAGES, message);
    }
    run.finish(&pipeline.evaluators)
}

/// A case whose execution panicked outside any stage (a bug of ours rather than of a
/// component): recorded as failed at `stage`, so the run goes on.
pub(crate) fn panicked_case(
    input: &CaseInput<'_>,
    evaluators: &Evaluators,
    stage: Stage,
    message: String,
) -> CaseCommit {
    let mut run = CaseRun::start(input);
    run.panicked(&[stage], message);
    run.finish(evaluators)
}

/// Re-evaluates a stored case: its candidates and reduced output are kept, parsing,
/// scoring and judging run again with `evaluators`. The generator is never called.
pub(crate) async fn rejudge_case(
    input: &CaseInput<'_>,
    source: &CaseRecord,
    evaluators: &Evaluators,
) -> CaseCommit {
    let mut run = CaseRun::start(input);
    run.record.candidates = source.candidates.clone();
    run.record.reduced = source.reduced.clone();
    // Usage counts what this run spent: judges only, the generations were paid for already.
    // Generation and reduction happened in the source run: keep their outcome.
    for stage in &source.stages {
        if matches!(stage.stage, Stage::Generation | Stage::Reduction) {
            run.record.stages.push(stage.clone());
        }
    }
    if let Some(error) = &source.error
        && matches!(error.stage, Stage::Generation | Stage::Reduction)
    {
        run.record.error = Some(error.clone());
    }
    if !run.failed()
        && let Err(message) = contained(run.evaluate(evaluators)).await
    {
        run.panicked(&EVALUATION_STAGES, message);
    }
    run.finish(evaluators)
}
