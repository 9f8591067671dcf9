//! OTLP/HTTP span export: one OpenTelemetry tracer provider per run, built from the run's
//! tracing config, flushed and shut down when the run's execution ends.
//!
//! Spans go through the SDK's batch span processor (a bounded queue drained by its own
//! thread), so a slow or unreachable collector never slows a run: when the queue is
//! full, spans are dropped. The HTTP requests themselves run on the service's tokio
//! runtime with the shared client, bounded by a timeout; failures are logged and
//! counted per run (see `registry::RunCounters`).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
    Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider, SpanData,
    SpanExporter,
};
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use tokio_util::task::TaskTracker;

use super::config::{DEFAULT_OTLP_ENDPOINT, DEFAULT_SERVICE_NAME, display_url, traces_url};
use super::error::TelemetryError;
use super::registry::SpanCounters;
use crate::egress::Egress;
use crate::observe::{
    AttributeValue, Attributes, OtlpProtocol, Span, SpanStatus, TracingConfig, TracingProvider,
};

/// Spans waiting for export per run; more are dropped (and counted).
const MAX_QUEUE: usize = 8_192;
const MAX_BATCH: usize = 512;
/// How often queued spans are sent.
const EXPORT_INTERVAL: Duration = Duration::from_secs(2);
/// Longest one export may take, retries included.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest the final flush of a run may take.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest collector response read.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Parses a W3C `traceparent` header (`00-<trace id>-<parent id>-<flags>`) into the
/// remote span context it names; `None` when it is malformed (the header is then
/// ignored, as the W3C spec asks).
pub(crate) fn parse_traceparent(raw: &str) -> Option<SpanContext> {
    fn lower_hex(part: &str, len: usize) -> bool {
        part.len() == len && part.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    }
    let mut parts = raw.trim().split('-');
    let (version, trace_id, parent_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    // Version 00 has exactly four fields; later versions may append more.
    let valid = lower_hex(version, 2)
        && version != "ff"
        && (version != "00" || parts.next().is_none())
        && lower_hex(trace_id, 32)
        && lower_hex(parent_id, 16)
        && lower_hex(flags, 2);
    if !valid {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let context = SpanContext::new(
        TraceId::from_hex(trace_id).ok()?,
        SpanId::from_hex(parent_id).ok()?,
        TraceFlags::new(flags) & TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    context.is_valid().then_some(context)
}

/// Where one run's OTLP provider reports and flushes: its counters (of the run's
/// telemetry), the run (for logs) and the tracker of background flushes.
pub(super) struct ExportTo<'a> {
    pub counters: Arc<SpanCounters>,
    pub run: &'a str,
    pub tasks: TaskTracker,
}

/// Builds the OTLP provider of one run. Fails (with a message for the log) when no tokio
/// runtime is at hand or the exporter cannot be built.
pub(super) fn otlp_tracer(
    config: &TracingConfig,
    to: ExportTo<'_>,
    traceparent: Option<&str>,
    egress: &Egress,
    declared: bool,
) -> Result<OtlpTracer, TelemetryError> {
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| TelemetryError::NoRuntime("OTLP export"))?;
    let client = egress.client(declared)?;
    let endpoint = traces_url(config.endpoint.as_deref().unwrap_or(DEFAULT_OTLP_ENDPOINT));
    // Literal IP hosts are never resolved, so the resolver cannot check them; the URL
    // never changes (no redirects), so one check covers every export.
    if let Ok(url) = reqwest::Url::parse(&endpoint) {
        egress
            .check_url(&url, declared)
            .map_err(|source| TelemetryError::RefusedEndpoint {
                endpoint: display_url(&endpoint),
                source,
            })?;
    }
    let mut headers = HeaderMap::new();
    headers.insert(
        reqwest::header::USER_AGENT,
        HeaderValue::from_static(concat!("themis/", env!("CARGO_PKG_VERSION"))),
    );
    for (name, value) in &config.headers {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) else {
            return Err(TelemetryError::InvalidHeader(name.clone()));
        };
        let mut value = value;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(ExportClient {
            client: client.clone(),
            runtime,
            headers,
        })
        .with_endpoint(endpoint.clone())
        .with_protocol(match config.protocol.unwrap_or_default() {
            OtlpProtocol::HttpProtobuf => Protocol::HttpBinary,
            OtlpProtocol::HttpJson => Protocol::HttpJson,
        })
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| TelemetryError::Exporter(Arc::new(e)))?;
    let ExportTo {
        counters,
        run,
        tasks,
    } = to;
    counters.open.fetch_add(1, Ordering::AcqRel);
    counters.flushed.store(false, Ordering::Release);
    let exporter = CountingExporter {
        inner: exporter,
        counters: counters.clone(),
        run: run.to_owned(),
        collector: display_url(&endpoint),
    };
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(MAX_QUEUE)
                .with_max_export_batch_size(MAX_BATCH)
                .with_scheduled_delay(EXPORT_INTERVAL)
                .build(),
        )
        .build();
    let ratio = config.sample_ratio.unwrap_or(1.0);
    let service_name = config
        .service_name
        .clone()
        .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned());
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            ratio,
        ))))
        .with_resource(Resource::builder().with_service_name(service_name).build())
        .build();
    let tracer = provider.tracer("themis");
    Ok(OtlpTracer {
        provider: Mutex::new(Some(provider)),
        tracer,
        remote_parent: traceparent.and_then(parse_traceparent),
        counters,
        tasks,
    })
}

