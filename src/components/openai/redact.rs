//! Removing an API key from text a provider sends back. Providers echo keys mangled:
//! without their `sk-`-style prefix, cut short, inside other words. Redacted are the key,
//! the key without its prefix, and every run of text made of fragments of at least
//! [`MIN_FRAGMENT`] bytes of the key.
//!
//! The scan is linear in the text: a window is only looked up where [`MIN_FRAGMENT`]
//! bytes in a row all occur in the key.

use std::borrow::Cow;
use std::collections::HashSet;

/// Shortest piece of a key treated as the key.
pub(crate) const MIN_FRAGMENT: usize = 12;

/// Keys shorter than this are not looked for (they would match ordinary words).
const MIN_KEY: usize = 4;

/// A key without its prefix is looked for when at least this long.
const MIN_BARE_KEY: usize = 8;

const REDACTED: &str = "[redacted]";

/// `text` with every variant of `key` replaced by `[redacted]`.
pub(crate) fn redact_key<'t>(text: &'t str, key: &str) -> Cow<'t, str> {
    if key.len() < MIN_KEY || text.is_empty() {
        return Cow::Borrowed(text);
    }
    let mut ranges = Vec::new();
    ranges.extend(text.match_indices(key).map(|(at, v)| at..at + v.len()));
    let bare = without_prefix(key);
    // Shorter, a bare key would match ordinary words (`sk-ab12` is `ab12`).
    if bare.len() != key.len() && bare.len() >= MIN_BARE_KEY {
        ranges.extend(text.match_indices(bare).map(|(at, v)| at..at + v.len()));
    }
    fragments(text.as_bytes(), key.as_bytes(), &mut ranges);
    if ranges.is_empty() {
        return Cow::Borrowed(text);
    }
    ranges.sort_by_key(|r| r.start);
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut current: Option<std::ops::Range<usize>> = None;
    for range in ranges {
        match &mut current {
            Some(c) if range.start <= c.end => c.end = c.end.max(range.end),
            _ => {
                if let Some(c) = current.take() {
                    copied = replace(text, &mut out, copied, c);
                }
                current = Some(range);
            }
        }
    }
    if let Some(c) = current {
        copied = replace(text, &mut out, copied, c);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// Appends `text[copied..range.start]` and the marker; returns where copying resumes.
/// The range is widened to character boundaries (a key may hold any byte).
fn replace(text: &str, out: &mut String, copied: usize, range: std::ops::Range<usize>) -> usize {
    let mut start = range.start.max(copied);
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = range.end.min(text.len());
    while !text.is_char_boundary(end) {
        end += 1;
    }
    out.push_str(&text[copied..start.max(copied)]);
    out.push_str(REDACTED);
    end
}

/// The key without a leading `sk-` / `sk-proj-` / `ghp_`-style prefix: lower-case ASCII
/// letters ending in `-` or `_`, up to three of them.
fn without_prefix(key: &str) -> &str {
    let mut rest = key;
    for _ in 0..3 {
        let letters = rest.bytes().take_while(u8::is_ascii_lowercase).count();
        match rest.as_bytes().get(letters) {
            Some(b'-' | b'_') if (1..=8).contains(&letters) => rest = &rest[letters + 1..],
            _ => break,
        }
    }
    rest
}

/// Adds the ranges of `text` covered by windows of [`MIN_FRAGMENT`] bytes that occur in
/// `key`: a run of such windows is one fragment (or more) of the key.
fn fragments(text: &[u8], key: &[u8], ranges: &mut Vec<std::ops::Range<usize>>) {
    if key.len() < MIN_FRAGMENT || text.len() < MIN_FRAGMENT {
        return;
    }
    let windows: HashSet<&[u8]> = key.windows(MIN_FRAGMENT).collect();
    let mut in_key = [false; 256];
    for &b in key {
        in_key[usize::from(b)] = true;
    }
    // Bytes in a row that all occur in the key, ending at `i`.
    let mut run = 0usize;
    for (i, &b) in text.iter().enumerate() {
        run = if in_key[usize::from(b)] { run + 1 } else { 0 };
        if run >= MIN_FRAGMENT {
            let start = i + 1 - MIN_FRAGMENT;
            if windows.contains(&text[start..=i]) {
                match ranges.last_mut() {
                    Some(last) if last.end >= start && last.start <= start => last.end = i + 1,
                    _ => ranges.push(start..i + 1),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "sk-TOPSECRET-abcdefghijklmnop";

    #[test]
    fn the_key_and_its_variants_are_redacted() {
        assert_eq!(
            redact_key(&format!("bad key {KEY}!"), KEY),
            "bad key [redacted]!"
        );
        assert_eq!(
            redact_key("rate limited for key TOPSECRET-abcdefghijklmnop", KEY),
            "rate limited for key [redacted]"
        );
        assert_eq!(
            redact_key("partial=sk-TOPSECRET and more", KEY),
            "partial=[redacted] and more"
        );
        assert_eq!(
            redact_key("tail ghijklmnop-xyz / middle TOPSECRET-abcdef.", KEY),
            "tail ghijklmnop-xyz / middle [redacted]."
        );
        // Two fragments side by side are both covered.
        assert_eq!(
            redact_key("x=abcdefghijklmnsk-TOPSECRET-a", KEY),
            "x=[redacted]"
        );
    }

    #[test]
    fn text_without_the_key_is_left_alone() {
        for text in ["", "fine", "TOPSECRET is a word", "abcdefghijk"] {
            assert!(matches!(redact_key(text, KEY), Cow::Borrowed(t) if t == text));
        }
        assert_eq!(redact_key("abc", "ab"), "abc", "too short to look for");
        assert_eq!(
            redact_key("é sk-ab12 é", "sk-ab12"),
            "é [redacted] é",
            "a short key is still redacted whole"
        );
        assert_eq!(without_prefix("sk-proj-abc"), "abc");
        assert_eq!(without_prefix("plainkey"), "plainkey");
    }
}
