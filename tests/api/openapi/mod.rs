//! `openapi.yaml` against the real router: the document lists exactly the routes the
//! router serves, and real responses validate against the schemas it declares for them.

mod compare_datasets;
mod document;
mod errors;
mod openai_evals;
mod reviews;
mod runs;

use crate::common;
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use common::TestApp;
use regex::Regex;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use themis::store::{MemoryStore, SqliteStore, Store};
use tower::ServiceExt;

/// Every (method, path) the router in `src/api/*.rs` serves. Keep in sync with the
/// router; the tests below fail when this list, the router and the document disagree.
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/ui"),
    ("GET", "/ui/"),
    ("GET", "/ui/{path}"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/openapi.yaml"),
    ("GET", "/metrics"),
    ("POST", "/runs"),
    ("GET", "/runs"),
    ("GET", "/runs/{run_id}"),
    ("GET", "/runs/{run_id}/results"),
    ("GET", "/runs/{run_id}/cases/{case_index}"),
    ("GET", "/runs/{run_id}/cases/{case_index}/reviews"),
    ("POST", "/runs/{run_id}/cases/{case_index}/reviews"),
    ("GET", "/runs/{run_id}/agreement"),
    ("GET", "/runs/{run_id}/events"),
    ("POST", "/runs/{run_id}/cancel"),
    ("POST", "/runs/{run_id}/rejudge"),
    ("POST", "/runs/{run_id}/retry"),
    ("PUT", "/datasets/{dataset_id}"),
    ("GET", "/datasets"),
    ("GET", "/datasets/{dataset_id}"),
    ("GET", "/datasets/{dataset_id}/cases"),
    ("DELETE", "/datasets/{dataset_id}"),
    ("GET", "/runs/{run_id}/compare"),
    ("GET", "/runs/{run_id}/compare/cases"),
    ("GET", "/compare"),
    // OpenAI's Evals API, served by `openai_evals.rs` (they need an eval, a run, a file).
    ("POST", "/v1/evals"),
    ("GET", "/v1/evals"),
    ("GET", "/v1/evals/{eval_id}"),
    ("POST", "/v1/evals/{eval_id}"),
    ("POST", "/v1/evals/{eval_id}/runs"),
    ("GET", "/v1/evals/{eval_id}/runs"),
    ("GET", "/v1/evals/{eval_id}/runs/{eval_run_id}"),
    ("POST", "/v1/evals/{eval_id}/runs/{eval_run_id}"),
    ("POST", "/v1/evals/{eval_id}/runs/{eval_run_id}/cancel"),
    ("GET", "/v1/evals/{eval_id}/runs/{eval_run_id}/output_items"),
    (
        "GET",
        "/v1/evals/{eval_id}/runs/{eval_run_id}/output_items/{output_item_id}",
    ),
    ("POST", "/v1/files"),
    ("GET", "/v1/files"),
    ("GET", "/v1/files/{file_id}"),
    ("GET", "/v1/files/{file_id}/content"),
    ("DELETE", "/v1/files/{file_id}"),
    ("DELETE", "/v1/evals/{eval_id}/runs/{eval_run_id}"),
    ("DELETE", "/v1/evals/{eval_id}"),
    // Last: the other routes need the run.
    ("DELETE", "/runs/{run_id}"),
];

const HTTP_METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// A well-formed run id no run has.
const UNKNOWN_RUN: &str = "run_00000000000000000000000000000000";

fn repo_file(path: &str) -> String {
    let full = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("reading {full}: {e}"))
}

fn example(name: &str) -> Value {
    serde_json::from_str(&repo_file(&format!("examples/{name}"))).expect("example is JSON")
}

fn document() -> Value {
    serde_yaml_ng::from_str(&repo_file("openapi.yaml")).expect("openapi.yaml parses as YAML")
}

/// Resolves a local `$ref` (`#/...`) of the document, following chains of refs.
fn deref<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    let mut current = value;
    for _ in 0..16 {
        match current.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let pointer = reference
                    .strip_prefix('#')
                    .unwrap_or_else(|| panic!("non-local $ref {reference}"));
                current = doc
                    .pointer(pointer)
                    .unwrap_or_else(|| panic!("$ref {reference} does not resolve"));
            }
            None => return current,
        }
    }
    panic!("$ref chain too long at {value}");
}

