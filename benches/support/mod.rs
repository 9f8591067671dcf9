//! Benchmarks: `cargo bench` starts what it needs — the `themis serve` binary (its own
//! process, measured through `/proc`) on a fresh SQLite or Postgres database, a fake
//! OpenAI-compatible provider with a fixed latency on loopback — drives it over HTTP and
//! prints a markdown table. Every row that runs cases gives the service's own CPU time
//! (user + system) per case, apart from the bench's clients and fake provider.
//!
//! These are measurements, not tests: targets are reported as met or missed, never
//! asserted. A tiny configuration runs in CI so the harness never rots.
//!
//! Scenarios, one file each: `provider.rs` (provider-backed CPU per case, latency-bound
//! throughput), `engine.rs` (engine-only overhead, memory, store comparison), `live.rs`
//! (polling and SSE fan-out while a run executes), `code.rs` (programs in the local
//! sandbox), `agent.rs` (CPU per model call of an agent loop).

use std::time::Duration;

use serde_json::{Value, json};

mod agent;
mod code;
mod engine;
mod live;
mod memory;
mod process;
mod provider;
mod scaleout;

use process::Service;

/// What to measure and how big.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Provider-backed CPU scenario: fake provider latency, cases, concurrency.
    pub provider_latency: Duration,
    pub provider_cases: usize,
    pub provider_concurrency: usize,
    /// Latency-bound rows: (provider latency L, concurrency C), each run with
    /// `latency_waves`·C cases (whole waves).
    pub latency_runs: Vec<(Duration, usize)>,
    pub latency_waves: usize,
    /// Cases of the engine-only run (demo generator, no delay).
    pub overhead_cases: usize,
    /// Concurrent `GET /runs/{id}` pollers while a provider-backed run executes.
    pub pollers: usize,
    /// Pause of each poller between two requests (a dashboard refreshing fast).
    pub poll_pause: Duration,
    /// The provider-backed run polled meanwhile: cases and concurrency (latency is
    /// `provider_latency`).
    pub polling_cases: usize,
    pub polling_concurrency: usize,
    pub sse_clients: usize,
    pub sse_cases: usize,
    /// Demo generator delay of the SSE run: sets its event rate.
    pub sse_delay_ms: u64,
    /// Cases of the SQLite vs Postgres (1 and 2 instances) comparison.
    pub multinode_cases: usize,
    /// A Postgres server to create scratch databases on; Postgres rows are skipped without it.
    pub postgres_url: Option<String>,
    /// Runs by reference and an inline `POST` measured for memory (scenario "memory").
    pub memory: memory::Sizes,
    /// Run only the scenarios whose name contains one of these (all when empty).
    pub only: Vec<String>,
    /// Cases of the code-execution run and the sandbox pool it runs on.
    pub code_cases: usize,
    pub code_pool: usize,
    /// Scale-out (opt-in, `--only scaleout`): instance counts, provider latency, the
    /// run's concurrency per instance, and cases as whole waves of that concurrency.
    pub scaleout_instances: Vec<usize>,
    pub scaleout_latency: Duration,
    pub scaleout_per_instance: usize,
    pub scaleout_waves: usize,
}

impl BenchConfig {
    /// The full benchmark (minutes on a laptop).
    pub fn full() -> Self {
        BenchConfig {
            provider_latency: Duration::from_millis(50),
            provider_cases: 10_000,
            provider_concurrency: 64,
            latency_runs: vec![
                (Duration::from_millis(200), 256),
                (Duration::from_secs(1), 1_024),
            ],
            latency_waves: 20,
            overhead_cases: 100_000,
            pollers: 64,
            poll_pause: Duration::from_millis(20),
            polling_cases: 10_000,
            // L = 50 ms: ~1,200 cases/s, the "at >= 1,000 cases/s" (the row
            // checks the rate reached).
            polling_concurrency: 64,
            sse_clients: 1_000,
            sse_cases: 600,
            sse_delay_ms: 8,
            multinode_cases: 20_000,
            postgres_url: None,
            memory: memory::Sizes::full(),
            only: Vec::new(),
            // A thousand fresh sandboxes; the pool is the machine's cores, twice over.
            code_cases: 1_000,
            code_pool: 2 * std::thread::available_parallelism().map_or(1, |n| n.get()),
            scaleout_instances: vec![1, 2, 4, 8],
            scaleout_latency: Duration::from_secs(1),
            scaleout_per_instance: 256,
            scaleout_waves: 10,
        }
    }

