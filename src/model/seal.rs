//! Sealing secrets a client hands the server for later use (a run's own tracing headers,
//! needed again when the run resumes), so the database never holds them in plaintext.
//!
//! XChaCha20-Poly1305 with a random 192-bit nonce per value. The key is the operator's
//! (`THEMIS_SECRET_KEY`, 32 bytes as 64 hex digits), so every instance sharing a
//! database can open what another sealed; without it each process seals under a key of
//! its own that dies with it, and a value sealed by another process cannot be opened
//! (the caller drops it and says so).

use std::fmt;

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// Marks a sealed value: `sealed:v1:` then hex of nonce ‖ ciphertext.
const PREFIX: &str = "sealed:v1:";
const NONCE_BYTES: usize = 24;

pub struct Sealer {
    cipher: XChaCha20Poly1305,
    /// Whether the key outlives this process (the operator's).
    persistent: bool,
}

impl fmt::Debug for Sealer {
    /// Never the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("persistent", &self.persistent)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// The operator's key: 64 hex digits (`openssl rand -hex 32`).
    pub fn from_hex_key(hex_key: &str) -> Result<Self, InvalidKey> {
        let bytes = hex::decode(hex_key.trim())
            .ok()
            .filter(|b| b.len() == 32)
            .ok_or(InvalidKey)?;
        Ok(Sealer {
            cipher: XChaCha20Poly1305::new_from_slice(&bytes).map_err(|_| InvalidKey)?,
            persistent: true,
        })
    }

    /// A key of this process only.
    pub fn ephemeral() -> Self {
        Sealer {
            cipher: XChaCha20Poly1305::new(&XChaCha20Poly1305::generate_key(&mut OsRng)),
            persistent: false,
        }
    }

    pub fn is_persistent(&self) -> bool {
        self.persistent
    }

    /// `value` sealed; never fails for a string (the cipher has no length limit we reach).
    pub fn seal(&self, value: &str) -> String {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let Ok(ciphertext) = self.cipher.encrypt(&nonce, value.as_bytes()) else {
            // Unreachable for the sizes stored here; never fall back to plaintext.
            return String::new();
        };
        let mut out = String::with_capacity(PREFIX.len() + 2 * (NONCE_BYTES + ciphertext.len()));
        out.push_str(PREFIX);
        out.push_str(&hex::encode(nonce));
        out.push_str(&hex::encode(ciphertext));
        out
    }

    /// The plaintext of a sealed value; `Ok` as is for a value stored before sealing
    /// existed (plaintext); `Err` when it was sealed under another key or is damaged.
    pub fn open(&self, stored: &str) -> Result<String, OpenError> {
        let Some(sealed) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_owned());
        };
        let bytes = hex::decode(sealed).map_err(|_| OpenError)?;
        if bytes.len() < NONCE_BYTES {
            return Err(OpenError);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| OpenError)?;
        let plaintext = self
            .cipher
            .decrypt(&XNonce::from(nonce), ciphertext)
            .map_err(|_| OpenError)?;
        String::from_utf8(plaintext).map_err(|_| OpenError)
    }
}

/// An operator key that is not 32 bytes in hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the secret key must be 32 bytes written as 64 hex digits")]
pub struct InvalidKey;

/// A sealed value this key cannot open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("sealed under another key (set the same THEMIS_SECRET_KEY on every instance)")]
pub struct OpenError;

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn sealed_values_hide_the_plaintext_and_open_only_under_the_same_key() {
        let sealer = Sealer::from_hex_key(KEY).unwrap();
        let sealed = sealer.seal("Bearer s3cret");
        assert!(
            sealed.starts_with(PREFIX) && !sealed.contains("s3cret"),
            "{sealed}"
        );
        assert_ne!(
            sealed,
            sealer.seal("Bearer s3cret"),
            "a fresh nonce each time"
        );
        assert_eq!(sealer.open(&sealed).unwrap(), "Bearer s3cret");
        let same_key = Sealer::from_hex_key(KEY).unwrap();
        assert_eq!(same_key.open(&sealed).unwrap(), "Bearer s3cret");
        assert_eq!(Sealer::ephemeral().open(&sealed), Err(OpenError));
        // The last hex digit changed (to another digit: '0' would leave a final '0' as is).
        let mut damaged = sealed.clone();
        let last = damaged.pop();
        damaged.push(if last == Some('0') { '1' } else { '0' });
        assert_eq!(sealer.open(&damaged), Err(OpenError));
        assert_eq!(sealer.open("sealed:v1:zz"), Err(OpenError));
        assert_eq!(
            sealer.open("plain from an older release").unwrap(),
            "plain from an older release"
        );
    }

    #[test]
    fn keys_are_64_hex_digits_and_never_printed() {
        assert!(Sealer::from_hex_key("abc").is_err());
        assert!(Sealer::from_hex_key(&"g".repeat(64)).is_err());
        let sealer = Sealer::from_hex_key(KEY).unwrap();
        assert!(sealer.is_persistent() && !Sealer::ephemeral().is_persistent());
        assert!(!format!("{sealer:?}").contains("0a0b"));
    }
}
