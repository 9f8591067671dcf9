//! The engine and its components: runs, resumption, cancellation, the failure policy,
//! the component catalogue's examples offline, and code execution in sandboxes.

#[path = "../common/mod.rs"]
mod common;

mod catalog;
mod code_execution;
mod failure_policy;
mod runs;
