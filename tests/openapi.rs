//! `openapi.yaml` against the real router: the document lists exactly the routes the
//! router serves, and real responses validate against the schemas it declares for them.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use regex::Regex;
use serde_json::{Value, json};
use tower::ServiceExt;

use themis::store::{MemoryStore, SqliteStore, Store};

use common::TestApp;

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

#[test]
fn document_is_openapi_3_1_and_lists_exactly_the_routes() {
    let doc = document();
    let version = doc["openapi"].as_str().expect("`openapi` is a string");
    assert!(version.starts_with("3.1"), "openapi is {version}");

    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().unwrap().keys() {
            if HTTP_METHODS.contains(&method.as_str()) {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(method, path)| (method.to_string(), path.to_string()))
        .collect();
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from openapi.yaml: {undocumented:?}"
    );
    assert!(
        unrouted.is_empty(),
        "openapi.yaml documents routes the router lacks: {unrouted:?}"
    );

    // Every operation has a unique operationId and at least one success response.
    let mut ids = BTreeSet::new();
    for (method, path) in &documented {
        let operation = &doc["paths"][path][method.to_lowercase()];
        let id = operation["operationId"].as_str().expect("operationId");
        assert!(ids.insert(id.to_owned()), "duplicate operationId {id}");
        let statuses: Vec<&String> = operation["responses"].as_object().unwrap().keys().collect();
        assert!(
            statuses
                .iter()
                .any(|s| s.starts_with('2') || s.as_str() == "308"),
            "{method} {path}: no 2xx (or permanent redirect) response"
        );
    }

    // Every $ref resolves.
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for reference in all {
        deref(&doc, &json!({"$ref": reference}));
    }

    // Every schema compiles.
    for name in doc["components"]["schemas"].as_object().unwrap().keys() {
        validator(&doc, &schema_ref(name));
    }
}

