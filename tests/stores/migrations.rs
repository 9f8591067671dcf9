//! Databases written by earlier versions, migrated: what they hold reads back the same.

use super::*;
use themis::store::DatasetStore;

/// A Postgres database written before records and events were compressed (a record's
/// JSON in its `case_records` row, event lines as text) is migrated: its records and
/// events read back, a case it recorded stays recorded once, and new ones follow.
#[tokio::test]
async fn postgres_migrates_text_records_and_event_rows() {
    let database = common::TestDatabase::create().await;
    let run = run_id(62);
    let pool = sqlx::PgPool::connect(&database.url).await.unwrap();
    let mut before = sqlx::migrate!("./migrations/postgres");
    before.migrations = before
        .migrations
        .iter()
        .filter(|m| m.version < 20261207210000)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    before.run(&pool).await.unwrap();
    sqlx::query(
        "INSERT INTO runs (run_id, kind, status, definition, runtime, total, usage, aggregates, \
         aggregate_state, created_at, updated_at, index_space, last_seq) \
         VALUES ($1, 'experiment', 'running', '{}', '{}', 3, $2, '{\"metrics\":{}}', \
         '{\"metrics\":{}}', 1, 1, 3, 2)",
    )
    .bind(run.as_str())
    .bind(serde_json::to_string(&Usage::default()).unwrap())
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO run_chunks (run_id, chunk_index) VALUES ($1, 0)")
        .bind(run.as_str())
        .execute(&pool)
        .await
        .unwrap();
    let old = record(&run, 0, "a", Some(1.0));
    sqlx::query(
        "INSERT INTO case_records (run_id, case_index, dataset_id, failed, record) \
         VALUES ($1, 0, 'a', FALSE, $2)",
    )
    .bind(run.as_str())
    .bind(serde_json::to_string(&old).unwrap())
    .execute(&pool)
    .await
    .unwrap();
    let logged: Vec<_> = case_commit(&run, 0, "a", Some(1.0))
        .events
        .into_iter()
        .zip(1..)
        .map(|(event, seq)| event.sequenced(&run, seq))
        .collect();
    let lines: Vec<String> = logged
        .iter()
        .map(|event| serde_json::to_string(event).unwrap())
        .collect();
    sqlx::query(
        "INSERT INTO event_batches (run_id, last_seq, first_seq, payload) VALUES ($1, 2, 1, $2)",
    )
    .bind(run.as_str())
    .bind(lines.join("\n"))
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let store = themis::store::PostgresStore::connect(&database.url)
        .await
        .unwrap();
    assert_eq!(store.events_after(&run, 0, 100).await.unwrap(), logged);
    assert_eq!(first_records(&store, &run).await, vec![old.clone()]);
    the_migrated_case_stays_recorded_once(&store, &run, 4).await;
    drop(store);
    database.drop_database().await;
}

