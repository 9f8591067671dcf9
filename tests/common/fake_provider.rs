//! A fake OpenAI-compatible provider on a loopback port: answers `POST
//! /v1/chat/completions` with `{"answer": "2"}` and fixed token counts, after refusing
//! the first `rate_limited` requests with `429` (asking for a 5 ms wait).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;

#[derive(Clone)]
pub struct FakeProvider {
    /// Its base URL, `http://127.0.0.1:<port>/v1`.
    pub base_url: String,
    /// Requests received so far.
    pub requests: Arc<AtomicUsize>,
    rate_limited: usize,
    tokens: u64,
}

impl FakeProvider {
    /// Serves until the test's runtime ends. Each answer reports `tokens` prompt and
    /// `tokens` completion tokens.
    pub async fn start(rate_limited: usize, tokens: u64) -> FakeProvider {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port for the fake provider");
        let addr = listener.local_addr().expect("its address");
        let fake = FakeProvider {
            base_url: format!("http://{addr}/v1"),
            requests: Arc::default(),
            rate_limited,
            tokens,
        };
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .with_state(fake.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        fake
    }
}

async fn chat(State(fake): State<FakeProvider>) -> Response {
    if fake.requests.fetch_add(1, Ordering::SeqCst) < fake.rate_limited {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after-ms", "5")],
            "slow down",
        )
            .into_response();
    }
    axum::Json(json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "{\"answer\": \"2\"}"}}],
        "usage": {"prompt_tokens": fake.tokens, "completion_tokens": fake.tokens,
                  "total_tokens": 2 * fake.tokens}
    }))
    .into_response()
}
