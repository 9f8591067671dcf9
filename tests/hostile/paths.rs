//! Hostile paths, ids and query strings: numbers past what the stores index, path
//! segments that are not UTF-8, ids that print as something else, and the empty
//! parameters the OpenAPI document allows. Each gets a 4xx in the JSON error shape (or
//! the answer the document promises), never a 500.

use crate::common;

use regex::Regex;
use serde_json::{Value, json};
use themis::components::Registry;

use common::TestServer;

fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("themis.db").display())
}

fn experiment(dataset_id: &str) -> Value {
    json!({
        "generation": {"generator": "builtin/demo_generator"},
        "evaluation": {"metrics": ["builtin/exact_match"]},
        "datasets": [{"dataset_id": dataset_id, "cases": [
            {"case_id": "a", "input": {"question": "2+2"}, "expected_output": {"answer": "4"}},
            {"case_id": "b", "input": {"question": "1+1"}, "expected_output": {"answer": "2"}}
        ]}],
        "seeds": [1]
    })
}

/// A finished run on a fresh SQLite server (the SQL stores are where out-of-range
/// numbers used to surface as "stored data is corrupt").
async fn server_with_run() -> (tempfile::TempDir, TestServer, String) {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&sqlite_url(&dir), Registry::builtin()).await;
    let run_id = common::post_run(&server.client, &server.base, &experiment("d")).await;
    server.wait_finished(&run_id).await;
    (dir, server, run_id)
}

/// A raw GET: status, content type and body text.
async fn get_raw(server: &TestServer, path: &str) -> (u16, String, String) {
    let response = server.client.get(server.url(path)).send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn cursors_and_case_indexes_past_the_stores_range_are_400_and_404() {
    let (_dir, server, run_id) = server_with_run().await;
    let (status, _) = server
        .put(
            "/datasets/up",
            "application/x-ndjson",
            "{\"case_id\":\"1\",\"input\":\"q\"}\n",
        )
        .await;
    assert_eq!(status, 201);
    let huge = "9223372036854775808"; // i64::MAX + 1
    for path in [
        format!("/runs/{run_id}/results?cursor={huge}"),
        format!("/datasets/up/cases?cursor={huge}"),
        format!("/runs/{run_id}/compare/cases?baseline={run_id}&cursor={huge}"),
    ] {
        let (status, body) = server.get(&path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(code(&body), "invalid_cursor", "{path}: {body}");
        assert_eq!(body["error"]["details"][0]["path"], "cursor", "{body}");
    }
    for index in ["18446744073709551615", "9223372036854775808"] {
        let (status, body) = server.get(&format!("/runs/{run_id}/cases/{index}")).await;
        assert_eq!(status, 404, "{index}: {body}");
        assert_eq!(code(&body), "not_found", "{body}");
    }
    // The largest index the stores can hold is only a case that is not there.
    let (status, body) = server
        .get(&format!(
            "/runs/{run_id}/results?cursor=9223372036854775807"
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"], json!([]), "{body}");
}

#[tokio::test]
async fn a_path_segment_that_is_not_utf8_gets_the_json_error_shape() {
    let (_dir, server, run_id) = server_with_run().await;
    for path in [
        "/runs/%ff".to_owned(),
        "/runs/%ff/results".to_owned(),
        format!("/runs/{run_id}/cases/%ff"),
        "/datasets/%ff".to_owned(),
        "/datasets/%ff/cases".to_owned(),
        "/runs/%ff/compare?baseline=x".to_owned(),
        "/ui/%ff".to_owned(),
    ] {
        let (status, content_type, text) = get_raw(&server, &path).await;
        assert_eq!(status, 400, "{path}: {text}");
        assert!(
            content_type.starts_with("application/json"),
            "{path}: {content_type}: {text}"
        );
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(code(&body), "invalid_path", "{path}: {body}");
        assert_eq!(body["error"]["details"][0]["path"], "path", "{body}");
    }
}

#[tokio::test]
async fn ids_with_control_or_bidirectional_characters_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&sqlite_url(&dir), Registry::builtin()).await;
    let case = "{\"case_id\":\"1\",\"input\":\"q\"}\n";
    for id in ["x%00y", "a%0Ab", "rtl%E2%80%AEfdp.exe", "a%E2%81%A6b"] {
        let (status, body) = server
            .put(&format!("/datasets/{id}"), "application/x-ndjson", case)
            .await;
        assert_eq!(status, 400, "{id}: {body}");
        assert_eq!(code(&body), "invalid_dataset_id", "{id}: {body}");
    }
    let (status, body) = server.get("/datasets").await;
    assert_eq!(status, 200);
    assert_eq!(body["datasets"], json!([]), "nothing was stored: {body}");

    // Case ids in an upload, and ids in a definition.
    let (status, body) = server
        .put(
            "/datasets/d",
            "application/x-ndjson",
            "{\"case_id\":\"ok\",\"input\":\"q\"}\n{\"case_id\":\"evil\\u202egnp\",\"input\":\"q\"}\n{\"case_id\":\"nul\\u0000\",\"input\":\"q\"}\n",
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let paths: Vec<&str> = body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["line 2.case_id", "line 3.case_id"], "{body}");
    let (status, body) = server.post("/runs", &experiment("d\u{202e}x")).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["error"]["details"][0]["path"], "datasets[0].dataset_id",
        "{body}"
    );

    // An id that looks like a path is an opaque id: stored, and read back only at
    // its own (encoded) path.
    let (status, body) = server
        .put("/datasets/..%2f..%2fetc", "application/x-ndjson", case)
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["dataset_id"], "../../etc");
    let (status, body) = server.get("/datasets/..%2f..%2fetc").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["dataset_id"], "../../etc");
}

