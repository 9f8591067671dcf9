//! Lifecycle subscribers and the observers attached to one execution.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use serde_json::Value;

use super::span::{NoopTracer, TracingProvider};
use crate::model::{
    Candidate, Case, CaseKey, JudgmentRecord, Reduced, RunEvent, RunId, ScoreRecord,
};

/// Where a hook is called from.
#[derive(Debug, Clone, Copy)]
pub struct StageContext<'a> {
    pub run_id: &'a RunId,
    pub case: &'a CaseKey,
}

/// Callbacks around every stage boundary plus every persisted event. Every method has a
/// no-op default, so a subscriber implements the ones it cares about.
///
/// Hooks run inline on the case's task: keep them quick (hand slow work to a channel).
/// A panicking subscriber is caught and logged; it never affects the run.
pub trait LifecycleSubscriber: Send + Sync {
    fn before_generate(&self, _case: &Case, _ctx: StageContext<'_>) {}
    fn after_generate(&self, _candidates: &[Candidate], _ctx: StageContext<'_>) {}
    fn before_reduce(&self, _candidates: &[Candidate], _ctx: StageContext<'_>) {}
    fn after_reduce(&self, _reduced: &Reduced, _ctx: StageContext<'_>) {}
    fn before_parse(&self, _candidate: &Reduced, _ctx: StageContext<'_>) {}
    fn after_parse(&self, _parsed: &Value, _ctx: StageContext<'_>) {}
    fn before_score(&self, _parsed: &Value, _ctx: StageContext<'_>) {}
    fn after_score(&self, _score: &ScoreRecord, _ctx: StageContext<'_>) {}
    fn before_judge(&self, _parsed: &Value, _ctx: StageContext<'_>) {}
    fn after_judge(&self, _judgment: &JudgmentRecord, _ctx: StageContext<'_>) {}
    /// Every event of the run, in sequence order, after it was persisted.
    fn on_event(&self, _event: &RunEvent) {}
}

/// The instrumentation of one execution: runtime-only, never part of the run id.
#[derive(Clone)]
pub struct Observers {
    pub subscribers: Vec<Arc<dyn LifecycleSubscriber>>,
    pub tracer: Arc<dyn TracingProvider>,
}

impl Default for Observers {
    fn default() -> Self {
        Observers {
            subscribers: Vec::new(),
            tracer: Arc::new(NoopTracer),
        }
    }
}

impl Observers {
    pub fn new(
        subscribers: Vec<Arc<dyn LifecycleSubscriber>>,
        tracer: Arc<dyn TracingProvider>,
    ) -> Self {
        Observers {
            subscribers,
            tracer,
        }
    }

    /// Calls a hook on every subscriber, containing panics.
    pub fn notify(&self, hook: impl Fn(&dyn LifecycleSubscriber)) {
        for subscriber in &self.subscribers {
            if catch_unwind(AssertUnwindSafe(|| hook(subscriber.as_ref()))).is_err() {
                tracing::warn!("a lifecycle subscriber panicked; ignoring it");
            }
        }
    }
}
