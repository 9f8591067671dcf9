//! The store contract for datasets and run deletion, over every store (memory, SQLite,
//! Postgres): revisions are stored whole and once, runs pin what they use, and deleting a
//! run never takes what another run needs.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::json;
use themis::model::{
    DatasetRevision, DatasetUse, Revision, RunId, RunKind, RunStatus, StoredCase, Timestamp,
};
use themis::store::{
    CaseBatches, CommitBatch, DeleteRevisions, DeleteRun, NewRun, PutOutcome, RevisionCursor,
    StatusChange, Store, StoreError, StoreResult,
};

/// Cases handed over in batches of 3, counting how many were read.
struct Cases {
    cases: Vec<StoredCase>,
    next: usize,
}

impl Cases {
    fn new(n: u64, tag: &str) -> Self {
        Cases {
            cases: (0..n)
                .map(|i| StoredCase {
                    case_index: i,
                    case_id: format!("c{i}"),
                    json: format!(
                        r#"{{"case_id":"c{i}","expected_output":null,"input":"{tag}{i}"}}"#
                    ),
                })
                .collect(),
            next: 0,
        }
    }
}

#[async_trait]
impl CaseBatches for Cases {
    async fn next_batch(&mut self) -> StoreResult<Vec<StoredCase>> {
        let end = (self.next + 3).min(self.cases.len());
        let batch = self.cases[self.next..end].to_vec();
        self.next = end;
        Ok(batch)
    }
}

fn revision(n: u8) -> Revision {
    Revision::from_digest(&[n; 32])
}

fn meta(dataset: &str, n: u8, cases: u64, at: i64) -> DatasetRevision {
    DatasetRevision {
        dataset_id: dataset.to_owned(),
        revision: revision(n),
        case_count: cases,
        bytes: cases * 10,
        created_at: Timestamp::from_millis(at),
    }
}

fn run(n: u8, parent: Option<u8>, uses: Vec<DatasetUse>) -> NewRun {
    NewRun {
        labels: themis::model::RunLabels::default(),
        run_id: RunId::from_digest(&[n; 32]),
        kind: if parent.is_some() {
            RunKind::Retry
        } else {
            RunKind::Experiment
        },
        parent_run_id: parent.map(|p| RunId::from_digest(&[p; 32])),
        definition: json!({}),
        runtime: json!({}),
        total_cases: 1,
        index_space: 1,
        datasets: uses,
        created_at: Timestamp::from_millis(i64::from(n)),
    }
}

fn uses(dataset: &str, n: u8) -> Vec<DatasetUse> {
    vec![DatasetUse {
        dataset_id: dataset.to_owned(),
        revision: revision(n),
    }]
}

async fn finish(store: &dyn Store, run: &RunId, at: i64) {
    let mut batch = CommitBatch::new(run.clone());
    batch.status = Some(StatusChange {
        status: RunStatus::Completed,
        error: None,
        at: Timestamp::from_millis(at),
    });
    store.commit(&batch).await.unwrap();
}

