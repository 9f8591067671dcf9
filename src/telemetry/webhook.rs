//! Webhook subscribers: a run's lifecycle events POSTed as JSON to a URL.
//!
//! `on_event` only queues (a queue bounded by count and by bytes; when it is full the
//! event is dropped and counted), so a slow or broken receiver never slows the run. One delivery task per
//! subscriber sends the queued events one after another, in sequence order, each
//! retried with exponential backoff up to [`MAX_ATTEMPTS`] times; an event that still
//! fails is counted and skipped. Delivery is at least once within those attempts (a
//! receiver that times out after processing may see an event twice): receivers dedupe
//! by `X-Themis-Delivery` (`{run_id}:{seq}`).
//!
//! With `secret_env`, every body is signed: `X-Themis-Signature: sha256=<hex>` is the
//! HMAC-SHA256 of the raw body under that declared secret, when the operator bound it to
//! the webhook's URL ([`WebhookSecrets`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::mpsc;

use tokio_util::task::TaskTracker;

use super::error::TelemetryError;
use super::registry::WebhookCounters;
use super::webhook_secrets::WebhookSecrets;
use crate::egress::{Egress, EgressError};
use crate::model::{RunEvent, RunId};
use crate::observe::{LifecycleSubscriber, Meter, WebhookConfig};

/// The signature header.
pub(super) const SIGNATURE_HEADER: &str = "x-themis-signature";

/// Events waiting per subscriber; more are dropped (and counted).
const QUEUE: usize = 10_000;
/// Bytes of serialised events waiting per subscriber; more are dropped (and counted).
/// Events carry case inputs and errors, so a count alone does not bound memory.
pub(super) const MAX_QUEUE_BYTES: usize = 8 * 1024 * 1024;
/// Attempts per event, the first included.
pub(super) const MAX_ATTEMPTS: u32 = 5;
const INITIAL_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Longest one delivery attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// HMAC-SHA256 of `body` under `secret`, as the signature header's value.
pub(super) fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(body);
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        }
        Err(_) => String::new(),
    }
}

/// Queues a run's matching events for its delivery task.
pub(super) struct WebhookSubscriber {
    events: Vec<String>,
    queue: mpsc::Sender<Queued>,
    /// Bytes in `queue` and in delivery, shared with the delivery task.
    queued_bytes: Arc<AtomicUsize>,
    counters: Arc<WebhookCounters>,
}

/// An event serialised once at enqueue time: its size is what the queue holds.
struct Queued {
    body: Vec<u8>,
    seq: u64,
    event_type: &'static str,
}

impl LifecycleSubscriber for WebhookSubscriber {
    fn on_event(&self, event: &RunEvent) {
        let event_type = event.event_type();
        if !self.events.is_empty() && !self.events.iter().any(|e| e == event_type) {
            return;
        }
        let drop_event = || {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        };
        let Ok(body) = serde_json::to_vec(event) else {
            return drop_event();
        };
        let size = body.len();
        if self.queued_bytes.fetch_add(size, Ordering::AcqRel) + size > MAX_QUEUE_BYTES {
            self.queued_bytes.fetch_sub(size, Ordering::AcqRel);
            return drop_event();
        }
        self.counters.pending.fetch_add(1, Ordering::AcqRel);
        let queued = Queued {
            body,
            seq: event.seq,
            event_type,
        };
        if self.queue.try_send(queued).is_err() {
            self.queued_bytes.fetch_sub(size, Ordering::AcqRel);
            self.counters.pending.fetch_sub(1, Ordering::AcqRel);
            drop_event();
        }
    }
}

