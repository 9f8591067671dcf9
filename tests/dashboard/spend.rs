//! Spend on the dashboard: a run stopped by its budget shows its budget, its cost split
//! into generation and judging per dataset and why it stopped; a comparison shows the
//! cost delta beside the score deltas.

use std::time::Duration;

use serde_json::{Value, json};

use super::service::Service;
use crate::common::browser::Browser;
use crate::common::fake_provider::{FakeProvider, Reply};

const KEY: &str = "spend-dashboard-key";

async fn finished(service: &Service, run_id: &str) -> Value {
    for _ in 0..1_200 {
        let (_, run) = service.get_any(&format!("/runs/{run_id}")).await;
        if ["completed", "failed", "cancelled"].contains(&run["status"].as_str().unwrap_or("")) {
            return run;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("run {run_id} did not finish within 60 s");
}

fn experiment(budget: Option<f64>, max_tokens: u64) -> Value {
    let cases: Vec<Value> = (0..4)
        .map(|i| json!({"case_id": format!("c{i}"), "input": {"q": format!("{i}")}, "expected_output": "2"}))
        .collect();
    let mut body = json!({
        "generation": {"generator": {"name": "openai/chat", "params": {
            "provider": "fake", "model": "m", "max_tokens": max_tokens, "prompt": "{{ input.q }}"}}},
        "evaluation": {"metrics": ["builtin/exact_match"]},
        "datasets": [{"dataset_id": "d", "cases": cases}],
        "seeds": [1],
        "concurrency": 1
    });
    if let Some(budget) = budget {
        body["budget_usd"] = json!(budget);
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_spend_budget_and_cost_deltas() {
    // 10 prompt and 100 completion tokens an answer; $1,000 per 1M output tokens: $0.1
    // a case (and the prompt at $1 per 1M).
    let fake = FakeProvider::replying(|_, _| {
        Reply::Raw(axum::response::IntoResponse::into_response(axum::Json(
            json!({
                "choices": [{"index": 0, "message": {"content": "2"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 100}
            }),
        )))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let prices = dir.path().join("prices.toml");
    std::fs::write(
        &prices,
        "[[price]]\nprovider = \"fake\"\nmodel = \"m\"\ninput_per_1m = 1.0\noutput_per_1m = 1000.0\n",
    )
    .unwrap();
    let provider = format!("name=fake,base_url={}", fake.base_url);
    let service = Service::start(
        &[
            "--provider",
            &provider,
            "--prices",
            prices.to_str().unwrap(),
        ],
        Some(KEY),
    );
    let stopped = service.post("/runs", &experiment(Some(0.25), 100)).await;
    let stopped = stopped["run_id"].as_str().unwrap().to_owned();
    let run = finished(&service, &stopped).await;
    assert_eq!(run["status"], "failed", "{run}");
    // Another definition (a different max_tokens: no cached answers) over the same cases.
    let full = service.post("/runs", &experiment(None, 99)).await;
    let full = full["run_id"].as_str().unwrap().to_owned();
    finished(&service, &full).await;

    let browser = Browser::start(1360, 900).await;
    let base = &service.base;
    browser.goto(&format!("{base}/ui/")).await;
    browser
        .wait_for("#key-input")
        .await
        .send_keys(KEY)
        .await
        .unwrap();
    browser.click_to_view("#key-submit").await;
    browser.goto(&format!("{base}/ui/#/runs/{stopped}")).await;
    browser.wait_view().await;
    let budget = browser.text("#run-budget").await;
    assert_eq!(budget, "$0.20 of $0.25", "{budget}");
    assert_eq!(browser.text("#run-price-source").await, "operator");
    let why = browser.text("#run-budget-exhausted").await;
    assert!(why.contains("budget_usd for the rest"), "{why}");
    let split = browser.text("#spend-table").await;
    assert!(
        split.contains("All datasets") && split.contains("$0.20"),
        "{split}"
    );

    browser
        .goto(&format!(
            "{base}/ui/#/compare?baseline={stopped}&candidate={full}"
        ))
        .await;
    browser.wait_view().await;
    let cost = browser.text("#compare-cost").await;
    assert!(
        cost.starts_with("Cost: $0.40 (candidate) vs $0.20 (baseline), +$0.2000"),
        "{cost}"
    );
    browser.close().await;
}