    /// Seconds: exercises every scenario at toy sizes.
    pub fn tiny() -> Self {
        BenchConfig {
            provider_latency: Duration::from_millis(5),
            provider_cases: 60,
            provider_concurrency: 8,
            latency_runs: vec![
                (Duration::from_millis(5), 4),
                (Duration::from_millis(5), 16),
            ],
            latency_waves: 3,
            overhead_cases: 300,
            pollers: 4,
            poll_pause: Duration::from_millis(5),
            polling_cases: 100,
            polling_concurrency: 8,
            sse_clients: 8,
            sse_cases: 20,
            sse_delay_ms: 2,
            multinode_cases: 200,
            postgres_url: None,
            memory: memory::Sizes::tiny(),
            only: Vec::new(),
            code_cases: 20,
            code_pool: 2,
            scaleout_instances: vec![1, 2],
            scaleout_latency: Duration::from_millis(20),
            scaleout_per_instance: 4,
            scaleout_waves: 3,
        }
    }
}

/// One measured line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    pub scenario: String,
    pub setup: String,
    pub result: String,
    /// The service's CPU time (user + system) per case, in µs.
    pub cpu_per_case: Option<f64>,
    /// Bytes on disk per case of the run's database (SQLite rows), after the run.
    pub disk_per_case: Option<f64>,
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
        out.push_str(
            "| scenario | setup | result | server CPU per case (disk per case) | target | met |\n|---|---|---|---|---|---|\n",
        );
        for row in &self.rows {
            let met = match row.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "-",
            };
            let mut cpu = row
                .cpu_per_case
                .map_or_else(|| "-".to_owned(), |us| format!("{us:.0} µs"));
            if let Some(bytes) = row.disk_per_case {
                cpu.push_str(&format!(", {bytes:.0} B on disk"));
            }
            out.push_str(&format!(
                "| {} | {} | {} | {cpu} | {} | {met} |\n",
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

/// A finished run and what the service spent on it.
pub(crate) struct Measured {
    /// Cases per second between the run's start and finish (server clock).
    pub per_second: f64,
    /// Service CPU (user + system) from just before the `POST` to the end, per case.
    pub cpu_per_case: f64,
}

/// Posts `body`, waits for the run to finish and reads the service's CPU around it.
async fn measured_run(
    client: &reqwest::Client,
    service: &Service,
    body: &Value,
) -> Result<Measured, String> {
    let before = service.usage();
    let run_id = post_run(client, &service.base, body).await?;
    let run = finish(client, &service.base, &run_id).await?;
    let after = service.usage();
    Ok(measured(run, before, after))
}

fn measured(run: Value, before: Option<process::Usage>, after: Option<process::Usage>) -> Measured {
    let total = run["progress"]["total"].as_u64().unwrap_or(0) as usize;
    let cpu_per_case = match (before, after) {
        (Some(before), Some(after)) => before.cpu_micros_per_case(&after, total),
        _ => f64::NAN,
    };
    Measured {
        per_second: throughput(&run),
        cpu_per_case,
    }
}

pub(crate) fn cases(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({"case_id": format!("c{i}"), "input": {"question": format!("{} + {}", i % 97, i % 13)},
                   "expected_output": {"answer": (i % 97 + i % 13).to_string()}})
        })
        .collect()
}

pub(crate) fn demo_experiment(n: usize, delay_ms: u64, concurrency: usize, salt: &str) -> Value {
    json!({
        "generation": {"generator": {"name": "builtin/demo_generator", "params": {"delay_ms": delay_ms}}},
        "evaluation": {"metrics": ["builtin/exact_match", {"name": "builtin/token_f1", "params": {"field": "answer"}}]},
        "datasets": [{"dataset_id": salt, "cases": cases(n)}],
        "seeds": [1],
        "concurrency": concurrency
    })
}

async fn post_run(client: &reqwest::Client, base: &str, body: &Value) -> Result<String, String> {
    let request = client.post(format!("{base}/runs")).json(body);
    field_of(request, "POST /runs", "run_id").await
}

/// Sends `request` and returns the string `field` of its JSON answer; `what` names the
/// call in errors.
async fn field_of(
    request: reqwest::RequestBuilder,
    what: &str,
    field: &str,
) -> Result<String, String> {
    let response = request.send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{what} answered {status}: {body}"));
    }
    body[field]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no {field} in {body}"))
}

/// `GET /runs/{id}`.
async fn get_run(client: &reqwest::Client, base: &str, run_id: &str) -> Result<Value, String> {
    client
        .get(format!("{base}/runs/{run_id}"))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())
}

