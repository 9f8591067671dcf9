//! One case through the stages: generation → reduction → parsing → scoring → judging.
//!
//! A stage that fails ends the case there (recorded with the stage and error); the
//! stages after it are skipped and every metric and judge is recorded as not scored, so
//! failure counts stay honest. Nothing here touches the store: the result is a
//! [`CaseCommit`] that the executor persists atomically.
//!
//! - [`record`]: a case's record and events as its stages run, and how it ends.
//! - [`generation`]: the generation and reduction stages.
//! - [`evaluation`]: parsing, scoring (with pass@k) and judging, shared with rejudge.

mod evaluation;
mod generation;
mod record;

use sha2::{Digest, Sha256};

use super::definition::{Evaluators, Pipeline};
use crate::components::{CallContext, CallObserver, ResponseCache};
use crate::engine::EngineError;
use crate::model::{Case, CaseKey, CaseRecord, NewEvent, RunId, Stage};
use crate::observe::{AttributeValue, Attributes, Observers, Span};
use crate::store::CaseCommit;

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

impl CaseInput<'_> {
    /// The attributes of the case's spans: none when spans go nowhere (building them
    /// was ~20 allocations a case).
    fn attributes(&self, component: Option<&str>) -> Attributes {
        if !self.observers.tracer.is_recording() {
            return Vec::new();
        }
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
/// run or the process).
async fn contained(stage: impl std::future::Future<Output = ()>) -> Result<(), EngineError> {
    use futures::FutureExt;
    std::panic::AssertUnwindSafe(stage)
        .catch_unwind()
        .await
        .map_err(|payload| EngineError::Panicked(panic_message(payload.as_ref())))
}

/// The message a panic was raised with, when it has one.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
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
        run.panicked(&[Stage::Generation], message.to_string());
    }
    if !run.failed()
        && let Err(message) = contained(run.reduce(pipeline, reducer_id)).await
    {
        run.panicked(&[Stage::Reduction], message.to_string());
    }
    if !run.failed()
        && let Err(message) = contained(run.evaluate(&pipeline.evaluators)).await
    {
        run.panicked(&EVALUATION_STAGES, message.to_string());
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
        run.panicked(&EVALUATION_STAGES, message.to_string());
    }
    run.finish(evaluators)
}
