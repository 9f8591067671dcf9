//! The `themis serve` binary the browser tests drive, and where their screenshots go.

use std::path::PathBuf;

use serde_json::Value;

use crate::common::{ServerProcess, json_of, spawn_server_with_env};

/// The binary on a fresh SQLite file, called over HTTP with `key` when it has one.
pub struct Service {
    _process: ServerProcess,
    pub base: String,
    client: reqwest::Client,
    key: Option<&'static str>,
}

impl Service {
    /// `extra` flags; with `key`, the server requires it (`THEMIS_API_KEYS`).
    pub fn start(extra: &[&str], key: Option<&'static str>) -> Service {
        let dir = tempfile::tempdir().expect("temp dir").keep();
        let database = format!("sqlite://{}", dir.join("themis.db").display());
        let env: Vec<(&str, &str)> = key.map(|k| ("THEMIS_API_KEYS", k)).into_iter().collect();
        let (process, base) = spawn_server_with_env(&database, extra, &env);
        Service {
            _process: process,
            base,
            client: reqwest::Client::new(),
            key,
        }
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self.key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    /// `POST path` answered 200 or 202.
    pub async fn post(&self, path: &str, body: &Value) -> Value {
        let request = self.client.post(format!("{}{path}", self.base)).json(body);
        let response = self.authorized(request).send().await.expect("POST");
        let (status, value) = json_of(response).await;
        assert!(
            status == 200 || status == 202,
            "POST {path}: {status} {value}"
        );
        value
    }

    /// `GET path` with its status, whatever it is.
    pub async fn get_any(&self, path: &str) -> (u16, Value) {
        let request = self.client.get(format!("{}{path}", self.base));
        let response = self.authorized(request).send().await.expect("GET");
        json_of(response).await
    }

    /// `GET path` answered 200.
    pub async fn get(&self, path: &str) -> Value {
        let (status, value) = self.get_any(path).await;
        assert_eq!(status, 200, "GET {path}: {value}");
        value
    }
}

/// Where screenshots go: `THEMIS_SCREENSHOTS` (the docs' images) or the target's tmp dir.
pub fn screenshots() -> PathBuf {
    std::env::var_os("THEMIS_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard"))
}
