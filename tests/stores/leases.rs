//! The store contract for leases: chunks claimed once and taken over after their lease,
//! renewals, fencing of stale owners, and counted executions.

use super::*;

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

contract!(
    chunks_are_claimed_once_and_taken_over_after_lease,
    claims_search_from_the_chunk_given,
    concurrent_claims_never_share_a_chunk,
    leases_are_released_per_run,
    renewing_reports_the_chunks_still_held,
    a_stale_lease_owner_cannot_commit,
    executions_are_counted_until_they_end,
);
