//! The innermost service: one HTTP request through the operator's egress client, its
//! answer judged ([`Outcome`]). The provider's key is sent as the bearer token and
//! redacted from anything kept; only a declared provider's error messages are quoted.

use std::sync::Arc;
use std::task::{Context, Poll};

use super::{AttemptFuture, Call, Outcome, Refused};
use crate::components::openai::client::http::post;
use crate::components::openai::client::response::redact;
use crate::components::openai::providers::ProviderSpec;
use crate::egress::Egress;
use tower::Service;

#[derive(Clone)]
pub(in crate::components::openai) struct Transport {
    egress: Arc<Egress>,
    /// The declared provider this stack serves (`None`: undeclared endpoints).
    provider: Option<Arc<ProviderSpec>>,
}

impl Transport {
    pub(super) fn new(egress: Arc<Egress>, provider: Option<Arc<ProviderSpec>>) -> Self {
        Transport { egress, provider }
    }

    /// The key the operator bound to this provider, if any.
    fn api_key(&self) -> Option<&str> {
        self.provider
            .as_ref()
            .and_then(|p| p.key.as_ref())
            .map(|k| k.expose())
            .filter(|k| !k.is_empty())
    }
}

impl<'a> Service<Call<'a>> for Transport {
    type Response = Outcome;
    type Error = Refused;
    type Future = AttemptFuture<'a>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Refused>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Call<'a>) -> AttemptFuture<'a> {
        let this = self.clone();
        Box::pin(async move {
            let declared = this.provider.is_some();
            let client = this.egress.client(declared)?;
            let url = match &call.client.url {
                Ok(url) => url,
                // The destination layer refuses such calls before they get here.
                Err(e) => return Err(Refused::Url(e.clone())),
            };
            let api_key = this.api_key();
            let attempt = post(client, url, call.body, api_key, call.client.timeout).await;
            Ok(attempt.classify(&|text: &str| redact(text, api_key), declared))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::components::openai::client::stack::testing::Fixture;
    use tower::ServiceExt;

    /// A one-shot HTTP server on a loopback port answering every request with `answer`;
    /// returns its base URL and the requests it read (head and body).
    async fn serve(body: &'static str) -> (String, tokio::task::JoinHandle<String>) {
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{body}",
            body.len()
        );
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/v1", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            let mut buffer = [0u8; 4096];
            // Read until the body (announced by content-length) is complete.
            loop {
                let n = socket.read(&mut buffer).await.unwrap();
                seen.extend_from_slice(&buffer[..n]);
                let text = String::from_utf8_lossy(&seen).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if body.len() >= length {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            socket.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&seen).to_string()
        });
        (base, server)
    }

    #[tokio::test]
    async fn sends_the_body_with_the_key_and_judges_the_answer() {
        let (base, server) = serve(
            r#"{"choices":[{"message":{"content":"4"}}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#,
        )
        .await;
        let fixture = Fixture::new(&base);
        let provider = ProviderSpec::new("p", &base).unwrap().with_key("sk-test");
        let transport = Transport::new(Arc::new(Egress::local()), Some(Arc::new(provider)));
        let call = Call {
            body: bytes::Bytes::from_static(b"{\"model\":\"m\"}"),
            ..fixture.call()
        };
        let outcome = transport.oneshot(call).await.expect("answered");
        let request = server.await.unwrap();
        assert!(
            request.starts_with("POST /v1/chat/completions "),
            "{request}"
        );
        assert!(
            request
                .to_ascii_lowercase()
                .contains("authorization: bearer sk-test"),
            "{request}"
        );
        assert!(request.ends_with("{\"model\":\"m\"}"), "{request}");
        assert_eq!(outcome.status, Some(200));
        let (_, parsed) = outcome.result.expect("success");
        assert_eq!(parsed.choices[0].content, "4");
        assert_eq!((parsed.prompt_tokens, parsed.completion_tokens), (3, 1));
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_an_answerless_outcome() {
        // Nothing listens on the discard port of the loopback address.
        let fixture = Fixture::new("http://127.0.0.1:9/v1");
        let transport = Transport::new(Arc::new(Egress::local()), None);
        let outcome = transport.oneshot(fixture.call()).await.expect("judged");
        assert_eq!(outcome.status, None);
        assert!(!outcome.timed_out);
        let failure = outcome.result.expect_err("failed");
        assert!(failure.retryable);
    }
}
