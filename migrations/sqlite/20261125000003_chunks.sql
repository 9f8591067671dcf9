-- Work is claimed in chunks of consecutive case indices, under leases.
ALTER TABLE runs ADD COLUMN index_space INTEGER NOT NULL DEFAULT 0;

CREATE TABLE run_chunks (
    run_id           TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    chunk_index      INTEGER NOT NULL,
    owner            TEXT,
    lease_expires_at INTEGER,
    done             INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, chunk_index)
) WITHOUT ROWID;
CREATE INDEX run_chunks_owner ON run_chunks (owner) WHERE owner IS NOT NULL;
