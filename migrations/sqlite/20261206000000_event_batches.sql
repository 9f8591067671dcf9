-- Issue 12: the event log in one row per commit instead of one per event. A case's six
-- events were six B-tree inserts, each keyed by the 36-byte run id; a commit's events
-- are now one row. `payload` holds the events with seq first_seq..=last_seq (gapless),
-- one compact JSON object per line, in order.
CREATE TABLE event_batches (
    run_id    TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    last_seq  INTEGER NOT NULL,
    first_seq INTEGER NOT NULL,
    payload   TEXT NOT NULL,
    PRIMARY KEY (run_id, last_seq)
) WITHOUT ROWID;

INSERT INTO event_batches (run_id, last_seq, first_seq, payload)
    SELECT run_id, seq, seq, payload FROM events;
DROP TABLE events;

-- Failed cases are the few: index only them (as the Postgres schema does), one B-tree
-- insert less per recorded case.
DROP INDEX case_records_failed;
CREATE INDEX case_records_failed ON case_records (run_id, case_index) WHERE failed = TRUE;
