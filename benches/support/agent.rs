//! Agent loops: the service's CPU per model call in a two-turn `openai/agent` case (a
//! tool call answered by a mock function, then the answer) against a single-turn
//! `openai/chat` case, both against a fake endpoint on loopback.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Json;
use axum::routing::post;
use serde_json::{Value, json};

use super::process::Service;
use super::{BenchConfig, Databases, Row, measured_run};

/// A fake chat endpoint answering after `latency`: a call of `lookup` when the request
/// offers tools and has no tool result yet, else the answer.
async fn fake_agent_provider(latency: Duration) -> Result<SocketAddr, String> {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(move |Json(body): Json<Value>| async move {
            tokio::time::sleep(latency).await;
            let messages = body["messages"].as_array().cloned().unwrap_or_default();
            let answered = messages.iter().any(|m| m["role"] == "tool");
            let message = if body.get("tools").is_some() && !answered {
                json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_1",
                       "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":\"x\"}"}}]})
            } else {
                json!({"role": "assistant", "content": "4"})
            };
            Json(json!({
                "id": "chatcmpl-bench", "object": "chat.completion", "model": body["model"],
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 8, "completion_tokens": 1, "total_tokens": 9}
            }))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

/// `n` cases with a conversation and the mock function's result.
fn agent_cases(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({"case_id": format!("c{i}"),
                   "input": {"messages": [{"role": "user", "content": format!("What is {i} + 2?")}],
                             "tool_results": {"lookup": "4"}},
                   "expected_output": "4"})
        })
        .collect()
}

fn experiment(generator: Value, n: usize, concurrency: usize, salt: &str) -> Value {
    json!({
        "generation": {"generator": generator},
        "evaluation": {"metrics": ["builtin/exact_match"]},
        "datasets": [{"dataset_id": salt, "cases": agent_cases(n)}],
        "seeds": [1],
        "concurrency": concurrency
    })
}

/// CPU per model call: a two-turn agent case against a single-turn chat case.
pub(crate) async fn per_model_call(
    config: &BenchConfig,
    client: &reqwest::Client,
    databases: &Databases,
) -> Result<Vec<Row>, String> {
    let provider = fake_agent_provider(config.provider_latency).await?;
    let (n, c) = (config.provider_cases, config.provider_concurrency);
    let base_url = format!("http://{provider}/v1");
    let chat = experiment(
        json!({"name": "openai/chat", "params": {"base_url": base_url, "model": "bench",
               "conversation": "input.messages"}}),
        n,
        c,
        "agent-single-turn",
    );
    let agent = experiment(
        json!({"name": "openai/agent", "params": {"base_url": base_url, "model": "bench",
               "conversation": "input.messages",
               "functions": [{"name": "lookup", "parameters": {"type": "object"}}]}}),
        n,
        c,
        "agent-two-turn",
    );
    let service = Service::start(&databases.sqlite("agent.db"), "bench-agent", &[]).await?;
    let measured = async {
        let single = measured_run(client, &service, &chat).await?;
        let double = measured_run(client, &service, &agent).await?;
        Ok::<_, String>((single, double))
    }
    .await;
    service.stop().await;
    let (single, double) = measured?;
    // Two model calls per agent case, one per chat case.
    let per_call = double.cpu_per_case / 2.0;
    let setup = |what: &str| {
        format!(
            "{what}, L={}ms, C={c}, {n} cases, SQLite, defaults",
            config.provider_latency.as_millis()
        )
    };
    Ok(vec![
        Row {
            scenario: "agent".into(),
            setup: setup("openai/chat with the case's conversation: 1 model call a case"),
            result: format!("{:.0} cases/s", single.per_second),
            cpu_per_case: Some(single.cpu_per_case),
            disk_per_case: None,
            target: "-".into(),
            met: None,
        },
        Row {
            scenario: "agent".into(),
            setup: setup(
                "openai/agent, a mock function call then the answer: 2 model calls a case",
            ),
            result: format!(
                "{:.0} cases/s; {per_call:.0} µs CPU per model call",
                double.per_second
            ),
            cpu_per_case: Some(double.cpu_per_case),
            disk_per_case: None,
            target: format!(
                "CPU per model call ≤ 1.5 × the single-turn case's ({:.0} µs)",
                1.5 * single.cpu_per_case
            ),
            met: Some(per_call <= 1.5 * single.cpu_per_case),
        },
    ])
}
