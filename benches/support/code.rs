//! Code execution on the local bubblewrap sandbox: a HumanEval-style run of trivial
//! programs, each a fresh sandbox (namespaces, Python start, test, teardown).

use serde_json::{Value, json};

use super::process::Service;
use super::{BenchConfig, Databases, Row, measured_run};

/// A run of `n` cases, each a one-line function and an assertion on it.
fn humaneval_experiment(n: usize) -> Value {
    let cases: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "case_id": format!("h{i}"),
                "input": {"code": format!("def add_{i}(a, b):\n    return a + b\n")},
                "expected_output": {"test": format!("assert add_{i}({i}, 1) == {}\n", i + 1)}
            })
        })
        .collect();
    json!({
        "generation": {"generator": {"name": "builtin/echo", "params": {"field": "code"}}},
        "evaluation": {"metrics": [{"name": "builtin/code_execution", "params": {"sandbox": "local"}}]},
        "datasets": [{"dataset_id": "humaneval-bench", "cases": cases}],
        "seeds": [1],
        "concurrency": 32
    })
}

pub(crate) async fn humaneval(
    config: &BenchConfig,
    client: &reqwest::Client,
    databases: &Databases,
) -> Result<Vec<Row>, String> {
    let n = config.code_cases;
    let pool = config.code_pool.to_string();
    let service = Service::start(
        &databases.sqlite("code.db"),
        "bench-code",
        &["--sandbox", "local", "--sandbox-pool", &pool],
    )
    .await?;
    let run = measured_run(client, &service, &humaneval_experiment(n)).await;
    service.stop().await;
    let run = run?;
    Ok(vec![Row {
        scenario: "code execution".into(),
        setup: format!(
            "local bubblewrap sandbox, pool {pool}, {n} HumanEval-style cases (Python, one assertion each)"
        ),
        result: format!("{:.0} executions/s", run.per_second),
        cpu_per_case: Some(run.cpu_per_case),
        disk_per_case: None,
        target: "≥ 50 executions/s on 2 cores".into(),
        met: Some(run.per_second >= 50.0),
    }])
}
