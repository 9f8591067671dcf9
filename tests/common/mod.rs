//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod app;
pub mod browser;
pub mod code;
pub mod fake_provider;
pub mod mcp;
pub mod otlp;
pub mod stream_proxy;
pub mod webhook;

pub use app::TestApp;

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
    /// A case whose input has `fail_calls: n` fails its first `n` calls (an outage).
    async fn generate(&self, request: GenerateRequest<'_>) -> Result<Generation, ComponentError> {
        let calls = {
            let mut counts = self.calls.0.lock().unwrap();
            let count = counts.entry(request.case.case_id.clone()).or_default();
            *count += 1;
            *count as u64
        };
        let failing = request.case.input.get("fail_calls").and_then(Value::as_u64);
        if failing.is_some_and(|n| calls <= n) {
            return Err(ComponentError::new("the provider is down"));
        }
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
            transcript: None,
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

/// A server started in-process on an ephemeral port (see [`TestApp`]).
pub struct TestServer {
    pub base: String,
    pub port: u16,
    pub client: reqwest::Client,
    /// The scheduler, when the test built the router itself ([`TestApp::serve_router`]).
    pub scheduler: Option<Arc<themis::engine::Scheduler>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    fn new(
        addr: std::net::SocketAddr,
        shutdown: tokio::sync::oneshot::Sender<()>,
        handle: tokio::task::JoinHandle<()>,
        scheduler: Option<Arc<themis::engine::Scheduler>>,
    ) -> TestServer {
        TestServer {
            base: format!("http://127.0.0.1:{}", addr.port()),
            port: addr.port(),
            client: reqwest::Client::new(),
            scheduler,
            shutdown: Some(shutdown),
            handle: Some(handle),
        }
    }

    /// `TestApp::new().database(url).registry(registry).serve()`.
    pub async fn start(database_url: &str, registry: Registry) -> TestServer {
        TestApp::new()
            .database(database_url)
            .registry(registry)
            .serve()
            .await
    }

    /// [`TestServer::start`] with API keys.
    pub async fn start_with(
        database_url: &str,
        registry: Registry,
        api_keys: Vec<String>,
    ) -> TestServer {
        TestApp::new()
            .database(database_url)
            .registry(registry)
            .api_keys(api_keys)
            .serve()
            .await
    }

    /// `TestApp::from_config(config).registry(registry).serve()`.
    pub async fn start_config(
        config: themis::server::ServerConfig,
        registry: Registry,
    ) -> TestServer {
        TestApp::from_config(config)
            .registry(registry)
            .serve()
            .await
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
        json_of(response).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.client.get(self.url(path)).send().await.unwrap();
        json_of(response).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        let response = self.client.delete(self.url(path)).send().await.unwrap();
        json_of(response).await
    }

    /// `PUT` of a raw body with its content type (dataset uploads).
    pub async fn put(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<String>,
    ) -> (u16, Value) {
        let response = self
            .client
            .put(self.url(path))
            .header("content-type", content_type)
            .body(body.into())
            .send()
            .await
            .unwrap();
        json_of(response).await
    }

    /// Polls a run until it reaches a terminal status.
    pub async fn wait_finished(&self, run_id: &str) -> Value {
        wait_finished(&self.client, &self.base, run_id).await
    }

    /// Shuts the server down gracefully; not being down within 10 s fails the test.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(10), handle)
                .await
                .expect("the server did not shut down within 10 s")
                .expect("the server task panicked");
        }
    }
}

impl Drop for TestServer {
    /// A test that fails before `stop` still takes its server (and its store) down.
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.abort();
        }
    }
}

