//! The clients of the service: the `themis` CLI (runs, datasets, exit codes, what it
//! tells its user) and the Python client's own test suite.

#[path = "../common/mod.rs"]
mod common;

mod cli;
mod cli_datasets;
mod cli_dry_run;
mod cli_exit;
mod feedback;
mod python;
mod serve_config;
