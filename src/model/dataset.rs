//! Datasets as resources: content-addressed revisions of cases, stored once and
//! referenced by runs.

use serde::{Deserialize, Serialize};

use super::Timestamp;

/// A dataset revision's identity: `sha256:` and 64 lowercase hex digits of SHA-256 over
/// its canonical cases (see `engine::datasets`), so the same cases always get the same
/// revision, whoever uploads them and under whichever `dataset_id`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Revision(String);

#[derive(Debug, thiserror::Error)]
#[error("revisions look like `sha256:` followed by 64 lowercase hex digits")]
pub struct InvalidRevision;

impl Revision {
    pub const PREFIX: &'static str = "sha256:";
    /// SHA-256 in hex.
    const HEX_LEN: usize = 64;

    /// The revision of a finished SHA-256 digest.
    pub fn from_digest(digest: &[u8]) -> Self {
        Revision(format!("{}{}", Self::PREFIX, hex::encode(digest)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

super::ids::prefixed_hex_id!(Revision, InvalidRevision);

/// One stored revision of a dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetRevision {
    pub dataset_id: String,
    pub revision: Revision,
    pub case_count: u64,
    /// Size of the cases in their canonical JSON form, one per line.
    pub bytes: u64,
    pub created_at: Timestamp,
}

/// A dataset in listings: its newest revision and how many it has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetSummary {
    pub dataset_id: String,
    pub latest: DatasetRevision,
    pub revisions: u64,
}

/// A case as stored in a revision: its position, its id, and its canonical JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCase {
    pub case_index: u64,
    pub case_id: String,
    /// The case's canonical JSON (`{"case_id", "input", "expected_output", "metadata"?}`).
    pub json: String,
}

/// Which dataset revision a run uses, in the order the run enumerates them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetUse {
    pub dataset_id: String,
    pub revision: Revision,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_round_trips_and_rejects_garbage() {
        let revision = Revision::from_digest(&[0xab; 32]);
        assert_eq!(revision.as_str().len(), 7 + 64);
        assert_eq!(revision.as_str().parse::<Revision>().unwrap(), revision);
        let upper = format!("sha256:{}", "AB".repeat(32));
        for bad in ["", "sha256:", "abc", "sha256:00", upper.as_str()] {
            assert!(bad.parse::<Revision>().is_err(), "{bad}");
        }
    }
}
