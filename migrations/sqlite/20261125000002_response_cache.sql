-- Provider responses by request hash: identical requests are paid for once.
CREATE TABLE response_cache (
    key        TEXT PRIMARY KEY NOT NULL,
    value      TEXT NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
