//! The server's configuration, built once from `themis serve`'s flags and environment.
//!
//! Defaults live in the library's `Default` implementations (`ServerConfig`,
//! `EngineConfig`, `ApiConfig`, ...): the flags show them as theirs and [`ServeArgs::config`]
//! starts from them, so no default is written twice. Each flag's value is checked when
//! the flags are parsed (an out-of-range value is refused naming the flag); what needs
//! the environment or several flags together (keys, secrets, CIDRs, origins) is checked
//! here, before the server binds its port.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use themis::api::{ApiConfig, CorsOrigins};
use themis::components::{DeclarationError, McpServerSpec, PriceTable, ProviderSpec};
use themis::egress::EgressError;
use themis::engine::{EngineConfig, UploadLimits};
use themis::model::{InvalidKey, Sealer};
use themis::observe::{OtlpProtocol, TracingConfig, TracingProviderKind};
use themis::sandbox::{SandboxConfig, SandboxSpec};
use themis::server::ServerConfig;
use themis::telemetry::{TelemetryError, WebhookSecrets};

use super::serve::{OutboundArgs, SandboxArgs, ServeArgs};

/// A configuration refused at startup; each message names the flag or variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A `--provider` entry (its message names the flag and the provider).
    #[error(transparent)]
    Provider(#[from] DeclarationError),
    /// An `--mcp-server` entry (its message names the flag and the server).
    #[error(transparent)]
    McpServer(DeclarationError),
    #[error("--webhook-secret {0}")]
    WebhookSecret(#[source] TelemetryError),
    /// A `--sandbox` entry that does not parse: the parser's message for the entry.
    #[error("--sandbox {entry}: {message}")]
    Sandbox { entry: String, message: String },
    #[error("THEMIS_SECRET_KEY: {0}")]
    SecretKey(#[source] InvalidKey),
    /// An `--allow-egress` entry (its message names the flag).
    #[error(transparent)]
    Egress(#[from] EgressError),
    /// The `--cors-origins` list: the parser's message naming the entry.
    #[error("--cors-origins: {0}")]
    Cors(String),
    /// `--otlp-headers`: checked here rather than by clap, whose message would quote
    /// the value (a credential).
    #[error("--otlp-headers: {0}")]
    OtlpHeaders(String),
}

impl ServeArgs {
    /// The server's whole configuration. `open_files` (the process's descriptor limit,
    /// when known) sizes the outbound cap unless `--max-outbound-requests` is given.
    pub fn config(&self, open_files: Option<u64>) -> Result<ServerConfig, ConfigError> {
        let defaults = ServerConfig::default();
        let mut engine = EngineConfig {
            default_concurrency: self.default_concurrency,
            lease: Duration::from_millis(self.lease_ms),
            commit_window: Duration::from_millis(self.commit_window_ms),
            max_run_budget_usd: self.max_run_budget_usd,
            ..defaults.engine
        };
        if let Some(id) = &self.instance_id {
            engine.instance_id = id.clone();
        }
        if let Some(sealer) = sealer_from_env()? {
            engine.sealer = Arc::new(sealer);
        }
        Ok(ServerConfig {
            database_url: self.database.clone(),
            api: ApiConfig {
                upload_limits: UploadLimits {
                    max_body_bytes: self.max_dataset_bytes,
                    max_case_bytes: self.max_case_bytes,
                },
                api_keys: self
                    .api_keys
                    .iter()
                    .map(|k| k.trim().to_owned())
                    .filter(|k| !k.is_empty())
                    .collect(),
                max_body_bytes: self.max_body_bytes,
                max_event_streams: self.max_event_streams,
                cors_origins: CorsOrigins::parse(&self.cors_origins).map_err(ConfigError::Cors)?,
                metrics_public: self.metrics_public,
                evals: themis::engine::EvalsConfig {
                    default_provider: self.default_provider.clone(),
                    // Chosen by the server from the declared sandboxes.
                    sandbox: None,
                },
            },
            max_running_runs: self.max_running_runs,
            poll_interval: Duration::from_millis(self.poll_interval_ms),
            engine,
            default_tracing: self.default_tracing()?,
            providers: self.outbound.providers()?,
            mcp_servers: self.outbound.mcp_servers()?,
            prices: self.outbound.prices()?,
            webhook_secrets: self.outbound.webhook_secrets()?,
            allow_egress: themis::egress::parse_allow(&self.allow_egress)?,
            max_outbound_requests: self
                .max_outbound_requests
                .unwrap_or_else(|| themis::server::default_max_outbound_requests(open_files)),
            retention: self
                .retention_days
                .map(|days| Duration::from_secs(u64::from(days) * 86_400)),
            sandbox: self.sandbox.config()?,
            agent_caps: self.agent_caps.clone().unwrap_or_default(),
            metrics: defaults.metrics,
        })
    }

    /// The default tracing from the OTLP flags: none without `--otlp-endpoint`.
    fn default_tracing(&self) -> Result<Option<TracingConfig>, ConfigError> {
        let headers = match &self.otlp_headers {
            Some(raw) => otlp_headers(raw).map_err(ConfigError::OtlpHeaders)?,
            None => BTreeMap::new(),
        };
        let Some(endpoint) = self.otlp_endpoint.clone().filter(|e| !e.is_empty()) else {
            return Ok(None);
        };
        Ok(Some(TracingConfig {
            provider: TracingProviderKind::Otlp,
            endpoint: Some(endpoint),
            protocol: self.otlp_protocol,
            headers,
            service_name: self.otel_service_name.clone(),
            sample_ratio: self.trace_sample_ratio,
        }))
    }
}

impl SandboxArgs {
    pub fn config(&self) -> Result<SandboxConfig, ConfigError> {
        let specs = self
            .sandboxes
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                SandboxSpec::parse(s).map_err(|message| ConfigError::Sandbox {
                    entry: s.clone(),
                    message,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(SandboxConfig {
            specs,
            pool_size: self.sandbox_pool,
            ..Default::default()
        })
    }
}

impl OutboundArgs {
    /// The declared providers, keys read from their variables.
    pub fn providers(&self) -> Result<Vec<ProviderSpec>, ConfigError> {
        Ok(self
            .providers
            .iter()
            .filter(|p| !p.trim().is_empty())
            .map(|p| ProviderSpec::parse(p))
            .collect::<Result<_, _>>()?)
    }

    /// The declared MCP servers, header values read from their variables.
    pub fn mcp_servers(&self) -> Result<Vec<McpServerSpec>, ConfigError> {
        let specs: Vec<McpServerSpec> = self
            .mcp_servers
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| McpServerSpec::parse(s, |var| std::env::var(var).ok()))
            .collect::<Result<_, _>>()
            .map_err(ConfigError::McpServer)?;
        // Checked here as well as by the server, so a duplicate is refused before the
        // port is taken.
        for (i, spec) in specs.iter().enumerate() {
            if specs[..i].iter().any(|s| s.name == spec.name) {
                return Err(ConfigError::McpServer(DeclarationError::Invalid(format!(
                    "--mcp-server {} is declared twice",
                    spec.name
                ))));
            }
        }
        Ok(specs)
    }

    /// The price table: the operator's file over the bundled one.
    pub fn prices(&self) -> Result<Arc<PriceTable>, ConfigError> {
        Ok(Arc::new(match &self.prices {
            Some(path) => PriceTable::load(path)?,
            None => PriceTable::default(),
        }))
    }

    /// The declared webhook secrets, values read from their variables.
    pub fn webhook_secrets(&self) -> Result<WebhookSecrets, ConfigError> {
        WebhookSecrets::parse(&self.webhook_secrets, |name| std::env::var(name).ok())
            .map_err(ConfigError::WebhookSecret)
    }
}

/// The operator's sealing key (`THEMIS_SECRET_KEY`, 64 hex digits), read from the
/// environment only (never a flag: command lines are visible to every local user).
/// Without it, each process seals under a key of its own.
pub(super) fn sealer_from_env() -> Result<Option<Sealer>, ConfigError> {
    match std::env::var("THEMIS_SECRET_KEY") {
        Ok(key) if !key.trim().is_empty() => Sealer::from_hex_key(&key)
            .map(Some)
            .map_err(ConfigError::SecretKey),
        _ => Ok(None),
    }
}

// The value parsers below are leaf parsers: clap shows their message after the flag's
// name and the value ("invalid value 'x' for '--flag <FLAG>': message").

/// `--otlp-endpoint`: an http(s) URL; empty means unset (an empty variable).
pub(super) fn otlp_endpoint(raw: &str) -> Result<String, String> {
    if raw.trim().is_empty() {
        return Ok(String::new());
    }
    themis::observe::otlp_endpoint(raw)
}

/// `--otlp-protocol`: `http/protobuf` or `http/json`.
pub(super) fn otlp_protocol(raw: &str) -> Result<OtlpProtocol, String> {
    OtlpProtocol::parse(raw.trim()).ok_or_else(|| match raw.trim() {
        "grpc" => "gRPC is not supported; use http/protobuf or http/json".to_owned(),
        _ => "expected http/protobuf or http/json".to_owned(),
    })
}

/// `--otlp-headers`: `name=value` pairs separated by commas, checked as a run's
/// `tracing.headers` are (values never quoted back).
fn otlp_headers(raw: &str) -> Result<BTreeMap<String, String>, String> {
    let mut headers = BTreeMap::new();
    for pair in raw.split(',').filter(|p| !p.trim().is_empty()) {
        let (name, value) = pair
            .split_once('=')
            .ok_or("expected name=value pairs separated by commas")?;
        let name = name.trim();
        let lower = themis::observe::tracing_header(name, value.trim())
            .map_err(|problem| format!("header `{name}` {problem}"))?;
        headers.insert(lower, value.trim().to_owned());
    }
    if headers.len() > themis::observe::MAX_TRACING_HEADERS {
        return Err(format!(
            "at most {} headers",
            themis::observe::MAX_TRACING_HEADERS
        ));
    }
    Ok(headers)
}

/// `--otel-service-name`: not empty, at most 255 bytes.
pub(super) fn service_name(raw: &str) -> Result<String, String> {
    if raw.trim().is_empty() {
        return Err("must not be empty".to_owned());
    }
    if raw.len() > 255 {
        return Err("must be at most 255 bytes".to_owned());
    }
    Ok(raw.to_owned())
}

/// `--trace-sample-ratio`: a number from 0 to 1.
pub(super) fn sample_ratio(raw: &str) -> Result<f64, String> {
    match raw.trim().parse::<f64>() {
        Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(ratio),
        _ => Err("must be a number from 0 to 1".to_owned()),
    }
}

/// `--max-run-budget-usd`: a positive number of USD, as a run's `budget_usd`.
pub(super) fn budget_usd(raw: &str) -> Result<f64, String> {
    let most = themis::engine::MAX_BUDGET_USD;
    match raw.trim().parse::<f64>() {
        Ok(usd) if usd > 0.0 && usd <= most => Ok(usd),
        _ => Err(format!(
            "must be a number of USD above 0 and at most {most}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};
    use themis::observe::{OtlpProtocol, TracingProviderKind};

    fn serve(flags: &[&str]) -> super::ServeArgs {
        let args = ["themis", "serve"].iter().chain(flags);
        match Cli::try_parse_from(args).unwrap().command {
            Command::Serve(args) => *args,
            _ => unreachable!("serve parses as serve"),
        }
    }

    #[test]
    fn the_otlp_flags_make_the_default_tracing_directly() {
        let config = serve(&[
            "--otlp-endpoint",
            " http://collector:4318 ",
            "--otlp-protocol",
            "http/json",
            "--otlp-headers",
            "Authorization=Bearer t, x-team = evals",
            "--otel-service-name",
            "evals",
            "--trace-sample-ratio",
            "0.25",
        ])
        .config(None)
        .unwrap();
        let tracing = config.default_tracing.expect("an endpoint means OTLP");
        assert_eq!(tracing.provider, TracingProviderKind::Otlp);
        assert_eq!(tracing.endpoint.as_deref(), Some("http://collector:4318"));
        assert_eq!(tracing.protocol, Some(OtlpProtocol::HttpJson));
        assert_eq!(tracing.headers["authorization"], "Bearer t");
        assert_eq!(tracing.headers["x-team"], "evals");
        assert_eq!(tracing.service_name.as_deref(), Some("evals"));
        assert_eq!(tracing.sample_ratio, Some(0.25));
        assert!(serve(&[]).config(None).unwrap().default_tracing.is_none());
    }

    #[test]
    fn defaults_come_from_the_library() {
        let config = serve(&[]).config(Some(4 * 4096)).unwrap();
        let library = themis::server::ServerConfig::default();
        assert_eq!(config.database_url, library.database_url);
        assert_eq!(config.max_running_runs, library.max_running_runs);
        assert_eq!(config.poll_interval, library.poll_interval);
        assert_eq!(config.api.max_body_bytes, library.api.max_body_bytes);
        assert_eq!(
            config.engine.default_concurrency,
            library.engine.default_concurrency
        );
        assert_eq!(config.engine.lease, library.engine.lease);
        assert_eq!(config.engine.commit_window, library.engine.commit_window);
        assert_eq!(
            config.max_outbound_requests,
            themis::server::default_max_outbound_requests(Some(4 * 4096))
        );
    }
}
