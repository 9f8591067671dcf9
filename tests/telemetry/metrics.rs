//! `GET /metrics` after real runs: cases completed and failed, case, stage and commit
//! histograms, finished runs, provider requests, 429s, retries, breaker state, tokens and
//! cost by endpoint (a fake provider declared as `fake`), open event streams, webhook
//! deliveries and failures; and who may read it.

use crate::common;

use std::sync::Arc;

use common::fake_provider::FakeProvider;
use common::webhook::WebhookReceiver;
use common::{TestServer, json_of};
use serde_json::{Value, json};
use themis::components::{Outbound, ProviderSpec, Registry};
use themis::server::ServerConfig;
use themis::telemetry::Metrics;

const KEY: &str = "metrics-test-key";

/// The value of the sample `series` (name and labels exactly as written), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.trim().parse().expect("a sample value"))
}

fn provider_run(provider: &str, cases: usize, webhooks: [&str; 2]) -> Value {
    let cases: Vec<Value> = (0..cases)
        .map(|i| json!({"case_id": format!("c{i}"), "input": {"question": "1+1"}, "expected_output": {"answer": "2"}}))
        .collect();
    json!({
        "generation": {"generator": {"name": "openai/chat", "params": {
            "provider": provider, "model": "m", "prompt": "What is {{ input.question }}?",
            "output": "json", "initial_backoff_ms": 1, "max_backoff_ms": 5,
            "price": {"prompt_per_1k": 1.0, "completion_per_1k": 2.0}
        }}},
        "evaluation": {"metrics": [{"name": "builtin/exact_match", "params": {"field": "answer"}}]},
        "datasets": [{"dataset_id": "d", "cases": cases}],
        "seeds": [1],
        "concurrency": 1,
        "cache": false,
        "subscribers": webhooks.map(|url| json!({"kind": "webhook", "url": url, "events": ["run_completed"]}))
    })
}