/// A validator for `schema` (a schema of the document) with the document's
/// components embedded, so `#/components/schemas/...` refs resolve.
fn validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    let mut root = schema.as_object().cloned().unwrap_or_default();
    assert!(!root.contains_key("components"));
    root.insert("components".into(), doc["components"].clone());
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&Value::Object(root))
        .unwrap_or_else(|e| panic!("schema {schema} does not compile: {e}"))
}

fn assert_valid(validator: &jsonschema::Validator, instance: &Value, what: &str) {
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("  at `{}`: {e}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not match the document:\n{}\ninstance: {}",
        errors.join("\n"),
        serde_json::to_string_pretty(instance).unwrap()
    );
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn app_with(api_keys: Vec<String>) -> Router {
    app_on(Arc::new(MemoryStore::new()), api_keys)
}

/// The real router over `store` (the in-memory store unless a test says otherwise).
fn app_on(store: Arc<dyn Store>, api_keys: Vec<String>) -> Router {
    TestApp::new()
        .store(store)
        .api_keys(api_keys)
        .configure(|c| c.max_running_runs = 2)
        .router()
        .router
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body of a {} reply is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header"))
    }
}

/// The API under test and the document it is checked against.
struct Harness {
    app: Router,
    doc: Value,
    /// Keeps a database directory alive as long as the harness.
    _dir: Option<tempfile::TempDir>,
}

enum Payload {
    None,
    Json(Value),
    Raw(&'static str, Vec<u8>),
}

impl Harness {
    fn new() -> Self {
        Harness {
            app: app_with(Vec::new()),
            doc: document(),
            _dir: None,
        }
    }

