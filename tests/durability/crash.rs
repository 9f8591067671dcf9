//! kill -9 of the real server binary mid-run: after a restart the run completes with
//! every case generated exactly once and a gapless event sequence.

use crate::common;

use std::time::Duration;

use serde_json::{Value, json};

use common::{all_results, events_of, post_run, spawn_server, wait_finished, wait_until};

#[tokio::test]
async fn kill_9_mid_run_then_restart_completes_every_case_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("crash.db").display());
    let cases: Vec<Value> = (0..400)
        .map(|i| json!({"case_id": format!("c{i}"), "input": {"question": format!("{i} + 1")}, "expected_output": {"answer": (i + 1).to_string()}}))
        .collect();
    let body = json!({
        "generation": {"generator": {"name": "builtin/demo_generator", "params": {"delay_ms": 20}}},
        "evaluation": {"metrics": ["builtin/exact_match"]},
        "datasets": [{"dataset_id": "d", "cases": cases}],
        "seeds": [3],
        "concurrency": 4
    });
    let client = reqwest::Client::new();

    let (mut first, base) = spawn_server(&database, &[]);
    let run_id = post_run(&client, &base, &body).await;
    // Let part of the run finish, then kill without any chance to clean up.
    let run = wait_until(&client, &base, &run_id, Duration::from_secs(30), |run| {
        run["progress"]["completed"].as_u64().unwrap_or(0) >= 60
    })
    .await;
    assert_eq!(run["status"], "running");
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();

    let (mut second, base) = spawn_server(&database, &[]);
    let run = wait_finished(&client, &base, &run_id).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(
        run["progress"],
        json!({"total": 400, "completed": 400, "failed": 0})
    );
    assert_eq!(run["aggregates"]["builtin/exact_match"]["mean"], 1.0);
    assert_eq!(run["aggregates"]["builtin/exact_match"]["n"], 400);

    let events = events_of(&client, &base, &run_id).await;
    let ids: Vec<u64> = events.iter().map(|e| e.id).collect();
    assert_eq!(
        ids,
        (1..=events.len() as u64).collect::<Vec<_>>(),
        "gapless, no repeats"
    );
    let mut generated = std::collections::HashMap::<String, usize>::new();
    for event in events.iter().filter(|e| e.event == "generation_completed") {
        *generated
            .entry(event.data["case_id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(generated.len(), 400);
    assert!(
        generated.values().all(|n| *n == 1),
        "a case was generated twice in the record"
    );
    let started: Vec<&common::SseEvent> =
        events.iter().filter(|e| e.event == "run_started").collect();
    assert_eq!(started.len(), 2);
    assert_eq!(started[1].data["resumed"], true);

    let results = all_results(&client, &base, &run_id).await;
    assert_eq!(results.len(), 400, "exactly one stored result per case");
    second.kill().unwrap();
    second.wait().unwrap();
}
