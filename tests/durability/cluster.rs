//! Limits that hold across every instance on one Postgres database: a run's
//! `concurrency`, and a declared provider's `max_concurrency` and `requests_per_minute`,
//! as a provider sees them (the fake records the most requests it had in flight).

use crate::common;

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};

use common::fake_provider::FakeProvider;
use common::{
    ServerProcess, TestDatabase, all_results, post_run, spawn_server, wait_finished, wait_until,
};

/// Short leases: a killed instance's chunks and shares run out within 3 s (long enough
/// for twelve debug servers on a small machine to renew them in time).
const FAST_TAKEOVER: &[&str] = &["--lease-ms", "3000", "--poll-interval-ms", "200"];

/// `cases` distinct provider-backed cases against the provider `fake`.
fn chat_run(cases: usize, concurrency: u64) -> Value {
    let cases: Vec<Value> = (0..cases)
        .map(|i| json!({"case_id": format!("c{i}"), "input": format!("q{i}"), "expected_output": "ok"}))
        .collect();
    json!({
        "generation": {"generator": {"name": "openai/chat", "params": {
            "provider": "fake", "model": "m", "prompt": "{{ input }}"}}},
        "evaluation": {"metrics": ["builtin/exact_match"]},
        "datasets": [{"dataset_id": "d", "cases": cases}],
        "seeds": [1],
        "concurrency": concurrency,
        "cache": false
    })
}

fn spawn_instances(
    database: &TestDatabase,
    provider: &str,
    n: usize,
) -> Vec<(ServerProcess, String)> {
    let mut args = FAST_TAKEOVER.to_vec();
    args.extend(["--provider", provider]);
    (0..n).map(|_| spawn_server(&database.url, &args)).collect()
}

/// Every case recorded once, and the run completed.
async fn assert_completed_once(client: &reqwest::Client, base: &str, run_id: &str, total: u64) {
    let run = wait_finished(client, base, run_id).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["progress"]["completed"], total, "{run}");
    let results = all_results(client, base, run_id).await;
    let indices: HashSet<u64> = results
        .iter()
        .map(|r| r["case_index"].as_u64().unwrap())
        .collect();
    assert_eq!(
        (results.len() as u64, indices.len() as u64),
        (total, total),
        "exactly one stored result per case"
    );
}

fn stop(instances: Vec<(ServerProcess, String)>) {
    for (mut process, _) in instances {
        let _ = process.kill();
        let _ = process.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_instances_keep_a_runs_concurrency_between_them() {
    let database = TestDatabase::create().await;
    let fake = FakeProvider::fixed("ok", Duration::from_millis(150)).await;
    let provider = format!("name=fake,base_url={}", fake.base_url);
    let instances = spawn_instances(&database, &provider, 4);
    let client = reqwest::Client::new();

    let run_id = post_run(&client, &instances[0].1, &chat_run(1_280, 32)).await;
    assert_completed_once(&client, &instances[1].1, &run_id, 1_280).await;
    // Each instance alone would have 32 in flight: 128 together without shared slots.
    let most = fake.max_in_flight();
    assert!(
        most <= 32,
        "{most} requests of the run were in flight at once"
    );
    assert!(
        most >= 16,
        "the instances shared the work ({most} at most in flight)"
    );
    stop(instances);
    database.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_two_of_eight_instances_keeps_the_limits_and_loses_no_case() {
    let database = TestDatabase::create().await;
    let fake = FakeProvider::fixed("ok", Duration::from_millis(100)).await;
    let provider = format!("name=fake,base_url={}", fake.base_url);
    let mut instances = spawn_instances(&database, &provider, 8);
    let client = reqwest::Client::new();

    let total = 2_560;
    let run_id = post_run(&client, &instances[0].1, &chat_run(total, 32)).await;
    let survivor = instances[7].1.clone();
    wait_until(
        &client,
        &survivor,
        &run_id,
        Duration::from_secs(60),
        |run| run["progress"]["completed"].as_u64().unwrap_or(0) >= 600,
    )
    .await;
    let before = fake.max_in_flight();
    // SIGKILL: their chunk leases and their shares of the run's slots run out by
    // themselves while the others go on.
    for (mut process, _) in instances.drain(..2) {
        process.kill().unwrap();
        process.wait().unwrap();
    }
    assert_completed_once(&client, &survivor, &run_id, total as u64).await;
    let most = fake.max_in_flight();
    assert!(
        most <= 32,
        "{most} requests of the run were in flight at once ({before} before the kill, {} now)",
        fake.in_flight()
    );
    stop(instances);
    database.drop_database().await;
}

/// The most arrivals within any `window`.
fn most_within(arrivals: &[std::time::Instant], window: Duration) -> usize {
    let mut sorted = arrivals.to_vec();
    sorted.sort();
    let mut most = 0;
    let mut first = 0;
    for (last, at) in sorted.iter().enumerate() {
        while *at - sorted[first] > window {
            first += 1;
        }
        most = most.max(last + 1 - first);
    }
    most
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_providers_limits_hold_for_four_instances_together() {
    let database = TestDatabase::create().await;
    // A second per request: 10 a second would be 10 in flight, so 8 at once binds too.
    let fake = FakeProvider::fixed("ok", Duration::from_secs(1)).await;
    // 600 a minute: 10 a second, a burst of 10; 8 at once.
    let provider = format!(
        "name=fake,base_url={},max_concurrency=8,requests_per_minute=600",
        fake.base_url
    );
    let instances = spawn_instances(&database, &provider, 4);
    let client = reqwest::Client::new();

    let total = 150;
    let run_id = post_run(&client, &instances[0].1, &chat_run(total, 64)).await;
    assert_completed_once(&client, &instances[2].1, &run_id, total as u64).await;
    let most = fake.max_in_flight();
    assert!(
        most <= 8,
        "{most} requests in flight at once (max_concurrency 8)"
    );
    // Any 3 s: the burst, 3 s of refill, and what the instances hold reserved unspent
    // (a block of a quarter second's budget each). Each instance on its own would send
    // up to 8 a second: 96 in 3 s together.
    let arrivals = fake.arrivals();
    let busiest = most_within(&arrivals, Duration::from_secs(3));
    assert!(busiest <= 10 + 30 + 4 * 3, "{busiest} requests within 3 s");
    let first = arrivals.iter().min().unwrap();
    let last = arrivals.iter().max().unwrap();
    assert!(
        *last - *first >= Duration::from_secs(12),
        "{total} requests in {:?} at 10 a second",
        *last - *first
    );
    stop(instances);
    database.drop_database().await;
}
