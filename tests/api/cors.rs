//! CORS (`--cors-origins`, `THEMIS_CORS_ORIGINS`) on the real binary: preflights for
//! every endpoint including the event stream, the `Authorization` header, and nothing
//! for origins that are not allowed or when CORS is off.

use crate::common;

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

/// `Access-Control-Allow-Origin` of a response (`""` when absent).
fn allowed_origin(response: &reqwest::Response) -> &str {
    header(response.headers(), "access-control-allow-origin")
}

/// A request from a page on `origin`.
fn from_page(method: Method, url: String, origin: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .request(method, url)
        .header("origin", origin)
}

async fn preflight(
    base: &str,
    path: &str,
    origin: &str,
    method: &str,
    headers: &str,
) -> reqwest::Response {
    from_page(Method::OPTIONS, format!("{base}{path}"), origin)
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
    assert_eq!(allowed_origin(&answer), DASHBOARD);
    let headers = answer.headers();
    let methods = listed(headers, "access-control-allow-methods");
    for method in ["get", "post", "put", "delete"] {
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

    let created = from_page(Method::POST, format!("{base}/runs"), DASHBOARD)
        .bearer_auth(KEY)
        .json(&common::seed_example())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 202);
    assert_eq!(allowed_origin(&created), DASHBOARD);
    let exposed = listed(created.headers(), "access-control-expose-headers");
    for name in ["location", "etag", "x-request-id", "retry-after"] {
        assert!(
            exposed.contains(&name.to_owned()),
            "{name} not in {exposed:?}"
        );
    }
    assert!(listed(created.headers(), "vary").contains(&"origin".to_owned()));
    let run_id = json_of(created).await.1["run_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The event stream, resumed with Last-Event-ID as EventSource does.
    let local = "http://localhost:3000";
    let events_path = format!("/runs/{run_id}/events");
    let answer = preflight(
        &base,
        &events_path,
        local,
        "GET",
        "authorization,last-event-id",
    )
    .await;
    assert_eq!(
        (answer.status().as_u16(), allowed_origin(&answer)),
        (204, local)
    );
    let stream = from_page(Method::GET, format!("{base}{events_path}"), local)
        .header("last-event-id", "2")
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (stream.status().as_u16(), allowed_origin(&stream)),
        (200, local)
    );
    assert!(header(stream.headers(), "content-type").starts_with("text/event-stream"));
    let events = read_sse(stream, usize::MAX).await;
    assert_eq!(events.first().map(|e| e.id), Some(3), "resumed after 2");
    assert_eq!(
        events.last().map(|e| e.event.as_str()),
        Some("run_completed")
    );

    // Errors are readable by the dashboard too.
    let refused = from_page(Method::GET, format!("{base}/runs/{run_id}"), DASHBOARD)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (refused.status().as_u16(), allowed_origin(&refused)),
        (401, DASHBOARD)
    );
    assert_eq!(json_of(refused).await.1["error"]["code"], "unauthorized");
}

#[tokio::test]
async fn an_origin_that_is_not_allowed_gets_no_cors_headers() {
    let (_server, base) = spawn_server("memory", &["--cors-origins", DASHBOARD]);
    let evil = "https://evil.example";
    let answer = preflight(&base, "/runs", evil, "POST", "content-type").await;
    assert_eq!(allowed_origin(&answer), "");
    let read = from_page(Method::GET, format!("{base}/runs"), evil)
        .send()
        .await
        .unwrap();
    assert_eq!(
        read.status(),
        200,
        "CORS is enforced by browsers, not a server error"
    );
    assert_eq!(allowed_origin(&read), "");
    // A look-alike of an allowed origin is another origin.
    let answer = preflight(
        &base,
        "/runs",
        "https://dash.example.com.evil.example",
        "GET",
        "",
    )
    .await;
    assert_eq!(allowed_origin(&answer), "");
}

#[tokio::test]
async fn without_cors_origins_options_is_405_and_no_cors_header_is_sent() {
    let (_server, base) = spawn_server("memory", &[]);
    let answer = preflight(&base, "/runs", DASHBOARD, "POST", "content-type").await;
    assert_eq!(allowed_origin(&answer), "");
    let (status, body) = json_of(answer).await;
    assert_eq!(status, 405);
    assert_eq!(body["error"]["code"], "method_not_allowed");
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
    assert_eq!(
        (answer.status().as_u16(), allowed_origin(&answer)),
        (204, "*")
    );
    let allowed = listed(answer.headers(), "access-control-allow-headers");
    assert!(allowed.contains(&"authorization".to_owned()), "{allowed:?}");

    let Err(stderr) = try_spawn_server("memory", &["--cors-origins", "dash.example.com"], &[])
    else {
        panic!("a server with an invalid origin started");
    };
    assert!(
        stderr.contains("--cors-origins") && stderr.contains("`dash.example.com` is not an origin"),
        "{stderr}"
    );
}
