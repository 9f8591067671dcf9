//! One log line per request, at INFO (the default level): method, path, status, latency,
//! request id, and the run id when the request is about a run.

use std::time::Instant;

use axum::extract::Request;
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;

use super::REQUEST_ID;

/// Middleware: runs inside the layer that assigns `x-request-id`, so every line has one.
pub(super) async fn log_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let request_id = header_text(request.headers().get(REQUEST_ID)).unwrap_or_default();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let latency_ms = millis(started.elapsed());
    // A run's own paths name it; creating a run names it in `Location`.
    let run_id = run_id_in(&path).or_else(|| {
        header_text(response.headers().get(header::LOCATION)).and_then(|l| run_id_in(&l))
    });
    let run_id = run_id.as_deref();
    if status >= 500 {
        tracing::error!(target: "themis::http", %method, path, status, latency_ms, request_id, run_id, "request");
    } else {
        tracing::info!(target: "themis::http", %method, path, status, latency_ms, request_id, run_id, "request");
    }
    response
}

fn header_text(value: Option<&axum::http::HeaderValue>) -> Option<String> {
    value.and_then(|v| v.to_str().ok()).map(str::to_owned)
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
