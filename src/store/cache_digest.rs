//! The 64-bit digest a SQL store files a response-cache key under. Entries are stored in
//! the order they were written and found through an index of digests: an 8-byte entry
//! per response, where the 64-character key as the table's primary key put each commit's
//! new responses on as many random pages (each a 4 KiB frame in SQLite's write-ahead log).
//!
//! The full key is stored beside its digest and compared on every lookup, so two keys
//! with one digest cost the second a miss (its response is not cached), never a wrong
//! response.

use sha2::{Digest, Sha256};

/// The digest of `key`. A provider call's key is a SHA-256 in hex: its first 16 hex
/// digits, read as a big-endian signed integer (the migration that introduced digests
/// computes the same in SQL for the keys stored before). Any other key: the first 8
/// bytes of its own SHA-256.
pub(crate) fn digest(key: &str) -> i64 {
    let bytes: [u8; 8] = match key.get(..16) {
        Some(head) if head.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) => {
            // 16 lowercase hex digits always parse.
            u64::from_str_radix(head, 16)
                .unwrap_or_default()
                .to_be_bytes()
        }
        _ => {
            let hash = Sha256::digest(key.as_bytes());
            let mut first = [0; 8];
            first.copy_from_slice(&hash[..8]);
            first
        }
    };
    i64::from_be_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::digest;

    #[test]
    fn a_hex_key_is_its_first_sixteen_digits() {
        let key = "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb";
        // What the migration's SQL computes for this key (checked in SQLite and Postgres).
        assert_eq!(digest(key), -3_848_465_438_864_589_366);
        assert_eq!(
            digest("3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d"),
            4_477_677_635_727_087_946
        );
        assert_eq!(digest("0000000000000001"), 1);
    }

    #[test]
    fn other_keys_are_hashed() {
        assert_ne!(digest("k"), digest("l"));
        assert_eq!(digest("k"), digest("k"));
        // Upper-case hex is not what the client writes: hashed, like any other key.
        assert_ne!(digest("CA978112CA1BBDCA"), digest("ca978112ca1bbdca"));
    }
}
