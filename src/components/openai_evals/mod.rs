//! The OpenAI Evals API's graders and data as components: `openai_evals/grader` (a
//! judge running one of OpenAI's graders) and `openai_evals/sample` (a generator that
//! answers with the row's own `sample`, for rows graded without a model call).

mod formula;
mod grader;
mod similarity;
mod spec;
mod template;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::{ComponentError, GenerateRequest, Generation, Generator, Registry};
use crate::model::Usage;

pub(crate) use grader::resolve_model;
pub(crate) use spec::{Grader, parse_grader};
pub(crate) use template::{Namespaces, content_text, lookup, render};

pub(super) fn register(registry: &mut Registry) {
    registry.register_generator("openai_evals/sample", "1", |_| Arc::new(RowSample));
    registry.register_judge("openai_evals/recorded", "1", |p| {
        let name = p.required_string("name");
        let _ = p.string("eval_run");
        Arc::new(Recorded { name })
    });
    registry.register_composite_judge("openai_evals/grader", "1", |registry, p| {
        let default_provider = p.string("default_provider");
        let sandbox = p.string("sandbox");
        // The eval run the judge grades for: it only keeps Themis run ids apart.
        let _ = p.string("eval_run");
        let mut problems = Vec::new();
        let grader = p
            .value("grader")
            .and_then(|v| parse_grader(v, "grader", &mut problems));
        for problem in problems {
            p.error(&problem.path, problem.message);
        }
        let setup = grader::Setup {
            registry,
            default_provider: default_provider.as_deref(),
            sandbox: sandbox.as_deref(),
        };
        match grader.map(|g| grader::GraderJudge::new(&setup, g)) {
            Some(Ok(judge)) => Arc::new(judge),
            Some(Err(message)) => {
                p.error("grader", message);
                Arc::new(Unusable)
            }
            None => {
                p.error("grader", "is required");
                Arc::new(Unusable)
            }
        }
    });
}

/// The row's `sample` (`input.sample`), or `null` when the row has none.
struct RowSample;

#[async_trait]
impl Generator for RowSample {
    async fn generate(&self, request: GenerateRequest<'_>) -> Result<Generation, ComponentError> {
        let output = request
            .case
            .input
            .get("sample")
            .cloned()
            .unwrap_or(Value::Null);
        Ok(Generation {
            raw_text: output
                .get("output_text")
                .and_then(Value::as_str)
                .map(str::to_owned),
            output,
            finish_reason: None,
            usage: Usage::default(),
            transcript: None,
        })
    }
}

/// Stands in for a grader whose params were invalid (the registry discards it).
struct Unusable;

#[async_trait]
impl super::Judge for Unusable {
    async fn judge(
        &self,
        _request: super::JudgeRequest<'_>,
    ) -> Result<super::Judgment, ComponentError> {
        Err(ComponentError::new("invalid grader"))
    }
}

/// A result recorded by OpenAI (an imported run's `input.recorded[name]`), replayed as
/// the judgment; a row recorded as errored stays errored.
struct Recorded {
    name: String,
}

#[async_trait]
impl super::Judge for Recorded {
    async fn judge(
        &self,
        request: super::JudgeRequest<'_>,
    ) -> Result<super::Judgment, ComponentError> {
        let input = &request.case.input;
        let result = &input["recorded"][self.name.as_str()];
        if input["errored"] == Value::Bool(true) || !result.is_object() {
            return Err(ComponentError::new(format!(
                "no result of `{}` was recorded for this row",
                self.name
            )));
        }
        let score = result["score"].as_f64().unwrap_or(0.0);
        Ok(super::Judgment {
            score,
            passed: Some(result["passed"] == Value::Bool(true)),
            rationale: None,
            details: serde_json::json!({"result": result}),
            usage: Usage::default(),
        })
    }
}
