//! Runs carry a name, tags and metadata: not part of the run id, stored and returned,
//! filtered on in lists, and a name stands for its run where runs are compared (over
//! HTTP and in `themis compare`) when exactly one run has it.

use std::process::Command;

use crate::common::app::TestApp;
use serde_json::{Value, json};

/// `n` sums the demo generator answers wrongly with probability `wrong_rate`.
fn experiment(n: usize, wrong_rate: f64) -> Value {
    let cases: Vec<Value> = (0..n)
        .map(|i| json!({"case_id": format!("c{i}"), "input": {"question": format!("{i}+2")}, "expected_output": {"answer": (i + 2).to_string()}}))
        .collect();
    json!({
        "generation": {"generator": {"name": "builtin/demo_generator", "params": {"wrong_rate": wrong_rate}}},
        "evaluation": {"parsers": ["builtin/json_identity"], "metrics": ["builtin/exact_match"]},
        "datasets": [{"dataset_id": "sums", "cases": cases}],
        "seeds": [5]
    })
}

fn labelled(mut body: Value, name: &str, tags: &[&str]) -> Value {
    body["name"] = json!(name);
    body["tags"] = json!(tags);
    body["metadata"] = json!({"model": "demo", "prompt": {"version": 3}});
    body
}

#[tokio::test]
async fn labels_are_stored_returned_filtered_and_not_part_of_the_id() {
    let server = TestApp::new().serve().await;
    let plain = experiment(4, 0.0);
    let (status, created) = server
        .post(
            "/runs",
            &labelled(plain.clone(), "baseline", &["nightly", "demo"]),
        )
        .await;
    assert_eq!(status, 202, "{created}");
    let id = created["run_id"].as_str().unwrap().to_owned();
    assert_eq!(created["name"], "baseline");
    // The same definition without labels, or with others, is the same run.
    let (status, again) = server.post("/runs", &plain).await;
    assert_eq!((status, again["run_id"].as_str()), (200, Some(id.as_str())));
    let (_, other) = server
        .post("/runs", &labelled(plain.clone(), "renamed", &[]))
        .await;
    assert_eq!(other["run_id"].as_str(), Some(id.as_str()));
    assert_eq!(
        other["name"], "baseline",
        "labels are set when a run is created"
    );

    server.wait_finished(&id).await;
    let (_, run) = server.get(&format!("/runs/{id}")).await;
    assert_eq!(run["name"], "baseline");
    assert_eq!(run["tags"], json!(["nightly", "demo"]));
    assert_eq!(
        run["metadata"],
        json!({"model": "demo", "prompt": {"version": 3}})
    );

    let (_, unlabelled) = server.post("/runs", &experiment(3, 0.0)).await;
    let unlabelled = unlabelled["run_id"].as_str().unwrap().to_owned();
    let listed = |query: &'static str| {
        let server = &server;
        async move {
            let (status, page) = server.get(&format!("/runs{query}")).await;
            assert_eq!(status, 200, "{page}");
            page["runs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["run_id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed("?name=baseline").await, [id.as_str()]);
    assert_eq!(listed("?tag=nightly").await, [id.as_str()]);
    assert_eq!(listed("?tag=demo&name=baseline").await, [id.as_str()]);
    assert!(listed("?tag=night").await.is_empty());
    assert_eq!(listed("").await.len(), 2);
    let (_, page) = server.get("/runs?name=baseline").await;
    assert_eq!(page["runs"][0]["tags"], json!(["nightly", "demo"]));
    // An unlabelled run shows no label fields.
    let (_, bare) = server.get(&format!("/runs/{unlabelled}")).await;
    assert!(
        bare.get("name").is_none() && bare.get("tags").is_none(),
        "{bare}"
    );

    let (status, error) = server.get("/runs?tag=a%22b").await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error"]["details"][0]["path"], "tag");
    server.stop().await;
}

#[tokio::test]
async fn bad_labels_are_422_naming_each_field() {
    let server = TestApp::new().serve().await;
    let mut body = experiment(1, 0.0);
    body["name"] = json!(format!("run_{}", "a".repeat(32)));
    body["tags"] = json!(["ok", "ok", "", 7]);
    body["metadata"] = json!(["not", "an", "object"]);
    let (status, error) = server.post("/runs", &body).await;
    assert_eq!(status, 422, "{error}");
    let paths: Vec<&str> = error["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["name", "tags[1]", "tags[2]", "tags[3]", "metadata"]);
    body["name"] = json!("x".repeat(201));
    body["tags"] = json!((0..33).map(|i| i.to_string()).collect::<Vec<_>>());
    body["metadata"] = json!({"blob": "x".repeat(17 * 1024)});
    let (status, error) = server.post("/runs", &body).await;
    assert_eq!(status, 422, "{error}");
    let paths: Vec<&str> = error["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["name", "tags", "metadata"]);
    server.stop().await;
}

#[tokio::test]
async fn a_name_stands_for_its_run_when_comparing_and_an_ambiguous_one_is_409() {
    let server = TestApp::new().serve().await;
    let mut ids = Vec::new();
    for (name, wrong_rate) in [("before", 0.0), ("after", 0.5)] {
        let (status, run) = server
            .post("/runs", &labelled(experiment(12, wrong_rate), name, &[]))
            .await;
        assert_eq!(status, 202, "{run}");
        let id = run["run_id"].as_str().unwrap().to_owned();
        server.wait_finished(&id).await;
        ids.push(id);
    }
    let (status, by_name) = server.get("/runs/after/compare?baseline=before").await;
    assert_eq!(status, 200, "{by_name}");
    let (_, by_id) = server
        .get(&format!("/runs/{}/compare?baseline={}", ids[1], ids[0]))
        .await;
    assert_eq!(by_name, by_id);
    let (status, cases) = server
        .get("/runs/after/compare/cases?baseline=before&filter=regressed")
        .await;
    assert_eq!(status, 200, "{cases}");
    let (status, several) = server.get("/compare?runs=before,after").await;
    assert_eq!(status, 200, "{several}");

    let (status, missing) = server.get("/runs/after/compare?baseline=nobody").await;
    assert_eq!(status, 404, "{missing}");
    assert_eq!(missing["error"]["message"], "no run is named `nobody`");

    // A second run named "before": the name no longer stands for one run.
    let (_, third) = server
        .post("/runs", &labelled(experiment(5, 0.0), "before", &[]))
        .await;
    let third = third["run_id"].as_str().unwrap().to_owned();
    let (status, ambiguous) = server.get("/runs/after/compare?baseline=before").await;
    assert_eq!(status, 409, "{ambiguous}");
    assert_eq!(
        ambiguous["error"]["message"],
        "2 runs are named `before`; give one of their ids"
    );
    let named: Vec<&str> = ambiguous["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["message"].as_str().unwrap())
        .collect();
    assert_eq!(named, [third.as_str(), ids[0].as_str()]);
    server.wait_finished(&third).await;
    server.stop().await;
}

#[test]
fn themis_compare_takes_names_and_lists_the_runs_of_an_ambiguous_one() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("runs.db").display());
    let themis = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_themis"))
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("run themis")
    };
    let mut ids = Vec::new();
    for (file, name, wrong_rate) in [
        ("a.json", "before", 0.0),
        ("b.json", "after", 0.5),
        ("c.json", "after", 1.0),
    ] {
        let body = labelled(experiment(6, wrong_rate), name, &[]);
        std::fs::write(dir.path().join(file), body.to_string()).unwrap();
        let out = themis(&["run", file, "--database", &database, "--json"]);
        assert!(
            out.status.code() != Some(2),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let result: Value = serde_json::from_slice(&out.stdout).unwrap();
        ids.push(result["run_id"].as_str().unwrap().to_owned());
    }
    let out = themis(&["compare", "before", &ids[1], "--database", &database]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("builtin/exact_match"));

    let out = themis(&["compare", "before", "after", "--database", &database]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("CANDIDATE: 2 runs are named `after`; give one of their ids")
            && stderr.contains(&ids[1])
            && stderr.contains(&ids[2]),
        "{stderr}"
    );
}
