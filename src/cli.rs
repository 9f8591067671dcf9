//! Command-line interface: `themis run` (one-call local evaluation) and `themis serve`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::components::Registry;
use crate::engine::{Engine, EngineConfig, RunControl};
use crate::model::{EventKind, RunEvent, RunRecord, RunStatus};
use crate::observe::{Instrumentation, LifecycleSubscriber, ObservationRequest};
use crate::store::{CaseQuery, Store};
use crate::telemetry::{RecordingTracer, Telemetry};

#[derive(Debug, Parser)]
#[command(
    name = "themis",
    version,
    about = "Evaluation service for LLM and model outputs"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run an experiment in-process and print a summary.
    Run(RunArgs),
    /// Start the HTTP service.
    Serve(Box<ServeArgs>),
    /// Compare two runs case by case (exit 1 on regression with --fail-on-regression).
    Compare(crate::cli_compare::CompareArgs),
    /// Datasets on a server: `themis datasets push FILE --server URL`.
    Datasets(crate::cli_datasets::DatasetsArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "THEMIS_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Database: a SQLite file (`sqlite://themis.db`, created and migrated on start), a
    /// shared Postgres database (`postgres://user:pass@host/db`) or `memory`.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://themis.db")]
    pub database: String,
    /// Comma-separated bearer keys; when set, every endpoint but health needs one.
    #[arg(
        long,
        env = "THEMIS_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_keys: Vec<String>,
    /// Runs executing at once on this instance; more wait in the queue.
    #[arg(long, env = "THEMIS_MAX_RUNNING_RUNS", default_value_t = 4)]
    pub max_running_runs: usize,
    /// Cases of one run executed at once unless the run sets `concurrency`.
    #[arg(long, env = "THEMIS_DEFAULT_CONCURRENCY", default_value_t = 16)]
    pub default_concurrency: usize,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "THEMIS_MAX_BODY_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Most `GET /runs/{id}/events` streams open at once; more are answered `503`.
    #[arg(long, env = "THEMIS_MAX_EVENT_STREAMS", default_value_t = crate::api::DEFAULT_MAX_EVENT_STREAMS)]
    pub max_event_streams: usize,
    /// Serve `GET /metrics` without an API key even when keys are set (for a Prometheus
    /// that scrapes from a trusted network). Metrics hold counts, never run data.
    #[arg(long, env = "THEMIS_METRICS_PUBLIC")]
    pub metrics_public: bool,
    /// Browser origins (comma-separated, `https://dash.example.com`) allowed to call
    /// every endpoint, event streams included, with `Authorization`; `*` allows any.
    /// Default: none (no CORS headers; `OPTIONS` answers 405).
    #[arg(long, env = "THEMIS_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// Log format: `text` or `json`.
    #[arg(long, env = "THEMIS_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
    /// How often to look for queued runs and runs left by dead instances, in ms.
    #[arg(long, env = "THEMIS_POLL_INTERVAL_MS", default_value_t = 2_000)]
    pub poll_interval_ms: u64,
    /// Lease on claimed work, in ms: a dead instance's cases are taken over this late.
    #[arg(long, env = "THEMIS_LEASE_MS", default_value_t = 15_000)]
    pub lease_ms: u64,
    /// This instance's name on its leases (default: random per process).
    #[arg(long, env = "THEMIS_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// OTLP/HTTP collector (`http://collector:4318`) for the spans of every run that
    /// configures no `tracing`; a run turns it off with `{"provider": "none"}`.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Encoding for that collector: `http/protobuf` (default) or `http/json`.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_PROTOCOL")]
    pub otlp_protocol: Option<String>,
    /// Headers for that collector, `name=value,name2=value2` (sent only to it, never to
    /// an endpoint a run names itself).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_HEADERS", hide_env_values = true)]
    pub otlp_headers: Option<String>,
    /// `service.name` of exported spans (default `themis`).
    #[arg(long, env = "OTEL_SERVICE_NAME")]
    pub otel_service_name: Option<String>,
    /// Share of traces kept, 0 to 1 (default 1), unless a run sets `sample_ratio`.
    #[arg(long, env = "THEMIS_TRACE_SAMPLE_RATIO")]
    pub trace_sample_ratio: Option<f64>,
    #[command(flatten)]
    pub outbound: OutboundArgs,
    /// Networks (CIDRs or addresses, comma-separated) that provider, webhook and OTLP
    /// requests may reach although they are loopback or private and the server listens
    /// on a non-loopback address. Link-local and cloud metadata addresses stay refused.
    #[arg(long, env = "THEMIS_ALLOW_EGRESS", value_delimiter = ',')]
    pub allow_egress: Vec<String>,
    /// Provider requests in flight at once, across all runs of this instance.
    #[arg(long, env = "THEMIS_MAX_OUTBOUND_REQUESTS", default_value_t = crate::components::DEFAULT_MAX_OUTBOUND_REQUESTS)]
    pub max_outbound_requests: usize,
    /// Largest dataset upload (`PUT /datasets/{id}`), in bytes; uploads are streamed.
    #[arg(long, env = "THEMIS_MAX_DATASET_BYTES", default_value_t = crate::engine::UploadLimits::default().max_body_bytes)]
    pub max_dataset_bytes: u64,
    /// Longest line (JSONL) or record (CSV) of a dataset upload, in bytes.
    #[arg(long, env = "THEMIS_MAX_CASE_BYTES", default_value_t = crate::engine::UploadLimits::default().max_case_bytes)]
    pub max_case_bytes: usize,
    /// Delete finished runs this many days after they ended (a run only once the runs
    /// derived from it are gone). Unset: runs are kept until deleted.
    #[arg(long, env = "THEMIS_RETENTION_DAYS")]
    pub retention_days: Option<u32>,
}

