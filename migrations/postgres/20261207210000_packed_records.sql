-- Case records and the event log compressed a commit at a time (zstd; see the SQLite
-- migration of the same name and src/store/sql/packed.rs).
--
-- `record_batches` holds a commit's records, one JSON line per slot (`codec` 1: zstd;
-- 0: plain text, the records migrated below, one per batch); stored out of line and not
-- compressed again (pglz would spend CPU on zstd's output for nothing). `case_records`
-- keeps a row per case saying where its record is.
CREATE TABLE record_batches (
    run_id  TEXT NOT NULL,
    batch   BIGINT NOT NULL,
    codec   BIGINT NOT NULL,
    payload BYTEA NOT NULL,
    PRIMARY KEY (run_id, batch)
);
ALTER TABLE record_batches ALTER COLUMN payload SET STORAGE EXTERNAL;

-- Records written before: each its own plain batch, numbered below any commit's (a
-- commit's batch is the run's version it writes, which is positive).
INSERT INTO record_batches (run_id, batch, codec, payload)
    SELECT run_id, -1 - case_index, 0, convert_to(record, 'UTF8') FROM case_records;

ALTER TABLE case_records ADD COLUMN batch BIGINT, ADD COLUMN slot BIGINT;
UPDATE case_records SET batch = -1 - case_index, slot = 0;
ALTER TABLE case_records
    ALTER COLUMN batch SET NOT NULL,
    ALTER COLUMN slot SET NOT NULL,
    DROP COLUMN record;

-- A row of the event log written from now on holds its lines compressed in `packed`
-- (zstd) and an empty `payload`; rows written before keep their text in `payload`.
ALTER TABLE event_batches ADD COLUMN packed BYTEA;
ALTER TABLE event_batches ALTER COLUMN packed SET STORAGE EXTERNAL;
