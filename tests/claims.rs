//! README claims that had no test (issue 18): the failure policy's threshold and its
//! overshoot, CLI exit code 1, `/readyz` 503, SIGTERM of the real binary releasing its
//! leases, and the claims table (docs/design/claims.md) naming tests that exist.

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use themis::components::{ComponentError, GenerateRequest, Generation, Generator, Registry};
use themis::engine::{Engine, EngineConfig, RunControl};
use themis::model::{EventKind, RunStatus, Usage};
use themis::observe::Observers;
use themis::store::{CaseQuery, MemoryStore};

use common::{TestDatabase, TestServer, post_run, spawn_server, wait_until};

/// `test/fail_flagged`: fails the cases whose input has `"fail": true`, answers the rest.
struct FailFlagged;

#[async_trait]
impl Generator for FailFlagged {
    async fn generate(&self, request: GenerateRequest<'_>) -> Result<Generation, ComponentError> {
        if request.case.input["fail"] == true {
            return Err(ComponentError::new("flagged to fail"));
        }
        Ok(Generation {
            output: json!("ok"),
            raw_text: None,
            finish_reason: None,
            usage: Usage::default(),
        })
    }
}

fn engine(max_batch: usize) -> Engine {
    let mut registry = Registry::builtin();
    registry.register_generator("test/fail_flagged", "1", |_| Arc::new(FailFlagged));
    Engine::new(
        Arc::new(MemoryStore::new()),
        Arc::new(registry),
        EngineConfig {
            max_batch,
            ..EngineConfig::default()
        },
    )
}

fn flagged(fails: impl Fn(usize) -> bool, n: usize, concurrency: usize, policy: Value) -> Value {
    let cases: Vec<Value> = (0..n)
        .map(|i| json!({"case_id": format!("c{i}"), "input": {"fail": fails(i)}, "expected_output": "ok"}))
        .collect();
    json!({
        "generation": {"generator": "test/fail_flagged"},
        "evaluation": {"metrics": ["builtin/exact_match"]},
        "datasets": [{"dataset_id": "d", "cases": cases}],
        "seeds": [1],
        "concurrency": concurrency,
        "failure_policy": policy
    })
}

