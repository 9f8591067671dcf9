//! Hostile input: each request here once crashed the service, pinned a worker, made it do
//! unbounded work or leaked memory. Every test runs against the real router on a real
//! port; the service must answer with a clear error (or fail just the case) and stay up.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use themis::api::ApiConfig;
use themis::components::Registry;
use themis::engine::Scheduler;

use common::webhook::hanging_listener;
use common::{TestApp, TestServer, all_results, post_run, wait_finished};

/// The API over the in-memory store on an ephemeral port, with its scheduler at hand
/// (the tests look at the event hub).
async fn service(config: ApiConfig) -> TestServer {
    TestApp::new().api(config).serve_router().await
}

/// Event channels open on the server's hub.
fn channels(service: &TestServer) -> usize {
    scheduler(service).engine().hub().channel_count()
}

fn scheduler(service: &TestServer) -> &Arc<Scheduler> {
    service
        .scheduler
        .as_ref()
        .expect("served with its scheduler")
}

fn config() -> ApiConfig {
    ApiConfig {
        max_body_bytes: 64 * 1024 * 1024,
        ..Default::default()
    }
}

fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("themis.db").display())
}

/// Polls `condition` every 10 ms until it holds, failing after `limit`.
async fn eventually(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn details(body: &Value) -> &Vec<Value> {
    body["error"]["details"]
        .as_array()
        .unwrap_or_else(|| panic!("no error details in {body}"))
}

fn has_detail(body: &Value, path: &str, message_part: &str) -> bool {
    details(body).iter().any(|d| {
        d["path"] == path
            && d["message"]
                .as_str()
                .is_some_and(|m| m.contains(message_part))
    })
}

#[tokio::test]
async fn a_million_minus_signs_fail_their_case_and_the_server_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&sqlite_url(&dir), Registry::builtin()).await;
    let bomb = format!("{}1", "-".repeat(1_000_000));
    let definition = json!({
        "generation": {"generator": "builtin/demo_generator"},
        "evaluation": {"metrics": ["builtin/exact_match"]},
        "datasets": [{"dataset_id": "d", "cases": [
            {"case_id": "bomb", "input": {"question": bomb}, "expected_output": {"answer": "1"}},
            {"case_id": "fine", "input": {"question": "2+2"}, "expected_output": {"answer": "4"}}
        ]}],
        "seeds": [1]
    });
    let run_id = post_run(&server.client, &server.base, &definition).await;
    let run = server.wait_finished(&run_id).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["progress"]["failed"], 1, "{run}");
    let results = all_results(&server.client, &server.base, &run_id).await;
    let bomb = results.iter().find(|r| r["case_id"] == "bomb").unwrap();
    assert!(
        bomb.to_string().contains("nests deeper than 256 levels"),
        "{bomb}"
    );
    let fine = results.iter().find(|r| r["case_id"] == "fine").unwrap();
    assert_eq!(fine["scores"][0]["score"], 1.0, "{fine}");
    let (status, _) = server.get("/healthz").await;
    assert_eq!(status, 200, "the server is still up");
    server.stop().await;
}

#[tokio::test]
async fn a_runaway_template_runs_out_of_fuel_quickly() {
    let service = service(config()).await;
    // The render fails before any request is made, so the endpoint need not exist.
    let definition = json!({
        "generation": {"generator": {"name": "openai/chat", "params": {
            "base_url": "http://127.0.0.1:9/v1",
            "model": "m",
            "prompt": "{% for i in range(100000) %}{% for j in range(100000) %}{{ input.q }}{% endfor %}{% endfor %}"
        }}},
        "evaluation": {"metrics": ["builtin/exact_match"]},
        "datasets": [{"dataset_id": "d", "cases": [{"case_id": "c", "input": {"q": "x"}}]}],
        "seeds": [1]
    });
    let started = Instant::now();
    let (status, created) = service.post("/runs", &definition).await;
    assert_eq!(status, 202, "{created}");
    let run_id = created["run_id"].as_str().unwrap();
    let run = wait_finished(&service.client, &service.base, run_id).await;
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(run["progress"]["failed"], 1, "{run}");
    let results = all_results(&service.client, &service.base, run_id).await;
    assert!(
        results[0].to_string().contains("template ran out of fuel"),
        "{}",
        results[0]
    );
}