/// Builds the subscriber and starts its delivery task (on the current tokio runtime,
/// tracked by `tasks`). The task ends once the subscriber is dropped and its queue is
/// delivered.
pub(super) fn webhook_subscriber(
    run_id: &RunId,
    config: &WebhookConfig,
    counters: Arc<WebhookCounters>,
    egress: &Egress,
    tasks: &TaskTracker,
    meter: Arc<dyn Meter>,
    secrets: &WebhookSecrets,
) -> Result<WebhookSubscriber, TelemetryError> {
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| TelemetryError::NoRuntime("webhook delivery"))?;
    // A webhook URL is the run's choice: never a declared destination.
    let client = egress.client(false)?;
    let url = reqwest::Url::parse(&config.url).map_err(|e| TelemetryError::Url(e.to_string()))?;
    // A secret that is no longer declared (or bound to this URL) since the run was
    // accepted fails deliveries rather than sending them unsigned.
    let secret = match &config.secret_env {
        None => Ok(None),
        Some(name) => secrets
            .for_destination(name, &url)
            .map(|value| Some(value.to_vec())),
    };
    let (queue, received) = mpsc::channel(QUEUE);
    // Literal IP hosts are never resolved, so the resolver cannot check them: the URL
    // never changes (no redirects), so checking it once covers every delivery.
    let refused = egress.check_url(&url, false).err();
    let queued_bytes = Arc::new(AtomicUsize::new(0));
    let delivery = Delivery {
        client: client.clone(),
        url,
        refused,
        secret,
        counters: counters.clone(),
        run_id: run_id.clone(),
        queued_bytes: queued_bytes.clone(),
        meter,
    };
    tasks.spawn_on(delivery.run(received), &runtime);
    Ok(WebhookSubscriber {
        events: config.events.clone(),
        queue,
        queued_bytes,
        counters,
    })
}

/// One subscriber's delivery task.
struct Delivery {
    client: reqwest::Client,
    url: reqwest::Url,
    /// Why the egress policy refuses the URL's address, if it does.
    refused: Option<EgressError>,
    secret: Result<Option<Vec<u8>>, TelemetryError>,
    counters: Arc<WebhookCounters>,
    run_id: RunId,
    queued_bytes: Arc<AtomicUsize>,
    /// The operator's metrics: deliveries and failures.
    meter: Arc<dyn Meter>,
}

/// Whether an HTTP status is worth another attempt.
fn retryable(status: reqwest::StatusCode) -> bool {
    status.is_server_error() || matches!(status.as_u16(), 408 | 425 | 429)
}

/// An error with its causes, without the URL (it may carry a token).
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

impl Delivery {
    async fn run(self, mut queue: mpsc::Receiver<Queued>) {
        while let Some(event) = queue.recv().await {
            let outcome = self.deliver(&event).await;
            self.queued_bytes
                .fetch_sub(event.body.len(), Ordering::AcqRel);
            self.counters.pending.fetch_sub(1, Ordering::AcqRel);
            self.meter.webhook_delivery(outcome.is_ok());
            match outcome {
                Ok(()) => {
                    self.counters.delivered.fetch_add(1, Ordering::Relaxed);
                }
                Err(message) => {
                    self.counters.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        run_id = %self.run_id,
                        url = %self.counters.url,
                        seq = event.seq,
                        error = %message,
                        "webhook delivery failed"
                    );
                    self.counters.set_last_error(message.to_string());
                }
            }
        }
    }

    async fn deliver(&self, event: &Queued) -> Result<(), TelemetryError> {
        if let Some(refused) = &self.refused {
            return Err(refused.clone().into());
        }
        let secret = self.secret.as_ref().map_err(Clone::clone)?;
        let body = &event.body;
        let signature = secret.as_ref().map(|s| signature(s, body));
        let delivery_id = format!("{}:{}", self.run_id, event.seq);
        let mut backoff = INITIAL_BACKOFF;
        let mut attempt = 1;
        loop {
            let mut request = self
                .client
                .post(self.url.clone())
                .timeout(ATTEMPT_TIMEOUT)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header("x-themis-event", event.event_type)
                .header("x-themis-delivery", &delivery_id)
                .body(body.clone());
            if let Some(signature) = &signature {
                request = request.header(SIGNATURE_HEADER, signature);
            }
            let (error, wait) = match request.send().await {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) => {
                    let status = response.status();
                    if !retryable(status) {
                        return Err(TelemetryError::Rejected(status.as_u16()));
                    }
                    let message = format!("HTTP {}", status.as_u16());
                    let retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(|s| Duration::from_secs(s).min(MAX_BACKOFF));
                    (message, retry_after.unwrap_or(backoff).max(backoff))
                }
                Err(e) => (describe(e), backoff),
            };
            if attempt >= MAX_ATTEMPTS {
                return Err(TelemetryError::Exhausted {
                    last: error,
                    attempts: attempt,
                });
            }
            tokio::time::sleep(wait).await;
            attempt += 1;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_hmac() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
