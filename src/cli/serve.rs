//! `themis serve`: the service's settings as flags and environment variables.

use std::process::ExitCode;

use clap::builder::RangedU64ValueParser;
use clap::{Args, ValueEnum};

use themis::api::ApiConfig;
use themis::engine::EngineConfig;
use themis::server::ServerConfig;

use super::config::{self as parse, ConfigError};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "THEMIS_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Database: a SQLite file (`sqlite://themis.db`, created and migrated on start), a
    /// shared Postgres database (`postgres://user:pass@host/db`) or `memory`.
    #[arg(long, env = "DATABASE_URL", default_value_t = ServerConfig::default().database_url)]
    pub database: String,
    /// Comma-separated bearer keys, each `KEY` or `NAME:KEY` (NAME: who reviews with
    /// it); when set, every endpoint but health needs one.
    #[arg(
        long,
        env = "THEMIS_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_keys: Vec<String>,
    /// Runs executing at once on this instance; more wait in the queue.
    #[arg(long, env = "THEMIS_MAX_RUNNING_RUNS", default_value_t = ServerConfig::default().max_running_runs, value_parser = at_least(1))]
    pub max_running_runs: usize,
    /// Cases of one run executed at once unless the run sets `concurrency`.
    #[arg(long, env = "THEMIS_DEFAULT_CONCURRENCY", default_value_t = EngineConfig::default().default_concurrency,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=themis::engine::MAX_CONCURRENCY))]
    pub default_concurrency: usize,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "THEMIS_MAX_BODY_BYTES", default_value_t = ApiConfig::default().max_body_bytes)]
    pub max_body_bytes: usize,
    /// Most `GET /runs/{id}/events` streams open at once; more are answered `503`.
    #[arg(long, env = "THEMIS_MAX_EVENT_STREAMS", default_value_t = ApiConfig::default().max_event_streams)]
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
    /// Log format.
    #[arg(long, env = "THEMIS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// How often to look for queued runs and runs left by dead instances, in ms (at
    /// least 50).
    #[arg(long, env = "THEMIS_POLL_INTERVAL_MS", default_value_t = ServerConfig::default().poll_interval.as_millis() as u64, value_parser = RangedU64ValueParser::<u64>::new().range(50..))]
    pub poll_interval_ms: u64,
    /// Lease on claimed work, in ms (at least 300): a dead instance's cases are taken
    /// over this late.
    #[arg(long, env = "THEMIS_LEASE_MS", default_value_t = EngineConfig::default().lease.as_millis() as u64, value_parser = RangedU64ValueParser::<u64>::new().range(300..))]
    pub lease_ms: u64,
    /// This instance's name on its leases (default: random per process).
    #[arg(long, env = "THEMIS_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// OTLP/HTTP collector (`http://collector:4318`) for the spans of every run that
    /// configures no `tracing`; a run turns it off with `{"provider": "none"}`.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_parser = parse::otlp_endpoint)]
    pub otlp_endpoint: Option<String>,
    /// Encoding for that collector: `http/protobuf` (default) or `http/json`.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_PROTOCOL", value_parser = parse::otlp_protocol)]
    pub otlp_protocol: Option<themis::observe::OtlpProtocol>,
    /// Headers for that collector, `name=value,name2=value2` (sent only to it, never to
    /// an endpoint a run names itself).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_HEADERS", hide_env_values = true)]
    pub otlp_headers: Option<String>,
    /// `service.name` of exported spans (default `themis`).
    #[arg(long, env = "OTEL_SERVICE_NAME", value_parser = parse::service_name)]
    pub otel_service_name: Option<String>,
    /// Share of traces kept, 0 to 1 (default 1), unless a run sets `sample_ratio`.
    #[arg(long, env = "THEMIS_TRACE_SAMPLE_RATIO", value_parser = parse::sample_ratio)]
    pub trace_sample_ratio: Option<f64>,
    #[command(flatten)]
    pub outbound: OutboundArgs,
    /// Caps on every agent loop (`openai/agent`) of this instance, e.g.
    /// `max_turns=50,max_tool_calls=200,token_limit=200000,time_limit_s=600,cost_limit_usd=2,max_tool_output_chars=16384`.
    /// A run may ask for less, never more. Defaults: 100 turns, 500 tool calls, one
    /// hour, 16,384 characters per tool result, no token or cost cap.
    #[arg(long, env = "THEMIS_AGENT_CAPS", value_parser = themis::components::AgentCaps::parse)]
    pub agent_caps: Option<themis::components::AgentCaps>,
    /// The declared provider that OpenAI Evals API model names without a `PROVIDER/`
    /// prefix (`gpt-4o-mini`) are sent to.
    #[arg(long, env = "THEMIS_DEFAULT_PROVIDER")]
    pub default_provider: Option<String>,
    #[command(flatten)]
    pub sandbox: SandboxArgs,
    /// Networks (CIDRs or addresses, comma-separated) that provider, webhook and OTLP
    /// requests may reach although they are loopback or private and the server listens
    /// on a non-loopback address. Link-local and cloud metadata addresses stay refused.
    #[arg(long, env = "THEMIS_ALLOW_EGRESS", value_delimiter = ',')]
    pub allow_egress: Vec<String>,
    /// Provider requests in flight at once, across all runs of this instance. Default: a
    /// quarter of the open-file limit (each request holds a connection), from 256 to
    /// 16,384.
    #[arg(long, env = "THEMIS_MAX_OUTBOUND_REQUESTS", value_parser = at_least(1))]
    pub max_outbound_requests: Option<usize>,
    /// The most one run may spend, in USD: a run's `budget_usd` is capped at it, and a
    /// run without one gets it (the run stops starting cases before passing it).
    #[arg(long, env = "THEMIS_MAX_RUN_BUDGET_USD", value_parser = parse::budget_usd)]
    pub max_run_budget_usd: Option<f64>,
    /// Largest dataset upload (`PUT /datasets/{id}`), in bytes; uploads are streamed.
    #[arg(long, env = "THEMIS_MAX_DATASET_BYTES", default_value_t = themis::engine::UploadLimits::default().max_body_bytes)]
    pub max_dataset_bytes: u64,
    /// Longest line (JSONL) or record (CSV) of a dataset upload, in bytes.
    #[arg(long, env = "THEMIS_MAX_CASE_BYTES", default_value_t = themis::engine::UploadLimits::default().max_case_bytes, value_parser = at_least(1))]
    pub max_case_bytes: usize,
    /// Delete finished runs this many days after they ended (a run only once the runs
    /// derived from it are gone). Unset: runs are kept until deleted.
    #[arg(long, env = "THEMIS_RETENTION_DAYS")]
    pub retention_days: Option<u32>,
    /// How long finished cases wait to be committed together (at most 1000): longer
    /// windows mean fewer, larger commits (less CPU per case) and later events.
    #[arg(long, env = "THEMIS_COMMIT_WINDOW_MS", default_value_t = EngineConfig::default().commit_window.as_millis() as u64,
          value_parser = RangedU64ValueParser::<u64>::new().range(0..=1_000))]
    pub commit_window_ms: u64,
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
    /// The operator's price table (TOML, or JSON when the name ends in `.json`): USD per
    /// 1M input, cached input and output tokens and the batch discount, per declared
    /// provider (or base URL) and model. It takes precedence over the bundled table of
    /// well-known hosted models; a run's own `price` param over both.
    #[arg(long = "prices", env = "THEMIS_PRICES")]
    pub prices: Option<std::path::PathBuf>,
    /// A webhook signing secret and the URL prefixes it may sign for, repeatable:
    /// `THEMIS_WEBHOOK_CI=https://ci.example.com/hooks/`. The value is read from that
    /// variable at startup; a run's webhook may name it (`secret_env`) only for a URL
    /// under one of its prefixes. In the environment, separate entries with `;`.
    #[arg(
        long = "webhook-secret",
        env = "THEMIS_WEBHOOK_SECRETS",
        value_delimiter = ';'
    )]
    pub webhook_secrets: Vec<String>,
    /// An MCP server (Streamable HTTP) whose tools runs may offer to models, repeatable:
    /// `name=search,url=https://tools.example.com/mcp` plus optional
    /// `header=Header-Name:ENV_VAR` (repeatable; the value is read from that variable at
    /// startup and sent only to that URL), `timeout_ms`, `max_concurrency`,
    /// `max_output_bytes`. In the environment, separate entries with `;`.
    #[arg(long = "mcp-server", env = "THEMIS_MCP_SERVERS", value_delimiter = ';')]
    pub mcp_servers: Vec<String>,
}

