//! The document itself: OpenAPI 3.1, exactly the router's routes, enums as in the source,
//! examples valid, every route served, and served as the file.

use super::*;

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
    // Files directly under src/api: `src/api/openai_evals/` answers OpenAI's error body.
    for entry in std::fs::read_dir(&api_dir).expect("src/api") {
        let path = entry.unwrap().path();
        if path.is_dir() {
            continue;
        }
        let source = std::fs::read_to_string(path).unwrap();
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
        if template.starts_with("/v1/") {
            // `openai_evals.rs` serves each of these with the objects they need.
            continue;
        }
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
