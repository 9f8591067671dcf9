//! Themis: an async evaluation service for LLM and model outputs.
//!
//! Layers, bottom first, each importing only layers below it (docs/design/layout.md):
//! [`model`] (domain types, canonical JSON, input checking), [`egress`] (where outbound
//! requests may go), [`sandbox`] (where untrusted code runs), `stats`, [`store`]
//! (persistence), [`observe`] (observation traits), [`components`] (generators,
//! reducers, parsers, metrics, judges), [`telemetry`] (implements `observe`, handed to the engine), [`engine`] (definitions,
//! run ids, pipeline, execution), [`api`] and [`server`].
//!
//! Only what an embedder needs is public (`tests/layers.rs` pins the list): `stats` is
//! the engine's, and every public module re-exports its surface from private submodules.

// Everything `pub` below the crate root is the embedder's API or says otherwise
// (`pub(crate)`): the lint keeps internals from leaking out as the code grows.
#![warn(unreachable_pub)]

pub mod api;
pub mod components;
pub mod egress;
pub mod engine;
pub mod model;
pub mod observe;
pub mod sandbox;
pub mod server;
mod stats;
pub mod store;
pub mod telemetry;
