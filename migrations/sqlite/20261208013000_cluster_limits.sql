-- The tables Postgres uses for limits every instance shares. SQLite serves one process,
-- whose limits are local: they stay empty here, and exist so both schemas are one.
CREATE TABLE cluster_shares (
    pool       TEXT NOT NULL,
    holder     TEXT NOT NULL,
    units      INTEGER NOT NULL,
    wanted     INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (pool, holder)
);
CREATE INDEX cluster_shares_expiry ON cluster_shares (expires_at);

CREATE TABLE cluster_budgets (
    pool        TEXT PRIMARY KEY NOT NULL,
    level_milli INTEGER NOT NULL,
    refilled_at INTEGER NOT NULL
);
