//! Provider-backed runs against a fake OpenAI-compatible endpoint on loopback: the
//! service's CPU per case with a provider in the loop, and how close latency-bound runs
//! come to their ceiling C/L.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Json;
use axum::routing::post;
use serde_json::{Value, json};

use super::process::Service;
use super::{BenchConfig, Databases, Row, cases, measured_run};

/// A fake OpenAI-compatible chat endpoint answering after a fixed latency.
pub(crate) async fn fake_provider(latency: Duration) -> Result<SocketAddr, String> {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(move |Json(body): Json<Value>| async move {
            tokio::time::sleep(latency).await;
            let n = body.get("n").and_then(Value::as_u64).unwrap_or(1);
            let choices: Vec<Value> = (0..n)
                .map(|i| json!({"index": i, "message": {"role": "assistant", "content": "4"}, "finish_reason": "stop"}))
                .collect();
            Json(json!({
                "id": "chatcmpl-bench", "object": "chat.completion", "model": body.get("model").cloned().unwrap_or_default(),
                "choices": choices,
                "usage": {"prompt_tokens": 8, "completion_tokens": 1, "total_tokens": 9}
            }))
        }),
    );
    // A backlog of 1,024 (tokio's default) overflows when C = 1,024 cases connect at
    // once: the dropped SYNs are retried after the kernel's 1 s timeout, which made the
    // latency-bound row measure this fake's accept queue, not the service.
    let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .map_err(|e| e.to_string())?;
    let listener = socket.listen(4_096).map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

/// `openai/chat` → `builtin/text` → `builtin/exact_match` with the settings a user gets
/// by default (the response cache on). `salt` names the dataset: each case's seed, and so
/// its request, differs between salts, so no run is served from another's responses.
pub(crate) fn provider_experiment(
    n: usize,
    provider: SocketAddr,
    concurrency: usize,
    salt: &str,
) -> Value {
    json!({
        "generation": {"generator": {"name": "openai/chat", "params": {
            "base_url": format!("http://{provider}/v1"), "model": "bench", "prompt": "{{ input.question }}"}}},
        "evaluation": {"parsers": ["builtin/text"], "metrics": ["builtin/exact_match"]},
        "datasets": [{"dataset_id": salt, "cases": cases(n)}],
        "seeds": [1],
        "concurrency": concurrency
    })
}

/// `body` with the response cache turned off.
fn without_cache(mut body: Value) -> Value {
    body["cache"] = json!(false);
    body
}

/// L = 50 ms, C = 64: the service's CPU per case on SQLite, and on Postgres.
pub(crate) async fn provider_backed(
    config: &BenchConfig,
    client: &reqwest::Client,
    databases: &mut Databases,
) -> Result<Vec<Row>, String> {
    let provider = fake_provider(config.provider_latency).await?;
    let c = config.provider_concurrency;
    let setup = |store: &str| {
        format!(
            "openai/chat → builtin/text → builtin/exact_match, L={}ms, C={c}, {} cases, {store}",
            config.provider_latency.as_millis(),
            config.provider_cases
        )
    };
    let body = provider_experiment(config.provider_cases, provider, c, "provider-backed");
    let uncached = without_cache(provider_experiment(
        config.provider_cases,
        provider,
        c,
        "provider-backed-uncached",
    ));
    // The service as a user starts it: no tuning flags.
    let service = Service::start(&databases.sqlite("provider.db"), "bench-provider", &[]).await?;
    let measured = async {
        let sqlite = measured_run(client, &service, &body).await?;
        let uncached = measured_run(client, &service, &uncached).await?;
        Ok::<_, String>((sqlite, uncached))
    }
    .await;
    service.stop().await;
    let (sqlite, uncached) = measured?;
    let limit = c as f64 / config.provider_latency.as_secs_f64();
    let mut rows = vec![
        Row {
            scenario: "provider-backed".into(),
            setup: setup("SQLite, defaults (response cache on)"),
            result: format!(
                "{:.0} cases/s = {:.3} of C/L",
                sqlite.per_second,
                sqlite.per_second / limit
            ),
            cpu_per_case: Some(sqlite.cpu_per_case),
            disk_per_case: None,
            target: format!(
                "≤ 150 µs CPU per case, ≤ 1.1 × the cache off ({:.0} µs)",
                1.1 * uncached.cpu_per_case
            ),
            met: Some(
                sqlite.cpu_per_case <= 150.0 && sqlite.cpu_per_case <= 1.1 * uncached.cpu_per_case,
            ),
        },
        Row {
            scenario: "provider-backed".into(),
            setup: setup("SQLite, `\"cache\": false`"),
            result: format!(
                "{:.0} cases/s = {:.3} of C/L",
                uncached.per_second,
                uncached.per_second / limit
            ),
            cpu_per_case: Some(uncached.cpu_per_case),
            disk_per_case: None,
            target: "-".into(),
            met: None,
        },
    ];
    if let Some(url) = databases.postgres().await? {
        let service = Service::start(&url, "bench-provider-pg", &[]).await?;
        let postgres = measured_run(client, &service, &body).await;
        service.stop().await;
        let postgres = postgres?;
        rows.push(Row {
            scenario: "provider-backed".into(),
            setup: setup("Postgres"),
            result: format!(
                "{:.0} cases/s = {:.3} of C/L",
                postgres.per_second,
                postgres.per_second / limit
            ),
            cpu_per_case: Some(postgres.cpu_per_case),
            disk_per_case: None,
            target: format!(
                "≤ 1.5 × SQLite's CPU per case ({:.0} µs)",
                1.5 * sqlite.cpu_per_case
            ),
            met: Some(postgres.cpu_per_case <= 1.5 * sqlite.cpu_per_case),
        });
    }
    Ok(rows)
}

/// Provider latency L, concurrency C, whole waves of C cases: the ceiling is C/L cases
/// per second.
pub(crate) async fn latency_bound(
    config: &BenchConfig,
    client: &reqwest::Client,
    databases: &Databases,
) -> Result<Vec<Row>, String> {
    let service = Service::start(&databases.sqlite("latency.db"), "bench-latency", &[]).await?;
    let mut rows = Vec::new();
    for &(latency, c) in &config.latency_runs {
        let provider = match fake_provider(latency).await {
            Ok(provider) => provider,
            Err(e) => {
                service.stop().await;
                return Err(e);
            }
        };
        let n = config.latency_waves * c;
        let body = provider_experiment(
            n,
            provider,
            c,
            &format!("latency-{}-{c}", latency.as_millis()),
        );
        let run = match measured_run(client, &service, &body).await {
            Ok(run) => run,
            Err(e) => {
                service.stop().await;
                return Err(e);
            }
        };
        let limit = c as f64 / latency.as_secs_f64();
        let fraction = run.per_second / limit;
        rows.push(Row {
            scenario: "latency-bound".into(),
            setup: format!(
                "L={}ms, C={c}, {n} cases (N = {}·C), SQLite, defaults",
                latency.as_millis(),
                config.latency_waves
            ),
            result: format!(
                "{:.0} cases/s = {fraction:.3} of C/L ({limit:.0}/s)",
                run.per_second
            ),
            cpu_per_case: Some(run.cpu_per_case),
            disk_per_case: None,
            target: "≥ 0.95 of C/L".into(),
            met: Some(fraction >= 0.95),
        });
    }
    service.stop().await;
    Ok(rows)
}
