//! Spend over HTTP: `POST /runs?dry_run=true` validates and estimates without storing a
//! run or calling a model; `GET /runs/{id}` shows the spend split and the budget; a run
//! stopped by its budget continues with `POST /runs/{id}/retry {"budget_usd"}`.

use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::{Value, json};
use themis::components::{Outbound, PriceTable, ProviderSpec, Registry};

use crate::common::app::TestApp;
use crate::common::fake_provider::{FakeProvider, Reply};

const TABLE: &str = r#"
[[price]]
provider = "fake"
model = "gpt-4o-mini"
input_per_1m = 1.0
output_per_1m = 2000.0
"#;

fn registry(fake: &FakeProvider) -> Registry {
    Registry::builtin_with(Outbound {
        providers: vec![ProviderSpec::new("fake", &fake.base_url).unwrap()],
        prices: Arc::new(PriceTable::parse(TABLE, false).unwrap()),
        ..Outbound::local()
    })
}

/// Three cases, two samples each, two seeds; a priced generator (`gpt-4o-mini`, counted
/// with its tokenizer) and an unpriced judge (`llama`, counted approximately).
fn experiment() -> Value {
    json!({
        "generation": {
            "generator": {"name": "openai/chat", "params": {
                "provider": "fake", "model": "gpt-4o-mini", "max_tokens": 64,
                "prompt": "What is {{ input.question }}?"}},
            "candidate_policy": {"num_samples": 2}
        },
        "evaluation": {
            "metrics": ["builtin/exact_match"],
            "judges": [{"name": "openai/judge", "params": {
                "provider": "fake", "model": "llama", "max_tokens": 20,
                "rubric": "Is it right?"}}]
        },
        "datasets": [{"dataset_id": "math", "cases": [
            {"case_id": "a", "input": {"question": "1 + 1"}, "expected_output": "2"},
            {"case_id": "b", "input": {"question": "2 + 2"}, "expected_output": "4"},
            {"case_id": "c", "input": {"question": "30 + 12"}, "expected_output": "42"}
        ]}],
        "seeds": [1, 2]
    })
}

/// The prompt tokens of one request to `gpt-4o-mini`: its tokenizer's count of the
/// message, plus 3 for the message and 3 priming the reply.
fn tokens(text: &str) -> u64 {
    let bpe = tiktoken_rs::bpe_for_model("gpt-4o-mini").unwrap();
    bpe.count_ordinary(text) as u64 + 6
}

#[tokio::test]
async fn a_dry_run_estimates_without_storing_or_calling_anything() {
    let fake = FakeProvider::replying(|_, _| Reply::text("2", 1)).await;
    let app = TestApp::new().registry(registry(&fake)).router();
    let (status, estimate) = app
        .call("POST", "/runs?dry_run=true", Some(experiment()))
        .await;
    assert_eq!(status, StatusCode::OK, "{estimate}");
    assert_eq!(estimate["valid"], true);
    assert_eq!(estimate["cases"], 6);
    assert_eq!(estimate["datasets"], json!({"math": 3}));
    assert_eq!(estimate["samples_per_case"], 2);

    // Generation: 3 cases × 2 seeds × 2 samples.
    let generation = &estimate["generation"];
    assert_eq!(generation["calls"], 12);
    let prompt: u64 = ["1 + 1", "2 + 2", "30 + 12"]
        .iter()
        .map(|q| tokens(&format!("What is {q}?")) * 4)
        .sum();
    assert_eq!(generation["prompt_tokens"], prompt);
    assert_eq!(generation["completion_tokens"], 12 * 64);
    assert_eq!(generation["approximate_calls"], 0);
    let low = prompt as f64 * 1.0 / 1e6;
    let high = low + (12 * 64) as f64 * 2000.0 / 1e6;
    let close = |v: &Value, x: f64| (v.as_f64().unwrap() - x).abs() < 1e-12;
    assert!(close(&generation["cost_low_usd"], low), "{generation}");
    assert!(close(&generation["cost_high_usd"], high), "{generation}");

    // Judging: once per case and seed, no price, counted approximately; it sees the
    // generator's 64-token allowance as the output.
    let judging = &estimate["judging"];
    assert_eq!(judging["calls"], 6);
    assert_eq!(judging["unpriced_calls"], 6);
    assert_eq!(judging["approximate_calls"], 6);
    assert_eq!(judging["completion_tokens"], 6 * 20);
    assert!(judging["prompt_tokens"].as_u64().unwrap() > 6 * 64);
    assert_eq!(estimate["judges"]["openai/judge"], *judging);
    assert!(close(&estimate["total"]["cost_high_usd"], high));
    let assumptions = estimate["assumptions"].to_string();
    assert!(assumptions.contains("no price"), "{assumptions}");

    // Nothing was called, and nothing was stored: no run, no dataset.
    assert_eq!(fake.hits(), 0);
    let (_, runs) = app.call("GET", "/runs", None).await;
    assert_eq!(runs["runs"], json!([]), "{runs}");
    let (_, datasets) = app.call("GET", "/datasets", None).await;
    assert_eq!(datasets["datasets"], json!([]), "{datasets}");
}