#[tokio::test]
async fn a_422_lists_at_most_100_problems_and_counts_the_rest() {
    let service = service(config()).await;
    // 50,000 empty cases: two problems each (no case_id, no input).
    let cases: Vec<Value> = (0..50_000).map(|_| json!({})).collect();
    let definition = json!({
        "generation": {"generator": "builtin/echo"},
        "evaluation": {"metrics": ["builtin/exact_match"]},
        "datasets": [{"dataset_id": "d", "cases": cases}],
        "seeds": [1]
    });
    let started = Instant::now();
    let (status, body) = service.post("/runs", &definition).await;
    assert_eq!(status, 422, "{body}");
    let listed = details(&body);
    assert_eq!(listed.len(), 100);
    assert_eq!(listed[0]["path"], "datasets[0].cases[0].case_id");
    assert_eq!(listed[1]["path"], "datasets[0].cases[0].input");
    let last = &listed[99];
    assert_eq!(last["path"], "");
    assert_eq!(
        last["message"],
        "and 99901 more problems not listed (at most 99 are)"
    );
    assert!(started.elapsed() < Duration::from_secs(30));

    // Too many of a kind is one problem, not one per item.
    let seeds: Vec<u64> = (0..20_000).collect();
    let metrics: Vec<&str> = vec!["builtin/no_such_metric"; 1_000];
    let definition = json!({
        "generation": {"generator": "builtin/echo"},
        "evaluation": {"metrics": metrics},
        "datasets": [{"dataset_id": "x".repeat(600), "cases": [{"case_id": "c", "input": 1}]}],
        "seeds": seeds
    });
    let (status, body) = service.post("/runs", &definition).await;
    assert_eq!(status, 422, "{body}");
    assert!(has_detail(&body, "seeds", "at most 10000 seeds"), "{body}");
    assert!(
        has_detail(&body, "evaluation.metrics", "at most 64 entries"),
        "{body}"
    );
    assert!(
        has_detail(&body, "datasets[0].dataset_id", "at most 512 bytes"),
        "{body}"
    );
    assert_eq!(details(&body).len(), 3, "{body}");
}

#[tokio::test]
async fn out_of_range_numbers_are_rejected_naming_the_field() {
    let service = service(config()).await;
    let base = json!({
        "generation": {"generator": "builtin/echo"},
        "evaluation": {"metrics": ["builtin/exact_match"]},
        "datasets": [{"dataset_id": "d", "cases": [{"case_id": "c", "input": 1}]}],
        "seeds": [1]
    });
    // 1e400 is valid JSON but no 64-bit float: send it as raw text.
    let raw = base
        .to_string()
        .replacen('{', r#"{"failure_policy": {"max_ratio": 1e400},"#, 1);
    let response = service
        .client
        .post(service.url("/runs"))
        .header("content-type", "application/json")
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_definition");
    assert!(
        has_detail(&body, "failure_policy.max_ratio", "out of range"),
        "{body}"
    );

    // Finite but absurd: tolerances that overflow, regexes that compile to gigabytes.
    let mut huge = base.clone();
    huge["evaluation"]["metrics"] = json!([
        {"name": "builtin/numeric_match", "params": {"tolerance": 1e300}},
        {"name": "builtin/regex_match", "params": {"pattern": "(?:a{1000}){1000}"}}
    ]);
    let (status, body) = service.post("/runs", &huge).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        has_detail(
            &body,
            "evaluation.metrics[0].params.tolerance",
            "must be between"
        ),
        "{body}"
    );
    assert!(
        has_detail(&body, "evaluation.metrics[1].params.pattern", "too complex"),
        "{body}"
    );
}

