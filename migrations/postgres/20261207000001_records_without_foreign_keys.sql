-- Issue 12: case records and event log rows no longer check their run with a foreign
-- key. The check ran per inserted row (~500 records and a dozen log rows a commit, 13%
-- of the database's CPU in an engine-only run, in the commit that paces it) and proved
-- what the commit already holds: it writes only after locking the run's row and finding
-- the run open, and a run is deleted only once finished, its records and log with it
-- (deleted explicitly now, no longer by cascade).
ALTER TABLE case_records DROP CONSTRAINT IF EXISTS case_records_run_id_fkey;
ALTER TABLE event_batches DROP CONSTRAINT IF EXISTS event_batches_run_id_fkey;
