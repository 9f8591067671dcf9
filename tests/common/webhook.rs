//! The one webhook receiver of the tests: a real listener on a loopback port that takes
//! `POST` on any path, answers from a script (the last entry repeats), can hold every
//! delivery until the test opens a gate, and records every attempt.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

/// One delivery attempt as the receiver got it, with the status it answered.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
    pub status: StatusCode,
}

struct ReceiverState {
    script: Vec<Response<String>>,
    gate: Option<Arc<Semaphore>>,
    attempts: Mutex<Vec<Delivery>>,
}

/// A webhook receiver; its server task ends when the value is dropped.
pub struct WebhookReceiver {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    pub port: u16,
    state: Arc<ReceiverState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A scripted answer: `status` with `headers` and an empty body.
pub fn answer(status: StatusCode, headers: &[(HeaderName, &str)]) -> Response<String> {
    let mut response = Response::new(String::new());
    *response.status_mut() = status;
    for (name, value) in headers {
        response
            .headers_mut()
            .insert(name.clone(), value.parse().unwrap());
    }
    response
}

impl WebhookReceiver {
    /// Takes every delivery with 200.
    pub async fn start() -> WebhookReceiver {
        Self::scripted(vec![answer(StatusCode::OK, &[])]).await
    }

    /// Answers every delivery with `status`.
    pub async fn answering(status: StatusCode) -> WebhookReceiver {
        Self::scripted(vec![answer(status, &[])]).await
    }

    /// Answers the first `failures` attempts with 500, then 200.
    pub async fn failing_first(failures: usize) -> WebhookReceiver {
        let mut script: Vec<_> = (0..failures)
            .map(|_| answer(StatusCode::INTERNAL_SERVER_ERROR, &[]))
            .collect();
        script.push(answer(StatusCode::OK, &[]));
        Self::scripted(script).await
    }

    /// Answers attempt `i` with `script[i]` (the last entry repeats).
    pub async fn scripted(script: Vec<Response<String>>) -> WebhookReceiver {
        Self::serve(script, None).await
    }

    /// Holds every delivery until [`WebhookReceiver::open`] lets it through (then 200);
    /// a closed gate answers 503.
    pub async fn gated() -> WebhookReceiver {
        let gate = Arc::new(Semaphore::new(0));
        Self::serve(vec![answer(StatusCode::OK, &[])], Some(gate)).await
    }

    async fn serve(script: Vec<Response<String>>, gate: Option<Arc<Semaphore>>) -> WebhookReceiver {
        assert!(!script.is_empty(), "a receiver answers something");
        let state = Arc::new(ReceiverState {
            script,
            gate,
            attempts: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .fallback(axum::routing::post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port for the webhook receiver");
        let addr = listener.local_addr().expect("its address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        WebhookReceiver {
            base: format!("http://{addr}"),
            port: addr.port(),
            state,
            task,
        }
    }

    /// The URL of `path` on the receiver (`/hook` by convention).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Lets `n` held deliveries (of a gated receiver) through.
    pub fn open(&self, n: usize) {
        self.state
            .gate
            .as_ref()
            .expect("a gated receiver")
            .add_permits(n);
    }

    /// Closes the gate for good: held and later deliveries get 503.
    pub fn close(&self) {
        self.state.gate.as_ref().expect("a gated receiver").close();
    }

    /// Every attempt so far, answered or held.
    pub fn attempts(&self) -> Vec<Delivery> {
        self.state.attempts.lock().unwrap().clone()
    }

    /// The attempts answered with a 2xx.
    pub fn delivered(&self) -> Vec<Delivery> {
        self.attempts()
            .into_iter()
            .filter(|d| d.status.is_success())
            .collect()
    }
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let index = {
        let mut attempts = state.attempts.lock().unwrap();
        attempts.push(Delivery {
            path: uri.path().to_owned(),
            headers,
            body,
            at: Instant::now(),
            status: StatusCode::OK,
        });
        attempts.len() - 1
    };
    let pick = &state.script[index.min(state.script.len() - 1)];
    let mut status = pick.status();
    if let Some(gate) = &state.gate {
        match gate.acquire().await {
            Ok(permit) => permit.forget(),
            Err(_) => status = StatusCode::SERVICE_UNAVAILABLE,
        }
    }
    state.attempts.lock().unwrap()[index].status = status;
    let mut response = Response::new(pick.body().clone());
    *response.status_mut() = status;
    *response.headers_mut() = pick.headers().clone();
    response.into_response()
}

/// A listener that accepts connections and never answers (a hung webhook receiver or
/// OTLP collector); returns its base URL `http://127.0.0.1:<port>`.
pub async fn hanging_listener() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    format!("http://{addr}")
}

/// A TCP port nothing listens on.
pub async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}