async fn scrape(server: &TestServer, key: Option<&str>) -> (u16, String, String) {
    let mut request = server.client.get(server.url("/metrics"));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.expect("GET /metrics");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

#[tokio::test]
async fn metrics_count_cases_stages_providers_and_streams() {
    let fake = FakeProvider::start(2, 3).await;
    let metrics = Arc::new(Metrics::new());
    let registry = Registry::builtin_with(Outbound {
        providers: vec![ProviderSpec::new("fake", &fake.base_url).unwrap()],
        meter: metrics.clone(),
        ..Outbound::local()
    });
    // One run at a time, so that a second one waits in the queue.
    let config = ServerConfig {
        database_url: "sqlite::memory:".into(),
        metrics: metrics.clone(),
        max_running_runs: 1,
        ..Default::default()
    };
    let server = TestServer::start_config(config, registry).await;

    // An executing run with an open event stream: counted while it is open.
    let slow = json!({
        "generation": {"generator": {"name": "builtin/demo_generator", "params": {"delay_ms": 400}}},
        "evaluation": {"metrics": ["builtin/exact_match"]},
        "datasets": [{"dataset_id": "d", "cases": [{"case_id": "a", "input": {"question": "1+1"}, "expected_output": {"answer": "2"}}]}],
        "seeds": [1]
    });
    let (status, created) = server.post("/runs", &slow).await;
    assert_eq!(status, 202, "{created}");
    let slow_id = created["run_id"].as_str().unwrap().to_owned();
    let mut waiting = slow.clone();
    waiting["datasets"][0]["dataset_id"] = json!("waiting");
    let (status, waiting) = server.post("/runs", &waiting).await;
    assert_eq!(status, 202, "{waiting}");
    let waiting_id = waiting["run_id"].as_str().unwrap().to_owned();
    let stream = server
        .client
        .get(server.url(&format!("/runs/{slow_id}/events")))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let (_, _, text) = scrape(&server, None).await;
    assert_eq!(sample(&text, "themis_sse_clients"), Some(1.0), "{text}");
    assert_eq!(sample(&text, "themis_runs_executing"), Some(1.0), "{text}");
    assert_eq!(sample(&text, "themis_runs_queued"), Some(1.0), "{text}");
    common::read_sse(stream, usize::MAX).await;
    server.wait_finished(&waiting_id).await;

    // A webhook receiver that takes deliveries at /hook and refuses them at /refuse
    // (a 4xx is not retried: that delivery fails at once).
    let taking = WebhookReceiver::start().await;
    let refusing = WebhookReceiver::answering(axum::http::StatusCode::BAD_REQUEST).await;
    let webhooks = [taking.url("/hook"), refusing.url("/refuse")];
    let (status, run) = server
        .post(
            "/runs",
            &provider_run("fake", 5, [&webhooks[0], &webhooks[1]]),
        )
        .await;
    assert_eq!(status, 202, "{run}");
    let run_id = run["run_id"].as_str().unwrap().to_owned();
    let run = server.wait_finished(&run_id).await;
    assert_eq!(run["status"], "completed", "{run}");
    server.wait_finished(&slow_id).await;

    // The webhook is delivered after the run ends, by its own task.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let (status, content_type, text) = loop {
        let scraped = scrape(&server, None).await;
        let delivered = "themis_webhook_deliveries_total{outcome=\"delivered\"}";
        let failed = "themis_webhook_deliveries_total{outcome=\"failed\"}";
        // The scheduler counts a run finished after its webhooks are queued, so a fast
        // receiver can see them before the counter moves: wait for both.
        let finished = "themis_runs_finished_total{status=\"completed\"}";
        if sample(&scraped.2, delivered) == Some(1.0)
            && sample(&scraped.2, failed) == Some(1.0)
            && sample(&scraped.2, finished) == Some(3.0)
        {
            break scraped;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no delivery counted:\n{}",
            scraped.2
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let expect = |series: &str, value: f64| {
        assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
    };
    expect("themis_cases_total{status=\"completed\"}", 7.0);
    expect("themis_runs_finished_total{status=\"completed\"}", 3.0);
    expect("themis_case_duration_seconds_count", 7.0);
    expect("themis_case_duration_seconds_bucket{le=\"+Inf\"}", 7.0);
    expect(
        "themis_stage_duration_seconds_bucket{stage=\"generation\",le=\"+Inf\"}",
        7.0,
    );
    expect(
        "themis_provider_requests_total{endpoint=\"fake\",outcome=\"rate_limited\"}",
        2.0,
    );
    expect(
        "themis_provider_requests_total{endpoint=\"fake\",outcome=\"success\"}",
        5.0,
    );
    expect("themis_provider_retries_total{endpoint=\"fake\"}", 2.0);
    expect(
        "themis_provider_request_duration_seconds_count{endpoint=\"fake\"}",
        7.0,
    );
    expect("themis_provider_breaker_state{endpoint=\"fake\"}", 0.0);
    expect(
        "themis_provider_tokens_total{endpoint=\"fake\",kind=\"prompt\"}",
        15.0,
    );
    expect(
        "themis_provider_tokens_total{endpoint=\"fake\",kind=\"completion\"}",
        15.0,
    );
    // 5 answers × (3 prompt × $1 + 3 completion × $2) per 1,000 tokens.
    let cost = sample(&text, "themis_provider_cost_usd_total{endpoint=\"fake\"}").unwrap();
    assert!((cost - 0.045).abs() < 1e-9, "cost {cost}");
    // The same spend by stage, counted as the cases are recorded: all generation.
    let generation = sample(&text, "themis_case_cost_usd_total{stage=\"generation\"}").unwrap();
    assert!((generation - 0.045).abs() < 1e-9, "generation {generation}");
    assert_eq!(
        sample(&text, "themis_case_cost_usd_total{stage=\"judging\"}"),
        None
    );
    expect("themis_sse_clients", 0.0);
    expect("themis_runs_executing", 0.0);
    expect("themis_runs_queued", 0.0);
    assert!(
        sample(&text, "themis_store_commit_duration_seconds_count").unwrap() >= 1.0,
        "{text}"
    );
    expect("themis_store_commit_failures_total", 0.0);
    // Labels are bounded: no run id or user string becomes a series.
    assert!(
        !text.contains(&run_id) && !text.contains(&slow_id),
        "{text}"
    );
    assert!(!text.contains(&fake.base_url), "{text}");

    // Cases that fail are counted apart, with their run.
    let broken = json!({
        "generation": {"generator": {"name": "builtin/demo_generator", "params": {"error_rate": 1.0}}},
        "evaluation": {"metrics": ["builtin/exact_match"]},
        "datasets": [{"dataset_id": "d", "cases": [
            {"case_id": "x", "input": {"question": "1+1"}},
            {"case_id": "y", "input": {"question": "2+2"}}]}],
        "seeds": [1]
    });
    let (status, broken) = server.post("/runs", &broken).await;
    assert_eq!(status, 202, "{broken}");
    let broken = server
        .wait_finished(broken["run_id"].as_str().unwrap())
        .await;
    let (_, _, text) = scrape(&server, None).await;
    assert_eq!(
        sample(&text, "themis_cases_total{status=\"failed\"}"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "themis_cases_total{status=\"completed\"}"),
        Some(7.0)
    );
    let finished_as = format!("themis_runs_finished_total{{status={}}}", broken["status"]);
    let expected = if broken["status"] == "completed" {
        4.0
    } else {
        1.0
    };
    assert_eq!(sample(&text, &finished_as), Some(expected), "{text}");
    check_dashboard_and_readme(&text);
    server.stop().await;
}

#[tokio::test]
async fn metrics_need_the_key_unless_made_public() {
    for public in [false, true] {
        let mut config = ServerConfig {
            database_url: "sqlite::memory:".into(),
            ..Default::default()
        };
        config.api.api_keys = vec![KEY.to_owned()];
        config.api.metrics_public = public;
        let server = TestServer::start_config(config, Registry::builtin()).await;
        let (status, _, body) = scrape(&server, None).await;
        if public {
            assert_eq!(status, 200, "public metrics: {body}");
            assert!(body.contains("# TYPE themis_runs_queued gauge"), "{body}");
        } else {
            assert_eq!(status, 401, "{body}");
            let error: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(error["error"]["code"], "unauthorized");
        }
        let (status, _, _) = scrape(&server, Some(KEY)).await;
        assert_eq!(status, 200);
        // Making metrics public opens nothing else.
        let (status, _) =
            json_of(server.client.get(server.url("/runs")).send().await.unwrap()).await;
        assert_eq!(status, 401);
        server.stop().await;
    }
}

/// The Grafana dashboard in deploy/ queries only series the service exposes (in
/// `exposed`, a scrape where every family has samples), every family is on a panel, and
/// docs/operations/metrics.md names every one of them.
fn check_dashboard_and_readme(exposed: &str) {
    let families: Vec<&str> = exposed
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split(' ').next())
        .collect();
    assert_eq!(families.len(), 17, "{exposed}");
    let root = env!("CARGO_MANIFEST_DIR");
    let dashboard =
        std::fs::read_to_string(format!("{root}/deploy/grafana/dashboards/themis.json"))
            .expect("the Grafana dashboard");
    let dashboard: Value = serde_json::from_str(&dashboard).expect("dashboard JSON");
    let name = regex::Regex::new(r"themis_[a-z_]+").unwrap();
    let mut queried = std::collections::BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for found in name.find_iter(expr) {
                let series = found.as_str();
                let family = ["_bucket", "_count", "_sum"]
                    .iter()
                    .find_map(|suffix| series.strip_suffix(suffix))
                    .unwrap_or(series);
                assert!(
                    families.contains(&family),
                    "panel {:?} queries {series}, which /metrics does not expose",
                    panel["title"]
                );
                queried.insert(family.to_owned());
            }
        }
    }
    let all: std::collections::BTreeSet<String> =
        families.iter().map(|f| (*f).to_owned()).collect();
    assert_eq!(queried, all, "every exposed family has a panel");
    let readme = std::fs::read_to_string(format!("{root}/docs/operations/metrics.md"))
        .expect("docs/operations/metrics.md");
    for family in &families {
        assert!(
            readme.contains(&format!("`{family}`")),
            "docs/operations/metrics.md does not list {family}"
        );
    }
}
