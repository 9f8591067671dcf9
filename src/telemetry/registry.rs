//! What this process knows about a run's instrumentation: span export and webhook
//! delivery counters, kept per run id for `GET /runs/{id}` to show.
//!
//! The registry belongs to the process's [`super::Telemetry`] and is in memory: it
//! covers the executions that telemetry observed (another instance's, or a previous
//! process's, are unknown), and it forgets the oldest runs beyond [`MAX_RUNS`].

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::model::RunId;
use crate::observe::{TelemetryView, WebhookView};

/// Most runs whose counters are kept; the oldest are forgotten first.
pub(super) const MAX_RUNS: usize = 10_000;

/// Span export counters of one run (all executions of it in this process).
#[derive(Debug, Default)]
pub(super) struct SpanCounters {
    /// Sampled spans that ended (the ones meant for export).
    pub ended: AtomicU64,
    pub exported: AtomicU64,
    /// Spans in batches the collector did not take.
    pub failed: AtomicU64,
    /// Failed export requests.
    pub export_errors: AtomicU64,
    /// Every exporter of the run has been flushed and shut down.
    pub flushed: AtomicBool,
    /// Exporters of the run still open.
    pub open: AtomicU64,
}

/// Delivery counters of one webhook subscriber of a run.
#[derive(Debug)]
pub(super) struct WebhookCounters {
    /// The URL as shown (no credentials, no query).
    pub url: String,
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    /// Queued or in flight.
    pub pending: AtomicU64,
    /// Not queued because the queue was full.
    pub dropped: AtomicU64,
    pub last_error: Mutex<Option<String>>,
}

impl WebhookCounters {
    pub(super) fn set_last_error(&self, message: String) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(message);
        }
    }
}

#[derive(Default)]
struct Entry {
    spans: Option<Arc<SpanCounters>>,
    webhooks: Vec<Arc<WebhookCounters>>,
}

#[derive(Default)]
struct Runs {
    entries: HashMap<RunId, Entry>,
    order: VecDeque<RunId>,
}

/// The span and webhook counters of the runs one [`super::Telemetry`] observed.
#[derive(Default)]
pub(super) struct RunCounters {
    runs: Mutex<Runs>,
}

impl Runs {
    fn entry(&mut self, run_id: &RunId) -> &mut Entry {
        if !self.entries.contains_key(run_id) {
            while self.order.len() >= MAX_RUNS {
                match self.order.pop_front() {
                    Some(oldest) => {
                        self.entries.remove(&oldest);
                    }
                    None => break,
                }
            }
            self.order.push_back(run_id.clone());
        }
        self.entries.entry(run_id.clone()).or_default()
    }
}

impl RunCounters {
    fn runs(&self) -> MutexGuard<'_, Runs> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The span counters of a run, created on first use.
    pub(super) fn spans(&self, run_id: &RunId) -> Arc<SpanCounters> {
        self.runs()
            .entry(run_id)
            .spans
            .get_or_insert_with(Default::default)
            .clone()
    }

    /// The counters of the run's `index`th webhook subscriber, created on first use (a run
    /// executed again in this process keeps counting on the same ones).
    pub(super) fn webhook(&self, run_id: &RunId, index: usize, url: &str) -> Arc<WebhookCounters> {
        let mut runs = self.runs();
        let entry = runs.entry(run_id);
        if let Some(existing) = entry.webhooks.get(index).filter(|w| w.url == url) {
            return existing.clone();
        }
        let counters = Arc::new(WebhookCounters {
            url: url.to_owned(),
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            last_error: Mutex::new(None),
        });
        if index < entry.webhooks.len() {
            entry.webhooks[index] = counters.clone();
        } else {
            entry.webhooks.push(counters.clone());
        }
        counters
    }

    /// What this process knows of a run's instrumentation; `None` when nothing.
    pub(super) fn snapshot(&self, run_id: &RunId) -> Option<TelemetryView> {
        let runs = self.runs();
        let entry = runs.entries.get(run_id)?;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let spans = entry.spans.as_ref();
        let view = TelemetryView {
            spans_exported: spans.map(|s| load(&s.exported)),
            spans_failed: spans.map(|s| load(&s.failed)),
            spans_dropped: spans
                .filter(|s| s.flushed.load(Ordering::Acquire))
                .map(|s| {
                    load(&s.ended)
                        .saturating_sub(load(&s.exported))
                        .saturating_sub(load(&s.failed))
                }),
            export_errors: spans.map(|s| load(&s.export_errors)),
            webhooks: entry
                .webhooks
                .iter()
                .map(|w| WebhookView {
                    url: w.url.clone(),
                    delivered: load(&w.delivered),
                    failed: load(&w.failed),
                    pending: load(&w.pending),
                    dropped: load(&w.dropped),
                    last_error: w.last_error.lock().ok().and_then(|e| e.clone()),
                })
                .collect(),
        };
        Some(view)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_id(n: u8) -> RunId {
        format!("run_{}", format!("{n:02x}").repeat(16))
            .parse()
            .unwrap()
    }

    #[test]
    fn counters_show_up_in_the_snapshot() {
        let registry = RunCounters::default();
        let id = run_id(0xa1);
        assert_eq!(registry.snapshot(&id), None);
        let spans = registry.spans(&id);
        spans.ended.fetch_add(5, Ordering::Relaxed);
        spans.exported.fetch_add(3, Ordering::Relaxed);
        let hook = registry.webhook(&id, 0, "http://h/x");
        hook.delivered.fetch_add(2, Ordering::Relaxed);
        hook.set_last_error("boom".into());
        let view = registry.snapshot(&id).unwrap();
        assert_eq!(view.spans_exported, Some(3));
        assert_eq!(view.spans_dropped, None, "unknown until flushed");
        assert_eq!(view.webhooks[0].delivered, 2);
        assert_eq!(view.webhooks[0].last_error.as_deref(), Some("boom"));
        spans.flushed.store(true, Ordering::Release);
        assert_eq!(registry.snapshot(&id).unwrap().spans_dropped, Some(2));
        // The same subscriber again keeps its counters.
        assert_eq!(
            registry
                .webhook(&id, 0, "http://h/x")
                .delivered
                .load(Ordering::Relaxed),
            2
        );
    }
}
