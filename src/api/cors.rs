//! CORS for browser dashboards served from other origins (`--cors-origins`).
//!
//! Off by default: without origins no CORS header is ever sent and `OPTIONS` stays a
//! `405`. With origins, tower-http's `CorsLayer` answers preflights before routing (so
//! before the API key check: browsers never send `Authorization` on a preflight) and
//! adds `Access-Control-Allow-Origin` to every response for an allowed origin, errors
//! and event streams included; any other origin gets no `Access-Control-*` header at
//! all, preflights included. Keys travel in `Authorization`, never in cookies, so
//! credentials mode is not enabled and `*` is safe to offer.

use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::Response;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The origins allowed to call the API from a browser.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CorsOrigins {
    /// No CORS (the default).
    #[default]
    None,
    /// `*`: any origin.
    Any,
    /// These origins, normalised as browsers send them (`https://dash.example.com`).
    List(Vec<HeaderValue>),
}

impl CorsOrigins {
    /// Parses `--cors-origins` entries: `*` alone, or origins `scheme://host[:port]`.
    /// Blank entries are ignored; the error names the entry that is not an origin.
    pub fn parse(entries: &[String]) -> Result<CorsOrigins, String> {
        let entries: Vec<&str> = entries
            .iter()
            .map(|e| e.trim())
            .filter(|e| !e.is_empty())
            .collect();
        if entries.contains(&"*") {
            return if entries.len() == 1 {
                Ok(CorsOrigins::Any)
            } else {
                Err("`*` allows every origin and cannot be combined with others".into())
            };
        }
        if entries.is_empty() {
            return Ok(CorsOrigins::None);
        }
        entries
            .into_iter()
            .map(parse_origin)
            .collect::<Result<_, _>>()
            .map(CorsOrigins::List)
    }
}

/// `scheme://host[:port]` as a browser writes it in `Origin`: lower case, no default
/// port, no path; a trailing `/` is tolerated.
fn parse_origin(raw: &str) -> Result<HeaderValue, String> {
    let invalid = || format!("`{raw}` is not an origin like https://dashboard.example.com");
    let uri: Uri = raw.parse().map_err(|_| invalid())?;
    let scheme = uri
        .scheme_str()
        .map(str::to_ascii_lowercase)
        .filter(|s| s == "http" || s == "https")
        .ok_or_else(invalid)?;
    let authority = uri.authority().ok_or_else(invalid)?;
    if authority.as_str().contains('@') || !matches!(uri.path(), "" | "/") || uri.query().is_some()
    {
        return Err(invalid());
    }
    let host = authority.host().to_ascii_lowercase();
    // Browsers send one exact origin; a pattern would never match it as a literal.
    if host.contains('*') {
        return Err(format!(
            "`{raw}`: wildcard origins are not supported; list each origin (scheme://host[:port])"
        ));
    }
    let default_port = if scheme == "https" { 443 } else { 80 };
    let origin = match authority.port_u16().filter(|p| *p != default_port) {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    };
    HeaderValue::from_str(&origin).map_err(|_| invalid())
}

/// Request headers a dashboard may send. Listed by name: the `*` wildcard does not
/// cover `Authorization` in browsers.
const ALLOW_HEADERS: [HeaderName; 7] = [
    header::AUTHORIZATION,
    header::CONTENT_TYPE,
    header::IF_NONE_MATCH,
    header::CACHE_CONTROL,
    HeaderName::from_static("last-event-id"),
    HeaderName::from_static("x-request-id"),
    HeaderName::from_static("traceparent"),
];

/// Response headers a dashboard may read beyond the CORS-safelisted ones.
const EXPOSE_HEADERS: [HeaderName; 6] = [
    header::ETAG,
    header::LOCATION,
    header::RETRY_AFTER,
    header::WWW_AUTHENTICATE,
    header::CONTENT_DISPOSITION,
    HeaderName::from_static("x-request-id"),
];

/// How long a browser may reuse a preflight answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// The layer for `origins`; `None` when CORS is off.
pub(super) fn layer(origins: &CorsOrigins) -> Option<CorsLayer> {
    let allow_origin = match origins {
        CorsOrigins::None => return None,
        CorsOrigins::Any => AllowOrigin::any(),
        CorsOrigins::List(list) => AllowOrigin::list(list.iter().cloned()),
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([
                Method::GET,
                Method::HEAD,
                Method::POST,
                Method::PUT,
                Method::DELETE,
            ])
            .allow_headers(ALLOW_HEADERS)
            .expose_headers(EXPOSE_HEADERS)
            .max_age(PREFLIGHT_MAX_AGE),
    )
}

/// `CorsLayer` answers a preflight `200` with an empty body; `204 No Content` says
/// what it is. It also lists the allowed methods and headers to any origin, allowed or
/// not: without an allowed origin no `Access-Control-*` header is sent at all.
pub(super) async fn preflight_no_content(request: Request, next: Next) -> Response {
    let preflight = request.method() == Method::OPTIONS;
    let mut response = next.run(request).await;
    if preflight && response.status() == StatusCode::OK {
        *response.status_mut() = StatusCode::NO_CONTENT;
    }
    let headers = response.headers_mut();
    if !headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        let cors: Vec<HeaderName> = headers
            .keys()
            .filter(|name| name.as_str().starts_with("access-control-"))
            .cloned()
            .collect();
        for name in cors {
            headers.remove(name);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::CorsOrigins;

    fn parse(entries: &[&str]) -> Result<CorsOrigins, String> {
        CorsOrigins::parse(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn origins_are_normalised_as_browsers_send_them() {
        assert_eq!(
            parse(&[
                "HTTPS://Dash.Example.com:443/",
                " http://localhost:3000 ",
                ""
            ]),
            Ok(CorsOrigins::List(vec![
                "https://dash.example.com".parse().unwrap(),
                "http://localhost:3000".parse().unwrap(),
            ]))
        );
        assert_eq!(parse(&["", " "]), Ok(CorsOrigins::None));
        assert_eq!(parse(&["*"]), Ok(CorsOrigins::Any));
    }

    #[test]
    fn what_is_not_an_origin_is_refused_by_name() {
        for bad in [
            "dash.example.com",
            "ftp://dash.example.com",
            "https://dash.example.com/app",
            "https://user:pw@dash.example.com",
            "https://dash.example.com?x=1",
            "https://*.example.com",
            "null",
        ] {
            let error = parse(&[bad]).unwrap_err();
            assert!(error.contains(bad), "{bad}: {error}");
        }
        assert!(parse(&["*", "https://a.example"]).is_err());
    }
}