/// The model providers the operator declares (`themis serve` and `themis run`).
#[derive(Debug, Args)]
pub struct OutboundArgs {
    /// A model provider runs may call, repeatable:
    /// `name=openai,base_url=https://api.openai.com/v1,key_env=OPENAI_API_KEY` plus
    /// optional shared limits `requests_per_minute`, `tokens_per_minute`,
    /// `max_concurrency`, `breaker_failures`, `breaker_cooldown_ms`. The key is read
    /// from `key_env` at startup and sent only to that base URL. In the environment,
    /// separate entries with `;`.
    #[arg(long = "provider", env = "THEMIS_PROVIDERS", value_delimiter = ';')]
    pub providers: Vec<String>,
}

impl OutboundArgs {
    /// The declared providers, keys read from their variables.
    pub fn providers(&self) -> Result<Vec<crate::components::ProviderSpec>, String> {
        self.providers
            .iter()
            .filter(|p| !p.trim().is_empty())
            .map(|p| crate::components::ProviderSpec::parse(p))
            .collect()
    }
}

impl ServeArgs {
    pub fn config(&self) -> crate::server::ServerConfig {
        crate::server::ServerConfig {
            database_url: self.database.clone(),
            api: crate::api::ApiConfig {
                upload_limits: crate::engine::UploadLimits {
                    max_body_bytes: self.max_dataset_bytes,
                    max_case_bytes: self.max_case_bytes.max(1),
                },
                api_keys: self
                    .api_keys
                    .iter()
                    .map(|k| k.trim().to_owned())
                    .filter(|k| !k.is_empty())
                    .collect(),
                max_body_bytes: self.max_body_bytes,
                max_event_streams: self.max_event_streams,
                // Parsed by `serve` (an entry can be invalid).
                cors_origins: crate::api::CorsOrigins::None,
                metrics_public: self.metrics_public,
            },
            metrics: Default::default(),
            max_running_runs: self.max_running_runs.max(1),
            // Parsed by `serve` (reading flags can fail).
            default_tracing: None,
            // Parsed by `serve` (reading keys and CIDRs can fail).
            providers: Vec::new(),
            allow_egress: Vec::new(),
            max_outbound_requests: self.max_outbound_requests.max(1),
            retention: self
                .retention_days
                .map(|days| std::time::Duration::from_secs(u64::from(days) * 86_400)),
            poll_interval: std::time::Duration::from_millis(self.poll_interval_ms.max(50)),
            engine: {
                let defaults = EngineConfig::default();
                EngineConfig {
                    default_concurrency: self
                        .default_concurrency
                        .clamp(1, crate::engine::MAX_CONCURRENCY as usize),
                    lease: std::time::Duration::from_millis(self.lease_ms.max(300)),
                    instance_id: self
                        .instance_id
                        .clone()
                        .unwrap_or(defaults.instance_id.clone()),
                    ..defaults
                }
            },
        }
    }