/// Sends spans to an OTLP/HTTP collector; see the module docs.
pub(super) struct OtlpTracer {
    /// Taken by the first shutdown.
    provider: Mutex<Option<SdkTracerProvider>>,
    tracer: SdkTracer,
    /// The caller's span (from `traceparent`) the root span joins.
    remote_parent: Option<SpanContext>,
    counters: Arc<SpanCounters>,
    /// Where the final flush runs, so shutdown can wait for it.
    tasks: TaskTracker,
}

/// An open OTLP span: the SDK span (taken when it ends) and its context for children.
struct OtlpSpan {
    span: Mutex<Option<opentelemetry_sdk::trace::Span>>,
    context: SpanContext,
}

fn key_value(key: impl Into<opentelemetry::Key>, value: AttributeValue) -> KeyValue {
    match value {
        AttributeValue::String(s) => KeyValue::new(key, s),
        AttributeValue::Int(i) => KeyValue::new(key, i),
        AttributeValue::Float(f) => KeyValue::new(key, f),
        AttributeValue::Bool(b) => KeyValue::new(key, b),
    }
}

impl OtlpTracer {
    /// The spans' trace ids follow the parent; a root span joins `traceparent` if any.
    fn parent_context(&self, parent: Option<&Span>) -> Context {
        match parent.and_then(|p| p.data::<OtlpSpan>()) {
            Some(parent) => Context::new().with_remote_span_context(parent.context.clone()),
            None => match &self.remote_parent {
                Some(remote) => Context::new().with_remote_span_context(remote.clone()),
                None => Context::new(),
            },
        }
    }

    fn take_provider(&self) -> Option<SdkTracerProvider> {
        self.provider.lock().ok().and_then(|mut p| p.take())
    }
}

impl TracingProvider for OtlpTracer {
    fn start_span(
        &self,
        name: &'static str,
        attributes: Attributes,
        parent: Option<&Span>,
    ) -> Span {
        let builder = self.tracer.span_builder(name).with_attributes(
            attributes
                .into_iter()
                .map(|(k, v)| key_value(k, v))
                .collect::<Vec<_>>(),
        );
        let span = self
            .tracer
            .build_with_context(builder, &self.parent_context(parent));
        let context = span.span_context().clone();
        Span::new(
            name,
            OtlpSpan {
                span: Mutex::new(Some(span)),
                context,
            },
        )
    }

    fn set_attribute(&self, span: &Span, key: &str, value: AttributeValue) {
        if let Some(data) = span.data::<OtlpSpan>()
            && let Ok(mut guard) = data.span.lock()
            && let Some(span) = guard.as_mut()
        {
            span.set_attribute(key_value(key.to_owned(), value));
        }
    }

