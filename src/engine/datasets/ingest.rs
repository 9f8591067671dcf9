//! Taking in the cases of one dataset revision, one at a time: each is checked, its id
//! noted for the repeat check (bounded memory, see [`Repeats`]), its canonical JSON
//! hashed into the revision and spooled, so nothing in memory grows with the dataset.

use std::io;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::case::{canonical_case, check_case};
use super::repeats::Repeats;
use super::spool::{Spool, SpoolReader};
use crate::model::Problems;
use crate::model::check::MAX_DETAILS;
use crate::model::{Case, Revision};

/// What the revision hash starts with: a new canonical form of cases gets a new one.
const REVISION_DOMAIN: &[u8] = b"themis/dataset/v1\n";

/// The hash of a revision, fed one canonical case at a time.
struct RevisionHasher(Sha256);

impl RevisionHasher {
    fn new() -> Self {
        let mut hasher = Sha256::new();
        hasher.update(REVISION_DOMAIN);
        RevisionHasher(hasher)
    }

    fn add(&mut self, canonical_case: &str) {
        self.0.update(canonical_case.as_bytes());
        self.0.update(b"\n");
    }

    fn finish(self) -> Revision {
        Revision::from_digest(&self.0.finalize())
    }
}

/// The revision of cases already checked (held in memory).
pub(crate) fn revision_of(cases: &[Case]) -> Revision {
    let mut hasher = RevisionHasher::new();
    for case in cases {
        hasher.add(&canonical_case(case));
    }
    hasher.finish()
}

/// A revision being taken in.
pub(super) struct Ingest {
    /// 128 bits of SHA-256 of each case id with the case's label: two ids collide with
    /// probability about n²/2^129 (1e-26 for a million cases).
    repeats: Repeats,
    /// Where the case with a label is, for problems (`line 12`, `cases[3]`).
    name: Box<dyn Fn(u64) -> String + Send>,
    hasher: RevisionHasher,
    spool: Spool,
    case_count: u64,
    /// Cases that failed their checks: the dataset is not empty, only invalid.
    rejected: u64,
    bytes: u64,
}

/// A revision whose every case was valid, ready for the store.
pub struct Ingested {
    pub revision: Revision,
    pub case_count: u64,
    /// Size of the canonical cases, one per line.
    pub bytes: u64,
    pub cases: SpoolReader,
}

impl std::fmt::Debug for Ingested {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingested")
            .field("revision", &self.revision)
            .field("case_count", &self.case_count)
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

fn fingerprint(case_id: &str) -> u128 {
    let digest = Sha256::digest(case_id.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    u128::from_le_bytes(bytes)
}

impl Ingest {
    /// `name` tells where the case with a label (its line, its index) is.
    pub(super) fn new(name: impl Fn(u64) -> String + Send + 'static) -> io::Result<Self> {
        Ok(Ingest {
            repeats: Repeats::default(),
            name: Box::new(name),
            hasher: RevisionHasher::new(),
            spool: Spool::new()?,
            case_count: 0,
            rejected: 0,
            bytes: 0,
        })
    }

    /// Takes one case, at `label` (its line or index, increasing); its problems go to
    /// `problems`, named by `at(field)`. Once any problem is known the revision cannot be
    /// stored, so cases are only checked.
    pub(super) fn push(
        &mut self,
        value: Value,
        label: u64,
        problems: &mut Problems,
        at: &dyn Fn(&str) -> String,
    ) -> io::Result<()> {
        match check_case(value, problems, at) {
            Some(case) => self.push_case(&case, label, problems),
            None => {
                self.rejected += 1;
                Ok(())
            }
        }
    }

    /// Takes one case already checked (its id may still repeat an earlier one: that is
    /// found at the end).
    pub(super) fn push_case(
        &mut self,
        case: &Case,
        label: u64,
        problems: &mut Problems,
    ) -> io::Result<()> {
        self.repeats.add(fingerprint(&case.case_id), label)?;
        self.case_count += 1;
        if !problems.is_empty() {
            return Ok(());
        }
        let json = canonical_case(case);
        self.hasher.add(&json);
        self.bytes += json.len() as u64 + 1;
        self.spool.write(&case.case_id, &json)
    }

    /// The revision, unless a problem was found (or the dataset is empty: reported
    /// at `empty_at`).
    pub(super) fn finish(
        self,
        problems: &mut Problems,
        empty_at: &str,
    ) -> io::Result<Option<Ingested>> {
        if self.case_count + self.rejected == 0 {
            problems.push(empty_at, "must contain at least one case");
        }
        let found = self.repeats.find(MAX_DETAILS)?;
        let listed = found.first.len() as u64;
        for (label, first) in found.first {
            problems.push(
                format!("{}.case_id", (self.name)(label)),
                format!(
                    "duplicate case_id in dataset (the same as {})",
                    (self.name)(first)
                ),
            );
        }
        problems.omit(found.total.saturating_sub(listed));
        if !problems.is_empty() {
            return Ok(None);
        }
        Ok(Some(Ingested {
            revision: self.hasher.finish(),
            case_count: self.case_count,
            bytes: self.bytes,
            cases: self.spool.into_reader()?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ingest(cases: &[Value]) -> (Option<Ingested>, Vec<String>) {
        let mut problems = Problems::default();
        let mut ingest = Ingest::new(|i| format!("cases[{i}]")).unwrap();
        for (i, case) in cases.iter().enumerate() {
            let at = |key: &str| format!("cases[{i}].{key}");
            ingest
                .push(case.clone(), i as u64, &mut problems, &at)
                .unwrap();
        }
        let done = ingest.finish(&mut problems, "cases").unwrap();
        let details = problems
            .into_details()
            .into_iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect();
        (done, details)
    }

    #[test]
    fn the_revision_depends_on_the_canonical_cases_only() {
        let a = ingest(&[
            json!({"case_id": "1", "input": {"x": 1, "y": 2.0}}),
            json!({"case_id": "2", "input": "q", "expected_output": null}),
        ])
        .0
        .unwrap();
        let b = ingest(&[
            json!({"input": {"y": 2, "x": 1.0}, "case_id": "1", "expected_output": null}),
            json!({"input": "q", "case_id": "2"}),
        ])
        .0
        .unwrap();
        assert_eq!(a.revision, b.revision);
        assert_eq!((a.case_count, a.bytes), (b.case_count, b.bytes));
        let reordered = ingest(&[
            json!({"case_id": "2", "input": "q"}),
            json!({"case_id": "1", "input": {"x": 1, "y": 2}}),
        ])
        .0
        .unwrap();
        assert_ne!(
            a.revision, reordered.revision,
            "order is part of the content"
        );
    }

    #[test]
    fn duplicates_and_empty_datasets_are_problems() {
        let (done, problems) = ingest(&[
            json!({"case_id": "1", "input": 1}),
            json!({"case_id": "1", "input": 2}),
        ]);
        assert!(done.is_none());
        assert_eq!(
            problems,
            ["cases[1].case_id: duplicate case_id in dataset (the same as cases[0])"]
        );
        let (done, problems) = ingest(&[]);
        assert!(done.is_none());
        assert_eq!(problems, ["cases: must contain at least one case"]);
    }
}