    /// Over the SQLite store (its summaries and listings are queries of their own), in
    /// a database file as `themis serve` uses it.
    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("themis.db"))
            .await
            .expect("SQLite store");
        Harness {
            app: app_on(Arc::new(store), Vec::new()),
            doc: document(),
            _dir: Some(dir),
        }
    }

    async fn send(
        &self,
        method: Method,
        uri: &str,
        payload: Payload,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut builder = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let body = match payload {
            Payload::None => Body::empty(),
            Payload::Json(value) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Body::from(serde_json::to_vec(&value).unwrap())
            }
            Payload::Raw(content_type, bytes) => {
                if !content_type.is_empty() {
                    builder = builder.header(header::CONTENT_TYPE, content_type);
                }
                Body::from(bytes)
            }
        };
        let response = self
            .app
            .clone()
            .oneshot(builder.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = tokio::time::timeout(
            Duration::from_secs(60),
            axum::body::to_bytes(response.into_body(), usize::MAX),
        )
        .await
        .unwrap_or_else(|_| panic!("body of {uri} did not end"))
        .expect("body readable")
        .to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, uri: &str) -> Reply {
        self.send(Method::GET, uri, Payload::None, &[]).await
    }

    async fn post(&self, uri: &str, body: Value) -> Reply {
        self.send(Method::POST, uri, Payload::Json(body), &[]).await
    }

    /// The document's response object for this operation and status; fails when the
    /// document does not list the status.
    fn response_spec(&self, method: &Method, template: &str, status: StatusCode) -> &Value {
        let operation = &self.doc["paths"][template][method.as_str().to_lowercase()];
        assert!(
            operation.is_object(),
            "no operation {method} {template} in the document"
        );
        let response = &operation["responses"][status.as_str()];
        assert!(
            !response.is_null(),
            "{method} {template} answered {status}, which the document does not list"
        );
        deref(&self.doc, response)
    }

    /// Checks the reply against the document: its status is listed for the operation
    /// and its JSON body matches the schema listed for that status. Returns the body.
    fn check(&self, method: Method, template: &str, reply: &Reply, expected: StatusCode) -> Value {
        assert_eq!(
            reply.status,
            expected,
            "{method} {template}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        let spec = self.response_spec(&method, template, reply.status);
        let schema = &spec["content"]["application/json"]["schema"];
        assert!(
            schema.is_object(),
            "{method} {template} {}: no JSON schema in the document",
            reply.status
        );
        assert!(
            reply
                .header(header::CONTENT_TYPE)
                .is_some_and(|t| t.starts_with("application/json")),
            "{method} {template} {}: content type {:?}",
            reply.status,
            reply.header(header::CONTENT_TYPE)
        );
        for (name, header_spec) in spec["headers"].as_object().into_iter().flatten() {
            let header_spec = deref(&self.doc, header_spec);
            if header_spec["required"] == json!(false) && !reply.headers.contains_key(name.as_str())
            {
                continue;
            }
            let value = reply.headers.get(name.as_str()).unwrap_or_else(|| {
                panic!("{method} {template} {}: no {name} header", reply.status)
            });
            let value = json!(value.to_str().unwrap());
            assert_valid(
                &validator(&self.doc, &header_spec["schema"]),
                &value,
                &format!("header {name} of {method} {template} {}", reply.status),
            );
        }
        let body = reply.json();
        assert_valid(
            &validator(&self.doc, schema),
            &body,
            &format!("{method} {template} {}", reply.status),
        );
        body
    }

    /// Polls the run until it reaches a terminal status.
    async fn wait_finished(&self, run_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let reply = self.get(&format!("/runs/{run_id}")).await;
            let view = self.check(Method::GET, "/runs/{run_id}", &reply, StatusCode::OK);
            if ["completed", "failed", "cancelled"].contains(&view["status"].as_str().unwrap()) {
                return view;
            }
            assert!(
                Instant::now() < deadline,
                "run {run_id} did not finish: {view}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls the run until it is executing.
    async fn wait_running(&self, run_id: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let view = self.get(&format!("/runs/{run_id}")).await.json();
            match view["status"].as_str().unwrap() {
                "running" => return,
                "queued" => {}
                other => panic!("run {run_id} is {other}, expected it running"),
            }
            assert!(Instant::now() < deadline, "run {run_id} did not start");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Creates the run of `definition`, checks the reply and waits until it finished.
    async fn run(&self, definition: Value) -> (String, Value) {
        let reply = self.post("/runs", definition).await;
        let view = self.check(Method::POST, "/runs", &reply, StatusCode::ACCEPTED);
        let run_id = view["run_id"].as_str().unwrap().to_owned();
        assert_eq!(
            reply.header(header::LOCATION),
            Some(format!("/runs/{run_id}").as_str())
        );
        let finished = self.wait_finished(&run_id).await;
        (run_id, finished)
    }

    /// Reads the whole event stream of a finished run and validates every event.
    async fn events(&self, uri: &str, headers: &[(&str, &str)]) -> Vec<Value> {
        let reply = self.send(Method::GET, uri, Payload::None, headers).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        let spec = self.response_spec(&Method::GET, "/runs/{run_id}/events", reply.status);
        let media = &spec["content"]["text/event-stream"];
        assert!(
            media.is_object(),
            "events are not documented as text/event-stream"
        );
        assert_eq!(
            reply.header(header::CONTENT_TYPE),
            Some("text/event-stream")
        );
        let validator = validator(&self.doc, &media["x-sse-data-schema"]);
        let text = String::from_utf8(reply.body).expect("UTF-8 stream");
        let mut events = Vec::new();
        for frame in text.split("\n\n").filter(|f| !f.trim().is_empty()) {
            let (mut id, mut event, mut data) = (None, None, Vec::new());
            for line in frame.lines() {
                if line.starts_with(':') {
                    continue;
                }
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "id" => id = Some(value.to_owned()),
                    "event" => event = Some(value.to_owned()),
                    "data" => data.push(value.to_owned()),
                    other => panic!("unexpected SSE field {other:?} in {frame:?}"),
                }
            }
            if data.is_empty() {
                continue;
            }
            let data: Value = serde_json::from_str(&data.join("\n")).expect("event data is JSON");
            assert_valid(&validator, &data, &format!("event {data}"));
            assert_eq!(id, Some(data["seq"].to_string()), "`id:` is the seq");
            assert_eq!(
                event.as_deref(),
                data["event_type"].as_str(),
                "`event:` is the event_type"
            );
            events.push(data);
        }
        events
    }
}

fn event_types(events: &[Value]) -> BTreeSet<&str> {
    events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect()
}

/// Collects every `$ref` string of a document.
fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                match (key.as_str(), item) {
                    ("$ref", Value::String(reference)) => out.push(reference),
                    _ => refs(item, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| refs(item, out)),
        _ => {}
    }
}

/// An echo run over cases c0..c5 answering `x` except where `wrong`.
fn echo_definition(wrong: &[usize], metric: &str) -> Value {
    let cases: Vec<Value> = (0..6)
        .map(|i| {
            let answer = if wrong.contains(&i) { "no" } else { "x" };
            json!({"case_id": format!("c{i}"), "input": {"answer": answer}, "expected_output": "x"})
        })
        .collect();
    json!({
        "generation": {"generator": {"name": "builtin/echo", "params": {"field": "answer"}}},
        "evaluation": {"metrics": [metric]},
        "datasets": [{"dataset_id": "d", "cases": cases}],
        "seeds": [3]
    })
}
