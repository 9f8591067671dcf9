//! The one fake OpenAI-compatible provider of the tests: a real listener on a loopback
//! port that answers `POST` (any path; `base_url` ends in `/v1`) with whatever the
//! test's handler decides, and records every request it gets.
//!
//! `FakeProvider::replying(|body, index| Reply::...)` is the general form; `start`,
//! `answering`, `fixed` and `busy` are the shapes the tests keep asking for.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// What the fake answers one request with.
pub enum Reply {
    /// 200 with these choices' contents; the usage counts characters (prompt: every
    /// message's content, completion: every choice), so a test can add them up.
    Answer(Vec<String>),
    /// 200 with these choices, reporting `tokens` prompt and `tokens` completion tokens.
    AnswerWithTokens(Vec<String>, u64),
    /// A status with a body and optional `Retry-After`.
    Status(u16, String, Option<&'static str>),
    /// A status with a body and these headers (e.g. `retry-after-ms`).
    StatusWithHeaders(u16, String, Vec<(&'static str, String)>),
    /// A response of the test's own, as is.
    Raw(Response),
    /// 200 with a body that is not JSON.
    Malformed,
    /// Waits, then replies.
    After(Duration, Box<Reply>),
    /// 200 with one choice that calls these tools (`(name, arguments)`; several make
    /// parallel calls), reporting `tokens` prompt and completion tokens. Call ids are
    /// `call_{turn}_{j}`, `turn` counting the request's assistant messages, so a
    /// scripted conversation has the same ids however often it is replayed.
    ToolCalls(Vec<(&'static str, Value)>, u64),
}

impl Reply {
    /// One choice with `content`, reporting `tokens` prompt and completion tokens.
    pub fn text(content: impl Into<String>, tokens: u64) -> Reply {
        Reply::AnswerWithTokens(vec![content.into()], tokens)
    }
}

type Handler = Box<dyn Fn(&Value, usize) -> Reply + Send + Sync>;

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub body: Value,
    pub authorization: Option<String>,
    pub at: Instant,
}

struct FakeState {
    handler: Handler,
    seen: Mutex<Vec<Seen>>,
    /// Tokens the fake reported in successful answers: (prompt, completion).
    reported: Mutex<(u64, u64)>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Waited before every reply (a slow provider).
    delay: Duration,
}

/// A fake provider; its server task ends when the value is dropped.
pub struct FakeProvider {
    /// Its base URL, `http://127.0.0.1:<port>/v1`.
    pub base_url: String,
    pub port: u16,
    /// Requests received so far.
    pub requests: Arc<AtomicUsize>,
    state: Arc<FakeState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeProvider {
    /// Answers `{"answer": "2"}` with `tokens` prompt and `tokens` completion tokens,
    /// after refusing the first `rate_limited` requests with `429` (asking for a 5 ms
    /// wait).
    pub async fn start(rate_limited: usize, tokens: u64) -> FakeProvider {
        Self::replying(move |_, index| {
            if index < rate_limited {
                Reply::StatusWithHeaders(
                    429,
                    "slow down".into(),
                    vec![("retry-after-ms", "5".into())],
                )
            } else {
                Reply::text("{\"answer\": \"2\"}", tokens)
            }
        })
        .await
    }

    /// Answers every request with one choice, `answer(last user message)`, reporting one
    /// prompt and one completion token.
    pub async fn answering(
        answer: impl Fn(&str) -> String + Send + Sync + 'static,
    ) -> FakeProvider {
        Self::replying(move |body, _| Reply::text(answer(&user_text(body)), 1)).await
    }

    /// Answers every request with `content` (one token each way), after `delay`.
    pub async fn fixed(content: &str, delay: Duration) -> FakeProvider {
        let content = content.to_owned();
        Self::start_with(delay, move |_, _| Reply::text(content.clone(), 1)).await
    }

    /// Answers every request with `handler(body, index of the request)`.
    pub async fn replying(
        handler: impl Fn(&Value, usize) -> Reply + Send + Sync + 'static,
    ) -> FakeProvider {
        Self::start_with(Duration::ZERO, handler).await
    }

    /// [`FakeProvider::replying`], waiting `delay` before every reply.
    pub async fn start_with(
        delay: Duration,
        handler: impl Fn(&Value, usize) -> Reply + Send + Sync + 'static,
    ) -> FakeProvider {
        let state = Arc::new(FakeState {
            handler: Box::new(handler),
            seen: Mutex::new(Vec::new()),
            reported: Mutex::new((0, 0)),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            delay,
        });
        let requests = Arc::new(AtomicUsize::new(0));
        let app = axum::Router::new()
            .fallback(axum::routing::post(chat))
            .with_state((state.clone(), requests.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port for the fake provider");
        let port = listener.local_addr().expect("its address").port();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeProvider {
            base_url: format!("http://127.0.0.1:{port}/v1"),
            port,
            requests,
            state,
            task,
        }
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// How many requests came.
    pub fn hits(&self) -> usize {
        self.state.seen.lock().unwrap().len()
    }

    pub fn bodies(&self) -> Vec<Value> {
        self.seen().into_iter().map(|s| s.body).collect()
    }

    pub fn authorizations(&self) -> Vec<Option<String>> {
        self.seen().into_iter().map(|s| s.authorization).collect()
    }

    pub fn arrivals(&self) -> Vec<Instant> {
        self.seen().into_iter().map(|s| s.at).collect()
    }

    /// The last user message of every request.
    pub fn prompts(&self) -> Vec<String> {
        self.seen().iter().map(|s| user_text(&s.body)).collect()
    }

    /// Tokens reported in successful answers so far: (prompt, completion).
    pub fn reported(&self) -> (u64, u64) {
        *self.state.reported.lock().unwrap()
    }

    /// The most requests it had in flight at once.
    /// Requests being answered now.
    pub fn in_flight(&self) -> usize {
        self.state.in_flight.load(Ordering::SeqCst)
    }

    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }
}

type Shared = (Arc<FakeState>, Arc<AtomicUsize>);

async fn chat(
    State((state, requests)): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let index = {
        let mut seen = state.seen.lock().unwrap();
        seen.push(Seen {
            path: uri.path().to_owned(),
            body: body.clone(),
            authorization: headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            at: Instant::now(),
        });
        seen.len() - 1
    };
    requests.fetch_add(1, Ordering::SeqCst);
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    // Counted out however the request ends: a client that dies mid-request (a killed
    // instance) drops this handler at its next await.
    let counted = InFlight(&state.in_flight);
    if !state.delay.is_zero() {
        tokio::time::sleep(state.delay).await;
    }
    let mut reply = (state.handler)(&body, index);
    while let Reply::After(delay, next) = reply {
        tokio::time::sleep(delay).await;
        reply = *next;
    }
    drop(counted);
    match reply {
        Reply::Answer(contents) => {
            // Deterministic token counts the test can add up: characters.
            let prompt: u64 = body["messages"]
                .as_array()
                .map(|m| {
                    m.iter()
                        .map(|m| m["content"].as_str().unwrap_or("").len() as u64)
                        .sum()
                })
                .unwrap_or(0);
            let completion: u64 = contents.iter().map(|c| c.len() as u64).sum();
            completion_response(&state, &body, index, &contents, prompt, completion)
        }
        Reply::AnswerWithTokens(contents, tokens) => {
            completion_response(&state, &body, index, &contents, tokens, tokens)
        }
        Reply::Status(status, text, retry_after) => {
            let mut response = (StatusCode::from_u16(status).unwrap(), text).into_response();
            if let Some(after) = retry_after {
                response
                    .headers_mut()
                    .insert("retry-after", after.parse().unwrap());
            }
            response
        }
        Reply::StatusWithHeaders(status, text, headers) => {
            let mut response = (StatusCode::from_u16(status).unwrap(), text).into_response();
            for (name, value) in headers {
                response.headers_mut().insert(name, value.parse().unwrap());
            }
            response
        }
        Reply::ToolCalls(calls, tokens) => {
            {
                let mut reported = state.reported.lock().unwrap();
                reported.0 += tokens;
                reported.1 += tokens;
            }
            let turn = turn(&body);
            let calls: Vec<Value> = calls
                .iter()
                .enumerate()
                .map(|(j, (name, arguments))| {
                    json!({"id": format!("call_{turn}_{j}"), "type": "function",
                           "function": {"name": name, "arguments": arguments.to_string()}})
                })
                .collect();
            axum::Json(json!({
                "id": format!("chatcmpl-{index}"),
                "object": "chat.completion",
                "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "tool_calls",
                             "message": {"role": "assistant", "content": null, "tool_calls": calls}}],
                "usage": {"prompt_tokens": tokens, "completion_tokens": tokens,
                          "total_tokens": 2 * tokens}
            }))
            .into_response()
        }
        Reply::Raw(response) => response,
        Reply::Malformed => (StatusCode::OK, "<html>definitely not json").into_response(),
        Reply::After(..) => unreachable!(),
    }
}

fn completion_response(
    state: &FakeState,
    body: &Value,
    index: usize,
    contents: &[String],
    prompt: u64,
    completion: u64,
) -> Response {
    {
        let mut reported = state.reported.lock().unwrap();
        reported.0 += prompt;
        reported.1 += completion;
    }
    let choices: Vec<Value> = contents
        .iter()
        .enumerate()
        .map(|(i, c)| {
            json!({"index": i, "message": {"role": "assistant", "content": c},
                   "finish_reason": "stop"})
        })
        .collect();
    axum::Json(json!({
        "id": format!("chatcmpl-{index}"),
        "object": "chat.completion",
        "model": body["model"],
        "choices": choices,
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                  "total_tokens": prompt + completion}
    }))
    .into_response()
}

/// How many assistant messages a request carries: the turn of an agent loop it is.
pub fn turn(body: &Value) -> usize {
    body["messages"]
        .as_array()
        .map_or(0, |m| m.iter().filter(|m| m["role"] == "assistant").count())
}

/// The `tool` messages of a request: (tool_call_id, content).
pub fn tool_messages(body: &Value) -> Vec<(String, String)> {
    body["messages"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter(|m| m["role"] == "tool")
                .map(|m| {
                    (
                        m["tool_call_id"].as_str().unwrap_or("").to_owned(),
                        m["content"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The text of the last user message of a request.
pub fn user_text(body: &Value) -> String {
    body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_owned()
}

/// One request in flight, counted until dropped.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