#[test]
fn document_enums_match_the_source() {
    let doc = document();
    let schemas = &doc["components"]["schemas"];
    let strings = |value: &Value| -> BTreeSet<String> {
        value
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };

    // Event types: the names `EventKind::event_type` returns.
    let source = repo_file("src/model/event.rs");
    let pattern = Regex::new(r#"EventKind::\w+ \{ \.\. \} => "(\w+)""#).unwrap();
    let in_source: BTreeSet<String> = pattern
        .captures_iter(&source)
        .map(|c| c[1].to_owned())
        .collect();
    assert!(
        in_source.len() >= 18,
        "could not read event types from src/model/event.rs"
    );
    assert_eq!(
        strings(&schemas["EventType"]["enum"]),
        in_source,
        "EventType enum"
    );
    let mapped: BTreeSet<String> = schemas["RunEvent"]["discriminator"]["mapping"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(mapped, in_source, "RunEvent discriminator mapping");
    assert_eq!(
        schemas["RunEvent"]["oneOf"].as_array().unwrap().len(),
        in_source.len()
    );
    for (event_type, target) in schemas["RunEvent"]["discriminator"]["mapping"]
        .as_object()
        .unwrap()
    {
        let reference = json!({ "$ref": target });
        let payload = deref(&doc, &reference);
        assert_eq!(
            payload["properties"]["event_type"]["const"],
            json!(event_type),
            "{target}"
        );
    }

    // Error codes: those `ApiError` answers with.
    let bad_request = Regex::new(r#"bad_request\(\s*"(\w+)""#).unwrap();
    let parts = Regex::new(r#"\(\s*StatusCode::\w+,\s*"(\w+)"\s*\)"#).unwrap();
    let mut codes = BTreeSet::new();
    let api_dir = format!("{}/src/api", env!("CARGO_MANIFEST_DIR"));
    for entry in std::fs::read_dir(&api_dir).expect("src/api") {
        let source = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for pattern in [&bad_request, &parts] {
            codes.extend(pattern.captures_iter(&source).map(|c| c[1].to_owned()));
        }
    }
    assert!(codes.len() >= 10, "could not read error codes from src/api");
    assert_eq!(
        strings(&schemas["Error"]["properties"]["error"]["properties"]["code"]["enum"]),
        codes
    );

    // Top-level fields of a definition and of a rejudge body.
    let definition = repo_file("src/engine/definition/mod.rs");
    let quoted = Regex::new(r#""(\w+)""#).unwrap();
    let fields = |name: &str| -> BTreeSet<String> {
        let pattern =
            Regex::new(&format!(r"const {name}: \[&str; \d+\] =\s*\[([^\]]*)\]")).unwrap();
        let list = &pattern
            .captures(&definition)
            .unwrap_or_else(|| panic!("no {name} in src/engine/definition/mod.rs"))[1];
        quoted
            .captures_iter(list)
            .map(|c| c[1].to_owned())
            .collect()
    };
    let keys = |schema: &Value| -> BTreeSet<String> {
        schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    let with = |base: &BTreeSet<String>, extra: &[&str]| -> BTreeSet<String> {
        base.iter()
            .cloned()
            .chain(extra.iter().map(|s| s.to_string()))
            .collect()
    };
    let logical = fields("LOGICAL_FIELDS");
    let runtime = fields("RUNTIME_FIELDS");
    let labels = fields("LABEL_FIELDS");
    assert_eq!(labels.len(), 3, "{labels:?}");
    assert_eq!(
        keys(&schemas["Experiment"]),
        logical
            .union(&runtime)
            .chain(labels.iter())
            .cloned()
            .collect()
    );
    let forms = &schemas["RejudgeRequest"]["oneOf"];
    assert_eq!(
        keys(&forms[0]),
        with(&runtime, &["parsers", "metrics", "judges"])
    );
    assert_eq!(keys(&forms[1]), with(&runtime, &["evaluation"]));
    // Plus `traceparent`, which comes from the request header, never the body.
    assert_eq!(
        keys(&schemas["StoredRuntimeOptions"]),
        with(&runtime, &["traceparent"])
    );

    // Run statuses.
    let statuses: BTreeSet<String> = ["queued", "running", "completed", "failed", "cancelled"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(strings(&schemas["RunStatus"]["enum"]), statuses);
}

#[test]
fn examples_match_the_experiment_schema() {
    let doc = document();
    let experiment = validator(&doc, &schema_ref("Experiment"));
    for name in ["observe.json", "arithmetic.json"] {
        assert_valid(&experiment, &example(name), name);
    }
    let rejudge = validator(&doc, &schema_ref("RejudgeRequest"));
    for body in [
        json!({}),
        json!({"metrics": ["builtin/exact_match"], "concurrency": 2}),
        json!({"evaluation": {"metrics": [{"name": "builtin/exact_match", "id": "em"}]}}),
    ] {
        assert_valid(&rejudge, &body, &format!("rejudge body {body}"));
    }
    assert!(!rejudge.is_valid(&json!({"evaluation": {}, "metrics": []})));
    assert!(!experiment.is_valid(
        &json!({"generation": {"generator": "x"}, "evaluation": {}, "datasets": [], "seeds": [1]})
    ));
}

#[tokio::test]
async fn every_documented_route_is_served() {
    let h = Harness::new();
    let (run_id, _) = h.run(example("observe.json")).await;
    // A second run over the same cases, for the comparison routes.
    let mut other = example("observe.json");
    other["generation"]["reducer"] = json!("builtin/first");
    let (other_id, _) = h.run(other).await;
    for (method, template) in ROUTES {
        let method: Method = method.parse().unwrap();
        let uri = template
            .replace("{run_id}", &run_id)
            .replace("{dataset_id}", "uploaded")
            .replace("{case_index}", "0")
            .replace("{path}", "js/main.js");
        let uri = match *template {
            "/runs/{run_id}/compare" | "/runs/{run_id}/compare/cases" => {
                format!("{uri}?baseline={other_id}")
            }
            "/compare" => format!("{uri}?runs={run_id},{other_id}"),
            // With its rejudges and retries.
            "/runs/{run_id}" if method == Method::DELETE => format!("{uri}?cascade=true"),
            _ => uri,
        };
        let payload = match (method.as_str(), *template) {
            ("POST", "/runs") => Payload::Json(example("observe.json")),
            ("POST", "/runs/{run_id}/rejudge") => {
                Payload::Json(json!({"metrics": ["builtin/exact_match"]}))
            }
            ("POST", "/runs/{run_id}/cases/{case_index}/reviews") => {
                Payload::Json(json!({"scores": {"builtin/exact_match": 1}}))
            }
            ("PUT", "/datasets/{dataset_id}") => Payload::Raw(
                "application/x-ndjson",
                br#"{"case_id": "a", "input": "x", "expected_output": "x"}"#.to_vec(),
            ),
            _ => Payload::None,
        };
        if method == Method::DELETE && *template == "/runs/{run_id}" {
            // The rejudge and retry above must have finished for the cascade.
            let derived = h.get(&format!("/runs?parent_run_id={run_id}")).await.json();
            for child in derived["runs"].as_array().unwrap() {
                h.wait_finished(child["run_id"].as_str().unwrap()).await;
            }
        }
        let reply = h.send(method.clone(), &uri, payload, &[]).await;
        assert_ne!(
            reply.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {uri}"
        );
        let fallback = reply.status == StatusCode::NOT_FOUND
            && serde_json::from_slice::<Value>(&reply.body)
                .is_ok_and(|body| body["error"]["message"] == "no such endpoint");
        assert!(!fallback, "{method} {uri} hit the fallback");
        assert!(
            reply.status.is_success() || reply.status == StatusCode::PERMANENT_REDIRECT,
            "{method} {uri}: {}",
            reply.status
        );
        // The status is one the document lists for the operation.
        h.response_spec(&method, template, reply.status);
    }
}

#[tokio::test]
async fn served_document_is_the_file() {
    let h = Harness::new();
    let reply = h.get("/openapi.yaml").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header(header::CONTENT_TYPE), Some("application/yaml"));
    assert_eq!(reply.body, repo_file("openapi.yaml").into_bytes());
}

#[tokio::test]
async fn health_and_auth_responses_match_the_schemas() {
    let h = Harness::new();
    h.check(
        Method::GET,
        "/healthz",
        &h.get("/healthz").await,
        StatusCode::OK,
    );
    h.check(
        Method::GET,
        "/readyz",
        &h.get("/readyz").await,
        StatusCode::OK,
    );

    // Request ids: echoed when sent, made up otherwise.
    let reply = h
        .send(
            Method::GET,
            "/healthz",
            Payload::None,
            &[("x-request-id", "abc-123")],
        )
        .await;
    assert_eq!(reply.headers.get("x-request-id").unwrap(), "abc-123");
    let reply = h.get("/healthz").await;
    assert!(reply.headers.get("x-request-id").is_some());

    let secured = Harness {
        app: app_with(vec!["secret".to_owned()]),
        doc: document(),
        _dir: None,
    };
    // Health stays open (`security: []`).
    for path in ["/healthz", "/readyz"] {
        assert_eq!(secured.doc["paths"][path]["get"]["security"], json!([]));
        secured.check(Method::GET, path, &secured.get(path).await, StatusCode::OK);
    }
    let reply = secured.get("/runs").await;
    let body = secured.check(Method::GET, "/runs", &reply, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthorized");
    let reply = secured.get("/openapi.yaml").await;
    secured.check(
        Method::GET,
        "/openapi.yaml",
        &reply,
        StatusCode::UNAUTHORIZED,
    );
    let reply = secured
        .send(
            Method::GET,
            "/runs",
            Payload::None,
            &[("authorization", "Bearer secret")],
        )
        .await;
    secured.check(Method::GET, "/runs", &reply, StatusCode::OK);
}

#[tokio::test]
async fn run_responses_match_the_schemas() {
    run_responses(Harness::new()).await;
}

#[tokio::test]
async fn run_responses_match_the_schemas_on_sqlite() {
    run_responses(Harness::sqlite().await).await;
}

async fn run_responses(h: Harness) {
    let (run_id, finished) = h.run(example("observe.json")).await;
    assert_eq!(finished["status"], "completed");
    assert!(finished.get("definition").is_none());
    let run_uri = format!("/runs/{run_id}");

    // The same definition again: the same run, 200.
    let reply = h.post("/runs", example("observe.json")).await;
    let view = h.check(Method::POST, "/runs", &reply, StatusCode::OK);
    assert_eq!(view["run_id"], json!(run_id));
    assert_eq!(reply.header(header::LOCATION), Some(run_uri.as_str()));

    // List.
    let page = h.check(Method::GET, "/runs", &h.get("/runs").await, StatusCode::OK);
    assert_eq!(page["runs"][0]["run_id"], json!(run_id));
    let page = h.check(
        Method::GET,
        "/runs",
        &h.get("/runs?status=completed&limit=1").await,
        StatusCode::OK,
    );
    assert_eq!(page["runs"].as_array().unwrap().len(), 1);

    // Status, ETag and 304.
    let reply = h.get(&run_uri).await;
    h.check(Method::GET, "/runs/{run_id}", &reply, StatusCode::OK);
    let etag = reply.header(header::ETAG).expect("ETag").to_owned();
    let reply = h
        .send(
            Method::GET,
            &run_uri,
            Payload::None,
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_MODIFIED);
    assert!(reply.body.is_empty());
    h.response_spec(&Method::GET, "/runs/{run_id}", reply.status);
    assert_eq!(reply.header(header::ETAG), Some(etag.as_str()));

    // With the definition.
    let reply = h.get(&format!("{run_uri}?include=definition")).await;
    let view = h.check(Method::GET, "/runs/{run_id}", &reply, StatusCode::OK);
    assert!(view["definition"]["generation"].is_object(), "{view}");
    assert!(view["runtime"].is_object(), "{view}");
    assert_ne!(reply.header(header::ETAG), Some(etag.as_str()));

    // Results.
    let reply = h.get(&format!("{run_uri}/results")).await;
    let page = h.check(
        Method::GET,
        "/runs/{run_id}/results",
        &reply,
        StatusCode::OK,
    );
    assert_eq!(page["results"].as_array().unwrap().len(), 1);

    // Events: the whole stream of the finished run.
    let events = h.events(&format!("{run_uri}/events"), &[]).await;
    assert_eq!(events.first().unwrap()["event_type"], "run_started");
    assert_eq!(events.last().unwrap()["event_type"], "run_completed");
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event["seq"], json!(i + 1));
    }
    assert_eq!(json!(events.len()), finished["last_event_seq"]);
    // Resuming: `after` and `Last-Event-ID` (which wins).
    let resumed = h.events(&format!("{run_uri}/events?after=2"), &[]).await;
    assert_eq!(resumed[0]["seq"], 3);
    let resumed = h
        .events(
            &format!("{run_uri}/events?after=1"),
            &[("last-event-id", "4")],
        )
        .await;
    assert_eq!(resumed[0]["seq"], 5);
    let last = events.len().to_string();
    assert!(
        h.events(&format!("{run_uri}/events"), &[("last-event-id", &last)])
            .await
            .is_empty()
    );

    // Cancelling a finished run: 200, unchanged.
    let reply = h
        .send(
            Method::POST,
            &format!("{run_uri}/cancel"),
            Payload::None,
            &[],
        )
        .await;
    let view = h.check(
        Method::POST,
        "/runs/{run_id}/cancel",
        &reply,
        StatusCode::OK,
    );
    assert_eq!(view["status"], "completed");

    // Rejudge: its own run, 202 then 200, listed by parent_run_id.
    let evaluation =
        json!({"evaluation": {"metrics": ["builtin/exact_match", "builtin/token_f1"]}});
    let reply = h
        .post(&format!("{run_uri}/rejudge"), evaluation.clone())
        .await;
    let rejudge = h.check(
        Method::POST,
        "/runs/{run_id}/rejudge",
        &reply,
        StatusCode::ACCEPTED,
    );
    assert_eq!(rejudge["kind"], "rejudge");
    assert_eq!(rejudge["parent_run_id"], json!(run_id));
    let rejudge_id = rejudge["run_id"].as_str().unwrap().to_owned();
    assert_eq!(
        reply.header(header::LOCATION),
        Some(format!("/runs/{rejudge_id}").as_str())
    );
    let reply = h.post(&format!("{run_uri}/rejudge"), evaluation).await;
    let again = h.check(
        Method::POST,
        "/runs/{run_id}/rejudge",
        &reply,
        StatusCode::OK,
    );
    assert_eq!(again["run_id"], json!(rejudge_id));
    let finished = h.wait_finished(&rejudge_id).await;
    assert_eq!(finished["status"], "completed");
    let page = h.check(
        Method::GET,
        "/runs",
        &h.get(&format!("/runs?parent_run_id={run_id}")).await,
        StatusCode::OK,
    );
    let listed: Vec<&Value> = page["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["run_id"])
        .collect();
    assert_eq!(listed, vec![&json!(rejudge_id)]);
    let view = h.check(
        Method::GET,
        "/runs/{run_id}",
        &h.get(&format!("/runs/{rejudge_id}?include=definition"))
            .await,
        StatusCode::OK,
    );
    assert_eq!(view["definition"]["source_run_id"], json!(run_id));
    h.check(
        Method::GET,
        "/runs/{run_id}/results",
        &h.get(&format!("/runs/{rejudge_id}/results")).await,
        StatusCode::OK,
    );
    let events = h.events(&format!("/runs/{rejudge_id}/events"), &[]).await;
    assert_eq!(events.last().unwrap()["event_type"], "run_completed");
    // Rejudging the rejudge evaluates the experiment's generations: same parent.
    let reply = h
        .post(
            &format!("/runs/{rejudge_id}/rejudge"),
            json!({"metrics": ["builtin/token_f1"]}),
        )
        .await;
    let second = h.check(
        Method::POST,
        "/runs/{run_id}/rejudge",
        &reply,
        StatusCode::ACCEPTED,
    );
    assert_eq!(second["parent_run_id"], json!(run_id));
    // ...and it runs: the experiment's candidates, scored by the new metric.
    let second_id = second["run_id"].as_str().unwrap().to_owned();
    assert_ne!(second_id, rejudge_id);
    let done = h.wait_finished(&second_id).await;
    assert_eq!(done["status"], "completed", "{done}");
    let candidates_of = |page: &Value| -> Vec<Value> {
        page["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| json!([r["case_index"], r["candidates"]]))
            .collect()
    };
    let original = h.check(
        Method::GET,
        "/runs/{run_id}/results",
        &h.get(&format!("{run_uri}/results")).await,
        StatusCode::OK,
    );
    let rejudged = h.check(
        Method::GET,
        "/runs/{run_id}/results",
        &h.get(&format!("/runs/{second_id}/results")).await,
        StatusCode::OK,
    );
    assert!(!candidates_of(&original).is_empty());
    assert_eq!(candidates_of(&rejudged), candidates_of(&original));
    assert_eq!(
        done["aggregates"]["builtin/token_f1"]["n"],
        json!(original["results"].as_array().unwrap().len())
    );
    assert!(
        done["aggregates"].get("builtin/exact_match").is_none(),
        "{done}"
    );
}

#[tokio::test]
async fn error_responses_match_the_schemas() {
    let h = Harness::new();

    // 422: every problem of an invalid definition, with paths.
    let invalid = json!({
        "generation": {"generator": "builtin/no_such_generator"},
        "evaluation": {"metrics": ["builtin/exact_match", "builtin/exact_match"]},
        "datasets": [{"dataset_id": "d", "cases": [{"input": 1}]}],
        "seeds": [1, 1],
        "colour": "blue"
    });
    let reply = h.post("/runs", invalid).await;
    let body = h.check(
        Method::POST,
        "/runs",
        &reply,
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    assert_eq!(body["error"]["code"], "invalid_definition");
    let paths: BTreeSet<&str> = body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    for path in [
        "colour",
        "generation.generator",
        "datasets[0].cases[0].case_id",
        "seeds[1]",
    ] {
        assert!(paths.contains(path), "no detail at {path}: {body}");
    }

    // 400: malformed JSON.
    let reply = h
        .send(
            Method::POST,
            "/runs",
            Payload::Raw("application/json", b"{\"generation\": ".to_vec()),
            &[],
        )
        .await;
    let body = h.check(Method::POST, "/runs", &reply, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "malformed_json");

    // 415: not sent as JSON.
    let reply = h
        .send(
            Method::POST,
            "/runs",
            Payload::Raw("text/plain", b"{}".to_vec()),
            &[],
        )
        .await;
    let body = h.check(
        Method::POST,
        "/runs",
        &reply,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    );
    assert_eq!(body["error"]["code"], "unsupported_media_type");

    // 413: over the body limit (1 MiB here).
    let big = format!("{{\"padding\": \"{}\"}}", "x".repeat(1 << 20));
    let reply = h
        .send(
            Method::POST,
            "/runs",
            Payload::Raw("application/json", big.into_bytes()),
            &[],
        )
        .await;
    let body = h.check(Method::POST, "/runs", &reply, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"]["code"], "body_too_large");

    // 404: unknown run, on every run route.
    let unknown = format!("/runs/{UNKNOWN_RUN}");
    // An existing run (results check the run exists before reading cursor and limit).
    let reply = h.post("/runs", example("observe.json")).await;
    let existing = format!("/runs/{}", reply.json()["run_id"].as_str().unwrap());
    for (method, template, payload) in [
        (Method::GET, "/runs/{run_id}", Payload::None),
        (Method::GET, "/runs/{run_id}/results", Payload::None),
        (Method::GET, "/runs/{run_id}/events", Payload::None),
        (Method::POST, "/runs/{run_id}/cancel", Payload::None),
        (
            Method::POST,
            "/runs/{run_id}/rejudge",
            Payload::Json(json!({})),
        ),
    ] {
        let uri = template.replace("/runs/{run_id}", &unknown);
        let reply = h.send(method.clone(), &uri, payload, &[]).await;
        let body = h.check(method, template, &reply, StatusCode::NOT_FOUND);
        assert_eq!(body["error"]["code"], "not_found");
    }

    // A known path with an unsupported method: 405 with the error shape (as documented).
    let reply = h.send(Method::DELETE, "/runs", Payload::None, &[]).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    let body: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");

    // 404 of the fallback: the same error shape.
    let reply = h.get("/no/such/endpoint").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_valid(
        &validator(&h.doc, &schema_ref("Error")),
        &reply.json(),
        "fallback 404",
    );

    // 400: malformed run ids, queries, cursors and Last-Event-ID.
    for (method, template, uri, headers, code) in [
        (
            Method::GET,
            "/runs/{run_id}",
            "/runs/not-a-run".to_owned(),
            vec![],
            "invalid_run_id",
        ),
        (
            Method::POST,
            "/runs/{run_id}/cancel",
            "/runs/RUN_X/cancel".to_owned(),
            vec![],
            "invalid_run_id",
        ),
        (
            Method::GET,
            "/runs",
            "/runs?colour=blue".to_owned(),
            vec![],
            "invalid_query",
        ),
        (
            Method::GET,
            "/runs",
            "/runs?limit=0".to_owned(),
            vec![],
            "invalid_query",
        ),
        (
            Method::GET,
            "/runs",
            "/runs?status=done".to_owned(),
            vec![],
            "invalid_query",
        ),
        (
            Method::GET,
            "/runs",
            "/runs?cursor=nope".to_owned(),
            vec![],
            "invalid_cursor",
        ),
        (
            Method::GET,
            "/runs",
            "/runs?parent_run_id=nope".to_owned(),
            vec![],
            "invalid_run_id",
        ),
        (
            Method::GET,
            "/runs/{run_id}",
            format!("{unknown}?include=everything"),
            vec![],
            "invalid_query",
        ),
        (
            Method::GET,
            "/runs/{run_id}/results",
            format!("{existing}/results?cursor=x"),
            vec![],
            "invalid_cursor",
        ),
        (
            Method::GET,
            "/runs/{run_id}/results",
            format!("{existing}/results?limit=1001"),
            vec![],
            "invalid_query",
        ),
        (
            Method::GET,
            "/runs/{run_id}/results",
            format!("{unknown}/results?failed_only=maybe"),
            vec![],
            "invalid_query",
        ),
        (
            Method::GET,
            "/runs/{run_id}/events",
            format!("{unknown}/events?after=-1"),
            vec![],
            "invalid_query",
        ),
        (
            Method::GET,
            "/runs/{run_id}/events",
            format!("{unknown}/events"),
            vec![("last-event-id", "abc")],
            "invalid_last_event_id",
        ),
    ] {
        let reply = h.send(method.clone(), &uri, Payload::None, &headers).await;
        let body = h.check(method, template, &reply, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], code, "{uri}: {body}");
    }

    // 422 from rejudge: an invalid evaluation config.
    let reply = h
        .post(
            &format!("{unknown}/rejudge"),
            json!({"metrics": ["builtin/no_such_metric"]}),
        )
        .await;
    let body = h.check(
        Method::POST,
        "/runs/{run_id}/rejudge",
        &reply,
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    assert_eq!(body["error"]["details"][0]["path"], "metrics[0]");
}

#[tokio::test]
async fn executing_run_responses_match_the_schemas() {
    let h = Harness::new();
    // One slow case: the run stays executing until it is cancelled.
    let mut slow = example("observe.json");
    slow["generation"]["generator"] =
        json!({"name": "builtin/demo_generator", "params": {"delay_ms": 600000}});
    let reply = h.post("/runs", slow).await;
    let view = h.check(Method::POST, "/runs", &reply, StatusCode::ACCEPTED);
    let run_id = view["run_id"].as_str().unwrap().to_owned();
    h.wait_running(&run_id).await;

    // 409: a rejudge needs a finished run.
    let reply = h.post(&format!("/runs/{run_id}/rejudge"), json!({})).await;
    let body = h.check(
        Method::POST,
        "/runs/{run_id}/rejudge",
        &reply,
        StatusCode::CONFLICT,
    );
    assert_eq!(body["error"]["code"], "conflict");

    // 202: cancelling an executing run.
    let reply = h
        .send(
            Method::POST,
            &format!("/runs/{run_id}/cancel"),
            Payload::None,
            &[],
        )
        .await;
    let view = h.check(
        Method::POST,
        "/runs/{run_id}/cancel",
        &reply,
        StatusCode::ACCEPTED,
    );
    assert_eq!(view["cancel_requested"], true);
    let finished = h.wait_finished(&run_id).await;
    assert_eq!(finished["status"], "cancelled");
    let events = h.events(&format!("/runs/{run_id}/events"), &[]).await;
    assert_eq!(events.last().unwrap()["event_type"], "run_cancelled");

    // A rejudge of the cancelled run (nothing was recorded: no cases).
    let reply = h.post(&format!("/runs/{run_id}/rejudge"), json!({})).await;
    h.check(
        Method::POST,
        "/runs/{run_id}/rejudge",
        &reply,
        StatusCode::ACCEPTED,
    );
}

#[tokio::test]
async fn richer_run_responses_match_the_schemas() {
    richer_run_responses(Harness::new()).await;
}

#[tokio::test]
async fn richer_run_responses_match_the_schemas_on_sqlite() {
    richer_run_responses(Harness::sqlite().await).await;
}

async fn richer_run_responses(h: Harness) {
    let (run_id, finished) = h.run(example("arithmetic.json")).await;
    assert_eq!(finished["status"], "completed");
    let aggregates = finished["aggregates"].as_object().unwrap();
    assert!(aggregates.contains_key("exact"), "{finished}");
    assert!(
        aggregates.contains_key("builtin/rubric_keywords"),
        "{finished}"
    );
    assert!(
        aggregates.values().any(|a| a["ci95"].is_array()),
        "{finished}"
    );
    assert!(
        aggregates
            .values()
            .all(|a| a["by_dataset"].as_object().unwrap().len() == 2)
    );

    // All results at once.
    let page = h.check(
        Method::GET,
        "/runs/{run_id}/results",
        &h.get(&format!("/runs/{run_id}/results?limit=1000")).await,
        StatusCode::OK,
    );
    let results = page["results"].as_array().unwrap();
    assert_eq!(results.len(), 15);
    assert!(page["next_cursor"].is_null());
    let datasets: BTreeSet<&str> = results
        .iter()
        .map(|r| r["dataset_id"].as_str().unwrap())
        .collect();
    assert_eq!(datasets.len(), 2);
    assert!(
        results
            .iter()
            .any(|r| !r["judgments"].as_array().unwrap().is_empty())
    );
    assert!(
        results
            .iter()
            .any(|r| r["candidates"].as_array().unwrap().len() == 5)
    );
    let failed = results.iter().filter(|r| r["status"] == "failed").count();
    assert_eq!(json!(failed), finished["progress"]["failed"]);

    // Filters.
    let page = h.check(
        Method::GET,
        "/runs/{run_id}/results",
        &h.get(&format!("/runs/{run_id}/results?failed_only=true"))
            .await,
        StatusCode::OK,
    );
    assert_eq!(page["results"].as_array().unwrap().len(), failed);
    let page = h.check(
        Method::GET,
        "/runs/{run_id}/results",
        &h.get(&format!("/runs/{run_id}/results?dataset_id=harder"))
            .await,
        StatusCode::OK,
    );
    assert_eq!(page["results"].as_array().unwrap().len(), 6);

    // Paging through with a cursor.
    let mut seen = 0;
    let mut uri = format!("/runs/{run_id}/results?limit=4");
    loop {
        let page = h.check(
            Method::GET,
            "/runs/{run_id}/results",
            &h.get(&uri).await,
            StatusCode::OK,
        );
        seen += page["results"].as_array().unwrap().len();
        match page["next_cursor"].as_str() {
            Some(cursor) => uri = format!("/runs/{run_id}/results?limit=4&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, 15);

    // Every event of the run.
    let events = h.events(&format!("/runs/{run_id}/events"), &[]).await;
    let types = event_types(&events);
    for expected in [
        "run_started",
        "case_started",
        "generation_completed",
        "reduction_completed",
        "parse_completed",
        "score_completed",
        "evaluation_completed",
        "case_completed",
        "run_completed",
    ] {
        assert!(types.contains(expected), "no {expected} event in {types:?}");
    }

    // The definition as stored: normalised components.
    let view = h.check(
        Method::GET,
        "/runs/{run_id}",
        &h.get(&format!("/runs/{run_id}?include=definition")).await,
        StatusCode::OK,
    );
    assert_eq!(view["runtime"]["concurrency"], 8);
    assert_eq!(
        view["definition"]["evaluation"]["metrics"][1]["id"],
        "exact"
    );

    // Runs paging: two runs, one per page.
    h.run(example("observe.json")).await;
    let page = h.check(
        Method::GET,
        "/runs",
        &h.get("/runs?limit=1").await,
        StatusCode::OK,
    );
    let cursor = page["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let page = h.check(
        Method::GET,
        "/runs",
        &h.get(&format!("/runs?limit=1&cursor={cursor}")).await,
        StatusCode::OK,
    );
    assert_eq!(page["runs"].as_array().unwrap().len(), 1);
    assert!(page["next_cursor"].is_null());
}

#[tokio::test]
async fn instrumented_run_responses_match_the_schemas() {
    let h = Harness::new();
    // Nothing listens on this port: span export and webhook deliveries fail, and the
    // run's telemetry says so.
    let port = common::webhook::closed_port().await;
    let mut definition = example("observe.json");
    definition["seeds"] = json!([31]);
    definition["tracing"] = json!({
        "provider": "otlp",
        "endpoint": format!("http://127.0.0.1:{port}"),
        "protocol": "http/json",
        "headers": {"authorization": "Bearer secret"},
        "service_name": "themis-openapi",
        "sample_ratio": 1.0
    });
    definition["subscribers"] = json!([{
        "kind": "webhook",
        "url": format!("http://127.0.0.1:{port}/hook"),
        "events": ["run.completed"]
    }]);
    let (run_id, _) = h.run(definition).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let view = loop {
        let view = h.check(
            Method::GET,
            "/runs/{run_id}",
            &h.get(&format!("/runs/{run_id}?include=definition")).await,
            StatusCode::OK,
        );
        if view["telemetry"].get("spans_dropped").is_some()
            && view["telemetry"]["webhooks"][0]["failed"] == 1
        {
            break view;
        }
        assert!(Instant::now() < deadline, "no telemetry: {view}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        view["runtime"]["tracing"]["headers"]["authorization"],
        "<redacted>"
    );
    assert_eq!(
        view["runtime"]["subscribers"][0]["events"],
        json!(["run_completed"])
    );
    // The summary form carries the telemetry too.
    let summary = h.check(
        Method::GET,
        "/runs/{run_id}",
        &h.get(&format!("/runs/{run_id}")).await,
        StatusCode::OK,
    );
    assert!(summary["telemetry"]["export_errors"].as_u64().unwrap() >= 1);
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

#[tokio::test]
async fn compare_responses_match_the_schemas() {
    let h = Harness::new();
    let (a, _) = h.run(echo_definition(&[], "builtin/exact_match")).await;
    let (b, _) = h.run(echo_definition(&[1, 4], "builtin/exact_match")).await;
    let (f1, _) = h.run(echo_definition(&[2], "builtin/token_f1")).await;

    let report = h.check(
        Method::GET,
        "/runs/{run_id}/compare",
        &h.get(&format!("/runs/{b}/compare?baseline={a}")).await,
        StatusCode::OK,
    );
    assert_eq!(
        report["metrics"]["builtin/exact_match"]["overall"]["losses"],
        2
    );
    let page = h.check(
        Method::GET,
        "/runs/{run_id}/compare/cases",
        &h.get(&format!(
            "/runs/{b}/compare/cases?baseline={a}&filter=regressed&limit=1"
        ))
        .await,
        StatusCode::OK,
    );
    assert_eq!(page["cases"][0]["case_id"], "c1");
    let table = h.check(
        Method::GET,
        "/compare",
        &h.get(&format!("/compare?runs={a},{b}")).await,
        StatusCode::OK,
    );
    assert_eq!(
        table["metrics"]["builtin/exact_match"]["versus_first"][0]["run_id"],
        json!(b)
    );

    let view = h.check(
        Method::GET,
        "/runs/{run_id}",
        &h.get(&format!("/runs/{b}?ci=bootstrap")).await,
        StatusCode::OK,
    );
    assert!(view["aggregates"]["builtin/exact_match"]["ci95_bootstrap"].is_array());

    let unknown = format!("run_{}", "f".repeat(32));
    for (template, uri) in [
        (
            "/runs/{run_id}/compare",
            format!("/runs/{b}/compare?baseline={unknown}"),
        ),
        (
            "/runs/{run_id}/compare/cases",
            format!("/runs/{unknown}/compare/cases?baseline={a}"),
        ),
        ("/compare", format!("/compare?runs={a},{unknown}")),
    ] {
        h.check(
            Method::GET,
            template,
            &h.get(&uri).await,
            StatusCode::NOT_FOUND,
        );
    }
    for (template, uri) in [
        (
            "/runs/{run_id}/compare",
            format!("/runs/{f1}/compare?baseline={a}"),
        ),
        (
            "/runs/{run_id}/compare/cases",
            format!("/runs/{f1}/compare/cases?baseline={a}"),
        ),
        ("/compare", format!("/compare?runs={a},{f1}")),
    ] {
        let body = h.check(
            Method::GET,
            template,
            &h.get(&uri).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        );
        assert_eq!(body["error"]["code"], "unprocessable");
    }
    // A name no run has (names stand for runs here).
    let body = h.check(
        Method::GET,
        "/runs/{run_id}/compare",
        &h.get(&format!("/runs/{b}/compare?baseline=nobody")).await,
        StatusCode::NOT_FOUND,
    );
    assert_eq!(body["error"]["code"], "not_found");
    for (template, uri) in [
        (
            "/runs/{run_id}/compare",
            format!("/runs/{b}/compare?baseline=run_nope"),
        ),
        (
            "/runs/{run_id}/compare/cases",
            format!("/runs/{b}/compare/cases?baseline={a}&limit=0"),
        ),
        ("/compare", "/compare?runs=".to_owned()),
        (
            "/runs/{run_id}/results",
            format!("/runs/{b}/results?format=xml"),
        ),
    ] {
        h.check(
            Method::GET,
            template,
            &h.get(&uri).await,
            StatusCode::BAD_REQUEST,
        );
    }
}

#[tokio::test]
async fn dataset_retry_and_delete_responses_match_the_schemas() {
    let h = Harness::sqlite().await;
    let jsonl = |body: &str| Payload::Raw("application/x-ndjson", body.as_bytes().to_vec());
    let cases = "{\"case_id\": \"a\", \"input\": {\"question\": \"2+2\"}, \"expected_output\": {\"answer\": \"4\"}}\n";
    let put = |payload| h.send(Method::PUT, "/datasets/qa", payload, &[]);
    let created = h.check(
        Method::PUT,
        "/datasets/{dataset_id}",
        &put(jsonl(cases)).await,
        StatusCode::CREATED,
    );
    let again = h.check(
        Method::PUT,
        "/datasets/{dataset_id}",
        &put(jsonl(cases)).await,
        StatusCode::OK,
    );
    assert_eq!(created, again);
    h.check(
        Method::PUT,
        "/datasets/{dataset_id}",
        &put(jsonl("{\"case_id\": \"\"}\n")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    h.check(
        Method::GET,
        "/datasets",
        &h.get("/datasets").await,
        StatusCode::OK,
    );
    h.check(
        Method::GET,
        "/datasets/{dataset_id}",
        &h.get("/datasets/qa").await,
        StatusCode::OK,
    );
    let page = h.check(
        Method::GET,
        "/datasets/{dataset_id}/cases",
        &h.get("/datasets/qa/cases").await,
        StatusCode::OK,
    );
    assert_eq!(page["cases"][0]["case_id"], "a");

    // A run over the stored dataset, its retry, and the deletions.
    let mut definition = example("observe.json");
    definition["datasets"] = json!([{"dataset_id": "qa"}]);
    let (run_id, _) = h.run(definition).await;
    let reply = h.post(&format!("/runs/{run_id}/retry"), json!(null)).await;
    let retry = h.check(
        Method::POST,
        "/runs/{run_id}/retry",
        &reply,
        StatusCode::ACCEPTED,
    );
    h.wait_finished(retry["run_id"].as_str().unwrap()).await;
    let definition = h.get(&format!("/runs/{run_id}?include=definition")).await;
    h.check(Method::GET, "/runs/{run_id}", &definition, StatusCode::OK);
    // Refused while used or derived from, then done: dataset, run, run with cascade, dataset.
    let run_uri = format!("/runs/{run_id}");
    let cascade = format!("{run_uri}?cascade=true");
    for (uri, template, status) in [
        (
            "/datasets/qa",
            "/datasets/{dataset_id}",
            StatusCode::CONFLICT,
        ),
        (run_uri.as_str(), "/runs/{run_id}", StatusCode::CONFLICT),
        (cascade.as_str(), "/runs/{run_id}", StatusCode::OK),
        ("/datasets/qa", "/datasets/{dataset_id}", StatusCode::OK),
    ] {
        let reply = h.send(Method::DELETE, uri, Payload::None, &[]).await;
        h.check(Method::DELETE, template, &reply, status);
    }
}

#[tokio::test]
async fn case_and_filtered_results_match_the_schemas() {
    let h = Harness::new();
    let (run_id, _) = h.run(echo_definition(&[1, 3], "builtin/exact_match")).await;
    let reply = h.get(&format!("/runs/{run_id}/cases/1")).await;
    let detail = h.check(
        Method::GET,
        "/runs/{run_id}/cases/{case_index}",
        &reply,
        StatusCode::OK,
    );
    assert_eq!(detail["record"]["case_index"], 1);
    assert_eq!(detail["case"]["case_id"], detail["record"]["case_id"]);
    // A rejudge's cases have the inputs of the run it evaluates.
    let reply = h
        .post(
            &format!("/runs/{run_id}/rejudge"),
            json!({"metrics": ["builtin/exact_match"], "parsers": ["builtin/text"]}),
        )
        .await;
    let rejudge = reply.json()["run_id"].as_str().unwrap().to_owned();
    h.wait_finished(&rejudge).await;
    let reply = h.get(&format!("/runs/{rejudge}/cases/1")).await;
    let rejudged = h.check(
        Method::GET,
        "/runs/{run_id}/cases/{case_index}",
        &reply,
        StatusCode::OK,
    );
    assert_eq!(rejudged["case"], detail["case"]);
    for (uri, status) in [
        (format!("/runs/{run_id}/cases/99"), StatusCode::NOT_FOUND),
        (format!("/runs/{run_id}/cases/x"), StatusCode::BAD_REQUEST),
        (
            format!("/runs/{UNKNOWN_RUN}/cases/0"),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let reply = h.get(&uri).await;
        h.check(
            Method::GET,
            "/runs/{run_id}/cases/{case_index}",
            &reply,
            status,
        );
    }

    let reply = h
        .get(&format!(
            "/runs/{run_id}/results?metric=builtin/exact_match&score_below=0.5"
        ))
        .await;
    let page = h.check(
        Method::GET,
        "/runs/{run_id}/results",
        &reply,
        StatusCode::OK,
    );
    let indices: Vec<&Value> = page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["case_index"])
        .collect();
    assert_eq!(indices, [&json!(1), &json!(3)]);
    for (query, field) in [
        ("score_below=0.5", "metric"),
        ("metric=builtin/exact_match", "score_below"),
        ("metric=x&score_below=0.5&format=csv", "score_below"),
    ] {
        let reply = h.get(&format!("/runs/{run_id}/results?{query}")).await;
        let error = h.check(
            Method::GET,
            "/runs/{run_id}/results",
            &reply,
            StatusCode::BAD_REQUEST,
        );
        assert_eq!(error["error"]["details"][0]["path"], field, "{query}");
    }
    let reply = h.get("/runs?kind=rejudge").await;
    let page = h.check(Method::GET, "/runs", &reply, StatusCode::OK);
    let kinds: Vec<&Value> = page["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["run_id"])
        .collect();
    assert_eq!(kinds, [&json!(rejudge)]);
    let reply = h.get("/runs?kind=bogus").await;
    h.check(Method::GET, "/runs", &reply, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn review_responses_match_the_schemas() {
    let h = Harness::sqlite().await;
    let (run_id, _) = h.run(example("arithmetic.json")).await;
    let reviews = "/runs/{run_id}/cases/{case_index}/reviews";
    let uri = format!("/runs/{run_id}/cases/0/reviews");
    for (reviewer, label) in [("ana", 1), ("bo", 1), ("cy", 0), ("ana", 0)] {
        let reply = h
            .send(
                Method::POST,
                &uri,
                Payload::Json(json!({"scores": {"exact": label}, "comment": "checked"})),
                &[("x-themis-reviewer", reviewer)],
            )
            .await;
        let review = h.check(Method::POST, reviews, &reply, StatusCode::CREATED);
        assert_eq!(review["reviewer"], reviewer);
    }
    let reply = h
        .post(&uri, json!({"scores": {"exact": 2, "nope": 1}}))
        .await;
    let error = h.check(
        Method::POST,
        reviews,
        &reply,
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    assert_eq!(error["error"]["code"], "invalid_review");
    let history = h.check(Method::GET, reviews, &h.get(&uri).await, StatusCode::OK);
    assert_eq!(history["reviews"].as_array().unwrap().len(), 4);
    let reply = h.get(&format!("{uri}?limit=0")).await;
    h.check(Method::GET, reviews, &reply, StatusCode::BAD_REQUEST);
    let agreement = h.check(
        Method::GET,
        "/runs/{run_id}/agreement",
        &h.get(&format!("/runs/{run_id}/agreement")).await,
        StatusCode::OK,
    );
    assert_eq!(agreement["reviewed_cases"], 1);
    assert!(agreement["reviewable"].as_array().unwrap().len() >= 2);
    let case = h.check(
        Method::GET,
        "/runs/{run_id}/cases/{case_index}",
        &h.get(&format!("/runs/{run_id}/cases/0")).await,
        StatusCode::OK,
    );
    assert_eq!(case["reviews"].as_array().unwrap().len(), 3);
    let page = h.check(
        Method::GET,
        "/runs/{run_id}/results",
        &h.get(&format!("/runs/{run_id}/results?limit=1")).await,
        StatusCode::OK,
    );
    assert_eq!(page["results"][0]["reviews"].as_array().unwrap().len(), 3);
}
