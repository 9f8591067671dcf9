//! Server-sent-event frames of a run's events, encoded once and shared by every stream
//! that follows the run, and a bounded cache of them so that streams replaying the same
//! history do not each read and re-encode it from the store.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

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

/// The most recent frames of one run that its streams read from the store or were sent
/// live, by sequence number. Everything in it was committed, so any stream may send it
/// as is.
#[derive(Debug, Default)]
pub(crate) struct FrameCache {
    inner: Mutex<Cached>,
}

#[derive(Debug, Default)]
struct Cached {
    frames: BTreeMap<u64, Frames>,
    /// The highest sequence number published live so far.
    published: Option<u64>,
    /// The latest store read that reached the end: when it started, and the last
    /// sequence number the store had then.
    store_end: Option<(Instant, u64)>,
}

/// What the cache knows after a sequence number.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// The frames that follow, consecutive.
    Frames(Frames),
    /// Nothing yet (a stream subscribed before then gets whatever follows from its
    /// channel).
    Nothing,
    /// The next frame is not cached: read the store.
    Unknown,
}

impl FrameCache {
    /// Frames read from the store.
    pub(crate) fn insert(&self, batch: &EncodedBatch) {
        self.lock().insert(batch);
    }

    /// Frames being sent live to the run's listeners.
    pub(crate) fn insert_published(&self, batch: &EncodedBatch) {
        let mut cached = self.lock();
        cached.insert(batch);
        cached.published = cached.published.max(Some(batch.whole.last));
    }

    /// The store had nothing after `last` when a read that started at `started` ran.
    pub(crate) fn store_ended(&self, started: Instant, last: u64) {
        let mut cached = self.lock();
        if cached.store_end.is_none_or(|(at, _)| at <= started) {
            cached.store_end = Some((started, last));
        }
    }