/// Status and JSON body of a response. A body that is not JSON fails the test (with the
/// body in the message); only 204 and 304 may have none (`Null`).
pub async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("reading the response body");
    if text.is_empty() && (status == 204 || status == 304) {
        return (status, Value::Null);
    }
    match serde_json::from_str(&text) {
        Ok(value) => (status, value),
        Err(e) => panic!("HTTP {status}: body is not JSON ({e}): {text:?}"),
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
        let (status, run) = json_of(
            client
                .get(format!("{base}/runs/{run_id}"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200, "GET /runs/{run_id}: {run}");
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
/// Comment-only frames (keep-alives) are skipped; any other frame without a numeric
/// `id`, an `event` and JSON `data` fails the test.
pub async fn read_sse(response: reqwest::Response, max: usize) -> Vec<SseEvent> {
    use futures::StreamExt;
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let mut events = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("reading the event stream");
        buffer.push_str(std::str::from_utf8(&chunk).expect("event stream is not UTF-8"));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            if let Some(event) = parse_sse_frame(&block) {
                events.push(event);
                if events.len() >= max {
                    return events;
                }
            }
        }
    }
    assert!(
        buffer.trim().is_empty(),
        "event stream ended inside a frame: {buffer:?}"
    );
    events
}

/// One SSE frame; `None` for a frame of comments only, a failed test for a malformed one.
pub fn parse_sse_frame(block: &str) -> Option<SseEvent> {
    let (mut id, mut event, mut data) = (None, None, None);
    let mut fields = 0;
    for line in block
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with(':'))
    {
        fields += 1;
        if let Some(v) = line.strip_prefix("id:") {
            id = Some(
                v.trim()
                    .parse::<u64>()
                    .unwrap_or_else(|e| panic!("SSE id is not a number ({e}): {block:?}")),
            );
        } else if let Some(v) = line.strip_prefix("event:") {
            event = Some(v.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("data:") {
            data = Some(
                serde_json::from_str::<Value>(v.trim())
                    .unwrap_or_else(|e| panic!("SSE data is not JSON ({e}): {block:?}")),
            );
        } else {
            panic!("unexpected SSE line {line:?} in {block:?}");
        }
    }
    if fields == 0 {
        return None;
    }
    match (id, event, data) {
        (Some(id), Some(event), Some(data)) => Some(SseEvent { id, event, data }),
        _ => panic!("SSE frame without id, event and data: {block:?}"),
    }
}

/// The Postgres server tests use (`THEMIS_TEST_POSTGRES_URL`, default the local one).
pub fn postgres_base_url() -> String {
    std::env::var("THEMIS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A fresh database for one test, dropped when the value is dropped (on every path,
/// a failing test included) or explicitly by [`TestDatabase::drop_database`].
pub struct TestDatabase {
    pub url: String,
    name: String,
    dropped: bool,
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
        TestDatabase {
            url,
            name,
            dropped: false,
        }
    }

    pub async fn drop_database(mut self) {
        self.dropped = true;
        drop_named_database(self.name.clone())
            .await
            .unwrap_or_else(|e| panic!("dropping test database {}: {e}", self.name));
    }
}

async fn drop_named_database(name: String) -> Result<(), sqlx::Error> {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(&postgres_base_url()).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await?;
    Ok(())
}

impl Drop for TestDatabase {
    /// Drop cannot await: a thread with its own runtime drops the database (works inside
    /// and outside a Tokio runtime, and while unwinding from a failed assertion).
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let name = self.name.clone();
        let result = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?
                .block_on(drop_named_database(name))
                .map_err(|e| e.to_string())
        })
        .join();
        if let Ok(Err(e)) | Err(e) = result.map_err(|_| "panicked".to_owned()) {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}

/// Starts the real `themis serve` binary on an ephemeral port with `extra` flags and
/// returns the process and its base URL (read from its first JSON log lines).
pub fn spawn_server(database_url: &str, extra: &[&str]) -> (ServerProcess, String) {
    TestApp::new().database(database_url).process(extra, &[])
}

/// `POST {base}/runs` with `body`; returns the run id.
pub async fn post_run(client: &reqwest::Client, base: &str, body: &Value) -> String {
    let (status, created) = json_of(
        client
            .post(format!("{base}/runs"))
            .json(body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(
        status == 202 || status == 200,
        "POST /runs: {status} {created}"
    );
    created["run_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no run_id in {created}"))
        .to_owned()
}

/// Every event of a finished run, read from its SSE stream to the end.
pub async fn events_of(client: &reqwest::Client, base: &str, run_id: &str) -> Vec<SseEvent> {
    let response = client
        .get(format!("{base}/runs/{run_id}/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "GET /runs/{run_id}/events");
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
        let (status, page) = json_of(client.get(url).send().await.unwrap()).await;
        assert_eq!(status, 200, "results page: {page}");
        results.extend(
            page["results"]
                .as_array()
                .unwrap_or_else(|| panic!("no results array in {page}"))
                .clone(),
        );
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
) -> (ServerProcess, String) {
    TestApp::new().database(database_url).process(extra, env)
}

/// How long a spawned server may take to log that it is serving.
const STARTUP_LIMIT: Duration = Duration::from_secs(60);

/// Starts `themis serve`; `Err` holds what it wrote to stderr when it exited (or did not
/// serve within [`STARTUP_LIMIT`]) instead of serving.
pub fn try_spawn_server(
    database_url: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Result<(ServerProcess, String), String> {
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
    let stderr = child.stderr.take().expect("piped stderr");
    // A thread reads stderr for the process's whole life (a full pipe would block it)
    // and hands each line over, so the wait below can have a deadline.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            // After startup nobody listens: the lines are drained and dropped.
            let _ = tx.send(line);
        }
    });
    let deadline = std::time::Instant::now() + STARTUP_LIMIT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Ok(log) = serde_json::from_str::<Value>(&line)
                    && log["fields"]["message"] == "themis is serving"
                {
                    let addr = log["fields"]["addr"]
                        .as_str()
                        .unwrap_or_else(|| panic!("serving line without addr: {line}"))
                        .to_owned();
                    let process = ServerProcess {
                        child: Some(child),
                        logs: rx,
                    };
                    return Ok((process, format!("http://{addr}")));
                }
                seen.push(line);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait().expect("reaping themis serve");
                seen.push(format!("(exited: {status})"));
                return Err(seen.join("\n"));
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                seen.push(format!("(not serving after {STARTUP_LIMIT:?})"));
                return Err(seen.join("\n"));
            }
        }
    }
}

