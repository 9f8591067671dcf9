//! Themis: an async evaluation service for LLM and model outputs.
//!
//! Layers: [`model`] (domain types), [`components`] (generators, reducers, parsers,
//! metrics, judges), [`engine`] (definitions, run ids, pipeline, execution),
//! [`store`] (persistence), [`telemetry`] (tracing providers), [`egress`] (where
//! outbound requests may go).

pub mod api;
pub mod bench;
pub mod cli;
pub mod cli_compare;
pub mod components;
pub mod egress;
pub mod engine;
pub mod model;
pub mod observe;
pub mod server;
pub mod stats;
pub mod store;
pub mod telemetry;