    fn end_span(&self, span: Span, status: SpanStatus, error: Option<&str>) {
        let Some(data) = span.data::<OtlpSpan>() else {
            return;
        };
        let Some(mut sdk_span) = data.span.lock().ok().and_then(|mut s| s.take()) else {
            return;
        };
        sdk_span.set_status(match status {
            SpanStatus::Ok => Status::Ok,
            SpanStatus::Error => Status::error(error.unwrap_or("error").to_owned()),
        });
        if data.context.is_sampled() {
            self.counters.ended.fetch_add(1, Ordering::Relaxed);
        }
        sdk_span.end();
    }

    /// Flushes the queued spans and stops the provider, off the caller's thread: the
    /// flush blocks until the collector answers (or the timeout), and the run must not.
    fn shutdown(&self) {
        if let Some(provider) = self.take_provider() {
            flush_in_background(provider, self.counters.clone(), &self.tasks);
        }
    }
}

impl Drop for OtlpTracer {
    fn drop(&mut self) {
        // An execution that ended without `shutdown` (an error path) still flushes; the
        // provider's own drop would block this (possibly async) thread instead.
        if let Some(provider) = self.take_provider() {
            flush_in_background(provider, self.counters.clone(), &self.tasks);
        }
    }
}

fn flush_in_background(
    provider: SdkTracerProvider,
    counters: Arc<SpanCounters>,
    tasks: &TaskTracker,
) {
    let flush = move || {
        if let Err(e) = provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
            tracing::warn!(error = %e, "flushing a run's spans failed");
        }
        if counters.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            counters.flushed.store(true, Ordering::Release);
        }
    };
    if tokio::runtime::Handle::try_current().is_ok() {
        tasks.spawn_blocking(flush);
    } else if let Err(e) = std::thread::Builder::new()
        .name("themis-otlp-flush".into())
        .spawn(flush)
    {
        tracing::warn!(error = %e, "cannot start a thread to flush spans");
    }
}

/// Counts what the OTLP exporter sends and fails to send, and logs failures (the first
/// of a run and every hundredth after it).
#[derive(Debug)]
struct CountingExporter {
    inner: opentelemetry_otlp::SpanExporter,
    counters: Arc<SpanCounters>,
    run: String,
    collector: String,
}

impl SpanExporter for CountingExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len() as u64;
        let result = self.inner.export(batch).await;
        match &result {
            Ok(()) => {
                self.counters.exported.fetch_add(spans, Ordering::Relaxed);
            }
            Err(e) => {
                self.counters.failed.fetch_add(spans, Ordering::Relaxed);
                let errors = self.counters.export_errors.fetch_add(1, Ordering::Relaxed) + 1;
                if errors == 1 || errors.is_multiple_of(100) {
                    tracing::warn!(
                        run_id = %self.run,
                        collector = %self.collector,
                        export_errors = errors,
                        error = %e,
                        "exporting spans failed"
                    );
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The exporter's HTTP client: the shared reqwest client, driven on the service's tokio
/// runtime (the batch processor's thread only waits for the answer). Sends exactly the
/// configured headers: whatever the SDK adds from `OTEL_EXPORTER_OTLP_HEADERS` is left
/// out, so the operator's collector credentials never reach a run's own endpoint.
#[derive(Debug)]
struct ExportClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
    headers: HeaderMap,
}

#[async_trait::async_trait]
impl HttpClient for ExportClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let mut headers = self.headers.clone();
        for name in [CONTENT_TYPE, CONTENT_ENCODING] {
            if let Some(value) = parts.headers.get(&name) {
                headers.insert(name, value.clone());
            }
        }
        let request = self
            .client
            .request(parts.method, parts.uri.to_string())
            .headers(headers)
            .timeout(EXPORT_TIMEOUT)
            .body(body);
        let call = self.runtime.spawn(async move {
            let mut response = request.send().await.map_err(|e| e.without_url())?;
            let status = response.status();
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|e| e.without_url())? {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            Ok::<_, reqwest::Error>((status, Bytes::from(body)))
        });
        let (status, body) = call.await??;
        Ok(Response::builder().status(status).body(body)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_parsing() {
        let parsed =
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(
            parsed.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(parsed.span_id().to_string(), "00f067aa0ba902b7");
        assert!(parsed.is_sampled());
        assert!(parsed.is_remote());
        let unsampled =
            parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-future")
                .unwrap();
        assert!(!unsampled.is_sampled(), "later versions may add fields");
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }
}
