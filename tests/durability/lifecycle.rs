//! The server process's life: SIGTERM stops the real binary and releases its leases at
//! once, `/readyz` is 503 without its database, one process per SQLite file, and no
//! transparent huge pages.

use crate::common;

use common::{TestDatabase, TestServer, post_run, spawn_server, try_spawn_server, wait_until};

use serde_json::{Value, json};

use std::time::Duration;

use themis::components::Registry;

fn demo(cases: usize, seeds: Value) -> Value {
    let cases: Vec<Value> = (0..cases)
        .map(|i| json!({"case_id": format!("c{i}"), "input": {"question": format!("{i} + 1")}, "expected_output": {"answer": (i + 1).to_string()}}))
        .collect();
    json!({
        "generation": {"generator": "builtin/demo_generator", "candidate_policy": {"num_samples": 2}},
        "evaluation": {"metrics": ["builtin/exact_match"]},
        "datasets": [{"dataset_id": "d", "cases": cases}],
        "seeds": seeds
    })
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

#[tokio::test]
async fn a_second_process_on_the_same_sqlite_file_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("one.db");
    let database = format!("sqlite://{}", file.display());
    let (first, base) = spawn_server(&database, &[]);

    let refused = try_spawn_server(&database, &[], &[])
        .err()
        .expect("a second themis serve on the same file must not start");
    assert!(refused.contains("in use by another process"), "{refused}");
    assert!(refused.contains("one.db"), "{refused}");

    // The CLI too, with the same file given another way.
    let definition = dir.path().join("run.json");
    std::fs::write(&definition, demo(1, json!([1])).to_string()).unwrap();
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_themis"))
        .args(["run", definition.to_str().unwrap(), "--database"])
        .arg(file.to_str().unwrap())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&cli.stderr);
    assert_eq!(cli.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("in use by another process"), "{stderr}");

    // The first one still serves; once it is gone the file opens again.
    let health = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    drop(first);
    let (_again, base) = spawn_server(&database, &[]);
    assert_eq!(
        reqwest::get(format!("{base}/healthz"))
            .await
            .unwrap()
            .status(),
        200
    );
}
