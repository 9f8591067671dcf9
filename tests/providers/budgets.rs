//! `retry_budget_ms` stops retrying once the next wait would pass it, and
//! `tokens_per_minute` paces requests by the tokens the provider reports.

use crate::common;
use common::fake_provider::{FakeProvider, Reply};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use themis::components::Registry;
use themis::engine::{Engine, EngineConfig, RunControl};
use themis::model::{CaseStatus, EventKind, RunRecord, RunStatus};
use themis::observe::Observers;
use themis::store::{CaseQuery, MemoryStore};

/// A fake provider that answers every request with 503, asking for a retry after `ms`.
async fn busy(ms: u64) -> FakeProvider {
    FakeProvider::replying(move |_, _| {
        Reply::StatusWithHeaders(503, "busy".into(), vec![("retry-after-ms", ms.to_string())])
    })
    .await
}

/// A fake provider giving the right answer, reporting `tokens` prompt and completion
/// tokens each.
async fn answering(tokens: u64) -> FakeProvider {
    FakeProvider::replying(move |_, _| Reply::text("{\"answer\": \"2\"}", tokens)).await
}

/// `cases` one-at-a-time `openai/chat` cases against `base_url`; `params` merged in.
async fn run(base_url: &str, model: &str, params: Value, cases: usize) -> (Engine, RunRecord) {
    let mut generator = json!({
        "base_url": base_url,
        "model": model,
        "prompt": "What is {{ input.question }}?",
        "output": "json",
        "initial_backoff_ms": 5,
        "max_backoff_ms": 20,
        "timeout_ms": 5000
    });
    for (k, v) in params.as_object().unwrap() {
        generator[k] = v.clone();
    }
    let cases: Vec<Value> = (0..cases)
        .map(|i| json!({"case_id": format!("c{i}"), "input": {"question": "1+1"}, "expected_output": {"answer": "2"}}))
        .collect();
    let body = json!({
        "generation": {"generator": {"name": "openai/chat", "params": generator}},
        "evaluation": {"metrics": [{"name": "builtin/exact_match", "params": {"field": "answer"}}]},
        "datasets": [{"dataset_id": "d", "cases": cases}],
        "seeds": [1],
        "concurrency": 1,
        "cache": false
    });
    let engine = Engine::new(
        Arc::new(MemoryStore::new()),
        Arc::new(Registry::builtin()),
        EngineConfig::default(),
    );
    let request = engine.parse(&body).expect("valid definition");
    let run_id = engine.submit(&request).await.unwrap().into_record().run_id;
    let record = engine
        .execute(&run_id, Observers::default(), RunControl::default())
        .await
        .unwrap();
    (engine, record)
}

#[tokio::test]
async fn no_retry_starts_once_its_wait_would_pass_the_retry_budget() {
    let busy = busy(300).await;
    let base_url = busy.base_url.clone();
    // Attempt 1 at 0 ms, attempt 2 at ~300 ms; a third would start at ~600 ms > 500.
    let (engine, record) = run(
        &base_url,
        "budget",
        json!({"retry_budget_ms": 500, "max_retries": 4}),
        1,
    )
    .await;
    assert_eq!(record.status, RunStatus::Completed);
    assert_eq!(busy.hits(), 2, "one retry, then the budget");
    let cases = engine
        .store()
        .case_records(
            &record.run_id,
            &CaseQuery {
                limit: 10,
                ..CaseQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(cases[0].status, CaseStatus::Failed);
    let error = &cases[0].error.as_ref().unwrap().message;
    assert!(
        error.contains("after 2 attempts; the retry budget of 500 ms would be exceeded"),
        "{error}"
    );
}

#[tokio::test]
async fn tokens_per_minute_paces_requests_by_the_reported_usage() {
    const TOKENS: u64 = 250; // prompt and completion each: 500 per request
    let unlimited = answering(TOKENS).await;
    let base_url = unlimited.base_url.clone();
    let (_, record) = run(&base_url, "free", json!({}), 6).await;
    assert_eq!(record.progress.completed, 6);
    let arrivals = unlimited.arrivals();
    let free = *arrivals.last().unwrap() - arrivals[0];

    // 60000 per minute: 1000 tokens a second, a burst of 1000. Five answered requests
    // (2500 tokens) come before the sixth, so it cannot start before ~1.5 s.
    let limited = answering(TOKENS).await;
    let base_url = limited.base_url.clone();
    let (engine, record) = run(&base_url, "paced", json!({"tokens_per_minute": 60000}), 6).await;
    assert_eq!(record.progress.completed, 6, "{:?}", record.error);
    let arrivals = limited.arrivals();
    let paced = *arrivals.last().unwrap() - arrivals[0];
    assert!(
        paced >= Duration::from_millis(1_400),
        "paced over {paced:?} (unlimited: {free:?})"
    );
    assert!(
        free < Duration::from_millis(1_000),
        "unlimited took {free:?}"
    );
    let events = engine
        .store()
        .events_after(&record.run_id, 0, 10_000)
        .await
        .unwrap();
    let waits: Vec<u64> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ProviderRateLimited { wait_ms, .. } => Some(*wait_ms),
            _ => None,
        })
        .collect();
    assert!(!waits.is_empty(), "rate-limit waits are reported as events");
}
