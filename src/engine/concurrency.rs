//! The concurrency a run actually gets on this instance. A provider-backed run cannot
//! have more requests in flight than the instance's outbound cap, whatever it asks for:
//! rather than being held there silently, the run says so, in `GET /runs/{id}` while it
//! executes here and in a `concurrency_limited` event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use serde_json::Value;

use crate::components::PROVIDER_COMPONENTS;
use crate::model::{EventKind, RunId};

/// A run executing below the concurrency it asked for, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConcurrencyLimit {
    pub requested: u64,
    pub effective: u64,
    pub reason: String,
}

impl ConcurrencyLimit {
    /// The limit on a run that asks for `requested` cases at once, when its definition
    /// names a provider component and the instance sends at most `outbound_cap` provider
    /// requests at once (across all runs). `None` when the run gets what it asks for.
    pub(crate) fn of(
        definition: &Value,
        requested: usize,
        outbound_cap: Option<usize>,
    ) -> Option<Self> {
        let cap = outbound_cap?;
        if requested <= cap || !names_a_provider(definition) {
            return None;
        }
        Some(ConcurrencyLimit {
            requested: requested as u64,
            effective: cap as u64,
            reason: format!(
                "this instance sends at most {cap} model provider requests at once across all \
                 runs (--max-outbound-requests)"
            ),
        })
    }

    pub(crate) fn event(&self) -> EventKind {
        EventKind::ConcurrencyLimited {
            requested: self.requested,
            effective: self.effective,
            reason: self.reason.clone(),
        }
    }
}

/// Whether a stored definition uses a provider component anywhere (as the generator,
/// a judge, or inside a composite's params): component names are strings of their own.
fn names_a_provider(definition: &Value) -> bool {
    match definition {
        Value::String(s) => PROVIDER_COMPONENTS.contains(&s.as_str()),
        Value::Array(items) => items.iter().any(names_a_provider),
        Value::Object(fields) => fields.values().any(names_a_provider),
        _ => false,
    }
}

/// The limits of the runs this instance executes now.
#[derive(Default)]
pub(crate) struct LiveLimits {
    runs: Mutex<HashMap<RunId, ConcurrencyLimit>>,
}

impl LiveLimits {
    pub(crate) fn get(&self, run_id: &RunId) -> Option<ConcurrencyLimit> {
        self.lock().get(run_id).cloned()
    }

    /// Notes `limit` for as long as the returned guard lives (the execution).
    pub(crate) fn hold(self: &Arc<Self>, run_id: &RunId, limit: ConcurrencyLimit) -> LimitGuard {
        self.lock().insert(run_id.clone(), limit);
        LimitGuard {
            limits: Arc::clone(self),
            run_id: run_id.clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RunId, ConcurrencyLimit>> {
        self.runs.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Removes an execution's limit when the execution ends.
pub(crate) struct LimitGuard {
    limits: Arc<LiveLimits>,
    run_id: RunId,
}

impl Drop for LimitGuard {
    fn drop(&mut self) {
        self.limits.lock().remove(&self.run_id);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_provider_backed_runs_above_the_cap_are_limited() {
        let chat = json!({"generation": {"generator": {"name": "openai/chat", "params": {}}}});
        let panel = json!({"evaluation": {"judges": [{"name": "builtin/panel",
            "params": {"judges": ["openai/judge"]}}]}});
        let local = json!({"generation": {"generator": "builtin/demo_generator"}});
        let limit = ConcurrencyLimit::of(&chat, 1_024, Some(256)).expect("limited");
        assert_eq!((limit.requested, limit.effective), (1_024, 256));
        assert!(limit.reason.contains("256"), "{}", limit.reason);
        assert!(ConcurrencyLimit::of(&panel, 300, Some(256)).is_some());
        assert_eq!(ConcurrencyLimit::of(&chat, 256, Some(256)), None);
        assert_eq!(ConcurrencyLimit::of(&local, 4_096, Some(256)), None);
        assert_eq!(ConcurrencyLimit::of(&chat, 4_096, None), None);
    }

    #[test]
    fn a_limit_is_shown_while_its_execution_lasts() {
        let limits = Arc::new(LiveLimits::default());
        let run: RunId = format!("run_{}", "a".repeat(32)).parse().expect("run id");
        let limit = ConcurrencyLimit::of(&json!("openai/chat"), 10, Some(2)).expect("limited");
        let guard = limits.hold(&run, limit.clone());
        assert_eq!(limits.get(&run), Some(limit));
        drop(guard);
        assert_eq!(limits.get(&run), None);
    }
}
