//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use themis::components::{ComponentError, GenerateRequest, Generation, Generator, Registry};
use themis::model::Usage;

/// Counts generator calls per case id, shared with the test.
#[derive(Clone, Default)]
pub struct CallCounter(Arc<Mutex<HashMap<String, usize>>>);

impl CallCounter {
    pub fn total(&self) -> usize {
        self.0.lock().unwrap().values().sum()
    }

    pub fn per_case(&self) -> HashMap<String, usize> {
        self.0.lock().unwrap().clone()
    }
}

/// `test/counting`: answers `input.answer` after `delay_ms`, counting every call.
struct CountingGenerator {
    calls: CallCounter,
    delay: Duration,
}

#[async_trait]
impl Generator for CountingGenerator {
    async fn generate(&self, request: GenerateRequest<'_>) -> Result<Generation, ComponentError> {
        *self
            .calls
            .0
            .lock()
            .unwrap()
            .entry(request.case.case_id.clone())
            .or_default() += 1;
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        Ok(Generation {
            output: request.case.input.get("answer").cloned().unwrap_or(Value::Null),
            raw_text: None,
            finish_reason: None,
            usage: Usage {
                requests: 1,
                prompt_tokens: 2,
                completion_tokens: 1,
            },
        })
    }
}

/// The builtin registry plus `test/counting` reporting to `calls`.
pub fn registry_with_counter(calls: &CallCounter) -> Registry {
    let mut registry = Registry::builtin();
    let calls = calls.clone();
    registry.register_generator("test/counting", "1", move |p| {
        Arc::new(CountingGenerator {
            calls: calls.clone(),
            delay: Duration::from_millis(p.u64_in("delay_ms", 0, 0, 60_000)),
        })
    });
    registry
}

/// The seed example of the documentation.
pub fn seed_example() -> Value {
    serde_json::from_str(include_str!("../../examples/observe.json")).unwrap()
}

/// `n` cases for `test/counting`: case `c{i}` answers `i % 3` and expects `i % 2`.
pub fn counting_experiment(n: usize, delay_ms: u64) -> Value {
    let cases: Vec<Value> = (0..n)
        .map(|i| json!({"case_id": format!("c{i}"), "input": {"answer": (i % 3).to_string()}, "expected_output": (i % 2).to_string()}))
        .collect();
    json!({
        "generation": {"generator": {"name": "test/counting", "params": {"delay_ms": delay_ms}}},
        "evaluation": {"metrics": ["builtin/exact_match"]},
        "datasets": [{"dataset_id": "d", "cases": cases}],
        "seeds": [1]
    })
}
