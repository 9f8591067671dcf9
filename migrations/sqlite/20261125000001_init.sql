-- Runs: one row per run; progress, usage and aggregates are kept current by every commit
-- so status polling reads one row.
CREATE TABLE runs (
    run_id           TEXT PRIMARY KEY NOT NULL,
    kind             TEXT NOT NULL,
    parent_run_id    TEXT,
    status           TEXT NOT NULL,
    definition       TEXT NOT NULL,
    runtime          TEXT NOT NULL,
    total            INTEGER NOT NULL,
    completed        INTEGER NOT NULL DEFAULT 0,
    failed           INTEGER NOT NULL DEFAULT 0,
    usage            TEXT NOT NULL,
    aggregates       TEXT NOT NULL,
    aggregate_state  TEXT NOT NULL,
    error            TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    last_seq         INTEGER NOT NULL DEFAULT 0,
    version          INTEGER NOT NULL DEFAULT 1,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX runs_newest ON runs (created_at DESC, run_id DESC);
CREATE INDEX runs_by_status ON runs (status, created_at DESC, run_id DESC);
CREATE INDEX runs_by_parent ON runs (parent_run_id, created_at DESC, run_id DESC);

-- One row per finished (dataset, case, seed); the primary key makes a case recorded at most once.
CREATE TABLE case_records (
    run_id     TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    case_index INTEGER NOT NULL,
    dataset_id TEXT NOT NULL,
    failed     INTEGER NOT NULL,
    record     TEXT NOT NULL,
    PRIMARY KEY (run_id, case_index)
) WITHOUT ROWID;
CREATE INDEX case_records_failed ON case_records (run_id, failed, case_index);
CREATE INDEX case_records_dataset ON case_records (run_id, dataset_id, case_index);

-- The event log: gapless seq per run, assigned in the commit that writes the events.
CREATE TABLE events (
    run_id      TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    event_type  TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,
    payload     TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
