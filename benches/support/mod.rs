//! Benchmarks: `cargo bench` starts what it needs — the `themis serve` binary (its own
//! process, measured through `/proc`) on a fresh SQLite or Postgres database, a fake OpenAI-compatible provider with a fixed
//! latency on loopback — drives it over HTTP and prints a markdown table.
//!
//! These are measurements, not tests: targets are reported as met or missed, never
//! asserted. A tiny configuration runs in CI so the harness never rots.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::routing::post;
use futures::StreamExt;
use serde_json::{Value, json};

mod memory;
mod process;

use process::Service;

/// What to measure and how big.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Fake provider latency for the latency-bound scenario.
    pub latency: Duration,
    pub latency_cases: usize,
    pub concurrencies: Vec<usize>,
    /// Cases of the engine-overhead run (demo generator, no delay).
    pub overhead_cases: usize,
    /// Concurrent `GET /runs/{id}` pollers while an overhead-sized run executes.
    pub pollers: usize,
    pub sse_clients: usize,
    pub sse_cases: usize,
    /// Cases of the SQLite vs Postgres (1 and 2 instances) comparison.
    pub multinode_cases: usize,
    /// A Postgres server to create scratch databases on; Postgres rows are skipped without it.
    pub postgres_url: Option<String>,
    /// Pause of each poller between two requests (a dashboard refreshing fast).
    pub poll_pause: Duration,
    /// Runs by reference and an inline `POST` measured for memory (scenario "memory").
    pub memory: memory::Sizes,
    /// Run only the scenarios whose name contains one of these (all when empty).
    pub only: Vec<String>,
}

impl BenchConfig {
    /// The full benchmark (minutes on a laptop).
    pub fn full() -> Self {
        BenchConfig {
            latency: Duration::from_millis(50),
            latency_cases: 5_000,
            concurrencies: vec![16, 64, 256],
            overhead_cases: 100_000,
            pollers: 64,
            sse_clients: 1_000,
            sse_cases: 2_000,
            multinode_cases: 20_000,
            postgres_url: None,
            poll_pause: Duration::from_millis(20),
            memory: memory::Sizes::full(),
            only: Vec::new(),
        }
    }

    /// Seconds: exercises every scenario at toy sizes.
    pub fn tiny() -> Self {
        BenchConfig {
            latency: Duration::from_millis(5),
            latency_cases: 60,
            concurrencies: vec![4, 16],
            overhead_cases: 300,
            pollers: 4,
            sse_clients: 8,
            sse_cases: 20,
            multinode_cases: 200,
            postgres_url: None,
            poll_pause: Duration::from_millis(5),
            memory: memory::Sizes::tiny(),
            only: Vec::new(),
        }
    }
}

/// One measured line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    pub scenario: String,
    pub setup: String,
    pub result: String,
    pub target: String,
    /// `None` when the row has no target.
    pub met: Option<bool>,
}

#[derive(Debug, Default)]
pub struct Report {
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

impl Report {
    pub fn markdown(&self) -> String {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut out = format!("Machine: {cores} cores, {}\n\n", std::env::consts::ARCH);
        out.push_str("| scenario | setup | result | target | met |\n|---|---|---|---|---|\n");
        for row in &self.rows {
            let met = match row.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "-",
            };
            out.push_str(&format!(
                "| {} | {} | {} | {} | {met} |\n",
                row.scenario, row.setup, row.result, row.target
            ));
        }
        for note in &self.notes {
            out.push_str(&format!("\n- {note}"));
        }
        out.push('\n');
        out
    }
}

/// A fake OpenAI-compatible chat endpoint answering after a fixed latency.
async fn fake_provider(latency: Duration) -> Result<SocketAddr, String> {
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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

fn cases(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({"case_id": format!("c{i}"), "input": {"question": format!("{} + {}", i % 97, i % 13)},
                   "expected_output": {"answer": (i % 97 + i % 13).to_string()}})
        })
        .collect()
}

fn demo_experiment(n: usize, delay_ms: u64, concurrency: usize, salt: &str) -> Value {
    json!({
        "generation": {"generator": {"name": "builtin/demo_generator", "params": {"delay_ms": delay_ms}}},
        "evaluation": {"metrics": ["builtin/exact_match", {"name": "builtin/token_f1", "params": {"field": "answer"}}]},
        "datasets": [{"dataset_id": salt, "cases": cases(n)}],
        "seeds": [1],
        "concurrency": concurrency
    })
}

