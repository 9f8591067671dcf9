//! The store contract for budgets: reservations against a run's budget are one account
//! in the run's row, whoever reserves, and the commit that records a case releases its
//! reservation.

use super::*;

/// Twenty cases reserving $0.1 at once against $1 (after $0.012 spent): exactly nine
/// are granted, whatever the interleaving.
async fn concurrent_reservations_never_pass_the_budget(store: Arc<dyn Store>) {
    reserve_from(&[store.clone(), store]).await;
}

/// `stores` are handles on one database (instances sharing the run).
async fn reserve_from(stores: &[Arc<dyn Store>]) {
    let run = run_id(90);
    stores[0].create_run(new_run(90, 1, 64)).await.unwrap();
    let mut spent = record(&run, 0, "d", Some(1.0));
    spent.usage.cost_usd = 0.012;
    let mut first = CommitBatch::new(run.clone());
    first.cases.push(CaseCommit::new(spent, Vec::new()));
    stores[0].commit(&first).await.unwrap();

    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = stores[i % stores.len()].clone();
            let run = run.clone();
            tokio::spawn(async move { store.reserve_spend(&run, 0.1, 1.0).await.unwrap() })
        })
        .collect();
    let mut granted = 0;
    for task in tasks {
        granted += usize::from(task.await.unwrap().granted);
    }
    assert_eq!(granted, 9);
    let summary = stores[0].get_run_summary(&run).await.unwrap().unwrap();
    let spend = &summary.aggregates.spend;
    assert_eq!((spend.reserved_usd, spend.budget_usd), (0.9, Some(1.0)));

    // Recording a case releases what it reserved, kept or not.
    let mut batch = CommitBatch::new(run.clone());
    let mut case = CaseCommit::new(record(&run, 1, "d", Some(1.0)), Vec::new());
    case.reserved_usd = 0.1;
    batch.cases.push(case);
    stores[1 % stores.len()].commit(&batch).await.unwrap();
    let summary = stores[0].get_run_summary(&run).await.unwrap().unwrap();
    assert_eq!(summary.aggregates.spend.reserved_usd, 0.8);

    // A finished run holds no reservation and grants none.
    let mut finish = CommitBatch::new(run.clone());
    finish.status = Some(StatusChange {
        status: RunStatus::Failed,
        error: Some("budget exhausted".into()),
        at: Timestamp::from_millis(5),
    });
    stores[0].commit(&finish).await.unwrap();
    let summary = stores[0].get_run_summary(&run).await.unwrap().unwrap();
    assert_eq!(summary.aggregates.spend.reserved_usd, 0.0);
    assert!(stores[0].reserve_spend(&run, 0.01, 1.0).await.is_err());
}

contract!(concurrent_reservations_never_pass_the_budget);

/// Two instances (stores with pools of their own) sharing a run on Postgres draw on one
/// account.
#[tokio::test]
async fn instances_sharing_a_run_on_postgres_share_its_budget() {
    let database = common::TestDatabase::create().await;
    let a = themis::store::PostgresStore::connect(&database.url)
        .await
        .unwrap();
    let b = themis::store::PostgresStore::connect(&database.url)
        .await
        .unwrap();
    reserve_from(&[Arc::new(a), Arc::new(b)]).await;
    database.drop_database().await;
}