#[tokio::test]
async fn a_dry_run_of_an_invalid_definition_names_the_field() {
    let fake = FakeProvider::replying(|_, _| Reply::text("2", 1)).await;
    let app = TestApp::new().registry(registry(&fake)).router();
    let mut body = experiment();
    body["generation"]["generator"]["params"]["temperature"] = json!(9);
    body["budget_usd"] = json!(-1);
    let (status, error) = app.call("POST", "/runs?dry_run=true", Some(body)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    let text = error.to_string();
    assert!(
        text.contains("temperature") && text.contains("budget_usd"),
        "{text}"
    );
    let (status, _) = app
        .call("POST", "/runs?dry_run=maybe", Some(experiment()))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(fake.hits(), 0);
}

#[tokio::test]
async fn a_run_out_of_budget_says_so_and_a_retry_with_more_finishes_it() {
    // 10 prompt and 100 completion tokens an answer: $0.20001 a call; max_tokens 100
    // makes a case's worst case $0.2 and its prompt.
    let fake = FakeProvider::replying(|_, _| {
        Reply::Raw(axum::response::IntoResponse::into_response(axum::Json(
            json!({
                "choices": [{"index": 0, "message": {"content": "2"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 100}
            }),
        )))
    })
    .await;
    let app = TestApp::new().registry(registry(&fake)).serve().await;
    let mut body = experiment();
    body["generation"]["generator"]["params"]["max_tokens"] = json!(100);
    body["generation"]["candidate_policy"]["num_samples"] = json!(1);
    body["evaluation"] = json!({"metrics": ["builtin/exact_match"]});
    body["seeds"] = json!([1]);
    body["concurrency"] = json!(1);
    body["budget_usd"] = json!(0.5);
    let (status, created) = app.post("/runs", &body).await;
    assert_eq!(status, 202, "{created}");
    let run = app.wait_finished(created["run_id"].as_str().unwrap()).await;
    assert_eq!(run["status"], "failed");
    assert!(
        run["error"]
            .as_str()
            .unwrap()
            .starts_with("budget exhausted"),
        "{run}"
    );
    assert_eq!(run["progress"]["completed"], 2);
    assert_eq!(run["spend"]["budget_usd"], 0.5);
    assert_eq!(run["spend"]["cost_usd"], 0.40002);
    assert_eq!(run["spend"]["generation"]["cost_usd"], 0.40002);
    assert_eq!(run["spend"]["by_dataset"]["math"]["cost_usd"], 0.40002);
    assert_eq!(run["usage"]["price_source"], "operator");
    let id = run["run_id"].as_str().unwrap();
    let events = app
        .client
        .get(app.url(&format!("/runs/{id}/events")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(events.contains("budget_exhausted"), "{events}");
    let csv = app
        .client
        .get(app.url(&format!("/runs/{id}/results?format=csv")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].ends_with(",generation_usd,judging_usd,cost_usd"),
        "{csv}"
    );
    assert!(lines[1].ends_with(",0.20001,0,0.20001"), "{csv}");

    let (status, retry) = app
        // Enough for the one case left: the two reused ones were paid by the run retried.
        .post(&format!("/runs/{id}/retry"), &json!({"budget_usd": 0.25}))
        .await;
    assert_eq!(status, 202, "{retry}");
    let retried = app.wait_finished(retry["run_id"].as_str().unwrap()).await;
    assert_eq!(retried["status"], "completed", "{retried}");
    assert_eq!(retried["spend"]["cost_usd"], 0.60003);
    assert_eq!(retried["spend"]["reused_usd"], 0.40002);
    assert_eq!(fake.hits(), 3, "the two recorded cases were not paid again");
    let (status, _) = app
        .post(&format!("/runs/{id}/retry"), &json!({"budget_usd": "lots"}))
        .await;
    assert_eq!(status, 400);
}