async fn execute(engine: &Engine, body: &Value) -> themis::model::RunRecord {
    let request = engine.parse(body).expect("valid definition");
    let run_id = engine.submit(&request).await.unwrap().into_record().run_id;
    engine
        .execute(&run_id, Observers::default(), RunControl::default())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_failure_ratio_of_exactly_max_ratio_does_not_stop_the_run() {
    let engine = engine(8);
    // One at a time, ok then failed: the ratio reaches 0.5 and never exceeds it.
    let body = flagged(
        |i| i % 2 == 1,
        40,
        1,
        json!({"max_ratio": 0.5, "min_cases": 2}),
    );
    let record = execute(&engine, &body).await;
    assert_eq!(record.status, RunStatus::Completed, "{:?}", record.error);
    assert_eq!(
        (record.progress.completed, record.progress.failed),
        (20, 20)
    );
}

#[tokio::test]
async fn the_failure_policy_stops_within_one_commit_batch_and_reports_the_final_counts() {
    const MAX_BATCH: usize = 8;
    const MIN_CASES: u64 = 10;
    let engine = engine(MAX_BATCH);
    let body = flagged(
        |_| true,
        2_000,
        4,
        json!({"max_ratio": 0.5, "min_cases": MIN_CASES}),
    );
    let record = execute(&engine, &body).await;
    assert_eq!(record.status, RunStatus::Failed);
    let progress = record.progress;
    // The commit that first has min_cases finished trips it: at most one batch more.
    assert!(
        (MIN_CASES..MIN_CASES + MAX_BATCH as u64).contains(&progress.finished()),
        "{progress:?}"
    );
    let error = record.error.clone().unwrap();
    assert_eq!(
        error,
        format!(
            "stopped: {} of {} finished cases failed, more than the failure policy's max_ratio 0.5",
            progress.failed,
            progress.finished()
        )
    );
    let stored = engine
        .store()
        .case_records(
            &record.run_id,
            &CaseQuery {
                limit: 10_000,
                ..CaseQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(stored.len() as u64, progress.finished());
    let events = engine
        .store()
        .events_after(&record.run_id, 0, 100_000)
        .await
        .unwrap();
    match &events.last().unwrap().kind {
        EventKind::RunFailed {
            error_message,
            progress: reported,
        } => {
            assert_eq!(error_message, &error);
            assert_eq!(reported, &progress);
        }
        other => panic!("last event {other:?}"),
    }
}

#[test]
fn the_cli_exits_1_when_the_run_fails() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("failing.json");
    let cases: Vec<Value> = (0..20)
        .map(|i| json!({"case_id": format!("c{i}"), "input": {"question": "1+1"}, "expected_output": {"answer": "2"}}))
        .collect();
    let body = json!({
        "generation": {"generator": {"name": "builtin/demo_generator", "params": {"error_rate": 1.0}}},
        "evaluation": {"metrics": ["builtin/exact_match"]},
        "datasets": [{"dataset_id": "d", "cases": cases}],
        "seeds": [1],
        "failure_policy": {"max_ratio": 0.1, "min_cases": 5}
    });
    std::fs::write(&file, body.to_string()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_themis"))
        .args(["run", file.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    assert_eq!(result["status"], "failed", "{result}");
}

#[tokio::test]
async fn readyz_is_503_when_the_database_is_gone_and_healthz_stays_200() {
    let database = TestDatabase::create().await;
    let server = TestServer::start(&database.url, Registry::builtin()).await;
    let (status, ready) = server.get("/readyz").await;
    assert_eq!((status, ready["status"].as_str()), (200, Some("ready")));

    let name = database.url.rsplit('/').next().unwrap().to_owned();
    database.drop_database().await;
    let (status, body) = server.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    assert!(
        !body.to_string().contains(&name),
        "no internals in the answer: {body}"
    );
    assert_eq!(server.get("/healthz").await.0, 200);
    server.stop().await;
}

#[tokio::test]
async fn sigterm_stops_the_real_binary_and_releases_its_leases_at_once() {
    let database = TestDatabase::create().await;
    // Leases far longer than the test: only an explicit release lets B continue soon.
    let slow_takeover = &["--lease-ms", "120000", "--poll-interval-ms", "200"];
    let (mut a, base_a) = spawn_server(&database.url, slow_takeover);
    let client = reqwest::Client::new();
    let cases: Vec<Value> = (0..600)
        .map(|i| json!({"case_id": format!("c{i}"), "input": {"question": format!("{i} + 0")}, "expected_output": {"answer": i.to_string()}}))
        .collect();
    let body = json!({
        "generation": {"generator": {"name": "builtin/demo_generator", "params": {"delay_ms": 20}}},
        "evaluation": {"metrics": ["builtin/exact_match"]},
        "datasets": [{"dataset_id": "d", "cases": cases}],
        "seeds": [5],
        "concurrency": 8
    });
    let run_id = post_run(&client, &base_a, &body).await;
    wait_until(&client, &base_a, &run_id, Duration::from_secs(60), |run| {
        run["progress"]["completed"].as_u64().unwrap_or(0) >= 50
    })
    .await;
    let status = a.terminate(Duration::from_secs(30));
    assert!(status.success(), "graceful exit: {status}");

    let (_b, base_b) = spawn_server(&database.url, slow_takeover);
    let run = wait_until(&client, &base_b, &run_id, Duration::from_secs(60), |run| {
        run["status"] == "completed"
    })
    .await;
    assert_eq!(
        run["progress"],
        json!({"total": 600, "completed": 600, "failed": 0})
    );
}

#[tokio::test]
async fn the_server_process_runs_without_transparent_huge_pages() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}/t.db", dir.path().display());
    let (server, _base) = spawn_server(&database, &[]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.id())).unwrap();
    let thp = status
        .lines()
        .find_map(|line| line.strip_prefix("THP_enabled:"))
        .unwrap_or_else(|| panic!("no THP_enabled line in\n{status}"));
    // 2 MiB zeroed on every fault into memory mimalloc purged (docs/performance.md).
    assert_eq!(thp.trim(), "0", "THP_enabled of themis serve");
}

#[test]
fn readme_claims_name_tests_that_exist() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/docs/design/claims.md")).unwrap();
    let start = readme
        .find("<!-- claims:start -->")
        .expect("claims table start");
    let end = readme
        .find("<!-- claims:end -->")
        .expect("claims table end");
    let table = &readme[start..end];
    let mut rows = 0;
    let rows_of_claims = table
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| claim") && !l.starts_with("| ---"));
    for row in rows_of_claims {
        let Some(tests) = row.rsplit('|').nth(1) else {
            panic!("malformed row {row}");
        };
        let named: Vec<&str> = tests.split('`').filter(|t| t.contains("::")).collect();
        assert!(!named.is_empty(), "a claim without a test: {row}");
        for test in named {
            let (file, name) = test.split_once("::").unwrap();
            let source = std::fs::read_to_string(format!("{root}/tests/{file}.rs"))
                .unwrap_or_else(|e| panic!("{test}: tests/{file}.rs: {e}"));
            assert!(
                source.contains(&format!("fn {name}()")),
                "{test} is named in docs/design/claims.md but does not exist"
            );
        }
        rows += 1;
    }
    assert!(rows >= 20, "{rows} rows");
}
