-- Issue 12: fewer and cheaper B-tree writes per recorded case.
--
-- The event log in a row per commit (per 256 of its events) instead of one per event:
-- a case's six events were six inserts keyed by the 36-byte run id. `payload` holds the events with seq
-- first_seq..=last_seq (gapless), one compact JSON object per line, in order.
--
-- Both tables with large rows are rowid tables (their primary key an index beside the
-- rows) rather than WITHOUT ROWID: there every row is a key, and a key that spills onto
-- overflow pages is read whole at each comparison of an insert's descent (SQLite's
-- sqlite3BtreeIndexMoveto), which made reading pages most of a commit's cost.
CREATE TABLE event_batches (
    run_id    TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    last_seq  INTEGER NOT NULL,
    first_seq INTEGER NOT NULL,
    payload   TEXT NOT NULL,
    PRIMARY KEY (run_id, last_seq)
);

INSERT INTO event_batches (run_id, last_seq, first_seq, payload)
    SELECT run_id, seq, seq, payload FROM events ORDER BY run_id, seq;
DROP TABLE events;

CREATE TABLE case_records_by_rowid (
    run_id     TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    case_index INTEGER NOT NULL,
    dataset_id TEXT NOT NULL,
    failed     INTEGER NOT NULL,
    record     TEXT NOT NULL,
    PRIMARY KEY (run_id, case_index)
);
INSERT INTO case_records_by_rowid (run_id, case_index, dataset_id, failed, record)
    SELECT run_id, case_index, dataset_id, failed, record FROM case_records ORDER BY run_id, case_index;
DROP TABLE case_records;
ALTER TABLE case_records_by_rowid RENAME TO case_records;
-- Failed cases are the few: index only them (as the Postgres schema does).
CREATE INDEX case_records_failed ON case_records (run_id, case_index) WHERE failed = TRUE;
CREATE INDEX case_records_dataset ON case_records (run_id, dataset_id, case_index);