/// A SQLite database whose dataset cases were keyed by the revision's text is migrated:
/// the cases read back, and the revision's content is found again by a new upload.
#[tokio::test]
async fn sqlite_migrates_dataset_cases_keyed_by_revision_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("datasets.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", path.display()))
        .await
        .unwrap();
    let mut before = sqlx::migrate!("./migrations/sqlite");
    before.migrations = before
        .migrations
        .iter()
        .filter(|m| m.version < 20261207210001)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    before.run(&pool).await.unwrap();
    let revision = themis::model::Revision::from_digest(&[0xab; 32]);
    sqlx::query(
        "INSERT INTO dataset_revisions (dataset_id, revision, case_count, bytes, created_at) \
         VALUES ('d', $1, 2, 20, 1)",
    )
    .bind(revision.as_str())
    .execute(&pool)
    .await
    .unwrap();
    for i in 0..2 {
        sqlx::query(
            "INSERT INTO dataset_cases (revision, case_index, case_id, case_json) VALUES ($1, $2, $3, $4)",
        )
        .bind(revision.as_str())
        .bind(i)
        .bind(format!("c{i}"))
        .bind(format!(r#"{{"case_id":"c{i}","input":{i}}}"#))
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;

    let store = themis::store::SqliteStore::open(&path).await.unwrap();
    let cases = store.revision_cases(&revision, 0..10).await.unwrap();
    assert_eq!(
        cases
            .iter()
            .map(|c| (c.case_index, c.case_id.as_str(), c.json.as_str()))
            .collect::<Vec<_>>(),
        [
            (0, "c0", r#"{"case_id":"c0","input":0}"#),
            (1, "c1", r#"{"case_id":"c1","input":1}"#)
        ]
    );
    // The same content under another dataset: stored already, nothing to read.
    let again = themis::model::DatasetRevision {
        dataset_id: "e".into(),
        revision: revision.clone(),
        case_count: 2,
        bytes: 20,
        created_at: Timestamp::from_millis(2),
    };
    let outcome = store.put_revision(again, &mut NoCases).await.unwrap();
    assert!(matches!(outcome, themis::store::PutOutcome::Created(_)));
    assert_eq!(store.revision_cases(&revision, 0..10).await.unwrap(), cases);
}

/// Cases of a revision stored already: reading them again is a mistake.
struct NoCases;

#[async_trait::async_trait]
impl themis::store::CaseBatches for NoCases {
    async fn next_batch(&mut self) -> themis::store::StoreResult<Vec<themis::model::StoredCase>> {
        Err(StoreError::Input("the cases were stored already".into()))
    }
}

/// What the response cache held before its entries were filed by digest: an entry owned
/// by `owner`, used by `user` too, and an entry from before runs could be deleted.
const OWNED_KEY: &str = "6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b";
const UNOWNED_KEY: &str = "d4735e3a265e16eee03f59718b9b5d03019c07d8b6c51f90da3a666eec13ab35";

/// Writes the cache entries above, and their two runs, in the schema before digests (a
/// macro: the same statements on either database's pool).
macro_rules! old_cache_entries {
    ($pool:expr, $owner:expr, $user:expr) => {{
        let (pool, owner, user): (_, &RunId, &RunId) = ($pool, $owner, $user);
        for run in [owner, user] {
            sqlx::query(
                "INSERT INTO runs (run_id, kind, status, definition, runtime, total, usage, \
                 aggregates, aggregate_state, created_at, updated_at, finished_at, index_space, \
                 last_seq) VALUES ($1, 'experiment', 'completed', '{}', '{}', 0, $2, \
                 '{\"metrics\":{}}', '{\"metrics\":{}}', 1, 1, 1, 0, 0)",
            )
            .bind(run.as_str())
            .bind(serde_json::to_string(&Usage::default()).unwrap())
            .execute(pool)
            .await
            .unwrap();
        }
        sqlx::query(
            "INSERT INTO response_cache (key, value, created_at, run_id) VALUES \
             ($1, '{\"choices\":[\"owned\"]}', 1, $2), ($3, '{\"choices\":[\"unowned\"]}', 2, NULL)",
        )
        .bind(OWNED_KEY)
        .bind(owner.as_str())
        .bind(UNOWNED_KEY)
        .execute(pool)
        .await
        .unwrap();
        sqlx::query("INSERT INTO response_cache_users (key, run_id) VALUES ($1, $2)")
            .bind(OWNED_KEY)
            .bind(user.as_str())
            .execute(pool)
            .await
            .unwrap();
    }};
}

/// The migrated entries answer their keys with their owners, and deleting the owner of
/// a response another run used keeps it for that run.
async fn the_migrated_cache_is_kept(store: &dyn Store, owner: &RunId, user: &RunId) {
    let found = |value: &str, owner: Option<&RunId>| {
        Some(themis::store::CachedResponse {
            value: json!({"choices": [value]}),
            owner: owner.map(|run| run.as_str().to_owned()),
        })
    };
    assert_eq!(
        store.cache_lookup(OWNED_KEY).await.unwrap(),
        found("owned", Some(owner))
    );
    assert_eq!(
        store.cache_lookup(UNOWNED_KEY).await.unwrap(),
        found("unowned", None)
    );
    assert_eq!(
        store.delete_run(owner, false).await.unwrap(),
        DeleteRun::Deleted(vec![owner.clone()])
    );
    assert_eq!(
        store.cache_lookup(OWNED_KEY).await.unwrap(),
        found("owned", Some(user))
    );
    assert_eq!(
        store.delete_run(user, false).await.unwrap(),
        DeleteRun::Deleted(vec![user.clone()])
    );
    assert_eq!(store.cache_lookup(OWNED_KEY).await.unwrap(), None);
    assert_eq!(
        store.cache_lookup(UNOWNED_KEY).await.unwrap(),
        found("unowned", None)
    );
}

/// A SQLite response cache keyed by the key's text is migrated to entries filed by
/// digest: what it held is found, owned and kept as before.
#[tokio::test]
async fn sqlite_migrates_the_response_cache_to_digests() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", path.display()))
        .await
        .unwrap();
    let mut before = sqlx::migrate!("./migrations/sqlite");
    before.migrations = before
        .migrations
        .iter()
        .filter(|m| m.version < 20261208010100)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    before.run(&pool).await.unwrap();
    let (owner, user) = (run_id(70), run_id(71));
    old_cache_entries!(&pool, &owner, &user);
    pool.close().await;

    let store = themis::store::SqliteStore::open(&path).await.unwrap();
    the_migrated_cache_is_kept(&store, &owner, &user).await;
}

/// The same on Postgres.
#[tokio::test]
async fn postgres_migrates_the_response_cache_to_digests() {
    let database = common::TestDatabase::create().await;
    let pool = sqlx::PgPool::connect(&database.url).await.unwrap();
    let mut before = sqlx::migrate!("./migrations/postgres");
    before.migrations = before
        .migrations
        .iter()
        .filter(|m| m.version < 20261208010100)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    before.run(&pool).await.unwrap();
    let (owner, user) = (run_id(72), run_id(73));
    old_cache_entries!(&pool, &owner, &user);
    pool.close().await;

    let store = themis::store::PostgresStore::connect(&database.url)
        .await
        .unwrap();
    the_migrated_cache_is_kept(&store, &owner, &user).await;
    drop(store);
    database.drop_database().await;
}
