-- Runs: one row per run; progress, usage and aggregates are kept current by every commit
-- (under the row lock) so status polling reads one row.
CREATE TABLE runs (
    run_id           TEXT PRIMARY KEY,
    kind             TEXT NOT NULL,
    parent_run_id    TEXT,
    status           TEXT NOT NULL,
    definition       TEXT NOT NULL,
    runtime          TEXT NOT NULL,
    total            BIGINT NOT NULL,
    completed        BIGINT NOT NULL DEFAULT 0,
    failed           BIGINT NOT NULL DEFAULT 0,
    usage            TEXT NOT NULL,
    aggregates       TEXT NOT NULL,
    aggregate_state  TEXT NOT NULL,
    error            TEXT,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    last_seq         BIGINT NOT NULL DEFAULT 0,
    version          BIGINT NOT NULL DEFAULT 1,
    index_space      BIGINT NOT NULL DEFAULT 0,
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX runs_newest ON runs (created_at DESC, run_id DESC);
CREATE INDEX runs_by_status ON runs (status, created_at DESC, run_id DESC);
CREATE INDEX runs_by_parent ON runs (parent_run_id, created_at DESC, run_id DESC);

-- One row per finished (dataset, case, seed); the primary key records a case at most once,
-- whichever instance finishes it.
CREATE TABLE case_records (
    run_id     TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    case_index BIGINT NOT NULL,
    dataset_id TEXT NOT NULL,
    failed     BOOLEAN NOT NULL,
    record     TEXT NOT NULL,
    PRIMARY KEY (run_id, case_index)
);
CREATE INDEX case_records_failed ON case_records (run_id, case_index) WHERE failed;
CREATE INDEX case_records_dataset ON case_records (run_id, dataset_id, case_index);

-- The event log: gapless seq per run, assigned under the run's row lock.
CREATE TABLE events (
    run_id      TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    seq         BIGINT NOT NULL,
    event_type  TEXT NOT NULL,
    occurred_at BIGINT NOT NULL,
    payload     TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);

-- Work is claimed in chunks of consecutive case indices under leases on the database clock.
CREATE TABLE run_chunks (
    run_id           TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    chunk_index      BIGINT NOT NULL,
    owner            TEXT,
    lease_expires_at TIMESTAMPTZ,
    done             BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (run_id, chunk_index)
);
CREATE INDEX run_chunks_open ON run_chunks (run_id, chunk_index) WHERE NOT done;
CREATE INDEX run_chunks_owner ON run_chunks (owner) WHERE owner IS NOT NULL;

-- Provider responses by request hash: identical requests are paid for once.
CREATE TABLE response_cache (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
