//! Server-sent-event frames of a run's events, encoded once and shared by every stream
//! that follows the run, and a bounded cache of them so that streams replaying the same
//! history do not each read and re-encode it from the store.

use std::collections::BTreeMap;
use std::sync::Mutex;

use axum::body::Bytes;

use crate::model::RunEvent;

/// Frames kept per followed run for streams that replay history (a few MiB at most).
const CACHED_FRAMES: usize = 4_096;

/// Consecutive frames `first..=last`, as one buffer ready to write.
#[derive(Debug, Clone)]
pub struct Frames {
    pub first: u64,
    pub last: u64,
    /// The last frame is the run's terminal event.
    pub terminal: bool,
    /// `id: <seq>\nevent: <type>\ndata: <json>\n\n` for each event, back to back.
    pub bytes: Bytes,
}

/// A batch of consecutive events, encoded once: the whole as one buffer (what a stream
/// that is caught up writes), and each event as a slice of it (what a stream that already
/// has part of the batch, or the cache, takes).
#[derive(Debug)]
pub struct EncodedBatch {
    pub whole: Frames,
    pub each: Vec<Frames>,
}

impl EncodedBatch {
    /// One batch per run of consecutive sequence numbers in `events` (one, unless the
    /// caller passed a gap: a batch must never claim frames it does not hold).
    pub fn encode_all(events: &[RunEvent]) -> impl Iterator<Item = Self> + '_ {
        events
            .chunk_by(|a, b| b.seq == a.seq + 1)
            .filter_map(Self::encode)
    }

    /// The leading run of consecutive events of `events`; `None` for no events.
    pub fn encode_first(events: &[RunEvent]) -> Option<Self> {
        Self::encode_all(events).next()
    }

    /// `events` must be consecutive (see [`EncodedBatch::encode_all`]).
    fn encode(events: &[RunEvent]) -> Option<Self> {
        let (first, last) = (events.first()?, events.last()?);
        let mut buffer = Vec::with_capacity(events.len() * 320);
        let mut ends = Vec::with_capacity(events.len());
        for event in events {
            write_frame(&mut buffer, event);
            ends.push(buffer.len());
        }
        let bytes = Bytes::from(buffer);
        let mut start = 0;
        let each = events
            .iter()
            .zip(ends)
            .map(|(event, end)| {
                let frames = Frames {
                    first: event.seq,
                    last: event.seq,
                    terminal: event.kind.is_terminal(),
                    bytes: bytes.slice(start..end),
                };
                start = end;
                frames
            })
            .collect();
        Some(EncodedBatch {
            whole: Frames {
                first: first.seq,
                last: last.seq,
                terminal: last.kind.is_terminal(),
                bytes,
            },
            each,
        })
    }
}

fn write_frame(buffer: &mut Vec<u8>, event: &RunEvent) {
    use std::io::Write;
    // Writing into a Vec cannot fail; compact JSON has no newline, so it fits one
    // `data:` line.
    let _ = write!(
        buffer,
        "id: {}\nevent: {}\ndata: ",
        event.seq,
        event.event_type()
    );
    let start = buffer.len();
    if serde_json::to_writer(&mut *buffer, event).is_err() {
        buffer.truncate(start);
        buffer.extend_from_slice(b"{}");
    }
    buffer.extend_from_slice(b"\n\n");
}

/// The most recent frames of one run that its streams encoded or were sent, by sequence
/// number. Everything in it was committed, so any stream may send it as is.
#[derive(Debug, Default)]
pub(crate) struct FrameCache {
    frames: Mutex<BTreeMap<u64, Frames>>,
}

impl FrameCache {
    pub(crate) fn insert(&self, batch: &EncodedBatch) {
        let mut frames = self.lock();
        for one in &batch.each {
            frames.insert(one.first, one.clone());
        }
        // The oldest go first: streams that replay history mostly want the recent part.
        while frames.len() > CACHED_FRAMES {
            frames.pop_first();
        }
    }

