//! A tool result as text for a model: text content joined, everything else summarised
//! (never decoded or interpreted), the operator's header values redacted, and the whole
//! cut to the server's cap.

use rmcp::model::{CallToolResult, ContentBlock, ResourceContents};

use super::spec::McpHeader;
use crate::components::openai::redact_key;

/// Redacts every header value of the server from `text` (a server may echo them).
pub(super) fn redact(text: &str, headers: &[McpHeader]) -> String {
    let mut out = text.to_owned();
    for header in headers {
        if let Some(value) = header.value.text() {
            // `Bearer <token>`: the token alone is the secret a server would echo.
            for secret in [value, value.rsplit(' ').next().unwrap_or(value)] {
                if let std::borrow::Cow::Owned(redacted) = redact_key(&out, secret) {
                    out = redacted;
                }
            }
        }
    }
    out
}

/// Cuts `text` to at most `max_bytes` (at a character boundary), saying how much went.
pub(super) fn cap(mut text: String, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text;
    }
    let total = text.len();
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(&format!("\n[truncated: {} of {total} bytes]", total - end));
    text
}

/// One line standing for a content block that is not text.
fn summary(block: &ContentBlock) -> String {
    match block {
        ContentBlock::Text(text) => text.text.clone(),
        ContentBlock::Image(image) => format!(
            "[image: {}, {} bytes of base64]",
            image.mime_type,
            image.data.len()
        ),
        ContentBlock::Audio(audio) => format!(
            "[audio: {}, {} bytes of base64]",
            audio.mime_type,
            audio.data.len()
        ),
        ContentBlock::Resource(embedded) => match &embedded.resource {
            // An embedded text resource is text the server chose to send.
            ResourceContents::TextResourceContents { uri, text, .. } => {
                format!("[resource {uri}]\n{text}")
            }
            ResourceContents::BlobResourceContents {
                uri,
                mime_type,
                blob,
                ..
            } => format!(
                "[resource {uri}: {}, {} bytes of base64]",
                mime_type.as_deref().unwrap_or("binary"),
                blob.len()
            ),
            _ => "[resource]".to_owned(),
        },
        ContentBlock::ResourceLink(link) => format!("[resource link: {}]", link.uri),
        _ => "[content of an unknown kind]".to_owned(),
    }
}

/// The result's content as one text: blocks joined by newlines; with no content, the
/// structured result as JSON.
pub(super) fn text_of(result: &CallToolResult) -> String {
    if result.content.is_empty() {
        return match &result.structured_content {
            Some(value) => value.to_string(),
            None => String::new(),
        };
    }
    result
        .content
        .iter()
        .map(summary)
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_cuts_at_a_character_boundary_and_says_so() {
        assert_eq!(cap("short".into(), 10), "short");
        let cut = cap("ééééé".into(), 3);
        assert_eq!(cut, "é\n[truncated: 8 of 10 bytes]");
    }

    #[test]
    fn header_values_and_their_tokens_are_redacted() {
        let spec = super::super::McpServerSpec::new("x", "http://h/mcp")
            .unwrap()
            .with_header("Authorization", "Bearer tok-0123456789abcdef")
            .unwrap();
        let text = redact(
            "you sent Bearer tok-0123456789abcdef, token tok-0123456789abcdef",
            &spec.headers,
        );
        assert!(!text.contains("0123456789abcdef"), "{text}");
        assert!(text.contains("[redacted]"), "{text}");
    }
}
