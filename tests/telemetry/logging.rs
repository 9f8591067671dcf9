//! Logs: one INFO line per request with its request id and run id.

use crate::common;

use common::spawn_server;

use serde_json::{Value, json};

use std::time::Duration;

fn demo(cases: usize, seeds: Value) -> Value {
    let cases: Vec<Value> = (0..cases)
        .map(|i| json!({"case_id": format!("c{i}"), "input": {"question": format!("{i} + 1")}, "expected_output": {"answer": (i + 1).to_string()}}))
        .collect();
    json!({
        "generation": {"generator": "builtin/demo_generator", "candidate_policy": {"num_samples": 2}},
        "evaluation": {"metrics": ["builtin/exact_match"]},
        "datasets": [{"dataset_id": "d", "cases": cases}],
        "seeds": seeds
    })
}

#[tokio::test]
async fn every_request_logs_one_info_line_with_its_request_id_and_run_id() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("log.db").display());
    let (server, base) = spawn_server(&database, &[]);
    let client = reqwest::Client::new();
    let is_request = |log: &Value| log["target"] == "themis::http";

    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    let request_id = health.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let line = server.wait_for_log(Duration::from_secs(10), is_request);
    assert_eq!(line["level"], "INFO", "{line}");
    let fields = &line["fields"];
    assert_eq!(fields["method"], "GET");
    assert_eq!(fields["path"], "/healthz");
    assert_eq!(fields["status"], 200);
    assert_eq!(fields["request_id"], request_id.as_str());
    assert!(fields["latency_ms"].as_f64().is_some(), "{line}");
    assert!(fields.get("run_id").is_none(), "{line}");

    // Creating a run: the id comes from the response; the caller's request id is kept.
    let created = client
        .post(format!("{base}/runs"))
        .header("x-request-id", "caller-chosen-id")
        .json(&demo(2, json!([1])))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 202);
    let run_id = created.json::<Value>().await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let line = server.wait_for_log(Duration::from_secs(10), is_request);
    assert_eq!(line["fields"]["request_id"], "caller-chosen-id", "{line}");
    assert_eq!(line["fields"]["status"], 202);
    assert_eq!(line["fields"]["run_id"], run_id.as_str());

    // A client error is one line too, with the run id of its path.
    let missing = format!("run_{}", "0".repeat(32));
    let response = client
        .get(format!("{base}/runs/{missing}/results"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let line = server.wait_for_log(Duration::from_secs(10), is_request);
    assert_eq!(line["fields"]["status"], 404, "{line}");
    assert_eq!(line["fields"]["run_id"], missing.as_str());
    assert_eq!(line["fields"]["path"], format!("/runs/{missing}/results"));
}
