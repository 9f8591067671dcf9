//! One log line per request, at INFO (the default level): method, path, status, latency,
//! request id, and the run id when the request is about a run.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;

use super::REQUEST_ID;

/// Lines waiting for the access log's thread before a request writes its own.
const QUEUED: usize = 4_096;

/// How long the thread lets lines gather after the first before writing them together.
const GATHER: Duration = Duration::from_millis(5);

/// What a request's line says, captured on its way out.
struct Line {
    method: Method,
    path: String,
    status: u16,
    latency_ms: f64,
    request_id: Option<HeaderValue>,
    /// A `Location` header of the response (a run just created is named there).
    location: Option<HeaderValue>,
}

/// The access log: each request hands its line to a thread of its own, which formats
/// and writes it (off the request's path: a request does no formatting and no write,
/// and a burst of requests wakes the thread once). The thread ends with the router.
pub(super) struct AccessLog {
    queue: SyncSender<Line>,
}

impl AccessLog {
    pub(super) fn start() -> Arc<Self> {
        let (queue, lines) = sync_channel(QUEUED);
        // Without the thread (none could be started), each request writes its own line.
        if let Err(e) = std::thread::Builder::new()
            .name("themis-access".into())
            .spawn(move || write_lines(&lines))
        {
            tracing::warn!(error = %e, "no access log thread: requests write their own lines");
        }
        Arc::new(AccessLog { queue })
    }

    fn log(&self, line: Line) {
        match self.queue.try_send(line) {
            Ok(()) => {}
            // Written here rather than lost: the thread is behind or gone.
            Err(TrySendError::Full(line) | TrySendError::Disconnected(line)) => write(line),
        }
    }
}

fn write_lines(lines: &Receiver<Line>) {
    while let Ok(first) = lines.recv() {
        // The lines logged meanwhile join this one: requests arriving while the thread
        // gathers hand their lines over without waking it.
        std::thread::sleep(GATHER);
        for line in std::iter::once(first).chain(lines.try_iter()) {
            write(line);
        }
    }
}

fn write(line: Line) {
    let Line {
        method,
        path,
        status,
        latency_ms,
        request_id,
        location,
    } = line;
    let request_id = request_id
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    // A run's own paths name it; creating a run names it in `Location`.
    let run_id = run_id_in(&path).or_else(|| {
        location
            .as_ref()
            .and_then(|l| l.to_str().ok())
            .and_then(run_id_in)
    });
    let run_id = run_id.as_deref();
    if status >= 500 {
        tracing::error!(target: "themis::http", %method, path, status, latency_ms, request_id, run_id, "request");
    } else {
        tracing::info!(target: "themis::http", %method, path, status, latency_ms, request_id, run_id, "request");
    }
}

/// Middleware: runs inside the layer that assigns `x-request-id`, so every line has one.
pub(super) async fn log_request(
    State(log): State<Arc<AccessLog>>,
    request: Request,
    next: Next,
) -> Response {
    // Nothing to capture when the line would not be written (`RUST_LOG=warn`).
    if !tracing::enabled!(target: "themis::http", tracing::Level::ERROR) {
        return next.run(request).await;
    }
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let request_id = request.headers().get(REQUEST_ID).cloned();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    if status < 500 && !tracing::enabled!(target: "themis::http", tracing::Level::INFO) {
        return response;
    }
    log.log(Line {
        method,
        path,
        status,
        latency_ms: millis(started.elapsed()),
        request_id,
        location: response.headers().get(header::LOCATION).cloned(),
    });
    response
}

/// `run_…` from `/runs/{run_id}[/…]`, when it is a well-formed run id.
fn run_id_in(path: &str) -> Option<String> {
    let id = path.strip_prefix("/runs/")?.split('/').next()?;
    id.parse::<crate::model::RunId>()
        .ok()
        .map(|id| id.to_string())
}

/// Milliseconds to the microsecond: a whole number of microseconds divided by 1,000
/// prints as that decimal (`0.088`), not with the noise of `secs * 1e3`.
fn millis(elapsed: std::time::Duration) -> f64 {
    (elapsed.as_nanos() as f64 / 1e3).round() / 1e3
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn finds_the_run_id_of_run_paths_only() {
        let id = format!("run_{}", "ab".repeat(16));
        assert_eq!(super::run_id_in(&format!("/runs/{id}")), Some(id.clone()));
        assert_eq!(
            super::run_id_in(&format!("/runs/{id}/events")),
            Some(id.clone())
        );
        assert_eq!(super::run_id_in("/runs/not-an-id"), None);
        assert_eq!(super::run_id_in("/runs"), None);
        assert_eq!(super::run_id_in("/healthz"), None);
    }

    #[test]
    fn latency_is_logged_without_float_noise() {
        assert_eq!(
            super::millis(Duration::from_nanos(87_670)).to_string(),
            "0.088"
        );
        assert_eq!(
            super::millis(Duration::from_micros(1_800)).to_string(),
            "1.8"
        );
        assert_eq!(super::millis(Duration::from_secs(2)).to_string(), "2000");
    }
}