    /// Up to `limit` consecutive cached frames after `after`, joined; `None` if the next
    /// one is not cached.
    pub(crate) fn after(&self, after: u64, limit: usize) -> Option<Frames> {
        let frames = self.lock();
        let mut taken = Vec::new();
        let mut terminal = false;
        for (seq, one) in frames.range(after + 1..).take(limit) {
            if *seq != after + 1 + taken.len() as u64 || terminal {
                break;
            }
            taken.push(one.bytes.clone());
            terminal = one.terminal;
        }
        drop(frames);
        let last_seq = after + taken.len() as u64;
        let bytes = match taken.as_slice() {
            [] => return None,
            [one] => one.clone(),
            many => Bytes::from(many.concat()),
        };
        Some(Frames {
            first: after + 1,
            last: last_seq,
            terminal,
            bytes,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Frames>> {
        self.frames.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EventKind, NewEvent, Progress, RunId};

    fn events(run_id: &RunId, seqs: std::ops::RangeInclusive<u64>, terminal: u64) -> Vec<RunEvent> {
        seqs.map(|seq| {
            let kind = if seq == terminal {
                EventKind::RunCompleted {
                    progress: Progress::default(),
                }
            } else {
                EventKind::RunStarted {
                    total_cases: seq,
                    resumed: false,
                }
            };
            NewEvent::now(kind).sequenced(run_id, seq)
        })
        .collect()
    }

    fn run() -> RunId {
        "run_00000000000000000000000000000001"
            .parse()
            .expect("a run id")
    }

    #[test]
    fn a_batch_is_its_frames_back_to_back() {
        let events = events(&run(), 1..=3, 3);
        let batch = EncodedBatch::encode(&events).expect("a batch");
        let joined: Vec<u8> = batch.each.iter().flat_map(|f| f.bytes.to_vec()).collect();
        assert_eq!(joined.as_slice(), batch.whole.bytes.as_ref());
        assert_eq!((batch.whole.first, batch.whole.last), (1, 3));
        assert!(batch.whole.terminal);
        assert!(!batch.each[0].terminal && batch.each[2].terminal);
        let first = std::str::from_utf8(&batch.each[0].bytes).expect("utf-8");
        assert!(
            first.starts_with("id: 1\nevent: run_started\ndata: {"),
            "{first}"
        );
        assert!(first.ends_with("}\n\n") && first.matches('\n').count() == 4);
        assert!(EncodedBatch::encode(&[]).is_none());
    }

    #[test]
    fn the_cache_answers_only_consecutive_frames_and_stops_at_the_end() {
        let cache = FrameCache::default();
        let all = events(&run(), 1..=10, 10);
        for part in [&all[0..3], &all[5..10]] {
            cache.insert(&EncodedBatch::encode(part).expect("a batch"));
        }
        let whole = EncodedBatch::encode(&all).expect("a batch");
        let first = cache.after(0, 100).expect("cached");
        assert_eq!((first.first, first.last, first.terminal), (1, 3, false));
        assert_eq!(first.bytes, whole.whole.bytes.slice(..first.bytes.len()));
        assert!(cache.after(3, 100).is_none(), "4 is missing");
        let limited = cache.after(5, 2).expect("cached");
        assert_eq!((limited.first, limited.last), (6, 7));
        let rest = cache.after(7, 100).expect("cached");
        assert_eq!((rest.last, rest.terminal), (10, true));
        assert!(cache.after(10, 100).is_none());
    }

    #[test]
    fn the_cache_keeps_the_most_recent_frames() {
        let cache = FrameCache::default();
        let total = CACHED_FRAMES as u64 + 10;
        let all = events(&run(), 1..=total, 0);
        cache.insert(&EncodedBatch::encode(&all).expect("a batch"));
        assert!(cache.after(0, 1).is_none(), "the oldest were dropped");
        let last = cache.after(total - 1, 1).expect("the newest are kept");
        assert_eq!(last.last, total);
    }
}
