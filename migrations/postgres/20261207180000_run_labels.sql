-- What a person calls a run: a name, tags (a JSON array of strings) and metadata (a JSON
-- object). Not part of the run id; set when the run is created.
ALTER TABLE runs ADD COLUMN name TEXT;
ALTER TABLE runs ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
ALTER TABLE runs ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}';
CREATE INDEX runs_by_name ON runs (name, created_at DESC, run_id DESC);
