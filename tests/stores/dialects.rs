//! What only one dialect has: SQLite reopening, checkpoints, event lines, in-memory
//! databases and migrations; the SQLite and Postgres schemas compared; Postgres payloads.

use super::*;

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
    // Records and events are stored compressed: this many cases write a few MiB.
    let cases = 20_000;
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
    // The database's size with the WAL's pages in it (a page is written to the WAL
    // at each commit that changes it: the WAL is larger than what it adds). The store
    // keeps its connections open, so this one's closing checkpoints nothing.
    let reader = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let (pages, page_size): (i64, i64) =
        sqlx::query_as("SELECT page_count, page_size FROM pragma_page_count, pragma_page_size")
            .fetch_one(&reader)
            .await
            .unwrap();
    let added = (pages * page_size) as u64 - before;
    assert!(added > 1 << 20, "the commits added {added} bytes");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let grown = std::fs::metadata(&path).unwrap().len() - before;
        if grown > added / 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the database file grew by {grown} bytes only, for {added} bytes the commits added \
             ({written} bytes of WAL)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The log stores each event's body: its run and seq are the row's and the line's, not
/// repeated in every line (issue 12), and a row's lines are compressed together; read
/// back, the events are whole.
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
    let rows: Vec<(String, Vec<u8>)> = sqlx::query_as("SELECT payload, packed FROM event_batches")
        .fetch_all(&pool)
        .await
        .unwrap();
    let payloads: Vec<String> = rows
        .iter()
        .map(|(payload, packed)| {
            assert_eq!(payload, "", "the lines are stored compressed only");
            String::from_utf8(zstd::stream::decode_all(packed.as_slice()).unwrap()).unwrap()
        })
        .collect();
    let stored: usize = rows.iter().map(|(_, packed)| packed.len()).sum();
    let text: usize = payloads.iter().map(String::len).sum();
    assert!(stored < text, "{stored} bytes stored for {text} of text");
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
    super::runs::create_is_idempotent(Arc::new(store)).await;
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
        (
            store.events_after(&run, 0, 100).await.unwrap(),
            first_records(&store, &run).await,
        )
    };
    let (written, recorded) = written;
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
    {
        let table = "runs";
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
    // Case records as the older schema held them: the JSON text in the row.
    for record in &recorded {
        sqlx::query(
            "INSERT INTO case_records (run_id, case_index, dataset_id, failed, record) \
             VALUES ($1, $2, $3, FALSE, $4)",
        )
        .bind(run.as_str())
        .bind(record.key.case_index as i64)
        .bind(record.key.dataset_id.as_str())
        .bind(serde_json::to_string(record).unwrap())
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
    the_migrated_case_stays_recorded_once(&store, &run, 5).await;
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
        "bytea" => "BLOB".to_owned(),
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

/// Closing folds the write-ahead log into the database: nothing of it is left beside
/// the file (it was up to 64 MiB after a large run).
#[tokio::test]
async fn sqlite_close_leaves_no_write_ahead_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("close.db");
    let store = themis::store::SqliteStore::open(&path).await.unwrap();
    let run = run_id(54);
    store.create_run(new_run(54, 1, 400)).await.unwrap();
    start(&store, &run).await;
    let mut batch = CommitBatch::new(run.clone());
    batch.cases = (0..400)
        .map(|i| case_commit(&run, i, "a", Some(1.0)))
        .collect();
    store.commit(&batch).await.unwrap();
    let wal = dir.path().join("close.db-wal");
    assert!(std::fs::metadata(&wal).unwrap().len() > 0);
    store.close().await.unwrap();
    assert_eq!(std::fs::metadata(&wal).map_or(0, |m| m.len()), 0);
    assert_eq!(first_records(&store, &run).await.len(), 10);
}
