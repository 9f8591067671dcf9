//! Service startup: configuration, store, engine, scheduler, HTTP server.
//!
//! [`launch`] takes an already-bound listener and a shutdown future so tests can bind
//! port 0 and stop the server when they like.

use std::future::{Future, IntoFuture};
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::api::{self, ApiConfig};
use crate::components::{McpServerSpec, McpServers, Outbound, ProviderSpec, Registry};
use crate::egress::{Egress, EgressPolicy};
use crate::engine::{Engine, EngineConfig, Scheduler};
use crate::observe::TracingConfig;
use crate::sandbox::{SandboxConfig, Sandboxes};
use crate::store::{self, Store};
use crate::telemetry::{Metrics, Telemetry, WebhookSecrets};

/// Everything `themis serve` can be told (flags and environment, see the CLI).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `sqlite://themis.db` (default), `sqlite::memory:`, `memory`, or a file path.
    pub database_url: String,
    pub api: ApiConfig,
    /// Runs executing at once on this instance; more wait in the queue.
    pub max_running_runs: usize,
    /// How often the instance looks for queued runs and runs left by dead instances.
    pub poll_interval: std::time::Duration,
    pub engine: EngineConfig,
    /// Where spans of runs that configure no `tracing` go (`--otlp-endpoint`); a run
    /// turns it off with `{"provider": "none"}`.
    pub default_tracing: Option<TracingConfig>,
    /// Providers the operator declared (`--provider`); with none, a loopback-bound
    /// server uses the implicit ones ([`crate::components::implicit_providers`]).
    pub providers: Vec<ProviderSpec>,
    /// MCP servers whose tools runs may offer (`--mcp-server`); none by default. With
    /// [`launch_with_registry`], the registry's own servers apply instead
    /// ([`Registry::with_mcp_servers`]).
    pub mcp_servers: Vec<McpServerSpec>,
    /// What provider calls cost (`--prices` over the bundled table).
    pub prices: Arc<crate::components::PriceTable>,
    /// Webhook signing secrets, each bound to the URLs it may sign for
    /// (`--webhook-secret`).
    pub webhook_secrets: WebhookSecrets,
    /// Networks outbound requests may reach beyond the default policy (`--allow-egress`).
    pub allow_egress: Vec<ipnet::IpNet>,
    /// Provider requests in flight at once, across all runs.
    pub max_outbound_requests: usize,
    /// Finished runs older than this are deleted (`--retention-days`; none by default),
    /// checked at startup and every [`RETENTION_INTERVAL`].
    pub retention: Option<std::time::Duration>,
    /// The operator's metrics (`GET /metrics`): every part of this server reports here.
    /// Clones of a config share it; a registry built by the caller
    /// ([`launch_with_registry`]) reports provider metrics where its `Outbound.meter` says.
    pub metrics: Arc<Metrics>,
    /// Where code metrics run programs (`--sandbox`, `--sandbox-pool`); none by default.
    pub sandbox: SandboxConfig,
    /// The caps on every agent loop (`--agent-caps`).
    pub agent_caps: crate::components::AgentCaps,
}

/// The outbound cap of an instance allowed `open_files` descriptors (`None`: unknown):
/// a quarter of them, since each request in flight holds a connection and the rest serve
/// clients, event streams and the database; at least the historical 256, at most 16,384
/// (four runs at the highest concurrency a run may ask for). With the usual raised limit
/// of 65,536 a run gets the concurrency it asks for.
pub fn default_max_outbound_requests(open_files: Option<u64>) -> usize {
    const MOST: u64 = 16_384;
    let floor = crate::components::DEFAULT_MAX_OUTBOUND_REQUESTS as u64;
    open_files.map_or(floor, |files| (files / 4).clamp(floor, MOST)) as usize
}

/// How often retention looks for expired runs.
pub(crate) const RETENTION_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