    /// The default tracing config from the OTLP flags: `None` without `--otlp-endpoint`.
    pub fn default_tracing(&self) -> Result<Option<crate::observe::TracingConfig>, String> {
        let Some(endpoint) = self
            .otlp_endpoint
            .as_deref()
            .filter(|e| !e.trim().is_empty())
        else {
            return Ok(None);
        };
        let mut config = serde_json::Map::new();
        config.insert("provider".into(), json!("otlp"));
        config.insert("endpoint".into(), json!(endpoint));
        if let Some(protocol) = &self.otlp_protocol {
            config.insert("protocol".into(), json!(protocol));
        }
        if let Some(headers) = &self.otlp_headers {
            let mut parsed = serde_json::Map::new();
            for pair in headers.split(',').filter(|p| !p.trim().is_empty()) {
                let (name, value) = pair
                    .split_once('=')
                    .ok_or("--otlp-headers: expected name=value pairs separated by commas")?;
                parsed.insert(name.trim().to_owned(), json!(value.trim()));
            }
            config.insert("headers".into(), Value::Object(parsed));
        }
        if let Some(name) = &self.otel_service_name {
            config.insert("service_name".into(), json!(name));
        }
        if let Some(ratio) = self.trace_sample_ratio {
            config.insert("sample_ratio".into(), json!(ratio));
        }
        let mut problems = crate::model::Problems::default();
        match crate::observe::parse_tracing(&Value::Object(config), "otlp", &mut problems) {
            Some(config) if problems.is_empty() => Ok(Some(config)),
            _ => Err(format!(
                "invalid OTLP settings: {}",
                problems
                    .into_details()
                    .iter()
                    .map(|e| format!("{}: {}", e.path, e.message))
                    .collect::<Vec<_>>()
                    .join("; ")
            )),
        }
    }
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

async fn serve(args: ServeArgs) -> Result<ExitCode, String> {
    init_logging(&args.log_format);
    let listener = tokio::net::TcpListener::bind(&args.addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.addr))?;
    let mut config = args.config();
    config.default_tracing = args.default_tracing()?;
    config.providers = args.outbound.providers()?;
    config.allow_egress =
        crate::egress::parse_allow(&args.allow_egress).map_err(|e| e.to_string())?;
    config.api.cors_origins = crate::api::CorsOrigins::parse(&args.cors_origins)
        .map_err(|e| format!("--cors-origins: {e}"))?;
    crate::server::launch(config, listener, crate::server::shutdown_signal())
        .await
        .map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Experiment definition (JSON); `-` reads standard input.
    pub file: PathBuf,
    /// Print the full result as JSON (run id, status, aggregates, per-case records).
    #[arg(long)]
    pub json: bool,
    /// Also print span names and statuses and every lifecycle event.
    #[arg(long)]
    pub trace: bool,
    /// Cases executed at once (overrides the definition's `concurrency`).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Keep the run in this database (`sqlite://file.db`, `postgres://...`) instead of
    /// the definition's `storage` (default: in memory). With a database, running the
    /// same file again finds the finished run, and an interrupted one resumes.
    #[arg(long)]
    pub database: Option<String>,
    /// Without declared providers, `openai` (with `OPENAI_API_KEY`, when set) and a
    /// keyless `ollama` at http://localhost:11434/v1 are available.
    #[command(flatten)]
    pub outbound: OutboundArgs,
}

/// Runs the CLI; returns the process exit code (0 completed, 1 run failed or
/// cancelled, 2 invalid input).
pub async fn main(cli: Cli) -> ExitCode {
    let outcome = match cli.command {
        Command::Run(args) => run(args).await,
        Command::Serve(args) => serve(*args).await,
        Command::Compare(args) => crate::cli_compare::compare(args).await,
        Command::Datasets(args) => crate::cli_datasets::datasets(args).await,
    };
    outcome.unwrap_or_else(|message| {
        eprintln!("error: {message}");
        ExitCode::from(2)
    })
}

