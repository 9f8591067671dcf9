//! The command line with datasets: experiment files (JSON or YAML) whose datasets name
//! files beside them, and `themis datasets push` to a server.

use crate::common;

use std::process::Command;

use serde_json::Value;

fn themis(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_themis"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run themis")
}

const JSONL: &str = "{\"case_id\": \"a\", \"input\": {\"question\": \"2+2\"}, \"expected_output\": {\"answer\": \"4\"}}\n{\"case_id\": \"b\", \"input\": {\"question\": \"3+3\"}, \"expected_output\": {\"answer\": \"6\"}}\n";

#[test]
fn a_yaml_experiment_reads_dataset_files_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("exp");
    std::fs::create_dir(&nested).unwrap();
    std::fs::write(nested.join("qa.jsonl"), JSONL).unwrap();
    std::fs::write(nested.join("more.csv"), "id,question,answer\nc,1+1,2\n").unwrap();
    std::fs::write(
        nested.join("exp.yaml"),
        "generation:\n  generator: builtin/demo_generator\nevaluation:\n  metrics: [builtin/exact_match]\ndatasets:\n  - path: qa.jsonl\n  - dataset_id: csv\n    path: more.csv\n    columns: {case_id: id, input: question, expected_output: answer}\nseeds: [1]\n",
    )
    .unwrap();
    // Run from elsewhere: the paths are relative to the experiment file.
    let out = themis(dir.path(), &["run", "exp/exp.yaml", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["status"], "completed");
    assert_eq!(result["progress"]["total"], 3);
    let datasets: Vec<&str> = result["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["dataset_id"].as_str().unwrap())
        .collect();
    assert_eq!(datasets, ["qa", "qa", "csv"]);

    // A bad line is named, with the file.
    std::fs::write(nested.join("qa.jsonl"), "{\"case_id\": \"a\"}\n").unwrap();
    let out = themis(dir.path(), &["run", "exp/exp.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("qa.jsonl is invalid") && stderr.contains("line 1.input: is required"),
        "{stderr}"
    );
}

#[tokio::test]
async fn datasets_push_uploads_a_file_to_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::TestServer::start(
        &format!("sqlite://{}", dir.path().join("themis.db").display()),
        themis::components::Registry::builtin(),
    )
    .await;
    std::fs::write(dir.path().join("gsm.jsonl"), JSONL).unwrap();
    let push = |dir: std::path::PathBuf, base: String| {
        tokio::task::spawn_blocking(move || {
            themis(&dir, &["datasets", "push", "gsm.jsonl", "--server", &base])
        })
    };
    let out = push(dir.path().to_owned(), server.base.clone())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        printed.starts_with("gsm sha256:") && printed.contains("2 cases, stored"),
        "{printed}"
    );
    let again = push(dir.path().to_owned(), server.base.clone())
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).contains("unchanged"));
    let (status, revisions) = server.get("/datasets/gsm").await;
    assert_eq!(status, 200);
    assert_eq!(revisions["revisions"][0]["case_count"], 2);

    std::fs::write(dir.path().join("bad.jsonl"), "{}\n").unwrap();
    let base = server.base.clone();
    let path = dir.path().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        themis(&path, &["datasets", "push", "bad.jsonl", "--server", &base])
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 1.case_id"));
    server.stop().await;
}
