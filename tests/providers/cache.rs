//! The response cache: what a case stores and uses is committed with the case (no write
//! of its own), lookups write nothing, hits cost no provider call across runs and
//! restarts, and deleting runs keeps what other runs used.

use crate::common::fake_provider::{FakeProvider, Reply};

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};
use themis::components::Registry;
use themis::engine::{Engine, EngineConfig, RunControl};
use themis::model::{CaseKey, CaseRecord, CaseStatus, RunId, RunKind, RunStatus, Timestamp, Usage};
use themis::observe::Observers;
use themis::store::{
    CacheWrite, CaseCommit, CommitBatch, DeleteRun, NewRun, SqliteStore, StatusChange, Store,
};

fn run_id(n: u8) -> RunId {
    RunId::from_digest(&[n; 32])
}

async fn create(store: &dyn Store, n: u8) -> RunId {
    store
        .create_run(NewRun {
            labels: themis::model::RunLabels::default(),
            run_id: run_id(n),
            kind: RunKind::Experiment,
            parent_run_id: None,
            definition: json!({}),
            runtime: json!({}),
            total_cases: 4,
            index_space: 4,
            datasets: Vec::new(),
            created_at: Timestamp::from_millis(i64::from(n)),
        })
        .await
        .unwrap();
    run_id(n)
}

fn case(run: &RunId, index: u64, cache: Vec<CacheWrite>) -> CaseCommit {
    let record = CaseRecord {
        run_id: run.clone(),
        key: CaseKey {
            case_index: index,
            dataset_id: "d".into(),
            case_id: format!("c{index}"),
            seed: 1,
        },
        status: CaseStatus::Completed,
        candidates: Vec::new(),
        reduced: None,
        parsed: None,
        parse_steps: Vec::new(),
        scores: Vec::new(),
        judgments: Vec::new(),
        error: None,
        stages: Vec::new(),
        usage: Usage::default(),
        started_at: Timestamp::from_millis(1),
        finished_at: Timestamp::from_millis(2),
    };
    let mut commit = CaseCommit::new(record, Vec::new());
    commit.cache = cache;
    commit
}

async fn commit(store: &dyn Store, run: &RunId, cases: Vec<CaseCommit>) {
    let mut batch = CommitBatch::new(run.clone());
    batch.cases = cases;
    store.commit(&batch).await.unwrap();
}

async fn finish(store: &dyn Store, run: &RunId) {
    let mut batch = CommitBatch::new(run.clone());
    batch.status = Some(StatusChange {
        status: RunStatus::Completed,
        error: None,
        at: Timestamp::now(),
    });
    store.commit(&batch).await.unwrap();
}

fn put(key: &str, value: Value) -> CacheWrite {
    CacheWrite::Put {
        key: key.to_owned(),
        value: value.to_string(),
    }
}

async fn lookup(store: &dyn Store, key: &str) -> Option<(Value, Option<String>)> {
    store
        .cache_lookup(key)
        .await
        .unwrap()
        .map(|cached| (cached.value, cached.owner))
}

async fn cache_writes_commit_with_their_case(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let first = create(store, 1).await;
    let second = create(store, 2).await;
    assert_eq!(lookup(store, "k").await, None);

    commit(
        store,
        &first,
        vec![case(&first, 0, vec![put("k", json!({"v": 1}))])],
    )
    .await;
    let owner = Some(first.as_str().to_owned());
    assert_eq!(
        lookup(store, "k").await,
        Some((json!({"v": 1}), owner.clone()))
    );

    // The first response stored under a key stays, with its owner; a case recorded twice
    // (ignored as a duplicate) writes nothing to the cache either.
    commit(
        store,
        &second,
        vec![case(
            &second,
            0,
            vec![put("k", json!({"v": 2})), put("own", json!(3))],
        )],
    )
    .await;
    commit(
        store,
        &second,
        vec![case(&second, 0, vec![put("late", json!(4))])],
    )
    .await;
    assert_eq!(
        lookup(store, "k").await,
        Some((json!({"v": 1}), owner.clone()))
    );
    assert_eq!(
        lookup(store, "own").await,
        Some((json!(3), Some(second.as_str().to_owned())))
    );
    assert_eq!(lookup(store, "late").await, None);

    // A lookup writes nothing: without a use committed, deleting the owner deletes it.
    let third = create(store, 3).await;
    assert!(lookup(store, "own").await.is_some());
    finish(store, &second).await;
    assert_eq!(
        store.delete_run(&second, false).await.unwrap(),
        DeleteRun::Deleted(vec![second.clone()])
    );
    assert_eq!(lookup(store, "own").await, None);

    // A use committed with a case keeps the response when its owner is deleted, and it
    // becomes the user's.
    commit(
        store,
        &third,
        vec![case(&third, 0, vec![CacheWrite::Used { key: "k".into() }])],
    )
    .await;
    finish(store, &first).await;
    assert_eq!(
        store.delete_run(&first, false).await.unwrap(),
        DeleteRun::Deleted(vec![first.clone()])
    );
    assert_eq!(
        lookup(store, "k").await,
        Some((json!({"v": 1}), Some(third.as_str().to_owned())))
    );
}