/// Counts events for the progress bar and keeps them for `--trace`.
struct CliSubscriber {
    bar: ProgressBar,
    events: Mutex<Vec<RunEvent>>,
    keep: bool,
}

impl LifecycleSubscriber for CliSubscriber {
    fn on_event(&self, event: &RunEvent) {
        match &event.kind {
            EventKind::RunStarted { total_cases, .. } => self.bar.set_length(*total_cases),
            EventKind::Progress { progress }
            | EventKind::RunCompleted { progress }
            | EventKind::RunCancelled { progress } => self.bar.set_position(progress.finished()),
            EventKind::CaseCompleted { .. } | EventKind::CaseFailed { .. } => self.bar.inc(1),
            _ => {}
        }
        if self.keep
            && let Ok(mut events) = self.events.lock()
        {
            events.push(event.clone());
        }
    }
}

async fn run(args: RunArgs) -> Result<ExitCode, String> {
    let mut body = crate::cli_definition::read_definition(&args.file)?;
    if let (Some(n), Some(map)) = (args.concurrency, body.as_object_mut()) {
        map.insert("concurrency".into(), json!(n));
    }
    // The CLI runs on the user's machine: the local egress policy, and the implicit
    // providers unless some are declared.
    let declared = args.outbound.providers()?;
    let outbound = crate::components::Outbound {
        providers: if declared.is_empty() {
            crate::components::implicit_providers()
        } else {
            declared
        },
        ..crate::components::Outbound::local()
    };
    outbound.validate()?;
    let egress = outbound.egress.clone();
    let registry = Arc::new(Registry::builtin_with(outbound));
    let parse = |body: &Value| {
        crate::engine::parse_experiment(body, &registry).map_err(|errors| {
            let lines: Vec<String> = errors
                .iter()
                .map(|e| format!("  {}: {}", display_path(&e.path), e.message))
                .collect();
            format!("invalid experiment:\n{}", lines.join("\n"))
        })
    };
    // Checked before dataset files are read: they go into the store the definition chooses.
    let probe = parse(&crate::cli_definition::without_files(&body))?;
    let database = args.database.clone().or_else(|| {
        probe
            .runtime
            .storage
            .as_ref()
            .and_then(|storage| match storage.store.as_str() {
                "sqlite" => Some(format!(
                    "sqlite://{}",
                    storage.path.as_deref().unwrap_or("themis.db")
                )),
                _ => None,
            })
    });
    let store: Arc<dyn Store> = match &database {
        Some(url) => crate::store::connect(url)
            .await
            .map_err(|e| e.to_string())?,
        None => Arc::new(crate::store::MemoryStore::new()),
    };
    let engine = Engine::new(store.clone(), registry.clone(), EngineConfig::default());
    let base = match args.file.parent() {
        Some(dir) if args.file.as_os_str() != "-" => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    crate::cli_definition::upload_file_datasets(&engine, &mut body, &base).await?;
    let request = parse(&body)?;
    let run_id = engine
        .submit(&request)
        .await
        .map_err(|e| e.to_string())?
        .into_record()
        .run_id;

    let bar = if std::io::stderr().is_terminal() && !args.json {
        ProgressBar::new(request.experiment.work_items())
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} cases ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let subscriber = Arc::new(CliSubscriber {
        bar: bar.clone(),
        events: Mutex::new(Vec::new()),
        keep: args.trace,
    });
    // The run's own tracing and webhooks, as the service would; `--trace` records the
    // spans here instead.
    let telemetry = Telemetry::new(egress, None);
    let recording = Arc::new(RecordingTracer::new());
    let mut observers = telemetry.observers(
        &run_id,
        ObservationRequest {
            tracing: request.runtime.tracing.as_ref().filter(|_| !args.trace),
            subscribers: &request.runtime.subscribers,
            traceparent: None,
        },
    );
    if args.trace {
        observers.tracer = recording.clone();
    }
    observers.subscribers.push(subscriber.clone());

    let control = RunControl::default();
    let cancel = control.cancel.clone();
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            cancel.cancel();
        }
    });
    let record = engine
        .execute(&run_id, observers, control)
        .await
        .map_err(|e| e.to_string())?;
    ctrl_c.abort();
    // Spans and webhook events of the run reach their destinations before we exit.
    telemetry
        .wait_for_exports(std::time::Duration::from_secs(20))
        .await;
    bar.finish_and_clear();

    let events = subscriber
        .events
        .lock()
        .map(|e| e.clone())
        .unwrap_or_default();
    if args.json {
        let mut cases = Vec::new();
        let mut query = CaseQuery {
            limit: 1_000,
            ..CaseQuery::default()
        };
        loop {
            let page = store
                .case_records(&run_id, &query)
                .await
                .map_err(|e| e.to_string())?;
            let Some(last) = page.last() else { break };
            query.after_index = Some(last.key.case_index);
            cases.extend(page);
        }
        let mut output = json!({
            "run_id": record.run_id,
            "status": record.status,
            "progress": record.progress,
            "duration_ms": duration_ms(&record),
            "aggregates": record.aggregates.metrics,
            "usage": record.usage,
            "error": record.error,
            "cases": cases,
        });
        if args.trace {
            output["spans"] = json!(recording
                .spans()
                .iter()
                .map(|s| json!({"name": s.name, "status": s.status.map(|s| s.as_str()), "error": s.error}))
                .collect::<Vec<_>>());
            output["events"] = json!(events);
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&output).unwrap_or_default()
        );
    } else {
        print!("{}", summary(&record));
        if args.trace {
            println!("\nSpans:");
            for span in recording.spans() {
                let status = span.status.map_or("open", |s| s.as_str());
                println!(
                    "  {:<10} {status}{}",
                    span.name,
                    span.error.map(|e| format!(" ({e})")).unwrap_or_default()
                );
            }
            println!("\nEvents:");
            for event in &events {
                println!("  {:>4} {}", event.seq, event.event_type());
            }
        }
    }
    Ok(match record.status {
        RunStatus::Completed => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    })
}

