//! README claims about tracing and webhooks that had no test (issue 18): a `traceparent`
//! whose sampled flag is off, `sample_ratio` below 1, and webhook deliveries that are not
//! retried (4xx, redirects), honour `Retry-After`, and drop events past a full queue.

mod common;

use std::time::Duration;

use axum::http::{StatusCode, header};
use serde_json::{Value, json};
use themis::components::Registry;

use common::otlp::Collector;
use common::webhook::{WebhookReceiver, answer, hanging_listener};
use common::{TestServer, wait_until};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn arithmetic(cases: usize, seed: u64) -> Value {
    let cases: Vec<Value> = (0..cases)
        .map(|i| json!({"case_id": format!("c{i}"), "input": {"question": format!("{i}+1")}, "expected_output": {"answer": (i + 1).to_string()}}))
        .collect();
    json!({
        "generation": {"generator": "builtin/demo_generator"},
        "evaluation": {"metrics": ["builtin/exact_match"]},
        "datasets": [{"dataset_id": "d", "cases": cases}],
        "seeds": [seed]
    })
}

async fn post_run(server: &TestServer, body: &Value, traceparent: Option<&str>) -> String {
    let mut request = server.client.post(server.url("/runs")).json(body);
    if let Some(value) = traceparent {
        request = request.header("traceparent", value);
    }
    let (status, created) = common::json_of(request.send().await.unwrap()).await;
    assert_eq!(status, 202, "{created}");
    created["run_id"].as_str().unwrap().to_owned()
}

/// The run once its spans are flushed (`spans_dropped` is only known then).
async fn flushed(server: &TestServer, run_id: &str) -> Value {
    wait_until(
        &server.client,
        &server.base,
        run_id,
        Duration::from_secs(60),
        |run| run["status"] == "completed" && run["telemetry"].get("spans_dropped").is_some(),
    )
    .await
}

#[tokio::test]
async fn a_traceparent_with_the_sampled_flag_off_exports_nothing_and_one_on_overrides_the_ratio() {
    let (endpoint, traces) = Collector::start().await;
    let server = TestServer::start("memory", Registry::builtin()).await;
    let mut body = arithmetic(2, 1);
    body["tracing"] = json!({"provider": "otlp", "endpoint": endpoint});
    let unsampled = post_run(
        &server,
        &body,
        Some(&format!("00-{TRACE_ID}-00f067aa0ba902b7-00")),
    )
    .await;
    let run = flushed(&server, &unsampled).await;
    assert_eq!(run["telemetry"]["spans_exported"], 0, "{run}");

    // Sampled by the caller: followed even with sample_ratio 0.
    let mut body = arithmetic(2, 2);
    body["tracing"] = json!({"provider": "otlp", "endpoint": endpoint, "sample_ratio": 0.0});
    let sampled = post_run(
        &server,
        &body,
        Some(&format!("00-{TRACE_ID}-00f067aa0ba902b7-01")),
    )
    .await;
    let run = flushed(&server, &sampled).await;
    let exported = run["telemetry"]["spans_exported"].as_u64().unwrap();
    assert!(exported > 0, "{run}");
    let received = traces.trace_ids();
    assert_eq!(
        received.len() as u64,
        exported,
        "only the sampled run's spans"
    );
    assert!(received.iter().all(|t| t == TRACE_ID), "{received:?}");
    server.stop().await;
}

#[tokio::test]
async fn sample_ratio_keeps_a_share_of_whole_run_traces() {
    const RUNS: u64 = 24;
    let (endpoint, traces) = Collector::start().await;
    let server = TestServer::start("memory", Registry::builtin()).await;
    let mut sampled = 0;
    let mut exported_total = 0;
    for seed in 0..RUNS {
        let mut body = arithmetic(1, 100 + seed);
        body["tracing"] = json!({"provider": "otlp", "endpoint": endpoint, "sample_ratio": 0.5});
        let run_id = post_run(&server, &body, None).await;
        let run = flushed(&server, &run_id).await;
        let exported = run["telemetry"]["spans_exported"].as_u64().unwrap();
        // A run is traced whole or not at all: the decision is made once, at its root.
        let whole = run["telemetry"]["spans_exported"] == 0 || exported >= 5;
        assert!(whole, "{run}");
        sampled += u64::from(exported > 0);
        exported_total += exported;
    }
    // P(all or none of 24 at 0.5) = 2^-23: this never fails by chance in practice.
    assert!(
        0 < sampled && sampled < RUNS,
        "{sampled} of {RUNS} runs sampled"
    );
    assert_eq!(traces.trace_ids().len() as u64, exported_total);
    server.stop().await;
}

/// Runs a small experiment whose `run_completed` goes to `url`; returns its webhook
/// counters once the delivery is over.
async fn deliver_run_completed(server: &TestServer, url: &str, seed: u64) -> Value {
    let mut body = arithmetic(2, seed);
    body["subscribers"] = json!([{"kind": "webhook", "url": url, "events": ["run_completed"]}]);
    let run_id = post_run(server, &body, None).await;
    let run = wait_until(
        &server.client,
        &server.base,
        &run_id,
        Duration::from_secs(60),
        |run| {
            run["status"] == "completed"
                && run["telemetry"]["webhooks"][0]["pending"] == 0
                && run["telemetry"]["webhooks"][0]["delivered"]
                    .as_u64()
                    .unwrap_or(0)
                    + run["telemetry"]["webhooks"][0]["failed"]
                        .as_u64()
                        .unwrap_or(0)
                    == 1
        },
    )
    .await;
    run["telemetry"]["webhooks"][0].clone()
}

