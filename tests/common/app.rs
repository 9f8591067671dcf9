//! The one way the tests start Themis: a [`TestApp`] says what the server has (store,
//! component registry, API keys, any other [`ServerConfig`] field), then starts it as
//!
//! - [`TestApp::router`]: the real router in process, driven with `oneshot` (no port);
//! - [`TestApp::serve`]: the whole server (`themis::server::launch…`) on a loopback
//!   port, for SSE, webhooks, spans and anything end to end;
//! - [`TestApp::serve_router`]: the router alone on a port, with its scheduler at hand;
//! - [`TestApp::process`]: the real `themis serve` binary (signals, crashes, logs).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use serde_json::Value;
use themis::api::ApiConfig;
use themis::components::Registry;
use themis::engine::{Engine, EngineConfig, Scheduler};
use themis::server::ServerConfig;
use themis::store::{MemoryStore, Store};
use themis::telemetry::Telemetry;
use tower::ServiceExt;

use super::{ServerProcess, TestServer, try_spawn_server};

/// What a test server has; see the module documentation for the ways to start it.
pub struct TestApp {
    config: ServerConfig,
    registry: Option<Registry>,
    store: Option<Arc<dyn Store>>,
    engine: Option<Engine>,
    addr: String,
}

impl Default for TestApp {
    fn default() -> Self {
        Self::new()
    }
}

impl TestApp {
    /// The in-memory store, the builtin components, no API keys, 1 MiB request bodies,
    /// listening on `127.0.0.1:0`.
    pub fn new() -> TestApp {
        let mut config = ServerConfig {
            database_url: "memory".to_owned(),
            ..Default::default()
        };
        config.api.max_body_bytes = 1024 * 1024;
        TestApp {
            config,
            registry: None,
            store: None,
            engine: None,
            addr: "127.0.0.1:0".to_owned(),
        }
    }

    /// Starts from a whole configuration of the test's own.
    pub fn from_config(config: ServerConfig) -> TestApp {
        TestApp {
            config,
            ..TestApp::new()
        }
    }

    /// `memory`, `sqlite://…`, `postgres://…` (as `--database`).
    pub fn database(mut self, url: &str) -> TestApp {
        url.clone_into(&mut self.config.database_url);
        self
    }

    /// A store the test built itself ([`TestApp::router`] and
    /// [`TestApp::serve_router`] only).
    pub fn store(mut self, store: Arc<dyn Store>) -> TestApp {
        self.store = Some(store);
        self
    }

    /// An engine the test built and drove itself ([`TestApp::router`] and
    /// [`TestApp::serve_router`] only; its store and registry are the ones used).
    pub fn engine(mut self, engine: Engine) -> TestApp {
        self.engine = Some(engine);
        self
    }

    /// A component registry of the test's own (e.g. with `test/counting`). Without one,
    /// [`TestApp::serve`] builds the builtin registry from the configured providers, as
    /// `themis serve` does.
    pub fn registry(mut self, registry: Registry) -> TestApp {
        self.registry = Some(registry);
        self
    }

    pub fn api_keys(mut self, keys: Vec<String>) -> TestApp {
        self.config.api.api_keys = keys;
        self
    }

    pub fn api(mut self, api: ApiConfig) -> TestApp {
        self.config.api = api;
        self
    }

    /// Any other setting.
    pub fn configure(mut self, change: impl FnOnce(&mut ServerConfig)) -> TestApp {
        change(&mut self.config);
        self
    }

    /// Where [`TestApp::serve`] listens (`0.0.0.0:0` for a non-loopback listener).
    pub fn listen_on(mut self, addr: &str) -> TestApp {
        addr.clone_into(&mut self.addr);
        self
    }

    /// The whole server in process on a real port; stopped by [`TestServer::stop`] or
    /// on drop.
    pub async fn serve(self) -> TestServer {
        let listener = tokio::net::TcpListener::bind(&self.addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (config, registry) = (self.config, self.registry);
        let handle = tokio::spawn(async move {
            let shutdown = async {
                let _ = rx.await;
            };
            match registry {
                Some(registry) => themis::server::launch_with_registry(
                    config,
                    Arc::new(registry),
                    listener,
                    shutdown,
                )
                .await
                .unwrap(),
                None => themis::server::launch(config, listener, shutdown)
                    .await
                    .unwrap(),
            }
        });
        TestServer::new(addr, tx, handle, None)
    }

    /// The scheduler and router `themis serve` would build (no background polling, no
    /// resumption), over the engine given, else over the store given (or an in-memory
    /// one) with the registry given (or the builtin one).
    pub fn router(self) -> InProcess {
        // Server-side causes of failures (logged, not returned) show with a failing test.
        let _ = tracing_subscriber::fmt()
            .with_env_filter("themis=warn")
            .with_test_writer()
            .try_init();
        let (store, registry) = (self.store, self.registry);
        let engine = self.engine.unwrap_or_else(|| {
            Engine::instrumented(
                store.unwrap_or_else(|| Arc::new(MemoryStore::new())),
                Arc::new(registry.unwrap_or_else(Registry::builtin)),
                EngineConfig::default(),
                Arc::new(Telemetry::local()),
            )
        });
        let scheduler = Scheduler::new(engine, self.config.max_running_runs);
        let router = themis::api::router(scheduler.clone(), &self.config.api);
        InProcess { router, scheduler }
    }

    /// [`TestApp::router`] served on a real port; the scheduler stays at hand
    /// ([`TestServer::scheduler`]).
    pub async fn serve_router(self) -> TestServer {
        let addr_wanted = self.addr.clone();
        let app = self.router();
        let listener = tokio::net::TcpListener::bind(&addr_wanted).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let router = app.router;
        let handle = tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        TestServer::new(addr, tx, handle, Some(app.scheduler))
    }

    /// The real `themis serve` binary with `extra` flags and `env` (the test's own
    /// `OTEL_*` and `THEMIS_API_KEYS` are not passed on); only the database of this
    /// app applies. Returns the process and its base URL.
    pub fn process(self, extra: &[&str], env: &[(&str, &str)]) -> (ServerProcess, String) {
        self.try_process(extra, env)
            .unwrap_or_else(|stderr| panic!("themis serve did not start:\n{stderr}"))
    }

    /// [`TestApp::process`], with what the binary wrote to stderr as `Err` when it
    /// exited instead of serving.
    pub fn try_process(
        self,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<(ServerProcess, String), String> {
        try_spawn_server(&self.config.database_url, extra, env)
    }
}

/// The router in process, driven with `oneshot`.
pub struct InProcess {
    pub router: axum::Router,
    pub scheduler: Arc<Scheduler>,
}

/// A reply of the in-process router.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON; a body that is not JSON fails the test.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body of a {} reply is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

impl InProcess {
    /// One request through the router; a body that does not end within 60 s fails.
    pub async fn send(&self, request: Request<Body>) -> Reply {
        let uri = request.uri().clone();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            axum::body::to_bytes(response.into_body(), usize::MAX),
        )
        .await
        .unwrap_or_else(|_| panic!("body of {uri} did not end"))
        .expect("body readable")
        .to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    /// `method uri` with an optional JSON body: the status and the body as JSON
    /// (`Null` when it is not JSON).
    pub async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        call(&self.router, method, uri, body).await
    }
}

/// `method uri` through `router` with an optional JSON body: the status and the body as
/// JSON (`Null` when it is not JSON).
pub async fn call(
    router: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).expect("an HTTP method"))
        .uri(uri);
    let request = match body {
        Some(body) => request
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string())),
        None => request.body(Body::empty()),
    }
    .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}