async fn revisions_are_stored_once_and_read_in_ranges(store: Arc<dyn Store>) {
    let mut cases = Cases::new(7, "x");
    let created = store
        .put_revision(meta("qa", 1, 7, 10), &mut cases)
        .await
        .unwrap();
    assert_eq!(created, PutOutcome::Created(meta("qa", 1, 7, 10)));
    assert_eq!(cases.next, 7, "every case was read");

    // The same upload again changes nothing and reads nothing.
    let mut again = Cases::new(7, "x");
    let existing = store
        .put_revision(meta("qa", 1, 7, 99), &mut again)
        .await
        .unwrap();
    assert_eq!(existing, PutOutcome::Existing(meta("qa", 1, 7, 10)));
    assert_eq!(again.next, 0);

    // Another dataset with the same content shares its cases.
    let mut shared = Cases::new(7, "x");
    store
        .put_revision(meta("copy", 1, 7, 11), &mut shared)
        .await
        .unwrap();
    assert_eq!(shared.next, 0);

    let page = store.revision_cases(&revision(1), 2..5).await.unwrap();
    assert_eq!(
        page.iter().map(|c| c.case_index).collect::<Vec<_>>(),
        [2, 3, 4]
    );
    assert_eq!(page[0].case_id, "c2");
    assert!(page[0].json.contains("\"x2\""));
    assert!(
        store
            .revision_cases(&revision(1), 7..9)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .revision_cases(&revision(9), 0..9)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn latest_revision_listings_and_cursors(store: Arc<dyn Store>) {
    store
        .put_revision(meta("b", 1, 1, 10), &mut Cases::new(1, "a"))
        .await
        .unwrap();
    store
        .put_revision(meta("b", 2, 2, 20), &mut Cases::new(2, "b"))
        .await
        .unwrap();
    store
        .put_revision(meta("a", 3, 1, 5), &mut Cases::new(1, "c"))
        .await
        .unwrap();
    let latest = store.get_revision("b", None).await.unwrap().unwrap();
    assert_eq!(latest.revision, revision(2));
    let older = store
        .get_revision("b", Some(&revision(1)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(older.case_count, 1);
    assert!(
        store
            .get_revision("b", Some(&revision(3)))
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.get_revision("none", None).await.unwrap().is_none());

    let newest_first = store.list_revisions("b", None, 10).await.unwrap();
    assert_eq!(
        newest_first
            .iter()
            .map(|r| r.revision.clone())
            .collect::<Vec<_>>(),
        [revision(2), revision(1)]
    );
    let cursor = RevisionCursor {
        created_at: newest_first[0].created_at,
        revision: newest_first[0].revision.clone(),
    };
    let rest = store.list_revisions("b", Some(&cursor), 10).await.unwrap();
    assert_eq!(rest, newest_first[1..]);

    let datasets = store.list_datasets(None, 10).await.unwrap();
    let listed: Vec<(&str, u64, &Revision)> = datasets
        .iter()
        .map(|d| (d.dataset_id.as_str(), d.revisions, &d.latest.revision))
        .collect();
    assert_eq!(listed, [("a", 1, &revision(3)), ("b", 2, &revision(2))]);
    let after = store.list_datasets(Some("a"), 10).await.unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].dataset_id, "b");
}

async fn runs_pin_the_revisions_they_use(store: Arc<dyn Store>) {
    store
        .put_revision(meta("qa", 1, 2, 1), &mut Cases::new(2, "x"))
        .await
        .unwrap();
    store
        .put_revision(meta("copy", 1, 2, 2), &mut Cases::new(2, "x"))
        .await
        .unwrap();
    // A run cannot use a revision the store does not have.
    let missing = store.create_run(run(1, None, uses("qa", 7))).await;
    assert!(matches!(missing, Err(StoreError::MissingRevision { .. })));
    assert!(
        store
            .get_run(&RunId::from_digest(&[1; 32]))
            .await
            .unwrap()
            .is_none()
    );

    store.create_run(run(2, None, uses("qa", 1))).await.unwrap();
    let refused = store
        .delete_revisions("qa", Some(&revision(1)))
        .await
        .unwrap();
    assert_eq!(
        refused,
        DeleteRevisions::InUse(vec![RunId::from_digest(&[2; 32])])
    );
    assert_eq!(
        store.delete_revisions("qa", None).await.unwrap(),
        DeleteRevisions::InUse(vec![RunId::from_digest(&[2; 32])])
    );
    // The other dataset holding the same content is free to go; the cases stay for "qa".
    assert_eq!(
        store.delete_revisions("copy", None).await.unwrap(),
        DeleteRevisions::Deleted(vec![revision(1)])
    );
    assert_eq!(
        store
            .revision_cases(&revision(1), 0..5)
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(store.get_revision("copy", None).await.unwrap().is_none());

    // Once the run is deleted the revision can go, with its cases.
    let run_id = RunId::from_digest(&[2; 32]);
    finish(store.as_ref(), &run_id, 5).await;
    assert_eq!(
        store.delete_run(&run_id, false).await.unwrap(),
        DeleteRun::Deleted(vec![run_id.clone()])
    );
    assert_eq!(
        store
            .delete_revisions("qa", Some(&revision(1)))
            .await
            .unwrap(),
        DeleteRevisions::Deleted(vec![revision(1)])
    );
    assert!(
        store
            .revision_cases(&revision(1), 0..5)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.delete_revisions("qa", None).await.unwrap(),
        DeleteRevisions::NotFound
    );
}

async fn deleting_runs_respects_status_children_and_shared_responses(store: Arc<dyn Store>) {
    let (parent, child, other) = (
        RunId::from_digest(&[10; 32]),
        RunId::from_digest(&[11; 32]),
        RunId::from_digest(&[12; 32]),
    );
    store.create_run(run(10, None, Vec::new())).await.unwrap();
    store
        .create_run(run(11, Some(10), Vec::new()))
        .await
        .unwrap();
    store.create_run(run(12, None, Vec::new())).await.unwrap();
    assert_eq!(
        store
            .delete_run(&RunId::from_digest(&[99; 32]), false)
            .await
            .unwrap(),
        DeleteRun::NotFound
    );
    assert_eq!(
        store.delete_run(&parent, false).await.unwrap(),
        DeleteRun::HasChildren(vec![child.clone()])
    );
    finish(store.as_ref(), &parent, 5).await;
    assert_eq!(
        store.delete_run(&parent, true).await.unwrap(),
        DeleteRun::Unfinished(vec![child.clone()])
    );
    finish(store.as_ref(), &child, 6).await;
    finish(store.as_ref(), &other, 7).await;

    // The parent stored two responses; the other run used one of them.
    store
        .cache_put("only-parent", &json!(1), &parent)
        .await
        .unwrap();
    store.cache_put("shared", &json!(2), &parent).await.unwrap();
    store.cache_put("other", &json!(3), &other).await.unwrap();
    assert_eq!(
        store.cache_get("shared", &other).await.unwrap(),
        Some(json!(2))
    );

    assert_eq!(
        store.delete_run(&parent, true).await.unwrap(),
        DeleteRun::Deleted(vec![parent.clone(), child.clone()])
    );
    assert!(store.get_run(&parent).await.unwrap().is_none());
    assert!(store.get_run(&child).await.unwrap().is_none());
    assert_eq!(store.cache_get("only-parent", &other).await.unwrap(), None);
    assert_eq!(
        store.cache_get("shared", &other).await.unwrap(),
        Some(json!(2))
    );
    // The shared response is the other run's now: it goes with that run.
    assert_eq!(
        store.delete_run(&other, false).await.unwrap(),
        DeleteRun::Deleted(vec![other.clone()])
    );
    store.create_run(run(13, None, Vec::new())).await.unwrap();
    let reader = RunId::from_digest(&[13; 32]);
    assert_eq!(store.cache_get("shared", &reader).await.unwrap(), None);
    assert_eq!(store.cache_get("other", &reader).await.unwrap(), None);
}

async fn expired_runs_are_old_finished_leaves(store: Arc<dyn Store>) {
    for n in [20, 21, 22, 23] {
        store
            .create_run(run(n, (n == 21).then_some(20), Vec::new()))
            .await
            .unwrap();
    }
    let id = |n: u8| RunId::from_digest(&[n; 32]);
    finish(store.as_ref(), &id(20), 100).await;
    finish(store.as_ref(), &id(21), 300).await;
    finish(store.as_ref(), &id(22), 150).await;
    // 23 is still queued.
    let cutoff = Timestamp::from_millis(200);
    let expired = store.expired_runs(cutoff, 10).await.unwrap();
    // 20 has a child that finished after the cutoff; 23 never finished.
    assert_eq!(expired, [id(22)]);
    let all = store
        .expired_runs(Timestamp::from_millis(1_000), 10)
        .await
        .unwrap();
    assert_eq!(all, [id(22), id(21)]);
    assert_eq!(
        store
            .expired_runs(Timestamp::from_millis(1_000), 1)
            .await
            .unwrap(),
        [id(22)]
    );
}

contract!(
    revisions_are_stored_once_and_read_in_ranges,
    latest_revision_listings_and_cursors,
    runs_pin_the_revisions_they_use,
    deleting_runs_respects_status_children_and_shared_responses,
    expired_runs_are_old_finished_leaves,
);
