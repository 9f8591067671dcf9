//! Several `themis serve` processes on one Postgres database share the work.

use crate::common;

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};

use common::{
    TestDatabase, all_results, events_of, post_run, read_sse, spawn_server, wait_finished,
    wait_until,
};

const FAST_TAKEOVER: &[&str] = &["--lease-ms", "1500", "--poll-interval-ms", "200"];

fn experiment(cases: usize, delay_ms: u64, concurrency: u64) -> Value {
    let cases: Vec<Value> = (0..cases)
        .map(|i| json!({"case_id": format!("c{i}"), "input": {"question": format!("{i} * 2")}, "expected_output": {"answer": (i * 2).to_string()}}))
        .collect();
    json!({
        "generation": {"generator": {"name": "builtin/demo_generator", "params": {"delay_ms": delay_ms}}},
        "evaluation": {"metrics": ["builtin/exact_match"]},
        "datasets": [{"dataset_id": "d", "cases": cases}],
        "seeds": [11],
        "concurrency": concurrency
    })
}

#[tokio::test]
async fn two_instances_share_a_run_and_survive_one_being_killed() {
    let database = TestDatabase::create().await;
    let (mut a, base_a) = spawn_server(&database.url, FAST_TAKEOVER);
    let (mut b, base_b) = spawn_server(&database.url, FAST_TAKEOVER);
    let client = reqwest::Client::new();

    let run_id = post_run(&client, &base_a, &experiment(2_000, 40, 8)).await;

    // Follow the run live from B while it executes.
    let stream = client
        .get(format!("{base_b}/runs/{run_id}/events"))
        .send()
        .await
        .unwrap();
    let reader = tokio::spawn(read_sse(stream, usize::MAX));

    // Wait until both instances are working on it, and part of it is done.
    wait_until(&client, &base_b, &run_id, Duration::from_secs(60), |run| {
        run["progress"]["completed"].as_u64().unwrap_or(0) >= 400
    })
    .await;
    a.kill().unwrap(); // SIGKILL: A's chunks are taken over when their leases expire
    a.wait().unwrap();

    let run = wait_finished(&client, &base_b, &run_id).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(
        run["progress"],
        json!({"total": 2000, "completed": 2000, "failed": 0})
    );
    assert_eq!(run["aggregates"]["builtin/exact_match"]["n"], 2000);

    let results = all_results(&client, &base_b, &run_id).await;
    let indices: HashSet<u64> = results
        .iter()
        .map(|r| r["case_index"].as_u64().unwrap())
        .collect();
    assert_eq!(
        (results.len(), indices.len()),
        (2000, 2000),
        "exactly one stored result per case"
    );

    let events = tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .unwrap()
        .unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.id).collect();
    assert_eq!(
        seqs,
        (1..=events.len() as u64).collect::<Vec<_>>(),
        "B's stream is gapless"
    );
    assert_eq!(events.last().unwrap().event, "run_completed");
    assert_eq!(
        events
            .iter()
            .filter(|e| e.event == "case_completed")
            .count(),
        2000
    );
    let started: Vec<&str> = events
        .iter()
        .filter(|e| e.event == "run_started")
        .map(|e| e.event.as_str())
        .collect();
    assert_eq!(
        started.len(),
        1,
        "joining a running run does not restart it"
    );

    b.kill().unwrap();
    b.wait().unwrap();
    database.drop_database().await;
}

