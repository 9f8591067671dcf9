//! Code-execution helpers: registries with the local bubblewrap sandbox, runs whose
//! "model" answers with the code the case carries, and reading scores back.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::Json;
use axum::extract::State;
use axum::routing::post;
use serde_json::{Value, json};
use themis::components::{ComponentError, GenerateRequest, Generation, Generator, Registry};
use themis::egress::Egress;
use themis::model::Usage;
use themis::sandbox::{Limits, SandboxConfig, SandboxSpec, Sandboxes};

/// Tight limits so hostile programs end in seconds.
pub fn test_limits() -> Limits {
    Limits {
        wall: Duration::from_secs(4),
        cpu: Duration::from_secs(2),
        memory_bytes: 256 * 1024 * 1024,
        processes: 16,
        output_bytes: 64 * 1024,
        file_bytes: 4 * 1024 * 1024,
    }
}

/// The local sandbox (`--sandbox local`) with [`test_limits`] and `pool` slots.
pub fn local_sandboxes(pool: usize) -> Sandboxes {
    sandboxes(vec![SandboxSpec::local()], pool)
}

pub fn sandboxes(specs: Vec<SandboxSpec>, pool: usize) -> Sandboxes {
    let config = SandboxConfig {
        specs,
        pool_size: pool,
        limits: test_limits(),
        ..Default::default()
    };
    Sandboxes::build(&config, Arc::new(Egress::local())).expect("sandboxes")
}

/// The builtin registry with `sandboxes` and `test/samples`, a generator answering
/// candidate `i` with `input.samples[i % len]`.
pub fn registry_with(sandboxes: Sandboxes) -> Registry {
    let mut registry = Registry::builtin().with_sandboxes(Arc::new(sandboxes));
    registry.register_generator("test/samples", "1", |_| Arc::new(Samples));
    registry
}

struct Samples;

#[async_trait]
impl Generator for Samples {
    async fn generate(&self, request: GenerateRequest<'_>) -> Result<Generation, ComponentError> {
        let input = &request.case.input;
        let output = match input.get("samples").and_then(Value::as_array) {
            Some(samples) if !samples.is_empty() => {
                samples[request.candidate_index as usize % samples.len()].clone()
            }
            _ => Value::Null,
        };
        Ok(Generation {
            output,
            raw_text: None,
            finish_reason: Some("stop".into()),
            usage: Usage::default(),
            transcript: None,
        })
    }
}

/// A run of `cases` (`{"case_id", "input": {"code"}, "expected_output"}`) whose "model"
/// answers with the case's `code`, scored by `metric` (`{"name", "params"}`).
pub fn code_run(dataset_id: &str, cases: Vec<Value>, metric: Value) -> Value {
    json!({
        "generation": {"generator": {"name": "builtin/echo", "params": {"field": "code"}}},
        "evaluation": {"metrics": [metric]},
        "datasets": [{"dataset_id": dataset_id, "cases": cases}],
        "seeds": [1],
        "concurrency": 8
    })
}

/// `builtin/code_execution` on the local sandbox.
pub fn local_metric(language: &str) -> Value {
    json!({"name": "builtin/code_execution", "params": {"sandbox": "local", "language": language}})
}

/// The score record of `metric_id` in a case record.
pub fn score<'r>(record: &'r Value, metric_id: &str) -> &'r Value {
    record["scores"]
        .as_array()
        .and_then(|scores| scores.iter().find(|s| s["metric_id"] == metric_id))
        .unwrap_or_else(|| panic!("no {metric_id} score in {record:#}"))
}

/// The case record of `case_id`.
pub fn case<'r>(results: &'r [Value], case_id: &str) -> &'r Value {
    results
        .iter()
        .find(|r| r["case_id"] == case_id)
        .unwrap_or_else(|| panic!("no case {case_id} in the results"))
}

/// A fake remote sandbox service (Piston, SandboxFusion) at `path`: records each request body and answers with `respond`.
pub struct Fake {
    pub url: String,
    pub requests: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn fake_remote_sandbox(path: &'static str, respond: fn(&Value) -> Value) -> Fake {
    type Shared = (Arc<Mutex<Vec<Value>>>, fn(&Value) -> Value);
    async fn handle(
        State((requests, respond)): State<Shared>,
        Json(body): Json<Value>,
    ) -> Json<Value> {
        requests.lock().unwrap().push(body.clone());
        Json(respond(&body))
    }
    let requests = Arc::new(Mutex::new(Vec::new()));
    let app = axum::Router::new()
        .route(path, post(handle))
        .with_state((requests.clone(), respond));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Fake {
        url,
        requests,
        task,
    }
}
