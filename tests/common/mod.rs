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
            output: request
                .case
                .input
                .get("answer")
                .cloned()
                .unwrap_or(Value::Null),
            raw_text: None,
            finish_reason: None,
            usage: Usage {
                requests: 1,
                prompt_tokens: 2,
                completion_tokens: 1,
                ..Usage::default()
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

/// A server started in-process on an ephemeral port.
pub struct TestServer {
    pub base: String,
    pub client: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub async fn start(database_url: &str, registry: Registry) -> TestServer {
        Self::start_with(database_url, registry, Vec::new()).await
    }

    pub async fn start_with(
        database_url: &str,
        registry: Registry,
        api_keys: Vec<String>,
    ) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut config = themis::server::ServerConfig {
            database_url: database_url.to_owned(),
            ..Default::default()
        };
        config.api.api_keys = api_keys;
        config.api.max_body_bytes = 1024 * 1024;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            themis::server::launch_with_registry(config, Arc::new(registry), listener, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        TestServer {
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.client.get(self.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Polls a run until it reaches a terminal status.
    pub async fn wait_finished(&self, run_id: &str) -> Value {
        wait_finished(&self.client, &self.base, run_id).await
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.handle.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), handle).await;
        }
    }
}

pub async fn wait_finished(client: &reqwest::Client, base: &str, run_id: &str) -> Value {
    wait_until(client, base, run_id, Duration::from_secs(120), |run| {
        ["completed", "failed", "cancelled"].contains(&run["status"].as_str().unwrap_or(""))
    })
    .await
}

/// Polls `GET /runs/{id}` until `done` holds for the run, failing the test after `limit`.
pub async fn wait_until(
    client: &reqwest::Client,
    base: &str,
    run_id: &str,
    limit: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let run: Value = client
            .get(format!("{base}/runs/{run_id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if done(&run) {
            return run;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "run {run_id} did not get there: {run}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One server-sent event as received.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub id: u64,
    pub event: String,
    pub data: Value,
}

/// Reads an SSE stream to its end (or until `max` events), parsing `id`, `event`, `data`.
pub async fn read_sse(response: reqwest::Response, max: usize) -> Vec<SseEvent> {
    use futures::StreamExt;
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let mut events = Vec::new();
    while let Some(chunk) = stream.next().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let (mut id, mut event, mut data) = (None, None, None);
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse().ok();
                } else if let Some(v) = line.strip_prefix("event:") {
                    event = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data = serde_json::from_str(v.trim()).ok();
                }
            }
            if let (Some(id), Some(event), Some(data)) = (id, event, data) {
                events.push(SseEvent { id, event, data });
                if events.len() >= max {
                    return events;
                }
            }
        }
    }
    events
}

/// The Postgres server tests use (`THEMIS_TEST_POSTGRES_URL`, default the local one).
pub fn postgres_base_url() -> String {
    std::env::var("THEMIS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A fresh database for one test, dropped by [`TestDatabase::drop_database`].
pub struct TestDatabase {
    pub url: String,
    name: String,
}

impl TestDatabase {
    /// Creates `themis_test_<random>` on the test server. Fails loudly when Postgres is
    /// unreachable: Postgres tests never skip silently.
    pub async fn create() -> TestDatabase {
        use sqlx::Connection;
        let base = postgres_base_url();
        let mut admin = sqlx::PgConnection::connect(&base)
            .await
            .unwrap_or_else(|e| panic!("Postgres at {base} is required for this test: {e}"));
        let name = format!("themis_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        let url = match base.rfind('/') {
            Some(slash)
                if base[..slash].contains("://") && slash > base.find("://").unwrap() + 2 =>
            {
                format!("{}/{name}", &base[..slash])
            }
            _ => format!("{base}/{name}"),
        };
        TestDatabase { url, name }
    }

    pub async fn drop_database(self) {
        use sqlx::Connection;
        if let Ok(mut admin) = sqlx::PgConnection::connect(&postgres_base_url()).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .execute(&mut admin)
            .await;
        }
    }
}

/// Starts the real `themis serve` binary on an ephemeral port with `extra` flags and
/// returns the process and its base URL (read from its first JSON log lines).
pub fn spawn_server(database_url: &str, extra: &[&str]) -> (std::process::Child, String) {
    spawn_server_with_env(database_url, extra, &[])
}

/// `POST {base}/runs` with `body`; returns the run id.
pub async fn post_run(client: &reqwest::Client, base: &str, body: &Value) -> String {
    let created: Value = client
        .post(format!("{base}/runs"))
        .json(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    created["run_id"].as_str().unwrap().to_owned()
}

/// Every event of a finished run, read from its SSE stream to the end.
pub async fn events_of(client: &reqwest::Client, base: &str, run_id: &str) -> Vec<SseEvent> {
    let response = client
        .get(format!("{base}/runs/{run_id}/events"))
        .send()
        .await
        .unwrap();
    read_sse(response, usize::MAX).await
}

/// Every case record of a run, following `next_cursor` through the pages.
pub async fn all_results(client: &reqwest::Client, base: &str, run_id: &str) -> Vec<Value> {
    let mut results = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{base}/runs/{run_id}/results?limit=1000&cursor={c}"),
            None => format!("{base}/runs/{run_id}/results?limit=1000"),
        };
        let page: Value = client.get(url).send().await.unwrap().json().await.unwrap();
        results.extend(page["results"].as_array().unwrap().clone());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return results,
        }
    }
}

/// [`spawn_server`] with extra environment variables for the child, and without the
/// `OTEL_*` settings of the test's own environment (so only the flags given count).
pub fn spawn_server_with_env(
    database_url: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut command = Command::new(env!("CARGO_BIN_EXE_themis"));
    command
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--database",
            database_url,
            "--log-format",
            "json",
        ])
        .args(extra)
        .env_remove("THEMIS_API_KEYS")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("OTEL_") {
            command.env_remove(name);
        }
    }
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("start themis serve");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines.next().expect("server exited before serving").unwrap();
        if let Ok(log) = serde_json::from_str::<Value>(&line)
            && log["fields"]["message"] == "themis is serving"
        {
            break log["fields"]["addr"].as_str().unwrap().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, format!("http://{addr}"))
}
