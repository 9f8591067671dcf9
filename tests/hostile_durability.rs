//! Durability under failure (issue 10): a panicking component fails only its case, a run
//! that keeps killing its process is quarantined, a run rides out the database going
//! away, leases are fenced per run, and SIGTERM is bounded even with SSE clients.

mod common;

use std::collections::HashMap;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};
use themis::components::{
    ComponentError, GenerateRequest, Generation, Generator, Metric, MetricScore, Registry,
};
use themis::model::{Case, Usage};

use common::{
    CallCounter, TestDatabase, TestServer, all_results, events_of, post_run, read_sse,
    registry_with_counter, spawn_server, wait_finished, wait_until,
};

/// Kills the child on every path out of the test.
struct ChildGuard(Child);

impl ChildGuard {
    fn spawn(database: &str, extra: &[&str]) -> (ChildGuard, String) {
        let (child, base) = spawn_server(database, extra);
        (ChildGuard(child), base)
    }

    fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    /// Waits for the process to exit, up to `limit`.
    fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    fn terminate(&self) {
        // SAFETY: signalling a child process we spawned and have not reaped yet.
        let sent = unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        assert_eq!(sent, 0, "SIGTERM could not be sent");
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Drops the test database on every path out of the test.
struct DatabaseGuard(Option<TestDatabase>);

impl DatabaseGuard {
    async fn create() -> DatabaseGuard {
        DatabaseGuard(Some(TestDatabase::create().await))
    }

    fn url(&self) -> String {
        self.0.as_ref().map(|d| d.url.clone()).unwrap_or_default()
    }
}

impl Drop for DatabaseGuard {
    fn drop(&mut self) {
        if let Some(database) = self.0.take() {
            // Drop runs inside the test's runtime: drop the database from a thread of its own.
            let _ = std::thread::spawn(move || {
                if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    runtime.block_on(database.drop_database());
                }
            })
            .join();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Panics are contained to their case.

/// `test/panicky`: panics when `input.panic` is true, else answers `input.answer`.
struct PanickyGenerator;

#[async_trait]
impl Generator for PanickyGenerator {
    async fn generate(&self, request: GenerateRequest<'_>) -> Result<Generation, ComponentError> {
        if request.case.input.get("panic") == Some(&Value::Bool(true)) {
            panic!("generator blew up on {}", request.case.case_id);
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
            usage: Usage::default(),
        })
    }
}

/// `test/panicky_metric`: panics when the parsed answer is `"boom"`.
struct PanickyMetric;

impl Metric for PanickyMetric {
    fn score(&self, parsed: &Value, _case: &Case) -> Result<MetricScore, ComponentError> {
        if parsed == &json!("boom") {
            panic!("metric blew up");
        }
        Ok(MetricScore::of(1.0))
    }
}

fn panicky_registry() -> Registry {
    let mut registry = Registry::builtin();
    registry.register_generator("test/panicky", "1", |_| Arc::new(PanickyGenerator));
    registry.register_metric("test/panicky_metric", "1", |_| Arc::new(PanickyMetric));
    registry
}

#[tokio::test]
async fn a_panicking_component_fails_its_case_and_the_run_goes_on() {
    let server = TestServer::start("memory", panicky_registry()).await;
    let cases: Vec<Value> = (0..20)
        .map(|i| {
            let input = match i % 10 {
                3 => json!({"panic": true}),
                7 => json!({"answer": "boom"}),
                _ => json!({"answer": "fine"}),
            };
            json!({"case_id": format!("c{i}"), "input": input})
        })
        .collect();
    let body = json!({
        "generation": {"generator": "test/panicky"},
        "evaluation": {"metrics": ["test/panicky_metric"]},
        "datasets": [{"dataset_id": "d", "cases": cases}],
        "seeds": [1],
        "concurrency": 4
    });
    let run_id = post_run(&server.client, &server.base, &body).await;
    let run = server.wait_finished(&run_id).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(
        run["progress"],
        json!({"total": 20, "completed": 16, "failed": 4})
    );

    let results = all_results(&server.client, &server.base, &run_id).await;
    let failed: HashMap<&str, &Value> = results
        .iter()
        .filter(|r| r["status"] == "failed")
        .map(|r| (r["case_id"].as_str().unwrap(), &r["error"]))
        .collect();
    assert_eq!(failed.len(), 4);
    for case in ["c3", "c13"] {
        assert_eq!(failed[case]["stage"], "generation", "{}", failed[case]);
        assert_eq!(
            failed[case]["message"],
            format!("panicked: generator blew up on {case}")
        );
    }
    for case in ["c7", "c17"] {
        assert_eq!(failed[case]["stage"], "scoring", "{}", failed[case]);
        assert_eq!(failed[case]["message"], "panicked: metric blew up");
    }

    // The server is unharmed: the next run executes normally.
    let calm = json!({
        "generation": {"generator": "test/panicky"},
        "evaluation": {"metrics": ["builtin/exact_match"]},
        "datasets": [{"dataset_id": "d", "cases": [{"case_id": "x", "input": {"answer": "1"}, "expected_output": "1"}]}],
        "seeds": [2]
    });
    let run_id = post_run(&server.client, &server.base, &calm).await;
    let run = server.wait_finished(&run_id).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["progress"]["completed"], 1);
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// A run that keeps killing its process is quarantined; graceful restarts do not count.

fn slow_run(cases: usize, delay_ms: u64, seed: u64) -> Value {
    let cases: Vec<Value> = (0..cases)
        .map(|i| json!({"case_id": format!("c{i}"), "input": {"question": format!("{i} + 1")}, "expected_output": {"answer": (i + 1).to_string()}}))
        .collect();
    json!({
        "generation": {"generator": {"name": "builtin/demo_generator", "params": {"delay_ms": delay_ms}}},
        "evaluation": {"metrics": ["builtin/exact_match"]},
        "datasets": [{"dataset_id": "d", "cases": cases}],
        "seeds": [seed],
        "concurrency": 2
    })
}

fn completed(run: &Value) -> u64 {
    run["progress"]["completed"].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn a_run_that_keeps_killing_its_process_is_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("quarantine.db").display());
    let client = reqwest::Client::new();
    let (mut server, mut base) = ChildGuard::spawn(&database, &[]);
    let run_id = post_run(&client, &base, &slow_run(2_000, 30, 5)).await;
    let mut done = 0;

    // Six graceful restarts mid-run (more than the quarantine limit): none counts.
    for _ in 0..6 {
        let run = wait_until(&client, &base, &run_id, Duration::from_secs(30), |run| {
            completed(run) > done
        })
        .await;
        done = completed(&run);
        server.terminate();
        assert!(
            server.wait_exit(Duration::from_secs(15)).is_some(),
            "SIGTERM did not stop the server"
        );
        (server, base) = ChildGuard::spawn(&database, &[]);
    }

    // Five executions that end with the process killed (as a stack overflow would)...
    for _ in 0..5 {
        let run = wait_until(&client, &base, &run_id, Duration::from_secs(30), |run| {
            completed(run) > done
        })
        .await;
        done = completed(&run);
        assert_eq!(run["status"], "running", "{run}");
        server.kill();
        (server, base) = ChildGuard::spawn(&database, &[]);
    }
    // ...and the next start quarantines the run instead of executing it again.
    let run = wait_finished(&client, &base, &run_id).await;
    assert_eq!(run["status"], "failed", "{run}");
    let error = run["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("quarantined: execution was interrupted 5 times"),
        "{error}"
    );
    assert!(completed(&run) < 2_000, "{run}");
    let events = events_of(&client, &base, &run_id).await;
    let last = events.last().unwrap();
    assert_eq!(last.event, "run_failed");
    assert_eq!(last.data["error_message"], error);
    drop(server);
}

