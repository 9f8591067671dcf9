//! The JSON rule for large integers.
//!
//! JavaScript (and much JSON tooling) reads numbers as IEEE doubles, exact only up to
//! 2^53. The rule: an integer whose value can exceed 2^53 − 1 — the seeds, which span
//! the whole `u64` range (`seed`, `candidate_seed`) — is written as a decimal string;
//! every other integer (counts, sequence numbers, indices, durations, tokens) is a
//! number and stays below 2^53 by construction. When reading, both forms are accepted.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};

/// `#[serde(with = "u64_string")]`: a `u64` written as a decimal string, read from a
/// string or a number.
pub(crate) mod u64_string {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(value: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        deserializer.deserialize_any(U64Visitor)
    }
}

/// Reads a `u64` from a JSON number or a decimal string (what [`u64_string`] accepts).
pub(crate) fn u64_from_json(value: &serde_json::Value) -> Option<u64> {
    match value {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => parse_decimal(s),
        _ => None,
    }
}

/// Plain decimal digits only: no sign, no spaces, no `0x`.
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

struct U64Visitor;

impl<'de> Visitor<'de> for U64Visitor {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an integer from 0 to 2^64-1, as a number or a decimal string")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        parse_decimal(v).ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};
    use serde_json::json;

    const BIG: u64 = 14_654_362_444_250_397_125;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Seeded {
        #[serde(with = "super::u64_string")]
        seed: u64,
    }

    #[test]
    fn writes_strings_and_reads_both_forms() {
        let big = Seeded { seed: BIG };
        assert_eq!(
            serde_json::to_value(&big).unwrap(),
            json!({"seed": "14654362444250397125"})
        );
        let from_number: Seeded =
            serde_json::from_str(r#"{"seed": 14654362444250397125}"#).unwrap();
        let from_string: Seeded =
            serde_json::from_str(r#"{"seed": "14654362444250397125"}"#).unwrap();
        assert_eq!(from_number, big);
        assert_eq!(from_string, big);
        for bad in [
            json!("-1"),
            json!(" 1"),
            json!("0x10"),
            json!(-1),
            json!(1.5),
        ] {
            assert!(serde_json::from_value::<Seeded>(json!({"seed": bad})).is_err());
        }
    }
}