#[tokio::test]
async fn event_streams_allocate_only_for_real_runs_and_free_with_their_last_listener() {
    let service = service(ApiConfig {
        max_event_streams: 2,
        ..config()
    })
    .await;
    // Unknown runs: 404 and nothing allocated, however many are asked for.
    for i in 0..50 {
        let id = format!("run_{i:032x}");
        let response = service
            .client
            .get(service.url(&format!("/runs/{id}/events")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 404);
    }
    assert_eq!(channels(&service), 0);

    // A run that stays busy: streams on it hold a channel while they are open.
    let definition = json!({
        "generation": {"generator": {"name": "builtin/demo_generator", "params": {"delay_ms": 600000}}},
        "evaluation": {"metrics": ["builtin/exact_match"]},
        "datasets": [{"dataset_id": "d", "cases": [{"case_id": "c", "input": {"question": "2+2"}}]}],
        "seeds": [1]
    });
    let (status, created) = service.post("/runs", &definition).await;
    assert_eq!(status, 202, "{created}");
    let run_id = created["run_id"].as_str().unwrap().to_owned();
    let events_url = service.url(&format!("/runs/{run_id}/events"));
    let first = service.client.get(&events_url).send().await.unwrap();
    let second = service.client.get(&events_url).send().await.unwrap();
    assert_eq!(first.status().as_u16(), 200);
    assert_eq!(second.status().as_u16(), 200);
    assert_eq!(channels(&service), 1, "one channel per run");

    // Beyond the server's cap: 503, retry later.
    let third = service.client.get(&events_url).send().await.unwrap();
    assert_eq!(third.status().as_u16(), 503);
    assert!(third.headers().contains_key("retry-after"));
    let body: Value = third.json().await.unwrap();
    assert_eq!(body["error"]["code"], "busy");

    // Closing the streams frees the channel while the run goes on (the server notices
    // a disconnect at the latest on its next keep-alive, every 15 s).
    drop(first);
    drop(second);
    let hub = scheduler(&service).engine().hub().clone();
    eventually(Duration::from_secs(40), "the channel to be freed", || {
        hub.channel_count() == 0
    })
    .await;
    // And the cap's permits came back with them.
    let again = service.client.get(&events_url).send().await.unwrap();
    assert_eq!(again.status().as_u16(), 200);
    drop(again);
    let (status, _) = service
        .post(&format!("/runs/{run_id}/cancel"), &json!({}))
        .await;
    assert!(status == 200 || status == 202, "cancel: {status}");
}

#[tokio::test]
async fn webhook_queues_are_bounded_by_bytes() {
    let service = service(config()).await;
    // A receiver that accepts connections and never answers: every delivery hangs.
    let hook = format!("{}/hook", hanging_listener().await);
    // 100 cases of 200 KB each; each `generation_completed` event carries its case's
    // output (the input, echoed): 20 MB in 100 events, far below the count cap.
    let payload = "x".repeat(200 * 1024);
    let cases: Vec<Value> = (0..100)
        .map(|i| json!({"case_id": format!("c{i}"), "input": payload}))
        .collect();
    let definition = json!({
        "generation": {"generator": "builtin/echo"},
        "evaluation": {"metrics": ["builtin/exact_match"]},
        "datasets": [{"dataset_id": "d", "cases": cases}],
        "seeds": [1],
        "subscribers": [{"kind": "webhook", "url": hook, "events": ["generation_completed"]}]
    });
    let (status, created) = service.post("/runs", &definition).await;
    assert_eq!(status, 202, "{created}");
    let run_id = created["run_id"].as_str().unwrap().to_owned();
    let run = wait_finished(&service.client, &service.base, &run_id).await;
    assert_eq!(run["status"], "completed", "{run}");
    let (_, run) = {
        let response = service
            .client
            .get(service.url(&format!("/runs/{run_id}")))
            .send()
            .await
            .unwrap();
        (response.status(), response.json::<Value>().await.unwrap())
    };
    let webhook = &run["telemetry"]["webhooks"][0];
    let count = |key: &str| webhook[key].as_u64().unwrap_or(0);
    // Every event is over 200 KiB: 8 MiB hold at most 40 of them (one more may be in
    // delivery, already counted in the bytes).
    assert!(count("pending") <= 40, "more than 8 MiB queued: {webhook}");
    assert!(count("dropped") >= 60, "the rest is dropped: {webhook}");
    assert_eq!(
        count("pending") + count("dropped") + count("delivered") + count("failed"),
        100,
        "{webhook}"
    );
}

#[tokio::test]
async fn api_keys_of_any_length_and_any_case_of_bearer() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(
        &sqlite_url(&dir),
        Registry::builtin(),
        vec!["k".to_owned(), "a-much-longer-key-0123456789".to_owned()],
    )
    .await;
    let status = |header: Option<&'static str>| {
        let request = server.client.get(server.url("/runs"));
        let request = match header {
            Some(value) => request.header("authorization", value),
            None => request,
        };
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status(Some("Bearer k")).await, 200);
    assert_eq!(
        status(Some("bearer a-much-longer-key-0123456789")).await,
        200
    );
    assert_eq!(status(Some("BEARER k")).await, 200);
    assert_eq!(status(Some("Bearer kk")).await, 401);
    assert_eq!(
        status(Some("Bearer a-much-longer-key-012345678")).await,
        401
    );
    assert_eq!(status(Some("Basic k")).await, 401);
    assert_eq!(status(Some("Bearer ")).await, 401);
    assert_eq!(status(None).await, 401);
    assert_eq!(status(None).await, 401);
    let (health, _) = server.get("/healthz").await;
    assert_eq!(health, 200);
    server.stop().await;
}
