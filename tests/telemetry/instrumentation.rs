//! Instrumentation (tracing and subscribers) never changes a run's id or results, and is
//! validated with JSON paths.

use crate::common;

use common::otlp::Collector;

use common::webhook::WebhookReceiver;

use common::{TestServer, all_results, wait_until};

use serde_json::{Value, json};

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

/// Results with timings zeroed, to compare two executions.
fn normalized(mut results: Vec<Value>) -> Vec<Value> {
    fn zero(value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    if ["duration_ms", "started_at", "finished_at"].contains(&key.as_str()) {
                        *v = json!(0);
                    } else {
                        zero(v);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(zero),
            _ => {}
        }
    }
    results.iter_mut().for_each(zero);
    results
}

async fn post_run(server: &TestServer, body: &Value, traceparent: Option<&str>) -> String {
    let mut request = server.client.post(server.url("/runs")).json(body);
    if let Some(header) = traceparent {
        request = request.header("traceparent", header);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let created: Value = response.json().await.unwrap();
    assert!([200, 202].contains(&status), "{created}");
    created["run_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn same_definition_with_other_instrumentation_has_the_same_id_and_results() {
    let (endpoint, collector) = Collector::start().await;
    let hooks = WebhookReceiver::start().await;
    let hook_url = hooks.url("/hook");
    let body = arithmetic(
        12,
        json!({"name": "builtin/demo_generator", "params": {"wrong_rate": 0.3}}),
        3,
    );
    let mut variants = vec![body.clone()];
    let mut log = body.clone();
    log["tracing"] = json!({"provider": "log"});
    variants.push(log);
    let mut otlp = body.clone();
    otlp["tracing"] = json!({"provider": "otlp", "endpoint": endpoint});
    otlp["subscribers"] = json!([{"kind": "webhook", "url": hook_url}]);
    variants.push(otlp);

    let mut seen: Vec<(String, Value, Vec<Value>)> = Vec::new();
    for variant in &variants {
        let server = TestServer::start("memory", Registry::builtin()).await;
        let run_id = post_run(&server, variant, None).await;
        let run = server.wait_finished(&run_id).await;
        if variant.get("subscribers").is_some() {
            // The instrumented variant really was observed: every span reached the
            // collector and every event the webhook.
            let run = wait_until(
                &server.client,
                &server.base,
                &run_id,
                Duration::from_secs(60),
                |run| {
                    run["telemetry"].get("spans_dropped").is_some()
                        && run["telemetry"]["webhooks"][0]["pending"] == 0
                },
            )
            .await;
            let exported = run["telemetry"]["spans_exported"].as_u64().unwrap();
            assert!(exported > 0, "{run}");
            assert_eq!(collector.spans_of(&run_id).len() as u64, exported);
            assert_eq!(
                json!(hooks.delivered().len()),
                run["last_event_seq"],
                "{run}"
            );
        }
        let results = normalized(all_results(&server.client, &server.base, &run_id).await);
        seen.push((run_id, run["aggregates"].clone(), results));
        server.stop().await;
    }
    for other in &seen[1..] {
        assert_eq!(other.0, seen[0].0, "same run id");
        assert_eq!(other.1, seen[0].1, "same aggregates");
        assert_eq!(other.2, seen[0].2, "same results");
    }
}

#[tokio::test]
async fn instrumentation_is_validated_with_json_paths() {
    let server = TestServer::start("memory", Registry::builtin()).await;
    let mut body = arithmetic(1, json!("builtin/demo_generator"), 1);
    body["tracing"] = json!({"provider": "otlp", "endpoint": "collector:4318", "protocol": "grpc",
                             "headers": {"x-api-key": 1}, "sample_ratio": 1.5});
    body["subscribers"] = json!([
        {"kind": "webhook", "url": "http://h/hook", "events": ["run.finished"]},
        {"kind": "webhook", "url": "http://h/hook", "secret_env": "PATH"},
        {"kind": "slack"}
    ]);
    let (status, error) = server.post("/runs", &body).await;
    assert_eq!(status, 422, "{error}");
    let mut paths: Vec<&str> = error["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "subscribers[0].events[0]",
            "subscribers[1].secret_env",
            "subscribers[2].kind",
            "tracing.endpoint",
            "tracing.headers.x-api-key",
            "tracing.protocol",
            "tracing.sample_ratio",
        ],
        "{error}"
    );
    // Rejudges take the same runtime fields.
    let run_id = post_run(
        &server,
        &arithmetic(1, json!("builtin/demo_generator"), 2),
        None,
    )
    .await;
    server.wait_finished(&run_id).await;
    let (status, error) = server
        .post(
            &format!("/runs/{run_id}/rejudge"),
            &json!({"metrics": ["builtin/exact_match"], "tracing": {"provider": "jaeger"}}),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(error["error"]["details"][0]["path"], "tracing.provider");
    server.stop().await;
}