impl ServerConfig {
    /// The egress policy of a server listening on `listener`.
    fn egress(&self, listener: &TcpListener) -> std::io::Result<Arc<Egress>> {
        let listen = listener.local_addr()?.ip();
        Ok(Arc::new(Egress::new(EgressPolicy::for_listener(
            listen,
            self.allow_egress.clone(),
        ))))
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            database_url: "sqlite://themis.db".to_owned(),
            api: ApiConfig::default(),
            max_running_runs: 4,
            poll_interval: std::time::Duration::from_secs(2),
            engine: EngineConfig::default(),
            default_tracing: None,
            providers: Vec::new(),
            mcp_servers: Vec::new(),
            prices: Arc::default(),
            webhook_secrets: WebhookSecrets::default(),
            allow_egress: Vec::new(),
            max_outbound_requests: crate::components::DEFAULT_MAX_OUTBOUND_REQUESTS,
            retention: None,
            metrics: Arc::new(Metrics::new()),
            sandbox: SandboxConfig::default(),
            agent_caps: crate::components::AgentCaps::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("opening the database: {0}")]
    Store(#[from] store::StoreError),
    #[error("resuming runs: {0}")]
    Resume(#[from] crate::engine::EngineError),
    #[error("serving HTTP: {0}")]
    Io(#[from] std::io::Error),
    /// A provider or MCP server declaration.
    #[error(transparent)]
    Providers(#[from] crate::components::DeclarationError),
    #[error(transparent)]
    Sandboxes(#[from] crate::sandbox::SandboxError),
}

/// Opens the store, resumes unfinished runs and serves the API on `listener` until
/// `shutdown` resolves; then stops taking requests, lets runs in flight persist what
/// finished (they resume on the next start) and returns.
pub async fn launch(
    mut config: ServerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), LaunchError> {
    // The registry below applies this cap: runs asking for more are told so.
    config.engine.outbound_cap = Some(config.max_outbound_requests);
    let egress = config.egress(&listener)?;
    let loopback = egress.policy().internal_allowed;
    let providers = if config.providers.is_empty() && loopback {
        crate::components::implicit_providers()
    } else {
        config.providers.clone()
    };
    let outbound = Outbound {
        providers,
        egress: egress.clone(),
        max_requests: config.max_outbound_requests,
        meter: config.metrics.clone(),
        agent_caps: config.agent_caps.clone(),
        prices: config.prices.clone(),
    };
    outbound.validate()?;
    tracing::info!(
        providers = %outbound.listing(),
        max_outbound_requests = outbound.max_requests,
        "model providers"
    );
    let sandboxes = Sandboxes::build(&config.sandbox, egress.clone())?;
    if !sandboxes.is_empty() {
        tracing::info!(sandboxes = %sandboxes.listing(), pool = config.sandbox.pool_size, "code sandboxes");
    }
    // OpenAI's python graders run in the first declared sandbox that runs Python.
    if config.api.evals.sandbox.is_none() {
        config.api.evals.sandbox = sandboxes.names().into_iter().find(|name| {
            sandboxes
                .languages(name)
                .is_some_and(|l| l.iter().any(|l| l == "python"))
        });
    }
    let mcp_servers = McpServers::new(
        config.mcp_servers.clone(),
        egress.clone(),
        config.metrics.clone(),
    )?;
    if !mcp_servers.is_empty() {
        tracing::info!(mcp_servers = %mcp_servers.listing(), "MCP servers");
    }
    let registry = Arc::new(
        Registry::builtin_with(outbound)
            .with_sandboxes(Arc::new(sandboxes))
            .with_mcp_servers(Arc::new(mcp_servers)),
    );
    serve(config, registry, egress, listener, shutdown).await
}

/// [`launch`] with a component registry of the caller's (embedders, tests). Provider
/// components use the [`Outbound`] the registry was built with (`config.providers` and
/// `config.allow_egress` do not apply to them); webhooks and span export follow the
/// egress policy of `config` and the listener.
pub async fn launch_with_registry(
    config: ServerConfig,
    registry: Arc<Registry>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), LaunchError> {
    let egress = config.egress(&listener)?;
    serve(config, registry, egress, listener, shutdown).await
}

async fn serve(
    config: ServerConfig,
    registry: Arc<Registry>,
    egress: Arc<Egress>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), LaunchError> {
    let store: Arc<dyn Store> = store::connect(&config.database_url).await?;
    if store.shared_by_instances() {
        // Declared providers' limits hold for every instance on the database together.
        registry.join_cluster(crate::components::Cluster {
            limits: Arc::new(crate::engine::StoreLimits::new(store.clone())),
            holder: config.engine.instance_id.clone(),
            lease: config.engine.lease,
        });
    }
    // The one telemetry of this server: runs' spans and webhooks go out through the
    // listener's egress policy, and `GET /runs/{id}` reports its counters.
    let telemetry = Arc::new(
        Telemetry::new(egress, config.default_tracing.clone())
            .with_meter(config.metrics.clone())
            .with_webhook_secrets(config.webhook_secrets.clone()),
    );
    let engine = Engine::instrumented(store, registry, config.engine.clone(), telemetry.clone())
        .with_meter(config.metrics.clone());
    let scheduler = Scheduler::new(engine, config.max_running_runs);
    let resumed = scheduler.resume_unfinished().await?;
    if resumed > 0 {
        tracing::info!(resumed, "resuming unfinished runs");
    }
    // Work other instances queue, and runs whose instance died, are picked up by polling;
    // commits made elsewhere wake this instance's event streams.
    let background = tokio_util::task::TaskTracker::new();
    let stop_background = tokio_util::sync::CancellationToken::new();
    background.spawn({
        let scheduler = scheduler.clone();
        let stop = stop_background.clone();
        let interval = config.poll_interval;
        async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(interval) => {}
                }
                if let Err(e) = scheduler.resume_unfinished().await {
                    tracing::warn!(error = %e, "polling for runs failed");
                }
            }
        }
    });
    if let Some(mut commits) = scheduler.engine().store().watch_commits().await? {
        let hub = scheduler.engine().hub().clone();
        let stop = stop_background.clone();
        background.spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    run_id = commits.recv() => match run_id {
                        Some(run_id) => hub.wake(&run_id),
                        None => return,
                    },
                }
            }
        });
    }
    if let Some(age) = config.retention {
        background.spawn(crate::engine::retention_loop(
            scheduler.engine().clone(),
            age,
            RETENTION_INTERVAL,
            stop_background.clone(),
        ));
    }
    let router = api::router_with_metrics(scheduler.clone(), &config.api, config.metrics.clone());
    tracing::info!(addr = %listener.local_addr()?, database = %redact(&config.database_url), "themis is serving");
    // On the signal, runs start stopping and event streams end at once (they select on
    // this token), while the HTTP server drains the other requests.
    let stopping = scheduler.stopping();
    let signal = {
        let stopping = stopping.clone();
        async move {
            shutdown.await;
            stopping.cancel();
        }
    };
    let server = axum::serve(listener, router)
        .with_graceful_shutdown(signal)
        .into_future();
    tokio::select! {
        served = server => served?,
        () = async {
            stopping.cancelled().await;
            tokio::time::sleep(SHUTDOWN_HTTP_DRAIN).await;
        } => tracing::warn!("requests still open after {SHUTDOWN_HTTP_DRAIN:?}; closing them"),
    }
    tracing::info!("HTTP server stopped; stopping runs in flight");
    stop_background.cancel();
    background.close();
    background.wait().await;
    if tokio::time::timeout(SHUTDOWN_RUNS, scheduler.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "runs did not stop within {SHUTDOWN_RUNS:?}; their leases expire and others resume them"
        );
    }
    // Runs that stopped flush their spans and deliver their queued webhooks meanwhile.
    telemetry.wait_for_exports(SHUTDOWN_EXPORTS).await;
    match tokio::time::timeout(SHUTDOWN_STORE, scheduler.engine().store().close()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "closing the store failed"),
        Err(_) => tracing::warn!("the store did not close within {SHUTDOWN_STORE:?}"),
    }
    Ok(())
}

/// Graceful shutdown is bounded (12 s in all): open requests get this long to finish
/// (event streams end at once)...
const SHUTDOWN_HTTP_DRAIN: std::time::Duration = std::time::Duration::from_secs(2);
/// ...runs this long to record their finished cases and release their leases...
const SHUTDOWN_RUNS: std::time::Duration = std::time::Duration::from_secs(5);
/// ...and telemetry this long to flush spans and queued webhooks.
const SHUTDOWN_EXPORTS: std::time::Duration = std::time::Duration::from_secs(3);
/// ...and the store this long to fold its write-ahead log into the database.
const SHUTDOWN_STORE: std::time::Duration = std::time::Duration::from_secs(2);

/// Hides a password in a database URL before it is logged.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested");
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact("sqlite://themis.db"), "sqlite://themis.db");
    }
}
