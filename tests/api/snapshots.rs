//! JSON shapes pinned with insta snapshots, through the real router (`oneshot`).

use crate::common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

use common::app::call;
use common::{TestApp, seed_example};

fn router() -> axum::Router {
    TestApp::new()
        .configure(|c| c.max_running_runs = 2)
        .router()
        .router
}

async fn completed_run(router: &axum::Router, body: Value) -> String {
    let (_, created) = call(router, "POST", "/runs", Some(body)).await;
    let run_id = created["run_id"].as_str().unwrap().to_owned();
    for _ in 0..500 {
        let (_, run) = call(router, "GET", &format!("/runs/{run_id}"), None).await;
        if run["status"] == "completed" {
            return run_id;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("run did not complete");
}

#[tokio::test]
async fn run_view_shape() {
    let router = router();
    let run_id = completed_run(&router, seed_example()).await;
    let (status, run) = call(&router, "GET", &format!("/runs/{run_id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    insta::assert_json_snapshot!(run, {
        ".created_at" => "[timestamp]",
        ".started_at" => "[timestamp]",
        ".finished_at" => "[timestamp]",
        ".updated_at" => "[timestamp]",
        ".duration_ms" => "[duration]",
    });
}

#[tokio::test]
async fn case_record_shape() {
    let router = router();
    let mut body = seed_example();
    body["generation"]["candidate_policy"]["num_samples"] = serde_json::json!(2);
    body["evaluation"]["judges"] =
        serde_json::json!([{"name": "builtin/rubric_keywords", "params": {"keywords": ["4"]}}]);
    let run_id = completed_run(&router, body).await;
    let (_, results) = call(&router, "GET", &format!("/runs/{run_id}/results"), None).await;
    insta::assert_json_snapshot!(results, {
        ".results[].started_at" => "[timestamp]",
        ".results[].finished_at" => "[timestamp]",
        ".results[].stages[].duration_ms" => "[duration]",
        ".results[].candidates[].duration_ms" => "[duration]",
    });
}

#[tokio::test]
async fn validation_error_shape() {
    let router = router();
    let mut body = seed_example();
    body["seeds"] = serde_json::json!([]);
    body["generation"]["candidate_policy"]["num_samples"] = serde_json::json!(0);
    body["datasets"][0]["cases"][0]["case_id"] = serde_json::json!("");
    let (status, error) = call(&router, "POST", "/runs", Some(body)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    insta::assert_json_snapshot!(error);
}

#[tokio::test]
async fn openapi_routes() {
    let router = router();
    let request = Request::builder()
        .uri("/openapi.yaml")
        .body(Body::empty())
        .unwrap();
    let response = router.oneshot(request).await.unwrap();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let document: Value = serde_yaml_ng::from_slice(&bytes).unwrap();
    let routes: Vec<String> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|k| ["get", "post", "put", "delete", "patch"].contains(&k.as_str()))
                .map(move |method| format!("{} {path}", method.to_uppercase()))
        })
        .collect();
    insta::assert_yaml_snapshot!(routes);
}
