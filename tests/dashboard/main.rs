//! The dashboard in a real browser (headless Debian Chromium driven over WebDriver):
//! its pages, and human review with charts.

#[path = "../common/mod.rs"]
mod common;

mod agent;
mod pages;
mod review;
mod service;
mod spend;
