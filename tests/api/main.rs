//! The HTTP API through the real router: runs over HTTP, representations, CORS,
//! comparisons, datasets, human reviews, the JSON shapes (insta snapshots) and
//! `openapi.yaml` against the router.

#[path = "../common/mod.rs"]
mod common;

mod compare;
mod cors;
mod datasets;
mod http;
mod labels;
mod openapi;
mod representation;
mod reviews;
mod snapshots;
mod spend;
mod status_polling;
