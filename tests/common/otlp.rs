//! The one OTLP/HTTP collector of the tests: a real listener on a loopback port that
//! decodes `/v1/traces` payloads (protobuf, or JSON kept as is) and keeps every span
//! with its resource's `service.name`, and the headers of every export.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::Span as ProtoSpan;
use prost::Message;
use serde_json::{Value, json};

/// A span as the receiver decoded it, with its resource's `service.name`.
#[derive(Debug, Clone)]
pub struct Received {
    pub service: String,
    pub span: ProtoSpan,
}

impl Received {
    pub fn attr(&self, key: &str) -> Option<Value> {
        self.span
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.as_ref())
            .map(|v| match v {
                any_value::Value::StringValue(s) => json!(s),
                any_value::Value::IntValue(i) => json!(i),
                any_value::Value::DoubleValue(f) => json!(f),
                any_value::Value::BoolValue(b) => json!(b),
                other => json!(format!("{other:?}")),
            })
    }

    pub fn run_id(&self) -> Option<String> {
        self.attr("run_id")
            .and_then(|v| v.as_str().map(str::to_owned))
    }

    pub fn status(&self) -> (i32, String) {
        self.span
            .status
            .as_ref()
            .map(|s| (s.code, s.message.clone()))
            .unwrap_or_default()
    }
}

/// An OTLP/HTTP receiver on 127.0.0.1:0: decodes `/v1/traces` payloads (protobuf, or
/// JSON kept as is) and keeps every span.
#[derive(Clone, Default)]
pub struct Collector {
    pub spans: Arc<Mutex<Vec<Received>>>,
    pub json: Arc<Mutex<Vec<Value>>>,
    pub headers: Arc<Mutex<Vec<HeaderMap>>>,
}

async fn receive_traces(
    State(collector): State<Collector>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    collector.headers.lock().unwrap().push(headers);
    if content_type == "application/json" {
        match serde_json::from_slice(&body) {
            Ok(value) => collector.json.lock().unwrap().push(value),
            Err(_) => return StatusCode::BAD_REQUEST,
        }
        return StatusCode::OK;
    }
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut spans = collector.spans.lock().unwrap();
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|r| r.attributes.iter())
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| match &v.value {
                Some(any_value::Value::StringValue(s)) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                spans.push(Received {
                    service: service.clone(),
                    span,
                });
            }
        }
    }
    StatusCode::OK
}

impl Collector {
    pub async fn start() -> (String, Collector) {
        let collector = Collector::default();
        let app = Router::new()
            .route("/v1/traces", post(receive_traces))
            .with_state(collector.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (format!("http://{addr}"), collector)
    }

    pub fn spans_of(&self, run_id: &str) -> Vec<Received> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.run_id().as_deref() == Some(run_id))
            .cloned()
            .collect()
    }

    /// The hex trace id of every span received.
    pub fn trace_ids(&self) -> Vec<String> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .map(|s| hex::encode(&s.span.trace_id))
            .collect()
    }
}