#[tokio::test]
async fn empty_cursor_and_runs_parameters_agree_with_the_document() {
    let (_dir, server, run_id) = server_with_run().await;
    // `cursor=` is a string the document allows: the first page.
    for path in [
        "/runs?cursor=".to_owned(),
        "/datasets?cursor=".to_owned(),
        "/datasets/d?cursor=".to_owned(),
        "/datasets/d/cases?cursor=".to_owned(),
        format!("/runs/{run_id}/results?cursor="),
        format!("/runs/{run_id}/compare/cases?baseline={run_id}&cursor="),
    ] {
        let (status, body) = server.get(&path).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (_, first) = server.get(&format!("/runs/{run_id}/results")).await;
    let (_, empty) = server.get(&format!("/runs/{run_id}/results?cursor=")).await;
    assert_eq!(first, empty);

    // `runs=` is refused by the server and by the document's schema alike.
    let document: Value =
        serde_yaml_ng::from_str(include_str!("../../openapi.yaml")).expect("openapi.yaml is YAML");
    let parameters = document["paths"]["/compare"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let runs = parameters.iter().find(|p| p["name"] == "runs").unwrap();
    let pattern = Regex::new(runs["schema"]["pattern"].as_str().expect("a pattern")).unwrap();
    let other = "run_0123456789abcdef0123456789abcdef";
    for (value, served) in [
        (String::new(), false),
        (run_id.clone(), false),
        (format!("{run_id},{other}"), true),
        (format!("{run_id}, {other}"), true),
    ] {
        let (status, body) = server.get(&format!("/compare?runs={value}")).await;
        assert_eq!(
            pattern.is_match(&value),
            served,
            "the schema on runs={value}"
        );
        if served {
            assert_ne!(status, 400, "runs={value}: {body}");
        } else {
            assert_eq!(status, 400, "runs={value}: {body}");
            assert_eq!(code(&body), "invalid_query", "{body}");
        }
    }
    // Index cursors: the document's pattern takes the empty string too.
    let results = document["paths"]["/runs/{run_id}/results"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let cursor = results.iter().find(|p| p["name"] == "cursor").unwrap();
    let pattern = Regex::new(cursor["schema"]["pattern"].as_str().unwrap()).unwrap();
    assert!(pattern.is_match(""));
}