    /// Up to `limit` consecutive cached frames after `after`, joined. Past them, the
    /// cache answers [`Lookup::Nothing`] if nothing more was published live (unless the
    /// caller is `unsure_since`: events may have been committed elsewhere since then),
    /// or if the store had nothing more in a read started after `unsure_since`.
    pub(crate) fn after(&self, after: u64, limit: usize, unsure_since: Option<Instant>) -> Lookup {
        let cached = self.lock();
        let mut taken = Vec::new();
        let mut terminal = false;
        for (seq, one) in cached.frames.range(after + 1..).take(limit) {
            if *seq != after + 1 + taken.len() as u64 || terminal {
                break;
            }
            taken.push(one.bytes.clone());
            terminal = one.terminal;
        }
        let nothing = match unsure_since {
            None => cached.published.is_some_and(|last| last <= after),
            Some(since) => cached
                .store_end
                .is_some_and(|(started, last)| started >= since && last <= after),
        };
        drop(cached);
        let bytes = match taken.as_slice() {
            [] if nothing => return Lookup::Nothing,
            [] => return Lookup::Unknown,
            [one] => one.clone(),
            many => Bytes::from(many.concat()),
        };
        Lookup::Frames(Frames {
            first: after + 1,
            last: after + taken.len() as u64,
            terminal,
            bytes,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cached> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Cached {
    fn insert(&mut self, batch: &EncodedBatch) {
        for one in &batch.each {
            self.frames.insert(one.first, one.clone());
        }
        // The oldest go first: streams that replay history mostly want the recent part.
        while self.frames.len() > CACHED_FRAMES {
            self.frames.pop_first();
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RunId;
    use crate::model::sample_event;

    fn events(run_id: &RunId, seqs: std::ops::RangeInclusive<u64>, terminal: u64) -> Vec<RunEvent> {
        seqs.map(|seq| sample_event(run_id, seq, seq == terminal))
            .collect()
    }

    fn frames(lookup: Lookup) -> Frames {
        match lookup {
            Lookup::Frames(frames) => frames,
            other => panic!("not cached: {other:?}"),
        }
    }

    fn run() -> RunId {
        "run_00000000000000000000000000000001"
            .parse()
            .expect("a run id")
    }

    #[test]
    fn a_batch_is_its_frames_back_to_back() {
        let events = events(&run(), 1..=3, 3);
        let batch = EncodedBatch::encode_first(&events).expect("a batch");
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
        assert!(EncodedBatch::encode_first(&[]).is_none());
        let gap = [events[0].clone(), events[2].clone()];
        let split: Vec<_> = EncodedBatch::encode_all(&gap)
            .map(|b| b.whole.first)
            .collect();
        assert_eq!(split, [1, 3], "a gap splits the batch");
    }

    #[test]
    fn the_cache_answers_only_consecutive_frames_and_stops_at_the_end() {
        let cache = FrameCache::default();
        let all = events(&run(), 1..=10, 10);
        for part in [&all[0..3], &all[5..10]] {
            cache.insert(&EncodedBatch::encode_first(part).expect("a batch"));
        }
        let whole = EncodedBatch::encode_first(&all).expect("a batch");
        let first = frames(cache.after(0, 100, None));
        assert_eq!((first.first, first.last, first.terminal), (1, 3, false));
        assert_eq!(first.bytes, whole.whole.bytes.slice(..first.bytes.len()));
        assert!(
            matches!(cache.after(3, 100, None), Lookup::Unknown),
            "4 is missing"
        );
        let limited = frames(cache.after(5, 2, None));
        assert_eq!((limited.first, limited.last), (6, 7));
        let rest = frames(cache.after(7, 100, None));
        assert_eq!((rest.last, rest.terminal), (10, true));
        assert!(matches!(cache.after(10, 100, None), Lookup::Unknown));
    }

    /// Past the last frame published live, nothing is known to follow yet; past frames
    /// only read from the store, the store may have more.
    #[test]
    fn only_published_frames_tell_that_nothing_follows() {
        let cache = FrameCache::default();
        let all = events(&run(), 1..=6, 0);
        cache.insert(&EncodedBatch::encode_first(&all[..3]).expect("a batch"));
        assert!(matches!(cache.after(3, 10, None), Lookup::Unknown));
        cache.insert_published(&EncodedBatch::encode_first(&all[3..5]).expect("a batch"));
        assert!(matches!(cache.after(5, 10, None), Lookup::Nothing));
        assert!(matches!(cache.after(9, 10, None), Lookup::Nothing));
        let unsure = Instant::now();
        assert!(
            matches!(cache.after(5, 10, Some(unsure)), Lookup::Unknown),
            "published frames say nothing of other instances"
        );
        cache.store_ended(unsure - std::time::Duration::from_millis(1), 5);
        assert!(
            matches!(cache.after(5, 10, Some(unsure)), Lookup::Unknown),
            "a read that started earlier says nothing of what came since"
        );
        cache.store_ended(Instant::now(), 5);
        assert!(matches!(cache.after(5, 10, Some(unsure)), Lookup::Nothing));
        assert!(matches!(
            cache.after(4, 10, Some(unsure)),
            Lookup::Frames(_)
        ));
        assert_eq!(frames(cache.after(0, 10, None)).last, 5);
        cache.insert(&EncodedBatch::encode_first(&all[5..]).expect("a batch"));
        assert_eq!(frames(cache.after(5, 10, None)).last, 6);
    }

    #[test]
    fn the_cache_keeps_the_most_recent_frames() {
        let cache = FrameCache::default();
        let total = CACHED_FRAMES as u64 + 10;
        let all = events(&run(), 1..=total, 0);
        cache.insert(&EncodedBatch::encode_first(&all).expect("a batch"));
        assert!(
            matches!(cache.after(0, 1, None), Lookup::Unknown),
            "the oldest were dropped"
        );
        let last = frames(cache.after(total - 1, 1, None));
        assert_eq!(last.last, total);
    }
}
