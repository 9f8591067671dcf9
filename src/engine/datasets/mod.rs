//! Datasets as resources: uploads checked line by line into content-addressed
//! revisions, and the cases of a revision read back in chunks.
//!
//! A revision is `sha256:` + SHA-256 over `themis/dataset/v1\n` followed by each case's
//! canonical JSON and a newline, in order. A case's canonical JSON is the canonical JSON
//! (see [`crate::model::canonical_json`]) of `{"case_id", "expected_output", "input",
//! "metadata"}`, with `expected_output` null when absent and `metadata` left out when
//! absent or null.

mod case;
mod csv;
mod ingest;
mod inline;
mod lines;
mod repeats;
mod service;
mod spool;
mod submit;
mod upload;

pub(super) use case::check_case;
pub use csv::CsvMapping;
pub(super) use ingest::revision_of;
pub(crate) use service::check_dataset_id;
pub use upload::{UploadFormat, UploadLimits};
