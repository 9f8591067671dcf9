-- Datasets as resources: content-addressed revisions (the revision is the SHA-256 of the
-- canonical cases), each case stored once per revision whichever datasets share it.
CREATE TABLE dataset_revisions (
    dataset_id TEXT NOT NULL,
    revision   TEXT NOT NULL,
    case_count BIGINT NOT NULL,
    bytes      BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (dataset_id, revision)
);
CREATE INDEX dataset_revisions_newest ON dataset_revisions (dataset_id, created_at DESC, revision DESC);
CREATE INDEX dataset_revisions_by_revision ON dataset_revisions (revision);

CREATE TABLE dataset_cases (
    revision   TEXT NOT NULL,
    case_index BIGINT NOT NULL,
    case_id    TEXT NOT NULL,
    case_json  TEXT NOT NULL,
    PRIMARY KEY (revision, case_index)
);

-- The revisions a run reads its cases from: one cannot be deleted while a run uses it.
CREATE TABLE run_datasets (
    run_id     TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    position   BIGINT NOT NULL,
    dataset_id TEXT NOT NULL,
    revision   TEXT NOT NULL,
    PRIMARY KEY (run_id, position),
    FOREIGN KEY (dataset_id, revision) REFERENCES dataset_revisions (dataset_id, revision)
);
CREATE INDEX run_datasets_by_revision ON run_datasets (dataset_id, revision);

-- Who a cached response belongs to (NULL: stored before runs could be deleted; kept), and
-- the other runs that used it: deleting a run keeps a response another run used.
ALTER TABLE response_cache ADD COLUMN run_id TEXT;
CREATE INDEX response_cache_by_run ON response_cache (run_id);
CREATE TABLE response_cache_users (
    key    TEXT NOT NULL,
    run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    PRIMARY KEY (key, run_id)
);
CREATE INDEX response_cache_users_by_run ON response_cache_users (run_id);

-- Retention finds old finished runs by when they ended.
CREATE INDEX runs_finished ON runs (finished_at);
