//! CORS (`--cors-origins`, `THEMIS_CORS_ORIGINS`) on the real binary: preflights for
//! every endpoint including the event stream, the `Authorization` header, and nothing
//! for origins that are not allowed or when CORS is off.

mod common;

use common::{json_of, read_sse, spawn_server, spawn_server_with_env, try_spawn_server};
use reqwest::Method;
use reqwest::header::HeaderMap;

const DASHBOARD: &str = "https://dash.example.com";
const KEY: &str = "k-cors";

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .map(|v| v.to_str().expect("header is text"))
        .unwrap_or("")
}

/// The comma-separated values of a header, lower-cased.
fn listed(headers: &HeaderMap, name: &str) -> Vec<String> {
    header(headers, name)
        .split(',')
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty())
        .collect()
}

async fn preflight(
    base: &str,
    path: &str,
    origin: &str,
    method: &str,
    headers: &str,
) -> reqwest::Response {
    reqwest::Client::new()
        .request(Method::OPTIONS, format!("{base}{path}"))
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", headers)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn preflights_answer_204_and_dashboards_call_every_endpoint_with_a_key() {
    let (_server, base) = spawn_server(
        "memory",
        &[
            "--cors-origins",
            "https://Dash.Example.com/,http://localhost:3000",
            "--api-keys",
            KEY,
        ],
    );
    let client = reqwest::Client::new();

    // Creating a run: the preflight is answered before the key check.
    let answer = preflight(
        &base,
        "/runs",
        DASHBOARD,
        "POST",
        "authorization,content-type",
    )
    .await;
    assert_eq!(answer.status(), 204);
    let headers = answer.headers();
    assert_eq!(header(headers, "access-control-allow-origin"), DASHBOARD);
    let methods = listed(headers, "access-control-allow-methods");
    for method in ["get", "post"] {
        assert!(methods.contains(&method.to_owned()), "{methods:?}");
    }
    let allowed = listed(headers, "access-control-allow-headers");
    for name in [
        "authorization",
        "content-type",
        "last-event-id",
        "if-none-match",
    ] {
        assert!(
            allowed.contains(&name.to_owned()),
            "{name} not in {allowed:?}"
        );
    }
    assert!(!header(headers, "access-control-max-age").is_empty());

    let created = client
        .post(format!("{base}/runs"))
        .header("origin", DASHBOARD)
        .bearer_auth(KEY)
        .json(&common::seed_example())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 202);
    let headers = created.headers().clone();
    assert_eq!(header(&headers, "access-control-allow-origin"), DASHBOARD);
    let exposed = listed(&headers, "access-control-expose-headers");
    for name in ["location", "etag", "x-request-id", "retry-after"] {
        assert!(
            exposed.contains(&name.to_owned()),
            "{name} not in {exposed:?}"
        );
    }
    assert!(listed(&headers, "vary").contains(&"origin".to_owned()));
    let (_, run) = json_of(created).await;
    let run_id = run["run_id"].as_str().unwrap().to_owned();

    // The event stream, resumed with Last-Event-ID as EventSource does.
    let events_path = format!("/runs/{run_id}/events");
    let answer = preflight(
        &base,
        &events_path,
        "http://localhost:3000",
        "GET",
        "authorization,last-event-id",
    )
    .await;
    assert_eq!(answer.status(), 204);
    assert_eq!(
        header(answer.headers(), "access-control-allow-origin"),
        "http://localhost:3000"
    );
    let stream = client
        .get(format!("{base}{events_path}"))
        .header("origin", "http://localhost:3000")
        .header("last-event-id", "2")
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(
        header(stream.headers(), "access-control-allow-origin"),
        "http://localhost:3000"
    );
    assert!(header(stream.headers(), "content-type").starts_with("text/event-stream"));
    let events = read_sse(stream, usize::MAX).await;
    assert_eq!(events.first().map(|e| e.id), Some(3), "resumed after 2");
    assert_eq!(
        events.last().map(|e| e.event.as_str()),
        Some("run_completed")
    );

    // Errors are readable by the dashboard too.
    let refused = client
        .get(format!("{base}/runs/{run_id}"))
        .header("origin", DASHBOARD)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(
        header(refused.headers(), "access-control-allow-origin"),
        DASHBOARD
    );
    assert_eq!(json_of(refused).await.1["error"]["code"], "unauthorized");
}

#[tokio::test]
async fn an_origin_that_is_not_allowed_gets_no_cors_headers() {
    let (_server, base) = spawn_server("memory", &["--cors-origins", DASHBOARD]);
    let answer = preflight(
        &base,
        "/runs",
        "https://evil.example",
        "POST",
        "content-type",
    )
    .await;
    assert!(
        answer
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    let read = reqwest::Client::new()
        .get(format!("{base}/runs"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        read.status(),
        200,
        "CORS is enforced by browsers, not a server error"
    );
    assert!(read.headers().get("access-control-allow-origin").is_none());
    // A look-alike of an allowed origin is another origin.
    let answer = preflight(
        &base,
        "/runs",
        "https://dash.example.com.evil.example",
        "GET",
        "",
    )
    .await;
    assert!(
        answer
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn without_cors_origins_options_is_405_and_no_cors_header_is_sent() {
    let (_server, base) = spawn_server("memory", &[]);
    let answer = preflight(&base, "/runs", DASHBOARD, "POST", "content-type").await;
    let headers = answer.headers().clone();
    let (status, body) = json_of(answer).await;
    assert_eq!(status, 405);
    assert_eq!(body["error"]["code"], "method_not_allowed");
    assert!(headers.get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn cors_origins_come_from_the_environment_and_invalid_ones_stop_startup() {
    let (_server, base) = spawn_server_with_env("memory", &[], &[("THEMIS_CORS_ORIGINS", "*")]);
    let answer = preflight(
        &base,
        "/runs",
        "https://anyone.example",
        "POST",
        "authorization",
    )
    .await;
    assert_eq!(answer.status(), 204);
    assert_eq!(header(answer.headers(), "access-control-allow-origin"), "*");
    assert!(
        listed(answer.headers(), "access-control-allow-headers")
            .contains(&"authorization".to_owned())
    );

    let Err(stderr) = try_spawn_server("memory", &["--cors-origins", "dash.example.com"], &[])
    else {
        panic!("a server with an invalid origin started");
    };
    assert!(
        stderr.contains("--cors-origins") && stderr.contains("`dash.example.com` is not an origin"),
        "{stderr}"
    );
}
