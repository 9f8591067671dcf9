use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A run's identity: `run_` followed by 32 lowercase hex digits (128 bits of a SHA-256
/// over the canonical run definition; the engine derives it, see `engine::run_id`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunId(String);

#[derive(Debug, thiserror::Error)]
#[error("run ids look like `run_` followed by 32 lowercase hex digits")]
pub struct InvalidRunId;

impl RunId {
    pub const PREFIX: &'static str = "run_";
    pub const HEX_LEN: usize = 32;

    /// Builds a run id from the first 16 bytes of a digest.
    pub fn from_digest(digest: &[u8]) -> Self {
        let bytes = &digest[..Self::HEX_LEN / 2];
        RunId(format!("{}{}", Self::PREFIX, hex::encode(bytes)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The text form of an id made of `Self::PREFIX` and `Self::HEX_LEN` lowercase hex
/// digits: `FromStr` checks it, `Display` and `Serialize` write it, `Deserialize` reads it
/// through the same check. `$invalid` is the unit error a malformed string gets.
macro_rules! prefixed_hex_id {
    ($id:ident, $invalid:ident) => {
        impl std::str::FromStr for $id {
            type Err = $invalid;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let hex = s.strip_prefix(Self::PREFIX).ok_or($invalid)?;
                let valid = hex.len() == Self::HEX_LEN
                    && hex
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
                if valid {
                    Ok($id(s.to_owned()))
                } else {
                    Err($invalid)
                }
            }
        }

        impl std::fmt::Display for $id {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl serde::Serialize for $id {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $id {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = <String as serde::Deserialize>::deserialize(deserializer)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(super) use prefixed_hex_id;

prefixed_hex_id!(RunId, InvalidRunId);

/// A UTC instant with millisecond precision, serialised as RFC 3339 (`2026-01-02T03:04:05.678Z`).
///
/// Millisecond precision is what every store keeps, so a value read back equals the one written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    pub fn now() -> Self {
        Self::from_millis(Utc::now().timestamp_millis())
    }

    pub fn from_millis(millis: i64) -> Self {
        Timestamp(DateTime::from_timestamp_millis(millis).unwrap_or_default())
    }

    pub fn as_millis(&self) -> i64 {
        self.0.timestamp_millis()
    }

    pub fn millis_since(&self, earlier: Timestamp) -> u64 {
        u64::try_from(self.as_millis() - earlier.as_millis()).unwrap_or(0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Millis, true))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        let parsed = DateTime::parse_from_rfc3339(&s).map_err(serde::de::Error::custom)?;
        Ok(Timestamp::from_millis(parsed.timestamp_millis()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_id_round_trips_and_rejects_garbage() {
        let id = RunId::from_digest(&[0xab; 32]);
        assert_eq!(id.as_str().len(), 4 + 32);
        assert_eq!(id.as_str().parse::<RunId>().unwrap(), id);
        for bad in [
            "",
            "run_",
            "abc",
            "run_ABABABABABABABABABABABABABABABAB",
            "run_00",
        ] {
            assert!(bad.parse::<RunId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn timestamp_round_trips_through_json() {
        let t = Timestamp::from_millis(1_767_323_045_678);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"2026-01-02T03:04:05.678Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
    }
}
