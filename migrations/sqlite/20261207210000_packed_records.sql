-- Case records and the event log compressed a commit at a time (zstd; see
-- src/store/sql/packed.rs): stored one JSON text per case and per event line, a run used
-- ~3,000 bytes per case, ~25× what the same text takes compressed together.
--
-- `record_batches` holds a commit's records, one JSON line per slot (`codec` 1: zstd;
-- 0: plain text, the records migrated below, one per batch). `case_records` keeps a
-- small row per case (what the primary key and the indexes need, and where its record
-- is), now a WITHOUT ROWID table: its rows no longer spill onto overflow pages, and
-- the primary key is the table instead of an index beside it.
CREATE TABLE record_batches (
    run_id  TEXT NOT NULL,
    batch   INTEGER NOT NULL,
    codec   INTEGER NOT NULL,
    payload BLOB NOT NULL,
    PRIMARY KEY (run_id, batch)
);

-- Records written before: each its own plain batch, numbered below any commit's (a
-- commit's batch is the run's version it writes, which is positive).
INSERT INTO record_batches (run_id, batch, codec, payload)
    SELECT run_id, -1 - case_index, 0, CAST(record AS BLOB) FROM case_records ORDER BY run_id, case_index;

CREATE TABLE case_records_packed (
    run_id     TEXT NOT NULL,
    case_index INTEGER NOT NULL,
    dataset_id TEXT NOT NULL,
    failed     INTEGER NOT NULL,
    batch      INTEGER NOT NULL,
    slot       INTEGER NOT NULL,
    PRIMARY KEY (run_id, case_index)
) WITHOUT ROWID;
INSERT INTO case_records_packed (run_id, case_index, dataset_id, failed, batch, slot)
    SELECT run_id, case_index, dataset_id, failed, -1 - case_index, 0 FROM case_records ORDER BY run_id, case_index;
DROP TABLE case_records;
ALTER TABLE case_records_packed RENAME TO case_records;
CREATE INDEX case_records_failed ON case_records (run_id, case_index) WHERE failed = TRUE;
CREATE INDEX case_records_dataset ON case_records (run_id, dataset_id, case_index);

-- A row of the event log written from now on holds its lines compressed in `packed`
-- (zstd) and an empty `payload`; rows written before keep their text in `payload`.
ALTER TABLE event_batches ADD COLUMN packed BLOB;