#[tokio::test]
async fn webhook_4xx_and_redirects_are_not_retried_and_retry_after_is_honoured() {
    let server = TestServer::start("memory", Registry::builtin()).await;

    let rejecting = WebhookReceiver::scripted(vec![answer(StatusCode::BAD_REQUEST, &[])]).await;
    let url = rejecting.url("/hook");
    let hook = deliver_run_completed(&server, &url, 1).await;
    assert_eq!(
        (hook["delivered"].as_u64(), hook["failed"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(hook["last_error"], "HTTP 400 (not retried)", "{hook}");
    assert_eq!(rejecting.attempts().len(), 1, "a 4xx is final");

    let redirecting = WebhookReceiver::scripted(vec![answer(
        StatusCode::TEMPORARY_REDIRECT,
        &[(header::LOCATION, "/elsewhere")],
    )])
    .await;
    let url = redirecting.url("/hook");
    let hook = deliver_run_completed(&server, &url, 2).await;
    assert_eq!(hook["failed"], 1, "{hook}");
    assert_eq!(hook["last_error"], "HTTP 307 (not retried)", "{hook}");
    let attempts = redirecting.attempts();
    assert_eq!(
        attempts.len(),
        1,
        "a redirect is neither followed nor retried"
    );
    assert_eq!(attempts[0].path, "/hook");

    let busy = WebhookReceiver::scripted(vec![
        answer(
            StatusCode::SERVICE_UNAVAILABLE,
            &[(header::RETRY_AFTER, "1")],
        ),
        answer(StatusCode::OK, &[]),
    ])
    .await;
    let url = busy.url("/hook");
    let hook = deliver_run_completed(&server, &url, 3).await;
    assert_eq!(hook["delivered"], 1, "{hook}");
    let attempts = busy.attempts();
    assert_eq!(attempts.len(), 2);
    let waited = attempts[1].at - attempts[0].at;
    // The backoff alone would retry after 200 ms.
    assert!(
        waited >= Duration::from_millis(950),
        "retried after {waited:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_full_webhook_queue_drops_and_counts_events_without_slowing_the_run() {
    const QUEUE: u64 = 10_000;
    let server = TestServer::start("memory", Registry::builtin()).await;
    // The receiver never answers: the first event stays in flight, the queue fills.
    let hanging = hanging_listener().await;
    let mut body = arithmetic(2_500, 4);
    body["subscribers"] = json!([{"kind": "webhook", "url": format!("{hanging}/hook")}]);
    let run_id = post_run(&server, &body, None).await;
    let run = server.wait_finished(&run_id).await;
    assert_eq!(run["status"], "completed", "{run}");
    let hook = &run["telemetry"]["webhooks"][0];
    let events = run["last_event_seq"].as_u64().unwrap();
    assert!(events > QUEUE + 1, "enough events to overflow: {events}");
    let (pending, dropped) = (
        hook["pending"].as_u64().unwrap(),
        hook["dropped"].as_u64().unwrap(),
    );
    assert_eq!(hook["delivered"], 0, "{hook}");
    // Queued plus the one in flight; every other event was dropped and counted.
    assert!((QUEUE..=QUEUE + 1).contains(&pending), "{hook}");
    assert_eq!(
        pending + dropped + hook["failed"].as_u64().unwrap(),
        events,
        "{hook}"
    );
    server.stop().await;
}

/// Telemetry belongs to the server that builds it, not to the process: two servers in
/// one process executing the same run (same definition, same id) each count only their
/// own deliveries.
#[tokio::test]
async fn two_servers_in_one_process_keep_their_own_telemetry() {
    let receiving = WebhookReceiver::scripted(vec![answer(StatusCode::OK, &[])]).await;
    let url = receiving.url("/hook");
    let mut body = arithmetic(2, 11);
    body["subscribers"] = json!([{"kind": "webhook", "url": url, "events": ["run_completed"]}]);
    let servers = [
        TestServer::start("memory", Registry::builtin()).await,
        TestServer::start("memory", Registry::builtin()).await,
    ];
    let mut run_ids = Vec::new();
    for server in &servers {
        let run_id = post_run(server, &body, None).await;
        wait_until(
            &server.client,
            &server.base,
            &run_id,
            Duration::from_secs(60),
            |run| {
                let hook = &run["telemetry"]["webhooks"][0];
                run["status"] == "completed"
                    && hook["pending"] == 0
                    && hook["delivered"].as_u64().unwrap_or(0) > 0
            },
        )
        .await;
        run_ids.push(run_id);
    }
    assert_eq!(run_ids[0], run_ids[1], "the same run on both");
    assert_eq!(receiving.attempts().len(), 2);
    for server in &servers {
        let (status, run) = server.get(&format!("/runs/{}", run_ids[0])).await;
        assert_eq!(status, 200);
        let hook = &run["telemetry"]["webhooks"][0];
        assert_eq!(hook["delivered"], 1, "only this server's delivery: {hook}");
    }
}
