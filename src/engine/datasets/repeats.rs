//! Repeated case ids, found in memory bounded whatever the number of cases: each case
//! adds `(fingerprint of its id, label)`; a buffer of them is sorted and, when full,
//! written to a temporary file as a sorted run; at the end the runs are merged and equal
//! fingerprints next to each other are the repeats. Memory is the buffer plus a small
//! read buffer per run (runs are merged into one when there are many), not a set of
//! every id (an upload of 10 M tiny rows held 410 MB that way).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};

/// Entries sorted in memory before they go to a run on disk (32 B each: 2 MiB).
#[cfg(not(test))]
const BUFFER_ENTRIES: usize = 1 << 16;
#[cfg(test)]
const BUFFER_ENTRIES: usize = 1 << 10;

/// Runs kept before they are merged into one.
#[cfg(not(test))]
const MAX_RUNS: usize = 32;
#[cfg(test)]
const MAX_RUNS: usize = 4;

/// Bytes read ahead per run while merging.
const READ_BUFFER: usize = 16 * 1024;

/// One entry: an id's fingerprint and where the case was (its line or index).
type Entry = (u128, u64);

const ENTRY_BYTES: usize = 24;

#[derive(Default)]
pub(super) struct Repeats {
    buffer: Vec<Entry>,
    runs: Vec<File>,
}

/// What [`Repeats::find`] found: the first repeats by label, each with the label of the
/// case it repeats, and how many there are in all.
pub(super) struct Found {
    pub first: Vec<(u64, u64)>,
    pub total: u64,
}

impl Repeats {
    pub(super) fn add(&mut self, fingerprint: u128, label: u64) -> io::Result<()> {
        if self.buffer.capacity() == 0 {
            self.buffer.reserve_exact(1024);
        }
        self.buffer.push((fingerprint, label));
        if self.buffer.len() >= BUFFER_ENTRIES {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> io::Result<()> {
        self.buffer.sort_unstable();
        let mut out = BufWriter::with_capacity(READ_BUFFER, tempfile::tempfile()?);
        for entry in self.buffer.drain(..) {
            write_entry(&mut out, entry)?;
        }
        self.runs.push(finish(out)?);
        if self.runs.len() >= MAX_RUNS {
            let mut out = BufWriter::with_capacity(READ_BUFFER, tempfile::tempfile()?);
            merge(std::mem::take(&mut self.runs), |entry| {
                write_entry(&mut out, entry)
            })?;
            self.runs.push(finish(out)?);
        }
        Ok(())
    }

    /// The repeats: at most `max` listed (lowest labels first), all counted.
    pub(super) fn find(mut self, max: usize) -> io::Result<Found> {
        let mut kept: BinaryHeap<(u64, u64)> = BinaryHeap::new();
        let mut total = 0u64;
        let mut previous: Option<Entry> = None;
        let mut see = |(fingerprint, label): Entry| {
            match previous {
                Some((seen, first)) if seen == fingerprint => {
                    total += 1;
                    kept.push((label, first));
                    if kept.len() > max {
                        kept.pop();
                    }
                }
                _ => previous = Some((fingerprint, label)),
            }
            Ok(())
        };
        if self.runs.is_empty() {
            self.buffer.sort_unstable();
            for entry in self.buffer.drain(..) {
                see(entry)?;
            }
        } else {
            if !self.buffer.is_empty() {
                self.spill()?;
            }
            merge(self.runs, see)?;
        }
        let mut first = kept.into_vec();
        first.sort_unstable();
        Ok(Found { first, total })
    }
}

fn write_entry(out: &mut impl Write, (fingerprint, label): Entry) -> io::Result<()> {
    out.write_all(&fingerprint.to_le_bytes())?;
    out.write_all(&label.to_le_bytes())
}

fn read_entry(input: &mut impl Read) -> io::Result<Option<Entry>> {
    let mut bytes = [0u8; ENTRY_BYTES];
    match input.read_exact(&mut bytes) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut fingerprint = [0u8; 16];
    fingerprint.copy_from_slice(&bytes[..16]);
    let mut label = [0u8; 8];
    label.copy_from_slice(&bytes[16..]);
    Ok(Some((
        u128::from_le_bytes(fingerprint),
        u64::from_le_bytes(label),
    )))
}

fn finish(out: BufWriter<File>) -> io::Result<File> {
    let mut file = out.into_inner().map_err(|e| e.into_error())?;
    file.rewind()?;
    Ok(file)
}

/// Feeds the entries of sorted runs to `sink` in order.
fn merge(runs: Vec<File>, mut sink: impl FnMut(Entry) -> io::Result<()>) -> io::Result<()> {
    let mut readers: Vec<BufReader<File>> = runs
        .into_iter()
        .map(|f| BufReader::with_capacity(READ_BUFFER, f))
        .collect();
    let mut heads = BinaryHeap::new();
    for (i, reader) in readers.iter_mut().enumerate() {
        if let Some(entry) = read_entry(reader)? {
            heads.push(Reverse((entry, i)));
        }
    }
    while let Some(Reverse((entry, i))) = heads.pop() {
        sink(entry)?;
        if let Some(next) = read_entry(&mut readers[i])? {
            heads.push(Reverse((next, i)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_found_across_runs_on_disk_lowest_labels_first() {
        let mut repeats = Repeats::default();
        // Enough entries for many runs and one merge of them into one.
        let n = (BUFFER_ENTRIES * (MAX_RUNS + 1)) as u64 + 7;
        for label in 0..n {
            let fingerprint = u128::from(label % (n - 5)) * 0x9E37_79B9_7F4A_7C15;
            repeats.add(fingerprint, label).unwrap();
        }
        assert!(repeats.runs.len() < MAX_RUNS);
        let found = repeats.find(3).unwrap();
        assert_eq!(found.total, 5);
        assert_eq!(
            found.first,
            [(n - 5, 0), (n - 4, 1), (n - 3, 2)],
            "each repeat names the first case with its id"
        );
    }

    #[test]
    fn without_repeats_nothing_is_found() {
        let mut repeats = Repeats::default();
        for label in 0..1000 {
            repeats.add(u128::from(label), label).unwrap();
        }
        let found = repeats.find(100).unwrap();
        assert_eq!((found.first.len(), found.total), (0, 0));
    }
}
