//! `themis run`: the one-call local evaluation from the command line.

use std::process::Command;

use serde_json::Value;

fn themis(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_themis"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run themis")
}

#[test]
fn run_prints_a_readable_summary() {
    let out = themis(&["run", "examples/observe.json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("completed"), "{text}");
    assert!(
        text.contains("Cases: 1 total, 1 completed, 0 failed"),
        "{text}"
    );
    let line = text
        .lines()
        .find(|l| l.starts_with("builtin/exact_match"))
        .expect("metric row");
    assert!(line.contains("1.000"), "{line}");
}

#[test]
fn run_json_gives_the_full_result_and_trace_adds_spans_and_events() {
    let out = themis(&[
        "run",
        "examples/observe.json",
        "--json",
        "--trace",
        "--concurrency",
        "4",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["status"], "completed");
    assert!(result["run_id"].as_str().unwrap().starts_with("run_"));
    assert_eq!(result["aggregates"]["builtin/exact_match"]["mean"], 1.0);
    assert_eq!(result["cases"][0]["case_id"], "case-1");
    let spans: Vec<&str> = result["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    for name in [
        "run",
        "generation",
        "reduction",
        "parsing",
        "scoring",
        "judging",
    ] {
        assert!(spans.contains(&name), "{spans:?}");
    }
    assert!(
        result["spans"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] == "ok")
    );
    let events: Vec<&str> = result["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(events.first(), Some(&"run_started"));
    assert_eq!(events.last(), Some(&"run_completed"));
}

#[test]
fn invalid_input_exits_2_naming_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.json");
    std::fs::write(
        &path,
        r#"{"generation": {"generator": "builtin/nope"}, "evaluation": {}, "datasets": [], "seeds": []}"#,
    )
    .unwrap();
    let out = themis(&["run", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    for path in ["generation.generator", "datasets", "seeds"] {
        assert!(err.contains(&format!("  {path}: ")), "{err}");
    }
    let missing = themis(&["run", "does-not-exist.json"]);
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn a_database_keeps_the_run_between_invocations() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("cli.db").display());
    let first = themis(&[
        "run",
        "examples/observe.json",
        "--json",
        "--database",
        &database,
    ]);
    assert!(first.status.success());
    let second = themis(&[
        "run",
        "examples/observe.json",
        "--json",
        "--database",
        &database,
    ]);
    let (a, b): (Value, Value) = (
        serde_json::from_slice(&first.stdout).unwrap(),
        serde_json::from_slice(&second.stdout).unwrap(),
    );
    assert_eq!(a["run_id"], b["run_id"]);
    assert_eq!(
        a["cases"], b["cases"],
        "the finished run is found, not run again"
    );
}

#[test]
fn a_webhook_secret_signs_only_for_the_url_it_is_bound_to() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hooked.json");
    let mut definition: Value =
        serde_json::from_str(&std::fs::read_to_string("examples/observe.json").unwrap()).unwrap();
    definition["subscribers"] = serde_json::json!([{
        "kind": "webhook", "url": "http://127.0.0.1:9/elsewhere", "secret_env": "THEMIS_WEBHOOK_CLI"
    }]);
    std::fs::write(&path, definition.to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_themis"))
        .args([
            "run",
            path.to_str().unwrap(),
            "--webhook-secret",
            "THEMIS_WEBHOOK_CLI=http://127.0.0.1:9/hooks",
        ])
        .env("THEMIS_WEBHOOK_CLI", "cli-s3cret")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run themis");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("  subscribers[0].secret_env: "), "{err}");
    assert!(
        err.contains("not bound") && !err.contains("cli-s3cret"),
        "{err}"
    );
}
