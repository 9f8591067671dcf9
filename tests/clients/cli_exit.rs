//! CLI exit code 1: a run that fails.

use serde_json::{Value, json};

#[test]
fn the_cli_exits_1_when_the_run_fails() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("failing.json");
    let cases: Vec<Value> = (0..20)
        .map(|i| json!({"case_id": format!("c{i}"), "input": {"question": "1+1"}, "expected_output": {"answer": "2"}}))
        .collect();
    let body = json!({
        "generation": {"generator": {"name": "builtin/demo_generator", "params": {"error_rate": 1.0}}},
        "evaluation": {"metrics": ["builtin/exact_match"]},
        "datasets": [{"dataset_id": "d", "cases": cases}],
        "seeds": [1],
        "failure_policy": {"max_ratio": 0.1, "min_cases": 5}
    });
    std::fs::write(&file, body.to_string()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_themis"))
        .args(["run", file.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    assert_eq!(result["status"], "failed", "{result}");
}
