//! The repeat check of an upload's case ids holds memory bounded whatever the number of
//! rows (a set of every id held ~41 B per case: 410 MB for 10 M tiny rows). Measured
//! with a counting allocator, so this binary holds this one test only.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use themis::components::Registry;
use themis::engine::{Engine, EngineConfig, EngineError, UploadFormat, UploadLimits};
use themis::store::MemoryStore;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Peak bytes allocated while taking in `rows` tiny JSONL rows with distinct ids. The
/// first line is not JSON, so the upload is refused after every id was checked and
/// nothing is stored: what is measured is reading and checking.
async fn ingest_peak(engine: &Engine, rows: usize) -> usize {
    let chunks = (0..rows / 1_000).map(move |c| {
        let mut chunk = if c == 0 {
            String::from("not json\n")
        } else {
            String::new()
        };
        for i in c * 1_000..(c + 1) * 1_000 {
            chunk.push_str(&format!("{{\"case_id\":\"{i}\",\"input\":1}}\n"));
        }
        Ok::<_, std::io::Error>(Bytes::from(chunk))
    });
    let start = CURRENT.load(Ordering::Relaxed);
    PEAK.store(start, Ordering::Relaxed);
    let outcome = engine
        .put_dataset(
            "d",
            &UploadFormat::Jsonl,
            UploadLimits::default(),
            futures::stream::iter(chunks),
        )
        .await;
    assert!(matches!(outcome, Err(EngineError::InvalidDataset(_))));
    PEAK.load(Ordering::Relaxed) - start
}

#[tokio::test(flavor = "current_thread")]
async fn the_repeat_check_does_not_grow_with_the_number_of_rows() {
    let engine = Engine::new(
        Arc::new(MemoryStore::new()),
        Arc::new(Registry::builtin()),
        EngineConfig::default(),
    );
    let few = ingest_peak(&engine, 20_000).await;
    let many = ingest_peak(&engine, 150_000).await;
    // A set of 150,000 fingerprints is ~4.5 MB (more while it grows); of 20,000, 0.6 MB.
    // Bounded, the check's buffer is at most 2 MiB either way.
    assert!(
        many < few + 2_000_000,
        "20,000 rows: {few} B, 150,000 rows: {many} B"
    );
}
