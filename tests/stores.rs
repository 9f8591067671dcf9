//! The store contract: one suite, run against every store (memory, SQLite, Postgres).
//! What a store must guarantee is written here once; dialects stay inside the stores.

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use themis::model::{
    CaseKey, CaseRecord, CaseStatus, EventKind, NewEvent, RunId, RunKind, RunLabels, RunStatus,
    ScoreRecord, Timestamp, Usage,
};
use themis::store::{
    CancelOutcome, CaseCommit, CaseQuery, CommitBatch, CreateOutcome, DeleteRun, NewRun, RunCursor,
    RunQuery, StatusChange, Store, StoreError,
};

fn run_id(n: u8) -> RunId {
    RunId::from_digest(&[n; 32])
}

fn new_run(n: u8, created_at: i64, total: u64) -> NewRun {
    NewRun {
        labels: themis::model::RunLabels::default(),
        run_id: run_id(n),
        kind: RunKind::Experiment,
        parent_run_id: None,
        definition: json!({"seeds": [n]}),
        runtime: json!({"concurrency": 2}),
        total_cases: total,
        index_space: total,
        datasets: Vec::new(),
        created_at: Timestamp::from_millis(created_at),
    }
}

fn record(run: &RunId, index: u64, dataset: &str, score: Option<f64>) -> CaseRecord {
    CaseRecord {
        run_id: run.clone(),
        key: CaseKey {
            case_index: index,
            dataset_id: dataset.to_owned(),
            case_id: format!("c{index}"),
            seed: 1,
        },
        status: if score.is_some() {
            CaseStatus::Completed
        } else {
            CaseStatus::Failed
        },
        candidates: Vec::new(),
        reduced: None,
        parsed: None,
        parse_steps: Vec::new(),
        scores: vec![ScoreRecord {
            metric_id: "m".into(),
            score,
            details: Value::Null,
            error: score.is_none().then(|| "boom".to_owned()),
        }],
        judgments: Vec::new(),
        error: None,
        stages: Vec::new(),
        usage: Usage {
            requests: 1,
            prompt_tokens: 10,
            completion_tokens: 2,
            ..Usage::default()
        },
        started_at: Timestamp::from_millis(1),
        finished_at: Timestamp::from_millis(2),
    }
}

fn case_commit(run: &RunId, index: u64, dataset: &str, score: Option<f64>) -> CaseCommit {
    let record = record(run, index, dataset, score);
    let events = vec![
        NewEvent::now(EventKind::CaseStarted {
            case: record.key.clone(),
        }),
        NewEvent::now(EventKind::CaseCompleted {
            case: record.key.clone(),
            duration_ms: 1,
        }),
    ];
    let commit = CaseCommit::new(record, events);
    // Odd cases come with their JSON, as the engine sends them; even ones without, as an
    // embedder may: every store must record both alike.
    if index % 2 == 1 {
        commit.encode().unwrap()
    } else {
        commit
    }
}

fn status(status: RunStatus) -> Option<StatusChange> {
    Some(StatusChange {
        status,
        error: None,
        at: Timestamp::now(),
    })
}

/// The run's first ten case records.
async fn first_records(store: &dyn Store, run: &RunId) -> Vec<CaseRecord> {
    store
        .case_records(
            run,
            &CaseQuery {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap()
}

async fn start(store: &dyn Store, run: &RunId) {
    let mut batch = CommitBatch::new(run.clone());
    batch.status = status(RunStatus::Running);
    batch.events.push(NewEvent::now(EventKind::RunStarted {
        total_cases: 0,
        resumed: false,
    }));
    store.commit(&batch).await.unwrap();
}

async fn create_is_idempotent(store: Arc<dyn Store>) {
    let first = store.create_run(new_run(1, 1_000, 3)).await.unwrap();
    assert!(first.was_created());
    let CreateOutcome::Existing(existing) = store.create_run(new_run(1, 9_999, 3)).await.unwrap()
    else {
        panic!("second create must find the first run");
    };
    assert_eq!(&existing, first.record());
    assert_eq!(existing.status, RunStatus::Queued);
    assert_eq!(existing.definition, json!({"seeds": [1]}));
    assert_eq!(existing.runtime, json!({"concurrency": 2}));
    assert_eq!(existing.created_at, Timestamp::from_millis(1_000));
    assert_eq!(
        store.get_run(&run_id(1)).await.unwrap(),
        Some(existing.clone())
    );
    let summary = store.get_run_summary(&run_id(1)).await.unwrap().unwrap();
    assert_eq!(
        (summary.definition, summary.runtime),
        (Value::Null, Value::Null)
    );
    assert_eq!(summary.version, existing.version);
    assert_eq!(store.get_run(&run_id(2)).await.unwrap(), None);
}

async fn commits_sequence_events_and_count_cases(store: Arc<dyn Store>) {
    let run = run_id(3);
    store.create_run(new_run(3, 1, 4)).await.unwrap();
    start(store.as_ref(), &run).await;
    let running = store.get_run(&run).await.unwrap().unwrap();
    assert_eq!(running.status, RunStatus::Running);
    assert!(running.started_at.is_some() && running.finished_at.is_none());

    let mut batch = CommitBatch::new(run.clone());
    batch.cases = vec![
        case_commit(&run, 0, "a", Some(1.0)),
        case_commit(&run, 1, "b", Some(0.0)),
    ];
    batch.progress_event = true;
    let outcome = store.commit(&batch).await.unwrap();
    let events = outcome.events(&batch);
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [2, 3, 4, 5, 6], "gapless after run_started");
    let last = events.last().unwrap();
    assert_eq!(last.event_type(), "progress");
    assert_eq!(
        serde_json::to_value(last).unwrap()["progress"]["completed"],
        2
    );
    assert_eq!((outcome.progress.completed, outcome.duplicates), (2, 0));

    // The same case again (another instance finished it too): ignored with its events.
    let mut again = CommitBatch::new(run.clone());
    again.cases = vec![
        case_commit(&run, 1, "b", Some(1.0)),
        case_commit(&run, 2, "a", None),
    ];
    let outcome = store.commit(&again).await.unwrap();
    assert_eq!(outcome.duplicates, 1);
    assert_eq!(
        outcome
            .events(&again)
            .iter()
            .map(|e| e.seq)
            .collect::<Vec<_>>(),
        [7, 8]
    );

    let run_now = store.get_run(&run).await.unwrap().unwrap();
    assert_eq!(
        (
            run_now.progress.total,
            run_now.progress.completed,
            run_now.progress.failed
        ),
        (4, 2, 1)
    );
    assert_eq!(run_now.last_seq, 8);
    assert_eq!(
        run_now.usage,
        Usage {
            requests: 3,
            prompt_tokens: 30,
            completion_tokens: 6,
            ..Usage::default()
        }
    );
    let m = &run_now.aggregates.metrics["m"];
    assert_eq!(
        (m.overall.n, m.overall.failures, m.overall.mean),
        (2, 1, Some(0.5))
    );
    assert_eq!(m.by_dataset["a"].n, 1);
    assert_eq!(m.by_dataset["a"].failures, 1);
    assert_eq!(m.by_dataset["b"].mean, Some(0.0));
    // The stored record is the one first committed.
    let stored = store
        .case_records(
            &run,
            &CaseQuery {
                after_index: Some(0),
                limit: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(stored[0].scores[0].score, Some(0.0));

    let events = store.events_after(&run, 0, 100).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=8).collect::<Vec<_>>()
    );
    assert_eq!(store.events_after(&run, 6, 100).await.unwrap().len(), 2);
    assert_eq!(
        store
            .events_after(&run, 2, 3)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect::<Vec<_>>(),
        [3, 4, 5]
    );
    assert!(store.events_after(&run, 8, 100).await.unwrap().is_empty());
}

async fn a_case_twice_in_one_batch_counts_once(store: Arc<dyn Store>) {
    let run = run_id(6);
    store.create_run(new_run(6, 1, 2)).await.unwrap();
    start(store.as_ref(), &run).await;
    let mut batch = CommitBatch::new(run.clone());
    batch.cases = vec![
        case_commit(&run, 0, "a", Some(1.0)),
        case_commit(&run, 0, "a", Some(0.0)),
    ];
    let outcome = store.commit(&batch).await.unwrap();
    assert_eq!(outcome.duplicates, 1);
    assert_eq!(outcome.kept_cases, [0], "the first copy is kept");
    assert_eq!(
        outcome.events(&batch).len(),
        2,
        "only the first copy's events"
    );
    assert_eq!(outcome.progress.completed, 1);
    let stored = first_records(store.as_ref(), &run).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0].scores[0].score,
        Some(1.0),
        "the first copy is the one stored"
    );
}

