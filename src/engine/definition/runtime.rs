//! Checking the runtime-only options of a request: they change what is observed and
//! how fast, never results.

use serde_json::{Map, Value};

use super::Checker;
use super::types::{FailurePolicy, MAX_CONCURRENCY, RuntimeOptions, StorageConfig};
use crate::observe::{parse_subscribers, parse_tracing};

/// The largest budget a run may give itself, in USD.
pub const MAX_BUDGET_USD: f64 = 1e9;

impl Checker<'_> {
    pub(super) fn runtime(&mut self, map: &Map<String, Value>) -> RuntimeOptions {
        let mut runtime = RuntimeOptions::default();
        if let Some(value) = map.get("concurrency").filter(|v| !v.is_null()) {
            match value.as_u64() {
                Some(n) if (1..=MAX_CONCURRENCY).contains(&n) => {
                    runtime.concurrency = Some(n as usize)
                }
                _ => self.problems.push(
                    "concurrency",
                    format!("must be an integer from 1 to {MAX_CONCURRENCY}"),
                ),
            }
        }
        if let Some(value) = map.get("failure_policy").filter(|v| !v.is_null())
            && let Some(policy) =
                self.problems
                    .object(value, "failure_policy", &["max_ratio", "min_cases"])
        {
            let max_ratio = match policy.get("max_ratio").and_then(Value::as_f64) {
                Some(ratio) if (0.0..=1.0).contains(&ratio) => Some(ratio),
                _ => {
                    self.problems.push(
                        "failure_policy.max_ratio",
                        "is required: a number from 0 to 1",
                    );
                    None
                }
            };
            let min_cases = match policy.get("min_cases").filter(|v| !v.is_null()) {
                None => Some(20),
                Some(v) => match v.as_u64() {
                    Some(n) if n >= 1 => Some(n),
                    _ => {
                        self.problems
                            .push("failure_policy.min_cases", "must be a positive integer");
                        None
                    }
                },
            };
            if let (Some(max_ratio), Some(min_cases)) = (max_ratio, min_cases) {
                runtime.failure_policy = Some(FailurePolicy {
                    max_ratio,
                    min_cases,
                });
            }
        }
        if let Some(value) = map.get("budget_usd").filter(|v| !v.is_null()) {
            match value.as_f64() {
                Some(usd) if usd > 0.0 && usd <= MAX_BUDGET_USD => runtime.budget_usd = Some(usd),
                _ => self.problems.push(
                    "budget_usd",
                    format!("must be a number of USD above 0 and at most {MAX_BUDGET_USD}"),
                ),
            }
        }
        if let Some(value) = map.get("cache").filter(|v| !v.is_null()) {
            match value.as_bool() {
                Some(cache) => runtime.cache = Some(cache),
                None => self.problems.push("cache", "must be true or false"),
            }
        }
        if let Some(value) = map.get("tracing").filter(|v| !v.is_null()) {
            runtime.tracing = parse_tracing(value, "tracing", &mut self.problems);
        }
        if let Some(value) = map.get("subscribers").filter(|v| !v.is_null()) {
            runtime.subscribers = parse_subscribers(value, "subscribers", &mut self.problems);
        }
        if let Some(value) = map.get("storage").filter(|v| !v.is_null())
            && let Some(storage) = self.problems.object(value, "storage", &["store", "path"])
        {
            let store = match storage.get("store").filter(|v| !v.is_null()) {
                None => "memory",
                Some(Value::String(store)) => store.as_str(),
                Some(_) => {
                    self.problems.push("storage.store", "must be a string");
                    "memory"
                }
            };
            if !["memory", "sqlite"].contains(&store) {
                self.problems.push(
                    "storage.store",
                    format!("unknown store `{store}`; expected memory or sqlite"),
                );
            }
            let path = storage
                .get("path")
                .and_then(Value::as_str)
                .map(str::to_owned);
            runtime.storage = Some(StorageConfig {
                store: store.to_owned(),
                path,
            });
        }
        runtime
    }
}
