-- Human reviews of cases: append-only (every review is history; the latest of each
-- reviewer counts), under the run whose generations were reviewed, deleted with it.
CREATE TABLE case_reviews (
    review_id  INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    run_id     TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    case_index INTEGER NOT NULL,
    reviewer   TEXT NOT NULL,
    scores     TEXT NOT NULL,
    comment    TEXT,
    created_at INTEGER NOT NULL
);
CREATE INDEX case_reviews_by_case ON case_reviews (run_id, case_index, review_id);