/// Waits for the run to finish; returns the final run object.
async fn finish(client: &reqwest::Client, base: &str, run_id: &str) -> Result<Value, String> {
    loop {
        let run = get_run(client, base, run_id).await?;
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
    total / run_seconds(run)
}

fn run_seconds(run: &Value) -> f64 {
    run["duration_ms"].as_f64().unwrap_or(0.0).max(1.0) / 1e3
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Creates and drops scratch Postgres databases for the run.
pub(crate) struct Scratch {
    base: String,
    created: Vec<String>,
}

impl Scratch {
    fn new(base: &str) -> Self {
        Scratch {
            base: base.to_owned(),
            created: Vec::new(),
        }
    }

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

/// Bytes the SQLite database at `url` (`sqlite://path`) takes on disk, its write-ahead
/// log included.
pub(crate) fn sqlite_bytes(url: &str) -> u64 {
    let path = url.strip_prefix("sqlite://").unwrap_or(url);
    ["", "-wal"]
        .iter()
        .filter_map(|suffix| std::fs::metadata(format!("{path}{suffix}")).ok())
        .map(|file| file.len())
        .sum()
}

/// Where a scenario's services keep their data.
pub(crate) struct Databases {
    dir: tempfile::TempDir,
    scratch: Option<Scratch>,
}

impl Databases {
    fn sqlite(&self, name: &str) -> String {
        format!("sqlite://{}", self.dir.path().join(name).display())
    }

    /// Bytes the SQLite database `name` takes on disk, its write-ahead log included.
    fn sqlite_bytes(&self, name: &str) -> u64 {
        sqlite_bytes(&self.sqlite(name))
    }

    /// A fresh Postgres database, when the bench was given a server.
    async fn postgres(&mut self) -> Result<Option<String>, String> {
        match &mut self.scratch {
            Some(scratch) => scratch.database().await.map(Some),
            None => Ok(None),
        }
    }
}

/// Runs every scenario and returns the table. A scenario that fails is reported as a
/// failed row; the others still run.
pub async fn run(config: &BenchConfig) -> Result<Report, String> {
    raise_open_file_limit();
    let mut report = Report::default();
    let mut databases = Databases {
        dir: tempfile::tempdir().map_err(|e| e.to_string())?,
        scratch: config.postgres_url.as_deref().map(Scratch::new),
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(2_048)
        .build()
        .map_err(|e| e.to_string())?;

    let wanted = |name: &str| {
        config.only.is_empty() || config.only.iter().any(|o| name.contains(o.as_str()))
    };
    let mut scenarios: Vec<(&str, Result<Vec<Row>, String>)> = Vec::new();
    if wanted("provider-backed") {
        eprintln!("bench: provider-backed ...");
        let rows = provider::provider_backed(config, &client, &mut databases).await;
        scenarios.push(("provider-backed", rows));
    }
    if wanted("latency-bound") {
        eprintln!("bench: latency-bound ...");
        let rows = provider::latency_bound(config, &client, &databases).await;
        scenarios.push(("latency-bound", rows));
    }
    if wanted("engine overhead") {
        eprintln!("bench: engine overhead ...");
        let rows = engine::overhead(config, &client, &mut databases).await;
        scenarios.push(("engine overhead", rows));
    }
    if wanted("polling") || wanted("SSE fan-out") {
        eprintln!("bench: polling and SSE fan-out ...");
        let rows = live::polling_and_fanout(config, &client, &databases).await;
        scenarios.push(("polling", rows));
    }
    if wanted("store comparison") {
        eprintln!("bench: store comparison ...");
        let rows = engine::compare_stores(config, &client, &mut databases).await;
        scenarios.push(("store comparison", rows));
    }
    if wanted("agent") {
        eprintln!("bench: agent ...");
        let rows = agent::per_model_call(config, &client, &databases).await;
        scenarios.push(("agent", rows));
    }
    if wanted("code execution") {
        eprintln!("bench: code execution ...");
        let rows = code::humaneval(config, &client, &databases).await;
        scenarios.push(("code execution", rows));
    }
    // Minutes and many processes: only when asked for by name.
    if config.only.iter().any(|o| o == "scaleout") {
        eprintln!("bench: scaleout ...");
        let rows = scaleout::scaleout(config, &client, &mut databases).await;
        scenarios.push(("scaleout", rows));
    }
    if let Some(scratch) = &mut databases.scratch {
        scratch.drop_all().await;
    }
    if wanted("memory") {
        eprintln!("bench: memory ...");
        scenarios.push((
            "memory",
            Ok(memory::scenarios(&config.memory, &client, &|name| databases.sqlite(name)).await),
        ));
    }
    for (scenario, outcome) in scenarios {
        match outcome {
            Ok(rows) => report.rows.extend(rows),
            Err(e) => report.rows.push(Row {
                scenario: scenario.into(),
                setup: "-".into(),
                result: format!("failed: {e}"),
                cpu_per_case: None,
                disk_per_case: None,
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
        "Server CPU per case: user + system time of the `themis serve` process (from /proc) over the run, divided by its cases; for Postgres rows the database server's own CPU is not included."
            .into(),
    );
    report.notes.push(
        "Two instances run as two processes on the same cores: that row shows coordination cost, not scale-out."
            .into(),
    );
    Ok(report)
}