fn provider_experiment(n: usize, provider: SocketAddr, concurrency: usize) -> Value {
    json!({
        "generation": {"generator": {"name": "openai/chat", "params": {
            "base_url": format!("http://{provider}/v1"), "model": "bench", "prompt": "{{ input.question }}"}}},
        "evaluation": {"metrics": ["builtin/contains"]},
        "datasets": [{"dataset_id": format!("latency-{concurrency}"), "cases": cases(n)}],
        "seeds": [1],
        "concurrency": concurrency,
        "cache": false
    })
}

async fn post_run(client: &reqwest::Client, base: &str, body: &Value) -> Result<String, String> {
    let response = client
        .post(format!("{base}/runs"))
        .json(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let run: Value = response.json().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("POST /runs answered {status}: {run}"));
    }
    run["run_id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "no run_id".to_owned())
}

/// Waits for the run to finish; returns the final run object.
async fn finish(client: &reqwest::Client, base: &str, run_id: &str) -> Result<Value, String> {
    loop {
        let run: Value = client
            .get(format!("{base}/runs/{run_id}"))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        match run["status"].as_str() {
            Some("completed") => return Ok(run),
            Some("failed" | "cancelled") => {
                return Err(format!("run ended {}: {}", run["status"], run["error"]));
            }
            _ => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
}

/// Cases per second between the run's start and finish (server clock).
fn throughput(run: &Value) -> f64 {
    let total = run["progress"]["total"].as_f64().unwrap_or(0.0);
    let ms = run["duration_ms"].as_f64().unwrap_or(0.0).max(1.0);
    total / (ms / 1e3)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Creates and drops scratch Postgres databases for the run.
struct Scratch {
    base: String,
    created: Vec<String>,
}

impl Scratch {
    async fn database(&mut self) -> Result<String, String> {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&self.base)
            .await
            .map_err(|e| e.to_string())?;
        let name = format!("themis_bench_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .map_err(|e| e.to_string())?;
        self.created.push(name.clone());
        let (prefix, _) = self
            .base
            .rsplit_once('/')
            .ok_or("postgres URL needs a database")?;
        Ok(format!("{prefix}/{name}"))
    }

    async fn drop_all(&mut self) {
        use sqlx::Connection;
        if let Ok(mut admin) = sqlx::PgConnection::connect(&self.base).await {
            for name in self.created.drain(..) {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await;
            }
        }
    }
}

/// Lets this process hold a thousand SSE sockets on each side.
fn raise_open_file_limit() {
    // SAFETY: plain libc calls with a valid, initialised struct.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max.min(65_536);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// Runs every scenario and returns the table. A scenario that fails is reported as a
/// failed row; the others still run.
pub async fn run(config: &BenchConfig) -> Result<Report, String> {
    raise_open_file_limit();
    let mut report = Report::default();
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(2_048)
        .build()
        .map_err(|e| e.to_string())?;
    let sqlite = |name: &str| format!("sqlite://{}", dir.path().join(name).display());

    let wanted = |name: &str| {
        config.only.is_empty() || config.only.iter().any(|o| name.contains(o.as_str()))
    };
    let mut scenarios: Vec<(&str, Result<Vec<Row>, String>)> = Vec::new();
    if wanted("latency-bound") {
        eprintln!("bench: latency-bound ...");
        scenarios.push((
            "latency-bound",
            latency_bound(config, &client, &sqlite("latency.db")).await,
        ));
    }
    if wanted("engine overhead") {
        eprintln!("bench: engine overhead ...");
        scenarios.push((
            "engine overhead",
            overhead(config, &client, &sqlite("overhead.db")).await,
        ));
    }
    if wanted("polling") {
        eprintln!("bench: polling and SSE fan-out ...");
        scenarios.push((
            "polling",
            polling_and_fanout(config, &client, &sqlite("polling.db")).await,
        ));
    }
    if wanted("store comparison") {
        eprintln!("bench: store comparison ...");
        scenarios.push((
            "store comparison",
            compare_stores(config, &client, &sqlite("compare.db")).await,
        ));
    }
    if wanted("memory") {
        eprintln!("bench: memory ...");
        scenarios.push((
            "memory",
            Ok(memory::scenarios(&config.memory, &client, &sqlite).await),
        ));
    }
    for (scenario, outcome) in scenarios {
        match outcome {
            Ok(rows) => report.rows.extend(rows),
            Err(e) => report.rows.push(Row {
                scenario: scenario.into(),
                setup: "-".into(),
                result: format!("failed: {e}"),
                target: "-".into(),
                met: Some(false),
            }),
        }
    }
    if config.postgres_url.is_none() {
        report
            .notes
            .push("Postgres rows skipped: pass --postgres URL.".into());
    }
    report.notes.push(
        "Two instances run as two processes on the same cores: that row shows coordination cost, not scale-out."
            .into(),
    );
    Ok(report)
}

/// Provider latency L, concurrency C: the ceiling is C/L cases per second.
async fn latency_bound(
    config: &BenchConfig,
    client: &reqwest::Client,
    database: &str,
) -> Result<Vec<Row>, String> {
    let provider = fake_provider(config.latency).await?;
    let service = Service::start(database, "bench-latency", &[]).await?;
    let mut rows = Vec::new();
    for &c in &config.concurrencies {
        let measured = async {
            let run_id = post_run(
                client,
                &service.base,
                &provider_experiment(config.latency_cases, provider, c),
            )
            .await?;
            finish(client, &service.base, &run_id).await
        }
        .await;
        let run = match measured {
            Ok(run) => run,
            Err(e) => {
                service.stop().await;
                return Err(e);
            }
        };
        let measured = throughput(&run);
        let limit = c as f64 / config.latency.as_secs_f64();
        let fraction = measured / limit;
        rows.push(Row {
            scenario: "latency-bound".into(),
            setup: format!(
                "L={}ms, {} cases, C={c}, SQLite",
                config.latency.as_millis(),
                config.latency_cases
            ),
            result: format!("{measured:.0} cases/s = {fraction:.3} of C/L ({limit:.0}/s)"),
            target: "≥ 0.95 of C/L".into(),
            met: Some(fraction >= 0.95),
        });
    }
    service.stop().await;
    Ok(rows)
}

/// Demo generator without delay into SQLite: the engine's own cost per case.
async fn overhead(
    config: &BenchConfig,
    client: &reqwest::Client,
    database: &str,
) -> Result<Vec<Row>, String> {
    let service = Service::start(database, "bench-overhead", &[]).await?;
    let before = service.usage();
    let result = async {
        let run_id = post_run(
            client,
            &service.base,
            &demo_experiment(config.overhead_cases, 0, 64, "overhead"),
        )
        .await?;
        finish(client, &service.base, &run_id).await
    }
    .await;
    let after = service.usage();
    service.stop().await;
    let run = result?;
    let per_minute = throughput(&run) * 60.0;
    let cpu_per_case = match (before, after) {
        (Some(before), Some(after)) => before.cpu_micros_per_case(&after, config.overhead_cases),
        _ => f64::NAN,
    };
    Ok(vec![
        Row {
            scenario: "engine overhead".into(),
            setup: format!(
                "demo generator, {} cases, exact_match + token_f1, SQLite",
                config.overhead_cases
            ),
            result: format!(
                "{:.0} cases/s ({per_minute:.0}/min), server CPU {:.0} µs per case",
                throughput(&run),
                cpu_per_case
            ),
            target: "≥ 100,000 cases/min".into(),
            met: Some(per_minute >= 100_000.0),
        },
        Row {
            scenario: "memory".into(),
            setup: format!("same run, {} cases", config.overhead_cases),
            result: format!(
                "service RSS {:.0} MiB before, {:.0} MiB after, peak {:.0} MiB",
                before.map_or(f64::NAN, |u| u.rss_mib),
                after.map_or(f64::NAN, |u| u.rss_mib),
                after.map_or(f64::NAN, |u| u.peak_rss_mib)
            ),
            target: "records streamed to the store, not held".into(),
            met: None,
        },
    ])
}

/// Pollers on `GET /runs/{id}` while an overhead-sized run executes, then SSE fan-out.
async fn polling_and_fanout(
    config: &BenchConfig,
    client: &reqwest::Client,
    database: &str,
) -> Result<Vec<Row>, String> {
    let service = Service::start(database, "bench-polling", &[]).await?;
    let result = async {
        let run_id = post_run(
            client,
            &service.base,
            &demo_experiment(config.overhead_cases, 0, 64, "polling"),
        )
        .await?;
        let polling = poll_while_running(
            client,
            &service.base,
            &run_id,
            config.pollers,
            config.poll_pause,
        )
        .await?;
        let run = finish(client, &service.base, &run_id).await?;
        let fanout =
            sse_fanout(client, &service.base, config.sse_clients, config.sse_cases).await?;
        Ok::<_, String>((run, polling, fanout))
    }
    .await;
    service.stop().await;
    let (run, polling, fanout) = result?;
    Ok(vec![
        Row {
            scenario: "polling".into(),
            setup: format!(
                "{} pollers on GET /runs/{{id}} ({} ms pause) during a {}-case run ({:.0} cases/s meanwhile)",
                config.pollers,
                config.poll_pause.as_millis(),
                config.overhead_cases,
                throughput(&run)
            ),
            result: format!(
                "p50 {:.2} ms, p99 {:.2} ms, {:.0} req/s",
                polling.p50_ms, polling.p99_ms, polling.per_second
            ),
            target: "p99 < 5 ms".into(),
            met: Some(polling.p99_ms < 5.0),
        },
        Row {
            scenario: "SSE fan-out".into(),
            setup: format!("{} clients, {} events", config.sse_clients, fanout.events),
            result: format!(
                "all in order: {}; event → last client p50 {:.0} ms, p99 {:.0} ms",
                fanout.complete, fanout.p50_ms, fanout.p99_ms
            ),
            target: "every client gets every event, in order".into(),
            met: Some(fanout.complete && fanout.events > 0),
        },
    ])
}

/// The same run on SQLite, and on Postgres with one and with two instances.
async fn compare_stores(
    config: &BenchConfig,
    client: &reqwest::Client,
    database: &str,
) -> Result<Vec<Row>, String> {
    let service = Service::start(database, "bench-compare", &[]).await?;
    let outcome = async {
        let run_id = post_run(
            client,
            &service.base,
            &demo_experiment(config.multinode_cases, 0, 64, "compare"),
        )
        .await?;
        finish(client, &service.base, &run_id).await
    }
    .await;
    service.stop().await;
    let mut rows = vec![store_row(
        "SQLite, 1 instance",
        config.multinode_cases,
        &outcome?,
    )];
    if let Some(url) = &config.postgres_url {
        let mut scratch = Scratch {
            base: url.clone(),
            created: Vec::new(),
        };
        let outcome = compare_postgres(client, &mut scratch, config.multinode_cases).await;
        scratch.drop_all().await;
        rows.extend(outcome?);
    }
    Ok(rows)
}

fn store_row(setup: &str, cases: usize, run: &Value) -> Row {
    Row {
        scenario: "store comparison".into(),
        setup: format!("demo generator, {cases} cases, {setup}"),
        result: format!("{:.0} cases/s", throughput(run)),
        target: "-".into(),
        met: None,
    }
}

async fn compare_postgres(
    client: &reqwest::Client,
    scratch: &mut Scratch,
    cases: usize,
) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    let url = scratch.database().await?;
    let one = Service::start(&url, "bench-pg-1", &[]).await?;
    let run_id = post_run(client, &one.base, &demo_experiment(cases, 0, 64, "pg1")).await?;
    rows.push(store_row(
        "Postgres, 1 instance",
        cases,
        &finish(client, &one.base, &run_id).await?,
    ));
    one.stop().await;

    let url = scratch.database().await?;
    let a = Service::start(&url, "bench-pg-a", &[]).await?;
    let b = Service::start(&url, "bench-pg-b", &[]).await?;
    let run_id = post_run(client, &a.base, &demo_experiment(cases, 0, 64, "pg2")).await?;
    rows.push(store_row(
        "Postgres, 2 instances",
        cases,
        &finish(client, &b.base, &run_id).await?,
    ));
    a.stop().await;
    b.stop().await;
    Ok(rows)
}

struct Polling {
    p50_ms: f64,
    p99_ms: f64,
    per_second: f64,
}

/// `pollers` clients GET the run as fast as they can until it finishes.
async fn poll_while_running(
    client: &reqwest::Client,
    base: &str,
    run_id: &str,
    pollers: usize,
    pause: Duration,
) -> Result<Polling, String> {
    let started = Instant::now();
    let url = format!("{base}/runs/{run_id}");
    let tasks: Vec<_> = (0..pollers)
        .map(|_| {
            let client = client.clone();
            let url = url.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let sent = Instant::now();
                    let Ok(response) = client.get(&url).send().await else {
                        break;
                    };
                    let Ok(run) = response.json::<Value>().await else {
                        break;
                    };
                    latencies.push(sent.elapsed().as_secs_f64() * 1e3);
                    if matches!(
                        run["status"].as_str(),
                        Some("completed" | "failed" | "cancelled")
                    ) {
                        break;
                    }
                    tokio::time::sleep(pause).await;
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.map_err(|e| e.to_string())?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    Ok(Polling {
        p50_ms: percentile(&all, 50.0),
        p99_ms: percentile(&all, 99.0),
        per_second: all.len() as f64 / elapsed.max(1e-9),
    })
}

struct Fanout {
    events: usize,
    complete: bool,
    p50_ms: f64,
    p99_ms: f64,
}

/// Opens `clients` SSE streams on a new run and checks each gets every event in order.
async fn sse_fanout(
    client: &reqwest::Client,
    base: &str,
    clients: usize,
    cases: usize,
) -> Result<Fanout, String> {
    let run_id = post_run(client, base, &demo_experiment(cases, 2, 2, "fanout")).await?;
    let url = format!("{base}/runs/{run_id}/events");
    let connected = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let readers: Vec<_> = (0..clients)
        .map(|reader| {
            let client = client.clone();
            let url = url.clone();
            let connected = connected.clone();
            tokio::spawn(async move {
                // (seq, received at ms, occurred at ms — parsed by reader 0 only, to keep
                // the measuring client's own cost low)
                let mut seen: Vec<(u64, f64, Option<f64>)> = Vec::new();
                let Ok(response) = client.get(&url).send().await else {
                    return seen;
                };
                connected.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut stream = response.bytes_stream();
                let mut buffer = String::new();
                while let Some(Ok(chunk)) = stream.next().await {
                    buffer.push_str(&String::from_utf8_lossy(&chunk));
                    while let Some(end) = buffer.find("\n\n") {
                        let block: String = buffer.drain(..end + 2).collect();
                        let Some(seq) = block
                            .lines()
                            .find_map(|l| l.strip_prefix("id:"))
                            .and_then(|id| id.trim().parse::<u64>().ok())
                        else {
                            continue;
                        };
                        let now = chrono::Utc::now().timestamp_millis() as f64;
                        let occurred = (reader == 0)
                            .then(|| block.lines().find_map(|l| l.strip_prefix("data:")))
                            .flatten()
                            .and_then(|data| serde_json::from_str::<Value>(data.trim()).ok())
                            .and_then(|event| {
                                let at = event["occurred_at"].as_str()?.to_owned();
                                chrono::DateTime::parse_from_rfc3339(&at).ok()
                            })
                            .map(|t| t.timestamp_millis() as f64);
                        seen.push((seq, now, occurred));
                    }
                }
                seen
            })
        })
        .collect();
    // Latency counts only events that happened once every client was listening.
    while connected.load(std::sync::atomic::Ordering::SeqCst) < clients {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let all_connected = chrono::Utc::now().timestamp_millis() as f64;
    let mut per_client = Vec::new();
    for reader in readers {
        per_client.push(reader.await.map_err(|e| e.to_string())?);
    }
    finish(client, base, &run_id).await?;
    let events = per_client.iter().map(Vec::len).max().unwrap_or(0);
    let complete = per_client.iter().all(|seen| {
        seen.len() == events
            && seen
                .iter()
                .enumerate()
                .all(|(i, (seq, ..))| *seq == i as u64 + 1)
    });
    let occurred: BTreeMap<u64, f64> = per_client
        .first()
        .map(|seen| {
            seen.iter()
                .filter_map(|(seq, _, at)| Some((*seq, (*at)?)))
                .collect()
        })
        .unwrap_or_default();
    // For each live event, the delay until the last client had it.
    let mut worst: BTreeMap<u64, f64> = BTreeMap::new();
    for seen in &per_client {
        for (seq, received, _) in seen {
            let Some(&at) = occurred.get(seq) else {
                continue;
            };
            if at < all_connected {
                continue;
            }
            let entry = worst.entry(*seq).or_insert(f64::MIN);
            *entry = entry.max(received - at);
        }
    }
    let mut delays: Vec<f64> = worst.into_values().collect();
    delays.sort_by(f64::total_cmp);
    Ok(Fanout {
        events,
        complete,
        p50_ms: percentile(&delays, 50.0),
        p99_ms: percentile(&delays, 99.0),
    })
}