fn display_path(path: &str) -> &str {
    if path.is_empty() { "(document)" } else { path }
}

fn duration_ms(record: &RunRecord) -> Option<u64> {
    Some(record.finished_at?.millis_since(record.started_at?))
}

/// The human-readable result of a run.
pub fn summary(record: &RunRecord) -> String {
    let mut out = String::new();
    let seconds = duration_ms(record).map_or(0.0, |ms| ms as f64 / 1e3);
    out.push_str(&format!(
        "Run {}: {} in {seconds:.2}s\n",
        record.run_id,
        record.status.as_str()
    ));
    let p = record.progress;
    out.push_str(&format!(
        "Cases: {} total, {} completed, {} failed\n",
        p.total, p.completed, p.failed
    ));
    if let Some(error) = &record.error {
        out.push_str(&format!("Error: {error}\n"));
    }
    if record.usage.requests > 0 {
        out.push_str(&format!(
            "Usage: {} requests, {} prompt + {} completion tokens\n",
            record.usage.requests, record.usage.prompt_tokens, record.usage.completion_tokens
        ));
    }
    if record.aggregates.metrics.is_empty() {
        return out;
    }
    let width = record
        .aggregates
        .metrics
        .keys()
        .map(String::len)
        .max()
        .unwrap_or(6)
        .max(6);
    out.push_str(&format!(
        "\n{:<width$}  {:>7}  {:<19} {:>6}  {:>8}\n",
        "metric", "mean", "95% CI", "n", "failures"
    ));
    for (metric, aggregate) in &record.aggregates.metrics {
        let s = &aggregate.overall;
        let mean = s.mean.map_or("-".to_owned(), |m| format!("{m:.3}"));
        let ci = s
            .ci95
            .map_or("-".to_owned(), |[lo, hi]| format!("[{lo:.3}, {hi:.3}]"));
        out.push_str(&format!(
            "{metric:<width$}  {mean:>7}  {ci:<19} {:>6}  {:>8}\n",
            s.n, s.failures
        ));
    }
    out
}