/// Where code metrics run programs (`themis serve` and `themis run`).
#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// A sandbox code metrics may name, repeatable: `local` (bubblewrap on this machine,
    /// Python and C) or `name=NAME,kind=local|piston|sandbox_fusion,url=URL` with
    /// optional `languages=python+c`. Remote URLs follow the egress policy as declared
    /// destinations. In the environment, separate entries with `;`.
    #[arg(long = "sandbox", env = "THEMIS_SANDBOXES", value_delimiter = ';')]
    pub sandboxes: Vec<String>,
    /// Programs running at once across all sandboxes (at most 1024); more wait.
    #[arg(long, env = "THEMIS_SANDBOX_POOL", default_value_t = themis::sandbox::DEFAULT_POOL_SIZE,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=themis::sandbox::MAX_POOL_SIZE as u64))]
    pub sandbox_pool: usize,
}

/// How the server writes its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line (for log collectors).
    Json,
}

/// A count of at least `min`: smaller values are refused at startup with a message
/// naming the flag, never raised silently.
fn at_least(min: u64) -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::<usize>::new().range(min..)
}

/// The service's log subscriber, writing to stderr from a thread of its own (requests
/// never wait on the log's reader); the guard writes what is queued when dropped.
fn init_logging(format: LogFormat) -> std::io::Result<super::log_writer::LogFlush> {
    use std::io::IsTerminal;
    let (writer, flush) = super::log_writer::QueuedStderr::start()?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour codes only for a person at a terminal: a file, pipe or log collector
        // would keep the escape sequences as text.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    let _ = if format == LogFormat::Json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    Ok(flush)
}

