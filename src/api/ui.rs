//! `GET /ui/`: the dashboard, served from the binary.
//!
//! The assets under `ui/` in the repository are hand-written HTML, CSS and ES modules,
//! embedded at compile time: no CDN, no npm step, nothing to deploy beside the binary.
//! They hold no data (every number comes from the JSON API, which needs the key), so they
//! are public. Each answer carries a strong ETag (browsers revalidate with `no-cache` and
//! get 304 until the binary changes) and a Content-Security-Policy that allows only this
//! origin's scripts, styles and connections: no inline script, nothing from elsewhere.

use std::collections::HashMap;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use sha2::Digest;

use super::AppState;
use super::error::{ApiError, ApiPath};

/// Every file of the dashboard, by its path under `/ui/`.
const ASSETS: &[(&str, &[u8])] = &[
    ("index.html", include_bytes!("../../ui/index.html")),
    ("app.css", include_bytes!("../../ui/app.css")),
    ("js/main.js", include_bytes!("../../ui/js/main.js")),
    ("js/api.js", include_bytes!("../../ui/js/api.js")),
    ("js/sse.js", include_bytes!("../../ui/js/sse.js")),
    ("js/dom.js", include_bytes!("../../ui/js/dom.js")),
    ("js/format.js", include_bytes!("../../ui/js/format.js")),
    ("js/runs.js", include_bytes!("../../ui/js/runs.js")),
    ("js/run.js", include_bytes!("../../ui/js/run.js")),
    ("js/results.js", include_bytes!("../../ui/js/results.js")),
    ("js/case.js", include_bytes!("../../ui/js/case.js")),
    (
        "js/transcript.js",
        include_bytes!("../../ui/js/transcript.js"),
    ),
    ("js/compare.js", include_bytes!("../../ui/js/compare.js")),
    ("js/review.js", include_bytes!("../../ui/js/review.js")),
    (
        "js/agreement.js",
        include_bytes!("../../ui/js/agreement.js"),
    ),
    ("js/svg.js", include_bytes!("../../ui/js/svg.js")),
    ("js/charts.js", include_bytes!("../../ui/js/charts.js")),
    (
        "js/run_charts.js",
        include_bytes!("../../ui/js/run_charts.js"),
    ),
    (
        "js/compare_charts.js",
        include_bytes!("../../ui/js/compare_charts.js"),
    ),
    ("js/timeline.js", include_bytes!("../../ui/js/timeline.js")),
    ("favicon.svg", include_bytes!("../../ui/favicon.svg")),
];

/// Only this origin's files and API; no inline script or style, no frames, no plugins.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// Where `index.html` says whether the API needs a key (`<meta name="themis-auth">`), so
/// the dashboard asks for one before its first call instead of after a 401.
const AUTH_PLACEHOLDER: &str = "{{auth}}";

struct Asset {
    body: Vec<u8>,
    content_type: &'static str,
    etag: HeaderValue,
}

/// The embedded files with their content types and ETags, built once with the router.
pub(crate) struct UiAssets {
    by_path: HashMap<&'static str, Asset>,
}

impl UiAssets {
    /// `auth_required`: whether the API the dashboard calls has keys.
    pub(crate) fn new(auth_required: bool) -> Self {
        let auth = if auth_required { "key" } else { "none" };
        let by_path = ASSETS
            .iter()
            .map(|(path, bytes)| {
                let body = if *path == "index.html" {
                    String::from_utf8_lossy(bytes)
                        .replace(AUTH_PLACEHOLDER, auth)
                        .into_bytes()
                } else {
                    bytes.to_vec()
                };
                let digest = sha2::Sha256::digest(&body);
                let etag = HeaderValue::from_str(&format!("\"{}\"", hex::encode(&digest[..16])))
                    .unwrap_or_else(|_| HeaderValue::from_static("\"0\""));
                let asset = Asset {
                    content_type: content_type(path),
                    body,
                    etag,
                };
                (*path, asset)
            })
            .collect();
        UiAssets { by_path }
    }

    fn respond(&self, path: &str, headers: &HeaderMap) -> Result<Response, ApiError> {
        let asset = self
            .by_path
            .get(path)
            .ok_or_else(|| ApiError::NotFound(format!("no dashboard file {path}")))?;
        let fresh = headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',').any(|tag| {
                    let tag = tag.trim();
                    tag == "*" || tag.trim_start_matches("W/").as_bytes() == asset.etag.as_bytes()
                })
            });
        let common = [
            (header::ETAG, asset.etag.clone()),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ];
        if fresh {
            return Ok((StatusCode::NOT_MODIFIED, common).into_response());
        }
        let content_type = [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        )];
        Ok((common, content_type, asset.body.clone()).into_response())
    }
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(index))
        .route("/ui/{*path}", get(asset))
}

async fn index(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    state.ui.respond("index.html", &headers)
}

async fn asset(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.ui.respond(&path, &headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file added under `ui/` but not to [`ASSETS`] would be a 404 in the browser.
    #[test]
    fn every_file_under_ui_is_embedded() {
        fn walk(dir: &std::path::Path, root: &std::path::Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, root, out);
                } else {
                    let relative = path.strip_prefix(root).unwrap().to_string_lossy();
                    out.push(relative.replace('\\', "/"));
                }
            }
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ui");
        let mut files = Vec::new();
        walk(&root, &root, &mut files);
        files.sort();
        let mut embedded: Vec<String> = ASSETS.iter().map(|(p, _)| (*p).to_owned()).collect();
        embedded.sort();
        assert_eq!(files, embedded);
    }

    #[test]
    fn index_says_whether_a_key_is_needed() {
        for (required, value) in [(true, "key"), (false, "none")] {
            let assets = UiAssets::new(required);
            let index = String::from_utf8(assets.by_path["index.html"].body.clone()).unwrap();
            assert!(index.contains(&format!(r#"name="themis-auth" content="{value}""#)));
            assert!(!index.contains(AUTH_PLACEHOLDER));
        }
    }
}
