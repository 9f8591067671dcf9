//! The HTTP API: one module per resource, each exposing `router()`. Handlers parse,
//! call the engine or store, and map; the error shape lives in [`error`].

mod access_log;
mod auth;
mod compare;
mod cors;
mod datasets;
mod delete;
mod error;
mod events;
mod export;
mod health;
mod metrics;
mod openai_evals;
mod openapi;
mod results;
mod retry;
mod reviews;
mod runs;
mod status_cache;
mod ui;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderName, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use cors::CorsOrigins;
pub(crate) use error::ApiError;

use crate::engine::{Scheduler, UploadLimits};
use crate::telemetry::Metrics;

/// What handlers share.
#[derive(Clone)]
pub(crate) struct AppState {
    pub scheduler: Arc<Scheduler>,
    /// Accepted bearer keys; empty means no authentication.
    pub api_keys: Arc<auth::ApiKeys>,
    /// One permit per open `GET /runs/{id}/events` stream.
    pub event_streams: Arc<tokio::sync::Semaphore>,
    /// Caps on `PUT /datasets/{id}` bodies.
    pub upload_limits: UploadLimits,
    /// The dashboard's embedded files (public: they hold no data).
    pub ui: Arc<ui::UiAssets>,
    /// The operator's metrics, served at `GET /metrics` (event streams count here too).
    pub metrics: Arc<Metrics>,
    /// The OpenAI Evals API (`/v1`) over the same engine.
    pub evals: Arc<crate::engine::OpenAiEvals>,
    /// `GET /runs/{id}` of the runs executing here, encoded.
    pub status_cache: Arc<status_cache::StatusCache>,
}

/// Settings of the HTTP layer.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub api_keys: Vec<String>,
    pub max_body_bytes: usize,
    /// Most event streams open at once on this server; more get `503`.
    pub max_event_streams: usize,
    /// Browser origins allowed to call the API (`--cors-origins`); none by default.
    pub cors_origins: CorsOrigins,
    /// Caps on dataset uploads (`--max-dataset-bytes`, `--max-case-bytes`): they stream,
    /// so they are not bound by `max_body_bytes`.
    pub upload_limits: UploadLimits,
    /// `GET /metrics` without a key even when keys are set (`--metrics-public`).
    pub metrics_public: bool,
    /// The OpenAI Evals API's settings (`--default-provider`, the python graders' sandbox).
    pub evals: crate::engine::EvalsConfig,
}

/// Default of [`ApiConfig::max_event_streams`].
pub const DEFAULT_MAX_EVENT_STREAMS: usize = 1_024;

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            api_keys: Vec::new(),
            max_body_bytes: 64 * 1024 * 1024,
            max_event_streams: DEFAULT_MAX_EVENT_STREAMS,
            cors_origins: CorsOrigins::None,
            upload_limits: UploadLimits::default(),
            metrics_public: false,
            evals: crate::engine::EvalsConfig::default(),
        }
    }
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole API with its middleware: request ids, request logs, CORS, body limit, auth.
/// `GET /metrics` shows a registry of its own (the API's own counters only): a server
/// that wants the engine's and providers' too uses [`router_with_metrics`].
pub fn router(scheduler: Arc<Scheduler>, config: &ApiConfig) -> Router {
    router_with_metrics(scheduler, config, Arc::new(Metrics::new()))
}

/// [`router`] serving `metrics` (the one the engine and providers report to).
pub fn router_with_metrics(
    scheduler: Arc<Scheduler>,
    config: &ApiConfig,
    metrics: Arc<Metrics>,
) -> Router {
    let evals = Arc::new(crate::engine::OpenAiEvals::new(
        scheduler.engine().clone(),
        config.evals.clone(),
    ));
    let state = AppState {
        evals,
        scheduler,
        api_keys: Arc::new(auth::ApiKeys::new(&config.api_keys)),
        // `Semaphore::new` panics above MAX_PERMITS: a huge flag means "no cap" in effect.
        event_streams: Arc::new(tokio::sync::Semaphore::new(
            config
                .max_event_streams
                .min(tokio::sync::Semaphore::MAX_PERMITS),
        )),
        upload_limits: config.upload_limits,
        ui: Arc::new(ui::UiAssets::new(!config.api_keys.is_empty())),
        metrics,
        status_cache: Arc::default(),
    };
    let (public_metrics, protected_metrics) = if config.metrics_public {
        (metrics::router(), Router::new())
    } else {
        (Router::new(), metrics::router())
    };
    let protected = Router::new()
        .merge(protected_metrics)
        .merge(runs::router())
        .merge(results::router())
        .merge(events::router())
        .merge(compare::router())
        .merge(datasets::router())
        .merge(delete::router())
        .merge(retry::router())
        .merge(reviews::router())
        .merge(openapi::router())
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_api_key,
        ));
    let routes = Router::new()
        .nest("/v1", openai_evals::router(state.clone()))
        .merge(health::router())
        .merge(ui::router())
        .merge(public_metrics)
        .merge(protected)
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed });
    // Outside routing and auth (a preflight carries no key), inside the request id and
    // access log (preflights are requests too).
    let routes = match cors::layer(&config.cors_origins) {
        Some(cors) => routes
            .layer(cors)
            .layer(middleware::from_fn(cors::preflight_no_content)),
        None => routes,
    };
    routes
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        // The request's span gives what is logged while it is handled its request id
        // (method and path are the access line's: formatting them into every span cost
        // each request).
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    let request_id = request
                        .headers()
                        .get(REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!("request", request_id)
                })
                // The access log below writes the one line per request (5xx included).
                .on_request(())
                .on_response(())
                .on_eos(())
                .on_failure(()),
        )
        .layer(middleware::from_fn_with_state(
            access_log::AccessLog::start(),
            access_log::log_request,
        ))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(state)
}

/// Lets a request through with a key (or when there are none), naming its [`auth::Caller`].
async fn require_api_key(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let caller = if state.api_keys.is_empty() {
        let claimed = request
            .headers()
            .get(auth::REVIEWER_HEADER)
            .map(|v| v.to_str().ok().filter(|name| auth::is_caller_name(name)));
        match claimed {
            None => auth::Caller::default(),
            Some(Some(name)) => auth::Caller {
                name: Some(name.to_owned()),
            },
            Some(None) => {
                return ApiError::bad_request(
                    "invalid_header",
                    auth::REVIEWER_HEADER,
                    "must be 1 to 64 letters, digits, `.`, `_`, `-` or `@`",
                )
                .into_response();
            }
        }
    } else {
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        match state.api_keys.identify(presented) {
            Some(name) => auth::Caller {
                name: Some(name.to_owned()),
            },
            None => return ApiError::Unauthorized.into_response(),
        }
    };
    request.extensions_mut().insert(caller);
    next.run(request).await
}
