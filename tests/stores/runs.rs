//! The store contract for runs: creation, commits and their events, status changes,
//! listings, cancels, case pages, deletes and the response cache.

use super::*;
use themis::model::RunLabels;

pub(super) async fn create_is_idempotent(store: Arc<dyn Store>) {
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

/// Keys are request hashes; a store may file them under a shorter digest (SQL stores
/// index the first 64 bits), but a lookup answers only the key it was asked for: another
/// key sharing the digest is a miss, never that key's response.
async fn response_cache_answers_only_the_key_asked(store: Arc<dyn Store>) {
    let run = run_id(42);
    store.create_run(new_run(42, 1, 1)).await.unwrap();
    let stored = format!("0123456789abcdef{}", "0".repeat(48));
    let sharing = format!("0123456789abcdef{}", "1".repeat(48));
    store
        .cache_put(&stored, &json!({"choices": ["stored"]}), &run)
        .await
        .unwrap();
    assert_eq!(store.cache_get(&sharing, &run).await.unwrap(), None);
    assert_eq!(store.cache_lookup(&sharing).await.unwrap(), None);
    store
        .cache_put(&sharing, &json!({"choices": ["sharing"]}), &run)
        .await
        .unwrap();
    assert_eq!(
        store.cache_get(&stored, &run).await.unwrap(),
        Some(json!({"choices": ["stored"]}))
    );
    // What a store answers for the second key (its response, or a miss where it could not
    // be filed) is never the first key's.
    assert_ne!(
        store.cache_get(&sharing, &run).await.unwrap(),
        Some(json!({"choices": ["stored"]}))
    );
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
    a_deleted_run_leaves_no_records_or_events,
    response_cache_keeps_the_first_value,
    response_cache_answers_only_the_key_asked,
    events_are_read_across_many_commits,
);
