//! The engine driven directly: runs, resumption, cancellation, the failure policy and the
//! component catalogue's examples, offline.

#[path = "../common/mod.rs"]
mod common;

mod catalog;
mod failure_policy;
mod runs;
