//! Case records and event lines as stored: a commit's worth of JSON lines, compressed
//! together with zstd. One record (~1 KB of JSON) compresses poorly on its own; a
//! commit's records share their keys, metric ids, stage names and most values, and
//! together shrink ~25× at zstd's fastest level, which costs less CPU than writing the
//! uncompressed pages (and their WAL frames) did.

use crate::store::{StoreError, StoreResult};

/// zstd's fastest level: on a commit's records it compresses better than level 3, at
/// several times the speed.
const LEVEL: i32 = 1;

/// How a `record_batches` payload is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Codec {
    /// JSON lines as they are (records migrated from one row per case).
    Plain,
    /// JSON lines compressed with zstd.
    Zstd,
}

impl Codec {
    pub(super) fn code(self) -> i64 {
        match self {
            Codec::Plain => 0,
            Codec::Zstd => 1,
        }
    }

    pub(super) fn from_code(code: i64) -> StoreResult<Codec> {
        match code {
            0 => Ok(Codec::Plain),
            1 => Ok(Codec::Zstd),
            other => Err(StoreError::Corrupt(format!("unknown codec {other}"))),
        }
    }
}

/// Compresses JSON lines (one string, lines separated by `\n`).
pub(super) fn compress(lines: &str) -> StoreResult<Vec<u8>> {
    zstd::bulk::compress(lines.as_bytes(), LEVEL)
        .map_err(|e| StoreError::Corrupt(format!("compressing: {e}")))
}

/// The JSON lines compressed by [`compress`].
pub(super) fn decompress(packed: &[u8]) -> StoreResult<String> {
    let bytes = zstd::stream::decode_all(packed)
        .map_err(|e| StoreError::Corrupt(format!("decompressing: {e}")))?;
    String::from_utf8(bytes).map_err(|e| StoreError::Corrupt(format!("stored text: {e}")))
}

/// Joins `records` (compact JSON, never a newline) one a line and compresses them: line
/// `i` is the record of slot `i`.
pub(super) fn pack_lines<'a>(records: impl Iterator<Item = &'a str>) -> StoreResult<Vec<u8>> {
    let mut joined = String::new();
    for (slot, record) in records.enumerate() {
        if slot > 0 {
            joined.push('\n');
        }
        joined.push_str(record);
    }
    compress(&joined)
}

/// The text of a `record_batches` payload.
pub(super) fn unpack(codec: Codec, payload: Vec<u8>) -> StoreResult<String> {
    match codec {
        Codec::Plain => {
            String::from_utf8(payload).map_err(|e| StoreError::Corrupt(format!("stored text: {e}")))
        }
        Codec::Zstd => decompress(&payload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_shrink() {
        let records: Vec<String> = (0..64)
            .map(|i| format!(r#"{{"case_index":{i},"status":"completed","scores":[1.0]}}"#))
            .collect();
        let packed = pack_lines(records.iter().map(String::as_str)).unwrap();
        let text = unpack(Codec::Zstd, packed.clone()).unwrap();
        assert_eq!(text.split('\n').collect::<Vec<_>>(), records);
        let plain: usize = records.iter().map(String::len).sum();
        assert!(packed.len() * 4 < plain, "{} of {plain}", packed.len());
        assert_eq!(Codec::from_code(Codec::Zstd.code()).unwrap(), Codec::Zstd);
        assert!(Codec::from_code(7).is_err());
    }
}
