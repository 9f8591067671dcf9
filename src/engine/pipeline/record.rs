//! A case's record and events as its stages run: opening and closing stages (with
//! their spans), a panicked stage, and the end of the case, where skipped metrics and
//! judges are recorded as not scored.

use std::time::Instant;

use serde_json::Value;

use super::{CaseInput, CaseRun};
use crate::engine::definition::{Evaluators, PassAtK};
use crate::model::{
    CaseError, CaseRecord, CaseStatus, EventKind, JudgmentRecord, NewEvent, ScoreRecord, Stage,
    StageRecord, Timestamp, Usage,
};
use crate::observe::{Span, SpanStatus, StageContext};
use crate::store::CaseCommit;

impl<'a> CaseRun<'a> {
    pub(super) fn start(input: &'a CaseInput<'a>) -> Self {
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

    pub(super) fn ctx(&self) -> StageContext<'a> {
        StageContext {
            run_id: self.input.run_id,
            case: &self.input.key,
        }
    }

    pub(super) fn event(&mut self, kind: EventKind) {
        self.events.push(NewEvent::now(kind));
    }

    pub(super) fn open_stage(&self, stage: Stage, component: &str) -> (Span, Instant) {
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
    pub(super) fn close_stage(
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

    pub(super) fn failed(&self) -> bool {
        self.record.error.is_some()
    }

    /// Ends the case: skipped metrics and judges are recorded as not scored.
    pub(super) fn finish(mut self, evaluators: &Evaluators) -> CaseCommit {
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
        CaseCommit::new(self.record, self.events)
    }

    /// A stage of `stages` panicked: the first of them not closed yet is where. The case
    /// fails there with `panicked: <message>`.
    pub(super) fn panicked(&mut self, stages: &[Stage], message: String) {
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