/// Why `themis serve` stopped before serving, or while serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("starting the log writer: {0}")]
    Log(#[source] std::io::Error),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Launch(#[from] themis::server::LaunchError),
}

pub(super) async fn serve(args: ServeArgs) -> Result<ExitCode, ServeError> {
    let _log_flush = init_logging(args.log_format).map_err(ServeError::Log)?;
    let open_files = super::listen::raise_open_file_limit();
    // Every setting is checked before the port is taken.
    let config = args.config(open_files)?;
    if !config.engine.sealer.is_persistent() {
        tracing::info!(
            "THEMIS_SECRET_KEY is not set: runs' own tracing headers are sealed under a key of this process, so a run resumed by another process exports without them"
        );
    }
    let listener =
        super::listen::listen(&args.addr)
            .await
            .map_err(|source| ServeError::Listen {
                addr: args.addr.clone(),
                source,
            })?;
    themis::server::launch(config, listener, themis::server::shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::LogFormat;
    use crate::cli::{Cli, Command};

    fn serve(flags: &[&str]) -> Result<super::ServeArgs, String> {
        let args = ["themis", "serve"].iter().chain(flags);
        match Cli::try_parse_from(args)
            .map_err(|e| e.to_string())?
            .command
        {
            Command::Serve(args) => Ok(*args),
            _ => Err("not serve".into()),
        }
    }

    #[test]
    fn out_of_range_values_are_refused_naming_the_flag() {
        for (flag, value) in [
            ("--poll-interval-ms", "10"),
            ("--lease-ms", "299"),
            ("--commit-window-ms", "1001"),
            ("--max-running-runs", "0"),
            ("--default-concurrency", "0"),
            ("--default-concurrency", "4097"),
            ("--max-outbound-requests", "0"),
            ("--max-case-bytes", "0"),
            ("--sandbox-pool", "0"),
            ("--sandbox-pool", "1025"),
            ("--trace-sample-ratio", "1.01"),
            ("--otlp-protocol", "grpc"),
            ("--log-format", "yaml"),
        ] {
            let error = serve(&[flag, value]).expect_err(flag);
            assert!(
                error.contains(&format!("invalid value '{value}' for '{flag}")),
                "{flag} {value}: {error}"
            );
        }
    }

    #[test]
    fn values_in_range_are_taken_as_given() {
        let args = serve(&[
            "--poll-interval-ms",
            "50",
            "--lease-ms",
            "300",
            "--commit-window-ms",
            "1000",
            "--default-concurrency",
            "4096",
            "--log-format",
            "json",
        ])
        .unwrap();
        assert_eq!(args.log_format, LogFormat::Json);
        let config = args.config(None).unwrap();
        assert_eq!(config.poll_interval.as_millis(), 50);
        assert_eq!(config.engine.lease.as_millis(), 300);
        assert_eq!(config.engine.commit_window.as_millis(), 1000);
        assert_eq!(config.engine.default_concurrency, 4096);
        assert_eq!(serve(&[]).unwrap().log_format, LogFormat::Text);
    }
}