async fn terminal_runs_reject_writes_and_versions_grow(store: Arc<dyn Store>) {
    let run = run_id(4);
    let created = store
        .create_run(new_run(4, 1, 1))
        .await
        .unwrap()
        .into_record();
    start(store.as_ref(), &run).await;
    let mut finish = CommitBatch::new(run.clone());
    finish.status = Some(StatusChange {
        status: RunStatus::Failed,
        error: Some("disk on fire".into()),
        at: Timestamp::now(),
    });
    store.commit(&finish).await.unwrap();
    let failed = store.get_run(&run).await.unwrap().unwrap();
    assert_eq!(failed.status, RunStatus::Failed);
    assert_eq!(failed.error.as_deref(), Some("disk on fire"));
    assert!(failed.finished_at.is_some());
    assert!(failed.version >= created.version + 2);

    let mut late = CommitBatch::new(run.clone());
    late.cases = vec![case_commit(&run, 0, "a", Some(1.0))];
    let err = store.commit(&late).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::RunFinished {
                status: RunStatus::Failed,
                ..
            }
        ),
        "{err:?}"
    );
    let missing = store
        .commit(&CommitBatch::new(run_id(99)))
        .await
        .unwrap_err();
    assert!(matches!(missing, StoreError::RunNotFound(_)));
}

async fn expect_status_decides_between_instances(store: Arc<dyn Store>) {
    let run = run_id(5);
    store.create_run(new_run(5, 1, 1)).await.unwrap();
    let starter = || {
        let mut batch = CommitBatch::new(run.clone());
        batch.expect_status = Some(RunStatus::Queued);
        batch.status = status(RunStatus::Running);
        batch.events.push(NewEvent::now(EventKind::RunStarted {
            total_cases: 1,
            resumed: false,
        }));
        batch
    };
    let first = store.commit(&starter()).await.unwrap();
    let second = store.commit(&starter()).await.unwrap();
    assert!(!first.skipped && second.skipped);
    assert!(second.kept_cases.is_empty() && second.tail.is_empty());
    let run_now = store.get_run(&run).await.unwrap().unwrap();
    assert_eq!(run_now.last_seq, 1);
    // A finish expecting `running` after the run ended elsewhere is skipped, not an error.
    let mut finish = CommitBatch::new(run.clone());
    finish.status = status(RunStatus::Completed);
    store.commit(&finish).await.unwrap();
    let mut late = CommitBatch::new(run.clone());
    late.expect_status = Some(RunStatus::Running);
    late.status = status(RunStatus::Cancelled);
    assert!(store.commit(&late).await.unwrap().skipped);
}