/// A spawned `themis serve`, killed (SIGKILL) and reaped when dropped, so a failing test
/// leaves no server behind. Derefs to the [`std::process::Child`].
pub struct ServerProcess {
    child: Option<std::process::Child>,
    /// Its stderr (JSON log lines) after the startup line.
    logs: std::sync::mpsc::Receiver<String>,
}

impl ServerProcess {
    /// The next log line (parsed) for which `wanted` holds; lines before it are consumed.
    /// Fails the test when none comes within `limit`.
    pub fn wait_for_log(&self, limit: Duration, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self
                .logs
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no such log line within {limit:?} ({e})"));
            let log: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
            if wanted(&log) {
                return log;
            }
        }
    }

    /// Sends SIGTERM and waits (at most `limit`, else the test fails) for the exit.
    pub fn terminate(&mut self, limit: Duration) -> std::process::ExitStatus {
        let child = self.child.as_mut().expect("process already reaped");
        let pid = i32::try_from(child.id()).expect("pid fits in i32");
        // SAFETY: kill(2) on the pid of a child we have not reaped yet.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "SIGTERM");
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().expect("waiting for the server") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "themis serve did not exit within {limit:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl std::ops::Deref for ServerProcess {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        self.child.as_ref().expect("process present")
    }
}

impl std::ops::DerefMut for ServerProcess {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.child.as_mut().expect("process present")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs each named `async fn(Arc<dyn Store>)` against every store: in memory, SQLite (a
/// fresh file) and Postgres (a fresh database). The store contract suites use it.
#[allow(unused_macros)]
macro_rules! contract {
    ($($test:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(std::sync::Arc::new(themis::store::MemoryStore::new())).await;
                }
            )*
        }

        mod sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = themis::store::SqliteStore::open(&dir.path().join("contract.db")).await.unwrap();
                    super::$test(std::sync::Arc::new(store)).await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test]
                async fn $test() {
                    let database = crate::common::TestDatabase::create().await;
                    let store = themis::store::PostgresStore::connect(&database.url).await.unwrap();
                    super::$test(std::sync::Arc::new(store)).await;
                    database.drop_database().await;
                }
            )*
        }
    };
}
