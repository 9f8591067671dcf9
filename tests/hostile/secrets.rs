//! A provider that echoes the operator's key mangled (prefix dropped, cut short, inside
//! other text): no variant reaches an error, an output, an event, an export or the API.

use crate::common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::IntoResponse;
use serde_json::json;
use tower::ServiceExt;

use themis::api::ApiConfig;
use themis::components::{Outbound, ProviderSpec, Registry};
use themis::engine::{Engine, EngineConfig, RunControl};
use themis::observe::Observers;
use themis::store::{CaseQuery, MemoryStore};

use common::TestApp;
use common::fake_provider::{FakeProvider, Reply};

const KEY: &str = "sk-TOPSECRET-9f8e7d6c5b4a3210";

/// Case `fail`: a 401 quoting the key without its prefix and a 12-character piece of
/// it. Any other case: an answer whose text carries the key's tail.
async fn fake_provider() -> FakeProvider {
    FakeProvider::replying(|body, _| {
        let prompt = body["messages"][0]["content"].as_str().unwrap_or("");
        if prompt.contains("fail") {
            let message = "rate limited for key TOPSECRET-9f8e7d6c5b4a3210; partial=sk-TOPSECRET";
            return Reply::Raw(
                (
                    StatusCode::UNAUTHORIZED,
                    axum::Json(json!({"error": {"message": message}})),
                )
                    .into_response(),
            );
        }
        Reply::text("your key ends 9f8e7d6c5b4a3210", 1)
    })
    .await
}

/// Every piece of the key a reader could use: the key, the key without `sk-`, and
/// each 12-character window.
fn variants() -> Vec<String> {
    let mut out = vec![KEY.to_owned(), KEY.trim_start_matches("sk-").to_owned()];
    for i in 0..=KEY.len() - 12 {
        out.push(KEY[i..i + 12].to_owned());
    }
    out
}

fn assert_clean(what: &str, text: &str) {
    for variant in variants() {
        assert!(
            !text.contains(&variant),
            "{what} holds `{variant}` of the key: {text}"
        );
    }
}

#[tokio::test]
async fn echoed_key_variants_are_redacted_everywhere() {
    let fake = fake_provider().await;
    let base_url = fake.base_url.clone();
    let engine = Engine::new(
        Arc::new(MemoryStore::new()),
        Arc::new(Registry::builtin_with(Outbound {
            providers: vec![ProviderSpec::new("fake", &base_url).unwrap().with_key(KEY)],
            ..Outbound::local()
        })),
        EngineConfig::default(),
    );
    let definition = json!({
        "generation": {"generator": {"name": "openai/chat", "params": {
            "base_url": base_url, "model": "m", "prompt": "{{ input.q }}",
            "max_retries": 0, "timeout_ms": 5000
        }}},
        "evaluation": {"metrics": ["builtin/exact_match"]},
        "datasets": [{"dataset_id": "d", "cases": [
            {"case_id": "fail", "input": {"q": "fail"}, "expected_output": "x"},
            {"case_id": "ok", "input": {"q": "answer"}, "expected_output": "x"}
        ]}],
        "seeds": [1]
    });
    let request = engine.parse(&definition).expect("valid definition");
    let run_id = engine.submit(&request).await.unwrap().into_record().run_id;
    engine
        .execute(&run_id, Observers::default(), RunControl::default())
        .await
        .unwrap();
    let store = engine.store();
    let records = store
        .case_records(
            &run_id,
            &CaseQuery {
                limit: 100,
                ..CaseQuery::default()
            },
        )
        .await
        .unwrap();
    let failed = records.iter().find(|r| r.key.case_id == "fail").unwrap();
    let message = &failed
        .error
        .as_ref()
        .expect("the 401 failed the case")
        .message;
    assert!(message.contains("[redacted]"), "{message}");
    let answered = records.iter().find(|r| r.key.case_id == "ok").unwrap();
    let answered = serde_json::to_string(answered).unwrap();
    assert!(answered.contains("[redacted]"), "{answered}");
    assert_clean("records", &serde_json::to_string(&records).unwrap());
    let events = store.events_after(&run_id, 0, 10_000).await.unwrap();
    assert_clean("events", &serde_json::to_string(&events).unwrap());

    // What the API serves of the run: its page of results, both exports, the run.
    let app = TestApp::new()
        .engine(engine.clone())
        .api(ApiConfig::default())
        .configure(|c| c.max_running_runs = 1)
        .router()
        .router;
    for path in [
        format!("/runs/{run_id}"),
        format!("/runs/{run_id}/results"),
        format!("/runs/{run_id}/results?format=jsonl"),
        format!("/runs/{run_id}/results?format=csv"),
        format!("/runs/{run_id}/events"),
    ] {
        let mut request = Request::get(&path).body(Body::empty()).unwrap();
        if path.ends_with("/events") {
            request
                .headers_mut()
                .insert("accept", "text/event-stream".parse().unwrap());
        }
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let body = axum::body::to_bytes(response.into_body(), 1 << 24)
            .await
            .unwrap();
        assert_clean(&path, &String::from_utf8_lossy(&body));
    }
}
