//! Webhooks: signed only with a secret bound to the URL, filtered, in order, 5xx retried;
//! 4xx and redirects not; Retry-After honoured; a full queue drops and counts; each
//! server counts its own deliveries.

use crate::common;

use axum::http::{StatusCode, header};

use common::webhook::{WebhookReceiver, answer, hanging_listener};

use common::{TestServer, events_of, spawn_server_with_env, wait_until};

use hmac::{Hmac, Mac};

use serde_json::{Value, json};

use sha2::Sha256;

use std::time::Duration;

use themis::components::Registry;

/// Arithmetic cases for the demo generator: every answer is right.
fn arithmetic(cases: usize, generator: Value, seed: u64) -> Value {
    let cases: Vec<Value> = (0..cases)
        .map(|i| json!({"case_id": format!("c{i}"), "input": {"question": format!("{i}+1")}, "expected_output": {"answer": (i + 1).to_string()}}))
        .collect();
    json!({
        "generation": {"generator": generator},
        "evaluation": {"parsers": ["builtin/json_identity"], "metrics": ["builtin/exact_match"]},
        "datasets": [{"dataset_id": "d", "cases": cases}],
        "seeds": [seed]
    })
}

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// A run of the demo generator whose answers are all right.
fn demo(cases: usize, seed: u64) -> Value {
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

async fn post_new_run(server: &TestServer, body: &Value, traceparent: Option<&str>) -> String {
    let mut request = server.client.post(server.url("/runs")).json(body);
    if let Some(value) = traceparent {
        request = request.header("traceparent", value);
    }
    let (status, created) = common::json_of(request.send().await.unwrap()).await;
    assert_eq!(status, 202, "{created}");
    created["run_id"].as_str().unwrap().to_owned()
}

/// Runs a small experiment whose `run_completed` goes to `url`; returns its webhook
/// counters once the delivery is over.
async fn deliver_run_completed(server: &TestServer, url: &str, seed: u64) -> Value {
    let mut body = demo(2, seed);
    body["subscribers"] = json!([{"kind": "webhook", "url": url, "events": ["run_completed"]}]);
    let run_id = post_new_run(server, &body, None).await;
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
async fn webhooks_are_signed_filtered_in_order_and_retried() {
    const SECRET: &str = "webhook-test-secret";
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("hooks.db").display());
    let hooks = WebhookReceiver::failing_first(2).await;
    let url = hooks.url("/hook");
    // The real binary, so the secret lives in its environment only, bound to the
    // receiver's URL.
    let binding = format!("THEMIS_WEBHOOK_TEST_SECRET={url}");
    let (mut child, base) = spawn_server_with_env(
        &database,
        &["--webhook-secret", &binding],
        &[("THEMIS_WEBHOOK_TEST_SECRET", SECRET)],
    );
    let client = reqwest::Client::new();

    // A client cannot have the secret sign for a URL it was not bound to, nor name one
    // the operator did not declare: nothing is stored.
    for (hook_url, secret_env, message) in [
        (
            url.replace("/hook", "/elsewhere"),
            "THEMIS_WEBHOOK_TEST_SECRET",
            "not bound",
        ),
        (
            url.clone(),
            "THEMIS_WEBHOOK_UNDECLARED",
            "no webhook secret",
        ),
    ] {
        let mut body = arithmetic(1, json!("builtin/demo_generator"), 8);
        body["subscribers"] =
            json!([{"kind": "webhook", "url": hook_url, "secret_env": secret_env}]);
        let response = client
            .post(format!("{base}/runs"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422);
        let error: Value = response.json().await.unwrap();
        let detail = &error["error"]["details"][0];
        assert_eq!(detail["path"], "subscribers[0].secret_env", "{error}");
        assert!(
            detail["message"].as_str().unwrap().contains(message),
            "{error}"
        );
        assert!(!error.to_string().contains(SECRET));
    }
    let (_, runs) = common::json_of(client.get(format!("{base}/runs")).send().await.unwrap()).await;
    assert_eq!(runs["runs"].as_array().map(Vec::len), Some(0), "{runs}");

    let mut body = arithmetic(5, json!("builtin/demo_generator"), 9);
    body["subscribers"] = json!([{
        "kind": "webhook",
        "url": url,
        "events": ["run.started", "case_completed", "run.completed"],
        "secret_env": "THEMIS_WEBHOOK_TEST_SECRET"
    }]);
    let run_id = common::post_run(&client, &base, &body).await;
    let run = wait_until(&client, &base, &run_id, Duration::from_secs(60), |run| {
        run["status"] == "completed" && run["telemetry"]["webhooks"][0]["pending"] == 0
    })
    .await;
    let hook = &run["telemetry"]["webhooks"][0];
    assert_eq!(hook["delivered"], 7, "{run}");
    assert_eq!(hook["failed"], 0);
    assert_eq!(hook["dropped"], 0);
    assert_eq!(hook["last_error"], Value::Null);
    assert_eq!(hook["url"], url);

    let delivered = hooks.delivered();
    assert_eq!(delivered.len(), 7, "each event once");
    assert_eq!(hooks.attempts().len(), 9, "two retries");
    let mut last_seq = 0;
    let mut types = Vec::new();
    for common::webhook::Delivery {
        headers, body: raw, ..
    } in &delivered
    {
        let signature = headers["x-themis-signature"].to_str().unwrap();
        assert_eq!(signature, format!("sha256={}", hmac_hex(SECRET, raw)));
        let event: Value = serde_json::from_slice(raw).unwrap();
        let seq = event["seq"].as_u64().unwrap();
        assert!(seq > last_seq, "in sequence order");
        last_seq = seq;
        assert_eq!(event["run_id"], run_id.as_str());
        assert_eq!(
            headers["x-themis-event"],
            event["event_type"].as_str().unwrap()
        );
        assert_eq!(
            headers["x-themis-delivery"],
            format!("{run_id}:{seq}").as_str()
        );
        types.push(event["event_type"].as_str().unwrap().to_owned());
    }
    assert_eq!(types.first().map(String::as_str), Some("run_started"));
    assert_eq!(types.last().map(String::as_str), Some("run_completed"));
    assert_eq!(types.iter().filter(|t| *t == "case_completed").count(), 5);

    // Exactly the run's matching events, as the event stream has them.
    let events = events_of(&client, &base, &run_id).await;
    let expected: Vec<u64> = events
        .iter()
        .filter(|e| ["run_started", "case_completed", "run_completed"].contains(&e.event.as_str()))
        .map(|e| e.id)
        .collect();
    let got: Vec<u64> = delivered
        .iter()
        .map(|delivery| {
            serde_json::from_slice::<Value>(&delivery.body).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(got, expected);

    // The secret's name is kept, its value never shown.
    let with_definition: Value = client
        .get(format!("{base}/runs/{run_id}?include=definition"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        with_definition["runtime"]["subscribers"][0]["secret_env"],
        "THEMIS_WEBHOOK_TEST_SECRET"
    );
    assert!(!with_definition.to_string().contains(SECRET));
    child.kill().unwrap();
    child.wait().unwrap();
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
    let mut body = demo(2_500, 4);
    body["subscribers"] = json!([{"kind": "webhook", "url": format!("{hanging}/hook")}]);
    let run_id = post_new_run(&server, &body, None).await;
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
    let mut body = demo(2, 11);
    body["subscribers"] = json!([{"kind": "webhook", "url": url, "events": ["run_completed"]}]);
    let servers = [
        TestServer::start("memory", Registry::builtin()).await,
        TestServer::start("memory", Registry::builtin()).await,
    ];
    let mut run_ids = Vec::new();
    for server in &servers {
        let run_id = post_new_run(server, &body, None).await;
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
