//! Bearer API keys, checked in time independent of which key (if any) matches.
//!
//! Keys are kept as SHA-256 digests: comparing fixed-size digests leaks neither where a
//! presented key differs from a known one nor how long the known keys are, and every
//! known key is compared on every request (no early return on the first match).

use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

/// The keys a server accepts; empty means no authentication.
#[derive(Default)]
pub(crate) struct ApiKeys {
    digests: Vec<[u8; 32]>,
}

impl ApiKeys {
    pub(crate) fn new(keys: &[String]) -> Self {
        ApiKeys {
            digests: keys.iter().map(|k| digest(k.as_bytes())).collect(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Whether an `Authorization` header value carries one of the keys. The scheme
    /// `Bearer` is matched case-insensitively (RFC 9110 §11.1).
    pub(crate) fn authorizes(&self, header: Option<&str>) -> bool {
        let presented = header
            .and_then(|value| value.trim_start().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, key)| key.trim());
        let well_formed = presented.is_some_and(|key| !key.is_empty());
        // Hash and compare even when the header is missing or malformed, so the answer
        // takes as long.
        let presented = digest(presented.unwrap_or("").as_bytes());
        let mut found = Choice::from(0);
        for known in &self.digests {
            found |= known.ct_eq(&presented);
        }
        well_formed & bool::from(found)
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
}
