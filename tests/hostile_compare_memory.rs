//! A comparison's memory does not grow with the length of case ids: pairing holds a
//! fixed-size key per case, whatever the ids (500-byte ids used to cost their length
//! again per case, per request). Measured with a counting allocator, so this binary
//! holds this one test only.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};
use themis::engine::{Engine, EngineConfig, RunControl, compare_runs};
use themis::model::RunId;
use themis::observe::Observers;
use themis::store::MemoryStore;

use common::{CallCounter, registry_with_counter};

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

const CASES: usize = 1_500;

fn definition(id_len: usize, delay_ms: u64) -> Value {
    let cases: Vec<Value> = (0..CASES)
        .map(|i| {
            let id = format!("{i:0>id_len$}");
            json!({"case_id": id, "input": {"answer": (i % 2).to_string()}, "expected_output": "1"})
        })
        .collect();
    json!({
        "generation": {"generator": {"name": "test/counting", "params": {"delay_ms": delay_ms}}},
        "evaluation": {"metrics": ["builtin/exact_match"]},
        "datasets": [{"dataset_id": "d", "cases": cases}],
        "seeds": [1],
        "concurrency": 256
    })
}

async fn run(engine: &Engine, body: &Value) -> RunId {
    let request = engine.parse(body).expect("valid definition");
    let run_id = engine.submit(&request).await.unwrap().into_record().run_id;
    engine
        .execute(&run_id, Observers::default(), RunControl::default())
        .await
        .unwrap();
    run_id
}

/// Peak bytes allocated while comparing two runs whose case ids are `id_len` long,
/// above what was allocated when the comparison started.
async fn comparison_peak(id_len: usize) -> usize {
    let engine = Engine::new(
        Arc::new(MemoryStore::new()),
        Arc::new(registry_with_counter(&CallCounter::default())),
        EngineConfig::default(),
    );
    let baseline = run(&engine, &definition(id_len, 0)).await;
    let candidate = run(&engine, &definition(id_len, 1)).await;
    let start = CURRENT.load(Ordering::Relaxed);
    PEAK.store(start, Ordering::Relaxed);
    let report = compare_runs(engine.store().as_ref(), &baseline, &candidate)
        .await
        .unwrap();
    assert_eq!(report.n_paired_cases, CASES as u64);
    PEAK.load(Ordering::Relaxed) - start
}

#[tokio::test(flavor = "current_thread")]
async fn comparison_memory_does_not_grow_with_id_length() {
    let short = comparison_peak(8).await;
    let long = comparison_peak(500).await;
    // 1,500 ids of 500 bytes are 750 KB: held per case, they would show here. What may
    // grow is one page of records read at a time (500 of them, ~250 KB of ids).
    assert!(
        long < short + 500_000,
        "short ids: {short} B, 500-byte ids: {long} B"
    );
}
