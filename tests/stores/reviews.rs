//! The store contract for human reviews, over every store (memory, SQLite, Postgres):
//! reviews are appended (never replaced), read back in order by case range with a
//! keyset cursor, refused for a run that does not exist, and deleted with their run.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;
use themis::model::{NewReview, RunId, RunKind, RunStatus, Timestamp};
use themis::store::{CommitBatch, DeleteRun, NewRun, ReviewQuery, StatusChange, Store, StoreError};

fn id(n: u8) -> RunId {
    RunId::from_digest(&[n; 32])
}

async fn create(store: &dyn Store, n: u8) -> RunId {
    store
        .create_run(NewRun {
            labels: themis::model::RunLabels::default(),
            run_id: id(n),
            kind: RunKind::Experiment,
            parent_run_id: None,
            definition: json!({}),
            runtime: json!({}),
            total_cases: 10,
            index_space: 10,
            datasets: Vec::new(),
            created_at: Timestamp::from_millis(i64::from(n)),
        })
        .await
        .unwrap();
    id(n)
}

fn review(run: &RunId, case_index: u64, reviewer: &str, score: f64) -> NewReview {
    NewReview {
        run_id: run.clone(),
        case_index,
        reviewer: reviewer.to_owned(),
        scores: BTreeMap::from([("exact".to_owned(), score), ("judge".to_owned(), 4.0)]),
        comment: (score > 0.5).then(|| "right, with \"quotes\" and ünïcode".to_owned()),
        created_at: Timestamp::from_millis(1_000 + case_index as i64),
    }
}

fn all(limit: u32) -> ReviewQuery {
    ReviewQuery {
        cases: 0..u64::MAX,
        after: None,
        limit,
    }
}

async fn reviews_are_appended_and_read_back_in_order(store: Arc<dyn Store>) {
    let run = create(store.as_ref(), 1).await;
    let other = create(store.as_ref(), 2).await;
    let first = store.add_review(review(&run, 3, "ana", 1.0)).await.unwrap();
    let second = store.add_review(review(&run, 3, "ana", 0.0)).await.unwrap();
    let third = store.add_review(review(&run, 5, "bo", 1.0)).await.unwrap();
    store
        .add_review(review(&other, 3, "ana", 1.0))
        .await
        .unwrap();
    assert!(first.review_id < second.review_id && second.review_id < third.review_id);
    assert_eq!(first.scores["exact"], 1.0);
    assert_eq!(
        first.comment.as_deref(),
        Some("right, with \"quotes\" and ünïcode")
    );

    // Appended, not replaced: both of ana's reviews of case 3 are kept, in order, equal
    // to what was stored.
    let case3 = store
        .reviews(&run, &ReviewQuery::case(3, 100))
        .await
        .unwrap();
    assert_eq!(case3, vec![first.clone(), second.clone()]);
    let everything = store.reviews(&run, &all(100)).await.unwrap();
    assert_eq!(
        everything,
        vec![first.clone(), second.clone(), third.clone()]
    );

    // The keyset cursor and the limit page through the history.
    let page = store.reviews(&run, &all(2)).await.unwrap();
    assert_eq!(page, vec![first.clone(), second.clone()]);
    let rest = store
        .reviews(
            &run,
            &ReviewQuery {
                after: Some(second.review_id),
                ..all(2)
            },
        )
        .await
        .unwrap();
    assert_eq!(rest, vec![third.clone()]);
    // A case range is half-open.
    let range = store
        .reviews(
            &run,
            &ReviewQuery {
                cases: 4..6,
                ..all(100)
            },
        )
        .await
        .unwrap();
    assert_eq!(range, vec![third]);
    assert!(store.reviews(&id(9), &all(10)).await.unwrap().is_empty());
}

async fn a_review_needs_its_run_and_goes_with_it(store: Arc<dyn Store>) {
    let missing = store.add_review(review(&id(7), 0, "ana", 1.0)).await;
    assert!(
        matches!(missing, Err(StoreError::RunNotFound(ref r)) if *r == id(7)),
        "{missing:?}"
    );
    let run = create(store.as_ref(), 3).await;
    store.add_review(review(&run, 0, "ana", 1.0)).await.unwrap();
    let mut batch = CommitBatch::new(run.clone());
    batch.status = Some(StatusChange {
        status: RunStatus::Completed,
        error: None,
        at: Timestamp::from_millis(5),
    });
    store.commit(&batch).await.unwrap();
    assert!(matches!(
        store.delete_run(&run, false).await.unwrap(),
        DeleteRun::Deleted(_)
    ));
    // A run created again under the same id starts without reviews.
    let run = create(store.as_ref(), 3).await;
    assert!(store.reviews(&run, &all(10)).await.unwrap().is_empty());
}

contract!(
    reviews_are_appended_and_read_back_in_order,
    a_review_needs_its_run_and_goes_with_it,
);
