-- Issue 12: the event log in a row per commit (per 256 of its events) instead of one
-- per event (see the SQLite migration). `payload` holds the events with seq first_seq..=last_seq (gapless),
-- one compact JSON object per line, in order.
CREATE TABLE event_batches (
    run_id    TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    last_seq  BIGINT NOT NULL,
    first_seq BIGINT NOT NULL,
    payload   TEXT NOT NULL,
    PRIMARY KEY (run_id, last_seq)
);

INSERT INTO event_batches (run_id, last_seq, first_seq, payload)
    SELECT run_id, seq, seq, payload FROM events;
DROP TABLE events;
