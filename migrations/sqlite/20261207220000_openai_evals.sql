-- The OpenAI Evals API's evals, eval runs and files: one JSON document per object under
-- its OpenAI id, listed in insertion order (`seq`). A run's `parent_id` is its eval.
CREATE TABLE openai_objects (
    seq        INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    kind       TEXT NOT NULL,
    id         TEXT NOT NULL UNIQUE,
    parent_id  TEXT,
    status     TEXT,
    created_at INTEGER NOT NULL,
    body       TEXT NOT NULL,
    content    TEXT
);
CREATE INDEX openai_objects_by_kind ON openai_objects (kind, parent_id, seq);
