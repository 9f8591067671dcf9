//! Where an upload's canonical cases wait while the rest of it is checked: a temporary
//! file (gone when dropped), so a revision of any size is written to the store in one
//! short transaction after the whole upload proved valid, and a slow client never holds
//! the store's write lock.
//!
//! Writes go through a large buffer into the page cache: blocking the runtime thread for
//! them costs less than handing each one to the blocking pool.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};

use async_trait::async_trait;

use crate::model::StoredCase;
use crate::store::{CaseBatches, StoreError, StoreResult};

const BUFFER_BYTES: usize = 256 * 1024;

/// Cases handed to the store per batch.
const BATCH: usize = 256;

/// Records are `len(case_id) u32 LE, case_id, len(json) u32 LE, json`: ids and JSON can
/// hold any byte, so no separator would do.
pub(super) struct Spool {
    file: BufWriter<File>,
}

impl Spool {
    pub(super) fn new() -> io::Result<Self> {
        Ok(Spool {
            file: BufWriter::with_capacity(BUFFER_BYTES, tempfile::tempfile()?),
        })
    }

    pub(super) fn write(&mut self, case_id: &str, json: &str) -> io::Result<()> {
        for part in [case_id, json] {
            let len = u32::try_from(part.len())
                .map_err(|_| io::Error::other("a case larger than 4 GiB"))?;
            self.file.write_all(&len.to_le_bytes())?;
            self.file.write_all(part.as_bytes())?;
        }
        Ok(())
    }

    /// Reads the cases back from the first, numbering them from 0.
    pub(super) fn into_reader(self) -> io::Result<SpoolReader> {
        let mut file = self.file.into_inner().map_err(|e| e.into_error())?;
        file.rewind()?;
        Ok(SpoolReader {
            file: BufReader::with_capacity(BUFFER_BYTES, file),
            next_index: 0,
        })
    }
}

pub struct SpoolReader {
    file: BufReader<File>,
    next_index: u64,
}

impl SpoolReader {
    fn read_part(&mut self) -> io::Result<Option<String>> {
        let mut len = [0u8; 4];
        match self.file.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let mut bytes = vec![0; u32::from_le_bytes(len) as usize];
        self.file.read_exact(&mut bytes)?;
        String::from_utf8(bytes)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// Up to `max` next cases; empty at the end.
    pub fn read_batch(&mut self, max: usize) -> io::Result<Vec<StoredCase>> {
        let mut batch = Vec::with_capacity(max.min(BATCH));
        while batch.len() < max {
            let Some(case_id) = self.read_part()? else {
                break;
            };
            let json = self
                .read_part()?
                .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "truncated spool"))?;
            batch.push(StoredCase {
                case_index: self.next_index,
                case_id,
                json,
            });
            self.next_index += 1;
        }
        Ok(batch)
    }
}

#[async_trait]
impl CaseBatches for SpoolReader {
    async fn next_batch(&mut self) -> StoreResult<Vec<StoredCase>> {
        self.read_batch(BATCH)
            .map_err(|e| StoreError::Input(format!("reading spooled cases: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_come_back_in_order_and_numbered() {
        let mut spool = Spool::new().unwrap();
        for i in 0..600 {
            spool
                .write(&format!("c\n{i}"), &format!("{{\"i\":{i}}}"))
                .unwrap();
        }
        let mut reader = spool.into_reader().unwrap();
        let first = reader.read_batch(BATCH).unwrap();
        assert_eq!(first.len(), BATCH);
        assert_eq!(first[1].case_id, "c\n1");
        assert_eq!(first[1].json, "{\"i\":1}");
        let mut total = first.len();
        loop {
            let batch = reader.read_batch(BATCH).unwrap();
            if batch.is_empty() {
                break;
            }
            assert_eq!(batch[0].case_index, total as u64);
            total += batch.len();
        }
        assert_eq!(total, 600);
    }
}