contract!(cache_writes_commit_with_their_case);

/// A provider answering `{"answer": "4"}`; its `requests` count what it received.
async fn provider() -> (Arc<AtomicUsize>, String, FakeProvider) {
    let fake = FakeProvider::replying(|_, _| Reply::text("{\"answer\": \"4\"}", 3)).await;
    (fake.requests.clone(), fake.base_url.clone(), fake)
}

/// The same requests under a different metric (so a different run).
fn experiment(base_url: &str, metric: &str) -> Value {
    let cases: Vec<Value> = (0..20)
        .map(|i| {
            json!({"case_id": format!("c{i}"), "input": {"question": format!("{i}")},
                        "expected_output": {"answer": "4"}})
        })
        .collect();
    json!({
        "generation": {"generator": {"name": "openai/chat", "params": {
            "base_url": base_url, "model": "m", "prompt": "{{ input.question }}",
            "output": "json", "timeout_ms": 5000}}},
        "evaluation": {"metrics": [{"name": metric, "params": {"field": "answer"}}]},
        "datasets": [{"dataset_id": "d", "cases": cases}],
        "seeds": [1],
        "concurrency": 4
    })
}

async fn execute(engine: &Engine, body: &Value) -> themis::model::RunRecord {
    let request = engine.parse(body).expect("valid definition");
    let run_id = engine.submit(&request).await.unwrap().into_record().run_id;
    let run = engine
        .execute(&run_id, Observers::default(), RunControl::default())
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Completed, "{run:?}");
    run
}

async fn engine_on(path: &std::path::Path) -> Engine {
    let store = SqliteStore::open(path).await.unwrap();
    Engine::new(
        Arc::new(store),
        Arc::new(Registry::builtin()),
        EngineConfig::default(),
    )
}

/// On SQLite, with the cache written by the group commit: a new run after a restart
/// sends nothing, and deleting the run that paid for the responses keeps them for the
/// run that used them.
#[tokio::test]
async fn cached_responses_survive_a_restart_and_the_deletion_of_their_owner() {
    let (requests, base_url, _provider) = provider().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.db");

    let engine = engine_on(&path).await;
    let paid = execute(&engine, &experiment(&base_url, "builtin/exact_match")).await;
    assert_eq!(requests.load(Ordering::SeqCst), 20);
    assert_eq!(paid.usage.requests, 20);
    // Nothing of the execution (its heartbeat, claimer, cancel watcher) holds the store
    // any more: the file is free to open again at once.
    assert_eq!(Arc::strong_count(engine.store()), 1);
    drop(engine);

    let engine = engine_on(&path).await;
    let reused = execute(&engine, &experiment(&base_url, "builtin/token_f1")).await;
    assert_eq!(
        requests.load(Ordering::SeqCst),
        20,
        "no request after the restart"
    );
    assert_eq!(reused.usage.requests, 0);

    assert!(matches!(
        engine
            .store()
            .delete_run(&paid.run_id, false)
            .await
            .unwrap(),
        DeleteRun::Deleted(_)
    ));
    let again = execute(&engine, &experiment(&base_url, "builtin/contains")).await;
    assert_eq!(
        requests.load(Ordering::SeqCst),
        20,
        "the responses the second run used outlive the run that stored them"
    );
    assert_eq!(again.usage.requests, 0);
}

/// On SQLite: a response committed with its case is found after the store is reopened
/// (its key read back into the set of stored keys); one whose case's commit was refused
/// was never stored, before or after the reopen.
#[tokio::test]
async fn a_cached_response_is_stored_with_its_case_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.db");
    let kept = format!("{:064x}", 1);
    let refused = format!("{:064x}", 2);
    {
        let store = SqliteStore::open(&path).await.unwrap();
        let run = create(&store, 1).await;
        commit(
            &store,
            &run,
            vec![case(&run, 0, vec![put(&kept, json!({"v": 1}))])],
        )
        .await;
        finish(&store, &run).await;
        let mut late = CommitBatch::new(run.clone());
        late.cases = vec![case(&run, 1, vec![put(&refused, json!({"v": 2}))])];
        assert!(store.commit(&late).await.is_err(), "the run is finished");
        assert_eq!(lookup(&store, &refused).await, None);
        store.close().await.unwrap();
    }
    let store = SqliteStore::open(&path).await.unwrap();
    let owner = Some(run_id(1).as_str().to_owned());
    assert_eq!(lookup(&store, &kept).await, Some((json!({"v": 1}), owner)));
    assert_eq!(lookup(&store, &refused).await, None);
    // Once the stored keys are read back, a lookup of one still reads it.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        lookup(&store, &kept).await.map(|(value, _)| value),
        Some(json!({"v": 1}))
    );
}
