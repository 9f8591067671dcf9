//! Bearer API keys, checked in time independent of which key (if any) matches, and the
//! name each key gives its caller (who a review is by).
//!
//! Keys are kept as SHA-256 digests: comparing fixed-size digests leaks neither where a
//! presented key differs from a known one nor how long the known keys are, and every
//! known key is compared on every request (no early return on the first match).
//!
//! A key may be given as `NAME:KEY` (NAME: 1 to 64 letters, digits, `.`, `_`, `-`, `@`):
//! its callers are NAME. A key without a name is `key-N`, its 1-based position in the
//! list, which says nothing about the key. `:` and not `=` separates them because
//! base64 keys end in `=`.

use sha2::{Digest, Sha256};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

/// Who is calling: a key's name, or with authentication off the `x-themis-reviewer`
/// header's (unchecked: without keys anybody may claim any name).
#[derive(Debug, Clone, Default)]
pub(crate) struct Caller {
    pub name: Option<String>,
}

/// The header naming the caller when the server has no keys.
pub(crate) const REVIEWER_HEADER: &str = "x-themis-reviewer";

/// Whether `name` may name a caller: 1 to 64 of letters, digits, `.`, `_`, `-`, `@`.
pub(crate) fn is_caller_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
}

/// The keys a server accepts; empty means no authentication.
#[derive(Default)]
pub(crate) struct ApiKeys {
    digests: Vec<[u8; 32]>,
    names: Vec<String>,
}

impl ApiKeys {
    pub(crate) fn new(keys: &[String]) -> Self {
        let mut digests = Vec::with_capacity(keys.len());
        let mut names = Vec::with_capacity(keys.len());
        for (i, entry) in keys.iter().enumerate() {
            let (name, key) = match entry.split_once(':') {
                Some((name, key)) if is_caller_name(name) && !key.is_empty() => {
                    (name.to_owned(), key)
                }
                _ => (format!("key-{}", i + 1), entry.as_str()),
            };
            digests.push(digest(key.as_bytes()));
            names.push(name);
        }
        ApiKeys { digests, names }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Whether an `Authorization` header value carries one of the keys. The scheme
    /// `Bearer` is matched case-insensitively (RFC 9110 §11.1).
    #[cfg(test)]
    pub(crate) fn authorizes(&self, header: Option<&str>) -> bool {
        self.identify(header).is_some()
    }

    /// The name of the key an `Authorization` header value carries, if it carries one.
    pub(crate) fn identify(&self, header: Option<&str>) -> Option<&str> {
        let presented = header
            .and_then(|value| value.trim_start().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, key)| key.trim());
        let well_formed = presented.is_some_and(|key| !key.is_empty());
        // Hash and compare even when the header is missing or malformed, so the answer
        // takes as long.
        let presented = digest(presented.unwrap_or("").as_bytes());
        let mut found = Choice::from(0);
        let mut which = 0u32;
        for (i, known) in self.digests.iter().enumerate() {
            let matches = known.ct_eq(&presented);
            found |= matches;
            which.conditional_assign(&(i as u32), matches);
        }
        (well_formed && bool::from(found))
            .then(|| self.names.get(which as usize).map(String::as_str))
            .flatten()
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_any_key_with_any_case_of_bearer() {
        let keys = ApiKeys::new(&["short".to_owned(), "a-much-longer-key-123".to_owned()]);
        assert!(keys.authorizes(Some("Bearer short")));
        assert!(keys.authorizes(Some("bearer a-much-longer-key-123")));
        assert!(keys.authorizes(Some("BEARER  short ")));
        assert!(!keys.authorizes(Some("Bearer shorter")));
        assert!(!keys.authorizes(Some("Bearer shor")));
        assert!(!keys.authorizes(Some("Basic short")));
        assert!(!keys.authorizes(Some("short")));
        assert!(!keys.authorizes(Some("Bearer ")));
        assert!(!keys.authorizes(None));
        assert!(ApiKeys::new(&[]).is_empty());
    }

    #[test]
    fn keys_name_their_callers() {
        let keys = ApiKeys::new(&[
            "ana:k1-secret".to_owned(),
            "plain-key==".to_owned(),
            "not a name:k3".to_owned(),
        ]);
        assert_eq!(keys.identify(Some("Bearer k1-secret")), Some("ana"));
        assert_eq!(keys.identify(Some("Bearer ana:k1-secret")), None);
        assert_eq!(keys.identify(Some("Bearer plain-key==")), Some("key-2"));
        assert_eq!(keys.identify(Some("Bearer not a name:k3")), Some("key-3"));
        assert_eq!(keys.identify(Some("Bearer nope")), None);
        assert!(is_caller_name("bo.smith@lab"));
        assert!(!is_caller_name(""));
        assert!(!is_caller_name("a b"));
    }
}
