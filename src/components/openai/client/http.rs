//! One HTTP request and what came back: a status and body (read up to a cap), or a
//! transport error.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderValue};

/// The largest response body read.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// One HTTP request: `body` POSTed to `url` (with `api_key` as the bearer token), the
/// answer read within `timeout`.
pub(super) async fn post(
    client: &reqwest::Client,
    url: &reqwest::Url,
    body: Bytes,
    api_key: Option<&str>,
    timeout: Duration,
) -> Attempt {
    let mut request = client
        .post(url.clone())
        .timeout(timeout)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .body(body);
    if let Some(key) = api_key {
        request = request.bearer_auth(key);
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) => return transport(&e, timeout),
    };
    let status = response.status().as_u16();
    let retry_after = retry_after(response.headers());
    match read_body(response).await {
        Ok(text) => Attempt::Answered {
            status,
            body: text,
            retry_after,
        },
        Err(Unread::TooLarge) => Attempt::Answered {
            status,
            body: String::new(),
            retry_after,
        },
        Err(Unread::Transport(e)) => transport(&e, timeout),
    }
}

fn transport(error: &reqwest::Error, timeout: Duration) -> Attempt {
    if error.is_timeout() {
        Attempt::Transport {
            message: format!(
                "request timed out after {} ms (timeout_ms)",
                timeout.as_millis()
            ),
            timed_out: true,
        }
    } else {
        Attempt::Transport {
            message: error_chain(error),
            timed_out: false,
        }
    }
}

/// What one HTTP request came back with.
pub(in crate::components::openai) enum Attempt {
    Answered {
        status: u16,
        body: String,
        retry_after: Option<Duration>,
    },
    /// No answer: connection error or timeout.
    Transport { message: String, timed_out: bool },
}

/// `Retry-After` as seconds or an HTTP date (or OpenAI's `retry-after-ms`).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let seconds = |text: &str, scale: f64| {
        text.parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_secs_f64((s / scale).min(86_400.0)))
    };
    if let Some(ms) = header("retry-after-ms").and_then(|v| seconds(v, 1000.0)) {
        return Some(ms);
    }
    let value = header("retry-after")?;
    seconds(value, 1.0).or_else(|| {
        let at = httpdate::parse_http_date(value).ok()?;
        Some(
            at.duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO),
        )
    })
}

enum Unread {
    TooLarge,
    Transport(reqwest::Error),
}

/// The body as text (lossy UTF-8), refusing more than [`MAX_BODY_BYTES`].
async fn read_body(mut response: reqwest::Response) -> Result<String, Unread> {
    // The announced length sizes the buffer once; it is only a hint (capped), the
    // chunks read are what is checked.
    let hint = response.content_length().unwrap_or(0).min(64 * 1024) as usize;
    let mut bytes = Vec::with_capacity(hint);
    while let Some(chunk) = response.chunk().await.map_err(Unread::Transport)? {
        if bytes.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(Unread::TooLarge);
        }
        bytes.extend_from_slice(&chunk);
    }
    // Valid UTF-8 (the usual case) is kept without a copy.
    Ok(String::from_utf8(bytes)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

/// An error with its sources ("error sending request: connection refused").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    #[test]
    fn retry_after_forms() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert("retry-after", HeaderValue::from_static("0.25"));
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(250)));
        let later = SystemTime::now() + Duration::from_secs(30);
        headers.insert(
            "retry-after",
            HeaderValue::from_str(&httpdate::fmt_http_date(later)).unwrap(),
        );
        let d = retry_after(&headers).unwrap();
        assert!(
            d > Duration::from_secs(28) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        headers.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        headers.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
        headers.insert("retry-after-ms", HeaderValue::from_static("1500"));
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(1500)));
    }
}
