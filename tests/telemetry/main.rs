//! What a run tells the outside while it executes: spans, webhooks, metrics and logs,
//! each against a real receiver from `tests/common`.

#[path = "../common/mod.rs"]
mod common;

mod instrumentation;
mod log_output;
mod logging;
mod metrics;
mod spans;
mod webhooks;