async fn listing_is_newest_first_with_filters_and_cursor(store: Arc<dyn Store>) {
    for (n, at) in [(10u8, 100), (11, 300), (12, 200), (13, 300)] {
        store.create_run(new_run(n, at, 1)).await.unwrap();
    }
    let mut child = new_run(14, 50, 1);
    child.kind = RunKind::Rejudge;
    child.parent_run_id = Some(run_id(10));
    store.create_run(child).await.unwrap();
    start(store.as_ref(), &run_id(12)).await;

    let all = store
        .list_runs(&RunQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let ids: Vec<RunId> = all.iter().map(|r| r.run_id.clone()).collect();
    assert_eq!(
        ids,
        [run_id(13), run_id(11), run_id(12), run_id(10), run_id(14)]
    );
    assert!(
        all.iter()
            .all(|r| r.definition.is_null() && r.runtime.is_null())
    );

    let page = store
        .list_runs(&RunQuery {
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    let last = page.last().unwrap();
    let cursor = RunCursor {
        created_at: last.created_at,
        run_id: last.run_id.clone(),
    };
    let next = store
        .list_runs(&RunQuery {
            limit: 2,
            before: Some(cursor),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        next.iter().map(|r| r.run_id.clone()).collect::<Vec<_>>(),
        [run_id(12), run_id(10)]
    );

    let running = store
        .list_runs(&RunQuery {
            status: Some(RunStatus::Running),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].run_id, run_id(12));
    let children = store
        .list_runs(&RunQuery {
            parent_run_id: Some(run_id(10)),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        children
            .iter()
            .map(|r| r.run_id.clone())
            .collect::<Vec<_>>(),
        [run_id(14)]
    );
    for (kind, expected) in [
        (RunKind::Rejudge, vec![run_id(14)]),
        (
            RunKind::Experiment,
            vec![run_id(13), run_id(11), run_id(12), run_id(10)],
        ),
    ] {
        let listed = store
            .list_runs(&RunQuery {
                kind: Some(kind),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        let ids: Vec<RunId> = listed.iter().map(|r| r.run_id.clone()).collect();
        assert_eq!(ids, expected, "runs of kind {kind:?}");
    }

    let unfinished = store
        .run_ids_with_status(&[RunStatus::Queued, RunStatus::Running])
        .await
        .unwrap();
    assert_eq!(
        unfinished,
        [run_id(14), run_id(10), run_id(12), run_id(11), run_id(13)]
    );
}

async fn cancel_depends_on_status(store: Arc<dyn Store>) {
    store.create_run(new_run(20, 1, 1)).await.unwrap();
    let CancelOutcome::Cancelled(record, events) = store.request_cancel(&run_id(20)).await.unwrap()
    else {
        panic!("a queued run is cancelled at once");
    };
    assert_eq!(record.status, RunStatus::Cancelled);
    assert_eq!(
        (events.len(), events[0].seq, events[0].event_type()),
        (1, 1, "run_cancelled")
    );
    assert!(matches!(
        store.request_cancel(&run_id(20)).await.unwrap(),
        CancelOutcome::AlreadyFinished(_)
    ));

    store.create_run(new_run(21, 1, 1)).await.unwrap();
    start(store.as_ref(), &run_id(21)).await;
    let CancelOutcome::Requested(record) = store.request_cancel(&run_id(21)).await.unwrap() else {
        panic!("a running run is asked to stop");
    };
    assert!(record.cancel_requested);
    assert_eq!(record.status, RunStatus::Running);
    let outcome = store.commit(&CommitBatch::new(run_id(21))).await.unwrap();
    assert!(outcome.cancel_requested);
    assert!(matches!(
        store.request_cancel(&run_id(22)).await,
        Err(StoreError::RunNotFound(_))
    ));
}

async fn case_records_page_and_filter(store: Arc<dyn Store>) {
    let run = run_id(30);
    store.create_run(new_run(30, 1, 10)).await.unwrap();
    start(store.as_ref(), &run).await;
    let mut batch = CommitBatch::new(run.clone());
    for i in (0..10).rev() {
        let dataset = if i % 2 == 0 { "even" } else { "odd" };
        batch
            .cases
            .push(case_commit(&run, i, dataset, (i % 3 != 0).then_some(1.0)));
    }
    store.commit(&batch).await.unwrap();
    let page = |query: CaseQuery| {
        let store = store.clone();
        let run = run.clone();
        async move {
            store
                .case_records(&run, &query)
                .await
                .unwrap()
                .iter()
                .map(|r| r.key.case_index)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        page(CaseQuery {
            limit: 4,
            ..Default::default()
        })
        .await,
        [0, 1, 2, 3]
    );
    assert_eq!(
        page(CaseQuery {
            limit: 4,
            after_index: Some(3),
            ..Default::default()
        })
        .await,
        [4, 5, 6, 7]
    );
    assert_eq!(
        page(CaseQuery {
            limit: 10,
            dataset_id: Some("odd".into()),
            ..Default::default()
        })
        .await,
        [1, 3, 5, 7, 9]
    );
    assert_eq!(
        page(CaseQuery {
            limit: 10,
            failed_only: true,
            ..Default::default()
        })
        .await,
        [0, 3, 6, 9]
    );
    assert_eq!(
        page(CaseQuery {
            limit: 10,
            failed_only: true,
            dataset_id: Some("even".into()),
            after_index: Some(0)
        })
        .await,
        [6]
    );
    assert_eq!(
        store.recorded_case_indices(&run, 3..7).await.unwrap(),
        [3, 4, 5, 6]
    );
    let first = &store
        .case_records(
            &run,
            &CaseQuery {
                limit: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap()[0];
    assert_eq!(first, &record(&run, 0, "even", None));
}

async fn chunks_are_claimed_once_and_taken_over_after_lease(store: Arc<dyn Store>) {
    let run = run_id(40);
    store.create_run(new_run(40, 1, 150)).await.unwrap(); // 3 chunks: 64 + 64 + 22
    let lease = Duration::from_secs(60);
    let a = store.claim_chunk(&run, "a", lease).await.unwrap().unwrap();
    let b = store.claim_chunk(&run, "b", lease).await.unwrap().unwrap();
    let c = store.claim_chunk(&run, "a", lease).await.unwrap().unwrap();
    assert_eq!(
        (a.start, a.end, b.start, b.end, c.start, c.end),
        (0, 64, 64, 128, 128, 150)
    );
    assert_eq!(
        store.claim_chunk(&run, "c", lease).await.unwrap(),
        None,
        "all chunks are held"
    );
    let status = store.chunk_status(&run, "a").await.unwrap();
    assert_eq!((status.unfinished, status.held_by_others), (3, 1));

    assert_eq!(status.abandoned, 0);

    // "b" dies: once its lease is gone, its chunk is abandoned and claimable again.
    store.release_leases(&run, "b").await.unwrap();
    let status = store.chunk_status(&run, "a").await.unwrap();
    assert_eq!((status.held_by_others, status.abandoned), (0, 1));
    let taken = store.claim_chunk(&run, "c", lease).await.unwrap().unwrap();
    assert_eq!(taken.chunk_index, b.chunk_index);
    assert_eq!(store.chunk_status(&run, "a").await.unwrap().abandoned, 0);

    // A short lease expires by itself; renewing keeps it.
    store.release_leases(&run, "c").await.unwrap();
    let short = store
        .claim_chunk(&run, "d", Duration::from_millis(300))
        .await
        .unwrap()
        .unwrap();
    store
        .renew_leases(&run, "d", &[short.chunk_index], Duration::from_secs(60))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        store.claim_chunk(&run, "e", lease).await.unwrap(),
        None,
        "renewed"
    );
    store.release_leases(&run, "d").await.unwrap();
    let again = store
        .claim_chunk(&run, "d", Duration::from_millis(200))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.chunk_index, short.chunk_index);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let expired = store.claim_chunk(&run, "e", lease).await.unwrap().unwrap();
    assert_eq!(
        expired.chunk_index, short.chunk_index,
        "an expired lease frees the chunk"
    );

    // Done chunks are never claimed again.
    start(store.as_ref(), &run).await;
    let mut batch = CommitBatch::new(run.clone());
    batch.completed_chunks = vec![0, 1, 2];
    store.commit(&batch).await.unwrap();
    store.release_leases(&run, "a").await.unwrap();
    store.release_leases(&run, "e").await.unwrap();
    assert_eq!(store.claim_chunk(&run, "f", lease).await.unwrap(), None);
    assert_eq!(store.chunk_status(&run, "f").await.unwrap().unfinished, 0);
}

/// A claim searches from the chunk it is given: the chunks before it are not looked at.
async fn claims_search_from_the_chunk_given(store: Arc<dyn Store>) {
    let run = run_id(47);
    store.create_run(new_run(47, 1, 150)).await.unwrap(); // 3 chunks: 64 + 64 + 22
    let lease = Duration::from_secs(60);
    let claim = |from: u64| {
        let store = store.clone();
        let run = run.clone();
        async move {
            store
                .claim_chunk_from(&run, "a", lease, from)
                .await
                .unwrap()
                .map(|chunk| chunk.chunk_index)
        }
    };
    assert_eq!(claim(1).await, Some(1));
    assert_eq!(claim(1).await, Some(2), "the next claimable one after it");
    assert_eq!(claim(3).await, None, "past the last chunk");
    assert_eq!(claim(1).await, None, "1 and 2 are held");
    assert_eq!(claim(0).await, Some(0), "the first one, still free");
}

/// A deleted run leaves nothing behind: the same run created again starts empty.
async fn a_deleted_run_leaves_no_records_or_events(store: Arc<dyn Store>) {
    let run = run_id(48);
    store.create_run(new_run(48, 1, 3)).await.unwrap();
    start(store.as_ref(), &run).await;
    let mut batch = CommitBatch::new(run.clone());
    batch.cases = (0..3)
        .map(|i| case_commit(&run, i, "a", Some(1.0)))
        .collect();
    batch.status = status(RunStatus::Completed);
    store.commit(&batch).await.unwrap();
    assert_eq!(
        store.delete_run(&run, false).await.unwrap(),
        DeleteRun::Deleted(vec![run.clone()])
    );
    store.create_run(new_run(48, 1, 3)).await.unwrap();
    assert_eq!(store.events_after(&run, 0, 100).await.unwrap(), []);
    assert_eq!(
        store.recorded_case_indices(&run, 0..3).await.unwrap(),
        Vec::<u64>::new()
    );
    assert_eq!(store.get_run(&run).await.unwrap().unwrap().last_seq, 0);
}

async fn concurrent_claims_never_share_a_chunk(store: Arc<dyn Store>) {
    let run = run_id(41);
    store.create_run(new_run(41, 1, 64 * 20)).await.unwrap();
    let claimers = (0..8).map(|i| {
        let store = store.clone();
        let run = run.clone();
        tokio::spawn(async move {
            let mut mine = Vec::new();
            while let Some(chunk) = store
                .claim_chunk(&run, &format!("w{i}"), Duration::from_secs(60))
                .await
                .unwrap()
            {
                mine.push(chunk.chunk_index);
            }
            mine
        })
    });
    let mut all: Vec<u64> = Vec::new();
    for claimer in claimers {
        all.extend(claimer.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (0..20).collect::<Vec<_>>());
}

async fn response_cache_keeps_the_first_value(store: Arc<dyn Store>) {
    let (a, b) = (run_id(40), run_id(41));
    store.create_run(new_run(40, 1, 1)).await.unwrap();
    store.create_run(new_run(41, 2, 1)).await.unwrap();
    assert_eq!(store.cache_get("k", &a).await.unwrap(), None);
    store
        .cache_put("k", &json!({"choices": [1]}), &a)
        .await
        .unwrap();
    store
        .cache_put("k", &json!({"choices": [2]}), &b)
        .await
        .unwrap();
    assert_eq!(
        store.cache_get("k", &b).await.unwrap(),
        Some(json!({"choices": [1]}))
    );
    store.ping().await.unwrap();
}

async fn leases_are_released_per_run(store: Arc<dyn Store>) {
    let (a, b) = (run_id(42), run_id(43));
    store.create_run(new_run(42, 1, 10)).await.unwrap();
    store.create_run(new_run(43, 2, 10)).await.unwrap();
    let lease = Duration::from_secs(60);
    store.claim_chunk(&a, "x", lease).await.unwrap().unwrap();
    store.claim_chunk(&b, "x", lease).await.unwrap().unwrap();
    // Cancelling run A on instance x gives up A's leases only.
    store.release_leases(&a, "x").await.unwrap();
    let status_a = store.chunk_status(&a, "y").await.unwrap();
    let status_b = store.chunk_status(&b, "y").await.unwrap();
    assert_eq!((status_a.held_by_others, status_a.abandoned), (0, 1));
    assert_eq!((status_b.held_by_others, status_b.abandoned), (1, 0));
    assert!(store.claim_chunk(&a, "y", lease).await.unwrap().is_some());
    assert_eq!(
        store.claim_chunk(&b, "y", lease).await.unwrap(),
        None,
        "B's chunk is still x's"
    );
}

async fn renewing_reports_the_chunks_still_held(store: Arc<dyn Store>) {
    let run = run_id(44);
    store.create_run(new_run(44, 1, 150)).await.unwrap();
    let lease = Duration::from_secs(60);
    let first = store.claim_chunk(&run, "a", lease).await.unwrap().unwrap();
    let second = store.claim_chunk(&run, "a", lease).await.unwrap().unwrap();
    // a's lease on its first chunk lapses and b takes the chunk over.
    store.release_leases(&run, "a").await.unwrap();
    let taken = store.claim_chunk(&run, "b", lease).await.unwrap().unwrap();
    assert_eq!(taken.chunk_index, first.chunk_index);
    let held = store
        .renew_leases(&run, "a", &[first.chunk_index, second.chunk_index], lease)
        .await
        .unwrap();
    assert_eq!(
        held,
        vec![second.chunk_index],
        "a lost the first chunk only"
    );
    assert_eq!(
        store
            .renew_leases(&run, "b", &[first.chunk_index], lease)
            .await
            .unwrap(),
        vec![first.chunk_index]
    );
    // Renewing does not reach other runs, nor chunks never claimed.
    assert_eq!(
        store
            .renew_leases(&run_id(45), "a", &[0], lease)
            .await
            .unwrap(),
        Vec::<u64>::new()
    );
    assert_eq!(
        store.renew_leases(&run, "a", &[2], lease).await.unwrap(),
        Vec::<u64>::new()
    );
}

async fn a_stale_lease_owner_cannot_commit(store: Arc<dyn Store>) {
    let run = run_id(46);
    store.create_run(new_run(46, 1, 100)).await.unwrap(); // chunks 0..64, 64..100
    start(store.as_ref(), &run).await;
    let lease = Duration::from_secs(60);
    let chunk = store.claim_chunk(&run, "a", lease).await.unwrap().unwrap();
    assert_eq!(chunk.chunk_index, 0);
    store.release_leases(&run, "a").await.unwrap();
    store.claim_chunk(&run, "b", lease).await.unwrap().unwrap();

    // a still finishes cases 0 and 1 and tries to record them and complete the chunk.
    let stale = |owner: &str| {
        let mut batch = CommitBatch::new(run.clone());
        batch.cases = vec![
            case_commit(&run, 0, "a", Some(1.0)),
            case_commit(&run, 1, "a", Some(0.0)),
        ];
        batch.completed_chunks = vec![0];
        batch.lease_owner = Some(owner.to_owned());
        batch
    };
    let stale_batch = stale("a");
    let outcome = store.commit(&stale_batch).await.unwrap();
    assert_eq!(outcome.discarded, 2);
    assert_eq!(
        (outcome.progress.completed, outcome.progress.failed),
        (0, 0)
    );
    assert!(
        outcome
            .events(&stale_batch)
            .iter()
            .all(|e| !matches!(e.kind, EventKind::CaseCompleted { .. })),
        "no events of discarded cases"
    );
    assert!(
        store
            .recorded_case_indices(&run, 0..100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.chunk_status(&run, "b").await.unwrap().unfinished,
        2,
        "a stale owner does not complete the chunk"
    );
    // Nor can an owner that never claimed the chunk.
    let mut other = CommitBatch::new(run.clone());
    other.cases = vec![case_commit(&run, 70, "a", Some(1.0))];
    other.lease_owner = Some("a".to_owned());
    assert_eq!(store.commit(&other).await.unwrap().discarded, 1);

    // The owner of the lease records them, once.
    let outcome = store.commit(&stale("b")).await.unwrap();
    assert_eq!((outcome.discarded, outcome.progress.completed), (0, 2));
    assert_eq!(
        store.recorded_case_indices(&run, 0..100).await.unwrap(),
        vec![0, 1]
    );
    assert_eq!(store.chunk_status(&run, "b").await.unwrap().unfinished, 1);
    // Unfenced batches (run-level writes) are not affected.
    let outcome = store.commit(&other_unfenced(&run)).await.unwrap();
    assert_eq!((outcome.discarded, outcome.progress.completed), (0, 3));
}

fn other_unfenced(run: &RunId) -> CommitBatch {
    let mut batch = CommitBatch::new(run.clone());
    batch.cases = vec![case_commit(run, 80, "a", Some(1.0))];
    batch
}

async fn executions_are_counted_until_they_end(store: Arc<dyn Store>) {
    let run = run_id(47);
    store.create_run(new_run(47, 1, 3)).await.unwrap();
    assert_eq!(store.begin_attempt(&run).await.unwrap(), 0);
    assert_eq!(store.begin_attempt(&run).await.unwrap(), 1);
    store.end_attempt(&run).await.unwrap();
    store.end_attempt(&run).await.unwrap();
    store.end_attempt(&run).await.unwrap(); // never below zero
    assert_eq!(store.begin_attempt(&run).await.unwrap(), 0);
    assert!(matches!(
        store.begin_attempt(&run_id(48)).await,
        Err(StoreError::RunNotFound(_))
    ));
}

/// The log is read in order across many commits, from any point, page by page.
async fn events_are_read_across_many_commits(store: Arc<dyn Store>) {
    let run = run_id(60);
    store.create_run(new_run(60, 1, 190)).await.unwrap();
    start(store.as_ref(), &run).await;
    let mut committed = Vec::new();
    for index in 0..40 {
        let mut batch = CommitBatch::new(run.clone());
        batch.cases = vec![case_commit(&run, index, "a", Some(1.0))];
        committed.extend(store.commit(&batch).await.unwrap().events(&batch));
    }
    // Then one commit of 300 events (stores may split a commit's events into rows).
    let mut batch = CommitBatch::new(run.clone());
    batch.cases = (40..190)
        .map(|index| case_commit(&run, index, "a", Some(1.0)))
        .collect();
    committed.extend(store.commit(&batch).await.unwrap().events(&batch));
    // Read back as committed, whoever encoded them (odd cases come encoded).
    assert_eq!(store.events_after(&run, 1, 1_000).await.unwrap(), committed);
    let all: Vec<u64> = (1..=381).collect();
    let seqs = |events: Vec<themis::model::RunEvent>| -> Vec<u64> {
        events.iter().map(|e| e.seq).collect()
    };
    // run_started, then two events for each case.
    assert_eq!(seqs(store.events_after(&run, 0, 1_000).await.unwrap()), all);
    assert_eq!(
        seqs(store.events_after(&run, 30, 25).await.unwrap()),
        (31..=55).collect::<Vec<_>>()
    );
    assert_eq!(
        seqs(store.events_after(&run, 70, 300).await.unwrap()),
        (71..=370).collect::<Vec<_>>()
    );
    assert_eq!(
        seqs(store.events_after(&run, 340, 100).await.unwrap()),
        (341..=381).collect::<Vec<_>>()
    );
    let mut after = 0;
    let mut paged = Vec::new();
    loop {
        let page = seqs(store.events_after(&run, after, 37).await.unwrap());
        let Some(&last) = page.last() else { break };
        assert!(page.len() <= 37);
        after = last;
        paged.extend(page);
    }
    assert_eq!(paged, all);
    let started = store.events_after(&run, 0, 1).await.unwrap();
    assert_eq!(started[0].event_type(), "run_started");
    assert_eq!(started[0].run_id, run);
}

/// Name, tags and metadata come back as stored, in listings too; lists filter by name
/// and by tag (exactly: not by a part of one, not ignoring case).
async fn labels_are_stored_listed_and_filtered(store: Arc<dyn Store>) {
    let labelled = |n: u8, name: &str, tags: &[&str]| {
        let mut run = new_run(n, i64::from(n), 1);
        run.labels = RunLabels {
            name: Some(name.to_owned()),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            metadata: json!({"owner": "ml", "n": n}).as_object().unwrap().clone(),
        };
        run
    };
    store
        .create_run(labelled(71, "baseline", &["nightly", "gpt-4o"]))
        .await
        .unwrap();
    store
        .create_run(labelled(72, "candidate", &["nightly_v2"]))
        .await
        .unwrap();
    store
        .create_run(labelled(73, "candidate", &["Nightly"]))
        .await
        .unwrap();
    store.create_run(new_run(74, 74, 1)).await.unwrap();

    let full = store.get_run(&run_id(71)).await.unwrap().unwrap();
    assert_eq!(full.labels.name.as_deref(), Some("baseline"));
    assert_eq!(full.labels.tags, ["nightly", "gpt-4o"]);
    assert_eq!(full.labels.metadata["owner"], "ml");
    let plain = store.get_run_summary(&run_id(74)).await.unwrap().unwrap();
    assert_eq!(plain.labels, RunLabels::default());

    let ids = |runs: Vec<themis::model::RunRecord>| -> Vec<RunId> {
        runs.into_iter().map(|r| r.run_id).collect()
    };
    let list = |name: Option<&str>, tag: Option<&str>| RunQuery {
        name: name.map(str::to_owned),
        tag: tag.map(str::to_owned),
        limit: 10,
        ..RunQuery::default()
    };
    let listed = store
        .list_runs(&list(Some("baseline"), None))
        .await
        .unwrap();
    assert_eq!(listed[0].labels.tags, ["nightly", "gpt-4o"]);
    assert_eq!(listed[0].labels.metadata["n"], 71);
    assert_eq!(ids(listed), [run_id(71)]);
    assert_eq!(
        ids(store
            .list_runs(&list(Some("candidate"), None))
            .await
            .unwrap()),
        [run_id(73), run_id(72)]
    );
    assert_eq!(
        ids(store.list_runs(&list(None, Some("nightly"))).await.unwrap()),
        [run_id(71)],
        "a tag matches whole tags only, and with its case"
    );
    assert_eq!(
        ids(store.list_runs(&list(None, Some("gpt-4o"))).await.unwrap()),
        [run_id(71)]
    );
    assert!(
        store
            .list_runs(&list(Some("candidate"), Some("gpt-4o")))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .list_runs(&list(None, Some("night")))
            .await
            .unwrap()
            .is_empty()
    );
}

contract!(
    labels_are_stored_listed_and_filtered,
    create_is_idempotent,
    commits_sequence_events_and_count_cases,
    a_case_twice_in_one_batch_counts_once,
    terminal_runs_reject_writes_and_versions_grow,
    expect_status_decides_between_instances,
    listing_is_newest_first_with_filters_and_cursor,
    cancel_depends_on_status,
    case_records_page_and_filter,
    chunks_are_claimed_once_and_taken_over_after_lease,
    concurrent_claims_never_share_a_chunk,
    claims_search_from_the_chunk_given,
    a_deleted_run_leaves_no_records_or_events,
    response_cache_keeps_the_first_value,
    leases_are_released_per_run,
    renewing_reports_the_chunks_still_held,
    a_stale_lease_owner_cannot_commit,
    executions_are_counted_until_they_end,
    events_are_read_across_many_commits,
);

#[tokio::test]
async fn sqlite_keeps_everything_across_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reopen.db");
    let run = run_id(50);
    {
        let store = themis::store::SqliteStore::open(&path).await.unwrap();
        store.create_run(new_run(50, 1, 2)).await.unwrap();
        start(&store, &run).await;
        let mut batch = CommitBatch::new(run.clone());
        batch.cases = vec![case_commit(&run, 0, "a", Some(1.0))];
        store.commit(&batch).await.unwrap();
        store
            .claim_chunk(&run, "gone", Duration::from_secs(600))
            .await
            .unwrap()
            .unwrap();
    }
    let store = themis::store::SqliteStore::open(&path).await.unwrap();
    let reopened = store.get_run(&run).await.unwrap().unwrap();
    assert_eq!(
        (
            reopened.status,
            reopened.progress.completed,
            reopened.last_seq
        ),
        (RunStatus::Running, 1, 3)
    );
    assert_eq!(store.events_after(&run, 0, 10).await.unwrap().len(), 3);
    // One process owns a SQLite file: leases of a previous process are void on open.
    assert!(
        store
            .claim_chunk(&run, "new", Duration::from_secs(60))
            .await
            .unwrap()
            .is_some()
    );
}

/// Commits copy their pages back into the database file without waiting for the writer:
/// a few MiB of commits, below the writer's own checkpoint threshold, reach the file soon
/// after they are written.
#[tokio::test]
async fn sqlite_checkpoints_beside_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoint.db");
    let store = themis::store::SqliteStore::open(&path).await.unwrap();
    let run = run_id(52);
    let cases = 2_000;
    store.create_run(new_run(52, 1, cases)).await.unwrap();
    start(&store, &run).await;
    let before = std::fs::metadata(&path).unwrap().len();
    for first in (0..cases).step_by(200) {
        let mut batch = CommitBatch::new(run.clone());
        batch.cases = (first..first + 200)
            .map(|i| case_commit(&run, i, "a", Some(1.0)))
            .collect();
        store.commit(&batch).await.unwrap();
    }
    let wal = dir.path().join("checkpoint.db-wal");
    let written = std::fs::metadata(&wal).unwrap().len();
    assert!(
        written > 1 << 20,
        "the commits wrote {written} bytes of WAL"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let grown = std::fs::metadata(&path).unwrap().len() - before;
        if grown > written / 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the database file grew by {grown} bytes only, for {written} bytes of WAL"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The log stores each event's body: its run and seq are the row's and the line's, not
/// repeated in every line (issue 12); read back, the events are whole.
#[tokio::test]
async fn sqlite_event_lines_hold_bodies_without_run_or_seq() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bodies.db");
    let store = themis::store::SqliteStore::open(&path).await.unwrap();
    let run = run_id(53);
    store.create_run(new_run(53, 1, 3)).await.unwrap();
    start(&store, &run).await;
    let mut batch = CommitBatch::new(run.clone());
    batch.cases = (0..3)
        .map(|i| case_commit(&run, i, "a", Some(1.0)))
        .collect();
    batch.progress_event = true;
    let outcome = store.commit(&batch).await.unwrap();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let payloads: Vec<String> = sqlx::query_scalar("SELECT payload FROM event_batches")
        .fetch_all(&pool)
        .await
        .unwrap();
    let lines: Vec<&str> = payloads.iter().flat_map(|p| p.split('\n')).collect();
    assert!(lines.len() > 3, "{lines:?}");
    for line in &lines {
        assert!(line.starts_with("{\"occurred_at\""), "{line}");
        assert!(!line.contains(run.as_str()), "{line}");
    }
    let read = store.events_after(&run, 1, 100).await.unwrap();
    assert_eq!(read, outcome.events(&batch));
    assert!(
        read.iter()
            .all(|e| e.run_id == run && e.schema_version == "1")
    );
}

#[tokio::test]
async fn sqlite_in_memory_works() {
    let store = themis::store::SqliteStore::connect("sqlite::memory:")
        .await
        .unwrap();
    create_is_idempotent(Arc::new(store)).await;
}

/// A database written before events were stored a commit per row (one `events` row per
/// event, case records in a WITHOUT ROWID table) is migrated: its events read back in
/// order, new ones follow them, and its case records are kept.
#[tokio::test]
async fn sqlite_migrates_an_event_per_row_log() {
    let dir = tempfile::tempdir().unwrap();
    let run = run_id(61);
    // The events as the current store writes them, copied below into the old layout.
    let current = dir.path().join("current.db");
    let written = {
        let store = themis::store::SqliteStore::open(&current).await.unwrap();
        store.create_run(new_run(61, 1, 3)).await.unwrap();
        start(&store, &run).await;
        let mut batch = CommitBatch::new(run.clone());
        batch.cases = vec![case_commit(&run, 0, "a", Some(1.0))];
        store.commit(&batch).await.unwrap();
        store.events_after(&run, 0, 100).await.unwrap()
    };
    assert_eq!(written.len(), 3);

    let old = dir.path().join("old.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", old.display()))
        .await
        .unwrap();
    let mut before = sqlx::migrate!("./migrations/sqlite");
    before.migrations = before
        .migrations
        .iter()
        .filter(|m| m.version < 20261206000000)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    before.run(&pool).await.unwrap();
    // ATTACH is per connection: one connection for the copy.
    let mut conn = pool.acquire().await.unwrap();
    // A temporary directory's path: no quote in it.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ATTACH DATABASE '{}' AS current",
        current.display()
    )))
    .execute(&mut *conn)
    .await
    .unwrap();
    for table in ["runs", "case_records"] {
        // The columns the older schema has (later migrations add some).
        let columns: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT name FROM main.pragma_table_info('{table}')"
        )))
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        let columns = columns.join(", ");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO main.{table} ({columns}) SELECT {columns} FROM current.{table}"
        )))
        .execute(&mut *conn)
        .await
        .unwrap();
    }
    for event in &written {
        sqlx::query(
            "INSERT INTO events (run_id, seq, event_type, occurred_at, payload) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(run.as_str())
        .bind(event.seq as i64)
        .bind(event.event_type())
        .bind(event.occurred_at.as_millis())
        .bind(serde_json::to_string(event).unwrap())
        .execute(&mut *conn)
        .await
        .unwrap();
    }
    drop(conn);
    pool.close().await;

    let store = themis::store::SqliteStore::open(&old).await.unwrap();
    assert_eq!(store.events_after(&run, 0, 100).await.unwrap(), written);
    assert_eq!(store.events_after(&run, 1, 1).await.unwrap(), written[1..2]);
    // The case recorded before the migration is still the run's, once.
    let mut batch = CommitBatch::new(run.clone());
    batch.cases = vec![
        case_commit(&run, 0, "a", Some(0.0)),
        case_commit(&run, 1, "a", Some(1.0)),
    ];
    let outcome = store.commit(&batch).await.unwrap();
    assert_eq!(outcome.duplicates, 1);
    let records = first_records(&store, &run).await;
    assert_eq!(
        records
            .iter()
            .map(|r| (r.key.case_index, r.scores[0].score))
            .collect::<Vec<_>>(),
        [(0, Some(1.0)), (1, Some(1.0))]
    );
    let seqs: Vec<u64> = store
        .events_after(&run, 0, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
}

/// One column as the schema test compares it: `(type, not null, in the primary key)`.
type Columns = BTreeMap<(String, String), (String, bool, bool)>;

/// The SQLite type a Postgres column type is stored as. SQLite has fewer types: 64-bit
/// integers, booleans (0 and 1) and lease times (milliseconds on the clock of the one
/// process SQLite serves; Postgres leases are on the database clock) are all `INTEGER`.
fn sqlite_type_of(postgres_type: &str) -> String {
    match postgres_type {
        "bigint" | "boolean" | "timestamp with time zone" => "INTEGER".to_owned(),
        "text" => "TEXT".to_owned(),
        other => format!("no SQLite equivalent for {other}"),
    }
}

/// The two migration histories (SQLite's four files, Postgres's two) end in the same
/// tables and columns: names, types through [`sqlite_type_of`], nullability and primary
/// keys. `_sqlx_migrations` is sqlx's own bookkeeping.
#[tokio::test]
async fn sqlite_and_postgres_schemas_are_equivalent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schema.db");
    drop(themis::store::SqliteStore::open(&path).await.unwrap());
    let sqlite = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let rows: Vec<(String, String, String, bool, i64)> = sqlx::query_as(
        "SELECT m.name, p.name, p.type, p.\"notnull\", p.pk FROM sqlite_master AS m \
         JOIN pragma_table_info(m.name) AS p \
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name <> '_sqlx_migrations'",
    )
    .fetch_all(&sqlite)
    .await
    .unwrap();
    let in_sqlite: Columns = rows
        .into_iter()
        .map(|(table, column, ty, not_null, pk)| ((table, column), (ty, not_null, pk > 0)))
        .collect();

    let (database, postgres) = migrated_postgres().await;
    let rows: Vec<(String, String, String, String, bool)> = sqlx::query_as(
        "SELECT c.table_name::text, c.column_name::text, c.data_type::text, c.is_nullable::text, \
         EXISTS (SELECT 1 FROM information_schema.table_constraints AS t \
                 JOIN information_schema.key_column_usage AS k \
                   ON k.constraint_name = t.constraint_name AND k.table_schema = t.table_schema \
                 WHERE t.constraint_type = 'PRIMARY KEY' AND t.table_schema = c.table_schema \
                   AND k.table_name = c.table_name AND k.column_name = c.column_name) \
         FROM information_schema.columns AS c \
         WHERE c.table_schema = 'public' AND c.table_name <> '_sqlx_migrations'",
    )
    .fetch_all(&postgres)
    .await
    .unwrap();
    let in_postgres: Columns = rows
        .into_iter()
        .map(|(table, column, ty, nullable, pk)| {
            ((table, column), (sqlite_type_of(&ty), nullable == "NO", pk))
        })
        .collect();
    postgres.close().await;
    database.drop_database().await;

    assert!(in_sqlite.contains_key(&("runs".to_owned(), "attempts".to_owned())));
    let differences: Vec<String> = in_sqlite
        .keys()
        .chain(in_postgres.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|key| in_sqlite.get(*key) != in_postgres.get(*key))
        .map(|key| {
            format!(
                "{}.{}: SQLite {:?}, Postgres {:?}",
                key.0,
                key.1,
                in_sqlite.get(key),
                in_postgres.get(key)
            )
        })
        .collect();
    assert!(
        differences.is_empty(),
        "the schemas differ (type, not null, primary key):\n{}",
        differences.join("\n")
    );
}

/// A fresh Postgres database with the store's migrations run, and a pool on it.
async fn migrated_postgres() -> (common::TestDatabase, sqlx::PgPool) {
    let database = common::TestDatabase::create().await;
    drop(
        themis::store::PostgresStore::connect(&database.url)
            .await
            .unwrap(),
    );
    let postgres = sqlx::PgPool::connect(&database.url).await.unwrap();
    (database, postgres)
}

/// Postgres stores the event log's payloads without compressing them: pglz was 16% of
/// the database server's CPU in an engine-only run (issue 12).
#[tokio::test]
async fn postgres_stores_event_payloads_uncompressed() {
    let (database, postgres) = migrated_postgres().await;
    let storage: i8 = sqlx::query_scalar(
        "SELECT attstorage FROM pg_attribute \
         WHERE attrelid = 'event_batches'::regclass AND attname = 'payload'",
    )
    .fetch_one(&postgres)
    .await
    .unwrap();
    postgres.close().await;
    database.drop_database().await;
    assert_eq!(storage as u8, b'e', "external: out of line, uncompressed");
}
