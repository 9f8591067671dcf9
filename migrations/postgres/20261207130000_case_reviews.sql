-- Human reviews of cases: append-only (every review is history; the latest of each
-- reviewer counts), under the run whose generations were reviewed, deleted with it.
-- Reviews are written by people, a few a minute: the foreign key costs nothing here.
CREATE TABLE case_reviews (
    review_id  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id     TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    case_index BIGINT NOT NULL,
    reviewer   TEXT NOT NULL,
    scores     TEXT NOT NULL,
    comment    TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX case_reviews_by_case ON case_reviews (run_id, case_index, review_id);
