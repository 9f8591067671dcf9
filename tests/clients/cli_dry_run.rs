//! `themis run --dry-run`: the estimate, priced with `--prices`, and nothing run,
//! stored or called.

use serde_json::{Value, json};

use crate::common::fake_provider::{FakeProvider, Reply};

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_dry_run_prints_the_estimate_and_calls_nothing() {
    let fake = FakeProvider::replying(|_, _| Reply::text("2", 1)).await;
    let dir = tempfile::tempdir().unwrap();
    let prices = dir.path().join("prices.json");
    std::fs::write(
        &prices,
        json!({"price": [{"provider": "fake", "model": "m",
                          "input_per_1m": 0, "output_per_1m": 1000}]})
        .to_string(),
    )
    .unwrap();
    let file = dir.path().join("experiment.json");
    let database = dir.path().join("runs.db");
    let body = json!({
        "generation": {"generator": {"name": "openai/chat", "params": {
            "provider": "fake", "model": "m", "max_tokens": 10, "prompt": "{{ input.q }}"}}},
        "evaluation": {"metrics": ["builtin/exact_match"]},
        "datasets": [{"dataset_id": "d", "cases": [
            {"case_id": "a", "input": {"q": "1+1"}, "expected_output": "2"},
            {"case_id": "b", "input": {"q": "2+2"}, "expected_output": "4"}
        ]}],
        "seeds": [1, 2, 3],
        "storage": {"store": "sqlite", "path": database.to_str().unwrap()}
    });
    std::fs::write(&file, body.to_string()).unwrap();
    let provider = format!("name=fake,base_url={}", fake.base_url);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_themis"))
        .args(["run", file.to_str().unwrap(), "--dry-run", "--json"])
        .args([
            "--provider",
            &provider,
            "--prices",
            prices.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let estimate: Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    assert_eq!(estimate["cases"], 6, "{estimate}");
    assert_eq!(estimate["generation"]["calls"], 6);
    // 6 calls × 10 tokens at $1,000 per 1M.
    assert_eq!(estimate["total"]["cost_high_usd"], 0.06);
    assert_eq!(estimate["total"]["cost_low_usd"], 0.0);
    assert_eq!(fake.hits(), 0);
    assert!(
        !database.exists(),
        "the dry run opened the definition's database"
    );
}
