//! CORS answers only the configured origins: a preflight from any other origin carries
//! no `Access-Control-*` header at all, and a wildcard origin pattern (which browsers
//! never send) stops the server at startup instead of silently matching nothing.

use axum::body::Body;
use axum::http::{Method, Request};
use tower::ServiceExt;

use themis::api::{ApiConfig, CorsOrigins};

use crate::common::TestApp;

fn app(origins: &[&str]) -> axum::Router {
    let entries: Vec<String> = origins.iter().map(|o| (*o).to_owned()).collect();
    let config = ApiConfig {
        cors_origins: CorsOrigins::parse(&entries).unwrap(),
        ..ApiConfig::default()
    };
    TestApp::new()
        .api(config)
        .configure(|c| c.max_running_runs = 1)
        .router()
        .router
}

/// The `access-control-*` headers of a preflight from `origin`, and its status.
async fn preflight(app: &axum::Router, origin: &str) -> (u16, Vec<String>) {
    let request = Request::builder()
        .method(Method::OPTIONS)
        .uri("/runs")
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let cors = response
        .headers()
        .keys()
        .map(|k| k.as_str().to_owned())
        .filter(|k| k.starts_with("access-control-"))
        .collect();
    (response.status().as_u16(), cors)
}

#[tokio::test]
async fn a_preflight_from_an_origin_not_configured_gets_no_cors_headers() {
    let app = app(&["https://dash.example.com"]);
    let (status, cors) = preflight(&app, "https://dash.example.com").await;
    assert_eq!(status, 204);
    for expected in [
        "access-control-allow-origin",
        "access-control-allow-methods",
        "access-control-allow-headers",
        "access-control-max-age",
    ] {
        assert!(cors.iter().any(|c| c == expected), "{expected}: {cors:?}");
    }
    for other in [
        "https://evil.example",
        "https://dash.example.com.evil.example",
        "http://dash.example.com",
        "null",
    ] {
        let (_, cors) = preflight(&app, other).await;
        assert_eq!(cors, Vec::<String>::new(), "{other}");
    }
}

#[test]
fn wildcard_origin_patterns_are_refused_at_startup() {
    for pattern in ["https://*.example.com", "https://dash.*.example.com"] {
        let error = CorsOrigins::parse(&[pattern.to_owned()]).unwrap_err();
        assert!(error.contains("wildcard"), "{pattern}: {error}");
    }
    // `*` alone (any origin) is still the one wildcard.
    assert_eq!(CorsOrigins::parse(&["*".to_owned()]), Ok(CorsOrigins::Any));
}