#[tokio::test]
async fn concurrent_identical_posts_on_two_instances_create_one_run() {
    let database = TestDatabase::create().await;
    let (mut a, base_a) = spawn_server(&database.url, FAST_TAKEOVER);
    let (mut b, base_b) = spawn_server(&database.url, FAST_TAKEOVER);
    let client = reqwest::Client::new();
    let body = experiment(20, 0, 4);

    let posts = (0..16).map(|i| {
        let client = client.clone();
        let url = format!("{}/runs", if i % 2 == 0 { &base_a } else { &base_b });
        let body = body.clone();
        tokio::spawn(async move {
            let response = client.post(url).json(&body).send().await.unwrap();
            let status = response.status().as_u16();
            let run: Value = response.json().await.unwrap();
            (status, run["run_id"].as_str().unwrap().to_owned())
        })
    });
    let mut outcomes = Vec::new();
    for post in posts {
        outcomes.push(post.await.unwrap());
    }
    let ids: HashSet<&str> = outcomes.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(
        outcomes.iter().filter(|(status, _)| *status == 202).count(),
        1,
        "{outcomes:?}"
    );
    assert!(
        outcomes
            .iter()
            .all(|(status, _)| *status == 202 || *status == 200)
    );

    let run_id = ids.into_iter().next().unwrap().to_owned();
    let run = wait_finished(&client, &base_a, &run_id).await;
    assert_eq!(run["status"], "completed");
    let listing: Value = client
        .get(format!("{base_b}/runs"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listing["runs"].as_array().unwrap().len(), 1);
    let events = events_of(&client, &base_b, &run_id).await;
    assert_eq!(
        events.iter().filter(|e| e.event == "run_started").count(),
        1
    );
    assert_eq!(
        events.iter().filter(|e| e.event == "run_completed").count(),
        1
    );

    // Cancel and rejudge work from either instance.
    let rejudge: Value = client
        .post(format!("{base_b}/runs/{run_id}/rejudge"))
        .json(&json!({"metrics": ["builtin/token_f1"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rejudged = wait_finished(&client, &base_a, rejudge["run_id"].as_str().unwrap()).await;
    assert_eq!(rejudged["status"], "completed");
    assert_eq!(rejudged["aggregates"]["builtin/token_f1"]["n"], 20);

    // Cancel through B a run A started executing: 202 (the executing instances stop it),
    // and the cases recorded before the cancel are kept.
    let slow_id = post_run(&client, &base_a, &experiment(500, 50, 2)).await;
    wait_until(&client, &base_a, &slow_id, Duration::from_secs(60), |run| {
        run["progress"]["completed"].as_u64().unwrap_or(0) >= 4
    })
    .await;
    let cancel = client
        .post(format!("{base_b}/runs/{slow_id}/cancel"))
        .send()
        .await
        .unwrap();
    let (status, requested) = common::json_of(cancel).await;
    assert_eq!(
        status, 202,
        "cancel of a run executing elsewhere: {requested}"
    );
    assert_eq!(requested["cancel_requested"], true);
    let cancelled = wait_finished(&client, &base_a, &slow_id).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    let kept = cancelled["progress"]["completed"].as_u64().unwrap();
    assert!((4..500).contains(&kept), "{cancelled}");
    let results = all_results(&client, &base_b, &slow_id).await;
    assert_eq!(results.len() as u64, kept, "the recorded cases are kept");
    let events = events_of(&client, &base_b, &slow_id).await;
    assert_eq!(events.last().unwrap().event, "run_cancelled");

    // Last-Event-ID resumes on the other instance: B streams exactly what follows.
    let middle = events.len() as u64 / 2;
    let resumed = client
        .get(format!("{base_b}/runs/{slow_id}/events"))
        .header("Last-Event-ID", middle.to_string())
        .send()
        .await
        .unwrap();
    let resumed = read_sse(resumed, usize::MAX).await;
    assert_eq!(
        resumed.iter().map(|e| e.id).collect::<Vec<_>>(),
        (middle + 1..=events.len() as u64).collect::<Vec<_>>()
    );
    assert_eq!(resumed, events[middle as usize..].to_vec());

    a.kill().unwrap();
    b.kill().unwrap();
    let _ = (a.wait(), b.wait());
    database.drop_database().await;
}

/// Two instances executing one budgeted run on Postgres draw on one account: together
/// they stop where the budget runs out, and every case either paid for was recorded.
#[tokio::test]
async fn two_instances_sharing_a_budgeted_run_stay_within_its_budget() {
    use common::fake_provider::{FakeProvider, Reply};
    // 10 prompt and 100 completion tokens an answer: $0.01001 a case at the prices below.
    let fake = FakeProvider::start_with(Duration::from_millis(30), |_, _| {
        Reply::Raw(axum::response::IntoResponse::into_response(axum::Json(
            json!({
                "choices": [{"index": 0, "message": {"content": "0"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 100}
            }),
        )))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let prices = dir.path().join("prices.json");
    std::fs::write(
        &prices,
        json!({"price": [{"provider": "fake", "model": "m",
                          "input_per_1m": 1.0, "output_per_1m": 100.0}]})
        .to_string(),
    )
    .unwrap();
    let provider = format!("name=fake,base_url={}", fake.base_url);
    let flags = [
        "--provider",
        &provider,
        "--prices",
        prices.to_str().unwrap(),
        "--poll-interval-ms",
        "100",
    ];
    let database = TestDatabase::create().await;
    let (_a, base_a) = spawn_server(&database.url, &flags);
    let (_b, _base_b) = spawn_server(&database.url, &flags);
    let client = reqwest::Client::new();
    let mut body = experiment(300, 0, 8);
    body["generation"]["generator"] = json!({"name": "openai/chat", "params": {
        "provider": "fake", "model": "m", "max_tokens": 100, "prompt": "{{ input.question }}"}});
    body["budget_usd"] = json!(1.0);
    let run_id = post_run(&client, &base_a, &body).await;
    let run = wait_finished(&client, &base_a, &run_id).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert!(
        run["error"]
            .as_str()
            .unwrap()
            .starts_with("budget exhausted"),
        "{run}"
    );
    let completed = run["progress"]["completed"].as_u64().unwrap();
    let spent = run["spend"]["cost_usd"].as_f64().unwrap();
    // The worst case of a case ($0.01 and its prompt) is a hair under what it costs, so
    // spend may pass the budget by at most that error over the cases it allowed.
    assert!(spent <= 1.0 + 0.0001, "spent {spent}");
    assert!(
        (90..=100).contains(&completed),
        "{completed} cases recorded"
    );
    assert_eq!(
        fake.hits() as u64,
        completed,
        "every case paid for was recorded"
    );
    assert_eq!(run["spend"].get("reserved_usd"), None, "{run}");
    database.drop_database().await;
}
